"""Which VNC server this node has, and the exact Xvnc command line for it.

We start `Xvnc` itself rather than the `vncserver` wrapper scripts: the wrappers
daemonize, choose the display number themselves (squattable), and hide the
process from us, while the desktop's lifecycle needs Xvnc to be our child and
`-displayfd` to let the X server pick a free display atomically.

Flavors:

* TigerVNC (Debian's `tigervnc-standalone-server`): unix socket only.
* TurboVNC >= 3.1: unix socket only (`-rfbunixpath` appeared in 3.1).
* TurboVNC < 3.1: no unix sockets, so RFB listens on localhost TCP and is
  protected by a fresh one-time VNC password per session (the Open OnDemand way).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TURBOVNC_DIR = Path("/opt/TurboVNC")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class VncServer:
    """An Xvnc binary and what it can do."""

    flavor: str  # "tigervnc" | "turbovnc"
    xvnc: str
    version: tuple[int, ...] = ()
    vncpasswd: str | None = None

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version)) or "unknown"

    @property
    def unix_socket(self) -> bool:
        """Whether RFB can be served on a unix socket (no TCP at all)."""
        if self.flavor == "tigervnc":
            return True  # -rfbunixpath exists since TigerVNC 1.8; Debian 12 ships 1.12
        return self.version >= (3, 1)


@dataclass
class XvncOptions:
    """What one desktop start needs to put on the Xvnc command line."""

    displayfd: int
    xauthority: str
    unix_socket: str | None = None  # for unix-socket flavors
    tcp_port: int | None = None  # for old TurboVNC only
    password_file: str | None = None  # for old TurboVNC only
    geometry: str = "1680x1050"
    depth: int = 24
    desktop_name: str = "Remote Desktop"
    extra_args: list[str] = field(default_factory=list)


def parse_version(text: str) -> tuple[int, ...]:
    """First `X.Y[.Z]` in a `-version` banner, e.g. 'TurboVNC Server (Xvnc) 64-bit v3.1.2'."""
    m = _VERSION.search(text)
    if not m:
        return ()
    return tuple(int(g) for g in m.groups() if g is not None)


def _banner(xvnc: str) -> str:
    try:
        res = subprocess.run([xvnc, "-version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout + res.stderr


def _from_banner(xvnc: str, banner: str) -> VncServer | None:
    low = banner.lower()
    bindir = Path(xvnc).parent
    passwd = bindir / "vncpasswd"
    vncpasswd = str(passwd) if passwd.exists() else shutil.which("vncpasswd")
    if "turbovnc" in low:
        # the banner also names the X.Org version; TurboVNC's own comes after 'v'
        m = re.search(r"\bv(\d+\.\d+(?:\.\d+)?)", banner)
        version = parse_version(m.group(1)) if m else parse_version(banner)
        return VncServer("turbovnc", xvnc, version, vncpasswd)
    if "tigervnc" in low:
        m = re.search(r"tigervnc\s+(\d+\.\d+(?:\.\d+)?)", low)
        return VncServer("tigervnc", xvnc, parse_version(m.group(1)) if m else (), vncpasswd)
    return None


def detect(flavor: str = "auto", turbovnc_dir: Path = TURBOVNC_DIR) -> VncServer | None:
    """Find the VNC server: TurboVNC (preferred, it has VirtualGL's `-vgl` heritage) then TigerVNC.

    `flavor` forces one of "turbovnc" / "tigervnc"; "auto" prefers TurboVNC.
    """
    candidates: list[str] = []
    if flavor in ("auto", "turbovnc"):
        tv = turbovnc_dir / "bin" / "Xvnc"
        if tv.exists():
            candidates.append(str(tv))
    on_path = shutil.which("Xvnc")
    if on_path:
        candidates.append(on_path)
    for xvnc in candidates:
        found = _from_banner(xvnc, _banner(xvnc))
        if found and flavor in ("auto", found.flavor):
            return found
    return None


def xvnc_command(server: VncServer, opts: XvncOptions) -> list[str]:
    """The Xvnc command line for `server`; nothing of it listens on TCP unless the flavor forces it."""
    cmd = [
        server.xvnc,
        # The X server picks the first free display and writes it to this fd:
        # a squatted display (lock file or abstract socket) is skipped, not retried.
        "-displayfd", str(opts.displayfd),
        # X clients need the cookie; no TCP for X11 either.
        "-auth", opts.xauthority,
        "-nolisten", "tcp",
        "-geometry", opts.geometry,
        "-depth", str(opts.depth),
        "-desktop", opts.desktop_name,
    ]
    if server.flavor == "tigervnc":
        if not opts.unix_socket:
            raise ValueError("TigerVNC desktops are served on a unix socket only")
        cmd += [
            "-rfbunixpath", opts.unix_socket,
            "-rfbunixmode", "0600",
            "-rfbport", "-1",
            # Safe only because the socket is 0600 inside a 0700 directory.
            "-SecurityTypes", "None",
            # Every proxied viewer looks like the same peer: a few aborted page loads
            # would lock everyone out. Nothing but the owner can reach the socket anyway.
            "-UseBlacklist=0",
            # Viewers (a teacher, a classmate) share the owner's session: none of them can disconnect
            # the others by asking for an exclusive one (the bridge also answers "shared" for them).
            "-AlwaysShared",
        ]
    elif server.unix_socket:
        # TurboVNC >= 3.1 listens on no TCP port once -rfbunixpath is given
        # (it rejects "-rfbport -1", unlike TigerVNC).
        if not opts.unix_socket:
            raise ValueError("TurboVNC >= 3.1 desktops are served on a unix socket only")
        cmd += [
            "-rfbunixpath", opts.unix_socket,
            "-rfbunixmode", "0600",
            "-securitytypes", "None",
            "-alwaysshared",
        ]
    else:
        if opts.tcp_port is None or not opts.password_file:
            raise ValueError("TurboVNC < 3.1 needs a localhost TCP port and a one-time password file")
        cmd += [
            "-rfbport", str(opts.tcp_port),
            "-localhost",
            "-securitytypes", "VNC",
            "-rfbauth", opts.password_file,
            "-alwaysshared",
        ]
    return cmd + list(opts.extra_args)


def vncpasswd_command(server: VncServer) -> list[str]:
    """`vncpasswd -f`: reads a clear password on stdin, writes the obfuscated file to stdout."""
    if not server.vncpasswd:
        raise FileNotFoundError(f"no vncpasswd next to {server.xvnc} or on PATH")
    return [server.vncpasswd, "-f"]
