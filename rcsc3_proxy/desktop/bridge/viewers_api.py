"""The desktop page's viewer API, served by the Jupyter server itself (the registry is here: `viewers.py`).

* `GET  desktop/api/viewers[?since=N]`: who watches (the owner's page: everyone; a viewer's page:
  their own part, e.g. whether they have control now). With `since`, the version of the last
  answer, it waits (up to LONG_POLL_S) until something changes: the owner's bar shows a new viewer
  within milliseconds, without a poll every second.
* `POST desktop/api/viewers/<name>/control` `{"control": true|false}`: give or take back control;
* `POST desktop/api/viewers/<name>/end`: end their view (their streams close now);
* `POST desktop/api/viewers/<name>/allow`: let an ended viewer watch again.

Every call is the desktop page's own (request_guard: the caller's own page token, same origin, the
page as Referer), which also stands in for JupyterHub's XSRF check; the POSTs are the owner's only.
None of it counts as activity: a page that waits for viewers is no student at work.
"""

from __future__ import annotations

import json
import logging

from jupyter_server.base.handlers import APIHandler
from tornado import web

from .. import request_guard
from .viewers import Viewers

log = logging.getLogger("rcsc3.desktop")

#: longest a `since` request waits for a change (well under the proxies' timeouts)
LONG_POLL_S = 25.0
ACTIONS = ("control", "end", "allow")


class _ViewersApi(APIHandler):
    viewers: Viewers  # set on the subclasses `handlers()` makes
    desktop_secret = ""
    _track_activity = False  # see the module docstring

    def check_xsrf_cookie(self) -> None:
        pass  # prepare() checks the page's own token, bound to the caller, instead

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        await super().prepare()  # login, Origin
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "log in first")
        self.person = request_guard.person(user.username)
        reason = request_guard.refuse_api(self.request.headers,
                                          request_guard.page_token(self.desktop_secret, self.person),
                                          request_guard.page_path())
        if reason:
            log.warning("desktop: refused %s %s of %s: %s", self.request.method, self.request.path, self.person, reason)
            raise web.HTTPError(403, reason)


class ViewersHandler(_ViewersApi):
    @web.authenticated
    async def get(self) -> None:
        since = self.get_argument("since", "")
        if since:
            if not since.isdigit():
                raise web.HTTPError(400, "since: expected the version number of the last answer (digits)")
            await self.viewers.wait_change(int(since), LONG_POLL_S)
        self.finish(self.viewers.state(self.person))


class ViewerActionHandler(_ViewersApi):
    @web.authenticated
    def post(self, name: str, action: str) -> None:
        viewers = self.viewers
        if self.person != viewers.owner:
            raise web.HTTPError(403, f"only {viewers.owner} decides who watches or controls their desktop")
        if action == "control":
            try:
                control = json.loads(self.request.body or b"{}").get("control")
            except (ValueError, AttributeError):
                control = None
            if not isinstance(control, bool):
                raise web.HTTPError(400, 'control: expected a JSON body {"control": true} or {"control": false}')
            found = viewers.set_control(name, control)
        elif action == "end":
            found = viewers.end(name)
        else:
            found = viewers.allow(name)
        if not found:
            raise web.HTTPError(404, f"{name} is not watching this desktop" if action != "allow"
                                else f"{name}'s view was not ended")
        log.info("desktop: %s %s %s", viewers.owner, {"control": "set control of", "end": "ended the view of",
                                                      "allow": "let back in"}[action], name)
        self.finish(viewers.state(self.person))


def handlers(base_url: str, viewers: Viewers, secret: str) -> list[tuple]:
    """The API's tornado rules under `base_url` (they must come before the page's `desktop/(.*)`)."""
    from jupyter_server.utils import url_path_join

    attrs = {"viewers": viewers, "desktop_secret": secret}
    return [
        (url_path_join(base_url, "desktop", "api", "viewers"), type("DesktopViewers", (ViewersHandler,), attrs)),
        (url_path_join(base_url, "desktop", "api", "viewers", "([^/]+)", f"({'|'.join(ACTIONS)})"),
         type("DesktopViewerAction", (ViewerActionHandler,), attrs)),
    ]
