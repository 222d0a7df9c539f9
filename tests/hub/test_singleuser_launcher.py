"""rcsc3-singleuser, the node-side program the batch job runs: port report and fast imports.

The full path (a real job reporting its port to a real hub, the server then reached through
the proxy) is test_spawn's round trip; these tests pin down the parts one at a time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rcsc3_proxy import singleuser


class FakeHubAPI:
    """A real HTTP server on loopback standing in for the hub's /hub/api, recording POSTs.

    When a port is reported it tries to connect to it at once, as a squatter would bind it:
    `listening_at_report` says whether something already listened there.
    """

    def __init__(self, status: int = 201):
        self.requests: list[tuple[str, dict, dict]] = []
        self.listening_at_report: list[bool] = []
        #: token -> the user model the hub's /user answers for it (how the server identifies a request)
        self.users: dict[str, dict] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append((self.path, dict(self.headers), body))
                if self.path.endswith("/batchspawner") and isinstance(body.get("port"), int):
                    with socket.socket() as probe:
                        outer.listening_at_report.append(probe.connect_ex(("127.0.0.1", body["port"])) == 0)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802 - the single-user server's version check and friends
                answer, code = b"{}", 200
                if self.path.split("?")[0].endswith("/user"):  # who holds this token (HubAuth.user_for_token)
                    token = self.headers.get("Authorization", "").removeprefix("token ")
                    user = outer.users.get(token)
                    answer, code = (json.dumps(user).encode(), 200) if user else (b'{"message": "bad token"}', 403)
                self.send_response(code)
                self.send_header("X-JupyterHub-Version", "6.1.1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHubAPI()
    yield hub
    hub.close()


def test_reports_exactly_the_port_with_the_server_token(fake_hub):
    singleuser.report_port(41234, fake_hub.url + "/", "secret-token")
    [(path, headers, body)] = fake_hub.requests
    assert path == "/hub/api/batchspawner"
    assert body == {"port": 41234}
    assert headers["Authorization"] == "token secret-token"


def test_a_refusal_is_final_and_says_what_the_hub_answered():
    hub = FakeHubAPI(status=403)
    try:
        with pytest.raises(singleuser.PortReportError, match="HTTP 403"):
            singleuser.report_port(41234, hub.url, "wrong-token")
        assert len(hub.requests) == 1  # no retry after an answer
    finally:
        hub.close()


def test_an_unreachable_hub_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(singleuser.PortReportError, match="could not be reached"):
        singleuser.report_port(1, f"http://127.0.0.1:{port}/hub/api", "t", attempts=2)


def test_service_url_gets_the_address_and_port_the_server_listens_on():
    assert singleuser.with_address("http://:0/user/ana/", "10.0.0.5", 40001) == "http://10.0.0.5:40001/user/ana/"
    assert singleuser.with_address("http://127.0.0.1:0/user/ana/", "fd00::5", 40001) == "http://[fd00::5]:40001/user/ana/"


def test_path_without_hides_only_the_directories_holding_the_program(tmp_path, monkeypatch):
    with_node, without = tmp_path / "a", tmp_path / "b"
    with_node.mkdir()
    without.mkdir()
    (with_node / "node").write_text("#!/bin/sh\n")
    (with_node / "node").chmod(0o755)
    monkeypatch.setenv("PATH", f"{with_node}:{without}")
    with singleuser.path_without("node"):
        assert os.environ["PATH"] == str(without)
    assert os.environ["PATH"] == f"{with_node}:{without}"


def test_fast_imports_skip_the_lark_parsers_and_node_but_keep_json_schema_validation():
    # a fresh interpreter: what the job's server process imports, with node on PATH
    code = """
import os, sys, subprocess
from rcsc3_proxy import singleuser
calls = []
real_popen = subprocess.Popen.__init__
def spy(self, args, *a, **k):
    calls.append(args)
    return real_popen(self, args, *a, **k)
subprocess.Popen.__init__ = spy
singleuser.block_slow_optional_modules()
singleuser.preimport_jupyterlab()
import jsonschema
jsonschema.validate({"a": 1}, {"type": "object", "properties": {"a": {"type": "integer"}}})
try:
    jsonschema.validate({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}})
    print("NOT-REJECTED")
except jsonschema.ValidationError:
    print("REJECTED")
