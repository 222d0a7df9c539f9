"""One `squeue` per interval for every server of the hub.

Stock batchspawner runs `sudo squeue` per user per poll, and twice a second per
starting server. Like kubespawner's reflector, this poller keeps one snapshot of
all the hub's jobs, refreshed by a single `squeue -j id,id,...` run as the hub
itself (squeue needs no sudo). Spawners read the snapshot; a spawner that is
starting or stopping asks for a fast round, which every other waiter shares.

An unreachable slurmctld makes the snapshot *unknown*, never *gone*: jobs are
only reported gone when Slurm answered and did not list them (or listed them in
a finished state).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

from ..subprocesses import hub_environment, run_command

#: States in which the job still holds (or will hold) its allocation.
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
})
#: id, state, reason, batch host, (estimated) start, elapsed, end, partition, priority
SQUEUE_FORMAT = "%i|%T|%r|%B|%S|%M|%e|%P|%Q"


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str
    reason: str = ""
    batch_host: str = ""
    start_time: str = ""
    elapsed: str = ""
    #: Slurm's EndTime (local time, as squeue prints it): the walltime's end, or when it ended
    end_time: str = ""
    partition: str = ""
    priority: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    @property
    def pending(self) -> bool:
        return self.state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD")


#: A job Slurm answered about but no longer lists.
GONE = "GONE"
#: how many ended jobs' last states the poller keeps for last_seen() (oldest dropped first)
ENDED_KEPT = 10000


def parse_squeue(text: str) -> dict[str, JobInfo]:
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        parts += [""] * (9 - len(parts))
        job_id, state, reason, host, start, elapsed, end, partition, priority = parts[:9]
        clean = lambda v: "" if v in ("n/a", "N/A", "None", "(null)", "Unknown") else v  # noqa: E731
        jobs[job_id] = JobInfo(job_id, state.upper(), clean(reason), clean(host), clean(start), clean(elapsed),
                               clean(end), clean(partition), int(priority) if priority.isdigit() else 0)
    return jobs


def queue_positions(pending: dict[str, JobInfo]) -> dict[str, tuple[int, int]]:
    """Each pending job's place in its partition's queue: {job: (position from 1, jobs pending there)},
    by Slurm's priority (highest first), then by job id (older first)."""
    by_partition: dict[str, list[JobInfo]] = {}
    for info in pending.values():
        if info.pending:
            by_partition.setdefault(info.partition, []).append(info)
    out = {}
    for jobs in by_partition.values():
        jobs.sort(key=lambda j: (-j.priority, int(j.job_id) if j.job_id.isdigit() else 0))
        for i, info in enumerate(jobs, 1):
            out[info.job_id] = (i, len(jobs))
    return out


