"""A whole class at once on the multi-host lab (issue #18 §4): 30 real servers, then 100 fake ones.

Each run is its own JupyterHub on the lab's hub host (benchmarks/class_start_parts/hub_config.py: the
multi-host lab's hub config with its own ports and state, and the class allowed), the real
configurable-http-proxy, real Slurm jobs on cpu1/gpu1 (partition `cpu`, 1 CPU, 1 GiB, no desktop
prestart; the nodes declare 64 CPUs each):

1. rcsc3 (RcSC3Spawner) with real Jupyter servers, for `--students` users (class01..);
2. stock batchspawner.SlurmSpawner, the same hub setup and the same request, with its own batch
   script (configured as benchmarks/spawn.py configures it);
3. `--fake` users with RcSC3Spawner whose job runs benchmarks/class_start_parts/fake_server.py (reports
   its port and answers the identity check, no Jupyter), to show how the hub and the shared squeue
   poller scale beyond what 2 cores can start for real.

Per run: first `--single` single spawns of class01 (POST -> the server answers through the proxy;
the median is the reference), then every student's server requested at the same moment, as the
admin page's "Start All" does (one POST /hub/api/users/<name>/server each, concurrently, no
options: the hub's one profile). Measured while they start: when the first and the last server
answer through the proxy (GET /user/<name>/api/status -> 200, probed once the proxy has the
route, so that probes never load the hub); the hub's latency seen by a steady background client in
its own process (GET /hub/api/users/<name>, cycling through the class, and /hub/home of class01,
logged in, alternately every 0.1 s); squeue calls per minute (a counting shim first on the hub's
PATH, as tests/hubproc.py; the stock spawner's runs through sudo and gets the shim by absolute path
in its own batch_query_cmd); the CPU time of each server's start (all of the student's processes
on the nodes when it first answers, from /proc: no Slurm accounting here); the hub's, the proxy's
and slurmctld's CPU; failed spawns with the hub's reason; and from the hub's log, when each server
passed rcsc3's phases (sbatch returned, job seen running, server proved itself, ready and routed)
and how long the hub itself took to handle the client's requests (tornado's request time: what
is left of the client's latency is waiting to be read, the proxy, or the CPU). Then squeue calls
in a steady window of 3 poll intervals with all servers up, and "Stop All" (DELETE each) until
Slurm lists no job.

Targets printed against each run: no spawn lost; hub p99 < 1 s while they start; the last server
answers in under 2 x the single-spawn median + the servers' start CPU time divided by the
machine's cores (the least wall time the machine needs for that work; printed again with the
hub's, the proxy's and slurmctld's CPU added, next to how busy the machine's CPUs were); squeue
<= 1 call per poll interval for all servers (steady window; + 1 for the window's edges).

A run or spawn that fails is a result with its reason; every wait is bounded. Every job, server
and hub is cleaned up at the end (also on Ctrl-C or failure); the multi-host lab stays up.

Run as root with the multi-host lab up, under the lab lock:
  flock /tmp/rcsc3-lab.lock /opt/rcsc3/venv/bin/python benchmarks/class_start.py [--students 30] [--fake 100]
      [--single 3] [--poll-interval 10] [--only rcsc3,stock,fake]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import pwd
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hubclient import HubClient  # noqa: E402
from machine import cpu_ticks, steal_since  # noqa: E402
from machine import describe as machine_now  # noqa: E402

from rcsc3_lab import cluster  # noqa: E402
from rcsc3_lab.system import LabError  # noqa: E402
from rcsc3_lab.users import class_user_names, ensure_class_users, student_password  # noqa: E402

HUB_IP = cluster.HUB.address
VENV_BIN = Path(sys.executable).parent
HUB_CONFIG = REPO / "benchmarks" / "class_start_parts" / "hub_config.py"
FAKE_SERVER = REPO / "benchmarks" / "class_start_parts" / "fake_server.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("rcsc3", "stock", "fake")
LABELS = {"rcsc3": "rcsc3", "stock": "stock batchspawner", "fake": "rcsc3, fake servers"}


# ------------------------------------------------------------------ small helpers
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def proc_cpu(pid: int | None) -> float | None:
    """A process's CPU seconds so far, with its waited-for children (utime+stime+cutime+cstime)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read(2048)
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # fields from the 3rd on; the name may hold ")"
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat; busy: user, nice, system, irq, softirq."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6], sum(fields)


