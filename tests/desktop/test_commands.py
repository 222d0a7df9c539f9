"""Command lines per VNC flavor, VirtualGL wrapping, GPU -> DRM mapping, settings plumbing.

TurboVNC and VirtualGL cannot run here (no TurboVNC package, no GPU): TurboVNC is
represented by small fake `Xvnc` scripts that print its real `-version` banner,
and the NVIDIA driver / DRM sysfs by a fake /proc and /sys tree. The TigerVNC
flags are checked against the real `Xvnc -help`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import need

from rcsc3_proxy.desktop import gl, vnc
from rcsc3_proxy.desktop.manager import DesktopManager
from rcsc3_proxy.desktop.paths import RuntimePaths
from rcsc3_proxy.desktop.server_proxy import desktop_entry, resolve_bridge, vnc_entry
from rcsc3_proxy.desktop.settings import RemoteDesktop

TIGER = vnc.VncServer("tigervnc", "/usr/bin/Xvnc", (1, 12, 0), "/usr/bin/vncpasswd")
TURBO31 = vnc.VncServer("turbovnc", "/opt/TurboVNC/bin/Xvnc", (3, 1, 2), "/opt/TurboVNC/bin/vncpasswd")
TURBO30 = vnc.VncServer("turbovnc", "/opt/TurboVNC/bin/Xvnc", (3, 0, 3), "/opt/TurboVNC/bin/vncpasswd")
COMMON = ["-displayfd", "7", "-auth", "/r/Xauthority", "-nolisten", "tcp", "-geometry", "1680x1050", "-depth", "24",
          "-desktop", "Remote Desktop"]


def opts(**kw) -> vnc.XvncOptions:
    return vnc.XvncOptions(displayfd=7, xauthority="/r/Xauthority", **kw)


def test_tigervnc_command_is_unix_socket_only():
    cmd = vnc.xvnc_command(TIGER, opts(unix_socket="/r/vnc.sock"))
    assert cmd == ["/usr/bin/Xvnc", *COMMON, "-rfbunixpath", "/r/vnc.sock", "-rfbunixmode", "0600", "-rfbport", "-1",
                   "-SecurityTypes", "None", "-UseBlacklist=0", "-AlwaysShared"]


def test_turbovnc_31_command_is_unix_socket_only():
    assert TURBO31.unix_socket
    cmd = vnc.xvnc_command(TURBO31, opts(unix_socket="/r/vnc.sock"))
    assert cmd == ["/opt/TurboVNC/bin/Xvnc", *COMMON, "-rfbunixpath", "/r/vnc.sock", "-rfbunixmode", "0600",
                   "-securitytypes", "None", "-alwaysshared"]
    assert "-rfbport" not in cmd  # TurboVNC rejects -rfbport -1; with -rfbunixpath it opens no TCP port


def test_turbovnc_30_command_uses_localhost_tcp_and_one_time_password():
    assert not TURBO30.unix_socket
    cmd = vnc.xvnc_command(TURBO30, opts(tcp_port=5911, password_file="/r/passwd"))
    assert cmd == ["/opt/TurboVNC/bin/Xvnc", *COMMON, "-rfbport", "5911", "-localhost", "-securitytypes", "VNC",
                   "-rfbauth", "/r/passwd", "-alwaysshared"]
    assert vnc.vncpasswd_command(TURBO30) == ["/opt/TurboVNC/bin/vncpasswd", "-f"]
    with pytest.raises(ValueError):
        vnc.xvnc_command(TURBO30, opts(unix_socket="/r/vnc.sock"))  # no password: refuse to listen unprotected


def test_unix_flavors_refuse_tcp_only_options():
    for server in (TIGER, TURBO31):
        with pytest.raises(ValueError):
            vnc.xvnc_command(server, opts(tcp_port=5900, password_file="/r/p"))


@pytest.mark.parametrize("gpu", [True, False])
@pytest.mark.parametrize("server", [TIGER, TURBO31, TURBO30], ids=["tigervnc", "turbovnc31", "turbovnc30"])
def test_session_under_virtualgl_only_with_a_gpu(server, gpu):
    mode = (gl.GLMode("virtualgl", device="/dev/dri/card2", gpu="1", vglrun="/opt/VirtualGL/bin/vglrun") if gpu
            else gl.GLMode("software", reason="no GPU in this job"))
    xstartup = ["/bin/sh", "/x/xstartup"]
    cmd = gl.session_command(mode, xstartup)
    env = gl.session_env(mode)
    if gpu:
        assert cmd == ["/opt/VirtualGL/bin/vglrun", "-d", "/dev/dri/card2", "/bin/sh", "/x/xstartup"]
        assert env == {"VGL_DISPLAY": "/dev/dri/card2"}
        assert "GPU 1" in mode.describe() and "/dev/dri/card2" in mode.describe()
    else:
        assert cmd == xstartup
        assert env["LIBGL_ALWAYS_SOFTWARE"] == "1"
        assert "software" in mode.describe()
    # the X server line does not depend on GL: VirtualGL renders off-screen on the GPU
    kw = {"tcp_port": 5901, "password_file": "/p"} if not server.unix_socket else {"unix_socket": "/s"}
    assert "vglrun" not in " ".join(vnc.xvnc_command(server, opts(**kw)))


@pytest.fixture
def fake_gpu_node(tmp_path: Path) -> tuple[Path, Path]:
    """NVIDIA minors 0,1 on PCI 0000:3b:00.0 / 0000:af:00.0; DRM probed them as card1 / card0 (swapped)."""
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    for minor, bus in ((0, "0000:3b:00.0"), (1, "0000:af:00.0")):
        d = proc / "driver" / "nvidia" / "gpus" / bus
        d.mkdir(parents=True)
        (d / "information").write_text(f"Model: Tesla T4\nIRQ: 42\nDevice Minor: {minor}\nBus Location: {bus}\n")
        (sys_ / "devices" / "pci0000:00" / bus).mkdir(parents=True)
    drm = sys_ / "class" / "drm"
    drm.mkdir(parents=True)
    for card, bus in (("card0", "0000:af:00.0"), ("card1", "0000:3b:00.0")):
        (drm / card).mkdir()
        (drm / card / "device").symlink_to(sys_ / "devices" / "pci0000:00" / bus)
    (drm / "renderD128").mkdir()  # not a card: ignored
    return proc, sys_


def test_gpu_index_maps_to_its_drm_card_not_the_same_number(fake_gpu_node, tmp_path):
    proc, sys_ = fake_gpu_node
    assert gl.drm_device_for_gpu("0", proc, sys_) == "/dev/dri/card1"
    assert gl.drm_device_for_gpu("1", proc, sys_) == "/dev/dri/card0"
    assert gl.drm_device_for_gpu("2", proc, sys_) is None
    assert gl.drm_device_for_gpu("GPU-6f1c", proc, sys_) is None
    vglrun = tmp_path / "vglrun"
    vglrun.write_text("#!/bin/sh\n")
    # SLURM_JOB_GPUS is node-global and wins over a renumbered CUDA_VISIBLE_DEVICES
    env = {"SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "0", "RCSC3_GPUS": "1"}
    mode = gl.choose(env, str(vglrun), proc, sys_)
    assert (mode.kind, mode.device, mode.gpu) == ("virtualgl", "/dev/dri/card0", "1")
    assert gl.choose({"CUDA_VISIBLE_DEVICES": "0"}, str(vglrun), proc, sys_).device == "/dev/dri/card1"


def test_software_gl_reasons(fake_gpu_node, tmp_path):
    proc, sys_ = fake_gpu_node
    assert gl.choose({"SLURM_JOB_GPUS": "0"}, None, proc, sys_).reason == "vglrun not installed"
    assert gl.choose({}, "/usr/bin/vglrun", proc, sys_).reason == "no GPU in this job"
    assert gl.choose({"SLURM_JOB_GPUS": "0", "RCSC3_GPUS": "0"}, "/usr/bin/vglrun", proc, sys_).kind == "software"
    # this machine: fake /dev/nvidia* without a driver -> software, with the reason on the page
    assert gl.choose({"SLURM_JOB_GPUS": "0"}, "/usr/bin/vglrun").reason == "no DRM device found for GPU 0"


def _fake_xvnc(tmp_path: Path, banner: str) -> Path:
    binary = tmp_path / "TurboVNC" / "bin" / "Xvnc"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    binary.chmod(0o755)
    return binary.parent.parent


@pytest.mark.parametrize(("banner", "version", "unix"), [
    ("TurboVNC Server (Xvnc) 64-bit v3.1.2 (build 20240808)", (3, 1, 2), True),
    ("TurboVNC Server (Xvnc) 64-bit v3.0.3 (build 20230218)", (3, 0, 3), False),
    ("TurboVNC Server (Xvnc) 64-bit v2.2.7 (build 20211206)", (2, 2, 7), False),
])
def test_turbovnc_is_detected_first_with_its_version(tmp_path, banner, version, unix):
    found = vnc.detect("auto", _fake_xvnc(tmp_path, banner))
    assert found is not None and found.flavor == "turbovnc"
    assert found.version == version and found.unix_socket is unix


def test_tigervnc_detected_from_the_real_binary(tmp_path):
    need("Xvnc")
    found = vnc.detect("auto", tmp_path / "no-turbovnc")
    assert found is not None and found.flavor == "tigervnc" and found.version >= (1, 8)
    assert vnc.detect("turbovnc", tmp_path / "no-turbovnc") is None


def test_every_tigervnc_flag_we_use_exists_in_this_xvnc():
    need("Xvnc")
    helptext = subprocess.run(["Xvnc", "-help"], capture_output=True, text=True, check=False).stderr
    for flag in ("-displayfd", "-auth", "-nolisten", "-geometry", "-depth"):
        assert f"{flag} " in helptext, flag
    for param in ("desktop", "rfbunixpath", "rfbunixmode", "rfbport", "SecurityTypes", "UseBlacklist", "AlwaysShared"):
        assert f"  {param} " in helptext, param


def test_settings_round_trip_to_the_supervisor(monkeypatch):
    monkeypatch.setenv("RCSC3_DESKTOP_PRESTART", "1")
    s = RemoteDesktop(geometry="1280x800", bridge="supervisor", extra_xvnc_args=["-FrameRate=30"])
    assert s.prestart is True
    back = RemoteDesktop.from_json(s.to_json())
    # "supervisor" is the old name of the websockify bridge
    assert (back.geometry, back.bridge, back.extra_xvnc_args, back.prestart) == ("1280x800", "websockify",
                                                                                  ["-FrameRate=30"], True)
    monkeypatch.delenv("RCSC3_DESKTOP_PRESTART")
    assert RemoteDesktop().prestart is False
    for name in RemoteDesktop.class_trait_names(config=True):
        assert RemoteDesktop.class_traits()[name].help, f"{name} has no help"


def test_server_proxy_entries(tmp_path):
    paths = RuntimePaths(tmp_path)
    page = desktop_entry(paths)
    assert page["unix_socket"] == str(tmp_path / "web.sock") and "command" not in page
    assert page["launcher_entry"]["title"] == "Remote Desktop"
    assert Path(page["launcher_entry"]["icon_path"]).read_text().lstrip().startswith("<svg")
    raw = vnc_entry(paths)
    assert raw == {"unix_socket": str(tmp_path / "vnc.sock"), "raw_socket_proxy": True,
                   "launcher_entry": {"enabled": False}}
    ws = vnc_entry(paths, "websockify")
    # not raw: jupyter-server-proxy speaks websocket to websockify (after its own login/Origin checks)
    assert ws == {"unix_socket": str(tmp_path / "ws.sock"), "launcher_entry": {"enabled": False}}


@pytest.mark.parametrize(("banner", "bridge"), [
    ("TurboVNC Server (Xvnc) 64-bit v3.1.2 (build 20240808)", "raw"),
    ("TurboVNC Server (Xvnc) 64-bit v3.0.3 (build 20230218)", "websockify"),
])
def test_turbovnc_without_unix_sockets_gets_the_websockify_bridge(tmp_path, banner, bridge):
    turbo = _fake_xvnc(tmp_path, banner)
    assert resolve_bridge(RemoteDesktop(turbovnc_dir=str(turbo), bridge="raw")) == bridge
    assert resolve_bridge(RemoteDesktop(turbovnc_dir=str(turbo), bridge="websockify")) == "websockify"


def test_websockify_command_uses_options_this_websockify_has(tmp_path):
    paths = RuntimePaths(tmp_path)
    desktop = DesktopManager(RemoteDesktop(bridge="websockify", vnc_flavor="tigervnc"), paths, env={})
    cmd = desktop.websockify_command()
    assert cmd[1:3] == ["-m", "websockify"]
    assert cmd[3:] == ["--unix-listen", paths.ws_socket, "--unix-listen-mode", "600", "--unix-target", paths.vnc_socket]
    helptext = subprocess.run([*cmd[:3], "--help"], capture_output=True, text=True, check=False).stdout
    for flag in ("--unix-listen=", "--unix-listen-mode=", "--unix-target="):
        assert flag in helptext, flag
