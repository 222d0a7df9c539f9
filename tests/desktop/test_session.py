"""The xfce session rcsc3 ships (share/xdg): what a new student's desktop is made of.

Real Xvnc + xfce as a test user whose xfce settings were removed first (a new student).
"""

from __future__ import annotations

import pwd
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from polling import wait_until  # noqa: E402


def test_a_new_students_panel_has_no_tray_sound_power_or_logout(server_factory):
    user = "rdtest3"
    home = Path(pwd.getpwnam(user).pw_dir)
    saved = home / ".config" / "xfce4" / "xfconf" / "xfce-perchannel-xml" / "xfce4-panel.xml"
    saved.unlink(missing_ok=True)
    shutil.rmtree(home / ".config" / "xfce4" / "panel", ignore_errors=True)
    server = server_factory(user)
    server.wait_running()
    # the panel copies its default layout into the student's settings once it runs
    text = wait_until(lambda: saved.exists() and "applicationsmenu" in (t := saved.read_text()) and t, 60,
                      "the panel to save its settings")
    for plugin in ("applicationsmenu", "tasklist", "pager", "clock"):
        assert f'value="{plugin}"' in text, plugin
    for plugin in ("systray", "pulseaudio", "power-manager-plugin", "notification-plugin", "actions"):
        assert f'value="{plugin}"' not in text, plugin
