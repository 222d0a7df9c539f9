"""RcSC3Spawner's start / poll / stop against the fake sbatch, squeue, scancel and scontrol.

The job's Jupyter server is a stand-in (hubunit.IdentityServer) that answers the identity check;
the port report is the call the hub's API handler makes (spawner.report_port).
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from polling import wait_for

from rcsc3_spawner.slurm.poller import GONE
from rcsc3_spawner.spawner import SpawnFailure


def messages(spawner) -> list[str]:
    """What the student's spawn page has shown so far."""
    return [event["message"] for event in spawner._progress_events]


async def shown(spawner, text: str, timeout: float = 10) -> str:
    return await wait_for(lambda: next((m for m in messages(spawner) if text in m), None), timeout,
                          f"the spawn page to show {text!r}")


def scancels(fake) -> list[list[str]]:
    return [c["argv"] for c in fake.calls("scancel")]


async def submitted(spawner) -> tuple[asyncio.Future, str]:
    """Start the spawn as JupyterHub does (a task), and wait until sbatch gave a job id."""
    task = asyncio.ensure_future(spawner.start())
    job_id = await wait_for(lambda: spawner.job_id or (task.done() and task.result()), 10, "the job to be submitted")
    return task, job_id


async def running_spawner(fake, make_spawner, **kwargs):
    """A spawner whose job runs, found after a hub restart (state loaded, then polled as the hub does)."""
    fake.add_job("100", state="RUNNING", host="node1", partition="cpu", end="2026-12-01T12:00:00")
    spawner = make_spawner(**kwargs)
    spawner.load_state({"job_id": "100", "job_host": "node1"})
    assert await spawner.poll() is None
    assert spawner.poller.get("100").running
    return spawner


async def test_pending_running_port_identity_up(fake_slurm, make_spawner, identity_server):
    # another user's job waits ahead of ours in the same partition
    fake_slurm.add_job("90", state="PENDING", reason="Resources", partition="interactive", priority=500)
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Priority", "priority": 100, "start": "2026-12-01T23:00:00"}
    spawner = make_spawner()
    server = identity_server(spawner.api_token)
    task, job = await submitted(spawner)
    assert job == "100"
    script = fake_slurm.job(job)["script"]  # the default profile, as the batch script asks Slurm
    assert "#SBATCH --partition=interactive" in script and "#SBATCH --gres=gpu:1" in script
    assert spawner.orm_spawner.state["job_id"] == job  # saved before the wait: a hub restart finds it
    await shown(spawner, "Job 100 pending: Priority; number 2 of 2 waiting for interactive; "
                         "estimated start 2026-12-01 23:00:00")
    fake_slurm.set_job(job, state="RUNNING", host="node1", reason="None", start="2026-12-01T22:50:00")
    await shown(spawner, "Job 100 running on node1; starting the Jupyter server")
    assert not task.done() and server.challenges == []  # nothing is asked before the port is reported
    spawner.report_port(server.port)
    ip, port = await asyncio.wait_for(task, 10)
    assert (ip, port) == ("127.0.0.1", server.port)  # the node's NodeAddr from scontrol, the reported port
    assert len(server.challenges) == 1 and re.fullmatch(r"[0-9a-f]{64}", server.challenges[0])
    assert messages(spawner)[-1] == f"Jupyter server up on node1:{server.port}"
    assert messages(spawner)[:2] == ["Submitting to Slurm (interactive partition: 1 GPU, 2 CPUs, 4 GiB, 2:00 h)",
                                     "Submitted job 100"]
    assert spawner.get_state()["job_host"] == "node1"
    assert spawner.poller.get(job).running and scancels(fake_slurm) == []
    assert await spawner.poll() is None


async def test_slurm_down_after_the_submission_keeps_the_spawn_going(fake_slurm, make_spawner, identity_server):
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Priority"}
    fake_slurm.down("squeue")  # sbatch got through; slurmctld stops answering queries right after
    spawner = make_spawner()
    server = identity_server(spawner.api_token)
    task, job = await submitted(spawner)
    await shown(spawner, "Job 100: Slurm is not answering (squeue exited 1: slurm_load_jobs error: Socket timed out "
                         "on send/recv operation); retrying")
    assert not task.done() and scancels(fake_slurm) == []  # unknown is not gone: the job is kept
    fake_slurm.up("squeue")
    await shown(spawner, "Job 100 pending: Priority")
    fake_slurm.set_job(job, state="RUNNING", host="node1")
    await shown(spawner, "Job 100 running on node1")
    spawner.report_port(server.port)
    assert await asyncio.wait_for(task, 10) == ("127.0.0.1", server.port)


