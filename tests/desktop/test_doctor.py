"""`rcsc3 doctor` on this node: TigerVNC with unix sockets, no VirtualGL (so software GL), xfce found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import need

RCSC3 = Path(sys.executable).parent / "rcsc3"


def test_doctor_reports_flavor_socket_gl_and_session():
    need("Xvnc")
    res = subprocess.run([str(RCSC3), "doctor"], capture_output=True, text=True, timeout=60, check=False)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "TigerVNC 1." in out and "unix socket" in out and "no TCP port" in out
    assert "VirtualGL" in out and "fix: install VirtualGL" in out  # not installed here: the fix is shown
    assert "xstartup" in out and "noVNC" in out
    assert "0 problem(s)" in out
