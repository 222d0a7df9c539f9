"""rcsc3's hub side: `RcSC3Spawner` (JupyterHub's spawner entry point `rcsc3`).

- `spawner`: the spawner: start / poll / stop a student's server as a Slurm job
- `profiles`, `options`, `form`: what the admin offers, what a student may ask, the spawn form
- `batch_script`: the job script, built from validated values only
- `slurm/`: one shared `squeue` for all jobs, and the partitions' live limits
- `port_report`: the hub API handler the job's server reports its port to
- `subprocesses`: sbatch/scancel/squeue run without a shell and without blocking the hub
- `hub_log`: hub log tuning used by the configs
- `cli`: the `rcsc3` command (finds its subcommands by entry point)

Nothing here imports the node package (`rcsc3_proxy`) or the lab (`rcsc3_lab`).
"""
