"""The desktop supervisor: `python -m rcsc3_proxy.desktop.supervisor --runtime-dir DIR --parent-fd FD`.

One small process per Jupyter server. It

* owns the desktop: it is a session leader and child subreaper, so Xvnc, the
  xfce session, dbus and every agent that daemonizes stay its descendants, and
  `DesktopManager.stop()` kills them all;
* dies with the Jupyter server however that stops: the server holds the write end
  of a pipe whose read end is `--parent-fd`, so EOF means the server is gone
  (SIGTERM, /api/shutdown and SIGKILL alike); PR_SET_PDEATHSIG is the second line;
* serves, on a unix socket in the private runtime dir, the noVNC page and a small
  JSON API. The VNC websocket does not pass through it: jupyter-server-proxy's
  `desktop-vnc` entry goes straight to Xvnc's socket (bridge "raw") or to the
  stock websockify the desktop runs (bridge "websockify").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from tornado import httpserver, netutil, web

from . import novnc, procs, request_guard
from .manager import DesktopManager
from .paths import RuntimePaths
from .settings import RemoteDesktop

log = logging.getLogger("rcsc3.desktop")

#: Longest a status long-poll waits for a starting desktop.
SETTLE_WAIT = 30.0


class _Base(web.RequestHandler):
    @property
    def desktop(self) -> DesktopManager:
        return self.settings["desktop"]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs) -> None:
        """Errors say why, as JSON (the page shows them; a script can read them)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish({"status": status_code, "message": reason})

    def refuse(self, reason: str) -> None:
        log.warning("desktop: refused %s %s: %s", self.request.method, self.request.path, reason)
        raise web.HTTPError(403, reason)

    def caller(self) -> str:
        """Who this request is from, as the Jupyter server said (`request_guard.user_headers`).
        Nothing else reaches this socket (0600 in a 0700 directory) but the student's own programs."""
        person = request_guard.proven_user(self.request.headers, self.settings["desktop_secret"])
        if person is None:
            self.refuse("the request did not come through the Jupyter server's desktop route")
        return person

    @property
    def owner(self) -> str:
        return self.settings["owner"]


class PageHandler(_Base):
    """The noVNC page. Its first script asks for the desktop at once (`api/status?start=1&geometry=`),
    with the size of the browser's screen area; noVNC and the page's own script come inline with it.
    It carries the desktop's secret, so it is served to top-level navigations only (request_guard)."""

    def get(self) -> None:
        reason = request_guard.refuse_page(self.request.headers)
        if reason:
            self.refuse(reason)
        person = self.caller()
        for name, value in request_guard.PAGE_HEADERS.items():
            self.set_header(name, value)
        s = self.desktop.settings
        prefix = f"novnc/{self.settings['novnc_version']}/"
        rfb = self.settings["novnc_rfb"]
        cfg = {"quality": s.quality, "compression": s.compression, "status": self.desktop.status(),
               "rfb": prefix + rfb if rfb else None, "favicon": self.static_url("favicon.svg"),
               # this person's own token: their calls and stream carry it (request_guard)
               "token": request_guard.page_token(self.settings["desktop_secret"], person),
               "token_header": request_guard.TOKEN_HEADER, "token_argument": request_guard.TOKEN_ARGUMENT,
               "user": person, "owner": self.owner, "role": "owner" if person == self.owner else "viewer",
               "novnc_release": self.settings["novnc_release"], "novnc_accepted": novnc.ACCEPTED_RELEASES}
        self.render("index.html", cfg_json=json.dumps(cfg).replace("</", "<\\/"), status=self.desktop.status(),
                    preload=self.settings["novnc_preload"], novnc=prefix, css=self.settings["page_css"],
                    inline_rfb=self.settings["novnc_inline"], app_js=self.settings["page_js"],
                    role=cfg["role"], owner=self.owner)


class _Api(_Base):
    """The desktop's API: only for the desktop page's own calls (the caller's token, its origin, its Referer).
    Only the owner changes anything; a viewer's page may ask how the desktop is."""

    def prepare(self) -> None:
        self.person = self.caller()
        reason = request_guard.refuse_api(self.request.headers,
                                          request_guard.page_token(self.settings["desktop_secret"], self.person),
                                          self.settings["page_path"])
        if reason:
            self.refuse(reason)

    @property
    def is_owner(self) -> bool:
        return self.person == self.owner

    def check_xsrf_cookie(self) -> None:
        pass  # prepare() checked more than an XSRF cookie would


