"""JupyterHub for the multi-host lab: `make demo-cluster` runs the demo's hub on the lab's hub host.

`rcsc3 lab up --hosts` makes the hosts hub (10.250.0.1), gpu1 and cpu1 in network namespaces on
this machine; the hub runs inside `rcsc3 lab on hub`, beside `make demo`'s hub on 127.0.0.1:8000
(another namespace, so the same ports). Everything is the demo's (hub_config/jupyterhub_config.py)
except what the cluster needs: the hub's address, where the servers listen, its own state
directory, and SLURM_CONF pointing at the cluster's slurm.conf. The RCSC3_CLUSTER_* variables
override the lab's defaults.
"""

import os
import socket

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)
load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "jupyterhub_config.py"))  # noqa: F821

HUB_IP = os.environ.get("RCSC3_CLUSTER_HUB_IP", "10.250.0.1")
CLUSTER_SLURM_CONF = os.environ.get("RCSC3_CLUSTER_SLURM_CONF", "/run/rcsc3-cluster/etc/slurm.conf")
STATE_DIR = os.environ.get("RCSC3_CLUSTER_HUB_STATE", "/var/lib/rcsc3/hub-cluster")

if not os.path.isfile(CLUSTER_SLURM_CONF):
    raise SystemExit(f"{CLUSTER_SLURM_CONF} does not exist: bring the multi-host lab up first (rcsc3 lab up --hosts)")
with socket.socket() as probe:
    try:
        probe.bind((HUB_IP, 0))
    except OSError as e:
        raise SystemExit(f"{HUB_IP} is not an address of this namespace ({e}): run the hub on the lab's hub host, "
                         "rcsc3 lab on hub -- jupyterhub -f hub_config/cluster/jupyterhub_config.py") from None

# The cluster's Slurm for every Slurm command of the hub: squeue/scontrol read the hub's environment,
# sbatch/scancel get it through sudo (RcSC3Spawner's env_keep and sudo's both keep SLURM_CONF).
os.environ["SLURM_CONF"] = CLUSTER_SLURM_CONF

# Browsers on the machine reach the hub host's address; jobs on gpu1/cpu1 reach the hub API there.
c.JupyterHub.bind_url = f"http://{HUB_IP}:8000"
c.JupyterHub.hub_ip = HUB_IP
c.JupyterHub.hub_connect_ip = HUB_IP
# The server runs on gpu1 or cpu1 and the proxy on hub reaches it at the node's address (the
# spawner takes it from Slurm's NodeAddr); "" makes rcsc3-singleuser listen at that address, and only there.
c.RcSC3Spawner.ip = ""

# Its own state, apart from the one-host demo's /var/lib/rcsc3/hub: database, cookie secret, proxy pid.
os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
os.chmod(STATE_DIR, 0o700)
c.JupyterHub.db_url = f"sqlite:///{STATE_DIR}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = os.path.join(STATE_DIR, "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE_DIR, "jupyterhub-proxy.pid")