print("LARK" if "lark" in sys.modules else "NO-LARK")
print("NODE" if any("node" in str(c) for c in calls) else "NO-NODE")
"""
    node_dir = "/usr/local/bin" if Path("/usr/local/bin/node").exists() else "/usr/bin"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{node_dir}:/usr/bin:/bin")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["REJECTED", "NO-LARK", "NO-NODE"]


def test_launcher_without_hub_environment_exits_with_a_message():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    out = subprocess.run([sys.executable, "-m", "rcsc3_proxy.singleuser"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "JUPYTERHUB_API_URL" in out.stderr and "Traceback" not in out.stderr


def start_server(fake_hub: FakeHubAPI, home: Path, token: str, **extra_env: str) -> tuple[subprocess.Popen, int, Path]:
    """A real rcsc3-singleuser for user `ana` against the stand-in hub; returns it, its reported port and its log
    once the port has been reported (at which moment it must already listen)."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JUPYTERHUB_"))}
    env.update(JUPYTERHUB_API_URL=fake_hub.url, JUPYTERHUB_API_TOKEN=token, JUPYTERHUB_USER="ana",
               JUPYTERHUB_SERVICE_URL="http://127.0.0.1:0/user/ana/", JUPYTERHUB_SERVICE_PREFIX="/user/ana/",
               JUPYTERHUB_BASE_URL="/", JUPYTERHUB_CLIENT_ID="jupyterhub-user-ana", JUPYTERHUB_HOST="",
               JUPYTERHUB_OAUTH_CALLBACK_URL="/user/ana/oauth_callback", RCSC3_SINGLEUSER_FAST="0",
               JUPYTERHUB_ACTIVITY_URL=fake_hub.url + "/users/ana/activity", HOME=str(home), **extra_env)
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rcsc3_proxy.singleuser", "--allow-root",
                                 "--ServerApp.root_dir=" + str(home)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not fake_hub.listening_at_report and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        time.sleep(0.02)  # bounded poll of the stand-in hub
    if not fake_hub.listening_at_report:
        proc.terminate()
        raise AssertionError(f"no port report within 60 s:\n{log.read_text()}")
    return proc, fake_hub.requests[-1][2]["port"], log


def test_the_port_listens_before_it_is_reported_and_the_server_proves_it_is_the_students(fake_hub, tmp_path):
    """Issue #15 §1 at the unit level: a real rcsc3-singleuser with a stand-in hub. At the moment the
    report arrives the port already accepts connections (no window for a squatter), and the server
    that then answers on it is the one holding the token (rcsc3/api/identity)."""
    import hashlib
    import hmac
    import secrets
    import urllib.request

    token = secrets.token_hex(16)
    proc, port, log = start_server(fake_hub, tmp_path, token)
    try:
        assert fake_hub.listening_at_report == [True], log.read_text()
        challenge = secrets.token_hex(32)
        url = f"http://127.0.0.1:{port}/user/ana/rcsc3/api/identity?challenge={challenge}"
        with urllib.request.urlopen(url, timeout=60) as answer:  # queued until the server serves
            proof = json.loads(answer.read())["proof"]
        expected = hmac.new(token.encode(), f"rcsc3-identity:{challenge}:{port}".encode(), hashlib.sha256).hexdigest()
        assert proof == expected
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_private_serverapp_methods_rcsc3_overrides_still_exist():
    """rcsc3_proxy/server/app.py hands the bound socket over by overriding these (setup.cfg pins jupyter_server)."""
    import inspect

    from jupyter_server.serverapp import ServerApp

    for name in ("_find_http_port", "_bind_http_server_tcp", "init_webapp", "init_httpserver"):
        assert callable(getattr(ServerApp, name, None)), name
    assert "_bind_http_server_tcp" in inspect.getsource(ServerApp._bind_http_server)
    assert "_find_http_port" in inspect.getsource(ServerApp.init_httpserver)


def test_outside_a_slurm_job_the_job_api_is_a_json_404_for_the_student_and_403_for_others(fake_hub, tmp_path):
    """rcsc3/api/job (job_api.py) on a server that does not run in a Slurm job: a clear JSON error, after the
    usual authentication (the stand-in hub tells the server whose token is whose, as the real hub's /user does)."""
    import secrets
    import urllib.error
    import urllib.request

    server_token, ana_token, bob_token = (secrets.token_hex(16) for _ in range(3))
    fake_hub.users[ana_token] = {"kind": "user", "name": "ana", "admin": False, "groups": [],
                                 "scopes": ["access:servers!user=ana"]}
    fake_hub.users[bob_token] = {"kind": "user", "name": "bob", "admin": False, "groups": [],
                                 "scopes": ["access:servers!user=bob"]}
    scopes = json.dumps(["access:servers!server=ana/", "access:servers!user=ana"])
    proc, port, log = start_server(fake_hub, tmp_path, server_token, JUPYTERHUB_OAUTH_ACCESS_SCOPES=scopes)
    try:

        def ask(token: str) -> tuple[int, dict]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/user/ana/rcsc3/api/job",
                                             headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:  # queued until the server serves
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"{}")

        status, body = ask(ana_token)
        assert status == 404, body
        assert "not run in a Slurm job" in body["message"]
        assert ask(bob_token)[0] == 403  # another student learns nothing, not even that there is no job
        assert ask("not-a-token")[0] == 403
        assert "Traceback" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
