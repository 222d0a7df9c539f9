"""Issue #15 §1: another student on the node must not take over a student's server route by its port.

The attacker (student2, a real unix user on the lab node) runs tests/security/squatter.py, which
binds a port the moment it is told it (and then answers every request). The test learns each
port the fastest way it can (as root: the victim's job log, polled every few milliseconds) and
hands it over at once.

Failed on 92eed46: rcsc3-singleuser reported a free port, then started the server, which bound it
0.7-3 s later; the squatter took the port in that window every time, and the hub (which took any
HTTP answer as "up") routed the victim to it.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import as_student, wait_until
from hubproc import Hub, user_jobs

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
SQUATTER = HERE / "squatter.py"
VICTIM, ATTACKER = "student1", "student2"
SPAWNS = 10
PORT_LINE = re.compile(rb"rcsc3-singleuser: port (\d+) reported")


class Squatter:
    """student2's squatter process and what it printed."""

    def __init__(self) -> None:
        self.proc = as_student(ATTACKER, ["/usr/bin/python3", "-u", str(SQUATTER)])
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"squatter printed no {prefix!r} in {timeout}s: {self.seen}")

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def requests(self) -> list[str]:
        return [line for line in self.drain() if line.startswith("REQUEST")]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def squatter(root, slurm_lab):
    s = Squatter()
    yield s
    s.stop()


def _job_log(job: str) -> Path:
    return Path(f"/home/{VICTIM}/.rcsc3/logs/jupyter-{job}.log")


def _reported_port(timeout: float = 60) -> int:
    """The port the victim's job reports, as soon as its log says it (polled every 2 ms, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in user_jobs(VICTIM):
            try:
                m = PORT_LINE.search(_job_log(job).read_bytes())
            except OSError:
                continue
            if m:
                return int(m.group(1))
        time.sleep(0.002)  # bounded poll of a file another process writes
    raise AssertionError(f"no port report in {VICTIM}'s job log within {timeout}s")


@pytest.fixture(scope="module")
def hub(root, slurm_lab):
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-squat-hub-"))
    workdir.chmod(0o755)
    h = Hub(workdir)
    h.start()
    yield h
    h.stop()
    for job in user_jobs(VICTIM):
        subprocess.run(["scancel", job], check=False)


def test_ten_spawns_in_a_row_all_reach_the_victims_own_server(hub, squatter):
    client = hub.login(VICTIM)
    for attempt in range(1, SPAWNS + 1):
        r = client.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"})
        assert r.status_code in (201, 202), r.text
        port = _reported_port()
        squatter.send(f"take {port} 2")  # the attacker binds it the moment it is known, and keeps trying
        client.wait_ready(timeout=120)
        verdict = squatter.wait_for("", timeout=15)  # "TOOK <port>" or, after 2 s of trying, "BLOCKED <port>"
        assert verdict == f"BLOCKED {port}", f"spawn {attempt}: the squatter got port {port}: {squatter.drain()}"
        # the victim's own requests, through the hub's proxy, are answered by their Jupyter server
        for _ in range(8):
            answer = requests.get(f"{hub.url}/user/{VICTIM}/api/status", timeout=20,
                                  headers={"Authorization": f"token {client.token}"})
            assert answer.status_code == 200 and "squatter" not in answer.json(), answer.text
            assert "last_activity" in answer.json()
        assert client.stop().status_code in (202, 204)
        client.wait_stopped(timeout=60)
        wait_until(lambda: not user_jobs(VICTIM), 30, f"{VICTIM}'s job to leave the queue")
    assert squatter.requests() == []


def test_a_squatter_that_answers_anyway_fails_the_spawn_with_a_clear_message(root, slurm_lab, squatter):
    """The hub checks who answers: a job whose reported port is held by another user's process
    (forced here with a launcher that reports the squatter's port) fails the spawn, and the
    student's traffic never reaches the squatter; only the hub's identity challenge does."""
    squatter.send("hold")
    port = int(squatter.wait_for("HOLD").split()[1])
    scratch = Path(tempfile.mkdtemp(prefix="rcsc3-squat-launcher-"))  # readable by the victim's job
    scratch.chmod(0o755)
    launcher = scratch / "report-the-squatted-port"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import os, time\n"
        "from rcsc3_proxy.singleuser import report_port\n"
        "report_port(int(os.environ['RCSC3_TEST_PORT']), os.environ['JUPYTERHUB_API_URL'],"
        " os.environ['JUPYTERHUB_API_TOKEN'])\n"
        "time.sleep(300)\n"
    )
    launcher.chmod(0o755)
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-squat-hub2-"))
    workdir.chmod(0o755)
    hub = Hub(workdir, extra_config=(f"c.RcSC3Spawner.singleuser_launcher = {str(launcher)!r}\n"
                                     f"c.RcSC3Spawner.environment = {{'RCSC3_TEST_PORT': '{port}'}}\n"))
    hub.start()
    try:
        client = hub.login(VICTIM)
        r = client.start({"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"})
        assert r.status_code in (201, 202), r.text
        final = client.progress(timeout=120)[-1]
        assert final.get("failed"), final
        assert f"reported port {port}" in final["message"] and "is not your Jupyter server" in final["message"]
        wait_until(lambda: not user_jobs(VICTIM), 30, "the job to be cancelled")
        page = requests.get(f"{hub.url}/user/{VICTIM}/api/status", timeout=20,
                            headers={"Authorization": f"token {client.token}"}, allow_redirects=False)
        assert page.status_code != 200 or "squatter" not in page.text
        got = squatter.requests()
        assert got and all("/rcsc3/api/identity?challenge=" in line for line in got), got
    finally:
        hub.stop()
        for job in user_jobs(VICTIM):
            subprocess.run(["scancel", job], check=False)
