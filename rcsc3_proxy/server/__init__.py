"""What rcsc3 adds to the student's running Jupyter server (started by `rcsc3-singleuser`).

- `app`: the Jupyter server serving on the socket rcsc3-singleuser bound before it told the hub
  the port (no moment in which another user could take the port), with rcsc3's routes added
- `identity`: `rcsc3/api/identity`, the server's proof to the hub that it is this student's server
- `activity`: a busy kernel counts as activity (for the idle culler)
- `job_clock`: the job's end as Slurm tells it (refreshed in the background) and the job-log warnings before it
- `job_api`: `rcsc3/api/job`, the job's id, partition, nodes, end and time left, for JupyterLab and scripts
"""
