"""rcsc3's handlers on the Jupyter server for the desktop's routes, guarded, for either bridge.

They are installed on the running Jupyter server's web app while jupyter-server-proxy loads its
entry points, i.e. before it adds its own for the same routes (tornado takes the first rule that
matches); without them the desktop stays off (`server_proxy.py`).

* `desktop-vnc/`: the VNC websocket. The raw bridge (`handler.py`), or, for bridge "websockify",
  jupyter-server-proxy's own proxy handler to websockify's socket. Each refuses a websocket that
  does not carry the caller's own page token (`request_guard.refuse_stream`) after
  jupyter-server-proxy's login, token and Origin checks. Both bridges treat everyone but the owner
  alike: the stream of a viewer is view-only, their input is held back (`rfb_client.py`) unless
  the owner gave them control, the owner's page lists them (`viewers.py`), and the owner can end
  it. Only input with control counts as activity (idle culling), never the pictures.
* `desktop/`: jupyter-server-proxy's proxy to the supervisor's page and API, which adds who is
  calling (`request_guard.user_headers`, dropping any the client sent), so the supervisor serves
  each person their own page token and lets only the owner start or stop the desktop.
* `desktop/api/viewers...`: the viewer API, answered here (`viewers_api.py`).
"""

from __future__ import annotations

import datetime
import logging
import time

from tornado import web

from .. import request_guard
from .handler import VncBridgeHandler
from .rfb_client import ClientFilter
from .viewers import Viewers
from .viewers_api import handlers as viewer_api_handlers

log = logging.getLogger("rcsc3.desktop")

#: where the desktop's input is recorded among the Jupyter server's activity sources
ACTIVITY_KEY = "rcsc3-desktop-input"
#: seconds between two activity records of one stream
ACTIVITY_EVERY = 1.0
#: websocket close codes the viewer's page can tell apart (RFC 6455 7.4.2: 4000-4999 are the application's)
CLOSE_ENDED, CLOSE_CANNOT_FOLLOW = 4001, 4002


class StreamGuard:
    """Mixin for a desktop-vnc handler: only the caller's own desktop page may open the stream, and
    anyone but the owner watches view-only."""

    desktop_secret = ""
    viewers: Viewers | None = None
    _person = ""
    _filter: ClientFilter | None = None
    _joined = False
    _input_at = 0.0

    async def prepare(self, *args, **kwargs) -> None:
        await super().prepare(*args, **kwargs)  # login, token, Origin: jupyter-server-proxy's
        user = self.current_user
        person = request_guard.person(user.username if user else None)
        token = request_guard.page_token(self.desktop_secret, person)
        reason = request_guard.refuse_stream(self.request.headers,
                                             self.get_query_argument(request_guard.TOKEN_ARGUMENT, None), token)
        if not reason and not self._owner(person):
            reason = self.viewers.refuse(person)
        if reason:
            log.warning("desktop-vnc: refused a websocket of %s: %s", person or "?", reason)
            raise web.HTTPError(403, reason)
        self._person = person

    def _owner(self, person: str) -> bool:
        return self.viewers is None or person == self.viewers.owner

    async def open(self, *args, **kwargs) -> None:
        owner = self._owner(self._person)
        self._filter = ClientFilter(control=owner or self.viewers.has_control(self._person), strict=not owner)
        if not owner:
            self.viewers.join(self._person, self)
            self._joined = True
            log.info("desktop-vnc: %s watches %s's desktop%s", self._person, self.viewers.owner,
                     " with control" if self._filter.control else " (view only)")
        await super().open(*args, **kwargs)

    def on_close(self) -> None:
        if self._joined:
            self._joined = False
            self.viewers.leave(self._person, self)
            if self._filter is not None and self._filter.dropped:
                log.info("desktop-vnc: %s left; %d input messages of theirs were held back", self._person,
                         self._filter.dropped)
        super().on_close()

    # ------------------------------------------------------------------ the data path's hooks

    def from_browser(self, data: bytes) -> bytes | None:
        """What of the browser's bytes goes on to Xvnc; None when the stream must close."""
        if self._filter is None:
            return data
        out, took_input = self._filter.feed(data)
        if self._filter.error:
            log.warning("desktop-vnc: closing %s's stream: %s", self._person, self._filter.error)
            self.close(CLOSE_CANNOT_FOLLOW, "this viewer cannot be served view-only")
            return None
        if took_input:
            self._input_activity()
        return out

    def _record_activity(self) -> None:
        """jupyter-server-proxy calls this for every message either way: an open, untouched desktop
        (its pictures, the viewer's update requests) is no activity. Input is: `_input_activity`."""

    def _input_activity(self) -> None:
        now = time.monotonic()
        if now - self._input_at >= ACTIVITY_EVERY:
            self._input_at = now
            times = self.settings.setdefault("last_activity_times", {})
            times[ACTIVITY_KEY] = datetime.datetime.now(datetime.UTC)

    # ------------------------------------------------------------------ what the registry does

    @property
    def held_back(self) -> int:
        return self._filter.dropped if self._filter is not None else 0

    def set_control(self, control: bool) -> None:
        if self._filter is not None:
            release = self._filter.set_control(control)
            if release:
                self.to_vnc(release)

    def end(self, reason: str) -> None:
        self._joined = False  # the registry forgets this viewer itself
        self.close(CLOSE_ENDED, reason[:120])  # a close reason has room for 123 bytes


