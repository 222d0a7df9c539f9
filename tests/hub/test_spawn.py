"""Spawning through a real JupyterHub, its real proxy and the real Slurm lab."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from hubproc import user_jobs, wait_until

pytestmark = pytest.mark.slurm


def job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def server_pid(job: str) -> int:
    """The Jupyter server process of a job (the batch step's process, run as the student)."""
    out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True)
    pids = [int(line.split()[0]) for line in out.stdout.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"jupyterhub-singleuser" in cmd:
            return pid
    raise AssertionError(f"no server process in job {job}: {pids}")


def form_defaults(page: str, profile: str) -> dict:
    """What the form's script fills in when `profile` is picked (the browser's view of the defaults)."""
    bounds = json.loads(re.search(r"var bounds = (\{.*?\});\n", page).group(1))[profile]
    return {f: str(bounds[f]["default"]) for f in ("gpus", "cpus", "memory", "walltime")} | {"profile": profile}


def test_form_renders_gpu_profile_and_live_limits(hub, stopped):
    # the teacher never spawned on this hub: the form shows the site's defaults
    c = hub.login("teacher")
    r = c.session.get(f"{c.base}/hub/spawn", timeout=20)
    assert r.status_code == 200
    page = r.text
    assert 'name="profile" value="gpu-desktop" checked' in page
    assert re.search(r"<strong>[^<]*GPU[^<]*</strong>", page)
    for field in ("gpus", "cpus", "memory", "walltime"):
        assert f'name="{field}"' in page
    # bounds come from Slurm: the lab's interactive partition has MaxTime 6:00 and 2 GPUs
    assert "0:15 to 6:00" in page and 'max="2"' in page


def test_form_defaults_spawn_and_round_trip_through_proxy(stopped, hub):
    c = stopped["student1"]
    r = c.session.get(f"{c.base}/hub/spawn", timeout=20)
    form = form_defaults(r.text, "gpu-desktop")  # the student clicks the GPU profile and Start
    form["_xsrf"] = c.session.cookies.get("_xsrf", path="/hub/") or c.session.cookies.get("_xsrf")
    log_offset = len(hub.log_text())
    r = c.session.post(f"{c.base}/hub/spawn", data=form, allow_redirects=False, timeout=60)
    assert r.status_code == 302, r.text[:500]
    model = c.wait_ready(timeout=120)
    # the spawn outlasted slow_spawn_timeout (0.3 s), as every Slurm spawn does: no warning for it
    assert "is slow to start" not in hub.log_text()[log_offset:]
    assert model["user_options"] == {"profile": "gpu-desktop", "gpus": 1, "cpus": 2, "memory": 4, "walltime": "2:00"}
    [job] = user_jobs("student1")
    fmt = subprocess.run(["squeue", "-h", "-j", job, "-o", "%P|%b|%C|%l"], capture_output=True, text=True).stdout.strip()
    assert fmt.startswith("interactive|") and "gpu:1" in fmt and fmt.endswith("|2:00:00")
    # the example notebooks were copied into the student's home, owned by the student
    copied = Path("/home/student1/rcsc3-notebooks/parallel-mandelbrot.ipynb")
    assert copied.exists() and copied.owner() == "student1"
    # the server answers through the proxy, with the student's token
    r = requests.get(f"{c.base}/user/student1/api/status", headers={"Authorization": f"token {c.token}"}, timeout=20)
    assert r.status_code == 200 and "started" in r.json()
    # the job ran rcsc3's launcher, which reported the port before starting the server
    log = Path(f"/home/student1/.rcsc3/logs/jupyter-{job}.log").read_text()
    assert re.search(r"rcsc3-singleuser: port \d+ reported to the hub", log), log[-2000:]
    t0 = time.monotonic()
    assert c.stop().status_code == 204
    stop_seconds = time.monotonic() - t0
    assert job_state(job) in ("", "CANCELLED", "COMPLETED"), job_state(job)
    assert stop_seconds < 10
    assert requests.get(f"{c.base}/user/student1/api/status", headers={"Authorization": f"token {c.token}"},
                        allow_redirects=False, timeout=20).status_code != 200


BAD_OPTIONS = [
    ({"partition": "interactive\nid"}, "partition"),
    ({"gpus": "1\n#SBATCH --gres=gpu:2"}, "gpus"),
    ({"cpus": "2; touch /tmp/rcsc3-pwned"}, "cpus"),
    ({"memory": "$(touch /tmp/rcsc3-pwned)"}, "memory"),
    ({"walltime": "`touch /tmp/rcsc3-pwned`"}, "walltime"),
    ({"walltime": "1:00\n#SBATCH --time=UNLIMITED"}, "walltime"),
    ({"walltime": ""}, "walltime"),
    ({"options": "--gres=gpu:2 --time=6:00:00"}, "options"),
    ({"runtime": "6:00:00"}, "runtime"),
    ({"nprocs": "4"}, "nprocs"),
    ({"prologue": "touch /tmp/rcsc3-pwned"}, "prologue"),
    ({"exec_prefix": "touch /tmp/rcsc3-pwned;"}, "exec_prefix"),
    ({"gpus": 2, "walltime": "7:00"}, "walltime"),
    ({"profile": "cpu", "gpus": 1}, "gpus"),
]


@pytest.mark.parametrize("options, field", BAD_OPTIONS, ids=[f for _, f in BAD_OPTIONS])
def test_api_rejects_bad_options_with_400_and_no_job(stopped, options, field):
    c = stopped["student2"]
    r = c.start(options)
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert ("allowed" in message or "required" in message or "expected" in message), message
    assert user_jobs("student2") == []
    assert not Path("/tmp/rcsc3-pwned").exists()


def test_form_rejects_bad_value_and_shows_the_form_again(stopped):
    c = stopped["student2"]
    c.session.get(f"{c.base}/hub/spawn", timeout=20)
    xsrf = c.session.cookies.get("_xsrf", path="/hub/") or c.session.cookies.get("_xsrf")
    data = {"profile": "gpu-desktop", "gpus": "1", "cpus": "2", "memory": "4", "walltime": "", "_xsrf": xsrf}
    r = c.session.post(f"{c.base}/hub/spawn", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 400
    assert "walltime: is required" in r.text and 'name="profile"' in r.text
    data.update(walltime="1:00", gpus="1\n#SBATCH --gres=gpu:2")
    r = c.session.post(f"{c.base}/hub/spawn", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "gpus:" in r.text
    data.update(gpus="1", partition="cpu\nid")
    r = c.session.post(f"{c.base}/hub/spawn", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "unknown option" in r.text
    assert user_jobs("student2") == []


def test_slurm_refusing_the_job_shows_its_reason_to_the_student(stopped):
    # An inactive partition makes sbatch itself fail, at once.
    subprocess.run(["scontrol", "update", "PartitionName=cpu", "State=INACTIVE"], check=True)
    try:
        c = stopped["student2"]
        c.session.get(f"{c.base}/hub/spawn", timeout=20)
        xsrf = c.session.cookies.get("_xsrf", path="/hub/") or c.session.cookies.get("_xsrf")
        r = c.session.post(f"{c.base}/hub/spawn", data={"profile": "cpu", "_xsrf": xsrf}, allow_redirects=False,
                           timeout=30)
        if r.status_code == 302:  # the refusal came after the hub's slow_spawn_timeout: the spawn page shows it
            assert "/hub/spawn-pending/student2" in r.headers["Location"], r.headers
            final = c.progress(timeout=60)[-1]
            assert final.get("failed"), final
            shown = final["message"]
        else:  # within it: the form again, with the error above it
            assert r.status_code >= 400 and 'name="profile"' in r.text, (r.status_code, r.text[:500])
            shown = r.text
        assert "Slurm refused the job" in shown and "partition not available" in shown, shown[:2000]
        assert user_jobs("student2") == []
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=cpu", "State=UP"], check=True)


def test_port_report_accepts_only_a_port(stopped, hub):
    c = stopped["student3"]
    assert c.start({"profile": "cpu", "cpus": 1}).status_code in (201, 202)
    c.wait_ready()
    [job] = user_jobs("student3")
    env = dict(item.split("=", 1) for item in Path(f"/proc/{server_pid(job)}/environ").read_text().split("\0") if "=" in item)
    server_token = env["JUPYTERHUB_API_TOKEN"]
    api = f"{hub.url}/hub/api/batchspawner"
    headers = {"Authorization": f"token {server_token}"}
    bodies = ({"exec_prefix": "touch /tmp/rcsc3-pwned;"}, {"port": 1, "batch_submit_cmd": "id"}, {"port": "1; id"}, {"port": 0})
    for body in bodies:
        r = requests.post(api, json=body, headers=headers, timeout=10)
        assert r.status_code == 400, (body, r.status_code)
    # a student's own (non-server) token cannot report at all
    assert requests.post(api, json={"port": 1}, headers={"Authorization": f"token {c.token}"}, timeout=10).status_code == 403
    # the server token never shows in the hub's log
    assert server_token not in hub.log_text()
    assert "JUPYTERHUB_API_TOKEN" not in hub.log_text() or "JUPYTERHUB_API_TOKEN=[redacted]" in hub.log_text()


def test_pending_timeout_tells_the_reason_and_cancels(stopped, hub):
    # Take every GPU of the lab node, so the student's GPU job cannot start.
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-p", "interactive", "--gres=gpu:2", "-n1", "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    try:
        wait_until(lambda: job_state(blocker) == "RUNNING", 30, "the blocking job to run")
        c = stopped["student1"]
        r = c.start({"gpus": 1})
        hub_log_offset = len(hub.log_text())
        if r.status_code == 202:  # still pending after the hub's slow_spawn_timeout: read the spawn page's events
            events = c.progress(timeout=60)
            final = events[-1]
            assert final.get("failed"), final
            message = final["message"]
        else:  # failed within slow_spawn_timeout: the API answers with the same message
            message = r.json()["message"]
            assert r.status_code == 500
        assert "Resources" in message and "job cancelled" in message, message
        assert "pending: Resources" in hub.log_text()[hub_log_offset - 2000:]
        assert user_jobs("student1") == []
    finally:
        subprocess.run(["scancel", blocker], check=False)


def test_scancel_is_noticed_within_one_poll(stopped, hub):
    c = stopped["student1"]
    c.start({"profile": "cpu", "cpus": 1})
    c.wait_ready()
    [job] = user_jobs("student1")
    t0 = time.monotonic()
    subprocess.run(["scancel", job], check=True)
    wait_until(lambda: c.server_model() is None, 3 + 3 + 2, "the hub to notice the cancelled job")
    assert time.monotonic() - t0 < 8


def test_job_dying_at_start_fails_fast_with_log_tail(stopped, hub):
    home = Path("/home/student3")
    cfg_dir = home / ".jupyter"
    cfg_dir.mkdir(exist_ok=True)
    cfg = cfg_dir / "jupyter_server_config.py"
    # A student's own broken config is the classic "server dies at start".
    cfg.write_text("c.ServerApp.root_dir = '/nonexistent/rcsc3-test-broken-root-dir'\n")
    subprocess.run(["chown", "-R", "student3:student3", str(cfg_dir)], check=True)
    try:
        c = stopped["student3"]
        t0 = time.monotonic()
        c.start({"profile": "cpu", "cpus": 1})
        events = c.progress(timeout=120)
        elapsed = time.monotonic() - t0
        final = events[-1]
        assert final.get("failed"), final
        assert "before its Jupyter server answered" in final["message"]
        assert "rcsc3-test-broken-root-dir" in final.get("html_message", ""), final
        assert elapsed < 30, elapsed
    finally:
        cfg.unlink()


def test_named_servers(stopped):
    c = stopped["student2"]
    assert c.start({"profile": "cpu", "cpus": 1}, name="second").status_code in (201, 202)
    c.wait_ready("second")
    jobs = user_jobs("student2")
    assert len(jobs) == 1
    name = subprocess.run(["squeue", "-h", "-j", jobs[0], "-o", "%j"], capture_output=True, text=True).stdout.strip()
    assert name == "rcsc3-student2-second"
    assert c.stop("second").status_code == 204
    assert user_jobs("student2") == []


def test_one_squeue_per_round_for_all_users(stopped, hub):
    for user in ("student1", "student2", "student3"):
        stopped[user].start({"profile": "cpu", "cpus": 1})
    for user in ("student1", "student2", "student3"):
        stopped[user].wait_ready()
    hub.squeue_log.write_text("")
    t0 = time.time()
    wait_until(lambda: time.time() - t0 >= 12.5, 15, "12 s of steady state", interval=0.5)
    calls = [line for line in hub.squeue_log.read_text().splitlines() if line.strip()]
    # interval 3 s with +-10% jitter: at most 5 rounds in 12.5 s, each one squeue for all three jobs
    assert 2 <= len(calls) <= 5, calls
    assert all(len(line.split("-j ")[1].split()[0].split(",")) == 3 for line in calls), calls


def test_hub_restart_keeps_the_same_job(stopped, hub):
    c = stopped["student1"]
    c.start({"profile": "cpu", "cpus": 1})
    c.wait_ready()
    [job] = user_jobs("student1")
    hub.restart()
    c2 = hub.login("student1")
    assert c2.server_model()["ready"]
    assert user_jobs("student1") == [job]
    r = requests.get(f"{hub.url}/user/student1/api/status", headers={"Authorization": f"token {c2.token}"}, timeout=20)
    assert r.status_code == 200
    stopped["student1"].token = c2.token
    stopped["student1"].session = c2.session
