"""The desktop's private runtime directory: every socket and secret of one desktop lives here.

The directory is 0700 and owned by the student, so the 0600 sockets inside are
reachable by nobody else, whatever their own mode (a unix socket's permission is
checked on every path component).
"""

from __future__ import annotations

import getpass
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "rcsc3-desktop-"


@dataclass(frozen=True)
class RuntimePaths:
    root: Path

    @property
    def web_socket(self) -> str:
        """Where the supervisor serves the page and status API (proxied by jupyter-server-proxy)."""
        return str(self.root / "web.sock")

    @property
    def vnc_socket(self) -> str:
        """Xvnc's RFB unix socket."""
        return str(self.root / "vnc.sock")

    @property
    def ws_socket(self) -> str:
        """Where websockify listens (bridge "websockify"; proxied by jupyter-server-proxy's `desktop-vnc` entry)."""
        return str(self.root / "ws.sock")

    @property
    def xauthority(self) -> str:
        return str(self.root / "Xauthority")

    @property
    def password_file(self) -> str:
        """One-time VNC password (TurboVNC < 3.1 only)."""
        return str(self.root / "passwd")

    @property
    def log_dir(self) -> Path:
        return self.root

    @classmethod
    def create(cls, base: str) -> RuntimePaths:
        """A new private directory `<base>/rcsc3-desktop-<user>-XXXX` (the epilog finds it by prefix and owner)."""
        user = getpass.getuser()
        return cls(Path(tempfile.mkdtemp(prefix=f"{PREFIX}{user}-", dir=base)))

    def ensure(self) -> None:
        """(Re)create the directory if missing and refuse one we don't own privately."""
        try:
            self.root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"{self.root} is not a directory owned by uid {os.getuid()}")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.root, 0o700)
