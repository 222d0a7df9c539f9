"""Settings RcSC3Spawner inherits from batchspawner and JupyterHub but does not use: an error each.

RcSC3Spawner is a batchspawner SlurmSpawner (batchspawner's port-report protocol is the one the
job speaks), but it builds, submits, watches and cancels the job itself. An admin who follows
batchspawner's documentation and sets `c.SlurmSpawner.req_partition` would be ignored without a
word; instead the hub refuses to start and names what to use: rcsc3's hub configs end with
`check_config(c)`, which stops the hub at start-up, and a spawner refuses to be made with such a
setting whatever the config file does.
"""

from __future__ import annotations

from traitlets.config import Config

#: setting -> what to use instead
IGNORED: dict[str, str] = {
    "batch_script": "rcsc3 writes the job script itself: use profiles[].extra_sbatch for #SBATCH lines and "
                    "c.RcSC3Spawner.job_prologue for shell lines",
    "batch_submit_cmd": "rcsc3 runs sbatch itself; c.RcSC3Spawner.submit_prefix says how (sudo)",
    "batch_query_cmd": "rcsc3 runs one squeue for every job of the hub (c.RcSC3Spawner.slurm_poll_interval)",
    "batch_cancel_cmd": "rcsc3 runs scancel itself; c.RcSC3Spawner.submit_prefix says how (sudo)",
    "exec_prefix": "use c.RcSC3Spawner.submit_prefix (an argv list, e.g. ['sudo', '-u', '{username}', '--'])",
    "batchspawner_singleuser_cmd": "use c.RcSC3Spawner.singleuser_launcher",
    "startup_poll_interval": "use c.RcSC3Spawner.slurm_fast_poll_interval",
    "req_account": "use profiles[].account",
    "req_cluster": "set SLURM_CONF in the hub's environment, or profiles[].extra_sbatch ['--clusters=...']",
    "req_epilogue": "the job runs the server with exec: use Slurm's Epilog on the nodes (hub_config/slurm/epilog.sh)",
    "req_gres": "use profiles[].gpus (or profiles[].extra_sbatch for other generic resources)",
    "req_host": "use profiles[].constraint or profiles[].extra_sbatch ['--nodelist=...']",
    "req_keepvars_extra": "use c.Spawner.environment (names starting RCSC3_ pass sudo's env_keep)",
    "req_memory": "use profiles[].memory_gb",
    "req_ngpus": "use profiles[].gpus",
    "req_nprocs": "use profiles[].cpus",
    "req_options": "use profiles[].extra_sbatch",
    "req_partition": "use profiles[].partition",
    "req_queue": "use profiles[].partition",
    "req_prologue": "use c.RcSC3Spawner.job_prologue",
    "req_qos": "use profiles[].qos",
    "req_reservation": "use profiles[].reservation",
    "req_runtime": "use profiles[].walltime",
    "req_srun": "the server runs in the batch step; engines use srun themselves (c.SrunEngineSetLauncher.srun_cmd)",
    "state_pending_re": "rcsc3 reads Slurm's job states itself",
    "state_running_re": "rcsc3 reads Slurm's job states itself",
    "state_unknown_re": "rcsc3 reads Slurm's job states itself",
    "state_exechost_re": "rcsc3 reads Slurm's job states itself",
    "state_exechost_exp": "rcsc3 reads Slurm's job states itself",
    # JupyterHub's generic limits: Slurm enforces what the profile asks for
    "mem_limit": "use profiles[].memory_gb (Slurm enforces it)",
    "mem_guarantee": "use profiles[].memory_gb (Slurm enforces it)",
    "cpu_limit": "use profiles[].cpus (Slurm enforces it)",
    "cpu_guarantee": "use profiles[].cpus (Slurm enforces it)",
}
#: the config sections a setting of RcSC3Spawner can be given in
SECTIONS = ("RcSC3Spawner", "SlurmSpawner", "BatchSpawnerRegexStates", "BatchSpawnerBase", "Spawner")


def ignored_settings(config: Config) -> list[str]:
    """One message per setting in `config` that RcSC3Spawner would ignore, naming the rcsc3 way."""
    problems = []
    for section in SECTIONS:
        if section not in config:
            continue
        for name in sorted(config[section]):
            if name in IGNORED:
                problems.append(f"c.{section}.{name} is a batchspawner/JupyterHub setting that RcSC3Spawner does "
                                f"not use: {IGNORED[name]}")
    return problems


def check_config(config: Config) -> None:
    """The last line of a hub config: stop the hub with every setting RcSC3Spawner would ignore named,
    and with a malformed profile named (`c.RcSC3Spawner.profiles`)."""
    from .profiles import ProfileError, parse_profiles

    problems = ignored_settings(config)
    raw = config.RcSC3Spawner.get("profiles") if "RcSC3Spawner" in config else None
    if raw is not None:
        try:
            parse_profiles(raw)
        except ProfileError as e:
            problems.append(f"c.RcSC3Spawner.profiles: {e}")
    if problems:
        raise SystemExit("rcsc3: configuration error:\n  " + "\n  ".join(problems))
