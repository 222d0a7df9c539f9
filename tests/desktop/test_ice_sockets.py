"""A desktop session that dies at once is started again; stale session-manager sockets are removed.

Seen in CI and in a loop of the lifecycle tests (about one desktop start in 25): xfce4-session
listens on /tmp/.ICE-unix/<its pid>. libICE unlinks a stale socket of its own user first, but
the directory is sticky: when the pid's stale socket belongs to another user (a session
SIGKILLed earlier), the new session cannot listen and exits ("Unable to establish ICE
listeners"). The lab machine had ~1400 such sockets for a pid_max of 32768.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import dead_pids, poll, stale_socket, user_processes

from rcsc3_proxy.desktop.procs import remove_stale_ice_sockets, remove_stale_session_auth_files

XSTARTUP = Path(__file__).resolve().parents[2] / "rcsc3_proxy" / "desktop" / "session" / "xstartup"
FAILING_SESSION = """#!/bin/sh
# test session: {mode}
mark="$HOME/.rcsc3-test-session-failed"
if [ "{mode}" = always ] || [ ! -e "$mark" ]; then
    : > "$mark"
    echo "Unable to establish ICE listeners (test: a session that exits at once)" >&2
    exit 1
fi
rm -f "$mark"
exec /bin/sh {xstartup}
"""


def test_only_our_sockets_of_gone_processes_are_removed(tmp_path):
    me, other = os.getuid(), pwd.getpwnam("rdtest2").pw_uid
    dead, dead_too = dead_pids(2)
    ours_dead, ours_alive, not_a_pid = tmp_path / str(dead), tmp_path / str(os.getpid()), tmp_path / "x"
    theirs_dead = tmp_path / str(dead_too)
    for path, uid in ((ours_dead, me), (ours_alive, me), (not_a_pid, me), (theirs_dead, other)):
        stale_socket(path, uid)
    assert remove_stale_ice_sockets(str(tmp_path)) == [str(ours_dead)]
    assert not ours_dead.exists() and ours_alive.exists() and not_a_pid.exists() and theirs_dead.exists()
    assert remove_stale_ice_sockets(str(tmp_path / "missing")) == []


@pytest.fixture
def script_dir():
    """A directory the test user can read (pytest's tmp_path is root's, 0700)."""
    d = Path(tempfile.mkdtemp(prefix="rcsc3-test-session-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _session_script(directory: Path, mode: str) -> list[str]:
    script = directory / "xstartup"
    script.write_text(FAILING_SESSION.format(mode=mode, xstartup=XSTARTUP))
    script.chmod(0o755)
    return ["/bin/sh", str(script)]


def test_a_session_that_exits_at_once_is_started_again(server_factory, script_dir):
    home = Path(pwd.getpwnam("rdtest3").pw_dir)
    try:
        server = server_factory("rdtest3", config={"xstartup": _session_script(script_dir, "once")},
                                env={"RCSC3_DESKTOP_PRESTART": "1"})
        server.wait_running()
        poll(lambda: "xfce4-session" in user_processes("rdtest3") and "xfwm4" in user_processes("rdtest3"), 60,
             "the xfce session, started again")
        assert server.status()["state"] == "running", server.status()
        log = server.log_text()
        assert "the desktop session exited at once (1); starting it again (1/2)" in log, log
        assert "Unable to establish ICE listeners (test" in log  # the session's own words, for the admin
    finally:
        (home / ".rcsc3-test-session-failed").unlink(missing_ok=True)


def test_a_session_that_keeps_exiting_closes_the_desktop_with_its_reason(server_factory, script_dir):
    home = Path(pwd.getpwnam("rdtest3").pw_dir)
    try:
        server = server_factory("rdtest3", config={"xstartup": _session_script(script_dir, "always")},
                                env={"RCSC3_DESKTOP_PRESTART": "1"})
        poll(lambda: "(2/2)" in server.log_text() and server.status()["state"] == "stopped", 60,
             "the desktop to close after the session's second restart")
        log = server.log_text()
        assert "the desktop session exited (1): closing the desktop" in log, log
        assert server.status()["error"] == "the desktop session exited with status 1 (the Jupyter server's log says why)"
        assert "Unable to establish ICE listeners (test" in log
    finally:
        (home / ".rcsc3-test-session-failed").unlink(missing_ok=True)


def _auth_script(path: Path, pid: int, uid: int) -> None:
    """What xfce4-session (pid) writes at start, to run at its exit."""
    path.write_text("".join(f'remove protoname={p} protodata="" netid={n}/vm:{a}/tmp/.ICE-unix/{pid} '
                            "authname=MIT-MAGIC-COOKIE-1\n"
                            for n, a in (("local", "@"), ("unix", "")) for p in ("ICE", "XSMP")))
    os.chown(path, uid, uid)


def test_a_killed_sessions_ice_auth_script_is_run_and_removed_and_only_that(tmp_path):
    me, other = os.getuid(), pwd.getpwnam("rdtest2").pw_uid
    dead, dead_too = dead_pids(2)
    scripts = tmp_path / "tmp"
    scripts.mkdir()
    ours_dead, ours_alive = scripts / ".xfsm-ICE-AAAAAA", scripts / ".xfsm-ICE-BBBBBB"
    theirs_dead, not_a_script = scripts / ".xfsm-ICE-CCCCCC", scripts / ".xfsm-ICE-DDDDDD"
    _auth_script(ours_dead, dead, me)
    _auth_script(ours_alive, os.getpid(), me)
    _auth_script(theirs_dead, dead_too, other)
    not_a_script.write_text("something else\n")
    # a stand-in for iceauth that records what it was asked to run
    ran = tmp_path / "ran"
    fake_iceauth = tmp_path / "iceauth"
    fake_iceauth.write_text(f'#!/bin/sh\necho "$@" >> {ran}\n')
    fake_iceauth.chmod(0o755)
    removed = remove_stale_session_auth_files(str(scripts), iceauth=str(fake_iceauth))
    assert removed == [str(ours_dead)]
    assert ran.read_text() == f"source {ours_dead}\n"
    assert not ours_dead.exists() and ours_alive.exists() and theirs_dead.exists() and not_a_script.exists()
    assert remove_stale_session_auth_files(str(tmp_path / "missing")) == []
