"""Wait for a `LocalProcessLauncher`'s process to exit, without blocking the loop or losing the exit.

ipyparallel's `LocalProcessLauncher` waits for its process in a thread, which hands
the exit to the launcher's loop (``loop.add_callback(notify_stop)``). Two things go
wrong for a launcher driven by ``Cluster.*_sync`` calls from a plain script:

- `*_sync` runs each call in a fresh IOLoop and closes it afterwards, so by the time
  the process exits the loop captured at start is closed and tornado silently drops
  the callback: `notify_stop` (state, stop_data, on_stop callbacks) never runs;
- its `join(timeout)` blocks the calling loop for up to `timeout` seconds.

`wait_for_exit` only uses ipyparallel's public API -- `join(timeout=0)`, which returns
at once and raises `TimeoutError` while the wait thread runs, and `notify_stop`,
which ignores a second call -- plus psutil's `Process.wait()`, which remembers the
exit code the wait thread collected. tests/engines/test_process_exit.py pins that
shape on ipyparallel's own launcher.
"""

from __future__ import annotations

import asyncio
import time

import psutil
from ipyparallel.cluster.launcher import LocalProcessLauncher


async def wait_for_exit(launcher: LocalProcessLauncher, timeout: float | None = None, poll: float = 0.05) -> None:
    """Wait until `launcher`'s process has exited, then make sure `notify_stop` has run.

    Raises TimeoutError (like ipyparallel's `join`) if it still runs after `timeout` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            # the base class's join with timeout 0: a non-blocking "has the wait thread finished?"
            await LocalProcessLauncher.join(launcher, timeout=0)
            break
        except TimeoutError:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"process {launcher.pid} did not exit in {timeout} seconds") from None
            await asyncio.sleep(poll)
    if launcher.state == "running" and launcher.process is not None and not launcher.process.is_running():
        # the wait thread's callback went to a loop that is gone (or has not run yet)
        launcher.notify_stop({"exit_code": exit_code(launcher.process), "pid": launcher.pid, "identifier": launcher.identifier})


def exit_code(process: psutil.Process) -> int | None:
    """The exit code of an ended process: psutil keeps what its wait() collected (None if unknown)."""
    try:
        return process.wait(timeout=0)
    except (psutil.TimeoutExpired, psutil.Error):
        return None
