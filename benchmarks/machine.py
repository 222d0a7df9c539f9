"""This machine's speed right now, printed by the other benchmarks before and after their runs.

The lab VM's speed swings with its host: one afternoon the same pure-Python loop ran up to
7 times slower at one moment than at another, and every step of the journey slowed with it.
Benchmark figures from different hours can only be compared next to this line.

    python benchmarks/machine.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

LOOP_ITERATIONS = 3_000_000


def python_loop_seconds(iterations: int = LOOP_ITERATIONS, repeats: int = 3) -> float:
    """Median wall time of a fixed pure-Python summing loop (one core, no I/O)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def steal_since(start: tuple[int, int]) -> float:
    """Percent of CPU time the hypervisor gave to others since `start` (a `cpu_ticks()` reading)."""
    steal, total = cpu_ticks()
    return 100.0 * (steal - start[0]) / max(total - start[1], 1)


def steal_percent(seconds: float = 1.0) -> float:
    """Percent of CPU time the hypervisor gave to others over the next `seconds` (0 on bare metal)."""
    start = cpu_ticks()
    time.sleep(seconds)  # a measurement window, not synchronization
    return steal_since(start)


def describe() -> str:
    loop = python_loop_seconds()
    return (f"machine now: {LOOP_ITERATIONS // 1_000_000}M-iteration Python loop {loop:.2f} s (median of 3), "
            f"CPU steal {steal_percent():.0f} % over 1 s")


if __name__ == "__main__":
    print(describe())
