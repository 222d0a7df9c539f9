"""Start the desktop supervisor from inside the Jupyter server process, tied to its life.

The server keeps the write end of a pipe whose read end the supervisor watches:
the kernel closes it when the server exits for any reason, SIGKILL included.
The write end is close-on-exec (Python's default), so kernels and terminals the
server starts later do not hold it open.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from . import vnc
from .paths import RuntimePaths
from .settings import RemoteDesktop

log = logging.getLogger("rcsc3.desktop")

#: the one supervisor of this Jupyter server process (see `ensure_supervisor`)
_shared: SupervisorLauncher | None = None


def resolve_bridge(settings: RemoteDesktop) -> str:
    """The bridge actually used: "raw" needs Xvnc on a unix socket, which TurboVNC < 3.1 lacks.

    Only a TurboVNC install needs a look (`Xvnc -version`); TigerVNC always has unix sockets.
    """
    if settings.bridge == "raw" and settings.vnc_flavor != "tigervnc":
        turbo = Path(settings.turbovnc_dir) / "bin" / "Xvnc"
        if turbo.exists() or settings.vnc_flavor == "turbovnc":
            server = vnc.detect(settings.vnc_flavor, Path(settings.turbovnc_dir))
            if server is not None and not server.unix_socket:
                log.info("%s %s has no unix socket: using the websockify bridge", server.flavor, server.version_str)
                return "websockify"
    return settings.bridge


def running_supervisor() -> SupervisorLauncher | None:
    """This process's desktop supervisor, if one was started."""
    return _shared


def ensure_supervisor(settings: RemoteDesktop, prestart_now: bool = False) -> SupervisorLauncher:
    """One runtime dir and one supervisor per server process, whoever asks first.

    The first caller's settings win: rcsc3-singleuser (early prestart, before the server's
    imports) or jupyter-server-proxy loading our entry points.
    """
    global _shared
    if _shared is None:
        settings.bridge = resolve_bridge(settings)
        paths = RuntimePaths.create(settings.runtime_base)
        _shared = SupervisorLauncher(settings, paths)
        _shared.start(prestart_now=prestart_now)
        log.info("Remote Desktop supervisor started (runtime dir %s, bridge %s, prestart %s)",
                 paths.root, settings.bridge, "now" if prestart_now else settings.prestart)
    return _shared


class SupervisorLauncher:
    """Runs `python -m rcsc3_proxy.desktop.supervisor` and restarts it (a bounded number of times) if it crashes."""

    max_restarts = 3

    def __init__(self, settings: RemoteDesktop, paths: RuntimePaths):
        self.settings = settings
        self.paths = paths
        self.proc: subprocess.Popen | None = None
        #: the per-desktop secret the page carries and every API call and stream must show
        #: (see request_guard); the same across supervisor restarts, so open pages keep working
        self.secret = secrets.token_urlsafe(32)
        self._keep_open: int | None = None
        self._restarts = 0

    def command(self, parent_fd: int, prestart: bool, prestart_now: bool = False) -> list[str]:
        cmd = [sys.executable, "-m", "rcsc3_proxy.desktop.supervisor", "--runtime-dir", str(self.paths.root),
               "--parent-fd", str(parent_fd), "--parent-pid", str(os.getpid())]
        if prestart_now:
            return [*cmd, "--prestart-now"]
        return cmd + (["--prestart"] if prestart else [])

    def start(self, prestart: bool | None = None, prestart_now: bool = False) -> subprocess.Popen:
        prestart = self.settings.prestart if prestart is None else prestart
        r, w = os.pipe()
        env = dict(os.environ, RCSC3_DESKTOP_SETTINGS=self.settings.to_json(), RCSC3_DESKTOP_SECRET=self.secret)
        try:
            self.proc = subprocess.Popen(self.command(r, prestart, prestart_now), pass_fds=[r], env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=os.path.expanduser("~"))
        finally:
            os.close(r)
        if self._keep_open is not None:
            os.close(self._keep_open)
        self._keep_open = w
        threading.Thread(target=self._watch, args=(self.proc,), name="rcsc3-desktop-supervisor", daemon=True).start()
        return self.proc

    def _watch(self, proc: subprocess.Popen) -> None:
        # Reaps the supervisor (no zombie) and restarts it when it crashed on its own.
        code = proc.wait()
        if code == 0 or self._restarts >= self.max_restarts:
            if code != 0:
                log.error("desktop supervisor exited %s; not restarting it again", code)
            return
        self._restarts += 1
        log.warning("desktop supervisor exited %s; restarting (%d/%d)", code, self._restarts, self.max_restarts)
        self.start(prestart=False)
