"""JupyterHub for benchmarks/class_start.py: the multi-host lab's hub with a whole class allowed in.

Everything is the multi-host lab's hub (hub_config/cluster/jupyterhub_config.py, itself the demo's)
except what one benchmark run needs, read from the JSON file named by RCSC3_BENCH_SETTINGS (root
only: it holds the run's tokens), which benchmarks/class_start.py writes:

- its own ports on the hub host and its own state directory, so that it runs beside `make
  demo-cluster`'s hub on 10.250.0.1:8000 and leaves that hub's database alone;
- the class (class01..classNN) among the allowed users, and one spawn profile, so that a POST
  without options (what the admin page's "Start All" sends) asks for a 1-CPU, 1-GiB CPU-only
  server on partition `cpu`, without a desktop prestart;
- a service token with the admin page's rights (start, stop and read the users' servers) and the
  right to open them through the proxy; the proxy's API token, so the benchmark can read its
  routing table instead of asking the hub;
- `spawner`: "rcsc3" (RcSC3Spawner), "fake" (RcSC3Spawner whose job runs
  benchmarks/class_start_parts/fake_server.py instead of Jupyter) or "stock" (batchspawner's
  SlurmSpawner with its own batch script, configured as benchmarks/spawn.py configures it, here for
  partition `cpu`; its squeue goes through the benchmark's counting shim by absolute path, because
  sudo's secure_path would bypass a shim on PATH).
"""

import json
import os
import sys

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)

with open(os.environ["RCSC3_BENCH_SETTINGS"]) as f:
    bench = json.load(f)

# The cluster config reads its state directory from here when it is loaded.
os.environ["RCSC3_CLUSTER_HUB_STATE"] = bench["state_dir"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
load_subconfig(os.path.join(REPO, "hub_config", "cluster", "jupyterhub_config.py"))  # noqa: F821

HUB_IP = os.environ.get("RCSC3_CLUSTER_HUB_IP", "10.250.0.1")
c.JupyterHub.bind_url = f"http://{HUB_IP}:{bench['port']}"
c.JupyterHub.hub_port = bench["hub_port"]
# Where the benchmark (in the machine's namespace) reads the routing table.
c.ConfigurableHTTPProxy.api_url = f"http://{HUB_IP}:{bench['proxy_api_port']}"
c.ConfigurableHTTPProxy.auth_token = bench["proxy_token"]

c.Authenticator.allowed_users = set(c.Authenticator.allowed_users) | set(bench["users"])
SERVICE = "class-start-benchmark"
c.JupyterHub.services.append({"name": SERVICE, "api_token": bench["api_token"]})
c.JupyterHub.load_roles.append({
    "name": SERVICE,
    "description": "benchmarks/class_start.py: what the admin page's Start All needs, and opening the servers",
    "scopes": ["admin:users", "admin:servers", "access:servers"],
    "services": [SERVICE],
})
# Both spawners poll every poll_interval: the benchmark counts squeue calls per interval.
c.Spawner.poll_interval = bench["poll_interval"]

# The lab's CPU-only profile as the cluster config leaves it (with what it adds to every profile),
# narrowed to a class session: the hub's only profile, so a POST without options asks for it.
CPU_PROFILE = next((p for p in c.RcSC3Spawner.profiles if isinstance(p, dict) and p.get("slug") == "cpu"), None)
if CPU_PROFILE is None or CPU_PROFILE.get("partition") != "cpu":
    raise SystemExit("benchmarks/class_start: the lab's hub config has no profile 'cpu' on partition cpu to start a class with")
c.RcSC3Spawner.profiles = [{
    **CPU_PROFILE,
    "slug": "class",
    "display_name": "Class session — CPU only, 1 CPU",
    "description": "JupyterLab on partition cpu, for a whole class at once.",
    "gpus": 0,
    "cpus": 1,
    "memory_gb": 1,
    "walltime": {"default": "0:30", "min": "0:15", "max": "1:00"},
    "prestart_desktop": False,
    "groups": [],
}]

VENV_BIN = os.path.dirname(sys.executable)
if bench["spawner"] == "stock":
    c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
    # batchspawner's own batch script (its default template) with the same request as the profile;
    # absolute venv paths, since sudo's secure_path and Slurm drop the hub's PATH
    c.SlurmSpawner.batchspawner_singleuser_cmd = os.path.join(VENV_BIN, "batchspawner-singleuser")
    c.SlurmSpawner.cmd = [os.path.join(VENV_BIN, "jupyterhub-singleuser")]
    c.SlurmSpawner.req_partition = "cpu"
    c.SlurmSpawner.req_nprocs = "1"
    c.SlurmSpawner.req_memory = "1G"
    c.SlurmSpawner.req_runtime = "0:30:00"
    c.SlurmSpawner.req_options = " ".join(CPU_PROFILE.get("extra_sbatch", []))  # what the lab adds (--no-requeue)
    c.SlurmSpawner.default_url = "/lab"
    # batchspawner hands sbatch only the job's environment (get_env): SLURM_CONF must be in it, or
    # sbatch asks the machine's default slurm.conf's cluster (RcSC3Spawner's env_keep has it too)
    from jupyterhub.spawner import Spawner

    c.SlurmSpawner.env_keep = [*Spawner.env_keep.default(), "SLURM_CONF"]
    # the same limits as RcSC3Spawner's in the demo config
    c.SlurmSpawner.start_timeout = 300
    c.SlurmSpawner.http_timeout = 60
    # batchspawner's query command, with the counting shim by absolute path (it runs through sudo)
    c.SlurmSpawner.batch_query_cmd = bench["squeue_shim"] + " -h -j {job_id} -o '%T %B'"
elif bench["spawner"] == "fake":
    c.RcSC3Spawner.singleuser_launcher = bench["fake_server"]
elif bench["spawner"] != "rcsc3":
    raise SystemExit(f"RCSC3_BENCH_SETTINGS: spawner {bench['spawner']!r}: expected one of rcsc3, fake, stock")

if bench["spawner"] != "stock":
    from rcsc3_spawner.inherited_settings import check_config

    check_config(c)  # as the demo config ends: a malformed profile stops the hub here
