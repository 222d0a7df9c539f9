"""rcsc3/api/job on the student's server: Slurm's real end of the job, an admin's change of it, the job-log warnings.

The real test spawns a student's server through the real hub into a real Slurm job, asks the API
with the student's own token through the proxy, and changes the job's time limit as the admin
does (`scontrol update`, as root). The unit tests pin the parsing and the warning rule; the ones
for a Slurm that does not answer use a stand-in scontrol (a shell script), since the shared
lab's slurmctld cannot be made to hang.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from hubproc import user_jobs, wait_until

from rcsc3_proxy.server.job_clock import JobClock, due_warning, job_fields, slurm_time, warning_line

SHOW_JOB = ("JobId=4242 JobName=spawner-jupyterhub UserId=ana(1001) GroupId=ana(1001) JobState=RUNNING Reason=None "
            "TimeLimit=01:30:00 StartTime=2026-12-01T20:50:09 EndTime=2026-12-01T22:20:09 Deadline=N/A "
            "Partition=interactive AllocNode:Sid=hub:123 NodeList=gpu[01-02] NumNodes=2 CPUs/Task=1 "
            "WorkDir=/home/ana StdOut=/home/ana/.rcsc3/jupyterhub_slurmspawner_4242.log Power=\n")


# ---------------------------------------------------------------------------------------------- unit
def test_the_jobs_record_is_read_by_its_id_and_first_fields():
    other = SHOW_JOB.replace("JobId=4242", "JobId=4243").replace("Partition=interactive", "Partition=cpu")
    fields = job_fields(other + SHOW_JOB, "4242")
    assert (fields["Partition"], fields["NodeList"], fields["EndTime"], fields["CPUs/Task"]) == (
        "interactive", "gpu[01-02]", "2026-12-01T22:20:09", "1")
    with pytest.raises(RuntimeError, match="no record of job 99"):
        job_fields(SHOW_JOB, "99")


def test_slurm_times_are_local_time_read_back_as_utc(monkeypatch):
    try:
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        assert slurm_time("2026-12-01T17:20:09") == datetime(2026, 12, 1, 22, 20, 9, tzinfo=UTC)  # EST = UTC-5
        monkeypatch.setenv("TZ", "Europe/Paris")
        time.tzset()
        assert slurm_time("2026-07-01T12:00:00") == datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)  # CEST = UTC+2
    finally:
        monkeypatch.undo()
        time.tzset()
    for unknown in ("Unknown", "None", "N/A", "", "soon"):
        assert slurm_time(unknown) is None


def test_warnings_come_once_per_threshold_the_smallest_passed_and_again_after_an_extension():
    thresholds, warned = [600, 120], set()
    said = [due_warning(left, thresholds, warned) for left in (3600, 601, 599, 500, 121, 119, 60)]
    assert said == [None, None, 600, None, None, 120, None]
    # extended by the admin to an hour: both come again on the way down
    assert due_warning(3600, thresholds, warned) is None and warned == set()
    assert due_warning(590, thresholds, warned) == 600
    # a job that starts with 5 minutes left gets one line (not two), then the 2-minute one
    warned = set()
    assert [due_warning(left, thresholds, warned) for left in (300, 290, 100)] == [600, None, 120]
    end = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert warning_line(end, 599) == "rcsc3: this session ends at 12:00 UTC (10 minutes left): save your work"
    assert warning_line(end, 30).endswith("(1 minute left): save your work")


def _stand_in_scontrol(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "scontrol"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


async def test_a_slurm_that_stops_answering_leaves_the_last_known_end_marked_stale(tmp_path):
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    local_end = end.astimezone().strftime("%Y-%m-%dT%H:%M:%S")  # scontrol prints local time
    answer = tmp_path / "answer"
    answer.write_text(SHOW_JOB.replace("EndTime=2026-12-01T22:20:09", f"EndTime={local_end}").replace("gpu[01-02]", "gpu01"))
    scontrol = _stand_in_scontrol(tmp_path, f'[ -e {tmp_path}/hang ] && exec sleep 30\ncat {answer}\n')
    clock = JobClock(job_id="4242", scontrol=str(scontrol), slurm_timeout=0.5, refresh_seconds=0)
    assert await clock.known() is not None
    first = clock.snapshot()
    assert first | {"seconds_left": 0, "checked_at": ""} == {
        "job_id": "4242", "partition": "interactive", "nodes": ["gpu01"], "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds_left": 0, "state": "RUNNING", "checked_at": "", "stale": False}
    assert 3590 <= first["seconds_left"] <= 3600

    (tmp_path / "hang").touch()
    t0 = time.monotonic()
    await clock.known()
    assert time.monotonic() - t0 < 5  # the call was cut off at the timeout
    stale = clock.snapshot()
    assert stale["stale"] is True and "did not answer within 0.5 s" in stale["error"]
    assert (stale["end_time"], stale["checked_at"], stale["nodes"]) == (first["end_time"], first["checked_at"], ["gpu01"])


async def test_a_slurm_that_never_answered_has_no_job_to_tell_and_says_why(tmp_path):
    clock = JobClock(job_id="4242", scontrol=str(_stand_in_scontrol(tmp_path, "echo 'slurm_load_jobs error: Unable to contact"
                                                                               " slurm controller' >&2; exit 1\n")))
    assert await clock.known() is None
    assert "Unable to contact slurm controller" in clock.error
    missing = JobClock(job_id="4242", scontrol=str(tmp_path / "no-such-scontrol"))
    assert await missing.known() is None and "cannot run" in missing.error


async def test_the_clock_writes_the_due_warning_to_the_job_log(tmp_path):
    end = datetime.now(UTC) + timedelta(minutes=5, seconds=-1)  # 5 minutes left
    answer = tmp_path / "answer"
    answer.write_text(SHOW_JOB.replace("2026-12-01T22:20:09", end.astimezone().strftime("%Y-%m-%dT%H:%M:%S")))
    log = io.StringIO()
    clock = JobClock(job_id="4242", scontrol=str(_stand_in_scontrol(tmp_path, f"cat {answer}\n")), stream=log)
    clock.start()
    try:
        for _ in range(100):  # the loop's first round: refresh, then warn
            if log.getvalue():
                break
            await asyncio.sleep(0.05)
    finally:
        clock.stop()
    assert log.getvalue() == f"rcsc3: this session ends at {end:%H:%M} UTC (5 minutes left): save your work\n"


# ---------------------------------------------------------------------------------------------- real
def _show_job(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=20, check=True)
    return job_fields(out.stdout, job)


def _end_utc(job: str) -> str:
    return slurm_time(_show_job(job)["EndTime"]).strftime("%Y-%m-%dT%H:%M:%SZ")


def _process_env(job: str, program: bytes) -> dict[str, str] | None:
    """The environment a process of the job running `program` started with (root reads /proc)."""
    out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True, timeout=20, check=True)
    for pid in (line.split()[0] for line in out.stdout.splitlines()[1:] if line.split() and line.split()[0].isdigit()):
        try:
            if program in Path(f"/proc/{pid}/cmdline").read_bytes():
                raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        except OSError:
            continue
    return None


@pytest.mark.slurm
def test_the_api_tells_slurms_real_end_and_follows_the_admins_change(stopped, hub):
    c = stopped["student1"]
    assert c.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}).status_code in (201, 202)
    c.wait_ready()
    [job] = user_jobs("student1")
    url = f"{hub.url}/user/student1/rcsc3/api/job"

    def ask(token: str = c.token) -> requests.Response:
        return requests.get(url, headers={"Authorization": f"token {token}"}, timeout=30)

    answer = ask()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    fields = _show_job(job)
    nodes = subprocess.run(["scontrol", "show", "hostnames", fields["NodeList"]], capture_output=True, text=True,
                           timeout=20, check=True).stdout.split()
    assert (body["job_id"], body["partition"], body["nodes"], body["state"]) == (job, "cpu", nodes, "RUNNING")
    assert body["end_time"] == _end_utc(job) and body["stale"] is False
    end = datetime.strptime(body["end_time"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs((end - datetime.now(UTC)).total_seconds() - body["seconds_left"]) <= 5
    assert 13 * 60 < body["seconds_left"] <= 15 * 60  # the form's 0:15, less the start
    assert answer.headers["Cache-Control"] == "no-store"

    # asking is not activity: a page polling the time left must not keep an idle server from the culler
    def last_activity() -> str:
        return requests.get(f"{hub.url}/user/student1/api/status", headers={"Authorization": f"token {c.token}"},
                            timeout=30).json()["last_activity"]

    before = last_activity()
    assert [ask().status_code for _ in range(3)] == [200] * 3
    assert last_activity() == before

    # a script in the session (here a notebook's kernel; a terminal gets the same environment):
    # curl -H "Authorization: token $JUPYTERHUB_API_TOKEN" "$JUPYTERHUB_SERVICE_URL"rcsc3/api/job
    kernel = requests.post(f"{hub.url}/user/student1/api/kernels", json={"name": "python3"},
                           headers={"Authorization": f"token {c.token}"}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    env = wait_until(lambda: _process_env(job, b"ipykernel"), 60, "the kernel's process")
    own = requests.get(env["JUPYTERHUB_SERVICE_URL"] + "rcsc3/api/job",
                       headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}, timeout=30)
    assert own.status_code == 200 and own.json()["job_id"] == job, own.text

    # another student's token does not open student1's server, nor does no token
    other = ask(stopped["student2"].token)
    assert other.status_code in (403, 404) and job not in other.text
    assert requests.get(url, timeout=30, allow_redirects=False).status_code in (302, 403)

    # the admin shortens the job: the API tells the new end within a minute, and the job log warns
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=3"], check=True, capture_output=True, timeout=30)
    new_end = _end_utc(job)
    assert new_end != body["end_time"]
    t0 = time.monotonic()
    wait_until(lambda: ask().json()["end_time"] == new_end, 60, f"the API to show job {job}'s new end {new_end}", 1)
    print(f"new end shown after {time.monotonic() - t0:.1f} s")
    log = Path(_show_job(job)["StdOut"])
    line = wait_until(lambda: next((ln for ln in log.read_text().splitlines() if "rcsc3: this session ends at" in ln), ""),
                      10, "the job log's warning")
    # about 2.5 minutes left when the clock saw the change: the 10-minute warning (or the 2-minute one on a slow lab)
    assert re.fullmatch(rf"rcsc3: this session ends at {new_end[11:16]} UTC \(([23]) minutes left\): save your work", line), line
    assert "Traceback" not in log.read_text()
