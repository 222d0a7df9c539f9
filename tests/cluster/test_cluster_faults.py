"""Faults only a cluster has, on the multi-host lab with a real hub on its hub host.

1. gpu1 fails while a student's server runs there, twice: it drops off the network (its cable
   pulled at the switch), and its slurmd dies (SIGKILL; the node and the job's processes go on).
   Slurm takes the node for DOWN after its SlurmdTimeout, the job ends NODE_FAIL, and the
   student sees it within one hub poll: the hub's API shows the server stopped and /hub/home says
   "Your last session ended because its node failed". Everyone else's hub keeps answering in
   under a second meanwhile, and a classmate's server on cpu1 keeps working. When gpu1 is back
   (link up / slurmd started again by `rcsc3 lab up --hosts`), Slurm ends the job's leftovers
   there: no job, no process of the student on gpu1.
2. The hub host is cut off from the nodes for 60 s: servers on both nodes are kept (same jobs,
   answering again afterwards), and a spawn that waits for a GPU meanwhile still starts.
   SlurmdTimeout is raised to 300 s (Slurm's default) for it, since slurmctld lives on the hub
   host here: with the lab's short one Slurm itself would end every job behind the outage.
3. A job lands on a node without a VNC server (Xvnc hidden on cpu1 only): the student's desktop
   page says why, in real Chromium, instead of showing an empty canvas.

Every fault is undone in a `finally` (link up, slurmd back, the node in service, Xvnc back,
SlurmdTimeout back) and every wait is
bounded. Real parts: the lab's Slurm, JupyterHub + configurable-http-proxy on the hub host,
Xvnc + xfce on gpu1, Chromium; the GPUs are device files (rcsc3_lab/cluster.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cluster_lab import (
    IN_SERVICE,
    back_in_service,
    hidden_on_node,
    link_down,
    on,
    orphans_ended,
    processes,
    require_tool,
    slurmd_dead,
    slurmd_timeout,
    wait_clean,
    wait_until,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_browser import CANVAS_COLOURS, UserBrowser  # noqa: E402
from e2e_journey import Steps  # noqa: E402

pytestmark = pytest.mark.slurm

GPU_SERVER = {"profile": "gpu-desktop", "gpus": 1, "cpus": 1, "memory": 1, "walltime": "0:15"}
CPU_SERVER = {"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}
NODE_FAILED = "Your last session ended because its node failed"
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


def start(client, options: dict) -> None:
    r = client.start(options)
    assert r.status_code in (201, 202), (r.status_code, r.text)


def only_job(cluster, user: str) -> str:
    jobs = cluster.jobs(user)
    assert len(jobs) == 1, (user, jobs)
    return jobs[0]


def answers(hub, client) -> int:
    """The HTTP status of the student's own server through the hub's proxy (0: no answer)."""
    try:
        return requests.get(f"{hub.url}/user/{client.username}/api/status",
                            headers={"Authorization": f"token {client.token}"}, timeout=10).status_code
    except requests.RequestException:
        return 0


def slurmd_timeout_seconds(cluster) -> int:
    return int(cluster.config_value("SlurmdTimeout").split()[0])


@contextlib.contextmanager
def gpu1_fails(cluster, how: str, job: str) -> Iterator[float]:
    """gpu1 fails while it runs the server's `job`: its cable pulled at the switch, or its slurmd killed.

    Either way Slurm hears nothing from the node, takes it for DOWN and ends its jobs NODE_FAIL.
    Undone at the end whatever happened: the link up or slurmd started again, the node in service,
    and the job's orphaned processes there ended by Slurm.
    """
    try:
        if how == "link down":
            try:
                with link_down(cluster, "gpu1") as t0:
                    yield t0
            finally:
                back_in_service(cluster, "gpu1")
        else:
            with slurmd_dead(cluster, "gpu1") as t0:
                yield t0
    finally:
        took = orphans_ended(cluster, "gpu1", job)
        print(f"slurmctld forgot job {job} {took:.0f} s after gpu1 was back; gpu1's slurmd registered again")


@pytest.mark.parametrize("how", ["link down", "slurmd dies"])
def test_a_failed_node_ends_the_server_and_the_student_is_told(cluster, idle_hub, how):
    hub = idle_hub
    student, classmate = hub.login("student1"), hub.login("student3")
    start(student, GPU_SERVER)
    start(classmate, CPU_SERVER)
    student.wait_ready(timeout=120)
    classmate.wait_ready(timeout=120)
    job, other_job = only_job(cluster, "student1"), only_job(cluster, "student3")
    assert cluster.job(job, "%B") == "gpu1" and cluster.job(other_job, "%B") == "cpu1"
    # Slurm must never restart a server's job on its own (a restarted server would hold a stale
    # token and port): the job is not requeueable.
    assert "Requeue=0" in cluster.job_details(job), (
        "the server's job would be requeued after a node failure (Requeue=1): it must be submitted with --no-requeue")
    pidns = cluster.pidns("gpu1")
    assert processes("student1", pidns=pidns), "the student's server runs on gpu1"

    timeout = slurmd_timeout_seconds(cluster)
    # Slurm's own node timeout: DOWN once the node has been silent for SlurmdTimeout, as seen at one
    # of slurmctld's pings (every SlurmdTimeout/3; 49 s for the lab's 30 s when measured), then at most
    # one round of the hub's squeue (slurm_poll_interval 5 s in ClusterHub), and 10 s to spare
    bound = 2 * timeout + 5 + 10
    latencies: list[float] = []
    with gpu1_fails(cluster, how, job) as t0:
        def stopped() -> bool:
            t = time.monotonic()
            model = classmate.user_model()  # another student's hub meanwhile
            latencies.append(time.monotonic() - t)
            assert model["servers"][""]["ready"], f"the classmate's server on cpu1 was dropped: {model['servers']}"
            return student.server_model() is None

        wait_until(stopped, bound, "the hub to show the server on the failed node stopped", 0.5)
        took = time.monotonic() - t0
        state = cluster.job(job, "%T %r")
        home = student.session.get(f"{hub.url}/hub/home", timeout=10)
        assert answers(hub, classmate) == 200  # the classmate's server still works, through the same proxy
        # the node itself did not stop: what the job started there runs on, orphaned, until the node's
        # slurmd is back (a crashed slurmd does not take its jobs' processes with it)
        orphans = len(processes("student1", pidns=pidns))
        assert orphans, "the student's processes on gpu1 ended with slurmd: the lab's node went down with it"
    print(f"gpu1 failed ({how}): the hub showed the server stopped after {took:.0f} s (SlurmdTimeout {timeout} s, "
          f"bound {bound:.0f} s); job {job}: {state}; {orphans} processes of the student left on gpu1 meanwhile; "
          f"the classmate's API calls took at most {max(latencies):.3f} s ({len(latencies)} calls)")
    assert state.startswith("NODE_FAIL"), state
    assert home.status_code == 200 and NODE_FAILED in home.text, re.sub(r"\s+", " ", home.text)[:2000]
    assert max(latencies) < 1.0, latencies

    # gpu1 is back in service and its slurmd registered again (gpu1_fails): Slurm ends the orphaned
    # job's processes there
    t_back = time.monotonic()
    wait_clean(cluster, "student1", timeout=60)
    print(f"nothing of the student left on gpu1 {time.monotonic() - t_back:.1f} s after its slurmd registered again")
    assert classmate.server_model()["ready"] and answers(hub, classmate) == 200
    assert cluster.node_state("gpu1") in IN_SERVICE


#: polls the hub's REST API from the hub host itself (the machine cannot reach it while it is cut off)
HUB_WATCH = textwrap.dedent("""\
    import json, sys, time, urllib.request
    api, token, users, seconds = sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4])
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        row = {}
        for user in users:
            req = urllib.request.Request(f"{api}/users/{user}", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                server = json.load(r)["servers"].get("") or {}
            row[user] = "ready" if server.get("ready") else ("pending" if server.get("pending") else "none")
        seen.append(row)
        time.sleep(5)  # paces the observation window; nothing is awaited
    print(json.dumps(seen))
""")


def test_hub_host_cut_off_for_a_minute_keeps_servers_and_spawns(cluster, idle_hub):
    hub = idle_hub
    gpu_student, cpu_student, waiting = hub.login("student1"), hub.login("student2"), hub.login("student3")
    start(gpu_student, GPU_SERVER)
    start(cpu_student, CPU_SERVER)
    gpu_student.wait_ready(timeout=120)
    cpu_student.wait_ready(timeout=120)
    jobs = {"student1": only_job(cluster, "student1"), "student2": only_job(cluster, "student2")}
    assert [cluster.job(j, "%B") for j in jobs.values()] == ["gpu1", "cpu1"]
    # gpu1's other GPU is taken: student3's GPU spawn waits in the queue through the outage
    hog = cluster.as_user("student3", "sbatch", "--parsable", "-p", "interactive", "--gres=gpu:1", "-t", "10", "-o",
                          "/dev/null", "--wrap", "exec sleep 600")
    assert hog.returncode == 0, hog.stderr
    hog_job = hog.stdout.strip()
    try:
        wait_until(lambda: cluster.job(hog_job) == "RUNNING", 60, "the job holding gpu1's second GPU to run")
        start(waiting, GPU_SERVER)
        wait_until(lambda: (waiting.server_model() or {}).get("pending") == "spawn" and
                   any(cluster.job(j) == "PENDING" for j in cluster.jobs("student3")), 60, "student3's spawn to wait")
        with slurmd_timeout(cluster, 300), link_down(cluster, "hub") as t0:
            watch = on("hub", sys.executable, "-c", HUB_WATCH, f"http://{hub.address}:{hub.hub_port}/hub/api",
                       hub.service_token, "student1,student2,student3", "60", timeout=120)
            cut = time.monotonic() - t0
            assert watch.returncode == 0, watch.stderr
        seen = json.loads(watch.stdout.strip().splitlines()[-1])
        print(f"hub cut off for {cut:.0f} s; what its API showed every 5 s: {seen}")
        assert cut >= 60 and len(seen) >= 10
        assert all(row == {"student1": "ready", "student2": "ready", "student3": "pending"} for row in seen), seen
    finally:
        cluster.cancel(hog_job)
    # the same jobs run, the servers answer through the proxy again, and the waiting spawn starts
    assert {u: only_job(cluster, u) for u in jobs} == jobs
    assert all(cluster.job(j) == "RUNNING" for j in jobs.values())
    for client in (gpu_student, cpu_student):
        wait_until(lambda c=client: answers(hub, c) == 200, 30, f"{client.username}'s server to answer again")
    waiting.wait_ready(timeout=120)
    assert answers(hub, waiting) == 200
    assert gpu_student.server_model()["ready"] and cpu_student.server_model()["ready"]


#: what a job's desktop looks for: an executable Xvnc on PATH (rcsc3_proxy/desktop/vnc.py, TurboVNC aside)
HAS_XVNC = 'x=$(command -v Xvnc) && [ -x "$(readlink -f "$x")" ] && echo yes || echo no'


def has_xvnc(node: str, user: str) -> str:
    res = on("hub", "srun", "-p", "cpu", "-w", node, "-t", "1", "sh", "-c", HAS_XVNC, user=user, timeout=90)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.browser
async def test_a_node_without_a_vnc_server_says_so_on_the_desktop_page(cluster, idle_hub):
    for tool in ("chromium", "Xvnc"):
        require_tool(tool)
    hub, user = idle_hub, "student2"
    with hidden_on_node(cluster, "cpu1", "/usr/bin/Xtigervnc"):
        # the fault is cpu1's alone: a job there finds no Xvnc, one on gpu1 does (and the machine keeps it)
        where = {node: has_xvnc(node, user) for node in ("cpu1", "gpu1")}
        assert where == {"cpu1": "no", "gpu1": "yes"}, where
        client = hub.login(user)
        start(client, CPU_SERVER)
        client.wait_ready(timeout=120)
        assert cluster.job(only_job(cluster, user), "%B") == "cpu1"
        steps = Steps(hub.url, user)
        async with UserBrowser() as browser:
            page = await browser.new_page()
            await page.viewport()
            await steps.login(page, next_path=f"/user/{user}/")
            await page.goto(f"{hub.url}/user/{user}/desktop/")
            await page.wait_for("window.rcsc3Desktop && window.rcsc3Desktop.phase === 'failed' && 'failed'", 60)
            error = await page.text("#error-text")
            status = await page.text("#status")
            shown = await page.evaluate("!document.getElementById('error').hidden")
            colours = await page.evaluate(f"document.querySelector('#screen canvas') ? ({CANVAS_COLOURS}) : 0")
        print(f"desktop page on cpu1 without Xvnc: status {status!r}; error {error!r}")
        assert shown and "no VNC server found" in error, error
        assert status.startswith("Error:") and "no VNC server found" in status, status
        assert colours < 10, colours  # no desktop picture behind the message
    assert has_xvnc("cpu1", user) == "yes"
    client.stop()
    client.wait_stopped(timeout=60)
    wait_clean(cluster, user)
