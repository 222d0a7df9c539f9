"""What the current Slurm job offers ipyparallel engines, and the `srun` line that uses it.

Everything here is a pure function of the environment (no Slurm calls), so the
launcher's decisions -- how many engines by default, when to overcommit, which
`srun` options -- can be tested without a cluster. The few Slurm commands the
launcher runs (`squeue`, `scancel`, `scontrol`) are at the end, as small async
helpers that never block the event loop.

Node-side code: no hub imports.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ipyparallel.cluster.launcher import LauncherError

#: Environment variable the rcsc3 spawner exports: engines the spawn form reserved
#: (its CPUs minus the one the Jupyter server keeps).
RESERVED_ENGINES_ENV = "RCSC3_ENGINES"


class SlurmAllocationError(LauncherError):
    """The Slurm job cannot host the engines asked for; the message says why and what to do."""


class NotInSlurmJob(SlurmAllocationError):
    """`engines="srun"` was used outside a Slurm job."""


class TooManyEngines(SlurmAllocationError):
    """More engines were asked than the allocation can run."""


_CPUS_PER_NODE_ITEM = re.compile(r"(\d+)(?:\(x(\d+)\))?")


def parse_cpus_per_node(value: str) -> list[int]:
    """Expand Slurm's compressed per-node CPU list, e.g. ``"4(x2),2"`` -> ``[4, 4, 2]``.

    This is the format of ``SLURM_JOB_CPUS_PER_NODE`` and ``SLURM_TASKS_PER_NODE``.
    """
    counts: list[int] = []
    for item in value.split(","):
        m = _CPUS_PER_NODE_ITEM.fullmatch(item.strip())
        if m is None:
            raise ValueError(f"not a Slurm per-node count list: {value!r}")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    return int(raw) if raw.isdigit() else None


@dataclass(frozen=True)
class Allocation:
    """The part of the current Slurm job that engines may use."""

    job_id: str
    #: nodes of the job
    nodes: int
    #: CPUs of the job, summed over its nodes
    cpus: int
    #: engines the rcsc3 spawn form reserved (None outside an rcsc3 session)
    reserved_engines: int | None
    #: the node this process runs on, '' when not on a node of the job (an salloc shell on a login host)
    node_name: str
    #: the job's task count (``sbatch -n``, $SLURM_NTASKS); None when Slurm did not say
    tasks: int | None = None
    #: the job was submitted with ``--overcommit`` ($SLURM_OVERCOMMIT): its tasks share CPUs
    overcommit: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Allocation:
        """Read the allocation from Slurm's environment variables (default: ``os.environ``)."""
        env = os.environ if env is None else env
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
        if not job_id:
            raise NotInSlurmJob(
                "engines='srun' starts the engines as job steps of the Slurm job this notebook runs in, "
                "but this process is not inside a Slurm job ($SLURM_JOB_ID is not set). "
                "Start it from an rcsc3 JupyterHub session, `salloc` or `sbatch`, "
                "or use ipp.Cluster(engines='slurm') to submit a separate batch job for the engines."
            )
        nodes = _int(env, "SLURM_JOB_NUM_NODES") or _int(env, "SLURM_NNODES") or 1
        per_node = env.get("SLURM_JOB_CPUS_PER_NODE", "")
        if per_node:
            cpus = sum(parse_cpus_per_node(per_node))
        else:
            # older Slurm or a stripped environment: fall back to tasks x cpus-per-task
            tasks = _int(env, "SLURM_NTASKS") or _int(env, "SLURM_NPROCS")
            cpt = _int(env, "SLURM_CPUS_PER_TASK") or 1
            cpus = tasks * cpt if tasks else (_int(env, "SLURM_CPUS_ON_NODE") or 1)
        reserved = _int(env, RESERVED_ENGINES_ENV)
        return cls(
            job_id=job_id,
            nodes=nodes,
            cpus=cpus,
            reserved_engines=reserved,
            node_name=env.get("SLURMD_NODENAME", ""),
            tasks=_int(env, "SLURM_NTASKS") or _int(env, "SLURM_NPROCS"),
            # sbatch/salloc --overcommit exports SLURM_OVERCOMMIT=1, which every srun in the job reads too
            overcommit=env.get("SLURM_OVERCOMMIT", "").strip().lower() in ("1", "yes", "true"),
        )

    @property
    def in_rcsc3_session(self) -> bool:
        """True inside a Jupyter server started by the rcsc3 spawner."""
        return self.reserved_engines is not None

    def engine_slots(self, cpus_per_engine: int = 1) -> int:
        """Engines that get a CPU of their own: the default number of engines.

        In an rcsc3 session that is what the spawn form reserved (one CPU stays with
        the Jupyter server); elsewhere every CPU of the job -- or, in a job submitted
        with ``--overcommit``, its task count if that is more (``sbatch -n 6 --overcommit``
        asks for 6 tasks on fewer CPUs, and a bare `srun` there starts 6).
        """
        cpus = self.cpus if self.reserved_engines is None else min(self.reserved_engines, self.cpus)
        slots = max(cpus // cpus_per_engine, 0)
        if self.overcommit and self.tasks and self.reserved_engines is None:
            slots = max(slots, self.tasks)
        return slots

    def cpu_slots(self, cpus_per_engine: int = 1) -> int:
        """Engines Slurm accepts in one step without ``--overcommit``.

        The batch step (where the Jupyter server runs) holds no step CPUs, so this
        counts the server's CPU too.
        """
        return self.cpus // cpus_per_engine

    def describe(self) -> str:
        """One line for error messages, e.g. 'Slurm job 12 (3 CPUs on 1 node, 2 reserved for engines)'."""
        nodes = f"{self.nodes} node" + ("s" if self.nodes != 1 else "")
        reserved = "" if self.reserved_engines is None else f", {self.reserved_engines} reserved for engines"
        overcommit = f", {self.tasks} tasks with --overcommit" if self.overcommit and self.tasks else ""
        return f"Slurm job {self.job_id} ({self.cpus} CPUs on {nodes}{reserved}{overcommit})"


@dataclass(frozen=True)
class EnginePlan:
    """How many engines one step starts and whether Slurm must be told to overcommit."""

    n: int
    overcommit: bool
    #: why the plan shares CPUs, for the log ('' when every engine has its own CPU)
    note: str = ""


def plan_engines(
    alloc: Allocation,
    n: int,
    *,
    cpus_per_engine: int = 1,
    overcommit: bool = False,
    max_engines_per_cpu: int = 4,
) -> EnginePlan:
    """Decide whether `n` engines fit in `alloc`, raising TooManyEngines with the numbers if not."""
    if cpus_per_engine < 1:
        raise ValueError(f"cpus_per_engine must be >= 1, not {cpus_per_engine}")
    if n < 1:
        raise TooManyEngines(f"the number of engines must be at least 1, not {n}")
    own = alloc.engine_slots(cpus_per_engine)
    shared = alloc.cpu_slots(cpus_per_engine)
    hint = (
        "ask for fewer engines, a bigger allocation, or let engines share CPUs with "
        "c.SrunEngineSetLauncher.overcommit = True"
    )
    if n <= min(own, shared):
        return EnginePlan(n, overcommit=False)
    if n <= shared:
        # Slurm allows it (the batch step holds no step CPUs); only the server's CPU is shared.
        return EnginePlan(n, False, f"{n} engines share the Jupyter server's CPU ({alloc.describe()})")
    if not overcommit:
        if shared < 1:
            raise TooManyEngines(f"{alloc.describe()} has no room for an engine of {cpus_per_engine} CPUs; {hint}")
        fits = min(own, shared)
        raise TooManyEngines(
            f"{n} engines asked, but {alloc.describe()} has room for {fits} engine(s) with a CPU each"
            + (f" ({shared} if they share the Jupyter server's CPU)" if shared > fits else "")
            + f"; {hint}"
        )
    most = max_engines_per_cpu * alloc.cpus // cpus_per_engine
    # the tasks the job itself was submitted for are never a typo, whatever the ratio
    asked = alloc.tasks if alloc.overcommit and alloc.tasks else 0
    if n > max(most, asked):
        raise TooManyEngines(
            f"{n} engines asked, but {alloc.describe()} can run at most {max(most, asked)} "
            f"even when overcommitting ({max_engines_per_cpu} per CPU, "
            "c.SrunEngineSetLauncher.max_engines_per_cpu"
            + (f", or the job's {asked} tasks" if asked else "")
            + ")"
        )
    if alloc.overcommit:
        note = f"{n} engines share {alloc.cpus} CPU(s) of {alloc.describe()}, as the job asked"
    else:
        note = f"overcommitting: {n} engines on {alloc.cpus} CPU(s) of {alloc.describe()}; expect no speedup beyond {shared}"
    return EnginePlan(n, True, note)


def srun_argv(
    srun_cmd: Sequence[str],
    *,
    job_id: str,
    n: int,
    step_name: str,
    cpus_per_engine: int = 1,
    overcommit: bool = False,
    exclusive: bool = False,
    gpus: int = 0,
    nodelist: str = "",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The `srun` command line for one engine step (without the engine command itself).

    Slurm >= 21.08 gives a step every CPU of its nodes unless ``--exact`` is used, and
    a second step then waits ("Requested nodes are busy") until the first ends. Engines
    default to ``--overlap`` so that a second cluster, a terminal's `srun`, or a
    restarted engine set never queues behind the first; ``exclusive`` asks for dedicated
    CPUs (``--exact``) instead. GPUs are not inherited from the job unless asked:
    a step without ``--gres`` would take the job's GPUs away from the desktop.
    """
    argv = [
        *srun_cmd,
        f"--jobid={job_id}",
        f"--job-name={step_name}",
        f"--ntasks={n}",
        f"--cpus-per-task={cpus_per_engine}",
        "--export=ALL",
        # task-labelled output lets the launcher tell which engine printed what
        "--label",
        # one dead engine must not take the others down
        "--kill-on-bad-exit=0",
        "--exact" if exclusive else "--overlap",
        f"--gres=gpu:{gpus}" if gpus > 0 else "--gres=none",
    ]
    if overcommit:
        argv.append("--overcommit")
    if nodelist:
        argv += [f"--nodelist={nodelist}", "--nodes=1"]
    argv += list(extra_args)
    return argv


# ---------------------------------------------------------------------------
# Slurm commands the launcher runs (async, bounded)
# ---------------------------------------------------------------------------


async def run_command(argv: Sequence[str], timeout: float = 30) -> tuple[int, str]:
    """Run a short Slurm command without blocking the event loop: (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode("utf8", "replace")


async def job_steps(job_id: str, squeue: str = "squeue") -> dict[str, str]:
    """Running steps of a job as ``{"12.3": "step name"}`` (empty when the job has ended)."""
    rc, out = await run_command([squeue, "--noheader", "--steps", f"--jobs={job_id}", "--format=%i|%j"])
    if rc != 0:
        return {}
    steps = {}
    for line in out.splitlines():
        step, sep, name = line.strip().partition("|")
        if sep:
            steps[step] = name
    return steps


async def node_hostnames(nodelist: str, scontrol: str = "scontrol") -> list[str]:
    """Expand a Slurm node list (``vm[1-3]``) into host names."""
    rc, out = await run_command([scontrol, "show", "hostnames", nodelist])
    return out.split() if rc == 0 else []
