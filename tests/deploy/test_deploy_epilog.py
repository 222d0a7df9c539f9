"""The node epilog on the real lab Slurm: a cancelled job leaves nothing behind.

The lab is (re)configured with the checkout's hub_config/slurm/epilog.sh as its Epilog
(what `make lab` does). A real student (student3) submits a job through sudo, as the hub
does; the job leaves behind what a desktop and an engine set leave when they are killed:

* an "X server" that double-forked and called setsid (so it escaped the job's process
  tree and Slurm's proctrack/linuxproc no longer sees it), ignoring SIGTERM, listening on
  /tmp/.X11-unix/X<N> and holding /tmp/.X<N>-lock with its pid;
* a "desktop supervisor", escaped the same way, listening on the lock-less socket
  /tmp/.X11-unix/X<M> (rcsc3's Xvnc uses -displayfd and writes no lock) and on web.sock
  in a private rcsc3 runtime dir /tmp/rcsc3-desktop-student3-*/ (0700, with vnc.sock);
  It also listens on /tmp/.ICE-unix/<pid>, as xfce4-session does: killed, it leaves that
  socket, and a later session given the same pid would exit at once;
* an escaped "ipengine".

The job is then stopped (plain `scancel`, and the hub's TERM-then-KILL), and a bounded
poll asserts that no process of the job is left, and no lock, socket or runtime dir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # polling.py, procfs.py
from polling import wait_until  # noqa: E402
from procfs import user_proc_fields  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EPILOG = ROOT / "hub_config" / "slurm" / "epilog.sh"
RCSC3 = Path(sys.executable).parent / "rcsc3"
from needs import IN_CI  # noqa: E402

STUDENT = "student3"
JOB_NAME = "rcsc3-deploy-epilog"

pytestmark = pytest.mark.slurm

# Run by the student inside the job (system python3): make the leftovers, then report.
LEFTOVERS = r'''
import os, signal, socket, sys, time

job = os.environ["SLURM_JOB_ID"]
n, m = sys.argv[1], sys.argv[2]
runtime = f"/tmp/rcsc3-desktop-{os.environ['USER']}-deploytest{job}"


def daemon(body):
    """Double fork + setsid: the grandchild is re-parented to init, out of the job's tree."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        body()
    finally:
        os._exit(0)


