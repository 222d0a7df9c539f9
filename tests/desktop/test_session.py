"""The xfce session rcsc3 ships (desktop/session/xdg): what a new student's desktop is made of.

Real Xvnc + xfce as a test user whose xfce settings were removed first (a new student).
"""

from __future__ import annotations

import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import user_pids  # noqa: E402
from polling import wait_until  # noqa: E402

import rcsc3_proxy  # noqa: E402

SHARE = Path(rcsc3_proxy.__file__).parent / "desktop" / "session" / "xdg"


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
    # Debian's dark-mode: no visible change with its GTK settings, but ~40 ms of CPU per plugin at start
    assert 'name="dark-mode"' not in text


def test_a_new_students_desktop_makes_no_folder_in_their_home(server_factory):
    """No ~/Desktop (xfdesktop's file icons make it) and no other xdg-user-dirs folder: the home in
    JupyterLab's file browser shows the student's own files only."""
    user = "rdtest3"
    home = Path(pwd.getpwnam(user).pw_dir)
    names = ("Desktop", "Documents", "Downloads", "Music", "Pictures", "Public", "Templates", "Videos")
    for name in names:
        shutil.rmtree(home / name, ignore_errors=True)
    server = server_factory(user)
    st = server.wait_running()
    # xfdesktop has drawn the wallpaper (it sets the root window's _XROOTPMAP_ID then), which comes
    # after its desktop view was made, when it would have made the folder
    pw = pwd.getpwnam(user)
    env = {"DISPLAY": f":{st['display']}", "XAUTHORITY": str(server.runtime_dir() / "Xauthority"), "PATH": "/usr/bin:/bin"}

    def wallpaper_drawn() -> bool:
        res = subprocess.run(["xprop", "-root", "_XROOTPMAP_ID"], env=env, user=pw.pw_uid, group=pw.pw_gid,
                             extra_groups=[], capture_output=True, text=True, timeout=20, check=False)
        return "pixmap id" in res.stdout

    wait_until(wallpaper_drawn, 60, "xfdesktop to draw the wallpaper")
    assert [name for name in names if (home / name).exists()] == []


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
    shipped = (SHARE / "xfce4" / "panel" / "default.xml").read_text()
    expected = shipped.count('value="launcher"')
    assert expected >= 2  # terminal and web browser
    # the panel copies each launcher's .desktop file into the student's settings when it first runs
    launchers = wait_until(lambda: len(ls := sorted(panel_dir.glob("launcher-*/*.desktop"))) >= expected and ls, 60,
                           f"the dock's {expected} launchers")
    for launcher in launchers:
        programs = _launcher_programs(launcher)
        assert any(shutil.which(p) for p in programs), f"{launcher.name} would start none of {programs}"


def _process(pid: int) -> tuple[str, dict[str, str]]:
    """(command name, environment) of a live process; ("", {}) if it is gone or unreadable."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return "", {}
    return comm, dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_the_desktop_has_an_ssh_agent_of_its_own_that_goes_with_it(server_factory):
    """xstartup starts ssh-agent (xfce4-session's own start of ssh- and gpg-agent is off: it held up
    the desktop's start); the panel's programs (a terminal) find it; it stops with the desktop."""
    user = "rdtest3"
    pw = pwd.getpwnam(user)
    server = server_factory(user)
    server.wait_running()
    panel_env = wait_until(lambda: next((env for comm, env in map(_process, user_pids(user))
                                         if comm == "xfce4-panel"), None), 60, "the desktop's panel")
    sock = panel_env.get("SSH_AUTH_SOCK", "")
    assert sock, "the panel (and what it launches) has no SSH_AUTH_SOCK"
    st = Path(sock).stat()
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == pw.pw_uid and not st.st_mode & 0o077, oct(st.st_mode)
    # a live agent: "no identities" (1), not "cannot connect" (2)
    listed = subprocess.run(["ssh-add", "-l"], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                            env={"SSH_AUTH_SOCK": sock, "HOME": pw.pw_dir}, capture_output=True, text=True)
    assert listed.returncode == 1, listed
    agents = [pid for pid in user_pids(user) if _process(pid)[0] == "ssh-agent"]
    assert len(agents) == 1, agents
    assert not [pid for pid in user_pids(user) if _process(pid)[0] == "gpg-agent"]
    server.stop()
    wait_until(lambda: not Path(f"/proc/{agents[0]}").exists(), 15, "the desktop's ssh-agent to stop")


def _desktop_entry(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("[") and fields:
            break  # only the [Desktop Entry] group
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            fields.setdefault(key.strip(), value.strip())
    return fields


def _session_clients() -> dict[str, int]:
    """The programs of rcsc3's xfce session (desktop/session/xdg/.../xfce4-session.xml) and their priorities."""
    session = (SHARE / "xfce4" / "xfconf" / "xfce-perchannel-xml" / "xfce4-session.xml").read_text()
    commands = dict(re.findall(r'name="(Client\d+)_Command" type="array">\s*<value type="string" value="([^"]+)"', session))
    return {commands[c]: int(p) for c, p in re.findall(r'name="(Client\d+)_Priority" type="int" value="(\d+)"', session)}


def test_no_program_of_the_session_is_also_autostarted():
    """xfce4-session starts its clients (desktop/session/xdg/.../xfce4-session.xml), then the autostart entries
    of XDG_CONFIG_DIRS (rcsc3's first: a Hidden=true entry there hides the system's). A client that
    is also autostarted starts twice: the second copy loads GTK, finds the first running and quits."""
    clients = set(_session_clients())
    assert {"xfwm4", "xfdesktop", "xfsettingsd", "xfce4-panel"} <= clients
    autostarted = set()
    for system_entry in Path("/etc/xdg/autostart").glob("*.desktop"):
        override = SHARE / "autostart" / system_entry.name
        fields = _desktop_entry(override if override.exists() else system_entry)
        if fields.get("Hidden", "false").lower() == "true":
            continue
        if "OnlyShowIn" in fields and "XFCE" not in fields["OnlyShowIn"].split(";"):
            continue
        if "XFCE" in fields.get("NotShowIn", "").split(";"):
            continue
        autostarted.add(Path(fields.get("Exec", "").split()[0]).name if fields.get("Exec") else "")
    assert not clients & autostarted, f"started both as session clients and autostart: {clients & autostarted}"


def test_the_settings_daemon_starts_before_what_draws_the_desktop():
    """xfsettingsd's settings (theme, icons, fonts) are there when xfwm4, xfdesktop and the panel
    start: started before it, they redo that work when the settings arrive (~0.3 s of CPU)."""
    priorities = _session_clients()
    for program in ("xfwm4", "xfdesktop", "xfce4-panel"):
        assert priorities["xfsettingsd"] < priorities[program], priorities
    # and the desktop itself does not wait for the panel
    assert priorities["xfdesktop"] <= priorities["xfwm4"] < priorities["xfce4-panel"], priorities
