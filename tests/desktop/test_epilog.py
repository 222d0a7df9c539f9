"""The Slurm epilog (hub_config/slurm/epilog.sh) removes a finished job's leftovers.

The script is run as Slurm runs it (root, SLURM_JOB_ID/SLURM_JOB_USER set) against
real leftovers made by test user rdtest2: a daemonized "desktop" process that
escaped its job (re-parented to init), a stale X socket, and an rcsc3 runtime
dir. Whether the user has another job on the node is pinned with
RCSC3_EPILOG_OTHER_JOBS so both branches run without a second Slurm job.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import dead_pids, kill_user_processes, poll, stale_socket, user_pids

EPILOG = Path(__file__).resolve().parents[2] / "hub_config" / "slurm" / "epilog.sh"

# double fork + setsid: what dbus, agents and ipengines do to outlive their job
DAEMON = """
import os, sys, time
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
os.environ['SLURM_JOB_ID'] = sys.argv[1]
os.execve('/bin/sleep', ['sleep', '300'], os.environ)
"""


def leave_daemon(user: str, job: str) -> None:
    pw = pwd.getpwnam(user)
    subprocess.run(["python3", "-c", DAEMON, job], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                   env={"SLURM_JOB_ID": job, "PATH": "/usr/bin:/bin"}, check=True, timeout=20)


def daemon_jobs(user: str) -> list[str]:
    jobs = []
    for pid in user_pids(user):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        jobs += [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"SLURM_JOB_ID=")]
    return sorted(jobs)


def run_epilog(job: str, user: str, other_jobs: bool) -> None:
    env = {"SLURM_JOB_ID": job, "SLURM_JOB_USER": user, "RCSC3_EPILOG_OTHER_JOBS": "1" if other_jobs else "0",
           "PATH": "/usr/bin:/bin", "RCSC3_EPILOG_VERBOSE": "1"}
    res = subprocess.run(["bash", str(EPILOG)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr  # a failing epilog drains the node


@pytest.fixture
def rdtest2(test_users):
    kill_user_processes("rdtest2", grace=0)
    yield "rdtest2"
    kill_user_processes("rdtest2", grace=0)


def make_x_and_runtime_leftovers(user: str) -> tuple[Path, Path]:
    pw = pwd.getpwnam(user)
    Path("/tmp/.X11-unix").mkdir(mode=0o1777, exist_ok=True)
    sock = Path("/tmp/.X11-unix/X97")
    sock.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # bound, never listened: what a SIGKILLed X server leaves
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    rt = Path(f"/tmp/rcsc3-desktop-{user}-epilogtest")
    rt.mkdir(mode=0o700, exist_ok=True)
    (rt / "Xauthority").write_bytes(b"x")
    os.chown(rt, pw.pw_uid, pw.pw_gid)
    return sock, rt


def test_last_job_of_the_user_kills_everything_and_cleans_x_and_runtime_dirs(rdtest2):
    leave_daemon(rdtest2, "4242")
    leave_daemon(rdtest2, "777")  # e.g. an ipengine of an earlier job, escaped too
    poll(lambda: daemon_jobs(rdtest2) == ["4242", "777"], 10, "the leftovers to run")
    sock, rt = make_x_and_runtime_leftovers(rdtest2)
    run_epilog("4242", rdtest2, other_jobs=False)
    assert user_pids(rdtest2) == []
    assert not sock.exists() and not rt.exists()


def test_a_killed_sessions_files_in_tmp_go_and_a_live_sessions_stay(rdtest2):
    """xfce4-session's ICE-auth script, ssh-agent's and dbus-daemon's sockets of a killed desktop."""
    pw = pwd.getpwnam(rdtest2)
    [dead] = dead_pids(1)
    ice_dead, ice_live = Path("/tmp/.xfsm-ICE-epiTS1"), Path("/tmp/.xfsm-ICE-epiTS2")
    for path, pid in ((ice_dead, dead), (ice_live, 1)):  # pid 1 stands for a live session
        path.write_text(f'remove protoname=ICE protodata="" netid=unix/vm:/tmp/.ICE-unix/{pid} authname=MIT-MAGIC-COOKIE-1\n')
        os.chown(path, pw.pw_uid, pw.pw_gid)
    agent_dir = Path("/tmp/ssh-epilogtest")
    agent_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(agent_dir, pw.pw_uid, pw.pw_gid)
    agent, bus = agent_dir / f"agent.{dead}", Path("/tmp/dbus-epilogtest")
    for path in (agent, bus):
        path.unlink(missing_ok=True)
        stale_socket(path, pw.pw_uid, pw.pw_gid)
    live_bus = Path("/tmp/dbus-epilogtestlive")
    live_bus.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(live_bus))
        listener.listen()
        os.chown(live_bus, pw.pw_uid, pw.pw_gid)
        run_epilog("4242", rdtest2, other_jobs=False)
        assert not ice_dead.exists() and not agent.exists() and not agent_dir.exists() and not bus.exists()
        assert ice_live.exists() and live_bus.exists()
    finally:
        listener.close()
        for path in (ice_live, live_bus, ice_dead, agent, bus):
            path.unlink(missing_ok=True)
        if agent_dir.exists():
            agent_dir.rmdir()


def test_with_another_job_only_this_jobs_processes_go(rdtest2):
    leave_daemon(rdtest2, "4242")
    leave_daemon(rdtest2, "777")
    poll(lambda: daemon_jobs(rdtest2) == ["4242", "777"], 10, "the leftovers to run")
    run_epilog("4242", rdtest2, other_jobs=True)
    assert daemon_jobs(rdtest2) == ["777"]


def test_never_touches_system_users():
    res = subprocess.run(["bash", str(EPILOG)], env={"SLURM_JOB_ID": "1", "SLURM_JOB_USER": "root", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0 and os.getpid() in [int(p) for p in subprocess.run(
        ["pgrep", "-U", "0"], capture_output=True, text=True, check=False).stdout.split()]
