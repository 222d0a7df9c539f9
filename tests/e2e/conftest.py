"""The student's journey end to end: a real hub (demo config, real configurable-http-proxy), real Slurm jobs,
real Xvnc + xfce, and a real headless Chromium driven the way a person drives it.

Locally a missing Chromium, Xvnc or Slurm lab skips; in CI (`CI` set) it fails.
Whatever a test starts (servers, jobs, desktop processes, browsers, notebooks)
is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # hubproc, hubclient
sys.path.insert(0, str(HERE))

from e2e_journey import desktop_processes  # noqa: E402
from hubproc import Hub, stop_all_servers, user_jobs, wait_until  # noqa: E402

CI = bool(os.environ.get("CI"))
ARTIFACTS = Path(os.environ.get("RCSC3_ARTIFACTS", REPO / "artifacts")) / "e2e"
USERS = ("student1", "student2")
TOOLS = (os.environ.get("RCSC3_CHROMIUM", "/usr/bin/chromium"), "Xvnc", "xfce4-session", "sbatch", "squeue")


def need_tools() -> None:
    for tool in TOOLS:
        if not (shutil.which(tool) or os.access(tool, os.X_OK)):
            if CI:
                pytest.fail(f"{tool} is required in CI but not installed")
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        if CI:
            pytest.fail("the e2e tests run as root in CI (they check other users' processes and sockets)")
        pytest.skip("needs root")


def _stop_everything(hub: Hub, users=USERS) -> None:
    stop_all_servers(hub, users, "e2e")


@pytest.fixture(scope="session")
def e2e_hub(slurm_lab):
    need_tools()
    before = {u: {p.split()[0] for p in desktop_processes(u)} for u in USERS}
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-e2e-hub-"))
    workdir.chmod(0o755)
    hub = Hub(workdir)
    hub.started_jobs = set()  # job ids of the servers the tests started, for cleanup
    try:
        hub.start()
        yield hub
    finally:
        if hub.proc is not None:
            _stop_everything(hub)
        hub.stop()
        # anything of ours Slurm still runs: cancel it, bounded wait
        for user in USERS:
            for job in user_jobs(user):
                if job in hub.started_jobs:
                    subprocess.run(["scancel", job], check=False)
        try:
            wait_until(lambda: not any(j in hub.started_jobs for u in USERS for j in user_jobs(u)), 60,
                       "the e2e jobs to leave the queue")
        finally:
            # desktop processes that were not there before the session are ours: end them by pid
            for user in USERS:
                for line in desktop_processes(user):
                    pid = line.split()[0]
                    if pid not in before[user]:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            if hub.log_path.exists():
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shutil.copy(hub.log_path, ARTIFACTS / "hub.log")
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def idle(e2e_hub):
    """The students start with no server, and end with none (servers stopped through the hub)."""
    _stop_everything(e2e_hub)
    yield e2e_hub
    _stop_everything(e2e_hub)


@pytest.fixture
def shots(request) -> Path:
    path = ARTIFACTS / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
