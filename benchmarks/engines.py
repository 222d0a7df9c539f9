"""Benchmark: ipyparallel engines as `srun` job steps vs ipyparallel's stock `slurm` launcher.

    /opt/rcsc3/venv/bin/python benchmarks/engines.py [--rounds 5] [--size 1000x500]

Run from anywhere, outside Slurm, on an otherwise idle lab. Round by round it alternates
the `srun` launcher, measured inside a fresh 2-CPU batch job (`sbatch --wait`; the student's
session already exists when a notebook starts engines), and the stock `slurm` launcher run
from outside any job (as the baseline in the issue; in this lab a job without `--mem` takes
the whole node, so the stock engine job cannot start while another job runs):

1. time from `Cluster(...)` to 2 engines registered: `engines="srun"` (this package,
   with its installed defaults) vs `engines="slurm"` (stock ipyparallel, stock config:
   a second batch job for the engines);
2. load-balanced `map_sync` throughput of 1000 trivial items on each cluster;
3. the thesis' Mandelbrot (section 4.2.2) serial vs 1..2 srun engines: speedup, efficiency.

It prints medians / min / max and the ratios against the stock launcher (targets:
registration <= 0.4x stock, map_sync items/s >= stock, Mandelbrot speedup on 2 engines >= 1.8).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe as machine_now  # benchmarks/ (the script's directory)

ENGINES = 2
ITEMS = 1000


def mandel(width: int, height: int, first: int, last: int) -> str:
    """Rows first..last-1 of the thesis' ASCII Mandelbrot picture (listing 4.9)."""
    min_x, max_x, aspect_ratio, chars = -2.0, 1.0, 2, " .,-:;i+hM$*#0 "
    y_scale = (max_x - min_x) * (float(height) / width) * aspect_ratio
    rows = []
    for y in range(first, last):
        line = []
        for x in range(width):
            c = complex(min_x + x * (max_x - min_x) / width, y * y_scale / height - y_scale / 2)
            z = c
            for char in chars:  # noqa: B007 -- the char where z escapes is the pixel
                if abs(z) > 2:
                    break
                z = z * z + c
            line.append(char)
        rows.append("".join(line) + "\n")
    return "".join(rows)


def _stats(values: list[float]) -> str:
    return f"median {statistics.median(values):7.2f}  min {min(values):7.2f}  max {max(values):7.2f}"


def measure_cluster(kind: str) -> tuple[float, float]:
    """(seconds to ENGINES registered, load-balanced map_sync items/s) for one fresh cluster."""
    import ipyparallel as ipp

    t0 = time.perf_counter()
    if kind == "srun":
        cluster = ipp.Cluster(engines="srun", n=ENGINES)
    else:
        # stock: ipyparallel's own defaults, none of the rcsc3 config (load_profile=False)
        cluster = ipp.Cluster(engines="slurm", n=ENGINES, load_profile=False)
    try:
        rc = cluster.start_and_connect_sync()
        registered = time.perf_counter() - t0
        view = rc.load_balanced_view()
        view.map_sync(lambda x: x, range(50))  # warm-up: first task imports on the engines
        t1 = time.perf_counter()
        assert view.map_sync(lambda x: x, range(ITEMS)) == list(range(ITEMS))
        rate = ITEMS / (time.perf_counter() - t1)
        rc.close()
    finally:
        cluster.stop_cluster_sync()
    return registered, rate


