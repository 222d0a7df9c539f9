"""IPython Parallel engines as job steps of the Slurm job the notebook runs in.

    cluster = ipp.Cluster(engines="srun", n=4)
    rc = cluster.start_and_connect_sync()
    rc[:].map_sync(f, data)

`SrunEngineSetLauncher` (entry point ``ipyparallel.engine_launchers: srun``) runs
one `srun` inside ``$SLURM_JOB_ID`` -- one step, n tasks, one engine per task --
instead of submitting a new job like ipyparallel's `slurm` launcher. It is an
ipyparallel `LocalProcessLauncher` (like `MPIEngineSetLauncher` around `mpiexec`),
with the Slurm parts on top:

- default `n`: the engines the allocation has room for (``$RCSC3_ENGINES`` from the
  spawn form, else the job's CPUs), with a clear error when `n` does not fit;
- engines boot while the controller is still starting (`early_start`), reading a
  private connection file the launcher writes once the controller is up;
- the step's id is looked up (``squeue --steps``), so `stop()` cancels exactly that
  step (``scancel JOB.STEP``) and waits until Slurm has removed it, and
  `signal()` reaches the engines through ``scancel --signal``;
- engines that die are reported (srun's task-end lines, tail of that engine's output),
  while a normal stop says so in one line (`stop_report`), not as 137s and "Killed";
- `srun` runs under `rcsc3_proxy.engines.guard`, which ends the step (and the
  controller) when the kernel dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

import psutil
from ipyparallel.cluster.launcher import (
    EngineLauncher,
    LauncherError,
    LocalProcessLauncher,
    NotRunning,
)
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Integer, List, Unicode

from .allocation import (
    Allocation,
    EnginePlan,
    SlurmAllocationError,
    job_steps,
    node_hostnames,
    plan_engines,
    run_command,
    srun_argv,
)
from .process_exit import wait_for_exit
from .step_output import SrunOutput, TaskEnd
from .stop_report import StepStopData, stop_summary

__all__ = ["NotRunning", "SlurmAllocationError", "SrunEngineSetLauncher"]

_LOOPBACK_PREFIXES = ("127.", "localhost", "::1", "[::1]")


def _controller_host(environment: dict[str, str]) -> str | None:
    """The address engines will connect to, from the controller's connection info (None if unknown)."""
    info = environment.get("IPP_CONNECTION_INFO")
    if not info:
        return None
    interface = json.loads(info).get("interface", "")
    return interface.partition("://")[2] or None