class FilteredProxy:
    """Bridge "websockify": jupyter-server-proxy's websocket proxy, the browser's bytes through the filter."""

    def on_message(self, message: str | bytes) -> None:
        data = self.from_browser(message.encode() if isinstance(message, str) else message)
        if data:
            super().on_message(data)

    def to_vnc(self, data: bytes) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.write_message(data, binary=True)


def raw_handler(unix_socket: str, secret: str, viewers: Viewers | None = None) -> type:
    """The raw bridge bound to one desktop's Xvnc socket (tornado makes one instance per request)."""
    return type("DesktopVncBridge", (StreamGuard, VncBridgeHandler), {"unix_socket": unix_socket,
                                                                       "desktop_secret": secret,
                                                                       "viewers": viewers})


def websockify_handler(ws_socket: str, secret: str, viewers: Viewers | None = None) -> type:
    """jupyter-server-proxy's handler for a unix-socket server (websockify's), guarded and filtered."""
    from jupyter_server_proxy.config import ServerProcess

    proxy, _ = ServerProcess(name="desktop-vnc", unix_socket=ws_socket,
                             launcher_entry={"enabled": False}).make_proxy_handler()
    return type("DesktopVncWebsockify", (StreamGuard, FilteredProxy, proxy), {"desktop_secret": secret,
                                                                               "viewers": viewers})


class PageGuard:
    """Mixin for jupyter-server-proxy's proxy to the supervisor: says who is calling."""

    desktop_secret = ""

    def proxy_request_headers(self):
        headers = super().proxy_request_headers()
        for name in (request_guard.USER_HEADER, request_guard.PROOF_HEADER):
            if name in headers:
                del headers[name]  # a client's own: only ours count
        user = self.current_user  # jupyter-server-proxy's prepare() let no anonymous request through
        headers.update(request_guard.user_headers(self.desktop_secret,
                                                  request_guard.person(user.username if user else None)))
        return headers


def page_handler(entry: dict, secret: str) -> tuple[type, dict]:
    """jupyter-server-proxy's handler for the `desktop` entry (the supervisor's socket), guarded; and its kwargs."""
    from jupyter_server_proxy.config import ServerProcess

    proxy, kwargs = ServerProcess(name="desktop", **entry).make_proxy_handler()
    return type("DesktopPage", (PageGuard, proxy), {"desktop_secret": secret}), kwargs


def install(web_app, handler: type) -> bool:
    """Serve `<base_url>desktop-vnc/` with `handler` on the Jupyter server's `web_app`."""
    from jupyter_server.utils import url_path_join

    base_url = _base_url(web_app)
    if base_url is None:
        return False
    web_app.add_handlers(".*", [(url_path_join(base_url, "desktop-vnc", "(.*)"), handler)])
    return True


def install_page(web_app, entry: dict, secret: str, viewers: Viewers) -> bool:
    """Serve `<base_url>desktop/` (the viewer API, then the supervisor's page and API) on `web_app`."""
    from jupyter_server.utils import url_path_join

    base_url = _base_url(web_app)
    if base_url is None:
        return False
    page, kwargs = page_handler(entry, secret)
    web_app.add_handlers(".*", [*viewer_api_handlers(base_url, viewers, secret),
                                (url_path_join(base_url, "desktop", "(.*)"), page, kwargs)])
    return True


def _base_url(web_app) -> str | None:
    try:
        return web_app.settings["base_url"]
    except (AttributeError, KeyError, TypeError):
        return None