async def test_slurm_refusing_the_job_fails_with_its_reason(fake_slurm, make_spawner):
    fake_slurm.down("sbatch", error="sbatch: error: Batch job submission failed: Invalid partition name specified")
    spawner = make_spawner()
    with pytest.raises(SpawnFailure) as failure:
        await asyncio.wait_for(spawner.start(), 10)
    assert failure.value.jupyterhub_message == (
        "Slurm refused the job: sbatch: error: Batch job submission failed: Invalid partition name specified")
    assert spawner.job_id == "" and scancels(fake_slurm) == []


async def test_a_job_that_ends_before_it_starts_fails_fast_with_its_log(fake_slurm, make_spawner, tmp_path):
    with fake_slurm.edit() as s:
        s["submit"] = {"then": [{"state": "FAILED", "reason": "NonZeroExitCode"}]}
        s["log"] = "rcsc3: starting\n/bin/sh: 1: /opt/missing/bin/rcsc3-singleuser: not found\n"
    spawner = make_spawner()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(SpawnFailure) as failure:
        await asyncio.wait_for(spawner.start(), 10)
    assert loop.time() - t0 < 5  # at the first round that sees it, not at a timeout
    e = failure.value
    assert e.jupyterhub_message == "Job 100 ended (FAILED) before it started."
    log = tmp_path / "logs" / spawner.user.name / "jupyter-100.log"  # the job's --output, %j filled in
    tail = f"Last lines of {log}:\nrcsc3: starting\n/bin/sh: 1: /opt/missing/bin/rcsc3-singleuser: not found"
    assert tail in e.log_message % e.args  # what the hub logs and the API answers
    assert "<pre class='rcsc3-log'>" in e.jupyterhub_html_message and "rcsc3-singleuser: not found" in e.jupyterhub_html_message
    assert "Job 100 pending: waiting to be scheduled" in messages(spawner)


async def test_a_job_that_ends_before_its_server_answers_fails_with_its_log(fake_slurm, make_spawner):
    with fake_slurm.edit() as s:
        s["submit"] = {"state": "RUNNING", "host": "node1"}
        s["log"] = "Traceback (most recent call last):\nOSError: [Errno 98] Address already in use\n"
    spawner = make_spawner()
    task, job = await submitted(spawner)
    await shown(spawner, "running on node1")
    fake_slurm.set_job(job, state="FAILED", reason="NonZeroExitCode")
    with pytest.raises(SpawnFailure) as failure:
        await asyncio.wait_for(task, 10)
    # (the poller keeps no JobInfo for a finished job, so the message says "finished", not FAILED)
    assert failure.value.jupyterhub_message == "Job 100 ended (FAILED) before its Jupyter server answered."
    assert "Address already in use" in failure.value.jupyterhub_html_message


async def test_the_pending_timeout_cancels_the_job_and_names_the_reason(fake_slurm, make_spawner):
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Resources"}
    spawner = make_spawner(pending_timeout=0.5)
    with pytest.raises(SpawnFailure) as failure:
        await asyncio.wait_for(spawner.start(), 10)
    assert re.fullmatch(r"Job 100 was still pending after \d+ s \(Resources\); job cancelled\. Try a smaller request "
                        r"or another profile, or try again later\.", failure.value.jupyterhub_message)
    assert scancels(fake_slurm) == [["100"]]  # a pending job: a plain scancel
    assert fake_slurm.job("100")["state"] == "CANCELLED"
    assert spawner.poller.get("100") is None  # gone, and no longer watched


@pytest.mark.parametrize("mode, detail", [("wrong-token", "a wrong proof"), ("other-port", "a wrong proof")])
async def test_a_wrong_identity_proof_fails_the_spawn_and_cancels_the_job(fake_slurm, make_spawner, identity_server,
                                                                         mode, detail):
    with fake_slurm.edit() as s:
        s["submit"] = {"state": "RUNNING", "host": "node1"}
    spawner = make_spawner()
    impostor = identity_server(spawner.api_token, mode)
    task, job = await submitted(spawner)
    await shown(spawner, "running on node1")
    spawner.report_port(impostor.port)
    with pytest.raises(SpawnFailure) as failure:
        await asyncio.wait_for(task, 10)
    message = failure.value.jupyterhub_message
    assert f"Job 100 reported port {impostor.port}, but what answers on node1:{impostor.port} is not your Jupyter " \
           f"server ({detail}): another program holds that port. The job was cancelled" in message
    assert impostor.challenges  # it was asked, and failed
    assert scancels(fake_slurm) == [["--batch", "--signal=TERM", "100"], ["--signal=KILL", "100"]]
    assert fake_slurm.job("100")["state"] == "CANCELLED"


