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

import rcsc3_proxy  # noqa: E402


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


def _launcher_programs(desktop_file: Path) -> list[str]:
    """The programs a panel launcher may start: its Exec's program, or for exo's "preferred
    application" launchers (exo-open --launch Category) the binaries of every helper of that category."""
    exec_line = next(line[5:] for line in desktop_file.read_text().splitlines() if line.startswith("Exec="))
    argv = exec_line.split()
    if argv[:2] != ["exo-open", "--launch"]:
        return [argv[0]]
    programs = []
    for helper in Path("/usr/share/xfce4/helpers").glob("*.desktop"):
        fields = dict(line.split("=", 1) for line in helper.read_text().splitlines() if "=" in line)
        if fields.get("X-XFCE-Category") == argv[2]:
            programs += [b for b in fields.get("X-XFCE-Binaries", "").split(";") if b]
    return programs


def test_every_launcher_on_a_new_students_dock_starts_an_installed_program(server_factory):
    user = "rdtest3"
    home = Path(pwd.getpwnam(user).pw_dir)
    (home / ".config" / "xfce4" / "xfconf" / "xfce-perchannel-xml" / "xfce4-panel.xml").unlink(missing_ok=True)
    panel_dir = home / ".config" / "xfce4" / "panel"
    shutil.rmtree(panel_dir, ignore_errors=True)
    server = server_factory(user)
    server.wait_running()
    shipped = (Path(rcsc3_proxy.__file__).parent / "share" / "xdg" / "xfce4" / "panel" / "default.xml").read_text()
    expected = shipped.count('value="launcher"')
    assert expected >= 2  # terminal and web browser
    # the panel copies each launcher's .desktop file into the student's settings when it first runs
    launchers = wait_until(lambda: len(ls := sorted(panel_dir.glob("launcher-*/*.desktop"))) >= expected and ls, 60,
                           f"the dock's {expected} launchers")
    for launcher in launchers:
        programs = _launcher_programs(launcher)
        assert any(shutil.which(p) for p in programs), f"{launcher.name} would start none of {programs}"
