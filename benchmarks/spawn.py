"""Spawn/stop latency and Slurm poll load: rcsc3 vs stock batchspawner.SlurmSpawner.

One run, on the same JupyterHub and the same Slurm lab:

1. Spawn and stop, alternating rcsc3 (student1) and stock SlurmSpawner (student2) on
   one hub: POST /users/X/server -> first 200 of /user/X/api/status through the proxy,
   and DELETE -> the job no longer listed by squeue. Median, min, max.
2. squeue calls per minute with 1, 10 and 50 running users: N spawners of each kind,
   polled by JupyterHub's own polling machinery (Spawner.start_polling, poll_interval
   30 s, the default) for 60 s, against N real (held) Slurm jobs; a PATH shim counts
   every squeue the spawners run.

Run as root with the lab up: `make lab users proxy && /opt/rcsc3/venv/bin/python benchmarks/spawn.py`
(`--spawn-only` skips part 2, `--poll-only` skips part 1).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hubproc import Hub, user_jobs, wait_until  # noqa: E402
from machine import describe as machine_now  # noqa: E402

ROUNDS = int(os.environ.get("RCSC3_BENCH_ROUNDS", "5"))
VENV = Path(sys.executable).parent.parent

# The stock spawner, configured to work here (absolute venv paths; otherwise its jobs die
# at once, since sudo's secure_path and Slurm drop PATH) and asking for what rcsc3's
# default profile asks: partition interactive, 1 GPU, 2 CPUs, 4 GiB, 2 h.
SWITCH_CONFIG = f"""
from batchspawner import SlurmSpawner
from rcsc3_spawner.spawner import RcSC3Spawner

class StockForStudent2(RcSC3Spawner):
    \"\"\"student2 gets a stock SlurmSpawner, everyone else rcsc3: both on this one hub.\"\"\"
    def __new__(cls, *args, **kwargs):
        user = kwargs.get("user")
        if user is not None and user.name == "student2":
            return SlurmSpawner(*args, **kwargs)
        return super().__new__(cls)

