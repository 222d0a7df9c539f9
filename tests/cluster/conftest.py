"""Fixtures of the tests on the multi-host lab: the cluster itself and a real hub on its hub host.

Everything a test starts on the cluster (servers, jobs, desktops, engines) is stopped afterwards,
also when the test fails; a test that breaks a link or hides a program restores it itself.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from cluster_hub import ARTIFACTS, USERS, ClusterHub, stop_servers  # noqa: E402
from cluster_lab import Cluster, require_cluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster(require_cluster())


@pytest.fixture(scope="module")
def cluster_hub(cluster: Cluster):
    """hub_config/cluster/jupyterhub_config.py running on the hub host, on free ports and its own state.

    One per test file, not per session: the hub is gone before tests/lab/test_cluster.py rebuilds and
    takes down the cluster under it (a session fixture would be torn down only at the very end).
    """
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-cluster-hub-"))
    workdir.chmod(0o755)
    hub = ClusterHub(workdir, cluster)
    try:
        hub.start()
        yield hub
    finally:
        if hub.proc is not None:
            stop_servers(hub)
        hub.stop()
        for user in USERS:  # what Slurm still runs for the students after the hub is gone
            cluster.cancel(*cluster.jobs(user))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if hub.log_path.exists():
            shutil.copy(hub.log_path, ARTIFACTS / "hub.log")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def idle_hub(cluster_hub: ClusterHub, cluster: Cluster):
    """The students start with no server and no job on the cluster, and end so."""
    stop_servers(cluster_hub)
    for user in USERS:
        cluster.cancel(*cluster.jobs(user))
    yield cluster_hub
    stop_servers(cluster_hub)
    for user in USERS:
        cluster.cancel(*cluster.jobs(user))
