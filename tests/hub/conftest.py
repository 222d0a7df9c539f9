"""A real JupyterHub (with the real configurable-http-proxy) running the demo config on test ports."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hubclient import HubClient  # noqa: E402
from hubproc import STUDENTS, Hub, user_jobs, wait_until  # noqa: E402,F401


@pytest.fixture(scope="session")
def hub(slurm_lab):
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-hub-"))
    workdir.chmod(0o755)
    h = Hub(workdir)
    h.start()
    yield h
    for user in STUDENTS:
        try:
            c = h.login(user)
            for name in list(c.user_model().get("servers", {})):
                c.stop(name)
        except Exception:
            pass
    h.stop()
    for user in STUDENTS:
        for job in user_jobs(user):
            subprocess.run(["scancel", job], check=False)


@pytest.fixture(scope="session")
def clients(hub) -> dict[str, HubClient]:
    return {u: hub.login(u) for u in STUDENTS}


@pytest.fixture
def stopped(clients):
    """Make sure each test starts and ends with no server and no job for the students."""
    def clean():
        for c in clients.values():
            for name in list(c.user_model().get("servers", {})):
                c.stop(name)
                c.wait_stopped(name)
            for job in user_jobs(c.username):
                subprocess.run(["scancel", job], check=False)
        wait_until(lambda: not any(user_jobs(u) for u in STUDENTS), 30, "students' jobs to leave the queue")
    clean()
    yield clients
    clean()