class SrunEngineSetLauncher(LocalProcessLauncher, EngineLauncher):
    """Launch engines as one `srun` job step inside the current Slurm allocation."""

    entrypoint_name = "srun"

    srun_cmd = List(Unicode(), ["srun"], config=True, help="The command that starts a job step.")
    srun_args = List(
        Unicode(), [], config=True, help="Extra `srun` options, appended after the launcher's own (e.g. ['--mem-per-cpu=2G'])."
    )
    squeue_cmd = Unicode("squeue", config=True, help="The command that lists the job's steps.")
    scancel_cmd = Unicode("scancel", config=True, help="The command that cancels a job step.")
    cpus_per_engine = Integer(1, config=True, help="CPUs per engine (`srun --cpus-per-task`).")
    overcommit = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Allow more engines than CPUs (`srun --overcommit`).
        None (default): allowed inside an rcsc3 session ($RCSC3_ENGINES set), where the
        Jupyter server already shares its CPU; elsewhere asking for more engines than
        the job has CPUs is an error that says how many fit.""",
    )
    max_engines_per_cpu = Integer(
        4, config=True, help="When overcommitting, the most engines per CPU of the job (a guard against typos)."
    )
    exclusive = Bool(
        False,
        config=True,
        help="""Give the engines dedicated CPUs (`srun --exact`) instead of sharing the job's
        CPUs with its other steps (`srun --overlap`, the default). Exclusive steps wait
        while another step holds the CPUs.""",
    )
    gpus = Integer(
        0,
        config=True,
        help="""GPUs for the engine step (`--gres=gpu:N`); 0 (`--gres=none`) leaves the job's GPUs
        to the desktop and the notebook.""",
    )
    step_timeout = Float(
        30,
        config=True,
        help="Seconds to wait for Slurm to start the step before giving up with the reason srun printed.",
    )
    output_poll_seconds = Float(
        0.5, config=True, help="How often (s) the step's output is read for engines that died."
    )
    early_start = Bool(
        True,
        config=True,
        help="""Start the engines while the controller is still starting (single-node jobs).
        ipyparallel waits for the controller's connection info before launching engines;
        booting both at once saves about a second: the engines wait for a private
        connection file that the launcher writes as soon as the controller is ready.""",
    )
    guard = Bool(
        True,
        config=True,
        help="Run srun under rcsc3_proxy.engines.guard, which ends the step (and the controller) if this process dies.",
    )

    job_id = Unicode(help="The Slurm job the step belongs to.").tag(to_dict=True)
    step_id = Unicode(help="The step, as 'JOB.STEP', once Slurm has started it.").tag(to_dict=True)
    step_name = Unicode(help="The step's name (srun --job-name), unique per engine set.").tag(to_dict=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # not `_output`: LocalProcessLauncher.get_output() caches the output text there
        self._step_output = SrunOutput()
        self._output_offset = 0
        self._output_watch: PeriodicCallback | None = None
        self._stop_requested = False
        #: engines that had ended on their own when stop() was called
        self._died_before_stop: dict[int, TaskEnd] = {}
        self._plan: EnginePlan | None = None
        self._url_file = ""
        self._adopt_default_n()
        self._early = self._claim_early_start()

    # -- defaults ----------------------------------------------------------

    def _adopt_default_n(self) -> None:
        """Make the allocation's engine count the cluster's default `n`.

        ipyparallel's Cluster falls back to the *machine's* core count when no `n` is
        given; it reads `cluster.n` right after building this launcher, so setting it
        here (only when unset) gives `Cluster(engines="srun")` the engines the spawn
        form reserved, while an explicit `n` still wins.
        """
        from ipyparallel.cluster.cluster import Cluster

        parent = self.parent
        if isinstance(parent, Cluster) and parent.n is None:
            try:
                alloc = Allocation.from_env()
            except SlurmAllocationError:
                return  # start() raises the explanation
            parent.n = max(alloc.engine_slots(self.cpus_per_engine), 1)

    def _claim_early_start(self) -> bool:
        """Ask the Cluster not to wait for the controller before calling start().

        Cluster.start_engines checks `send_engines_connection_env` right after building
        this launcher; start() puts the flag back and hands the engines the connection
        info itself (see `early_start`).
        """
        from ipyparallel.cluster.cluster import Cluster

        parent = self.parent
        if not (self.early_start and isinstance(parent, Cluster) and parent.send_engines_connection_env):
            return False
        if not hasattr(getattr(parent, "controller", None), "get_connection_info"):
            return False
        parent.send_engines_connection_env = False
        return True

    async def _engine_connection_info(self) -> dict:
        info = await self.parent.controller.get_connection_info()
        return info["engine"]

    def _write_url_file(self, info: dict) -> None:
        """Write the engines' connection file atomically, private to the user (it holds the key)."""
        tmp = f"{self._url_file}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, self._url_file)  # engines poll for the name: they never see half a file

    def _remove_url_file(self) -> None:
        if self._url_file:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._url_file)

    # -- command line ------------------------------------------------------

    def find_args(self) -> list[str]:
        srun = srun_argv(
            self.srun_cmd,
            job_id=self.job_id or "$SLURM_JOB_ID",
            n=self.n,
            step_name=self.step_name or "ipengine",
            cpus_per_engine=self.cpus_per_engine,
            overcommit=bool(self._plan and self._plan.overcommit),
            exclusive=self.exclusive,
            gpus=self.gpus,
            nodelist=self._nodelist,
            extra_args=self.srun_args,
        )
        url_args = []
        if self._url_file:
            # as long as the Cluster would have waited for the controller itself
            wait = self.parent.config.ControllerLauncher.get("connection_info_timeout", 60) + 10
            url_args = [f"--IPEngine.url_file={self._url_file}", f"--IPEngine.wait_for_url_file={wait}"]
        engine = self.engine_cmd + self.cluster_args + url_args + self.engine_args
        if not self.guard:
            return srun + engine
        guard = [sys.executable, "-m", "rcsc3_proxy.engines.guard", "--watch", str(os.getpid())]
        for pid in self._controller_pids():
            guard += ["--also-stop", str(pid)]
        if self._url_file:
            guard += ["--remove", self._url_file]
        return guard + ["--"] + srun + engine

    _nodelist = ""

    def _controller_pids(self) -> list[int]:
        """The local controller's pid, so the guard can stop it with the kernel."""
        controller = getattr(self.parent, "controller", None)
        pid = getattr(controller, "pid", -1)
        return [pid] if isinstance(pid, int) and pid > 0 else []

    async def _confine_to_controller(self, alloc: Allocation) -> None:
        """Keep engines where they can reach a controller that listens on loopback only."""
        host = _controller_host(self.environment)
        if host is None or not host.startswith(_LOOPBACK_PREFIXES):
            return
        local = alloc.node_name
        if not local:
            # e.g. an salloc shell on a login host: is this host one of the job's nodes?
            hostname = os.uname().nodename.split(".")[0]
            nodes = await node_hostnames(os.environ.get("SLURM_JOB_NODELIST", ""))
            local = hostname if hostname in nodes else ""
        if not local:
            raise SlurmAllocationError(
                f"the controller listens on {host} on {os.uname().nodename}, which is not a node of "
                f"{alloc.describe()}: engines there could not reach it. "
                "Set c.Cluster.controller_ip = '*' (or this host's address)."
            )
        if alloc.nodes > 1:
            self.log.warning(
                "The controller listens on %s only: starting the engines on %s, not on all %d nodes of %s. "
                "Set c.Cluster.controller_ip = '*' to use every node.",
                host,
                local,
                alloc.nodes,
                alloc.describe(),
            )
            self._nodelist = local

    # -- start ---------------------------------------------------------------

    async def start(self, n: int) -> int:
        """Start `n` engines as one step of the current Slurm job; returns the srun guard's pid."""
        if self._early:
            self.parent.send_engines_connection_env = True  # put back what _claim_early_start changed, first
        alloc = Allocation.from_env()
        if shutil.which(self.srun_cmd[0]) is None:
            raise SlurmAllocationError(f"{self.srun_cmd[0]!r} not found on PATH: is the Slurm client installed here?")
        if self.overcommit is None:
            # an rcsc3 session shares the server's CPU anyway; `sbatch --overcommit` asked for it
            overcommit = alloc.in_rcsc3_session or alloc.overcommit
        else:
            overcommit = self.overcommit
        self._plan = plan = plan_engines(
            alloc,
            n,
            cpus_per_engine=self.cpus_per_engine,
            overcommit=overcommit,
            max_engines_per_cpu=self.max_engines_per_cpu,
        )
        if plan.note:
            # sharing CPUs is worth a warning, unless the job was submitted with --overcommit
            (self.log.info if alloc.overcommit else self.log.warning)("srun engines: %s", plan.note)
        self.n = plan.n
        self.job_id = alloc.job_id
        self.step_name = "-".join(
            ["ipengine", self.cluster_id or "default", self.engine_set_id or "0", str(os.getpid())]
        )
        early = False
        if self._early:
            # only where loopback reaches every engine: one node, and we are on it
            early = alloc.nodes == 1 and bool(alloc.node_name)
            if early:
                self._url_file = os.path.join(
                    self.profile_dir, "security", f"ipcontroller-{self.cluster_id}-{self.engine_set_id}-srun-engine.json"
                )
            else:
                info = await self._engine_connection_info()
                self.environment["IPP_CONNECTION_INFO"] = json.dumps(info)
        await self._confine_to_controller(alloc)

        super().start()  # LocalProcessLauncher: Popen into the output file, wait in a thread
        self._watch_output()
        try:
            if early:
                step, info = await asyncio.gather(self._wait_for_step(), self._engine_connection_info())
                self._write_url_file(info)
                self.step_id = step
            else:
                self.step_id = await self._wait_for_step()
        except BaseException:
            await self.stop()
            raise
        self.log.info("Engines started as Slurm step %s (%d tasks)", self.step_id, self.n)
        return self.pid

    async def _wait_for_step(self) -> str:
        """Poll `squeue --steps` (bounded) until Slurm shows our step; return its id."""
        deadline = time.monotonic() + self.step_timeout
        delay = 0.05
        while True:
            steps = await job_steps(self.job_id, self.squeue_cmd)
            for step, name in steps.items():
                if name == self.step_name:
                    return step
            if self.state != "running" or not self.process.is_running():
                raise SlurmAllocationError(
                    f"srun for the engines exited before its step started: {self._srun_reason()}"
                )
            if time.monotonic() > deadline:
                raise SlurmAllocationError(
                    f"Slurm did not start the engine step within {self.step_timeout:.0f}s: {self._srun_reason()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _srun_reason(self) -> str:
        self.read_output()
        messages = self._step_output.srun_messages()
        return " / ".join(messages[-3:]) if messages else "srun printed nothing"

    # -- watching the engines ------------------------------------------------

    def _watch_output(self) -> None:
        if self.output_poll_seconds > 0:
            self._output_watch = PeriodicCallback(self.read_output, self.output_poll_seconds * 1000)
            self._output_watch.start()

    def read_output(self) -> list[TaskEnd]:
        """Read new step output; log and return engines that died since the last call."""
        try:
            with open(self.output_file, "rb") as f:
                f.seek(self._output_offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._output_offset += len(chunk)
        ended = self._step_output.feed(chunk.decode("utf8", "replace"))
        if not self._stop_requested:
            for end in ended:
                tail = "\n".join("    " + line for line in end.tail[-5:])
                self.log.warning(
                    "Engine step %s: %s%s", self.step_id or self.step_name, end.describe(), f"\n{tail}" if tail else ""
                )
        return ended

    @property
    def ended_tasks(self) -> dict[int, TaskEnd]:
        """Engines (by srun task number) that ended while the step ran, with the reason."""
        return dict(self._step_output.ended)

    @property
    def engine_ids(self) -> dict[int, int]:
        """srun task number -> ipyparallel engine id, for engines that registered."""
        return dict(self._step_output.engine_ids)

    def notify_stop(self, data: dict) -> dict:
        """Record the step's end; its stop data prints as one line (see `stop_report`)."""
        if self.state == "after":
            return data
        if self._output_watch is not None:
            self._output_watch.stop()
        self._remove_url_file()
        self.read_output()
        srun_code = data.get("exit_code")
        # engines the stop itself ended are no news; the ones that died before (or unasked) are
        died = self._died_before_stop if self._stop_requested else dict(self._step_output.ended)
        failed, summary = stop_summary(
            step_id=self.step_id,
            step_name=self.step_name,
            n=self.n,
            stop_requested=self._stop_requested,
            srun_exit_code=srun_code,
            died=died,
        )
        data = StepStopData(
            data,
            job_id=self.job_id,
            step_id=self.step_id,
            engines=self.n,
            srun_exit_code=srun_code,
            summary=summary,
            # ended because we cancelled it: that is success, whatever signal srun died of
            exit_code=(srun_code or 1) if failed else 0,
        )
        if died:
            data["ended_tasks"] = {t: e.describe() for t, e in died.items()}
        if self._stop_requested:
            data["cancelled"] = True
        return super().notify_stop(data)

    def _log_output(self, stop_data: dict | None = None) -> None:
        # BaseLauncher.notify_stop's hook (pinned by tests/engines/test_process_exit.py):
        # instead of the last 100 lines of every engine, a failure gets a summary
        output = self.get_output(remove=True)  # as the base class: keep the text, remove the file
        if not stop_data or not stop_data.get("exit_code"):
            self.log.debug("Engine step %s: %s (%d bytes of output)", self.step_id or self.step_name, stop_data, len(output))
            return
        lines = [f"Engine step {self.step_id or self.step_name} ended (srun exit code {stop_data.get('srun_exit_code')})"]
        for reason, tasks in self._step_output.by_reason().items():
            lines.append(f"  {len(tasks)} engine(s) {reason}: srun tasks {', '.join(map(str, sorted(tasks)))}")
        lines += [f"  srun: {m}" for m in self._step_output.srun_messages()[-5:]]
        for end in list(self._step_output.ended.values())[:1]:
            lines.append(f"  last output of srun task {end.task}:")
            lines += ["    " + line for line in end.tail[-10:]]
        self.log.warning("\n".join(lines))

    def poll(self) -> int | str | None:
        """None while the step runs; its exit code (after notifying stop) once srun has exited."""
        if self.state != "running":
            return self.stop_data.get("exit_code") if isinstance(self.stop_data, dict) else None
        return super().poll()

    # -- signals and stop ------------------------------------------------------

    async def signal(self, sig: int) -> None:
        """Send `sig` to every engine of the step (Cluster.signal_engines).

        Through Slurm (``scancel --signal``): signalling the srun client would not do,
        srun answers a first SIGINT with a status report instead of forwarding it.
        """
        if self.state != "running":
            return
        if not self.step_id:
            super().signal(sig)  # step still pending: srun cancels it on SIGTERM
            return
        name = signal.Signals(sig).name.removeprefix("SIG")
        rc, out = await run_command([self.scancel_cmd, "--quiet", f"--signal={name}", self.step_id])
        if rc != 0:
            raise LauncherError(f"scancel --signal={name} {self.step_id} failed: {out.strip()}")

    # -- stop ----------------------------------------------------------------

    async def join(self, timeout: float | None = None) -> None:
        """Wait for srun to exit without blocking the event loop (see `process_exit`).

        A bounded poll, not an executor: this also runs from ipyparallel's atexit
        cleanup, when no new threads or executor jobs may be started.
        """
        await wait_for_exit(self, timeout)

    async def stop(self) -> None:
        """Cancel exactly our step (``scancel JOB.STEP``) and wait until Slurm has removed it."""
        if self.state != "running":
            return
        self.read_output()
        self._died_before_stop = dict(self._step_output.ended)
        self._stop_requested = True
        if self.step_id:
            rc, out = await run_command([self.scancel_cmd, "--quiet", self.step_id])
            if rc != 0:
                self.log.debug("scancel %s: %s", self.step_id, out.strip())
        else:
            # no step yet (still pending): srun cancels a pending step on SIGTERM
            LocalProcessLauncher.signal(self, signal.SIGTERM)
        try:
            await self.join(timeout=self.stop_timeout)
        except TimeoutError:
            self.log.warning("srun %s still running %ss after cancelling its step: killing it", self.pid, self.stop_timeout)
            self._kill_tree()
            await self.join(timeout=self.stop_seconds_until_kill)
        await self._wait_step_gone()

    def _kill_tree(self) -> None:
        """SIGKILL the guard and everything under it (srun); psutil's handles are immune to pid reuse."""
        try:
            tree = [*self.process.children(recursive=True), self.process]
        except psutil.NoSuchProcess:
            return
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    async def _wait_step_gone(self) -> None:
        """Bounded wait until `squeue --steps` no longer lists the step (Slurm's cleanup is async)."""
        if not self.step_id:
            return
        deadline = time.monotonic() + self.stop_timeout
        while self.step_id in await job_steps(self.job_id, self.squeue_cmd):
            if time.monotonic() > deadline:
                raise LauncherError(f"Slurm step {self.step_id} still listed {self.stop_timeout}s after scancel")
            await asyncio.sleep(0.1)

    # -- restore (e.g. the JupyterLab panel reading a notebook's cluster file) --

    @classmethod
    def from_dict(cls, d: dict, **kwargs: Any) -> SrunEngineSetLauncher:
        """Reattach to a running engine step; NotRunning if its srun has exited."""
        parent = kwargs.get("parent")
        flag = getattr(parent, "send_engines_connection_env", None)
        try:
            self = super().from_dict(d, **kwargs)  # raises NotRunning when the pid is gone
            self._early = False
        finally:
            if flag is not None:  # restored, not started: __init__ must not have changed the cluster
                parent.send_engines_connection_env = flag
        return self
