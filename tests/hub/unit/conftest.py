"""Fast tests of the hub's core logic against a fake Slurm: no slurmctld, no hub process, no lab lock.

What is fake here and why: Slurm's client commands (fake_slurm.py, so a test can make Slurm pend, fail,
hang or forget a job on cue, which the real lab cannot do in milliseconds) and the job's Jupyter
server (a tiny tornado server in the test's loop that answers rcsc3's identity check). Everything
else is real: the poller, the spawner, its subprocesses (sh, env, tail), JupyterHub's own User and
ORM objects, an in-memory database. The real-Slurm tests beside this folder (tests/hub/) cover the
same paths end to end.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pytest
from hubunit import FakeSlurm, IdentityServer, stop_poller


@pytest.fixture(autouse=True)
def no_real_slurm(monkeypatch) -> None:
    """A guard: a real Slurm client reached by mistake (a command not on the fake's PATH) fails on
    this missing configuration instead of submitting to, or cancelling in, the shared lab."""
    monkeypatch.setenv("SLURM_CONF", "/nonexistent/rcsc3-unit-tests/slurm.conf")


@pytest.fixture
def fake_slurm(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "slurm")


# ------------------------------------------------------------------ the spawner's world
@pytest.fixture
def db():
    """JupyterHub's own ORM on an in-memory database, with one user: the account running the tests
    (the spawner looks its home up with getpwnam, as it does for a student)."""
    from jupyterhub import orm

    session = orm.new_session_factory("sqlite:///:memory:")()
    session.add(orm.User(name=pwd.getpwuid(os.geteuid()).pw_name))
    session.commit()
    yield session
    session.close()


@pytest.fixture
async def make_spawner(db, fake_slurm: FakeSlurm, tmp_path: Path, monkeypatch):
    """RcSC3Spawner made the way JupyterHub makes it (User._new_spawner, as jupyterhub's and
    batchspawner's own tests do), with the fake Slurm first on PATH: the hub's own (squeue,
    scontrol, and scancel through the prefix) and the job's (sbatch runs with get_env(), whose PATH
    comes from c.Spawner.environment here; JupyterHub 6 does not keep the hub's). The prefix is
    `env --`, not [] (refused for a root hub) and not sudo (no second account is needed)."""
    from jupyterhub import orm
    from jupyterhub.objects import Hub
    from jupyterhub.user import User

    from rcsc3_spawner.spawner import RcSC3Spawner

    path = f"{fake_slurm.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    monkeypatch.setenv("PATH", path)
    logs = tmp_path / "logs"
    logs.mkdir()

    def make(**kwargs) -> RcSC3Spawner:
        user = User(db.query(orm.User).one(), {})
        settings = dict(
            hub=Hub(), submit_prefix=["env", "--"], api_token="the-servers-own-token", environment={"PATH": path},
            job_log_template=f"{logs}/{{username}}/jupyter-%j.log",
            slurm_poll_interval=30.0, slurm_fast_poll_interval=0.02, server_check_interval=0.02,
            stop_grace_period=0.2, stop_timeout=5.0, pending_timeout=10.0, server_up_timeout=10.0,
        )
        settings.update(kwargs)
        return user._new_spawner("", spawner_class=RcSC3Spawner, **settings)

    yield make
    # a spawn a failed test left running is cancelled as JupyterHub's Stop would, before the poller ends
    leftover = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "RcSC3Spawner.start"]
    for task in leftover:
        task.cancel()
    await asyncio.gather(*leftover, return_exceptions=True)
    poller = RcSC3Spawner._pollers.get(asyncio.get_running_loop())
    if poller is not None:
        await stop_poller(poller)


@pytest.fixture
async def identity_server():
    servers = []

    def make(token: str, mode: str = "genuine") -> IdentityServer:
        servers.append(IdentityServer(token, mode))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
async def make_poller(fake_slurm: FakeSlurm):
    """A SlurmJobPoller whose `squeue` is the fake's, with short intervals and no jitter."""
    from rcsc3_spawner.slurm.poller import SlurmJobPoller

    made = []

    def make(**kwargs) -> SlurmJobPoller:
        settings = dict(squeue=[fake_slurm.cmd("squeue")], interval=30.0, fast_interval=0.02, jitter=0.0, timeout=5.0)
        settings.update(kwargs)
        made.append(SlurmJobPoller(**settings))
        return made[-1]

    yield make
    for poller in made:
        await stop_poller(poller)
