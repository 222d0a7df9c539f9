"""Another student on the same node can't reach someone's desktop: not its sockets, display, cookie or files.

rdtest1 runs the desktop; rdtest2 (a second real unix user) attacks it.
"""

from __future__ import annotations

import os
import pwd
import subprocess

from conftest import as_user, user_pids


def test_second_user_cannot_reach_socket_display_or_cookie(desktop_server):
    st = desktop_server.wait_running()
    rt = desktop_server.runtime_dir()
    assert oct(os.stat(rt).st_mode & 0o777) == "0o700"
    assert oct(os.stat(rt / "vnc.sock").st_mode & 0o777) == "0o600"
    assert oct(os.stat(rt / "Xauthority").st_mode & 0o777) == "0o600"
    assert os.stat(rt).st_uid == pwd.getpwnam("rdtest1").pw_uid
    probe = f"""
import os, socket
for path in ({str(rt / 'vnc.sock')!r}, {str(rt / 'web.sock')!r}):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); print('CONNECTED', path)
    except PermissionError:
        print('denied', path)
for f in ({str(rt / 'Xauthority')!r},):
    try:
        open(f, 'rb').read(); print('READ', f)
    except PermissionError:
        print('denied', f)
try:
    os.listdir({str(rt)!r}); print('LISTED')
except PermissionError:
    print('denied dir')
"""
    res = as_user("rdtest2", probe)
    assert res.returncode == 0, res.stderr
    assert "CONNECTED" not in res.stdout and "READ" not in res.stdout and "LISTED" not in res.stdout
    assert res.stdout.count("denied") == 4

    # The X display itself: reachable as a socket, but without the cookie the server says no.
    pw = pwd.getpwnam("rdtest2")
    x = subprocess.run(["xdpyinfo"], env={"DISPLAY": f":{st['display']}", "HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"},
                       user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=20,
                       check=False)
    assert x.returncode != 0 and "unable to open display" in x.stderr
    # ...while the owner, with the cookie, gets in (so the refusal above is about the cookie)
    pw1 = pwd.getpwnam("rdtest1")
    ok = subprocess.run(["xdpyinfo"], env={"DISPLAY": f":{st['display']}", "XAUTHORITY": str(rt / "Xauthority"),
                                           "HOME": pw1.pw_dir, "PATH": "/usr/bin:/bin"},
                        user=pw1.pw_uid, group=pw1.pw_gid, extra_groups=[], capture_output=True, text=True,
                        timeout=20, check=False)
    assert ok.returncode == 0, ok.stderr


def test_nothing_of_the_desktop_listens_on_tcp(desktop_server):
    desktop_server.wait_running()
    # every process of the user but the Jupyter server itself: supervisor, Xvnc, the session
    pids = set(user_pids("rdtest1")) - {desktop_server.proc.pid}
    assert len(pids) >= 3  # at least supervisor, Xvnc and the session
    out = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout
    listening = [line for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert listening == [], listening
