"""`ipp.Cluster(engines="srun")` in a student's real Slurm job, driven through a real kernel.

Every test submits its own batch job as a student (see conftest.py), starts real
ipyparallel engines as a real `srun` step, and checks Slurm's and the kernel's view.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import signal
import stat
import subprocess
import textwrap

from engines_harness import (
    READ_ONLY_CWD,
    VENV_BIN,
    job_steps,
    processes_with_env,
    require_student,
    wait_until,
)

START = textwrap.dedent(
    """
    import logging, os
    import ipyparallel as ipp
    records = []
    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    cluster = ipp.Cluster({args})
    cluster.log.addHandler(_Keep())
    rc = cluster.start_and_connect_sync()
    """
)

ENGINE_FACTS = (
    "rc[:].apply_sync(lambda: {k: __import__('os').environ.get(k) for k in "
    "('SLURM_JOB_ID', 'SLURM_STEP_ID', 'SLURM_PROCID', 'CUDA_VISIBLE_DEVICES')} "
    "| {'pid': __import__('os').getpid(), 'cwd': __import__('os').getcwd()})"
)


def _gone(pids: list[int]) -> bool:
    return not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_engines_are_a_step_of_the_students_job_and_stop_removes_everything(job_kernel):
    k = job_kernel(ntasks=3, engines=2, gpus=1)
    k.run(START.format(args='engines="srun"'))
    info = k.value(
        "{'ids': rc.ids, 'n': cluster.n, 'step': cluster.engine_set.step_id, 'name': cluster.engine_set.step_name,"
        " 'cluster_id': cluster.cluster_id, 'profile': cluster.profile_dir,"
        " 'kernel_gpus': os.environ.get('CUDA_VISIBLE_DEVICES')}"
    )
    # default n: the engines the spawn form reserved (3 CPUs - 1 for the server)
    assert info["n"] == 2 and len(info["ids"]) == 2, info
    # the engines are one step of the student's own job, visible to Slurm
    assert info["step"].startswith(f"{k.job}."), info
    assert job_steps(k.job).get(info["step"]) == info["name"]

    facts = k.value(ENGINE_FACTS)
    uid = pwd.getpwnam(k.user).pw_uid
    for f in facts:
        assert f"{f['SLURM_JOB_ID']}.{f['SLURM_STEP_ID']}" == info["step"], f
        assert os.stat(f"/proc/{f['pid']}").st_uid == uid
        assert f["cwd"] == READ_ONLY_CWD  # engines work where the notebook works, even read-only
    assert sorted(int(f["SLURM_PROCID"]) for f in facts) == [0, 1]
    # the job's GPU stays with the kernel/desktop: the step took none
    assert info["kernel_gpus"], "the job should see its GPU"
    assert all(not f["CUDA_VISIBLE_DEVICES"] for f in facts), facts

    squares = k.value("rc.load_balanced_view().map_sync(lambda x: x * x, range(100))")
    assert squares == [x * x for x in range(100)]
    assert k.value("rc[:].map_sync(lambda x: x + 1, range(10))") == list(range(1, 11))

    # connection files: private to the student
    security = os.path.join(info["profile"], "security")
    assert stat.S_IMODE(os.stat(security).st_mode) == 0o700
    for kind in ("client", "engine"):
        path = os.path.join(security, f"ipcontroller-{info['cluster_id']}-{kind}.json")
        st = os.stat(path)
        assert st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o600, path

    # engines booted alongside the controller read a private connection file of their own
    [early] = glob.glob(os.path.join(security, f"ipcontroller-{info['cluster_id']}-*-srun-engine.json"))
    assert stat.S_IMODE(os.stat(early).st_mode) == 0o600

    before = processes_with_env("IPP_CLUSTER_ID", info["cluster_id"])
    assert len(before) >= 3  # controller, 2 engines (+ nannies, srun, guard)
    k.run("saved = cluster.engine_set.to_dict()")  # what a cluster file keeps, e.g. for JupyterLab's panel
    k.run("seen = len(records)")
    stopped = k.run("cluster.stop_cluster_sync()")  # what the notebook cell prints (the Cluster logs to stdout)
    # stop() returns once Slurm has removed the step
    assert info["step"] not in job_steps(k.job)
    wait_until(lambda: _gone(before), 15, "every engine/controller process to exit")
    assert processes_with_env("IPP_CLUSTER_ID", info["cluster_id"]) == []
    assert not os.path.exists(early)
    # reattaching to the stopped step reports that it is gone
    restored = k.run(
        "from rcsc3_proxy.engines.srun_launcher import SrunEngineSetLauncher, NotRunning\n"
        "try:\n    SrunEngineSetLauncher.from_dict(saved)\nexcept NotRunning as e:\n    print('NotRunning', e)"
    )
    assert restored.startswith("NotRunning"), restored
    assert k.value("records") and not any("Engine step" in r and "ended" in r for r in k.value("records"))
    # a normal stop reads as one: one calm line, no "Killed" and no exit code 137 from the cancelled step
    calm = f"Engines stopped (Slurm step {info['step']}, 2 engines)"
    stop_log = "\n".join(k.value("records[seen:]"))
    for text in (stopped, stop_log):
        assert calm in text, text
        assert "Killed" not in text and not re.search(r"\b137\b", text) and "ended_tasks" not in text, text


def test_kernel_killed_takes_the_step_and_the_controller_with_it(job_kernel):
    k = job_kernel(ntasks=2, engines=1)
    k.run(START.format(args='engines="srun", n=2'))
    info = k.value(
        "{'pid': os.getpid(), 'step': cluster.engine_set.step_id, 'cluster_id': cluster.cluster_id,"
        " 'security': os.path.join(cluster.profile_dir, 'security')}"
    )
    [connection_file] = glob.glob(os.path.join(info["security"], f"ipcontroller-{info['cluster_id']}-*-srun-engine.json"))
    assert info["step"] in job_steps(k.job)
    procs = processes_with_env("IPP_CLUSTER_ID", info["cluster_id"])
    assert len(procs) >= 3

    os.kill(info["pid"], signal.SIGKILL)  # OOM killer / `kill -9` of the notebook kernel
    wait_until(lambda: info["step"] not in job_steps(k.job), 30, f"step {info['step']} to end after the kernel died")
    wait_until(lambda: _gone(procs), 30, "the controller and engines to exit after the kernel died")
    assert not os.path.exists(connection_file)  # the guard removed the engines' key file too
    # and the job itself (the Jupyter server's) is untouched
    assert f"{k.job}.batch" in job_steps(k.job)


def test_job_end_leaves_no_controller_or_engine_behind(job_kernel):
    k = job_kernel(ntasks=2, engines=1)
    k.run(START.format(args='engines="srun"'))
    cluster_id = k.value("cluster.cluster_id")
    procs = processes_with_env("IPP_CLUSTER_ID", cluster_id)
    assert len(procs) >= 3
    subprocess.run(["scancel", k.job], check=True, timeout=30)  # walltime, `scancel`, the hub stopping the server
    wait_until(lambda: not job_steps(k.job), 60, f"job {k.job} to end")
    wait_until(lambda: _gone(procs), 30, "every process of the cluster to exit with the job")


def test_a_killed_engine_is_reported_with_its_id_and_the_others_keep_working(job_kernel):
    k = job_kernel(ntasks=3, engines=2)
    k.run(START.format(args='engines="srun"'))
    facts = k.value(f"dict(zip(map(str, rc.ids), {ENGINE_FACTS}))")
    # Cluster.signal_engines reaches the engines through Slurm: SIGINT interrupts running tasks
    interrupted = k.run(
        textwrap.dedent(
            """
            import signal, time
            def nap():
                print("napping", flush=True)  # reaches ar.stdout while the task runs
                __import__("time").sleep(120)
            ar = rc[:].apply_async(nap)
            deadline = time.monotonic() + 30
            while not all("napping" in out for out in ar.stdout) and time.monotonic() < deadline:
                ar.wait(0.05)
            cluster.signal_engines_sync(signal.SIGINT)
            try:
                ar.get(timeout=30)
            except Exception as e:
                print(type(e).__name__, e)
            """
        )
    )
    assert "KeyboardInterrupt" in interrupted, interrupted

    victim_id, victim = next((int(i), f) for i, f in facts.items() if f["SLURM_PROCID"] == "1")
    survivor_id = next(int(i) for i in facts if int(i) != victim_id)

    os.kill(victim["pid"], signal.SIGKILL)
    ended = wait_until(
        lambda: k.value("{t: e.describe() for t, e in cluster.engine_set.ended_tasks.items()}"),
        30,
        "the launcher to notice the killed engine",
        0.3,
    )
    assert list(ended) == ["1"], ended
    assert "Killed" in ended["1"] and f"engine {victim_id}" in ended["1"], ended
    records = k.value("records")
    assert any("Killed" in r and f"engine {victim_id}" in r for r in records), records
    # one dead engine does not end the step
    assert k.value(f"rc[{survivor_id}].apply_sync(lambda: 6 * 7)") == 42
    assert k.value("cluster.engine_set.poll()") is None
    step = k.value("cluster.engine_set.step_id")
    stopped = k.run("cluster.stop_cluster_sync()")
    # the stop is still calm about the engines it ended, and still names the one that had died
    calm = rf"Engines stopped \(Slurm step {re.escape(step)}, 2 engines\); 1 had ended before: "
    assert re.search(calm + rf"engine {victim_id} \(srun task 1 on \S+\): Killed", stopped), stopped
    assert stopped.count("Killed") == 1, stopped


def test_a_step_that_ends_unasked_says_so_with_srun_exit_code_and_the_dead_engine(job_kernel):
    k = job_kernel(ntasks=2, engines=1)
    k.run(START.format(args='engines="srun", n=1'))
    [engine] = k.value(ENGINE_FACTS)
    step = k.value("cluster.engine_set.step_id")
    os.kill(engine["pid"], signal.SIGKILL)  # the only engine: srun ends the step by itself
    line = wait_until(
        lambda: next((r for r in k.value("records") if r.startswith("engine set stopped")), None),
        30,
        "the Cluster to log the engine set's end",
        0.3,
    )
    assert re.search(
        rf"Engine step ended unexpectedly \(Slurm step {re.escape(step)}, 1 engine, srun exit code 137\): "
        r"engine 0 \(srun task 0 on \S+\): Killed",
        line,
    ), line
    assert k.value("cluster.engine_set.stop_data['exit_code']") == 137
    assert any(r.startswith(f"Engine step {step} ended (srun exit code 137)") for r in k.value("records"))
    k.run("cluster.stop_cluster_sync()")
    assert step not in job_steps(k.job)


def test_too_many_engines_says_how_many_fit_and_overcommit_works_when_asked(job_kernel):
    # a plain allocation (not an rcsc3 session): strict by default
    k = job_kernel(ntasks=1)
    out = k.run(
        textwrap.dedent(
            """
            import ipyparallel as ipp
            from traitlets.config import Config
            cluster = ipp.Cluster(engines="srun", n=3)
            try:
                cluster.start_and_connect_sync()
            except Exception as e:
                print(type(e).__name__, e)
            finally:
                cluster.stop_cluster_sync()
            """
        )
    )
    assert "TooManyEngines" in out and "3 engines asked" in out and "room for 1 engine" in out, out
    assert "overcommit = True" in out

    k.run(
        textwrap.dedent(
            """
            c = Config()
            c.SrunEngineSetLauncher.overcommit = True
            cluster = ipp.Cluster(engines="srun", n=3, config=c)
            rc = cluster.start_and_connect_sync()
            """
        )
    )
    assert len(k.value("rc.ids")) == 3
    assert k.value("rc[:].apply_sync(lambda: 1)") == [1, 1, 1]
    step = k.value("cluster.engine_set.step_id")
    k.run("cluster.stop_cluster_sync()")
    assert step not in job_steps(k.job)


def test_rcsc3_session_defaults_srun_for_cluster_and_lab_panel_and_overcommits(job_kernel):
    # the spawn form with 2 CPUs: 1 engine reserved, the server keeps a CPU
    k = job_kernel(ntasks=2, engines=1)
    k.run(
        textwrap.dedent(
            """
            import ipyparallel as ipp
            from ipyparallel.cluster import ClusterManager
            panel = ClusterManager().load_clusters(init_default_clusters=True)  # what JupyterLab's panel lists
            defaults = {
                'launcher': ipp.Cluster().engine_launcher_class.__name__,
                'panel': sorted({c.engine_launcher_class.__name__ for c in panel.values()}),
                'delay': ipp.Cluster().delay,
                'controller_args': ipp.Cluster().controller_args,
            }
            """
        )
    )
    defaults = k.value("defaults")
    assert defaults["launcher"] == "SrunEngineSetLauncher", defaults
    assert defaults["panel"] == ["SrunEngineSetLauncher"], defaults
    assert defaults["delay"] == 0 and "--HeartMonitor.period=500" in defaults["controller_args"], defaults

    # 4 engines on 2 CPUs: allowed in a session, with a warning saying so
    k.run(START.format(args="n=4"))
    assert len(k.value("rc.ids")) == 4
    assert any("overcommitting: 4 engines on 2 CPU" in r for r in k.value("records"))
    # the cluster's messages are pickled (rcsc3's default), and that reaches client and engines
    k.run("packer = rc.session.packer; ar = rc[:].apply_async(lambda x: x * 2, 21); doubled = ar.get(timeout=30)")
    assert k.value("packer") == "pickle"
    assert k.value("doubled") == [42] * 4
    assert k.value("ar.wall_time") > 0  # timestamps (metadata) survive the packer
    k.run("cluster.stop_cluster_sync()")


def test_outside_a_slurm_job_the_error_says_so(slurm_lab):
    user = require_student()
    code = textwrap.dedent(
        """
        import ipyparallel as ipp
        cluster = ipp.Cluster(engines="srun", n=2)
        try:
            cluster.start_and_connect_sync()
        except Exception as e:
            print(type(e).__name__, e)
        finally:
            cluster.stop_cluster_sync()
        """
    )
    home = pwd.getpwnam(user).pw_dir
    res = subprocess.run(
        ["sudo", "-u", user, "env", "-i", f"HOME={home}", f"PATH={VENV_BIN}:/usr/bin:/bin",
         f"{VENV_BIN}/python", "-c", code],
        check=False, capture_output=True, text=True, timeout=120, cwd=READ_ONLY_CWD,
    )  # fmt: skip
    assert "NotInSlurmJob" in res.stdout, res.stdout + res.stderr
    assert "not inside a Slurm job" in res.stdout and "engines='slurm'" in res.stdout, res.stdout
