"""A real JupyterHub process (with the real configurable-http-proxy) on free ports, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubclient import HubClient  # noqa: E402
from polling import wait_until  # noqa: E402,F401  (re-exported for tests and benchmarks)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PASSWORD = os.environ.get("RCSC3_DEMO_PASSWORD", "rcsc3-demo")


def password_of(user: str) -> str:
    """The demo password of a student, or the teacher's own (see rcsc3_lab/users.py)."""
    if user == "teacher":
        from rcsc3_lab.users import teacher_password

        return teacher_password()
    return PASSWORD
STUDENTS = ("student1", "student2", "student3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_jobs(user: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-u", user, "-o", "%i %T"], capture_output=True, text=True, timeout=20)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]




class Hub:
    """One JupyterHub process; restartable with the same database."""

    def __init__(self, workdir: Path, extra_config: str = ""):
        self.workdir = workdir
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "hub.log"
        self.squeue_log = workdir / "squeue-calls.log"
        self.proc: subprocess.Popen | None = None
        shim = workdir / "bin"
        shim.mkdir(exist_ok=True)
        # Counts the hub's squeue calls (for the poll-load test); execs the real squeue.
        (shim / "squeue").write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {self.squeue_log}\nexec /usr/bin/squeue "$@"\n')
        (shim / "squeue").chmod(0o755)
        self.config = workdir / "jupyterhub_config.py"
        self.config.write_text(
            f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'\n"
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{self.hub_port}'\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            "c.RcSC3Spawner.stop_timeout = 5\n"
            "c.RcSC3Spawner.pending_timeout = 20\n"
            "c.Spawner.poll_interval = 3\n"
            + extra_config
        )

    def start(self) -> None:
        env = dict(os.environ, PATH=f"{self.workdir / 'bin'}:{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self._launch([str(VENV_BIN / "jupyterhub"), "-f", str(self.config)], env)
        self._wait_up(60, "the hub")

    def _launch(self, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def _wait_up(self, timeout: float, what: str) -> None:
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{what} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                return requests.get(f"{self.url}/hub/api", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout, f"{what} to answer through its proxy")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def login(self, user: str) -> HubClient:
        return HubClient.login(self.url, user, password_of(user))


def stop_all_servers(hub: Hub, users: tuple[str, ...] | list[str], label: str) -> None:
    """Stop the users' servers through the hub's API and wait (bounded) until the hub lists none."""
    for user in users:
        try:
            client = hub.login(user)
            for name in list(client.user_model().get("servers", {})):
                client.stop(name)
            for name in list(client.user_model().get("servers", {})):
                client.wait_stopped(name, timeout=60)
        except Exception as exc:  # keep cleaning the others
            print(f"{label} cleanup: stopping {user}'s servers: {exc}", file=sys.stderr)
