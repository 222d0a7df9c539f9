"""Early prestart (rcsc3-singleuser starts the desktop while the server imports) and the remembered viewer size.

The whole path runs in tests/e2e (GPU profile: one supervisor, one Xvnc, the job log says
the desktop started alongside the server); these pin down the decisions one at a time.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

import pytest
from rfb import RFBClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from polling import wait_until  # noqa: E402

from rcsc3_proxy import prestart
from rcsc3_proxy.desktop import manager
from rcsc3_proxy.desktop import supervisor_launcher as launcher
from rcsc3_proxy.desktop.settings import RemoteDesktop


def test_server_config_files_merge_like_the_server_does(tmp_path):
    system, user = tmp_path / "system", tmp_path / "user"
    system.mkdir()
    user.mkdir()
    (system / "jupyter_server_config.py").write_text("c.RemoteDesktop.geometry = '1024x768'\nc.RemoteDesktop.depth = 16\n")
    (system / "jupyter_server_config.json").write_text('{"RemoteDesktop": {"depth": 24}}')
    (user / "jupyter_server_config.py").write_text("c.RemoteDesktop.geometry = '1280x800'\n")
    # jupyter_config_path order: highest priority first (the user's directory)
    settings = RemoteDesktop(config=prestart.jupyter_server_config([str(user), str(system)]))
    assert settings.geometry == "1280x800"  # user over system
    assert settings.depth == 24  # .json over .py in the same directory


def test_allocation_cpus_is_slurms_count_bounded_by_affinity():
    usable = len(os.sched_getaffinity(0))
    assert prestart.allocation_cpus({"SLURM_CPUS_ON_NODE": "1"}) == 1
    assert prestart.allocation_cpus({"SLURM_CPUS_ON_NODE": "999"}) == usable
    assert prestart.allocation_cpus({}) == usable


def test_no_early_start_without_prestart_or_with_one_cpu(monkeypatch):
    started = []
    monkeypatch.setattr(prestart, "ensure_supervisor", lambda s, prestart_now=False: started.append(prestart_now))
    monkeypatch.setattr(prestart, "running_supervisor", lambda: None)
    assert prestart.start_desktop_early(RemoteDesktop(prestart=False)) is False
    monkeypatch.setattr(prestart, "allocation_cpus", lambda env=None: 1)
    assert prestart.start_desktop_early(RemoteDesktop(prestart=True)) is False
    monkeypatch.setattr(prestart, "allocation_cpus", lambda env=None: 2)
    assert prestart.start_desktop_early(RemoteDesktop(prestart=True)) is True
    assert started == [True]


def test_a_broken_config_file_never_stops_the_server(tmp_path, monkeypatch):
    (tmp_path / "jupyter_server_config.py").write_text("raise RuntimeError('typo in the admin config')\n")
    monkeypatch.setattr(prestart, "running_supervisor", lambda: None)
    real = prestart.jupyter_server_config
    monkeypatch.setattr(prestart, "jupyter_server_config", lambda paths=None: real([str(tmp_path)]))
    assert prestart.start_desktop_early() is False


def test_the_supervisor_command_for_each_prestart_mode(tmp_path):
    sup = launcher.SupervisorLauncher(RemoteDesktop(), paths=None)  # type: ignore[arg-type]
    sup.paths = type("P", (), {"root": tmp_path})()
    assert "--prestart-now" in sup.command(5, prestart=True, prestart_now=True)
    assert "--prestart" in sup.command(5, prestart=True) and "--prestart-now" not in sup.command(5, prestart=True)
    assert not any(a.startswith("--prestart") for a in sup.command(5, prestart=False))


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


def test_viewer_size_is_remembered_for_the_next_prestart(state_home):
    assert manager.remembered_geometry() is None
    manager.remember_geometry("1280x720")
    assert (state_home / "rcsc3" / "desktop-geometry").read_text().strip() == "1280x720"
    assert manager.remembered_geometry() == "1280x720"


def test_a_tampered_size_file_is_ignored(state_home):
    path = manager.geometry_file()
    path.parent.mkdir(parents=True)
    for junk in ("99999x1", "1280x720; rm -rf ~", "", "abc"):
        path.write_text(junk)
        assert manager.remembered_geometry() is None


async def test_a_prestarted_desktop_has_the_last_viewers_size(server_factory):
    """Real servers and Xvnc: a viewer's size is kept in its home; the next prestart starts at it."""
    user = "rdtest3"  # server_factory's user: the session-wide servers of rdtest1/rdtest4 must live on
    state = Path(pwd.getpwnam(user).pw_dir) / ".local" / "state" / "rcsc3" / "desktop-geometry"
    state.unlink(missing_ok=True)
    first = server_factory(user)
    assert first.status(start=1, wait=1, geometry="1100x640")["state"] == "running"
    assert state.read_text().strip() == "1100x640" and state.owner() == user
    first.stop()

    second = server_factory(user, config={"prestart": True})  # no viewer asks: the prestart picks the size
    st = wait_until(lambda: (s := second.status(wait=1))["state"] == "running" and s, 60, "the prestarted desktop")
    client = await RFBClient.over_websocket(second.ws_url("desktop-vnc/"), headers={"Origin": second.base})
    try:
        init = await client.handshake()
        assert (init.width, init.height) == (1100, 640), st
    finally:
        client.close()
