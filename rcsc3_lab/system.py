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
    res = run(["pgrep", "-x", name], check=False)
    return [int(p) for p in res.stdout.split()]



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


