"""Run `srun` for an engine step, and end it when the notebook kernel dies.

    python -m rcsc3_proxy.engines.guard --watch KERNEL_PID [--also-stop CONTROLLER_PID] -- srun ...

Why a guard: the launcher starts `srun` in its own session (so a Ctrl-C in the
notebook does not reach the engines), which also means a kernel killed by the
OOM killer or `kill -9` would leave `srun` -- and so the step and its engines --
running until the job ends; with proctrack/linuxproc the kernel's controller,
reparented to init, would even outlive the job. Slurm ends a step when its `srun`
exits, so the guard only has to stop `srun` (and the controller) when the kernel
goes away. It waits on pidfds, so it costs nothing while the kernel lives and
reacts at once when it dies.

Signals the guard receives (the launcher's SIGTERM/SIGINT) are passed on to `srun`;
its exit code is the guard's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time

#: signals forwarded to srun, as ipyparallel's LocalProcessLauncher.signal() may send them
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)


def _log(msg: str) -> None:
    print(f"rcsc3 engines guard: {msg}", file=sys.stderr, flush=True)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _wait_fd(fd: int, timeout: float) -> bool:
    """True if the process behind a pidfd ended within `timeout` seconds."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def _stop_process(fd: int, name: str, grace: float) -> None:
    """SIGTERM a process through its pidfd (immune to pid reuse), SIGKILL after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return
        if _wait_fd(fd, grace):
            return
        _log(f"{name} still running {grace:.0f}s after {sig.name}")


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcsc3_proxy.engines.guard", description=__doc__.split("\n")[0])
    parser.add_argument("--watch", type=int, required=True, help="pid whose death ends the command (the kernel)")
    parser.add_argument(
        "--also-stop", type=int, action="append", default=[], help="pid to stop too when --watch dies (the controller)"
    )
    parser.add_argument(
        "--remove", action="append", default=[], help="file to delete when the guard exits (a connection file)"
    )
    parser.add_argument("--grace", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- srun ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    try:
        return _guard(args.watch, args.also_stop, args.grace, command)
    finally:
        for path in args.remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _guard(watch: int, also_stop: list[int], grace: float, command: list[str]) -> int:
    watched = _pidfd(watch)
    if watched is None:
        _log(f"process {watch} is already gone; not starting {command[0]}")
        return 1
    # opened now, while they are surely the processes we were told about
    also = [(pid, fd) for pid in also_stop if (fd := _pidfd(pid)) is not None]

    child = subprocess.Popen(command)
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    child_fd = os.pidfd_open(child.pid)

    while True:
        ready, _, _ = select.select([child_fd, watched], [], [])
        if child_fd in ready:
            return _exit_code(child.wait())
        if watched in ready:
            break

    started = time.monotonic()
    _log(f"process {watch} (the notebook kernel) died: stopping {command[0]} {child.pid}")
    # srun forwards SIGTERM to the engines and cancels the step
    _stop_process(child_fd, command[0], grace)
    for pid, fd in also:
        _stop_process(fd, f"process {pid}", grace)
    child.wait()
    _log(f"cleaned up in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
