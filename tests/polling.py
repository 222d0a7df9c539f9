"""The one bounded poll the tests and benchmarks use instead of sleeps (and its async form)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Call `check` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise _timed_out(timeout, what, last)


async def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.01) -> object:
    """wait_until for code on an event loop: the loop (e.g. the hub's) keeps running meanwhile."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise _timed_out(timeout, what, last)


def _timed_out(timeout: float, what: str, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
