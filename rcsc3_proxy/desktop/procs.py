"""Process-tree plumbing for the desktop supervisor (Linux only).

The desktop is Xvnc plus a whole xfce session: dbus, agents and helpers that
double-fork and `setsid()` on their own, so neither a process group nor a session
holds all of them. The supervisor therefore makes itself a *child subreaper*:
every orphan of the desktop is re-parented to it instead of init, and "the
desktop" is simply "every descendant of the supervisor". Teardown walks that
tree until it is empty.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_subreaper() -> None:
    """Adopt orphaned descendants, so daemonizing session helpers stay in our tree."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def descendants(root: int) -> list[int]:
    """All live descendants of `root` (not `root` itself), parents before children.

    psutil walks the parent links of every process, and leaves out a pid that was reused by a
    process older than its supposed parent."""
    try:
        return [child.pid for child in psutil.Process(root).children(recursive=True)]
    except psutil.Error:  # root is gone (or not ours to look at): nothing below it to find
        return []


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap_zombies() -> dict[int, int]:
    """Collect exit statuses of any finished children (adopted orphans included)."""
    statuses: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return statuses
        if pid == 0:
            return statuses
        statuses[pid] = os.waitstatus_to_exitcode(status)


def kill_tree(root: int | None = None, grace: float = 3.0, reap: bool = True) -> dict[int, int]:
    """SIGTERM every descendant of `root` (default: us), SIGKILL what is left after `grace` s.

    Loops until the tree is empty: a process that forks while dying, or an orphan
    that gets re-parented to us mid-teardown, is caught on the next pass.
    Returns the exit statuses reaped on the way (when `reap` and root is us).
    """
    root = os.getpid() if root is None else root
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        if reap:
            statuses.update(reap_zombies())
        live = [p for p in descendants(root) if not _is_zombie(p)]
        if not live:
            return statuses
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL
        _signal_all(live, sig)
        # SIGCONT wakes stopped processes so they can act on SIGTERM
        _signal_all(live, signal.SIGCONT)
        time.sleep(0.02)  # not synchronization: a bounded poll interval of this loop


def _is_zombie(pid: int) -> bool:
    """Whether `pid` is gone or only waits to be reaped (a zombie holds nothing open any more)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to look at: alive as far as we can tell
        return False


#: Where libICE puts a session manager's listening socket, named after its pid (compiled into libICE).
ICE_DIR = "/tmp/.ICE-unix"


def remove_stale_ice_sockets(ice_dir: str = ICE_DIR, uid: int | None = None) -> list[str]:
    """Remove this user's ICE sockets whose process is gone; return their paths.

    xfce4-session listens on `/tmp/.ICE-unix/<its pid>`, and a session killed with SIGKILL
    (a grace period that ran out, a job's end) leaves that socket behind. libICE unlinks a
    stale socket of its own user before listening, but the directory is sticky: when a later
    xfce4-session of *another* user gets that pid, it cannot remove it, cannot listen ("server
    already running") and exits at once. So each user removes their own; the Slurm epilog
    removes a finished job's.
    """
    uid = os.getuid() if uid is None else uid
    removed = []
    try:
        entries = list(os.scandir(ice_dir))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            # _is_zombie: gone, or a zombie, which holds no socket open any more
            if entry.stat(follow_symlinks=False).st_uid != uid or not _is_zombie(int(entry.name)):
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            continue
    return removed


#: xfce4-session's ICE-auth clean-up script, `<tmp>/.xfsm-ICE-XXXXXX` (GLib's g_file_open_tmp).
SESSION_AUTH_PREFIX = ".xfsm-ICE-"
_ICE_SOCKET_PID = re.compile(r"/\.ICE-unix/(\d+)\b")


def remove_stale_session_auth_files(tmp_dir: str | None = None, uid: int | None = None,
                                    iceauth: str | None = None) -> list[str]:
    """Run and remove this user's xfce4-session ICE-auth clean-up scripts whose session is gone;
    return their paths.

    At its start xfce4-session adds its session-manager cookies to ~/.ICEauthority and writes the
    `iceauth` commands that remove them again to `/tmp/.xfsm-ICE-XXXXXX`, to run at its exit. A
    session that is killed (the desktop closed, the Jupyter server stopped, the job's end) never
    runs it: every desktop start left one file in /tmp (thousands on the lab machine) and four
    stale cookies in ~/.ICEauthority. The script names the session's socket `/tmp/.ICE-unix/<pid>`;
    once that process is gone, this does what the session would have done at its exit.
    `iceauth=""` only removes the scripts.
    """
    tmp_dir = tmp_dir or tempfile.gettempdir()
    uid = os.getuid() if uid is None else uid
    iceauth = iceauth if iceauth is not None else (shutil.which("iceauth") or "")
    removed = []
    try:
        entries = [e for e in os.scandir(tmp_dir) if e.name.startswith(SESSION_AUTH_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_uid != uid or not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 1024:
                continue
            with open(entry.path, errors="replace") as f:
                pids = {int(p) for p in _ICE_SOCKET_PID.findall(f.read())}
            if not pids or not all(_is_zombie(pid) for pid in pids):
                continue  # not such a script, or its session still runs
            if iceauth and uid == os.getuid():
                # bounded: a stuck iceauth (locked ~/.ICEauthority) must not hold up a teardown
                subprocess.run([iceauth, "source", entry.path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=5, check=False)
            os.unlink(entry.path)
            removed.append(entry.path)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            continue
    return removed