class StatusHandler(_Api):
    """GET api/status[?start=1][&geometry=WxH][&wait=1]: the desktop's state; `wait` long-polls while it
    is starting. `geometry` is the viewer's screen size: the X screen's size if this request starts the
    desktop, else remembered for the next start."""

    async def get(self) -> None:
        geometry = self.get_argument("geometry", "")
        if not self.is_owner:
            pass  # a viewer neither starts the owner's desktop nor sizes its next start
        elif self.get_argument("start", "0") == "1":
            self.desktop.ensure_started(geometry)
        elif geometry:
            self.desktop.remember_viewer(geometry)
        if self.get_argument("wait", "0") == "1":
            await self.desktop.wait_settled(SETTLE_WAIT)
        self.write(self.desktop.status())


class ActionHandler(_Api):
    """POST api/start (try again after a failure) and api/stop (close the desktop)."""

    def post(self, action: str) -> None:
        if not self.is_owner:
            self.refuse(f"only {self.owner} may {action} their desktop")
        if action == "start":
            self.desktop.reset()
        else:
            self.desktop.stop("closed from the page")
        self.write(self.desktop.status())


class NoVNCHandler(web.StaticFileHandler):
    """noVNC's modules. Under novnc/<version>/ (what the page uses) they never change, so the browser
    keeps them for a year and a repeat visit loads none of them; a novnc upgrade changes the version."""

    def initialize(self, path: str, cache_time: int) -> None:
        super().initialize(path)
        self.cache_time = cache_time

    def get_cache_time(self, path: str, modified, mime_type: str) -> int:
        return self.cache_time

    def set_extra_headers(self, path: str) -> None:
        if self.cache_time > 3600:
            self.set_header("Cache-Control", f"private, max-age={self.cache_time}, immutable")


def _inline_js(path: Path) -> str:
    text = path.read_text()
    if not novnc.fits_in_script_tag(text):
        raise ValueError(f"{path} cannot be inlined in the page")
    return text


def make_app(desktop: DesktopManager, secret: str) -> web.Application:
    static = Path(str(resources.files("rcsc3_proxy.desktop") / "static"))
    novnc_dir = Path(desktop.settings.novnc_path)
    modules = novnc.modules(novnc_dir) if novnc_dir.is_dir() else []
    version = novnc.version(novnc_dir, modules)
    bundle = novnc.find_bundle(Path(desktop.settings.novnc_bundle_dir), version)
    # The page carries noVNC inline when a bundle was built from exactly these modules: a first
    # visit then makes no request at all before the websocket (each request through the hub's
    # proxy and jupyter-server-proxy cost ~30-60 ms here); ~150 KB more per page load, which a
    # repeat visit pays in well under the round trip it saves. Else noVNC's own rfb.js, all its
    # modules preloaded in one parallel round.
    inline = novnc.inline_script(bundle) if bundle else None
    rfb, preload = (None, []) if inline else ("core/rfb.js", modules)
    if inline is None and modules:
        log.info("no noVNC bundle for these modules in %s (rcsc3 novnc-bundle): loading %d modules",
                 desktop.settings.novnc_bundle_dir, len(modules))
    return web.Application(
        [
            (r"/", PageHandler),
            (r"/api/status", StatusHandler),
            (r"/api/(start|stop)", ActionHandler),
            # static_url() makes relative "static/..." links (we live under a proxy prefix),
            # so the route is spelled out rather than derived from static_url_prefix.
            (r"/static/(.*)", web.StaticFileHandler, {"path": str(static)}),
            (rf"/novnc/{version}/((?:core|vendor)/.*)", NoVNCHandler, {"path": str(novnc_dir), "cache_time": 365 * 86400}),
            (r"/novnc/((?:core|vendor)/.*)", NoVNCHandler, {"path": str(novnc_dir), "cache_time": 3600}),
        ],
        template_path=str(static),
        static_path=str(static),
        static_url_prefix="static/",
        desktop=desktop,
        desktop_secret=secret,
        owner=request_guard.owner(),
        page_path=request_guard.page_path(),
        novnc_release=novnc.release(novnc_dir),
        novnc_preload=preload,
        novnc_rfb=rfb,
        novnc_inline=inline,
        novnc_version=version,
        # inlined in the page: no extra request, and the page's first script can measure the layout at once
        page_css=(static / "desktop.css").read_text(),
        page_js=_inline_js(static / "desktop.js"),
    )