c.JupyterHub.spawner_class = StockForStudent2
c.SlurmSpawner.batchspawner_singleuser_cmd = "{VENV}/bin/batchspawner-singleuser"
c.SlurmSpawner.cmd = ["{VENV}/bin/jupyterhub-singleuser"]
c.SlurmSpawner.req_partition = "interactive"
c.SlurmSpawner.req_gres = "gpu:1"
c.SlurmSpawner.req_nprocs = "2"
c.SlurmSpawner.req_memory = "4G"
c.SlurmSpawner.req_runtime = "2:00:00"
c.SlurmSpawner.ip = "127.0.0.1"
c.SlurmSpawner.start_timeout = 300
c.RcSC3Spawner.start_timeout = 300
c.RcSC3Spawner.pending_timeout = 290
"""


def stats(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def job_gone(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip() not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


def spawn_and_stop(hub: Hub, user: str) -> tuple[float, float]:
    c = hub.login(user)
    headers = {"Authorization": f"token {c.token}"}
    t0 = time.monotonic()
    r = c.start({} if user == "student1" else None)
    assert r.status_code in (201, 202), r.text

    def first_200():
        try:
            return requests.get(f"{hub.url}/user/{user}/api/status", headers=headers, timeout=5,
                                allow_redirects=False).status_code == 200
        except requests.RequestException:
            return False

    wait_until(first_200, 300, f"{user}'s server through the proxy", interval=0.05)
    spawn = time.monotonic() - t0
    [job] = user_jobs(user)
    t0 = time.monotonic()
    r = c.stop()
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: job_gone(job), 120, f"job {job} to leave the queue", interval=0.02)
    stop = time.monotonic() - t0
    wait_until(lambda: c.server_model() is None, 60, "the hub to drop the server")
    return spawn, stop


def latency(workdir: Path) -> dict[str, dict[str, list[float]]]:
    hub = Hub(workdir, extra_config=SWITCH_CONFIG)
    hub.start()
    results = {"rcsc3": {"spawn": [], "stop": []}, "stock": {"spawn": [], "stop": []}}
    try:
        for i in range(ROUNDS):
            for kind, user in (("rcsc3", "student1"), ("stock", "student2")) if i % 2 == 0 else (
                    ("stock", "student2"), ("rcsc3", "student1")):
                spawn, stop = spawn_and_stop(hub, user)
                results[kind]["spawn"].append(spawn)
                results[kind]["stop"].append(stop)
                print(f"  round {i + 1} {kind:5s}: spawn {spawn:5.2f} s, stop {stop:5.2f} s", flush=True)
    finally:
        hub.stop()
        for user in ("student1", "student2"):
            for job in user_jobs(user):
                subprocess.run(["scancel", job], check=False)
    return results


# ------------------------------------------------------------------ poll load

def make_spawner(cls, job_id: str, poll_interval: float):
    user = SimpleNamespace(name="student1", url="/user/student1/", escaped_name="student1", id=1)
    # req_keepvars is given so the stock spawner needs no hub object to build its squeue line
    spawner = cls(user=user, poll_interval=poll_interval, req_keepvars="JUPYTERHUB_API_TOKEN")
    spawner.load_state({"job_id": job_id})
    return spawner


async def poll_load(n_users: int, seconds: float, poll_interval: float, shim_log: Path) -> dict[str, int]:
    from batchspawner import SlurmSpawner

    from rcsc3_spawner.spawner import RcSC3Spawner

    jobs = []
    for _ in range(n_users):
        out = subprocess.run(["sbatch", "--parsable", "--hold", "-p", "cpu", "-J", "rcsc3-bench-hold", "-o", "/dev/null",
                              "--wrap", "true"], capture_output=True, text=True, check=True)
        jobs.append(out.stdout.strip())
    try:
        ours = [make_spawner(RcSC3Spawner, j, poll_interval) for j in jobs]
        stock = [make_spawner(SlurmSpawner, j, poll_interval) for j in jobs]
        # as RcSC3Spawner.start() leaves a running server: its job watched and seen once
        for s in ours:
            s.poller.watch(s.job_id, s._on_job_gone)
        await ours[0].poller.refresh()
        shim_log.write_text("")
        spawners = ours + stock
        for s in spawners:
            s.start_polling()
        await asyncio.sleep(seconds)  # the measurement window: spawners poll on their own meanwhile
        for s in spawners:
            s.stop_polling()
    finally:
        subprocess.run(["scancel", *jobs], check=False)
    calls = shim_log.read_text().splitlines()
    rcsc3 = sum(1 for line in calls if "--states=all" in line)
    return {"rcsc3": rcsc3, "stock": len(calls) - rcsc3}


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (it submits jobs as the demo students)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-bench-spawn-"))
    workdir.chmod(0o755)
    if "--poll-only" in sys.argv:
        return poll_section(workdir)
    print(machine_now(), flush=True)
    print(f"== spawn / stop on one hub, {ROUNDS} alternating rounds each (lab Slurm, {os.cpu_count()} cores)")
    res = latency(workdir)
    print()
    for what in ("spawn", "stop"):
        for kind in ("rcsc3", "stock"):
            print(f"{what:5s} {kind:5s}: {stats(res[kind][what])}")
        ratio = statistics.median(res["rcsc3"][what]) / statistics.median(res["stock"][what])
        print(f"{what:5s} ratio rcsc3/stock (medians): {ratio:.2f}")
    print(machine_now())
    if "--spawn-only" in sys.argv:
        return 0
    return poll_section(workdir)


def poll_section(workdir: Path) -> int:
    # squeue counting: a shim first on PATH logs every call, then execs the real squeue
    shim_dir = workdir / "shim"
    shim_dir.mkdir()
    shim_log = workdir / "squeue.log"
    shim_log.touch()
    shim_log.chmod(0o666)  # the stock spawner's squeue runs as the student, through sudo
    (shim_dir / "squeue").write_text(f'#!/bin/sh\necho "$*" >> {shim_log}\nexec /usr/bin/squeue "$@"\n')
    (shim_dir / "squeue").chmod(0o755)
    # sudo's secure_path would bypass the shim: give sudo the shim's path explicitly
    sudoers = Path("/etc/sudoers.d/rcsc3-bench")
    sudoers.write_text(f'Defaults secure_path="{shim_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n')
    sudoers.chmod(0o440)
    os.environ["PATH"] = f"{shim_dir}:{os.environ['PATH']}"
    seconds, interval = 60.0, 30.0
    print(f"\n== squeue calls per minute, JupyterHub polling every {interval:.0f} s for {seconds:.0f} s")
    try:
        for n in (1, 10, 50):
            counts = asyncio.run(poll_load(n, seconds, interval, shim_log))
            per_min = {k: v * 60 / seconds for k, v in counts.items()}
            print(f"{n:3d} users: rcsc3 {per_min['rcsc3']:6.1f}/min   stock {per_min['stock']:6.1f}/min "
                  f"({per_min['stock'] / max(n, 1):.1f}/min/user)", flush=True)
    finally:
        sudoers.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
