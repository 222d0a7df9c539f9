# Installed as {sys.prefix}/etc/ipython/ipcluster_config.py by rcsc3 (setup.cfg data_files).
# IPython Parallel reads it for every cluster, after the user's profile config
# (which wins): inside a Slurm job it tunes the controller, and inside an rcsc3
# session it makes engines="srun" the default (also for JupyterLab's Clusters panel).
# See rcsc3_proxy/engines/session_defaults.py.
from rcsc3_proxy.engines.session_defaults import apply_session_defaults

apply_session_defaults(c)  # noqa: F821 -- `c` is the config object traitlets provides
