"""`DesktopManager`: start, watch and tear down one desktop (Xvnc + session) inside the supervisor.

States: ``stopped`` -> ``starting`` -> ``running`` -> ``stopped`` (the session
ended, Xvnc died, or the page asked to close it), or ``failed`` after
`start_attempts` consecutive failed starts. ``failed`` is sticky: nothing starts
the desktop again until someone asks explicitly (`reset()`), so a broken node
shows one clear error instead of looping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import gl, procs, vnc, xauth
from .paths import RuntimePaths
from .settings import RemoteDesktop

log = logging.getLogger("rcsc3.desktop")

_GEOMETRY = re.compile(r"(\d{3,4})x(\d{3,4})")


def parse_geometry(text: str) -> str | None:
    """A browser's "WxH" when it is a sane X screen size (200..8192 each way), else None."""
    m = _GEOMETRY.fullmatch(text or "")
    if not m or not all(200 <= int(v) <= 8192 for v in m.groups()):
        return None
    return f"{int(m[1])}x{int(m[2])}"


def geometry_file(env: dict[str, str] | None = None) -> Path:
    """Where the last viewer's screen size is kept, so a prestarted desktop already fits it."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "rcsc3" / "desktop-geometry"


def remembered_geometry() -> str | None:
    try:
        return parse_geometry(geometry_file().read_text().strip())
    except OSError:
        return None


def remember_geometry(geometry: str) -> None:
    """Keep the viewer's size for the next prestart (best effort: a read-only home just forgets)."""
    path = geometry_file()
    try:
        if path.exists() and path.read_text().strip() == geometry:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(geometry + "\n")
    except OSError as e:
        log.debug("could not remember the desktop size in %s: %s", path, e)


#: A session that exits with an error (status 1-127) this soon after it started failed to start;
#: it was not logged out of.
SESSION_EARLY_EXIT = 10.0
#: Times such a session is started again (on the same display) before the desktop is closed.
SESSION_RETRIES = 2


class StartError(RuntimeError):
    """One start attempt failed; the message is meant for the student's page."""