async def test_stop_terms_then_kills_and_waits_until_slurm_lists_the_job_no_more(fake_slurm, make_spawner):
    spawner = await running_spawner(fake_slurm, make_spawner, stop_grace_period=0.3)
    # the job lingers as COMPLETING for two more squeues after the kill, as Slurm's cleanup does
    fake_slurm.set_job("100", on_cancel={"state": "COMPLETING", "then": [{}, {"gone": True}]})
    await asyncio.wait_for(spawner.stop(), 10)
    calls = fake_slurm.calls("scancel")
    assert [c["argv"] for c in calls] == [["--batch", "--signal=TERM", "100"], ["--signal=KILL", "100"]]
    assert calls[1]["t"] - calls[0]["t"] >= 0.3  # the grace period between TERM and KILL
    assert fake_slurm.job("100") is None  # returned only once Slurm no longer had it
    after_kill = [c for c in fake_slurm.calls("squeue") if c["t"] > calls[1]["t"] and "-j" in c["argv"]]
    assert len(after_kill) >= 3, after_kill  # COMPLETING, COMPLETING, then not listed


async def test_stop_while_slurm_is_down_hands_the_cancel_to_the_background(fake_slurm, make_spawner):
    spawner = await running_spawner(fake_slurm, make_spawner, slurm_poll_interval=0.1, stop_timeout=0.6)
    for program in ("squeue", "scancel"):
        fake_slurm.down(program)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(spawner.stop(), 10)
    assert loop.time() - t0 < 3  # the stop does not hang on Slurm; the hub can drop the server
    assert fake_slurm.job("100")["state"] == "RUNNING"  # nothing got through
    tried = scancels(fake_slurm)
    assert tried[0] == ["--batch", "--signal=TERM", "100"]  # first TERM, then (after the grace) KILL and cancel,
    assert ["--signal=KILL", "100"] in tried and ["100"] in tried  # all refused; the cancel also retried each round
    tried = len(tried)
    for program in ("squeue", "scancel"):
        fake_slurm.up(program)
    await wait_for(lambda: fake_slurm.job("100")["state"] == "CANCELLED", 10, "the deferred scancel to cancel the job")
    assert len(scancels(fake_slurm)) > tried and scancels(fake_slurm)[-1] == ["100"]
    # and it is not sent again once it worked
    done = len(scancels(fake_slurm))
    await spawner.poller.refresh()
    await spawner.poller.refresh()
    assert len(scancels(fake_slurm)) == done


async def test_poll_keeps_the_server_while_slurm_is_down_and_says_how_the_job_ended(fake_slurm, make_spawner):
    fake_slurm.add_job("100", state="RUNNING", host="node1")
    spawner = make_spawner()
    spawner.load_state({"job_id": "100", "job_host": "node1"})  # a hub restart
    notified = []
    spawner.add_poll_callback(lambda: notified.append(spawner.job_id))  # how the hub learns a server stopped
    fake_slurm.down("squeue")
    assert await spawner.poll() is None  # unknown: keep the server
    assert not spawner.poller.known and spawner.poller.get("100") is None
    fake_slurm.set_job("100", state="TIMEOUT", end="2026-12-01T12:00:00")  # it ends meanwhile
    assert await spawner.poll_and_notify() is None  # JupyterHub's periodic poll
    assert spawner.job_id == "100" and notified == [] and spawner.last_end == {}
    fake_slurm.up("squeue")
    await spawner.poll_and_notify()
    await wait_for(lambda: notified, 5, "the hub to be told the server is gone")
    assert notified == [""]  # once, with the job's state cleared
    assert spawner.last_end == {"state": "TIMEOUT", "reason": "", "at": "2026-12-01T12:00:00"}
    assert spawner.describe_last_end() == "Your last session reached its time limit at 12:00."
    assert spawner.get_state() == {"last_end": spawner.last_end}  # kept for the student's next visit
    assert await spawner.poll() == 0


async def test_poll_answers_1_for_a_job_the_poller_already_found_gone(fake_slurm, make_spawner):
    fake_slurm.add_job("100", state="RUNNING", host="node1")
    spawner = make_spawner()
    spawner.load_state({"job_id": "100"})
    spawner.poller.watch("100")  # e.g. by a stop() that gave up waiting
    fake_slurm.set_job("100", state="CANCELLED")
    await spawner.poller.refresh()
    assert spawner.poller.get("100") is GONE
    assert await spawner.poll() == 1
    assert spawner.job_id == "" and spawner.poller.get("100") is None  # no longer watched


async def test_a_poll_that_itself_finds_the_job_gone_answers_1(fake_slurm, make_spawner):
    fake_slurm.add_job("100", state="TIMEOUT", host="node1")  # ended while the hub was down
    spawner = make_spawner()
    spawner.load_state({"job_id": "100"})
    assert await spawner.poll() == 1  # JupyterHub's init_spawners would take None for "still running"


