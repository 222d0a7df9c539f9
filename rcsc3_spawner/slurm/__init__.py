"""The hub's view of Slurm: one shared `squeue` poller for every job, and the partitions' limits."""
