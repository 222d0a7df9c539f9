"""jupyter-server-proxy entry points: `desktop` (the page) and `desktop-vnc` (the VNC websocket).

jupyter-server-proxy calls these factories inside the running Jupyter server
while it loads. We use that moment to read `c.RemoteDesktop` from the server's
configuration, make the desktop's private runtime directory and start the
desktop supervisor (which starts Xvnc only at the first click, or right away
with prestart). Neither entry has a `command`: the supervisor's lifetime is tied
to the server by `SupervisorLauncher`, not by jupyter-server-proxy, whose
process supervision restarts crashed commands without bound and probes
readiness with connections VNC servers count as attacks.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from .bridge import route, viewers
from .paths import RuntimePaths
from .settings import RemoteDesktop
from .supervisor_launcher import SupervisorLauncher, ensure_supervisor, resolve_bridge, running_supervisor

log = logging.getLogger("rcsc3.desktop")

ICON = Path(str(resources.files("rcsc3_proxy.desktop") / "icons" / "desktop.svg"))
__all__ = ["desktop_entry", "resolve_bridge", "setup_desktop", "setup_desktop_vnc", "vnc_entry"]


def _server_app():
    """The running Jupyter server (None outside a server, e.g. in unit tests)."""
    try:
        from jupyter_server.serverapp import ServerApp
    except ImportError:  # pragma: no cover - jupyter-server-proxy needs jupyter_server
        return None
    return ServerApp.instance() if ServerApp.initialized() else None


def _server_config():
    """The running Jupyter server's config (None outside a server)."""
    app = _server_app()
    return app.config if app is not None else None


def _ensure_launched() -> SupervisorLauncher:
    """The server's desktop supervisor: the one rcsc3-singleuser prestarted, or a new one."""
    return running_supervisor() or ensure_supervisor(RemoteDesktop(config=_server_config()))


def desktop_entry(paths: RuntimePaths, icon: Path = ICON) -> dict:
    """The `desktop` server-proxy entry: the supervisor's page and API."""
    return {
        "unix_socket": paths.web_socket,
        "launcher_entry": {"title": "Remote Desktop", "icon_path": str(icon), "path_info": "desktop/"},
        "new_browser_tab": True,
        # Viewers poll the status API; that must not keep an idle server alive forever.
        "exclude_last_activity_patterns": [r".*/api/status.*"],
    }


def vnc_entry(paths: RuntimePaths, bridge: str = "raw") -> dict:
    """The `desktop-vnc` entry jupyter-server-proxy registers. rcsc3's own guarded handler for the
    same route (`bridge/route.py`, installed by `setup_desktop_vnc` before this entry's) is the one
    that answers; this entry describes the same target:

    * "raw": websocket frames go straight into Xvnc's unix socket (rcsc3's bridge, `bridge/handler.py`);
    * "websockify": the websocket is proxied on to the stock websockify on its unix socket,
      which unwraps it into Xvnc's socket.
    """
    if bridge == "websockify":
        return {"unix_socket": paths.ws_socket, "launcher_entry": {"enabled": False}}
    return {
        "unix_socket": paths.vnc_socket,
        "raw_socket_proxy": True,
        "launcher_entry": {"enabled": False},
    }


def setup_desktop() -> dict:
    """Entry point `jupyter_serverproxy_servers: desktop`.

    Installs rcsc3's handlers for `desktop/` first (`bridge/route.py`): the viewer API, and the
    proxy to the supervisor that tells it who is calling (only the owner may start or stop the
    desktop; everyone gets their own page token). Without them the page stays off.
    """
    launcher = _ensure_launched()
    entry = desktop_entry(launcher.paths)
    app = _server_app()
    if app is None or not route.install_page(getattr(app, "web_app", None), entry, launcher.secret, viewers.registry()):
        raise RuntimeError("rcsc3 could not install its guarded desktop route on this Jupyter server; "
                           "the Remote Desktop page stays off")
    return entry


def setup_desktop_vnc() -> dict:
    """Entry point `jupyter_serverproxy_servers: desktop-vnc`.

    Installs rcsc3's guarded handler for the route first (it answers: tornado takes the first
    matching rule). Without it there is no desktop stream at all: an unguarded route would let
    any page on the hub's origin open this student's desktop.
    """
    launcher = _ensure_launched()
    paths, secret = launcher.paths, launcher.secret
    if launcher.settings.bridge == "websockify":
        handler = route.websockify_handler(paths.ws_socket, secret, viewers.registry())
    else:
        handler = route.raw_handler(paths.vnc_socket, secret, viewers.registry())
    app = _server_app()
    if app is None or not route.install(getattr(app, "web_app", None), handler):
        raise RuntimeError("rcsc3 could not install its guarded desktop-vnc route on this Jupyter server; "
                           "the Remote Desktop stream stays off")
    return vnc_entry(paths, launcher.settings.bridge)