def cpu_by_uid(uids: set[int]) -> dict[int, float]:
    """CPU seconds of all live processes of each uid (the students' job processes on the nodes:
    the nodes' PID namespaces are children of this one, so /proc here lists them)."""
    out = dict.fromkeys(uids, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
        except OSError:
            continue
        if uid in out:
            out[uid] += proc_cpu(int(entry.name)) or 0.0
    return out


def processes_of(uids: set[int]) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid in uids:
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def jobs_of(users: list[str]) -> list[str]:
    """The cluster's jobs of these users (squeue in the machine's namespace, not through the hub's shim)."""
    try:
        res = cluster.slurm("squeue", "-h", "-u", ",".join(users), "-o", "%i", timeout=20)
    except subprocess.TimeoutExpired:
        return ["?"]
    return res.stdout.split()


def hub_host_ports(n: int) -> list[int]:
    """n free TCP ports on the hub host's address (asked on the hub host itself)."""
    code = (f"import socket; s = [socket.socket() for _ in range({n})]; [x.bind(({HUB_IP!r}, 0)) for x in s]; "
            "print(' '.join(str(x.getsockname()[1]) for x in s))")
    res = subprocess.run(cluster.on_argv("hub", [sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)
    if res.returncode:
        raise LabError(f"cannot pick ports on the hub host: {res.stderr.strip()[-300:]}")
    return [int(p) for p in res.stdout.split()]


def wait_for(check, timeout: float, interval: float = 0.2) -> bool:
    """Bounded poll; False when `check` never held within `timeout` (the caller reports it)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# ------------------------------------------------------------------ what the hub's log says
HUB_LOG_LINE = re.compile(r"\[[A-Z] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) JupyterHub \S+\] (.*)")
#: rcsc3's progress messages and JupyterHub's own, per student: where each server's start went
PHASES = {
    "sbatch returned": re.compile(r"rcsc3: (class\d+): Submitted job"),
    "job seen running": re.compile(r"rcsc3: (class\d+): Job \d+ running on"),
    "server proved itself": re.compile(r"rcsc3: (class\d+): Jupyter server up"),
    "hub: ready, route added": re.compile(r"User (class\d+) took [\d.]+ seconds to start"),
}
#: the background client's requests as the hub logged them (tornado's request time: from the
#: request's arrival to its answer, without the time it waited to be read or the proxy's)
HANDLED = re.compile(r"\d{3} GET (/hub/home|/hub/api/users/class\d+) \((?:class01|class-start-benchmark)@[\d.]+\) ([\d.]+)ms")


def hub_log(path: Path, since: float, until: float) -> list[tuple[float, str]]:
    """(wall time, message) of the hub's log lines between two wall-clock times."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = HUB_LOG_LINE.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()  # the hub logs local time
            if since <= stamp <= until:
                out.append((stamp, m.group(2)))
    return out


def phases(lines: list[tuple[float, str]], start: float) -> dict[str, list[float]]:
    """Seconds after `start` at which each student's server passed each phase (first time only)."""
    seen: dict[str, dict[str, float]] = {}
    for stamp, message in lines:
        for phase, pattern in PHASES.items():
            m = pattern.search(message)
            if m:
                seen.setdefault(phase, {}).setdefault(m.group(1), stamp - start)
    return {phase: sorted(seen[phase].values()) for phase in PHASES if phase in seen}


def handled(lines: list[tuple[float, str]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for _, message in lines:
        m = HANDLED.search(message)
        if m:
            out.setdefault("home" if m.group(1) == "/hub/home" else "user", []).append(float(m.group(2)) / 1000)
    return out


# ------------------------------------------------------------------ the hub of one run
class LabHub:
    """One JupyterHub on the lab's hub host (`rcsc3 lab on hub`) with its own ports, state and squeue counter."""

    def __init__(self, workdir: Path, kind: str, users: list[str], poll_interval: float):
        self.workdir, self.kind, self.users, self.poll_interval = workdir, kind, users, poll_interval
        self.port, self.hub_port, self.proxy_api_port = hub_host_ports(3)
        self.url = f"http://{HUB_IP}:{self.port}"
        self.proxy_api = f"http://{HUB_IP}:{self.proxy_api_port}/api/routes"
        self.api_token = secrets.token_hex(32)
        self.proxy_token = secrets.token_hex(32)
        self.state_dir = workdir / "state"
        self.log_path = workdir / "hub.log"
        self.proc: subprocess.Popen | None = None
        # squeue counting: a shim first on the hub's PATH logs every call (wall time, argv) and
        # execs the real squeue; world-writable log, as the stock spawner's squeue runs as the student
        self.squeue_log = workdir / "squeue-calls.log"
        self.squeue_log.touch()
        self.squeue_log.chmod(0o666)
        shim_dir = workdir / "bin"
        shim_dir.mkdir()
        self.shim = shim_dir / "squeue"
        self.shim.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {self.squeue_log}\nexec /usr/bin/squeue "$@"\n')
        self.shim.chmod(0o755)
        self.settings = workdir / "settings.json"
        fd = os.open(self.settings, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the run's tokens
        with os.fdopen(fd, "w") as f:
            json.dump({"spawner": kind, "users": users, "state_dir": str(self.state_dir), "port": self.port,
                       "hub_port": self.hub_port, "proxy_api_port": self.proxy_api_port, "api_token": self.api_token,
                       "proxy_token": self.proxy_token, "poll_interval": poll_interval, "squeue_shim": str(self.shim),
                       "fake_server": str(FAKE_SERVER)}, f)

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ, PATH=f"{self.shim.parent}:{VENV_BIN}:{cluster.SYSTEM_PATH}",
                   RCSC3_BENCH_SETTINGS=str(self.settings))
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        argv = cluster.on_argv("hub", [str(VENV_BIN / "jupyterhub"), "-f", str(HUB_CONFIG)])
        with open(self.log_path, "ab") as log:
            # nsenter, unshare and the shell exec in turn: this pid becomes the hub's
            self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise LabError(f"the hub exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                return requests.get(f"{self.url}/hub/api", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        if not wait_for(up, timeout):
            raise LabError(f"the hub did not answer on {self.url} within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    def proxy_pid(self) -> int | None:
        try:
            return int((self.state_dir / "jupyterhub-proxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu(self) -> dict[str, float | None]:
        ctld = cluster.load_state().get("daemons", {}).get("slurmctld", {}).get("pid")
        return {"hub": proc_cpu(self.proc.pid if self.proc else None), "proxy": proc_cpu(self.proxy_pid()),
                "slurmctld": proc_cpu(ctld)}

    def squeue_stamps(self, since: float, until: float) -> list[float]:
        """When the hub (or its spawners through sudo) started an squeue, between two wall-clock times."""
        stamps = []
        for line in self.squeue_log.read_text().splitlines():
            try:
                stamp = float(line.split(" ", 1)[0])
            except ValueError:
                continue
            if since <= stamp <= until:
                stamps.append(stamp)
        return stamps

    def squeue_calls(self, since: float, until: float) -> int:
        return len(self.squeue_stamps(since, until))

    def stop(self) -> list[str]:
        """Stop the hub (and a proxy it left behind); returns what needed force."""
        problems = []
        proxy = self.proxy_pid()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                problems.append("the hub needed SIGKILL")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if proxy and proc_cpu(proxy) is not None and wait_for(lambda: proc_cpu(proxy) is None, 10) is False:
            problems.append(f"the proxy (pid {proxy}) outlived the hub: SIGKILL")
            os.kill(proxy, signal.SIGKILL)
        self.proc = None
        return problems


# ------------------------------------------------------------------ one spawn, and watching many
@dataclass
class Spawn:
    user: str
    post_status: int | str = 0
    #: seconds after the POSTs were sent: the first 200 through the proxy, or when found failed
    answered: float | None = None
    failed: str = ""
    failed_at: float | None = None
    #: CPU seconds of all the student's processes when the server first answered
    cpu: float | None = None


class CpuSampler:
    """Reads the students' CPU time from /proc, one scan for all the servers that just answered."""

    def __init__(self, users: list[str]):
        self.uids = {u: pwd.getpwnam(u).pw_uid for u in users}
        self._waiting: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._loop())

    async def sample(self, user: str) -> float | None:
        future = asyncio.get_running_loop().create_future()
        self._waiting[user] = future
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, {}
            got = await loop.run_in_executor(None, cpu_by_uid, {self.uids[u] for u in batch})
            for user, future in batch.items():
                if not future.done():
                    future.set_result(got.get(self.uids[user]))

    def close(self) -> None:
        self._task.cancel()


class Api:
    """The benchmark's hub and proxy clients (aiohttp; the hub's service token)."""

    def __init__(self, hub: LabHub, session: aiohttp.ClientSession):
        self.hub, self.session = hub, session
        self.headers = {"Authorization": f"token {hub.api_token}"}

    async def call(self, method: str, path: str, timeout: float = 30) -> tuple[int | str, str]:
        try:
            async with self.session.request(method, f"{self.hub.url}/hub/api{path}", headers=self.headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as r:
                return r.status, await r.text()
        except (TimeoutError, aiohttp.ClientError) as e:
            return type(e).__name__, str(e)

    async def routes(self) -> set[str]:
        try:
            async with self.session.get(self.hub.proxy_api, headers={"Authorization": f"token {self.hub.proxy_token}"},
                                        timeout=aiohttp.ClientTimeout(total=10)) as r:
                return {k.rstrip("/") for k in await r.json()} if r.status == 200 else set()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return set()

    async def answers(self, user: str) -> bool:
        """One try: does the student's server answer through the proxy?"""
        try:
            async with self.session.get(f"{self.hub.url}/user/{user}/api/status", headers=self.headers,
                                        timeout=aiohttp.ClientTimeout(total=10), allow_redirects=False) as r:
                await r.read()
                return r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def failure_reason(self, user: str) -> str:
        """The hub's own words for a failed spawn (its progress stream's last event)."""
        message = "the hub dropped the server without a reason"
        try:
            async with self.session.get(f"{self.hub.url}/hub/api/users/{user}/server/progress", headers=self.headers,
                                        timeout=aiohttp.ClientTimeout(total=15)) as r:
                if r.status != 200:
                    return f"{message} (progress: HTTP {r.status})"
                async for raw in r.content:
                    line = raw.decode(errors="replace").strip()
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event.get("failed") or event.get("ready"):
                            return event.get("message", message)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            return f"{message} (progress: {type(e).__name__})"
        return message


async def watch(api: Api, spawns: dict[str, Spawn], t0: float, deadline: float, sampler: CpuSampler) -> None:
    """Until every spawn answered or failed (or the deadline): the proxy's routing table every 0.1 s,
    each routed server probed through the proxy until it answers, the hub's view every 3 s for failures."""
    probing: dict[str, asyncio.Task] = {}

    def open_() -> list[Spawn]:
        return [s for s in spawns.values() if s.answered is None and not s.failed]

    async def probe(s: Spawn) -> None:
        while time.monotonic() < deadline and not s.failed:
            if await api.answers(s.user):
                answered = time.monotonic() - t0
                s.cpu = await sampler.sample(s.user)
                s.answered = answered  # last: the watch ends when every spawn has its answer and its CPU
                return
            await asyncio.sleep(0.05)

    async def failures() -> None:
        while open_() and time.monotonic() < deadline:
            status, body = await api.call("GET", "/users?limit=200")
            if status == 200:
                servers = {u["name"]: u.get("servers", {}) for u in json.loads(body)}
                for s in open_():
                    if "" not in servers.get(s.user, {}):
                        s.failed_at = time.monotonic() - t0
                        s.failed = await api.failure_reason(s.user)
            await asyncio.sleep(3)

    failure_task = asyncio.ensure_future(failures())
    try:
        while open_() and time.monotonic() < deadline:
            routed = await api.routes()
            for s in open_():
                if f"/user/{s.user}" in routed and s.user not in probing:
                    probing[s.user] = asyncio.ensure_future(probe(s))
            await asyncio.sleep(0.1)
    finally:
        failure_task.cancel()
        for task in probing.values():
            task.cancel()
    for s in open_():
        s.failed = f"no answer within {deadline - t0:.0f} s"
        s.failed_at = deadline - t0
    for s in spawns.values():
        if s.failed and s.failed_at is None:  # refused by the POST itself
            s.failed_at = 0.0


async def post_all(api: Api, spawns: dict[str, Spawn]) -> None:
    """POST /users/<name>/server for all at once, no options (the admin page's Start All)."""
    async def one(s: Spawn) -> None:
        status, body = await api.call("POST", f"/users/{s.user}/server")
        s.post_status = status
        if status not in (201, 202):
            try:
                detail = json.loads(body).get("message", body)
            except (ValueError, AttributeError):
                detail = body
            s.failed = f"POST answered {status}: {str(detail)[:200]}"

    await asyncio.gather(*(one(s) for s in spawns.values()))


async def stop_all(api: Api, users: list[str], timeout: float = 120) -> tuple[float | None, list[str]]:
    """DELETE every server at once (the admin page's Stop All); seconds until Slurm lists none of their jobs."""
    t0 = time.monotonic()
    results = await asyncio.gather(*(api.call("DELETE", f"/users/{u}/server") for u in users))
    problems = [f"DELETE {u}: {st} {body[:100]}" for u, (st, body) in zip(users, results, strict=True)
                if st not in (202, 204, 400, 404)]
    loop = asyncio.get_running_loop()
    while time.monotonic() - t0 < timeout:
        if not await loop.run_in_executor(None, jobs_of, users):
            return time.monotonic() - t0, problems
        await asyncio.sleep(0.2)
    return None, [*problems, f"jobs still listed {timeout:.0f} s after Stop All: {' '.join(jobs_of(users))}"]


# ------------------------------------------------------------------ the background latency client
def latency_client(conn, stop, base: str, token: str, cookies: dict, users: list[str], interval: float) -> None:
    """In its own process: GET /hub/api/users/<name> and /hub/home alternately, one every `interval`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the benchmark, which then asks for the samples
    api = requests.Session()
    api.headers["Authorization"] = f"token {token}"
    home = requests.Session()
    home.cookies.update(cookies)
    samples = []
    i = 0
    while not stop.is_set():
        kind = "home" if i % 2 else "user"
        url = f"{base}/hub/home" if kind == "home" else f"{base}/hub/api/users/{users[(i // 2) % len(users)]}"
        t0 = time.monotonic()
        try:
            status = (home if kind == "home" else api).get(url, timeout=20, allow_redirects=False).status_code
        except requests.RequestException as e:
            status = type(e).__name__
        took = time.monotonic() - t0
        samples.append((t0, kind, took, status))
        i += 1
        stop.wait(max(0.0, interval - took))  # a steady rate; the wait is the client's pace, not a sync
    conn.send(samples)
    conn.close()


class LatencyProbe:
    def __init__(self, hub: LabHub, observer: HubClient, users: list[str], interval: float = 0.1):
        ctx = multiprocessing.get_context("spawn")
        self._parent, child = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=latency_client, daemon=True, args=(
            child, self._stop, hub.url, hub.api_token, observer.session.cookies.get_dict(), users, interval))
        self._proc.start()

    def finish(self) -> list[tuple]:
        self._stop.set()
        try:
            samples = self._parent.recv() if self._parent.poll(30) else []
        except EOFError:  # the client died: no samples, which the report shows as "—"
            samples = []
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        return samples


# ------------------------------------------------------------------ one run
@dataclass
class Run:
    kind: str
    users: list[str]
    poll_interval: float
    single: list[float] = field(default_factory=list)
    single_cpu: list[float] = field(default_factory=list)
    single_failed: list[str] = field(default_factory=list)
    #: squeue calls and seconds over the single spawns' windows (POST -> answer)
    single_squeue: tuple[int, float] = (0, 0.0)
    spawns: dict[str, Spawn] = field(default_factory=dict)
    window: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=dict)
    latency_errors: Counter = field(default_factory=Counter)
    #: the slowest requests the client saw: (seconds after the POSTs, kind, seconds)
    slowest: list[tuple[float, str, float]] = field(default_factory=list)
    #: the same requests' handling time in the hub, from its log
    handled: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, list[float]] = field(default_factory=dict)
    idle_latency: dict[str, list[float]] = field(default_factory=dict)
    squeue_start: int = 0
    #: the longest time between two squeue calls while the class started (a slow round)
    squeue_gap: float | None = None
    squeue_steady: int | None = None
    steady_window: float = 0.0
    cpu: dict[str, float | None] = field(default_factory=dict)
    steal: float | None = None
    #: percent of the machine's CPU time that something used while the class started
    busy: float | None = None
    stop_all: float | None = None
    problems: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def answered(self) -> list[float]:
        return sorted(s.answered for s in self.spawns.values() if s.answered is not None)

    @property
    def start_cpu(self) -> float:
        return sum(s.cpu for s in self.spawns.values() if s.cpu is not None)

    @property
    def bound(self) -> float | None:
        if not self.single:
            return None
        return 2 * statistics.median(self.single) + self.start_cpu / (os.cpu_count() or 1)


async def single_spawns(api: Api, run: Run, rounds: int, hub: LabHub) -> None:
    user = run.users[0]
    sampler = CpuSampler([user])
    try:
        for i in range(rounds):
            spawns = {user: Spawn(user)}
            t0, w0 = time.monotonic(), time.time()
            await post_all(api, spawns)
            await watch(api, spawns, t0, t0 + 300, sampler)
            s = spawns[user]
            if s.answered is not None:
                run.single.append(s.answered)
                run.single_cpu.append(s.cpu or 0.0)
                calls, seconds = run.single_squeue
                run.single_squeue = (calls + hub.squeue_calls(w0, w0 + s.answered), seconds + s.answered)
                print(f"  single spawn {i + 1}: {s.answered:5.2f} s, server CPU {s.cpu or 0:.2f} s", flush=True)
            else:
                run.single_failed.append(s.failed)
                print(f"  single spawn {i + 1}: FAILED: {s.failed}", flush=True)
            _, problems = await stop_all(api, [user])
            run.problems += problems
    finally:
        sampler.close()


async def class_start(api: Api, run: Run, hub: LabHub, observer: HubClient, deadline_s: float) -> None:
    users = run.users
    run.spawns = {u: Spawn(u) for u in users}
    sampler = CpuSampler(users)
    probe = LatencyProbe(hub, observer, users)
    try:
        await asyncio.sleep(3)  # a measurement window: the idle hub's latency, before the POSTs
        cpu0, ticks0, busy0 = hub.cpu(), cpu_ticks(), cpu_busy_ticks()
        t0, w0 = time.monotonic(), time.time()
        await post_all(api, run.spawns)
        print(f"  {len(users)} POSTs answered in {time.monotonic() - t0:.2f} s: "
              f"{dict(Counter(str(s.post_status) for s in run.spawns.values()))}", flush=True)
        await watch(api, run.spawns, t0, t0 + deadline_s, sampler)
        run.window = max((s.answered if s.answered is not None else s.failed_at or 0.0) for s in run.spawns.values())
        run.steal = steal_since(ticks0)
        busy1 = cpu_busy_ticks()
        run.busy = 100.0 * (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
        cpu1 = hub.cpu()
        run.cpu = {k: (cpu1[k] - cpu0[k]) if cpu1[k] is not None and cpu0[k] is not None else None for k in cpu1}
    finally:
        samples = probe.finish()
        sampler.close()
    for t, kind, took, status in samples:
        if t < t0:
            run.idle_latency.setdefault(kind, []).append(took)
        elif t <= t0 + run.window:
            run.slowest.append((t - t0, kind, took))
            if status == 200:
                run.latency.setdefault(kind, []).append(took)
            else:
                run.latency_errors[f"{kind} {status}"] += 1
    run.slowest = sorted(run.slowest, key=lambda x: -x[2])[:3]
    lines = hub_log(hub.log_path, w0, w0 + run.window + 1)
    run.handled, run.phases = handled(lines), phases(lines, w0)
    stamps = hub.squeue_stamps(w0, w0 + run.window)
    run.squeue_start = len(stamps)
    run.squeue_gap = max((b - a for a, b in zip(stamps, stamps[1:], strict=False)), default=None)
    if run.answered:
        run.steady_window = 3 * run.poll_interval
        w1 = time.time()
        await asyncio.sleep(run.steady_window)  # the measurement window: spawners poll on their own
        run.squeue_steady = hub.squeue_calls(w1, w1 + run.steady_window)
    run.stop_all, problems = await stop_all(api, users)
    run.problems += problems


def cleanup(hub: LabHub | None, users: list[str]) -> list[str]:
    """Stop every server, the hub and every job of the class, bounded; returns what went wrong."""
    problems = []
    if hub is not None and hub.proc is not None and hub.proc.poll() is None:
        headers = {"Authorization": f"token {hub.api_token}"}
        for u in users:
            try:
                requests.delete(f"{hub.url}/hub/api/users/{u}/server", headers=headers, timeout=10)
            except requests.RequestException:
                pass
        wait_for(lambda: not jobs_of(users), 60, 0.5)
    if hub is not None:
        problems += hub.stop()
    left = jobs_of(users)
    if left:
        problems.append(f"scancel of jobs left after the hub stopped: {' '.join(left)}")
        cluster.slurm("scancel", *[j for j in left if j.isdigit()], timeout=20)
        if not wait_for(lambda: not jobs_of(users), 60, 0.5):
            problems.append(f"jobs still listed: {' '.join(jobs_of(users))}")
    uids = {pwd.getpwnam(u).pw_uid for u in users}
    if not wait_for(lambda: not processes_of(uids), 15, 0.3):
        pids = processes_of(uids)
        problems.append(f"processes of the class left after their jobs ended, killed: {pids}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return problems


def run_kind(kind: str, users: list[str], rounds: int, poll_interval: float, deadline_s: float) -> Run:
    run = Run(kind, users, poll_interval)
    workdir = Path(tempfile.mkdtemp(prefix=f"rcsc3-bench-class-{kind}-"))
    workdir.chmod(0o755)  # the stock spawner's squeue shim runs as the students
    hub = None
    print(f"\n== {LABELS[kind]}: {len(users)} students ({users[0]}..{users[-1]}), hub log in {workdir}/hub.log", flush=True)
    print(f"  {machine_now()}", flush=True)
    try:
        hub = LabHub(workdir, kind, users, poll_interval)
        hub.start()
        observer = HubClient.login(hub.url, users[0], student_password())

        async def main() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                api = Api(hub, session)
                await single_spawns(api, run, rounds, hub)
                await class_start(api, run, hub, observer, deadline_s)

        asyncio.run(main())
    except (LabError, AssertionError, OSError, requests.RequestException, aiohttp.ClientError, subprocess.SubprocessError,
            ValueError) as e:
        run.error = f"{type(e).__name__}: {e}"
        print(f"  run failed: {run.error}", flush=True)
    finally:
        run.problems += cleanup(hub, users)
        shutil.rmtree(workdir / "state", ignore_errors=True)  # the run's database and cookie secret
        (workdir / "settings.json").unlink(missing_ok=True)  # its tokens
    return run


# ------------------------------------------------------------------ report
def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def lat(run: Run, kind: str) -> str:
    got = run.latency.get(kind, [])
    if not got:
        return "—"
    return f"{statistics.median(got) * 1000:.0f} / {percentile(got, 99) * 1000:.0f} ms (n={len(got)})"


def rows(run: Run) -> dict[str, str]:
    n = len(run.users)
    answered = run.answered
    failed = [s for s in run.spawns.values() if s.failed]
    per_min = run.squeue_start * 60 / run.window if run.window else None
    p99 = max((percentile(v, 99) for v in run.latency.values() if v), default=None)
    cpu_each = [s.cpu for s in run.spawns.values() if s.cpu is not None]
    bound = run.bound
    allowed = run.steady_window / run.poll_interval + 1 if run.steady_window else None
    out = {
        "single spawn median (n)": (f"{statistics.median(run.single):.2f} s (n={len(run.single)}, "
                                    f"{min(run.single):.2f}–{max(run.single):.2f})") if run.single else "—",
        "single spawn: server CPU median": fmt_s(statistics.median(run.single_cpu) if run.single_cpu else None),
        "first server answers": fmt_s(answered[0] if answered else None),
        "median server answers": fmt_s(statistics.median(answered) if answered else None),
        "last server answers": fmt_s(answered[-1] if answered else None),
        "answered / failed": f"{len(answered)} of {n} / {len(failed)}",
        "hub GET /hub/api/users/<name> p50/p99": lat(run, "user"),
        "hub GET /hub/home p50/p99": lat(run, "home"),
        "…its handling in the hub p50/p99 (api / home)": " / ".join(
            f"{statistics.median(run.handled[k]) * 1000:.0f}/{percentile(run.handled[k], 99) * 1000:.0f} ms"
            if run.handled.get(k) else "—" for k in ("user", "home")),
        "hub latency errors": ", ".join(f"{k}: {v}" for k, v in run.latency_errors.items()) or "none",
        "idle hub p50 (api / home)": " / ".join(
            f"{statistics.median(run.idle_latency[k]) * 1000:.0f} ms" if run.idle_latency.get(k) else "—"
            for k in ("user", "home")),
        "squeue/min: 1 starting / all starting": (
            f"{run.single_squeue[0] * 60 / run.single_squeue[1]:.0f} / " if run.single_squeue[1] else "— / ")
        + (f"{per_min:.0f}" if per_min is not None else "—"),
        "squeue per poll interval, all starting": (
            f"{run.squeue_start * run.poll_interval / run.window:.1f}" if run.window else "—"),
        "squeue: longest gap between calls, starting": fmt_s(run.squeue_gap),
        f"squeue in {run.steady_window:.0f} s steady, all up": (
            f"{run.squeue_steady} ({run.squeue_steady / (run.steady_window / run.poll_interval):.1f} per "
            f"{run.poll_interval:.0f} s interval)") if run.squeue_steady is not None else "—",
        **{f"phase: {phase} (first/median/last)": f"{v[0]:.1f} / {statistics.median(v):.1f} / {v[-1]:.1f} s"
           for phase, v in run.phases.items()},
        "servers' start CPU (sum; median each)": (f"{run.start_cpu:.1f} s; {statistics.median(cpu_each):.2f} s"
                                                  f"{'' if len(cpu_each) == n else f' (of {len(cpu_each)})'}"
                                                  if cpu_each else "—"),
        "CPU during the start: hub / proxy / slurmctld": " / ".join(
            f"{run.cpu[k]:.1f} s" if run.cpu.get(k) is not None else "—" for k in ("hub", "proxy", "slurmctld")),
        f"bound 2×median + CPU/{os.cpu_count()} cores": fmt_s(bound),
        "…with the hub's, proxy's, slurmctld's CPU too": fmt_s(
            bound + sum(v for v in run.cpu.values() if v is not None) / (os.cpu_count() or 1) if bound else None),
        "machine's CPU busy during the start": f"{run.busy:.0f} %" if run.busy is not None else "—",
        "CPU steal during the start": f"{run.steal:.0f} %" if run.steal is not None else "—",
        "Stop All: jobs gone after": fmt_s(run.stop_all),
        "target: no spawn lost": "met" if answered and len(answered) == n else "MISSED",
        "target: hub p99 < 1 s": "—" if p99 is None else ("met" if p99 < 1 else f"MISSED ({p99:.2f} s)"),
        "target: last answers < bound": "—" if not (answered and bound) else (
            "met" if answered[-1] < bound and len(answered) == n else "MISSED"),
        "target: squeue ≤ 1 per poll interval": "—" if run.squeue_steady is None else (
            "met" if run.squeue_steady <= allowed else f"MISSED ({run.squeue_steady} > {allowed:.0f})"),
    }
    return out


def print_table(runs: list[Run]) -> None:
    tables = [rows(r) for r in runs]
    keys = list(dict.fromkeys(k for t in tables for k in t))
    width = max(len(k) for k in keys) + 2
    col = max(24, *(len(v) for t in tables for v in t.values())) + 2
    print("".ljust(width) + "".join(f"{LABELS[r.kind]} ({len(r.users)})".ljust(col) for r in runs))
    for k in keys:
        print(k.ljust(width) + "".join(t.get(k, "").ljust(col) for t in tables))


def print_details(run: Run) -> None:
    if run.slowest:
        print(f"  {LABELS[run.kind]}: slowest requests of the client: "
              + ", ".join(f"{'/hub/home' if kind == 'home' else '/hub/api/users/<name>'} {took:.2f} s at {at:.0f} s"
                          for at, kind, took in run.slowest))
    if run.error:
        print(f"  {LABELS[run.kind]}: the run failed: {run.error}")
    reasons = Counter(s.failed for s in run.spawns.values() if s.failed)
    for reason, count in reasons.most_common():
        who = [s.user for s in run.spawns.values() if s.failed == reason]
        print(f"  {LABELS[run.kind]}: {count} failed: {reason} ({', '.join(who[:8])}{' ...' if len(who) > 8 else ''})")
    for failure in run.single_failed:
        print(f"  {LABELS[run.kind]}: a single spawn failed: {failure}")
    for problem in run.problems:
        print(f"  {LABELS[run.kind]}: clean-up: {problem}")


def ensure_lab() -> str:
    """'' when the multi-host lab is up (brought up if it is not), else why not."""
    try:
        status = cluster.cluster_status()
        if not status["up"]:
            print(f"the multi-host lab is not up ({status['problem']}): rcsc3 lab up --hosts", flush=True)
            status = cluster.cluster_up(install=False)
        return "" if status["up"] else status["problem"]
    except LabError as e:
        return str(e)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30, help="real servers started at once (default 30)")
    parser.add_argument("--fake", type=int, default=100, help="fake servers started at once (default 100; 0: none)")
    parser.add_argument("--single", type=int, default=3, help="single spawns per run for the median (default 3)")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="the hub's poll_interval in seconds (default 10)")
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds the whole class may take to start (default 420)")
    parser.add_argument("--only", default=",".join(KINDS), help="runs to make, from rcsc3,stock,fake (default all)")
    args = parser.parse_args()
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    bad = [k for k in only if k not in KINDS]
    if bad or args.students < 1 or args.fake < 0 or args.single < 1:
        parser.error(f"--only: {bad} not among {', '.join(KINDS)}" if bad else
                     "--students and --single: at least 1; --fake: at least 0")
    # the lab's addresses never go through a proxy a shell may have set
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), HUB_IP]))
    if os.geteuid() != 0:
        print("run as root (it creates the class's accounts and submits jobs as them)", file=sys.stderr)
        return 2
    problem = ensure_lab()
    if problem:
        print(f"the multi-host lab is not usable: {problem}", file=sys.stderr)
        return 2
    plan = [(k, args.fake if k == "fake" else args.students) for k in only if not (k == "fake" and args.fake == 0)]
    ensure_class_users(max(n for _, n in plan))
    # SIGTERM ends the runs like Ctrl-C: the clean-up in run_kind's finally still runs
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(machine_now(), flush=True)
    runs = []
    try:
        for kind, n in plan:
            runs.append(run_kind(kind, class_user_names(n), args.single, args.poll_interval, args.deadline))
    except KeyboardInterrupt:
        print("\ninterrupted: the runs so far (the interrupted one was cleaned up)", flush=True)
    print(machine_now(), flush=True)
    real = [r for r in runs if r.kind != "fake"]
    fake = [r for r in runs if r.kind == "fake"]
    for group, title in ((real, "real Jupyter servers"), (fake, "fake light-weight servers (RcSC3Spawner)")):
        if group:
            print(f"\n== a whole class at once, {title}: partition cpu, 1 CPU, 1 GiB each, multi-host lab, "
                  f"{os.cpu_count()} cores, poll_interval {args.poll_interval:.0f} s, {datetime.now():%Y-%m-%d %H:%M}")
            print_table(group)
    print("\n== slowest hub requests, failures and clean-up")
    for run in runs:
        print_details(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
