"""GPUs that closed tabs give back: jupyterhub-idle-culler (the real package, the hub configs'
service) stops a server idle longer than its profile's idle_timeout, and its job is cancelled at
once; a kernel that runs, even silently, is activity. A real hub, its proxy, real Slurm jobs.

Timeouts are short here (20 s idle, the culler every 5 s, the server reporting activity every 5 s).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from hubproc import Hub, user_jobs, wait_until
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = pytest.mark.slurm

IDLE = 20
CONFIG = f"""
from rcsc3_spawner.idle_culler import culler_service
c.RcSC3Spawner.profiles = [{{"slug": "short", "display_name": "CPU, culled after {IDLE} s idle", "partition": "cpu",
                            "cpus": 1, "memory_gb": 1, "walltime": {{"default": "0:15"}}, "idle_timeout": {IDLE}}}]
c.JupyterHub.services = [culler_service(c.RcSC3Spawner.profiles, cull_every=5)]
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "5"}}
"""


@pytest.fixture(scope="module")
def culling_hub(slurm_lab):
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-cull-hub-"))
    workdir.chmod(0o755)
    hub = Hub(workdir, extra_config=CONFIG)
    hub.start()
    yield hub
    hub.stop()
    for user in ("student1", "student2"):
        for job in user_jobs(user):
            subprocess.run(["scancel", job], check=False)


def spawn(hub: Hub, user: str):
    client = hub.login(user)
    assert client.start({"profile": "short"}).status_code in (201, 202)
    client.wait_ready(timeout=120)
    [job] = user_jobs(user)
    return client, job


async def run_silently(hub: Hub, client, seconds: int) -> None:
    """Start a kernel on the student's server and run a cell that prints nothing for `seconds`."""
    auth = {"Authorization": f"token {client.token}"}
    base = f"{hub.url}/user/{client.username}"
    kernel = requests.post(f"{base}/api/kernels", headers=auth, json={}, timeout=60).json()["id"]
    ws = await websocket_connect(HTTPRequest(f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels", headers=auth))
    msg = {"header": {"msg_id": uuid.uuid4().hex, "username": client.username, "session": uuid.uuid4().hex,
                      "msg_type": "execute_request", "version": "5.3"},
           "parent_header": {}, "metadata": {}, "channel": "shell",
           "content": {"code": f"import time; time.sleep({seconds})", "silent": False, "store_history": False,
                       "user_expressions": {}, "allow_stdin": False}}
    await ws.write_message(json.dumps(msg))
    while True:  # until the kernel says it is busy with our cell
        reply = json.loads(await ws.read_message())
        if reply.get("msg_type") == "status" and reply["content"].get("execution_state") == "busy":
            break
    ws.close()


def test_an_idle_server_is_culled_and_its_job_cancelled(culling_hub):
    client, job = spawn(culling_hub, "student1")
    wait_until(lambda: client.server_model() is None, IDLE + 60, "the idle culler to stop the server")
    wait_until(lambda: job not in user_jobs("student1"), 15, "the job to be cancelled")
    home = client.session.get(f"{culling_hub.url}/hub/home", timeout=20).text
    assert "was stopped to give its resources back" in home and "without activity" in home


async def test_a_running_cell_keeps_the_server(culling_hub):
    client, job = spawn(culling_hub, "student2")
    await run_silently(culling_hub, client, 3 * IDLE)
    # three idle timeouts of a silent cell: still there
    end = time.monotonic() + 3 * IDLE - 5
    while time.monotonic() < end:
        model = client.server_model()
        assert model is not None and model["ready"], "culled while its kernel ran"
        assert job in user_jobs("student2")
        time.sleep(2)  # paces the observation window; nothing is awaited here
    # the cell is done: now it is idle, and it goes
    wait_until(lambda: client.server_model() is None, 2 * IDLE + 60, "the idle culler to stop the server")
