"""Start the desktop supervisor from inside the Jupyter server process, tied to its life.

The server keeps the write end of a pipe whose read end the supervisor watches:
the kernel closes it when the server exits for any reason, SIGKILL included.
The write end is close-on-exec (Python's default), so kernels and terminals the
server starts later do not hold it open.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from .config import RemoteDesktop
from .paths import RuntimePaths

log = logging.getLogger("rcsc3.desktop")


class SupervisorLauncher:
    """Runs `python -m rcsc3_proxy.supervisor` and restarts it (a bounded number of times) if it crashes."""

    max_restarts = 3

    def __init__(self, settings: RemoteDesktop, paths: RuntimePaths):
        self.settings = settings
        self.paths = paths
        self.proc: subprocess.Popen | None = None
        self._keep_open: int | None = None
        self._restarts = 0

    def command(self, parent_fd: int, prestart: bool) -> list[str]:
        cmd = [sys.executable, "-m", "rcsc3_proxy.supervisor", "--runtime-dir", str(self.paths.root),
               "--parent-fd", str(parent_fd), "--parent-pid", str(os.getpid())]
        return cmd + (["--prestart"] if prestart else [])

    def start(self, prestart: bool | None = None) -> subprocess.Popen:
        prestart = self.settings.prestart if prestart is None else prestart
        r, w = os.pipe()
        env = dict(os.environ, RCSC3_DESKTOP_SETTINGS=self.settings.to_json())
        try:
            self.proc = subprocess.Popen(self.command(r, prestart), pass_fds=[r], env=env, stdin=subprocess.DEVNULL,
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
