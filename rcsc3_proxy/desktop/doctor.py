"""`rcsc3 doctor`: can this node serve Remote Desktops, and how? Each finding comes with its fix."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import gl, vnc
from .settings import DEFAULT_XSTARTUP, RemoteDesktop


@dataclass
class Finding:
    level: str  # "ok" | "warn" | "fail"
    what: str
    detail: str
    fix: str = ""


def check_vnc(settings: RemoteDesktop) -> list[Finding]:
    server = vnc.detect(settings.vnc_flavor, Path(settings.turbovnc_dir))
    if server is None:
        return [Finding("fail", "VNC server", "no Xvnc found (TurboVNC in /opt/TurboVNC or TigerVNC on PATH)",
                        "apt-get install tigervnc-standalone-server, or install TurboVNC >= 3.1")]
    name = "TurboVNC" if server.flavor == "turbovnc" else "TigerVNC"
    out = [Finding("ok", "VNC server", f"{name} {server.version_str} ({server.xvnc})")]
    if server.unix_socket:
        out.append(Finding("ok", "unix socket", "RFB on a private unix socket (-rfbunixpath), no TCP port"))
    else:
        out.append(Finding("warn", "unix socket",
                           f"{name} {server.version_str} has no -rfbunixpath: localhost TCP with a one-time password",
                           "upgrade to TurboVNC >= 3.1 so nothing listens on TCP"))
        if not server.vncpasswd:
            out.append(Finding("fail", "vncpasswd", "not found next to Xvnc", "reinstall TurboVNC"))
    return out


def check_gl(settings: RemoteDesktop, env: dict[str, str]) -> list[Finding]:
    out: list[Finding] = []
    vglrun = settings.vglrun
    if vglrun == "auto":
        vglrun = shutil.which("vglrun") or ("/opt/VirtualGL/bin/vglrun" if Path("/opt/VirtualGL/bin/vglrun").exists() else "")
    if vglrun:
        out.append(Finding("ok", "VirtualGL", f"{vglrun} (version {gl.vglrun_version(vglrun)})"))
    else:
        out.append(Finding("warn", "VirtualGL", "vglrun not found: GL programs use Mesa's software renderer",
                           "install VirtualGL >= 3.0 (EGL back end) on GPU nodes"))
    cards = sorted(str(p) for p in Path("/dev/dri").glob("card*")) if Path("/dev/dri").is_dir() else []
    if cards:
        out.append(Finding("ok", "EGL devices", ", ".join(cards)))
    else:
        out.append(Finding("warn", "EGL devices", "no /dev/dri/card*: VirtualGL's EGL back end has nothing to use",
                           "load the GPU's DRM driver (nvidia-drm with modeset=1) and let the job's cgroup allow /dev/dri"))
    gpus = gl.allocated_gpus(env)
    nvidia = sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))
    out.append(Finding("ok" if gpus or not nvidia else "warn", "GPUs visible",
                       f"job GPUs: {','.join(gpus) or 'none'}; device files: {', '.join(nvidia) or 'none'}",
                       "" if gpus else "request a GPU (--gres=gpu:1) to get VirtualGL on it"))
    mode = gl.choose(env, settings.vglrun or None)
    out.append(Finding("ok" if mode.kind == "virtualgl" else "warn", "desktop GL", mode.describe(),
                       "" if mode.kind == "virtualgl" else "see VirtualGL / EGL devices / GPUs above"))
    return out


def check_session(settings: RemoteDesktop) -> list[Finding]:
    out: list[Finding] = []
    cmd = list(settings.xstartup)
    script = cmd[-1] if cmd else ""
    if not cmd or not (shutil.which(cmd[0]) or os.access(cmd[0], os.X_OK)):
        out.append(Finding("fail", "xstartup", f"session command {cmd!r} is not runnable",
                           "set c.RemoteDesktop.xstartup or make ~/.vnc/xstartup executable"))
    else:
        out.append(Finding("ok", "xstartup", " ".join(cmd)))
    if script == DEFAULT_XSTARTUP:
        for tool, pkg in (("xfce4-session", "xfce4-session"), ("dbus-run-session", "dbus")):
            if not shutil.which(tool):
                out.append(Finding("fail", "session", f"{tool} not found", f"apt-get install {pkg}"))
    novnc = Path(settings.novnc_path)
    if (novnc / "core" / "rfb.js").exists():
        version = ""
        pkg = Path("/usr/share/doc/novnc/changelog.Debian.gz")
        if pkg.exists():
            res = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "novnc"], capture_output=True, text=True,
                                 check=False)
            version = f" (Debian novnc {res.stdout.strip()})" if res.returncode == 0 else ""
        out.append(Finding("ok", "noVNC", f"{novnc}{version}"))
    else:
        out.append(Finding("fail", "noVNC", f"{novnc}/core/rfb.js missing", "apt-get install novnc"))
    return out


def run_checks(settings: RemoteDesktop | None = None, env: dict[str, str] | None = None) -> list[Finding]:
    settings = settings or RemoteDesktop()
    env = dict(os.environ if env is None else env)
    return check_vnc(settings) + check_gl(settings, env) + check_session(settings)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rcsc3 doctor", description=__doc__)
    parser.parse_args(argv)
    findings = run_checks()
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    width = max(len(f.what) for f in findings)
    for f in findings:
        print(f"[{mark[f.level]}] {f.what:<{width}}  {f.detail}")
        if f.fix and f.level != "ok":
            print(f"       {'':<{width}}  fix: {f.fix}")
    failed = [f for f in findings if f.level == "fail"]
    print(f"\n{len(failed)} problem(s), {sum(f.level == 'warn' for f in findings)} warning(s)")
    return 1 if failed else 0


