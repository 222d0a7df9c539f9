"""Plumbing the lab's provisioning steps share: commands run unattended, daemons, its state file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

STATE_DIR = Path("/var/lib/rcsc3-lab")
STATE_FILE = STATE_DIR / "started.json"
LOG_DIR = Path("/var/log/rcsc3-lab")


class LabError(RuntimeError):
    """The lab could not be brought to the asked state; the message says why and what to do."""


def log(msg: str) -> None:
    print(f"[rcsc3 lab] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run a command with stdin closed (the lab runs unattended) and text output."""
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=check, timeout=timeout, **kw
    )


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True



def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=1))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pids_of(name: str) -> list[int]:
    """Pids of the processes called `name` in this network namespace.

    Only this namespace's: the multi-host lab runs its own slurmctld, slurmd and munged in its
    hosts' namespaces, and the one-host lab must neither count them as its own nor stop them.
    """
    res = run(["pgrep", "-x", "--ns", str(os.getpid()), "--nslist", "net", name], check=False)
    return [int(p) for p in res.stdout.split()]


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process; None when it is gone or a zombie.

    A pid with its start time names one process: a recorded daemon is never confused with
    a later process that got the same pid.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def same_process(pid: int, start: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[1] == start



def wait_for(what: str, check, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")



def stop_daemon(name: str, timeout: float = 20) -> None:
    pids = pids_of(name)
    for pid in pids:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, 9)


