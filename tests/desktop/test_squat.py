"""Display squatting and broken starts: the desktop comes up on a free display, or says why, once."""

from __future__ import annotations

import re
import subprocess
import sys

import requests
from conftest import poll, test_users  # noqa: F401  (fixture used via server_factory)

SQUATTER = """
import socket, sys, time
held, socks = [], []
for n in range(12):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind('\\0/tmp/.X11-unix/X%d' % n)
        s.listen()
        socks.append(s)  # keep it open: a closed socket squats nothing
        held.append(n)
    except OSError:
        pass
print(' '.join(map(str, held)), flush=True)
sys.stdin.read()
"""


def test_squatted_displays_are_skipped_not_retried(server_factory):
    import pwd
    pw = pwd.getpwnam("rdtest2")
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        squatted = {int(n) for n in squatter.stdout.readline().split()}
        assert squatted, "could not squat any display (all taken?)"
        server = server_factory("rdtest3")
        st = server.wait_running()
        assert st["display"] not in squatted
        log = (server.runtime_dir() / "xvnc.log").read_text(errors="replace")
        assert log.count("Xvnc TigerVNC") == 1, "Xvnc was started more than once"
    finally:
        squatter.stdin.close()
        squatter.wait(10)


def test_a_desktop_that_cannot_start_gives_one_clear_error_not_a_loop(server_factory):
    server = server_factory("rdtest3", config={"extra_xvnc_args": ["-no-such-option-rcsc3"], "start_attempts": 3})
    st = server.status(start=1, wait=1)
    assert st["state"] == "failed"
    assert "could not be started (3 attempts)" in st["error"]
    log = server.runtime_dir() / "xvnc.log"
    starts = len(re.findall("Fatal server error", log.read_text(errors="replace")))
    assert starts == 3
    page = requests.get(server.url("desktop/"), timeout=20)
    assert page.status_code == 200 and "The desktop could not be started" in page.text
    # asking again (page reloads, viewers reconnecting) does not start it again
    for _ in range(3):
        assert server.status(start=1, wait=1)["state"] == "failed"
    assert len(re.findall("Fatal server error", log.read_text(errors="replace"))) == 3
    # "Try again" on the page does: three more attempts, then the same error
    r = server.action("start")
    assert r.status_code == 200
    poll(lambda: server.status(wait=1)["state"] == "failed", 30, "the retry to fail again")
    assert len(re.findall("Fatal server error", log.read_text(errors="replace"))) == 6
