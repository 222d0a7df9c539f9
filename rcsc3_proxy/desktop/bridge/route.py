"""The `desktop-vnc` route: rcsc3's handler for the VNC websocket, guarded, for either bridge.

Both bridges get a handler of ours on `<base_url>desktop-vnc/`, installed on the running Jupyter
server's web app while jupyter-server-proxy loads its entry points, i.e. before it adds its own
(tornado takes the first rule that matches): the raw bridge (`handler.py`), or, for bridge
"websockify", jupyter-server-proxy's own proxy handler to websockify's socket. Each refuses a
websocket that does not carry the desktop page's secret (`request_guard.refuse_stream`) after
jupyter-server-proxy's own login, token and Origin checks.
"""

from __future__ import annotations

import logging

from tornado import web

from .. import request_guard
from .handler import VncBridgeHandler

log = logging.getLogger("rcsc3.desktop")


class StreamGuard:
    """Mixin for a websocket proxy handler: only the desktop page may open the stream."""

    desktop_secret = ""

    async def prepare(self, *args, **kwargs) -> None:
        await super().prepare(*args, **kwargs)  # login, token, Origin: jupyter-server-proxy's
        reason = request_guard.refuse_stream(self.request.headers,
                                             self.get_query_argument(request_guard.TOKEN_ARGUMENT, None),
                                             self.desktop_secret)
        if reason:
            log.warning("desktop-vnc: refused a websocket: %s", reason)
            raise web.HTTPError(403, reason)


def raw_handler(unix_socket: str, secret: str) -> type:
    """The raw bridge bound to one desktop's Xvnc socket (tornado makes one instance per request)."""
    return type("DesktopVncBridge", (StreamGuard, VncBridgeHandler), {"unix_socket": unix_socket,
                                                                       "desktop_secret": secret})


def websockify_handler(ws_socket: str, secret: str) -> type:
    """jupyter-server-proxy's handler for a unix-socket server (websockify's), guarded."""
    from jupyter_server_proxy.config import ServerProcess

    proxy, _ = ServerProcess(name="desktop-vnc", unix_socket=ws_socket,
                             launcher_entry={"enabled": False}).make_proxy_handler()
    return type("DesktopVncWebsockify", (StreamGuard, proxy), {"desktop_secret": secret})


def install(web_app, handler: type) -> bool:
    """Serve `<base_url>desktop-vnc/` with `handler` on the Jupyter server's `web_app`."""
    from jupyter_server.utils import url_path_join

    try:
        base_url = web_app.settings["base_url"]
    except (AttributeError, KeyError, TypeError):
        return False
    web_app.add_handlers(".*", [(url_path_join(base_url, "desktop-vnc", "(.*)"), handler)])
    return True
