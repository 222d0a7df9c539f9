"""Courses, waiting for a GPU, and why a session ended: a real hub, its real proxy, the real Slurm lab.

The demo config's courses: viz2026 (student1, student2; teacher `teacher`) and hpc2026 (student3),
from the students' unix groups at login; the profile `viz2026-lab` is viz2026's alone.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests
from hubproc import user_jobs, wait_until

pytestmark = pytest.mark.slurm

ONE_GPU = {"profile": "gpu-desktop", "gpus": 1, "cpus": 1, "memory": 1, "walltime": "0:15"}
BOTH_GPUS = {**ONE_GPU, "gpus": 2}


def form(client) -> str:
    r = client.session.get(f"{client.base}/hub/spawn", timeout=20)
    r.raise_for_status()
    return r.text


def test_a_course_profile_is_offered_to_its_students_only(stopped):
    assert 'value="viz2026-lab"' in form(stopped["student1"])
    assert 'value="viz2026-lab"' not in form(stopped["student3"])
    r = stopped["student3"].start({"profile": "viz2026-lab"})
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message.startswith("profile:") and "viz2026" in message and "allowed: gpu-desktop, cpu" in message
    assert user_jobs("student3") == []


def test_the_course_teacher_sees_and_stops_their_course_only(stopped, hub):
    student1, student3 = stopped["student1"], stopped["student3"]
    for c in (student1, student3):
        assert c.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}).status_code in (201, 202)
    for c in (student1, student3):
        c.wait_ready()
    teacher = hub.login("teacher")
    listed = {u["name"] for u in teacher.api("GET", "/users").json()}
    assert {"student1", "student2"} <= listed and "student3" not in listed
    assert teacher.api("DELETE", "/users/student3/server").status_code in (403, 404)  # 404: not even listed
    assert student3.server_model()["ready"]
    assert teacher.api("DELETE", "/users/student1/server").status_code in (202, 204)
    student1.wait_stopped()
    # nor start another course's servers
    assert teacher.api("POST", "/users/student3/server", json={"user_options": {"profile": "cpu"}}).status_code in (403, 404)


def test_a_waiting_job_shows_its_place_and_stop_cancels_it(stopped, hub):
    holder, waiter = stopped["student1"], stopped["student2"]
    assert holder.start(BOTH_GPUS).status_code in (201, 202)  # both of the lab's GPUs
    holder.wait_ready()
    assert waiter.start(ONE_GPU).status_code in (201, 202)
    seen: list[str] = []

    def place_shown() -> bool:
        with waiter.api("GET", "/users/student2/server/progress", stream=True, timeout=30) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:") and "pending" in line:
                    seen.append(line)
                    if re.search(r"number 1 of \d+ waiting for interactive", line):
                        return True
        return False

    wait_until(place_shown, 60, "the spawn page's progress to show the job's place in the queue")
    [job] = user_jobs("student2")
    # JupyterHub's own "Stop" on the spawn page, while the job waits
    assert waiter.stop().status_code in (202, 204)
    wait_until(lambda: job not in user_jobs("student2"), 30, "the pending job to be cancelled")
    waiter.wait_stopped()
    assert "was cancelled" in form(waiter) and "waited for Slurm" in form(waiter)


def test_a_session_that_reaches_its_time_limit_says_so(stopped, hub):
    c = stopped["student1"]
    assert c.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}).status_code in (201, 202)
    c.wait_ready()
    [job] = user_jobs("student1")
    home = c.session.get(f"{c.base}/hub/home", timeout=20).text
    assert re.search(r"Your session: 1[45] min left \(until \d\d:\d\d\)", home), home[:2000]
    # the admin shortens it to one minute: Slurm ends it at its (new) walltime
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], check=True)
    wait_until(lambda: c.server_model() is None, 150, "the job to end at its time limit and the hub to notice")
    note = re.compile(r"Your last session reached its time limit at \d\d:\d\d")
    assert note.search(c.session.get(f"{c.base}/hub/home", timeout=20).text)
    assert note.search(form(c))


def test_a_setting_rcsc3_would_ignore_stops_the_hub(tmp_path):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()\nc.SlurmSpawner.req_partition = 'gpu'\nc.RcSC3Spawner.exec_prefix = 'sudo'\n"
                      "from rcsc3_spawner.inherited_settings import check_config\ncheck_config(c)\n")
    import sys
    from pathlib import Path

    res = subprocess.run([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "c.SlurmSpawner.req_partition" in res.stderr and "use profiles[].partition" in res.stderr
    assert "use c.RcSC3Spawner.submit_prefix" in res.stderr


def test_a_slow_account_lookup_does_not_stall_other_users(slurm_lab, tmp_path):
    """Every account lookup of the hub takes 2 s (an LDAP that hangs): one student's spawn must not
    hold up anyone else's requests, since the spawner looks accounts up off the hub's event loop."""
    from hubproc import Hub

    slow_nss = ("import pwd, time\n_getpwnam = pwd.getpwnam\n"
                "def _slow(name):\n    time.sleep(2)\n    return _getpwnam(name)\npwd.getpwnam = _slow\n")
    workdir = tmp_path / "hub"
    workdir.mkdir()
    workdir.chmod(0o755)
    tmp_path.chmod(0o755)
    hub = Hub(workdir, extra_config=slow_nss)
    hub.start()
    try:
        spawning, other = hub.login("student1"), hub.login("student2")
        t0 = time.monotonic()
        assert spawning.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}).status_code in (201, 202)
        latencies = []
        while time.monotonic() - t0 < 6:  # the spawn's lookups happen in these seconds
            s = time.monotonic()
            r = requests.get(f"{hub.url}/hub/api/users/student2", headers={"Authorization": f"token {other.token}"},
                             timeout=20)
            latencies.append(time.monotonic() - s)
            assert r.status_code == 200
        assert max(latencies) < 1.0, latencies
        spawning.wait_ready(timeout=120)
    finally:
        hub.stop()
        for job in user_jobs("student1"):
            subprocess.run(["scancel", job], check=False)
