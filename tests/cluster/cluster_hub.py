"""A real JupyterHub on the multi-host lab's hub host: hub_config/cluster/jupyterhub_config.py on its own ports.

What `make demo-cluster` runs (`rcsc3 lab on hub -- jupyterhub -f hub_config/cluster/...`), with a
state directory of its own and free ports of the hub host, so it runs beside a demo hub on
10.250.0.1:8000. The proxy's API stays on the hub host's loopback. A service token with the
`proxy` scope lets the tests read the proxy's routing table through the hub's REST API (where
the proxy sends each student: the node's address and the server's port).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # hubproc, hubclient, polling
from cluster_lab import RCSC3, Cluster, on  # noqa: E402
from hubproc import REPO, VENV_BIN, Hub, stop_all_servers  # noqa: E402

CLUSTER_CONFIG = REPO / "hub_config" / "cluster" / "jupyterhub_config.py"
SERVICE = "rcsc3-cluster-tests"
ARTIFACTS = REPO / "artifacts" / "cluster"
#: the demo students the cluster tests use (their homes are shared by every host)
USERS = ("student1", "student2", "student3")

FREE_PORTS = """
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[2]))]
for s in socks:
    s.bind((sys.argv[1], 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
"""


def free_ports_on(host: str, address: str, count: int) -> list[int]:
    """Ports free on a host of the cluster (bound there at once, then released)."""
    res = on(host, sys.executable, "-c", FREE_PORTS, address, str(count))
    assert res.returncode == 0, res.stderr
    return [int(p) for p in res.stdout.split()]


class ClusterHub(Hub):
    """The demo hub of the multi-host lab, started on the hub host (`rcsc3 lab on hub`)."""

    def __init__(self, workdir: Path, cluster: Cluster, extra_config: str = ""):  # noqa: D107 (Hub's attributes)
        self.workdir = workdir
        self.cluster = cluster
        self.address = cluster.address("hub")
        self.port, self.hub_port, self.api_port = free_ports_on("hub", self.address, 3)
        self.url = f"http://{self.address}:{self.port}"
        self.hub_api = f"http://{self.address}:{self.hub_port}/hub/api"
        self.log_path = workdir / "hub.log"
        self.state_dir = workdir / "state"
        self.proc: subprocess.Popen | None = None
        self.service_token = secrets.token_hex(24)
        self.config = workdir / "jupyterhub_config.py"
        self.config.write_text(
            f"load_subconfig({str(CLUSTER_CONFIG)!r})\n"
            f"c.JupyterHub.bind_url = 'http://{self.address}:{self.port}'\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            # the proxy's API on the hub host's own loopback, as the deploy guide asks
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            "c.RcSC3Spawner.stop_timeout = 5\n"
            # a spawn may wait for a GPU through a minute's outage (test_cluster_faults.py)
            "c.RcSC3Spawner.pending_timeout = 180\n"
            "c.Spawner.poll_interval = 3\n"
            # the hub's one squeue every 5 s while nothing starts or stops (production: 30 s)
            "c.RcSC3Spawner.slurm_poll_interval = 5.0\n"
            f"c.JupyterHub.services.append({{'name': {SERVICE!r}, 'api_token': {self.service_token!r}}})\n"
            f"c.JupyterHub.load_roles.append({{'name': {SERVICE!r}, 'services': [{SERVICE!r}],"
            " 'scopes': ['proxy', 'list:users', 'read:users', 'read:servers']})\n"
            + extra_config
        )

    def start(self) -> None:
        env = dict(os.environ, PATH=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                   RCSC3_CLUSTER_HUB_STATE=str(self.state_dir), RCSC3_CLUSTER_SLURM_CONF=self.cluster.conf)
        env.pop("SLURM_CONF", None)  # the cluster config sets it from RCSC3_CLUSTER_SLURM_CONF
        # `rcsc3 lab on` execs its way down to jupyterhub: this pid is the hub's own
        self._launch([RCSC3, "lab", "on", "hub", "--", str(VENV_BIN / "jupyterhub"), "-f", str(self.config)], env)
        self._wait_up(90, "the cluster hub")

    def service_api(self, path: str, timeout: float = 10) -> requests.Response:
        """The hub's REST API with the tests' service token (proxy and user-reading scopes)."""
        return requests.get(f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.service_token}"},
                            timeout=timeout)

    def route_target(self, user: str, name: str = "") -> str:
        """Where the proxy sends the user's server ("http://<node address>:<port>"), "" when it has no route."""
        r = self.service_api("/proxy")
        r.raise_for_status()
        route = r.json().get(f"/user/{user}/{name + '/' if name else ''}")
        return (route or {}).get("target", "")

    def access_log(self, needle: str) -> list[str]:
        """The hub's request log lines containing `needle` ("200 POST /hub/api/batchspawner (student1@10.250.0.11) ...")."""
        return [line for line in self.log_text().splitlines() if needle in line]

    def dump(self) -> str:
        return json.dumps({"url": self.url, "hub_api": self.hub_api, "log": str(self.log_path)})


def stop_servers(hub: Hub, users=USERS) -> None:
    """Stop the users' servers through the hub's API and wait (bounded) until the hub lists none."""
    stop_all_servers(hub, users, "cluster")