def listen(path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(1)
    return s


def x_server():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    sock = listen(f"/tmp/.X11-unix/X{n}")
    with open(f"/tmp/.X{n}-lock", "w") as f:
        f.write(f"{os.getpid():10d}\n")
    while sock:
        time.sleep(1)


def desktop_supervisor():
    os.mkdir(runtime, 0o700)
    socks = [listen(f"/tmp/.X11-unix/X{m}"), listen(f"{runtime}/web.sock"), listen(f"{runtime}/vnc.sock"),
             listen(f"/tmp/.ICE-unix/{os.getpid()}")]  # as xfce4-session does
    with open(f"{runtime}/Xauthority", "wb") as f:
        f.write(b"cookie")
    while socks:
        time.sleep(1)


def engine():
    while True:
        time.sleep(1)


for body in (x_server, desktop_supervisor, engine):
    daemon(body)
print("leftovers made", flush=True)
'''

JOB_SCRIPT = """#!/bin/bash
set -eu
python3 {leftovers} "$1" "$2"
exec sleep 600
"""


# ---------------------------------------------------------------- helpers

def run(argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def as_student(*argv: str) -> subprocess.CompletedProcess:
    return run(["sudo", "-n", "-u", STUDENT, "--", *argv])


def poll(check, timeout: float, what: str, interval: float = 0.2):
    """The shared bounded poll (tests/polling.py)."""
    return wait_until(check, timeout, what, interval)


def student_jobs() -> list[str]:
    res = run(["squeue", "-h", "-u", STUDENT, "-o", "%A %T"])
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\n") if res.stdout.strip() else []


def job_state(job: str) -> str:
    res = run(["squeue", "-h", "-j", job, "-o", "%T"])
    return res.stdout.strip() if res.returncode == 0 else ""


def pids_of_job(uid: int, job: str) -> list[int]:
    """Processes of uid whose environment carries SLURM_JOB_ID=job (they keep it when they escape)."""
    marker = f"SLURM_JOB_ID={job}".encode()
    found = [pid for pid, env in user_proc_fields(uid, "environ") if marker in env]
    return sorted(found)


def parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def slurm_tracked(job: str) -> set[int]:
    res = run(["scontrol", "listpids", job])
    return {int(line.split()[0]) for line in res.stdout.splitlines()[1:] if line.split() and line.split()[0].isdigit()}


def ice_sockets(uid: int) -> set[Path]:
    """The user's session-manager sockets /tmp/.ICE-unix/<pid>."""
    return {p for p in Path("/tmp/.ICE-unix").glob("[0-9]*") if p.is_socket() and p.stat().st_uid == uid}


def free_displays(count: int) -> list[int]:
    free = [
        n for n in range(640, 700)
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists()
    ]
    assert len(free) >= count
    return free[:count]


def configured_epilog() -> str:
    res = run(["scontrol", "show", "config"])
    assert res.returncode == 0, res.stderr
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "Epilog":
            return value.strip()
    return ""


def node_state() -> str:
    host = run(["hostname", "-s"]).stdout.strip()
    return run(["sinfo", "-h", "-N", "-n", host, "-o", "%T"]).stdout.strip()


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lab_with_epilog(slurm_lab) -> str:
    """The lab's Epilog is this checkout's hub_config/slurm/epilog.sh (installed by `rcsc3 lab up`)."""
    want = EPILOG.read_text()
    path = configured_epilog()
    if not path or path == "(null)" or not Path(path).exists() or Path(path).read_text() != want:
        res = run([str(RCSC3), "lab", "up", "--no-install", "--epilog", str(EPILOG)], timeout=180)
        assert res.returncode == 0, f"rcsc3 lab up --epilog failed:\n{res.stdout}\n{res.stderr}"
        path = poll(lambda: (p := configured_epilog()) not in ("", "(null)") and p, 30, "Slurm to report the Epilog")
    assert Path(path).read_text() == want, f"{path} is not {EPILOG}: `rcsc3 lab up --epilog` did not install it"
    st = os.stat(path)
    assert st.st_uid == 0 and st.st_mode & 0o111, f"{path} must be root's and executable"
    return path


@pytest.fixture
def student3_idle(lab_with_epilog):
    """student3 exists and has no other job: the epilog then takes its "last job here" branch."""
    try:
        pw = pwd.getpwnam(STUDENT)
    except KeyError:
        if IN_CI:
            pytest.fail(f"{STUDENT} is missing: run `rcsc3 lab users`")
        pytest.skip(f"{STUDENT} is missing: run `rcsc3 lab users`")
    deadline = time.monotonic() + 180
    while student_jobs() and time.monotonic() < deadline:
        time.sleep(1)
    if student_jobs():
        msg = f"{STUDENT} still has jobs after 180 s: {student_jobs()}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    Path("/tmp/.X11-unix").mkdir(mode=0o1777, exist_ok=True)
    return pw


# ---------------------------------------------------------------- the test

def stop_like_scancel(job: str) -> None:
    res = as_student("scancel", job)
    assert res.returncode == 0, res.stderr


def stop_like_the_hub(job: str) -> None:
    """RcSC3Spawner.stop(): SIGTERM to the batch step, SIGKILL to the whole job after the grace period."""
    res = as_student("scancel", "--batch", "--signal=TERM", job)
    assert res.returncode == 0, res.stderr
    time.sleep(0.4)
    res = as_student("scancel", "--signal=KILL", job)
    assert res.returncode == 0 or "Invalid job id" in res.stderr or "already completing" in res.stderr, res.stderr


@pytest.mark.parametrize("stop", [stop_like_scancel, stop_like_the_hub], ids=["scancel", "hub-stop"])
def test_cancelled_job_leaves_nothing_behind(student3_idle, stop) -> None:
    pw = student3_idle
    n, m = free_displays(2)
    lock, x_sock, lockless_sock = Path(f"/tmp/.X{n}-lock"), Path(f"/tmp/.X11-unix/X{n}"), Path(f"/tmp/.X11-unix/X{m}")
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-deploy-epilog-"))
    job = ""
    try:
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
        (workdir / "leftovers.py").write_text(LEFTOVERS)
        script = workdir / "job.sh"
        script.write_text(JOB_SCRIPT.format(leftovers=workdir / "leftovers.py"))
        for f in (script, workdir / "leftovers.py"):
            f.chmod(0o755)
        res = as_student(
            "sbatch", "--parsable", f"--job-name={JOB_NAME}", "--partition=interactive", "--ntasks=1",
            "--mem=64M", "--time=5", f"--output={workdir}/%j.out", f"--chdir={workdir}", str(script), str(n), str(m),
        )
        assert res.returncode == 0, f"sbatch as {STUDENT} failed: {res.stderr}"
        job = res.stdout.strip().split(";")[0]
        runtime = Path(f"/tmp/rcsc3-desktop-{STUDENT}-deploytest{job}")
        log = workdir / f"{job}.out"

        def leftovers_ready() -> bool:
            state = job_state(job)
            if state not in ("PENDING", "CONFIGURING", "RUNNING"):
                pytest.fail(f"job {job} is {state or 'gone'} before its leftovers were made; log:\n"
                            f"{log.read_text() if log.exists() else '(none)'}")
            return (log.exists() and "leftovers made" in log.read_text()
                    and lock.exists() and (runtime / "web.sock").exists() and len(pids_of_job(pw.pw_uid, job)) >= 4)

        poll(leftovers_ready, 120, f"job {job} to run and make its leftovers")
        ice = {p for p in ice_sockets(pw.pw_uid) if int(p.name) in pids_of_job(pw.pw_uid, job)}
        assert ice, f"the job's session-manager socket is missing: {ice_sockets(pw.pw_uid)}"
        # The X server, the supervisor and the engine escaped: Slurm tracks the batch step's
        # process tree only (proctrack/linuxproc), and they are neither in it nor children of it.
        tracked = slurm_tracked(job)
        assert tracked, f"`scontrol listpids {job}` lists no process of the job"
        daemons = [p for p in pids_of_job(pw.pw_uid, job) if p not in tracked and parent(p) not in tracked]
        assert len(daemons) >= 3, f"expected 3 escaped daemons; job processes {pids_of_job(pw.pw_uid, job)}, tracked {tracked}"
        assert int(lock.read_text()) in daemons
        for path in (lock, x_sock, lockless_sock, runtime):
            assert path.stat().st_uid == pw.pw_uid, f"{path} is not {STUDENT}'s"

        stop(job)

        def all_gone():
            return (not job_state(job) and not pids_of_job(pw.pw_uid, job)
                    and not any(p.exists() for p in (lock, x_sock, lockless_sock, runtime, *ice)))

        try:
            poll(all_gone, 90, f"job {job} and everything it left to be gone")
        except pytest.fail.Exception:
            left = {str(p): p.exists() for p in (lock, x_sock, lockless_sock, runtime, *ice)}
            raise AssertionError(
                f"left behind after the epilog: job state {job_state(job)!r}, processes {pids_of_job(pw.pw_uid, job)}, "
                f"files {left}"
            ) from None
        # an epilog that failed or hung would have drained the node
        state = node_state()
        assert "drain" not in state and "down" not in state, f"node is {state} after the epilog"
    finally:
        if job:
            run(["scancel", job])
        for pid in pids_of_job(pw.pw_uid, job) if job else []:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for p in (lock, x_sock, lockless_sock):
            try:
                if p.exists() and p.stat().st_uid == pw.pw_uid:
                    p.unlink()
            except FileNotFoundError:
                pass
        if job:
            shutil.rmtree(f"/tmp/rcsc3-desktop-{STUDENT}-deploytest{job}", ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
