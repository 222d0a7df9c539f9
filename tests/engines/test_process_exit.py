"""The ipyparallel shapes the srun launcher builds on, pinned on ipyparallel's own classes (no Slurm).

The launcher overrides no private method of ipyparallel's: it waits for srun with
`process_exit.wait_for_exit` (public `join(timeout=0)` + `notify_stop` + psutil) and
keeps one protected hook, `BaseLauncher._log_output`. If an ipyparallel upgrade
changes any of these, a test here fails and says which (setup.cfg pins the range
these were checked on). Real processes, no mocks; the Slurm side is in
test_srun_engines.py and test_ipyparallel_suite.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import pytest
from ipyparallel.cluster.cluster import Cluster
from ipyparallel.cluster.launcher import LocalProcessLauncher
from tornado.ioloop import IOLoop

from rcsc3_proxy.engines.process_exit import wait_for_exit
from rcsc3_proxy.engines.srun_launcher import SrunEngineSetLauncher
from rcsc3_proxy.engines.step_output import TaskEnd
from rcsc3_proxy.engines.stop_report import StepStopData, stop_summary


def _launcher(tmp_path, code: str, cls: type[LocalProcessLauncher] = LocalProcessLauncher) -> LocalProcessLauncher:
    return cls(cmd_and_args=[sys.executable, "-c", code], output_file=str(tmp_path / "out.log"))


def _start_in_a_loop_that_closes(launcher: LocalProcessLauncher) -> None:
    """Start `launcher` as `Cluster.start_cluster_sync()` does from a script: in an IOLoop closed right after."""

    async def start() -> None:
        launcher.start()

    loop = IOLoop(make_current=False)
    try:
        loop.run_sync(start)
    finally:
        loop.close()


def test_an_exit_after_the_start_loop_closed_reaches_notify_stop_only_through_wait_for_exit(tmp_path):
    launcher = _launcher(tmp_path, "import sys; sys.exit(3)")
    stopped: list[dict] = []
    launcher.on_stop(stopped.append)
    _start_in_a_loop_that_closes(launcher)

    async def main() -> str:
        await LocalProcessLauncher.join(launcher, timeout=30)  # ipyparallel's own: the wait thread has ended
        lost = launcher.state
        await wait_for_exit(launcher, timeout=30)
        return lost

    # if this fails, ipyparallel no longer loses the exit and process_exit can go
    assert asyncio.run(main()) == "running", "ipyparallel's wait thread no longer loses the exit to a closed loop"
    assert launcher.state == "after"
    assert stopped == [launcher.stop_data] and launcher.stop_data["exit_code"] == 3


def test_wait_for_exit_times_out_while_running_and_a_second_notice_changes_nothing(tmp_path):
    launcher = _launcher(tmp_path, "import time; time.sleep(60)")
    stopped: list[dict] = []
    launcher.on_stop(stopped.append)

    async def main() -> None:
        launcher.start()  # in a running loop: ipyparallel's callback arrives too, after or before ours
        with pytest.raises(TimeoutError):
            await wait_for_exit(launcher, timeout=0.3)
        assert launcher.state == "running"
        launcher.signal(signal.SIGKILL)
        await wait_for_exit(launcher, timeout=30)  # whichever notice comes second is ignored

    asyncio.run(main())
    assert launcher.state == "after" and len(stopped) == 1
    assert launcher.stop_data["exit_code"] == -signal.SIGKILL  # psutil kept what the wait thread collected


def test_notify_stop_hands_the_stop_data_to_the_log_output_hook_once(tmp_path):
    calls: list[object] = []

    class Recording(LocalProcessLauncher):
        def _log_output(self, stop_data=None):
            calls.append(stop_data)

    launcher = _launcher(tmp_path, "pass", Recording)
    data = StepStopData(exit_code=0, summary="done")
    launcher.notify_stop(data)
    launcher.notify_stop({"exit_code": 9})
    assert calls == [data] and launcher.stop_data is data and launcher.state == "after"


def test_the_cluster_prints_an_engine_sets_stop_data_as_a_string_at_a_level_set_by_exit_code(tmp_path):
    records: list[logging.LogRecord] = []
    log = logging.getLogger("rcsc3-test-engine-stop")
    log.setLevel(logging.DEBUG)
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        cluster = Cluster(log=log, profile_dir=str(tmp_path), cluster_id="t")
        calm = StepStopData(exit_code=0, srun_exit_code=137, ended_tasks={0: "x: Killed"}, summary="Engines stopped (a)")
        cluster._engines_stopped("17", calm)
        cluster._engines_stopped("18", StepStopData(exit_code=1, summary="Engine step ended unexpectedly (b)"))
    finally:
        log.removeHandler(handler)
    assert [(r.levelno, r.getMessage()) for r in records if "engine set stopped" in r.getMessage()] == [
        (logging.INFO, "engine set stopped 17: Engines stopped (a)"),
        (logging.WARNING, "engine set stopped 18: Engine step ended unexpectedly (b)"),
    ]


def test_get_output_is_the_steps_text_and_dead_engines_are_parsed_apart(tmp_path):
    # the launcher's own parser once shadowed LocalProcessLauncher's output cache (`_output`)
    log = tmp_path / "step.log"
    log.write_text("0: [IPEngine] Completed registration with id 0\nsrun: error: vm: task 0: Killed\n")
    launcher = SrunEngineSetLauncher(output_file=str(log))
    [end] = launcher.read_output()
    assert (end.engine_id, end.reason) == (0, "Killed")
    out = launcher.get_output()
    assert isinstance(out, str) and "Completed registration with id 0" in out


def test_stop_summaries():
    killed = {1: TaskEnd(task=1, node="vm", reason="Killed", engine_id=4, tail=())}
    kw = {"step_id": "42.3", "step_name": "ipengine-x", "n": 2}
    assert stop_summary(**kw, stop_requested=True, srun_exit_code=137, died={}) == (
        False,
        "Engines stopped (Slurm step 42.3, 2 engines)",
    )
    failed, line = stop_summary(**kw, stop_requested=True, srun_exit_code=137, died=killed)
    assert not failed
    assert line == "Engines stopped (Slurm step 42.3, 2 engines); 1 had ended before: engine 4 (srun task 1 on vm): Killed"
    exited = stop_summary(**kw, stop_requested=False, srun_exit_code=0, died={})
    assert exited == (False, "Engines exited (Slurm step 42.3, 2 engines)")
    failed, line = stop_summary(**kw, stop_requested=False, srun_exit_code=137, died=killed)
    assert failed and "ended unexpectedly" in line and "srun exit code 137" in line and "engine 4" in line
    pending = stop_summary(step_id="", step_name="ipengine-x", n=1, stop_requested=True, srun_exit_code=143, died={})
    assert pending == (False, "Engines stopped (srun step 'ipengine-x' (not started by Slurm yet), 1 engine)")
    data = StepStopData(exit_code=0, summary="Engines stopped (x)", srun_exit_code=137)
    assert str(data) == repr(data) == f"{data}" == "Engines stopped (x)" and data["srun_exit_code"] == 137
    assert repr(StepStopData(exit_code=0)) == "{'exit_code': 0}"