class DesktopManager:
    def __init__(self, settings: RemoteDesktop, paths: RuntimePaths, env: dict[str, str] | None = None):
        self.settings = settings
        self.paths = paths
        self.env = dict(os.environ if env is None else env)
        self.state = "stopped"
        self.error = ""
        self.display: int | None = None
        self.tcp_port: int | None = None
        self.password: str | None = None
        self.started_at: float | None = None
        self.geometry = settings.geometry  # of the desktop starting or running
        self.server = vnc.detect(settings.vnc_flavor, Path(settings.turbovnc_dir))
        self.gl = gl.choose(self.env, settings.vglrun or None)
        self._xvnc: subprocess.Popen | None = None
        self._session: subprocess.Popen | None = None
        self._session_started = 0.0
        self._session_retries = 0
        self._websockify: subprocess.Popen | None = None
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------ public

    @property
    def bridge(self) -> str:
        """The bridge in use (resolved in the Jupyter server: see `desktop.resolve_bridge`)."""
        return self.settings.bridge

    def status(self) -> dict:
        out = {
            "state": self.state,
            "error": self.error,
            "display": self.display,
            "flavor": self.server.flavor if self.server else None,
            "version": self.server.version_str if self.server else None,
            "gl": self.gl.kind,
            "gl_description": self.gl.describe(),
            "bridge": self.bridge,
        }
        if self.password:
            # Old TurboVNC only: the page (behind the hub's login) needs the one-time password.
            out["password"] = self.password
        return out

    def ensure_started(self, geometry: str | None = None) -> None:
        """Start the desktop in the background unless it runs, is starting, or has failed.

        `geometry` ("WxH", the viewer's screen area) sizes the X screen from the start: the
        session then draws its wallpaper once, where a resize after connecting makes xfdesktop
        draw it again (a black screen meanwhile). Ignored when the desktop already runs, but
        remembered: a prestart (no viewer yet) uses the last viewer's size.
        """
        viewer = self.remember_viewer(geometry or "")
        if self.state == "stopped" and (self._task is None or self._task.done()):
            self.geometry = viewer or remembered_geometry() or self.settings.geometry
            self._set("starting")
            self._task = asyncio.ensure_future(self._start())

    def remember_viewer(self, geometry: str) -> str | None:
        """Remember a viewer's screen size ("WxH") for the next start (a prestart has no viewer);
        returns it, or None if it is not a valid size (then nothing is remembered)."""
        viewer = parse_geometry(geometry)
        if viewer:
            remember_geometry(viewer)
        return viewer

    def reset(self) -> None:
        """Forget a failure (the student pressed "try again") and start."""
        if self.state == "failed":
            self._set("stopped", "")
        self.ensure_started()

    async def wait_settled(self, timeout: float) -> str:
        """Wait until the desktop is running, stopped or failed (or `timeout`); return the state."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.state != "starting"), timeout)
            except TimeoutError:
                pass
        return self.state

    def stop(self, reason: str = "") -> None:
        """Tear the whole desktop down: every descendant of the supervisor, then its X leftovers."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        procs.kill_tree(grace=self.settings.stop_grace)
        self._remove_leftovers()
        self._xvnc = self._session = self._websockify = None
        self.display = None
        self.password = None
        if self.state != "failed":
            self._set("stopped", reason)

    def child_exited(self, pid: int, code: int) -> None:
        """Called from the supervisor's SIGCHLD handler for every reaped child."""
        if self.state != "running":
            return  # during a start, _start_once notices through Popen objects
        if self._xvnc is not None and pid == self._xvnc.pid:
            log.warning("Xvnc exited (%s): closing the desktop", code)
            self.stop("the VNC server exited")
        elif self._session is not None and pid == self._session.pid:
            early = time.monotonic() - self._session_started < SESSION_EARLY_EXIT
            # 1-127: the session failed by itself (128+N: a signal ended it, e.g. someone killed it)
            if 0 < code < 128 and early and self._session_retries < SESSION_RETRIES:
                # e.g. xfce4-session's ICE socket /tmp/.ICE-unix/<its pid> is taken by another user's
                # stale one (sticky dir: it cannot remove it) and it exits: a new pid gets a new name
                self._session_retries += 1
                log.warning("the desktop session exited at once (%s); starting it again (%d/%d); session.log: %s",
                            code, self._session_retries, SESSION_RETRIES, self._log_tail("session.log", lines=8))
                self._start_session()
                return
            if code == 0:
                log.info("the desktop session ended (logged out): closing the desktop")
                self.stop("the session ended (logged out)")
                return
            # not a logout: say why, from the session's own output (the student's page says where to look)
            log.warning("the desktop session exited (%s): closing the desktop; session.log: %s",
                        code, self._log_tail("session.log", lines=8))
            self.stop(f"the desktop session exited with status {code} (the Jupyter server's log says why)")
        elif self._websockify is not None and pid == self._websockify.pid:
            log.warning("websockify exited (%s): closing the desktop", code)
            self.stop("the websocket bridge (websockify) exited")

    # ------------------------------------------------------------ internals

    def _set(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.error = error

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.ensure_future(notify())

    async def _start(self) -> None:
        t0 = time.monotonic()
        last = ""
        for attempt in range(1, self.settings.start_attempts + 1):
            try:
                await self._start_once()
            except asyncio.CancelledError:
                raise
            except (StartError, OSError) as e:
                last = str(e)
                log.warning("desktop start attempt %d/%d failed: %s", attempt, self.settings.start_attempts, last)
                procs.kill_tree(grace=1.0)
                self._remove_leftovers()
                continue
            self.started_at = time.monotonic()
            log.info("desktop on display :%s ready in %.2fs (%s, %s)", self.display, self.started_at - t0,
                     self.server.flavor if self.server else "?", self.gl.describe())
            self._set("running", "")
            return
        self._set("failed", f"The desktop could not be started ({self.settings.start_attempts} attempts). Last error: {last}")

    def _session_env(self) -> dict[str, str]:
        env = dict(self.env)
        # The Jupyter server's own display/session variables must not leak into the desktop.
        for var in ("DISPLAY", "XAUTHORITY", "SESSION_MANAGER", "DBUS_SESSION_BUS_ADDRESS", "WAYLAND_DISPLAY",
                    "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES"):
            env.pop(var, None)
        env.update(gl.session_env(self.gl))
        env.update(DISPLAY=f":{self.display}", XAUTHORITY=self.paths.xauthority, XDG_SESSION_TYPE="x11",
                   RCSC3_DESKTOP="1")
        return env

    async def _start_once(self) -> None:
        if self.server is None:
            raise StartError("no VNC server found: install TigerVNC (tigervnc-standalone-server) or TurboVNC; "
                             "run `rcsc3 doctor`")
        self.paths.ensure()
        xauth.write_cookie_file(self.paths.xauthority)
        Path(self.paths.vnc_socket).unlink(missing_ok=True)
        opts = vnc.XvncOptions(displayfd=-1, xauthority=self.paths.xauthority, geometry=self.geometry,
                               depth=self.settings.depth, extra_args=list(self.settings.extra_xvnc_args))
        if self.server.unix_socket:
            opts.unix_socket = self.paths.vnc_socket
        else:
            self.password = secrets.token_urlsafe(6)[:8]  # VNC passwords are 8 characters at most
            self._write_password_file()
            opts.tcp_port = _free_localhost_port()
            opts.password_file = self.paths.password_file
            self.tcp_port = opts.tcp_port
        r, w = os.pipe()
        opts.displayfd = w
        try:
            self._xvnc = self._spawn(vnc.xvnc_command(self.server, opts), "xvnc.log", pass_fds=[w], cwd=self.paths.root)
        finally:
            os.close(w)
        # websockify (a Python start, ~0.1-0.3 s) comes up while Xvnc does, not after it
        bridge_ready = self._start_websockify() if self.bridge == "websockify" else None
        try:
            self.display = await self._read_display(r, self._xvnc)
        finally:
            os.close(r)
        if self.server.unix_socket and not os.path.exists(self.paths.vnc_socket):
            raise StartError(f"Xvnc did not create {self.paths.vnc_socket}")
        self._session_retries = 0
        self._start_session()
        if bridge_ready is not None:
            await self._wait_websockify(bridge_ready)

    def _start_session(self) -> None:
        # Our own stale session-manager sockets (a session SIGKILLed earlier) go first: left in the
        # shared sticky /tmp/.ICE-unix, one would end another user's session that gets its pid.
        for path in procs.remove_stale_ice_sockets():
            log.info("removed a stale session-manager socket %s", path)
        # Scripts of sessions killed with the supervisor (SIGKILL, OOM): only removed here, not run, so
        # that no iceauth holds ~/.ICEauthority's lock while the new session adds its cookies to it.
        for path in procs.remove_stale_session_auth_files(iceauth=""):
            log.info("removed a killed session's ICE-auth clean-up script %s", path)
        self._session_started = time.monotonic()
        self._session = self._spawn(gl.session_command(self.gl, list(self.settings.xstartup)), "session.log",
                                    env=self._session_env(), cwd=os.path.expanduser("~"))

    def websockify_command(self) -> list[str]:
        """The stock websockify, on a 0600 unix socket in the private dir, bridging to Xvnc's RFB socket."""
        if self.server is not None and not self.server.unix_socket:
            target = [f"127.0.0.1:{self.tcp_port}"]  # old TurboVNC: localhost TCP + one-time password
        else:
            target = ["--unix-target", self.paths.vnc_socket]
        return [sys.executable, "-m", "websockify", "--unix-listen", self.paths.ws_socket,
                "--unix-listen-mode", "600", *target]

    def _start_websockify(self) -> asyncio.Future:
        """Spawn websockify; the future resolves once it listens (it says so on stderr, which we log)."""
        Path(self.paths.ws_socket).unlink(missing_ok=True)
        r, w = os.pipe()
        try:
            self._websockify = subprocess.Popen(self.websockify_command(), stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                                                cwd=self.paths.root)
        finally:
            os.close(w)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future = loop.create_future()
        log_file = open(self.paths.log_dir / "websockify.log", "ab")  # noqa: SIM115 - closed at EOF below
        seen = bytearray()

        def readable() -> None:
            # Drained for websockify's whole life (it logs every connection), so the pipe never fills.
            chunk = os.read(r, 65536)
            log_file.write(chunk)
            log_file.flush()
            if not ready.done():
                seen.extend(chunk)
                if b"proxying from" in seen:  # printed after its socket listens
                    ready.set_result(True)
            if not chunk:
                loop.remove_reader(r)
                os.close(r)
                log_file.close()
                if not ready.done():
                    ready.set_result(False)

        loop.add_reader(r, readable)
        return ready

    async def _wait_websockify(self, ready: asyncio.Future) -> None:
        try:
            ok = await asyncio.wait_for(asyncio.shield(ready), self.settings.start_timeout)
        except TimeoutError:
            raise StartError(f"websockify did not listen within {self.settings.start_timeout:.0f}s") from None
        if not ok:
            raise StartError(f"websockify exited before it was ready: {self._log_tail('websockify.log')}")

    def _spawn(self, cmd: list[str], log_name: str, **kw) -> subprocess.Popen:
        """Start a desktop process with its output appended to a log in the runtime dir."""
        with open(self.paths.log_dir / log_name, "ab") as out:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, **kw)

    async def _read_display(self, fd: int, xvnc: subprocess.Popen) -> int:
        """Wait for Xvnc to write its display number to the -displayfd pipe (or to die)."""
        loop = asyncio.get_running_loop()
        got: asyncio.Future = loop.create_future()

        buf = bytearray()

        def readable() -> None:
            # The X server writes the number and the newline in two write()s: closing our
            # end after the first makes the second fail, and Xvnc treats that as fatal.
            chunk = os.read(fd, 64)
            buf.extend(chunk)
            if (not chunk or b"\n" in buf) and not got.done():
                got.set_result(bytes(buf))

        loop.add_reader(fd, readable)
        try:
            data = await asyncio.wait_for(got, self.settings.start_timeout)
        except TimeoutError:
            raise StartError(f"Xvnc did not report a display within {self.settings.start_timeout:.0f}s") from None
        finally:
            loop.remove_reader(fd)
        text = data.decode(errors="replace").strip()
        if not text.isdigit():
            # EOF without a number: Xvnc exited; its log says why
            raise StartError(f"Xvnc exited before it was ready: {self._log_tail('xvnc.log')}")
        return int(text)

    def _log_tail(self, name: str, lines: int = 3) -> str:
        try:
            text = (self.paths.log_dir / name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def _write_password_file(self) -> None:
        assert self.server is not None and self.password is not None
        res = subprocess.run(vnc.vncpasswd_command(self.server), input=self.password.encode() + b"\n",
                             capture_output=True, timeout=10, check=False)
        if res.returncode != 0:
            raise StartError(f"vncpasswd failed: {res.stderr.decode(errors='replace').strip()}")
        fd = os.open(self.paths.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(res.stdout)

    def _remove_leftovers(self) -> None:
        """What killed desktop processes leave: Xvnc's lock and socket (so the number is free again) and
        the session's session-manager socket and ICE-auth clean-up script (see _start_session)."""
        procs.remove_stale_ice_sockets()
        procs.remove_stale_session_auth_files()
        Path(self.paths.vnc_socket).unlink(missing_ok=True)
        Path(self.paths.ws_socket).unlink(missing_ok=True)  # websockify never unlinks its socket
        if self.display is None:
            return
        for path in (f"/tmp/.X{self.display}-lock", f"/tmp/.X11-unix/X{self.display}"):
            try:
                if os.lstat(path).st_uid == os.getuid():
                    os.unlink(path)
            except OSError:
                pass


def _free_localhost_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
