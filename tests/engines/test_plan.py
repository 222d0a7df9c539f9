"""The launcher's decisions as pure functions: no Slurm needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from traitlets.config import Config

from rcsc3_proxy.engines.allocation import (
    Allocation,
    NotInSlurmJob,
    TooManyEngines,
    parse_cpus_per_node,
    plan_engines,
    srun_argv,
)
from rcsc3_proxy.engines.session_defaults import apply_session_defaults
from rcsc3_proxy.engines.step_output import SrunOutput, expand_tasks

SESSION = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_CPUS_PER_NODE": "3", "RCSC3_ENGINES": "2"}


@given(st.lists(st.tuples(st.integers(1, 256), st.integers(1, 5)), min_size=1, max_size=6))
def test_cpus_per_node_round_trips(groups):
    text = ",".join(f"{c}(x{r})" if r > 1 else str(c) for c, r in groups)
    assert parse_cpus_per_node(text) == [c for c, r in groups for _ in range(r)]


def test_allocation_from_the_spawners_environment():
    alloc = Allocation.from_env(SESSION)
    assert (alloc.job_id, alloc.cpus, alloc.engine_slots(), alloc.cpu_slots()) == ("7", 3, 2, 3)
    assert alloc.in_rcsc3_session
    plain = Allocation.from_env({"SLURM_JOB_ID": "8", "SLURM_NTASKS": "3", "SLURM_CPUS_PER_TASK": "2"})
    assert (plain.cpus, plain.engine_slots(), plain.engine_slots(cpus_per_engine=2)) == (6, 6, 3)
    assert not plain.in_rcsc3_session


def test_outside_a_job_the_error_suggests_the_slurm_launcher():
    with pytest.raises(NotInSlurmJob, match=r"not inside a Slurm job.*engines='slurm'"):
        Allocation.from_env({"HOME": "/home/x"})


@pytest.mark.parametrize(
    ("env", "n", "overcommit", "expect"),
    [
        (SESSION, 2, False, (2, False, "")),
        (SESSION, 3, False, (3, False, "share the Jupyter server's CPU")),
        (SESSION, 4, True, (4, True, "overcommitting: 4 engines on 3 CPU")),
        # spawn form with 1 CPU: 1 engine reserved, sharing the server's CPU
        ({**SESSION, "SLURM_JOB_CPUS_PER_NODE": "1", "RCSC3_ENGINES": "1"}, 1, True, (1, False, "")),
        ({**SESSION, "SLURM_JOB_CPUS_PER_NODE": "1", "RCSC3_ENGINES": "1"}, 4, True, (4, True, "overcommitting")),
    ],
)
def test_plans(env, n, overcommit, expect):
    plan = plan_engines(Allocation.from_env(env), n, overcommit=overcommit)
    assert (plan.n, plan.overcommit) == expect[:2]
    assert expect[2] in plan.note


#: `sbatch -n 6 --overcommit` in the lab: Slurm gives the job 1 CPU for its 6 tasks
OVERCOMMITTED = {"SLURM_JOB_ID": "9", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_CPUS_PER_NODE": "1",
                 "SLURM_NTASKS": "6", "SLURM_OVERCOMMIT": "1"}  # fmt: skip


def test_a_job_submitted_with_overcommit_gets_its_task_count_as_srun_would():
    alloc = Allocation.from_env(OVERCOMMITTED)
    assert (alloc.cpus, alloc.tasks, alloc.overcommit, alloc.engine_slots(), alloc.cpu_slots()) == (1, 6, True, 6, 1)
    assert "6 tasks with --overcommit" in alloc.describe()
    # the launcher's default (overcommit=None) follows the job: see SrunEngineSetLauncher.start
    for n in (1, 2, 5, 6):
        plan = plan_engines(alloc, n, overcommit=alloc.overcommit)
        assert (plan.n, plan.overcommit) == (n, n > 1), plan
    assert "as the job asked" in plan_engines(alloc, 5, overcommit=True).note
    # the typo guard allows the job's own tasks, even beyond 4 per CPU; not more
    with pytest.raises(TooManyEngines, match=r"at most 6 even when overcommitting.*the job's 6 tasks"):
        plan_engines(alloc, 7, overcommit=True)
    # asked not to overcommit: the error counts CPUs, not the job's tasks
    with pytest.raises(TooManyEngines, match=r"2 engines asked.*room for 1 engine\(s\) with a CPU each;"):
        plan_engines(alloc, 2, overcommit=False)
    # without --overcommit nothing changes: the job's CPUs
    plain = Allocation.from_env({**OVERCOMMITTED, "SLURM_JOB_CPUS_PER_NODE": "4", "SLURM_NTASKS": "4", "SLURM_OVERCOMMIT": ""})
    assert (plain.overcommit, plain.engine_slots(), plain.cpu_slots()) == (False, 4, 4)
    with pytest.raises(TooManyEngines, match="room for 4 engine"):
        plan_engines(plain, 5, overcommit=False)


def test_too_many_engines_says_how_many_fit():
    alloc = Allocation.from_env(SESSION)
    with pytest.raises(TooManyEngines, match=r"5 engines asked.*room for 2 engine\(s\).*\(3 if they share"):
        plan_engines(alloc, 5, overcommit=False)
    with pytest.raises(TooManyEngines, match=r"at most 12 even when overcommitting"):
        plan_engines(alloc, 13, overcommit=True, max_engines_per_cpu=4)


def test_srun_line_overlaps_keeps_gpus_and_names_the_step():
    argv = srun_argv(["srun"], job_id="7", n=3, step_name="ipengine-x", overcommit=True)
    assert argv[0] == "srun"
    for flag in ("--jobid=7", "--ntasks=3", "--cpus-per-task=1", "--export=ALL", "--overlap", "--gres=none",
                 "--overcommit", "--job-name=ipengine-x", "--label"):  # fmt: skip
        assert flag in argv
    exclusive = srun_argv(["srun"], job_id="7", n=1, step_name="s", exclusive=True, gpus=1, nodelist="vm")
    assert "--exact" in exclusive and "--overlap" not in exclusive and "--gres=gpu:1" in exclusive
    assert "--nodelist=vm" in exclusive and "--overcommit" not in exclusive


def test_srun_output_names_dead_engines_with_their_ids_and_last_words():
    out = SrunOutput()
    assert out.feed("0: [IPEngine.0] Completed registration with id 5\n1: [IPEngine.1] Completed registration with id 4\n") == []
    assert out.feed("1: Traceback (most recent call last)\n1: MemoryError\nsrun: error: vm: task 1: Ex") == []
    [end] = out.feed("ited with exit code 1\n")
    assert (end.task, end.engine_id, end.node, end.reason) == (1, 4, "vm", "Exited with exit code 1")
    assert end.tail[-1] == "MemoryError"
    assert "engine 4 (srun task 1 on vm): Exited with exit code 1" == end.describe()
    ends = out.feed("srun: error: vm: tasks 0-1: Killed\n")
    assert [e.task for e in ends] == [0]  # task 1 was already reported
    assert expand_tasks("0-2,5") == [0, 1, 2, 5]


def test_session_defaults_only_inside_slurm_jobs():
    c = Config()
    apply_session_defaults(c, {"HOME": "/x"})
    assert "Cluster" not in c
    apply_session_defaults(c, SESSION)
    assert c.Cluster.engine_launcher_class == "srun" and c.Cluster.delay == 0
    plain = Config()
    apply_session_defaults(plain, {"SLURM_JOB_ID": "3", "SLURM_JOB_NUM_NODES": "2", "SLURMD_NODENAME": "localhost"})
    assert "engine_launcher_class" not in plain.Cluster  # only rcsc3 sessions switch the default
    assert plain.Cluster.controller_ip == "127.0.0.1"  # multi-node: the node's address, not loopback-by-default
