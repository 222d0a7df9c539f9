"""The shared poller's rounds against the fake squeue/scancel: batching, unknown vs gone, cadence, deferred cancels."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from polling import wait_for

from rcsc3_spawner.slurm.poller import GONE, SQUEUE_FORMAT, JobInfo


def job_rounds(fake) -> list[list[str]]:
    """The argv of each squeue that asked about watched jobs (-j), in order."""
    return [c["argv"] for c in fake.calls("squeue") if "-j" in c["argv"]]


def asked(argv: list[str]) -> str:
    """The job ids one squeue -j asked about."""
    return argv[argv.index("-j") + 1]


def position_rounds(fake) -> list[list[str]]:
    return [c["argv"] for c in fake.calls("squeue") if "--states=PENDING" in c["argv"]]


class Gone:
    """An on_gone callback that records what it was called with."""

    def __init__(self):
        self.calls: list[JobInfo | None] = []

    def __call__(self, last: JobInfo | None) -> None:
        self.calls.append(last)


async def test_one_squeue_per_round_for_every_watched_job(fake_slurm, make_poller):
    for job_id, state in (("101", "RUNNING"), ("102", "PENDING"), ("103", "RUNNING"), ("999", "RUNNING")):
        fake_slurm.add_job(job_id, state=state, partition="cpu", host="vm" if state == "RUNNING" else "")
    poller = make_poller()
    for job_id in ("103", "101", "102"):
        poller.watch(job_id)
    await poller.refresh()
    await poller.refresh()
    rounds = job_rounds(fake_slurm)
    assert len(rounds) == 2, rounds
    for argv in rounds:
        assert argv == ["-h", "--states=all", "-j", "101,102,103", "-o", SQUEUE_FORMAT]
    assert poller.known and poller.last_error == ""
    assert poller.get("101").running and poller.get("101").batch_host == "vm"
    assert poller.get("102").pending
    assert poller.get("999") is None  # not watched: never asked about
    assert len(poller.squeue_times) == 2


@pytest.mark.parametrize("how", ["error", "hang"])
async def test_slurm_not_answering_makes_the_snapshot_unknown_never_gone(fake_slurm, make_poller, how):
    fake_slurm.add_job("101", state="RUNNING", host="vm")
    fake_slurm.add_job("102", state="RUNNING", host="vm")
    poller = make_poller(timeout=0.5)
    gone = Gone()
    poller.watch("101", gone)
    await poller.refresh()
    assert poller.get("101").running
    poller.watch("102", gone)
    fake_slurm.down("squeue", hang=how == "hang")
    with fake_slurm.edit() as s:
        del s["jobs"]["101"]  # it ends meanwhile, but Slurm cannot say so
    await poller.refresh()
    await poller.refresh()
    assert not poller.known
    assert ("Socket timed out" if how == "error" else "timed out after") in poller.last_error
    assert poller.get("102") is None  # never answered about: unknown
    assert poller.get("101").running  # the last answer stands; not GONE
    assert gone.calls == []
    assert len(job_rounds(fake_slurm)) == 3  # each round asked
    fake_slurm.up("squeue")
    await poller.refresh()
    assert poller.known and poller.last_error == ""
    assert poller.get("101") is GONE and poller.get("102").running
    assert [c.job_id for c in gone.calls] == ["101"] and gone.calls[0].state == "RUNNING"  # its last known state


async def test_a_job_no_longer_listed_or_listed_as_finished_is_gone_once(fake_slurm, make_poller):
    fake_slurm.add_job("101", state="RUNNING", host="vm")
    fake_slurm.add_job("102", state="RUNNING", host="vm")
    fake_slurm.add_job("103", state="RUNNING", host="vm")
    poller = make_poller()
    gone = {j: Gone() for j in ("101", "102", "103")}
    for job_id, callback in gone.items():
        poller.watch(job_id, callback)
    await poller.refresh()
    with fake_slurm.edit() as s:
        del s["jobs"]["101"]  # purged from slurmctld (MinJobAge passed)
        s["jobs"]["102"].update(state="TIMEOUT", end="2026-12-01T12:00:00")
    await poller.refresh()
    assert poller.get("101") is GONE and poller.get("102") is GONE and poller.get("103").running
    assert [c.state for c in gone["101"].calls] == ["RUNNING"]
    [last] = gone["102"].calls
    assert (last.state, last.end_time) == ("TIMEOUT", "2026-12-01T12:00:00")
    assert gone["103"].calls == []
    await poller.refresh()
    await poller.refresh()
    assert len(gone["101"].calls) == 1 and len(gone["102"].calls) == 1  # once
    # finished jobs are asked about no more, but stay GONE
    assert asked(job_rounds(fake_slurm)[-1]) == "103"
    assert poller.get("101") is GONE and poller.get("102") is GONE
    # a callback that raises does not stop the poller
    def broken(last):
        raise RuntimeError("a spawner bug")

    poller.watch("103", broken)
    fake_slurm.set_job("103", state="COMPLETED")
    await poller.refresh()
    assert poller.get("103") is GONE
    fake_slurm.add_job("104", state="RUNNING")
    poller.watch("104")
    await poller.refresh()
    assert poller.get("104").running


async def test_invalid_job_id_means_all_of_them_are_gone(fake_slurm, make_poller):
    poller = make_poller()
    gone = Gone()
    poller.watch("201", gone)
    poller.watch("202", gone)
    await poller.refresh()
    [argv] = job_rounds(fake_slurm)
    assert asked(argv) == "201,202"
    assert poller.known
    assert poller.get("201") is GONE and poller.get("202") is GONE
    assert gone.calls == [None, None]


async def test_refresh_waits_for_a_round_that_starts_after_the_call(fake_slurm, make_poller):
    fake_slurm.add_job("101", state="PENDING", partition="cpu")
    with fake_slurm.edit() as s:
        s["squeue_delay"] = 0.3  # each squeue answers what it read 0.3 s earlier
    poller = make_poller()
    poller.watch("101")
    first = asyncio.ensure_future(poller.refresh())
    await wait_for(lambda: job_rounds(fake_slurm), 5, "the first round's squeue to start")
    fake_slurm.set_job("101", state="RUNNING", host="vm")  # e.g. what the caller just did
    await poller.refresh()
    assert first.done()
    assert poller.get("101").running, poller.get("101")  # not the answer of the round already under way
    assert len(job_rounds(fake_slurm)) == 2


async def test_fast_rounds_while_someone_waits_idle_interval_otherwise(fake_slurm, make_poller):
    fake_slurm.add_job("101", state="RUNNING", host="vm")
    poller = make_poller(interval=0.8, fast_interval=0.02)
    poller.watch("101")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while loop.time() - t0 < 0.6:  # a spawner waiting for its job, refreshing again and again
        await poller.refresh()
    fast = list(poller.squeue_times)
    assert len(fast) >= 5, fast
    fast_gaps = [b - a for a, b in itertools.pairwise(fast)]
    assert max(fast_gaps) < 0.4, fast_gaps
    # nobody waits now: the poller goes on by itself, at the idle interval
    await wait_for(lambda: len(poller.squeue_times) >= len(fast) + 2, 5, "two idle rounds")
    idle = poller.squeue_times[len(fast) - 1:]
    idle_gaps = [b - a for a, b in itertools.pairwise(idle)]
    assert min(idle_gaps) >= 0.75, idle_gaps
    # a waiter arriving during the idle wait is served at once, not at the end of it
    await wait_for(lambda: loop.time() - poller.squeue_times[-1] > 0.1, 2, "the idle wait to be under way")
    before = len(poller.squeue_times)
    t1 = loop.time()
    await poller.refresh()
    assert len(poller.squeue_times) == before + 1 and loop.time() - t1 < 0.5


async def test_cancel_later_retries_a_failing_scancel_every_round_until_it_works(fake_slurm, make_poller):
    fake_slurm.add_job("101", state="RUNNING", host="vm")
    fake_slurm.down("scancel", error="scancel: error: Kill job error on job id 101: Socket timed out", times=3)
    poller = make_poller(interval=0.05)
    poller.cancel_later("101", [fake_slurm.cmd("scancel"), "101"])
    await wait_for(lambda: fake_slurm.job("101")["state"] == "CANCELLED", 10, "the deferred scancel to cancel the job")
    assert len(fake_slurm.calls("scancel")) == 4  # three refused, the fourth done
    await poller.refresh()
    await poller.refresh()
    assert len(fake_slurm.calls("scancel")) == 4  # done: not sent again
    assert job_rounds(fake_slurm) == []  # nothing watched: no squeue for it


@pytest.mark.parametrize("state", [None, "COMPLETED"])
async def test_cancel_later_of_a_job_already_gone_is_done_at_once(fake_slurm, make_poller, state):
    if state:
        fake_slurm.add_job("101", state=state)  # "already completing or completed"
    poller = make_poller(interval=0.05)
    poller.cancel_later("101", [fake_slurm.cmd("scancel"), "101"])  # else "Invalid job id"
    await poller.refresh()
    await poller.refresh()
    assert len(fake_slurm.calls("scancel")) == 1


async def test_queue_positions_are_asked_only_while_a_watched_job_pends(fake_slurm, make_poller):
    fake_slurm.add_job("101", state="RUNNING", host="vm", partition="interactive")
    # other users' jobs, not watched by this hub
    fake_slurm.add_job("150", state="PENDING", reason="Resources", partition="interactive", priority=90)
    fake_slurm.add_job("151", state="PENDING", reason="Priority", partition="interactive", priority=10)
    fake_slurm.add_job("160", state="PENDING", reason="Priority", partition="cpu", priority=99)
    poller = make_poller()
    poller.watch("101")
    await poller.refresh()
    assert position_rounds(fake_slurm) == [] and poller.positions == {}
    fake_slurm.add_job("102", state="PENDING", reason="Priority", partition="interactive", priority=50)
    poller.watch("102")
    await poller.refresh()
    assert position_rounds(fake_slurm) == [["-h", "--states=PENDING", "-p", "interactive", "-o", SQUEUE_FORMAT]]
    assert poller.positions["102"] == (2, 3) and "160" not in poller.positions
    fake_slurm.set_job("102", state="RUNNING", host="vm")
    await poller.refresh()
    await poller.refresh()
    assert len(position_rounds(fake_slurm)) == 1 and poller.positions == {}