def mandelbrot(width: int, height: int, rounds: int) -> dict[int, list[float]]:
    """Times of the serial run (key 0) and of 1..ENGINES srun engines."""
    import ipyparallel as ipp

    times: dict[int, list[float]] = {p: [] for p in range(ENGINES + 1)}
    cluster = ipp.Cluster(engines="srun", n=ENGINES)
    rc = cluster.start_and_connect_sync()
    try:
        rc[:].push({"mandel": mandel, "WIDTH": width, "HEIGHT": height}, block=True)
        for _ in range(rounds):
            t0 = time.perf_counter()
            serial = mandel(width, height, 0, height)
            times[0].append(time.perf_counter() - t0)
            for p in range(1, ENGINES + 1):
                n_tasks = 8 * p
                bounds = [height * i // n_tasks for i in range(n_tasks + 1)]
                tasks = list(itertools.pairwise(bounds))
                view = rc.load_balanced_view(targets=rc.ids[:p])
                t0 = time.perf_counter()
                parts = view.map_sync(lambda rows: mandel(WIDTH, HEIGHT, *rows), tasks)  # noqa: F821 (engine globals)
                times[p].append(time.perf_counter() - t0)
                assert "".join(parts) == serial
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    return times


def in_job(argv: list[str]) -> str:
    """Run this script with `argv` in a fresh 2-CPU batch job (`sbatch --wait`); return its output."""
    with tempfile.TemporaryDirectory(prefix="rcsc3-bench-") as tmp:
        log = Path(tmp) / "job.log"
        cmd = [
            # --mem: without it a job takes the whole node's memory in this lab and nothing else fits
            "sbatch", "--wait", "--quiet", f"--ntasks={ENGINES}", "--cpus-per-task=1", "--nodes=1", "--mem=2G",
            "--job-name=rcsc3-bench-engines", "--time=30", f"--output={log}", f"--chdir={tmp}",
            "--wrap", f"exec {sys.executable} {Path(__file__).resolve()} " + " ".join(argv),
        ]  # fmt: skip
        res = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        out = log.read_text() if log.exists() else ""
        if res.returncode != 0:
            raise RuntimeError(f"benchmark job failed ({res.returncode}): {res.stderr}\n{out}")
        return out


def wait_for_idle_lab(timeout: float = 600) -> None:
    """Wait (bounded) until no job runs: the stock engine job asks for the whole node's memory."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = subprocess.run(["squeue", "--noheader", "--format=%i"], check=False, capture_output=True, text=True).stdout
        if not jobs.strip():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the lab stayed busy for {timeout:.0f}s (jobs {jobs.split()}): run the benchmark alone")
        time.sleep(1)


def run_benchmark(rounds: int, size: str) -> None:
    """Alternate: srun engines in a fresh allocation / the stock launcher from outside any job."""
    import ipyparallel  # noqa: F401 -- imported before timing, as in the job

    # the stock launcher writes its sbatch file into the cwd
    with tempfile.TemporaryDirectory(prefix="rcsc3-bench-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            _alternate(rounds, size)
        finally:
            os.chdir(cwd)


def _alternate(rounds: int, size: str) -> None:
    print(f"{ENGINES} engines; {rounds} rounds, launchers alternated; srun measured inside a {ENGINES}-CPU job, "
          "stock `slurm` (its own batch job, stock config) from outside any job", flush=True)  # fmt: skip
    results: dict[str, dict[str, list[float]]] = {k: {"reg": [], "rate": []} for k in ("srun", "slurm")}
    for r in range(rounds):
        order = ("srun", "slurm") if r % 2 == 0 else ("slurm", "srun")
        for kind in order:
            if kind == "srun":
                out = in_job(["--measure-srun"])
                reg, rate = (float(v) for v in out.split("RESULT ")[1].split()[:2])
            else:
                wait_for_idle_lab()
                reg, rate = measure_cluster("slurm")
            results[kind]["reg"].append(reg)
            results[kind]["rate"].append(rate)
            print(f"  round {r + 1} {kind:5s}: registered in {reg:5.2f} s, map_sync {rate:6.0f} items/s", flush=True)

    print(f"\nTime to {ENGINES} engines registered (s)")
    for kind in ("srun", "slurm"):
        print(f"  {kind:5s} {_stats(results[kind]['reg'])}")
    reg_ratio = statistics.median(results["srun"]["reg"]) / statistics.median(results["slurm"]["reg"])
    print(f"  ratio srun/stock (median): {reg_ratio:.2f}x  (target <= 0.40x)")

    print(f"\nLoad-balanced map_sync of {ITEMS} trivial items (items/s)")
    for kind in ("srun", "slurm"):
        print(f"  {kind:5s} {_stats(results[kind]['rate'])}")
    rate_ratio = statistics.median(results["srun"]["rate"]) / statistics.median(results["slurm"]["rate"])
    print(f"  ratio srun/stock (median): {rate_ratio:.2f}x  (target >= 1.00x)", flush=True)

    print(in_job(["--measure-mandel", "--size", size, "--rounds", str(rounds)]), end="")


def report_mandelbrot(size: str, rounds: int) -> None:
    width, height = (int(v) for v in size.split("x"))
    times = mandelbrot(width, height, rounds)
    serial = statistics.median(times[0])
    print(f"\nMandelbrot {width}x{height}, {rounds} runs, srun engines in a {ENGINES}-CPU job (s)")
    print(f"  serial     : {_stats(times[0])}")
    for p in range(1, ENGINES + 1):
        speedups = [s / t for s, t in zip(times[0], times[p], strict=True)]
        speedup = serial / statistics.median(times[p])
        best = min(times[0]) / min(times[p])  # best of N: the least disturbed runs of a shared machine
        print(f"  {p} engine(s): {_stats(times[p])}  speedup median {speedup:.2f} "
              f"(per run min {min(speedups):.2f}, max {max(speedups):.2f}; best-of-{len(times[p])} {best:.2f})  "
              f"efficiency {speedup / p:.0%} (best-of {best / p:.0%})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds per launcher")
    parser.add_argument("--size", default="1600x800", help="Mandelbrot picture, WIDTHxHEIGHT characters")
    parser.add_argument("--measure-srun", action="store_true", help="(internal, in the job) one srun round")
    parser.add_argument("--measure-mandel", action="store_true", help="(internal, in the job) the Mandelbrot runs")
    args = parser.parse_args()
    if args.measure_srun:
        reg, rate = measure_cluster("srun")
        print(f"RESULT {reg} {rate}")
    elif args.measure_mandel:
        report_mandelbrot(args.size, args.rounds)
    else:
        print(machine_now(), flush=True)
        run_benchmark(args.rounds, args.size)
        print(machine_now())
    return 0


if __name__ == "__main__":
    sys.exit(main())