class Supervisor:
    """Glue: signals, parent watch, child reaping, the web server and the desktop."""

    def __init__(self, desktop: DesktopManager, parent_fd: int | None, secret: str):
        self.desktop = desktop
        self.secret = secret
        self.parent_fd = parent_fd
        self.done = asyncio.Event()

    def _on_sigchld(self) -> None:
        for pid, code in procs.reap_zombies().items():
            self.desktop.child_exited(pid, code)

    def _on_parent_gone(self) -> None:
        # EOF stays readable: unregister first or the loop calls us forever
        asyncio.get_running_loop().remove_reader(self.parent_fd)
        log.info("the Jupyter server is gone: closing the desktop")
        self.shutdown()

    def shutdown(self) -> None:
        if not self.done.is_set():
            self.desktop.stop("the Jupyter server stopped")
            self.done.set()

    async def _prestart_when_server_listens(self, timeout: float = 60.0) -> None:
        """Start the desktop once the Jupyter server accepts connections.

        Xvnc and the xfce session starting at the same moment as the Jupyter server would
        compete with it for the node's cores and delay the student's spawn; the student
        needs JupyterLab first and reaches the desktop seconds later anyway.
        """
        target = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
        if target.hostname and target.port:
            host = "127.0.0.1" if target.hostname in ("0.0.0.0", "") else target.hostname
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline and not self.done.is_set():
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, target.port), 1.0)
                    writer.close()
                    break
                except (TimeoutError, OSError):
                    await asyncio.sleep(0.1)  # polling the server's port, bounded by the deadline
        if not self.done.is_set():
            self.desktop.ensure_started()

    async def run(self, prestart: bool, now: bool = False) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.shutdown)
        if self.parent_fd is not None:
            loop.add_reader(self.parent_fd, self._on_parent_gone)
        paths = self.desktop.paths
        Path(paths.web_socket).unlink(missing_ok=True)
        sock = netutil.bind_unix_socket(paths.web_socket, mode=0o600)
        server = httpserver.HTTPServer(make_app(self.desktop, self.secret))
        server.add_socket(sock)
        if now:
            self.desktop.ensure_started()
        elif prestart:
            asyncio.ensure_future(self._prestart_when_server_listens())
        await self.done.wait()
        server.stop()
        Path(paths.web_socket).unlink(missing_ok=True)


def _remove_runtime_dir(paths: RuntimePaths) -> None:
    for child in paths.root.iterdir() if paths.root.exists() else []:
        try:
            child.unlink()
        except OSError:
            pass
    try:
        paths.root.rmdir()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcsc3_proxy.desktop.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime-dir", required=True, help="private 0700 directory for the sockets")
    parser.add_argument("--parent-fd", type=int, help="read end of a pipe the Jupyter server holds open")
    parser.add_argument("--parent-pid", type=int, help="pid of the Jupyter server (closes the PDEATHSIG race)")
    parser.add_argument("--prestart", action="store_true",
                        help="start the desktop once the Jupyter server listens, not at the first click")
    parser.add_argument("--prestart-now", action="store_true",
                        help="start the desktop at once (rcsc3-singleuser, while the Jupyter server imports)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[rcsc3 desktop %(levelname)s] %(message)s", stream=sys.stderr)

    # Before anything can fork: own a session, adopt orphans, follow the parent.
    if os.getsid(0) != os.getpid():
        os.setsid()
    procs.become_subreaper()
    procs.die_with_parent(signal.SIGTERM)
    if args.parent_pid and os.getppid() != args.parent_pid:
        _remove_runtime_dir(RuntimePaths(Path(args.runtime_dir)))
        return 0  # the server died before we could watch it

    settings = RemoteDesktop.from_json(os.environ.pop("RCSC3_DESKTOP_SETTINGS", ""))
    # not left in the environment of the desktop's programs (the student's own, but no need)
    secret = os.environ.pop("RCSC3_DESKTOP_SECRET", "") or secrets.token_urlsafe(32)
    paths = RuntimePaths(Path(args.runtime_dir))
    paths.ensure()
    desktop_ref: list[DesktopManager] = []

    async def amain() -> None:
        desktop = DesktopManager(settings, paths)
        desktop_ref.append(desktop)
        await Supervisor(desktop, args.parent_fd, secret).run(args.prestart, now=args.prestart_now)

    try:
        asyncio.run(amain())
    finally:
        # Whatever happened above, nothing of the desktop may outlive us.
        procs.kill_tree(grace=settings.stop_grace)
        if desktop_ref:
            desktop_ref[0]._remove_leftovers()
        _remove_runtime_dir(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
