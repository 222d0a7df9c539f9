"""ipyparallel engines as job steps of the Slurm job the notebook runs in.

- `srun_launcher`: `SrunEngineSetLauncher`, ipyparallel's engine launcher `srun`
- `allocation`: what the job offers (a pure function of Slurm's environment) and the `srun` line
- `step_output`: which engines of the step died, and why (from `srun --label` output)
- `stop_report`: what the step's end says to the student (one calm line for a normal stop)
- `process_exit`: waiting for srun without blocking the loop or losing its exit
- `guard`: ends the step when the notebook kernel dies
- `session_defaults` (+ the data file `ipcluster_config.py`): ipyparallel's defaults inside a job
"""