async def test_a_job_that_ends_by_itself_is_noticed_by_the_next_round(fake_slurm, make_spawner):
    spawner = await running_spawner(fake_slurm, make_spawner, slurm_poll_interval=0.1)
    noticed = []
    spawner.add_poll_callback(lambda: noticed.append(spawner.job_id))
    fake_slurm.set_job("100", state="NODE_FAIL", reason="NodeDown", end="2026-12-01T11:30:00")
    await wait_for(lambda: noticed, 5, "the hub to be told the server is gone")
    assert noticed == [""]
    assert spawner.last_end == {"state": "NODE_FAIL", "reason": "NodeDown", "at": "2026-12-01T11:30:00"}
    assert spawner.describe_last_end() == "Your last session ended because its node failed at 11:30 (NodeDown)."


async def test_cancelling_start_cancels_the_pending_job_at_once(fake_slurm, make_spawner):
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Priority"}
    spawner = make_spawner()
    task, job = await submitted(spawner)
    await shown(spawner, "Job 100 pending: Priority")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task.cancel()  # JupyterHub's Stop on the spawn page
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - t0 < 2
    assert scancels(fake_slurm) == [["100"]] and fake_slurm.job("100")["state"] == "CANCELLED"
    assert spawner.last_end["state"] == "CANCELLED"
    assert spawner.describe_last_end().startswith("Your last session was cancelled at ")
    assert spawner.describe_last_end().endswith(" (you stopped it while it waited for Slurm).")


async def test_stop_while_sbatch_runs_cancels_the_job_sbatch_made(fake_slurm, make_spawner):
    """Stop pressed while sbatch is still on its way back: the job exists, its id not yet known."""
    with fake_slurm.edit() as s:
        s["sbatch_delay"] = 1.0  # the job is made, then sbatch takes a second to answer
    spawner = make_spawner()
    task = asyncio.ensure_future(spawner.start())
    await wait_for(lambda: fake_slurm.job("100"), 10, "sbatch to make the job")
    assert spawner.job_id == ""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scancels(fake_slurm) == [["100"]] and fake_slurm.job("100")["state"] == "CANCELLED"


async def test_an_outage_while_pending_does_not_show_the_old_state_as_news(fake_slurm, make_spawner):
    """While squeue fails, the spawn page says Slurm does not answer, not the last round's state."""
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Priority"}
    spawner = make_spawner(slurm_poll_interval=0.1)
    task, job = await submitted(spawner)
    await shown(spawner, "Job 100 pending: Priority")
    fake_slurm.down("squeue")
    await shown(spawner, "Job 100: Slurm is not answering")  # not the last round's "pending: Priority" again
    fake_slurm.set_job("100", reason="Resources")  # true meanwhile, but nobody can know it
    rounds = len(fake_slurm.calls("squeue"))
    await wait_for(lambda: len(fake_slurm.calls("squeue")) >= rounds + 3, 10, "three more rounds in the outage")
    assert not any("Resources" in m for m in messages(spawner))
    fake_slurm.up("squeue")
    await shown(spawner, "Job 100 pending: Resources")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_long_wait_in_the_queue_asks_slurm_less_and_less_often(fake_slurm, make_spawner):
    """A class waiting in the queue must not have the hub ask Slurm every fast round for minutes."""
    with fake_slurm.edit() as s:
        s["submit"] = {"reason": "Priority"}
    spawner = make_spawner(slurm_fast_poll_interval=0.05, slurm_pending_backoff_after=1.0)
    task, job = await submitted(spawner)
    t0 = fake_slurm.calls("sbatch")[0]["t"]
    await wait_for(lambda: time.monotonic() - t0 > 4, 10, "four seconds in the queue")
    # one round: the watched jobs (-j), and while one pends its partition's queue (-p)
    times = [c["t"] for c in fake_slurm.calls("squeue") if c["t"] > t0 and "-j" in c["argv"]]
    fast = [b - a for a, b in zip(times, times[1:], strict=False) if b < t0 + 1.0]
    slow = [(b - a, a - t0) for a, b in zip(times, times[1:], strict=False) if a > t0 + 1.5]
    assert fast and max(fast) < 0.5, fast  # the first second: the fast cadence (a job that starts at once)
    assert slow and all(gap >= 0.08 * waited for gap, waited in slow), slow  # then a tenth of the time waited
    assert len(times) < 40, len(times)  # the fast cadence all along would be ~80
    await shown(spawner, "Job 100 pending: Priority")
    fake_slurm.set_job("100", reason="Resources")
    await shown(spawner, "Job 100 pending: Resources", timeout=5)  # still news within a round
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
