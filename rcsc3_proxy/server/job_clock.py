"""The student's Slurm job as Slurm sees it now: its end, refreshed in the background, and warnings before it.

Slurm's EndTime is the truth: an admin can extend or shorten a running job (`scontrol update
JobId=N TimeLimit=...`), so the end is never computed from the spawn form. `JobClock` asks
`scontrol show job -o $SLURM_JOB_ID` at most every `refresh_seconds` (one small RPC to slurmctld
per server, not per browser tab), as an async subprocess with a timeout so the server's event
loop never waits on Slurm. A Slurm that does not answer leaves the last known answer in place,
marked stale. The same loop writes a line to the job log (the server's stderr) when the job has
less than 10 and 2 minutes left.

Slurm prints times in the local time of the process that runs scontrol, without a zone; they are
read back in this same process's local time and kept in UTC.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

#: the first key=value of each field `scontrol show job -o` prints (values are one word for these)
FIELD = re.compile(r"(?:^|\s)([A-Za-z0-9/:_]+)=(\S*)")
#: what Slurm prints for a time it does not know
NO_TIME = {"", "Unknown", "None", "N/A", "(null)"}


class SlurmError(RuntimeError):
    """scontrol did not answer, or not about this job."""


@dataclass(frozen=True)
class JobInfo:
    """What the API tells about the job (the part Slurm knows)."""

    job_id: str
    partition: str
    nodes: tuple[str, ...]
    state: str
    #: Slurm's EndTime in UTC; None when Slurm has none (e.g. an UNLIMITED time limit)
    end_time: datetime | None


def slurm_time(text: str) -> datetime | None:
    """A Slurm time ("2026-12-01T22:20:09", this process's local time) as an aware UTC datetime."""
    if text in NO_TIME:
        return None
    try:
        local = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return local.astimezone(UTC)  # a naive datetime is taken as local time


def iso_utc(moment: datetime) -> str:
    """"2026-12-01T22:20:09Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_fields(output: str, job_id: str) -> dict[str, str]:
    """The fields of `job_id`'s record in `scontrol show job -o` output (one record a line).

    The first occurrence of a key wins; JobName comes before the fields read here, and the job
    name is set by the spawner (a student could only confuse their own server with another).
    """
    for line in output.splitlines():
        fields: dict[str, str] = {}
        for match in FIELD.finditer(line):
            fields.setdefault(match.group(1), match.group(2))
        if fields.get("JobId") == job_id:
            return fields
    raise SlurmError(f"scontrol has no record of job {job_id}")


def due_warning(seconds_left: float, thresholds: list[float], warned: set[float]) -> float | None:
    """The threshold (seconds) to warn about now, or None; updates `warned`.

    Only the smallest threshold passed is announced (a job that starts with 5 minutes left
    gets one "10 minutes" line, not two); a job extended above a threshold is warned again
    when it comes near it.
    """
    for threshold in list(warned):
        if seconds_left > threshold:
            warned.discard(threshold)  # extended: warn again next time it gets there
    passed = [t for t in thresholds if seconds_left <= t]
    if not passed:
        return None
    smallest = min(passed)
    fresh = smallest not in warned
    warned.update(passed)
    return smallest if fresh else None


def minutes_phrase(seconds_left: float) -> str:
    """"10 minutes": to the nearest minute, as JupyterLab's status bar counts them (at least 1)."""
    minutes = max(1, math.floor(seconds_left / 60 + 0.5))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def warning_line(end: datetime, seconds_left: float) -> str:
    return f"rcsc3: this session ends at {end:%H:%M} UTC ({minutes_phrase(seconds_left)} left): save your work"


class JobClock(LoggingConfigurable):
    """The job's Slurm facts, cached and refreshed in the background; warnings to the job log."""

    refresh_seconds = Float(
        30.0, config=True,
        help="How often Slurm is asked about the job (seconds). An admin's change of the job's time limit shows "
             "within this time.",
    )
    slurm_timeout = Float(10.0, config=True, help="How long one scontrol call may take (seconds) before it counts as no answer.")
    warn_minutes = List(
        Float(), [10.0, 2.0], config=True,
        help="Minutes before the job's end at which a line goes to the job log (the browser warns at the same times).",
    )
    scontrol = Unicode("scontrol", config=True, help="The scontrol program (a name on PATH or a path).")

    def __init__(self, job_id: str | None = None, stream: TextIO | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.job_id = os.environ.get("SLURM_JOB_ID", "") if job_id is None else job_id
        self.stream = stream  # where the warnings go; None: sys.stderr at the time of writing
        self.job: JobInfo | None = None
        self.checked_at: datetime | None = None  # when Slurm last answered (UTC)
        self.error = ""  # why the last refresh failed ("" when it did not)
        self._checked_mono = -math.inf
        self._refresh: asyncio.Task | None = None
        self._loop_task: asyncio.Task | None = None
        self._hostnames: dict[str, tuple[str, ...]] = {}
        self._warned: set[float] = set()

    # ------------------------------------------------------------------ Slurm
    async def _run(self, *args: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.scontrol, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise SlurmError(f"cannot run {self.scontrol}: {e}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.slurm_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"scontrol did not answer within {self.slurm_timeout:g} s") from None
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[:300] or f"exit status {proc.returncode}"
            raise SlurmError(f"scontrol failed: {detail}")
        return out.decode(errors="replace")

    async def _nodes(self, nodelist: str) -> tuple[str, ...]:
        """The node names of a Slurm hostlist ("gpu[01-03]"), asked once per distinct list."""
        if nodelist in NO_TIME:
            return ()
        if nodelist not in self._hostnames:
            if re.fullmatch(r"[A-Za-z0-9_.-]+", nodelist):
                self._hostnames[nodelist] = (nodelist,)  # one plain name: nothing to expand
            else:
                self._hostnames[nodelist] = tuple((await self._run("show", "hostnames", nodelist)).split())
        return self._hostnames[nodelist]

    async def _query(self) -> JobInfo:
        fields = job_fields(await self._run("show", "job", "-o", self.job_id), self.job_id)
        return JobInfo(job_id=self.job_id, partition=fields.get("Partition", ""),
                       nodes=await self._nodes(fields.get("NodeList", "")), state=fields.get("JobState", ""),
                       end_time=slurm_time(fields.get("EndTime", "")))

    async def _do_refresh(self) -> None:
        try:
            job = await self._query()
        except SlurmError as e:
            if self.error != str(e):
                self.log.warning("rcsc3: Slurm did not tell this job's end (keeping the last known): %s", e)
            self.error = str(e)
        else:
            if self.job and self.job.end_time != job.end_time:
                self.log.info("rcsc3: job %s now ends at %s", self.job_id, job.end_time and iso_utc(job.end_time))
            self.job, self.error = job, ""
            self.checked_at = datetime.now(UTC)
        finally:
            self._checked_mono = time.monotonic()

    async def refresh(self) -> None:
        """Ask Slurm now (concurrent callers share one scontrol call)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._do_refresh())
        await asyncio.shield(self._refresh)

    def due(self) -> bool:
        return time.monotonic() - self._checked_mono >= self.refresh_seconds

    async def known(self) -> JobInfo | None:
        """The job as last known, refreshed first when that is due (or under way); None if Slurm never answered."""
        if (self._refresh is not None and not self._refresh.done()) or self.due():
            await self.refresh()
        return self.job

    # ------------------------------------------------------------------ what is known now
    def seconds_left(self, now: datetime | None = None) -> float | None:
        if self.job is None or self.job.end_time is None:
            return None
        now = datetime.now(UTC) if now is None else now
        return max(0.0, (self.job.end_time - now).total_seconds())

    def snapshot(self) -> dict:
        """The API's answer from what is known (call after a refresh has answered at least once)."""
        job = self.job
        assert job is not None
        left = self.seconds_left()
        return {
            "job_id": job.job_id,
            "partition": job.partition,
            "nodes": list(job.nodes),
            "end_time": iso_utc(job.end_time) if job.end_time else None,
            "seconds_left": None if left is None else int(left),
            "state": job.state,
            # when Slurm last answered; stale: its last answer is older than one refresh, because it did not answer since
            "checked_at": iso_utc(self.checked_at) if self.checked_at else None,
            "stale": bool(self.error),
            **({"error": self.error} if self.error else {}),
        }

    # ------------------------------------------------------------------ the background loop
    def check_warnings(self) -> str | None:
        """Write the warning line that is due now, if any; returns it."""
        left = self.seconds_left()
        if left is None or self.job is None or self.job.end_time is None:
            return None
        if due_warning(left, [m * 60 for m in self.warn_minutes], self._warned) is None:
            return None
        line = warning_line(self.job.end_time, left)
        print(line, file=self.stream or sys.stderr, flush=True)
        return line

    def _next_wake(self) -> float:
        """Seconds until the next refresh or the next warning, whichever comes first."""
        wake = max(0.0, self.refresh_seconds - (time.monotonic() - self._checked_mono))
        left = self.seconds_left()
        if left is not None:
            ahead = [left - m * 60 for m in self.warn_minutes if left - m * 60 > 0]
            if ahead:
                wake = min(wake, min(ahead) + 0.5)
        return max(1.0, wake)

    async def run(self) -> None:
        """Refresh and warn until cancelled."""
        while True:
            try:
                if self.due():
                    await self.refresh()
                self.check_warnings()
            except Exception:  # a bug here must not end the warnings for the rest of the session
                self.log.exception("rcsc3: the job clock failed a round")
            await asyncio.sleep(self._next_wake())

    def start(self) -> None:
        """Start the background loop (call with the server's event loop running)."""
        if self.job_id and self._loop_task is None:
            self._loop_task = asyncio.ensure_future(self.run())

    def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None
