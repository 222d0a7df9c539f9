"""`RemoteDesktop`: the desktop's settings, configurable as `c.RemoteDesktop.*` in the Jupyter server config.

The settings are read in the Jupyter server process and handed to the desktop
supervisor as JSON, so the supervisor (a separate, small process) never needs to
load Jupyter's configuration machinery itself.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path

from traitlets import Bool, CaselessStrEnum, Float, Int, List, Unicode, default, validate
from traitlets.config import Configurable

#: rcsc3's xfce session (session/xstartup): run with /bin/sh, so it needs a real file on disk
DEFAULT_XSTARTUP = str(resources.files("rcsc3_proxy.desktop") / "session" / "xstartup")


class RemoteDesktop(Configurable):
    """Settings of the Remote Desktop started behind jupyter-server-proxy."""

    vnc_flavor = CaselessStrEnum(
        ["auto", "turbovnc", "tigervnc"], default_value="auto",
        help="VNC server to use: 'auto' prefers TurboVNC (/opt/TurboVNC or PATH) and falls back to TigerVNC.",
    ).tag(config=True)

    turbovnc_dir = Unicode(
        "/opt/TurboVNC", help="Where TurboVNC is installed (its bin/Xvnc and bin/vncpasswd are used).",
    ).tag(config=True)

    geometry = Unicode(
        "1680x1050", help="Initial desktop size WxH; the page resizes it to the browser window when allowed.",
    ).tag(config=True)

    depth = Int(24, help="Colour depth of the X display.").tag(config=True)

    xstartup = List(
        Unicode(),
        help="Command that runs the desktop session inside the X display. "
        "Default: ~/.vnc/xstartup when it is executable, else the xfce session shipped with rcsc3.",
    ).tag(config=True)

    @default("xstartup")
    def _default_xstartup(self) -> list[str]:
        own = Path.home() / ".vnc" / "xstartup"
        if own.is_file() and os.access(own, os.X_OK):
            return [str(own)]
        return ["/bin/sh", DEFAULT_XSTARTUP]

    vglrun = Unicode(
        "auto",
        help="Path to vglrun, 'auto' to look on PATH and in /opt/VirtualGL/bin, or '' to never use VirtualGL.",
    ).tag(config=True)

    bridge = CaselessStrEnum(
        ["raw", "websockify", "supervisor"], default_value="raw",
        help="How the browser's websocket reaches Xvnc; both go through jupyter-server-proxy's authenticated "
        "`desktop-vnc` route. 'raw' (default): rcsc3's bridge (rcsc3_proxy/desktop/bridge/, a subclass of "
        "jupyter-server-proxy's raw_socket_proxy handler) writes the frames straight into Xvnc's unix socket, "
        "one hop, with TCP_NODELAY and backpressure. 'websockify': jupyter-server-proxy proxies the websocket "
        "to the stock websockify (a child of the desktop, on a 0600 unix socket), which unwraps it into Xvnc's "
        "socket. Measured here (benchmarks/desktop.py, 3 alternated runs, glxgears): raw carried 1.00x the raw "
        "socket's MB/s at 4.6 ms CPU per MB (the stock jupyter-remote-desktop-proxy: 0.83x at 6.7 ms); "
        "websockify 0.52x at 12.8 ms per MB, so raw is the default. "
        "TurboVNC < 3.1 (TCP only) always uses 'websockify'. 'supervisor' is an old name for 'websockify'.",
    ).tag(config=True)

    @validate("bridge")
    def _validate_bridge(self, proposal) -> str:
        return "websockify" if proposal["value"] == "supervisor" else proposal["value"]

    novnc_path = Unicode(
        "/usr/share/novnc",
        help="Directory of the noVNC client (its core/ and vendor/ ES modules); Debian's `novnc` package by default.",
    ).tag(config=True)

    novnc_bundle_dir = Unicode(
        help="Where `rcsc3 novnc-bundle` put the one-file noVNC client built from novnc_path's modules "
        "(used when its name matches the installed modules; else the page loads the modules one by one). "
        "Default: {sys.prefix}/share/rcsc3/novnc.",
    ).tag(config=True)

    @default("novnc_bundle_dir")
    def _default_novnc_bundle_dir(self) -> str:
        return os.path.join(sys.prefix, "share", "rcsc3", "novnc")

    prestart = Bool(
        help="Start the desktop in the background when the Jupyter server starts, so the first click is warm. "
        "Default: the RCSC3_DESKTOP_PRESTART environment variable set by the spawner ('1' = on).",
    ).tag(config=True)

    @default("prestart")
    def _default_prestart(self) -> bool:
        return os.environ.get("RCSC3_DESKTOP_PRESTART", "").strip().lower() in ("1", "true", "yes")

    start_attempts = Int(
        3, help="Desktop start attempts before the page shows an error instead of trying again.",
    ).tag(config=True)

    start_timeout = Float(
        20.0, help="Seconds Xvnc may take to report its display before an attempt counts as failed.",
    ).tag(config=True)

    stop_grace = Float(
        3.0, help="Seconds the desktop's processes get after SIGTERM before they are SIGKILLed.",
    ).tag(config=True)

    quality = Int(6, help="Initial JPEG quality (0-9) offered on the page's slider.").tag(config=True)

    compression = Int(2, help="Initial compression level (0-9) offered on the page's slider.").tag(config=True)

    extra_xvnc_args = List(
        Unicode(), help="Extra arguments appended to the Xvnc command line.",
    ).tag(config=True)

    runtime_base = Unicode(
        help="Directory under which the private (0700) runtime directory with the sockets is made. "
        "Default: $XDG_RUNTIME_DIR when it exists and is ours, else /tmp.",
    ).tag(config=True)

    @default("runtime_base")
    def _default_runtime_base(self) -> str:
        xdg = os.environ.get("XDG_RUNTIME_DIR", "")
        if xdg and os.path.isdir(xdg) and os.stat(xdg).st_uid == os.getuid():
            return xdg
        return "/tmp"

    def to_json(self) -> str:
        """The settings the supervisor needs, as JSON (every trait, defaults resolved)."""
        return json.dumps({name: getattr(self, name) for name in self.trait_names(config=True)})

    @classmethod
    def from_json(cls, text: str) -> RemoteDesktop:
        values = json.loads(text) if text else {}
        known = set(cls.class_trait_names(config=True))
        return cls(**{k: v for k, v in values.items() if k in known})
