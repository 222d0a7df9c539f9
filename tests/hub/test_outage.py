"""slurmctld goes away for a minute: servers are kept, and a stop asked meanwhile still cancels the job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hubproc import user_jobs, wait_until

pytestmark = pytest.mark.slurm

RCSC3 = str(Path(sys.executable).parent / "rcsc3")


# Only this network namespace's slurmctld (the one-host lab's), not the multi-host lab's on its hub.
THIS_NETNS = ["--ns", str(os.getpid()), "--nslist", "net"]


def stop_slurmctld() -> None:
    subprocess.run(["pkill", "-x", *THIS_NETNS, "slurmctld"], check=False)
    wait_until(lambda: subprocess.run(["pgrep", "-x", *THIS_NETNS, "slurmctld"]).returncode != 0, 30, "slurmctld to stop")


def start_slurmctld() -> None:
    subprocess.run([RCSC3, "lab", "up", "--no-install"], check=True, stdin=subprocess.DEVNULL, timeout=120)


def test_slurmctld_outage_keeps_server_and_orphans_nothing(stopped, hub):
    c = stopped["student1"]
    c.start({"profile": "cpu", "cpus": 1})
    c.wait_ready()
    [job] = user_jobs("student1")
    stop_slurmctld()
    try:
        t0 = time.monotonic()
        checks = 0
        # 60 s without Slurm: the hub's polls (every 3 s here) see "unknown", never "gone".
        while time.monotonic() - t0 < 60:
            model = c.server_model()
            assert model is not None and model["ready"], f"server lost after {time.monotonic() - t0:.0f}s: {model}"
            checks += 1
            time.sleep(2)  # paces the observation window; nothing is awaited here
        assert checks >= 10
        assert "Slurm did not answer" in hub.log_text()
    finally:
        start_slurmctld()
    assert user_jobs("student1") == [job]
    assert c.server_model()["ready"]

    # Now stop the server while slurmctld is down: the cancel must still happen once it is back.
    stop_slurmctld()
    try:
        r = c.stop()
        assert r.status_code in (202, 204)
        wait_until(lambda: c.server_model() is None, 60, "the hub to drop the server")
    finally:
        start_slurmctld()
    wait_until(lambda: user_jobs("student1") == [], 60, "the deferred scancel to cancel the job")
