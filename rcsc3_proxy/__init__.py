"""rcsc3's node side: what runs inside a student's Slurm job on a GPU node.

- `singleuser`: `rcsc3-singleuser`, the job's first program: binds the server's port, reports it
  to the hub, then runs the Jupyter server on that same socket (`prestart`: the desktop boots
  meanwhile)
- `desktop/`: the Remote Desktop (jupyter-server-proxy entry `desktop`): Xvnc + xfce under
  VirtualGL, shown by noVNC
- `engines/`: ipyparallel engines as Slurm job steps (`ipp.Cluster(engines="srun")`)
- `jupyter/`: JupyterLab's defaults for students and rcsc3's JupyterLab plugin (data files)

Nothing here imports the hub package (`rcsc3_spawner`) or the lab (`rcsc3_lab`).
"""