class SlurmJobPoller(LoggingConfigurable):
    """The hub's single view of its Slurm jobs (one per hub, made by the first spawner with parent=)."""

    interval = Float(10.0, help="Seconds between rounds while nothing starts or stops (the spawner's slurm_poll_interval).")
    fast_interval = Float(0.25, help="Seconds between rounds while a spawner waits (the spawner's slurm_fast_poll_interval).")
    jitter = Float(0.1, help="Relative jitter of the idle interval, so several hubs never poll in lockstep.").tag(config=True)
    timeout = Float(15.0, help="Seconds an squeue may take before the round counts as 'Slurm did not answer'.").tag(config=True)
    squeue = List(Unicode(), ["squeue"], help="The squeue command (found on the hub's PATH).").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._watched: dict[str, Callable[[JobInfo | None], None] | None] = {}
        self._snapshot: dict[str, JobInfo] = {}
        #: the last JobInfo of jobs that are gone (their final state, when Slurm still listed them)
        self._ended: dict[str, JobInfo] = {}
        self._polled: set[str] = set()
        self.known = False  # did the last round get an answer from Slurm?
        self.last_error = ""
        #: pending watched jobs' places in their partition's queue, {job: (position, of how many)}
        self.positions: dict[str, tuple[int, int]] = {}
        self._fast_waiters = 0
        self._wake = asyncio.Event()
        self._rounds_started = 0
        self._rounds_done = 0
        self._round_finished = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._cancel_queue: dict[str, list[str]] = {}
        #: monotonic timestamps of squeue runs (benchmarks read this)
        self.squeue_times: list[float] = []

    # -------------------------------------------------------------- watching
    def watch(self, job_id: str, on_gone: Callable[[JobInfo | None], None] | None = None) -> None:
        """Track job_id; call on_gone(last_info) once when Slurm says it is finished or unknown to it.

        A job found gone stops being tracked (and stays GONE for get()); watching it again asks anew.
        """
        self._watched[job_id] = on_gone
        self._polled.discard(job_id)
        self._ensure_running()

    def unwatch(self, job_id: str) -> None:
        self._watched.pop(job_id, None)
        self._snapshot.pop(job_id, None)
        self._polled.discard(job_id)

    def last_seen(self, job_id: str) -> JobInfo | None:
        """What Slurm last said of a job that is gone now (its final state if it listed one), else None."""
        return self._ended.get(job_id)

    def get(self, job_id: str) -> JobInfo | str | None:
        """The latest JobInfo, GONE, or None when not yet known (never polled or Slurm unreachable)."""
        if job_id in self._snapshot:
            return self._snapshot[job_id]
        if job_id in self._polled and self.known:
            return GONE
        return None

    async def refresh(self, timeout: float | None = None) -> None:
        """Wait for a round that starts after this call (so it sees what the caller just did)."""
        self._ensure_running()
        target = self._rounds_started + 1
        self._fast_waiters += 1
        self._wake.set()
        try:
            async with self._round_finished:
                await asyncio.wait_for(
                    self._round_finished.wait_for(lambda: self._rounds_done >= target),
                    timeout or self.timeout + 5,
                )
        finally:
            self._fast_waiters -= 1

    def cancel_later(self, job_id: str, argv: list[str]) -> None:
        """Keep trying `argv` (a scancel) every round until it succeeds: a job is never orphaned."""
        self._cancel_queue[job_id] = argv
        self._ensure_running()

    # -------------------------------------------------------------- loop
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())

    def _next_delay(self) -> float:
        if self._fast_waiters:
            return self.fast_interval
        # jitter keeps several hubs (or restarts) from polling Slurm in lockstep
        return self.interval * (1 + random.uniform(-self.jitter, self.jitter))

    async def _loop(self) -> None:
        while self._watched or self._cancel_queue or self._fast_waiters:
            if self._fast_waiters and self._rounds_done:
                # shared fast cadence while anyone is starting or stopping; the waiters of
                # the round just done may leave meanwhile, so look again after it
                await asyncio.sleep(self.fast_interval)
            if not self._fast_waiters:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._next_delay())
                except TimeoutError:
                    pass
            self._wake.clear()
            self._rounds_started += 1
            try:
                await self._round()
            except Exception:  # never let the hub's only poller die
                self.log.exception("rcsc3: Slurm poll round failed")
            self._rounds_done = self._rounds_started
            async with self._round_finished:
                self._round_finished.notify_all()

    async def _round(self) -> None:
        await self._retry_cancels()
        ids = sorted(self._watched, key=lambda j: int(j) if j.isdigit() else 0)
        if not ids:
            return
        self.squeue_times.append(time.monotonic())
        res = await run_command(
            [*self.squeue, "-h", "--states=all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT],
            env=hub_environment(), timeout=self.timeout,
        )
        if res.ok:
            jobs = parse_squeue(res.stdout)
        elif "Invalid job id" in res.stderr:
            jobs = {}  # Slurm answered: none of these jobs exists any more
        else:
            self.known = False
            self.last_error = res.describe()
            self.log.warning("rcsc3: Slurm did not answer (%s); keeping %d servers as they are", self.last_error, len(ids))
            return
        self.known = True
        self.last_error = ""
        gone = []
        for job_id in ids:
            info = jobs.get(job_id)
            previous = self._snapshot.get(job_id)
            if info is not None and info.active:
                self._snapshot[job_id] = info
            else:
                self._snapshot.pop(job_id, None)
                last = info or previous
                gone.append((job_id, last))
                if last is not None:
                    self._ended[job_id] = last
                    if len(self._ended) > ENDED_KEPT:  # a hub's whole history is not needed
                        self._ended.pop(next(iter(self._ended)))
            self._polled.add(job_id)
        await self._update_positions()
        for job_id, last in gone:
            # A finished job is asked about no more (get() still answers GONE for it);
            # otherwise every job a hub ever ran would end up in each squeue.
            callback = self._watched.pop(job_id, None)
            if callback is not None:
                try:
                    callback(last)
                except Exception:
                    self.log.exception("rcsc3: on_gone callback for job %s failed", job_id)

    async def _update_positions(self) -> None:
        """While a watched job pends: where it stands among the pending jobs of its partition
        (one more squeue per round, only then)."""
        partitions = sorted({i.partition for i in self._snapshot.values() if i.pending and i.partition})
        if not partitions:
            self.positions = {}
            return
        res = await run_command([*self.squeue, "-h", "--states=PENDING", "-p", ",".join(partitions), "-o", SQUEUE_FORMAT],
                                env=hub_environment(), timeout=self.timeout)
        if res.ok:
            self.positions = queue_positions(parse_squeue(res.stdout))

    async def _retry_cancels(self) -> None:
        for job_id, argv in list(self._cancel_queue.items()):
            res = await run_command(argv, timeout=self.timeout)
            if res.ok or "Invalid job id" in res.stderr or "already completing or completed" in res.stderr:
                self.log.info("rcsc3: deferred scancel of job %s done", job_id)
                self._cancel_queue.pop(job_id, None)
            else:
                self.log.warning("rcsc3: scancel of job %s still failing: %s", job_id, res.describe())


