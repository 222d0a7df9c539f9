"""Fixtures for the Remote Desktop tests: real unix users, real Jupyter servers running as them.

The tests run as root (as CI does) and start each Jupyter server as a dedicated
test user (rdtest1..3: created here, idempotently) so that what must hold
between students (sockets, displays, cookies) is tested between real uids, and
so that "no process of the desktop is left" can be checked as "no process of
that user is left". In CI (`CI` set) a missing tool fails the test instead of
skipping it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # cdp.py, rfb.py
sys.path.append(str(HERE.parent))  # polling.py (after HERE: `conftest` must stay this one)
from polling import wait_until  # noqa: E402

from rcsc3_proxy.desktop.procs import remove_stale_ice_sockets  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CI = bool(os.environ.get("CI"))
#: rdtest1 runs the shared desktop, rdtest2 plays the other student, rdtest3 runs the per-test servers,
#: rdtest4 runs the shared desktop with the websockify bridge.
TEST_USERS = ("rdtest1", "rdtest2", "rdtest3", "rdtest4")
TOKEN = "rcsc3-desktop-test-token"
#: a second person's token on servers started with `people=` (tests/desktop/identities.py)
VIEWER_TOKEN = "rcsc3-desktop-viewer-token"
ARTIFACTS = Path(os.environ.get("RCSC3_ARTIFACTS", Path.cwd() / "artifacts"))

# Only what the desktop needs: faster start, and jupyter-remote-desktop-proxy (the
# benchmark's baseline, installed in the same venv) must not claim /desktop/.
EXTENSIONS_OFF = ["jupyter_remote_desktop_proxy", "jupyterlab", "jupyter_lsp", "notebook_shim", "ipyparallel"]


def need(*tools: str) -> None:
    """Skip when a tool is missing; in CI, fail loudly instead."""
    for tool in tools:
        if not (shutil.which(tool) or os.access(tool, os.X_OK)):
            msg = f"{tool} is not installed"
            if CI:
                pytest.fail(f"{msg} (CI must have it)")
            pytest.skip(msg)


def poll(check, timeout: float, what: str, interval: float = 0.05):
    """The shared bounded poll (tests/polling.py), at the desktop tests' finer cadence."""
    return wait_until(check, timeout, what, interval)


def user_pids(user: str) -> list[int]:
    """The user's live processes. Zombies are left out: they are dead, only waiting for their
    parent (often init, which in some containers reaps lazily) to collect their exit status."""
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,stat="], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid, stat in (line.split() for line in out.splitlines() if line.strip()) if not stat.startswith("Z")]


def user_processes(user: str) -> str:
    return subprocess.run(["ps", "-u", user, "-o", "pid,ppid,sid,stat,cmd"], capture_output=True, text=True,
                          check=False).stdout


def kill_user_processes(user: str, grace: float = 10.0) -> None:
    """Test cleanup only (these users exist only for the tests).

    First give the user's processes `grace` seconds to finish on their own (a
    stopped server's supervisor is still tearing its desktop down), then SIGKILL
    what is left by pid, and drop the X sockets and runtime dirs they left.
    """
    deadline = time.monotonic() + grace
    while user_pids(user) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(50):
        pids = user_pids(user)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for path in x_leftovers(user):
        Path(path).unlink(missing_ok=True)
    for d in runtime_dirs(user):
        shutil.rmtree(d, ignore_errors=True)
    # as the Slurm epilog does: a stale session-manager socket of this user would end another
    # test user's session that gets its pid (see rcsc3_proxy.desktop.procs.remove_stale_ice_sockets)
    remove_stale_ice_sockets(uid=pwd.getpwnam(user).pw_uid)


def runtime_dirs(user: str) -> list[Path]:
    return sorted(Path("/tmp").glob(f"rcsc3-desktop-{user}-*"))


def stale_socket(path: Path, uid: int, gid: int | None = None) -> None:
    """A unix socket file bound and closed, never unlinked: what a killed daemon leaves; owned by uid."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    os.chown(path, uid, uid if gid is None else gid)


def dead_pids(count: int) -> list[int]:
    """Pids no process has now (from the top of the pid range, where new processes rarely land)."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    free = (p for p in range(pid_max - 1, 300, -1) if not Path(f"/proc/{p}").exists())
    return [next(free) for _ in range(count)]


def tmp_entries(user: str) -> set[str]:
    """Names of the user's entries directly in /tmp (files, sockets, directories)."""
    uid = pwd.getpwnam(user).pw_uid
    out = set()
    for entry in os.scandir("/tmp"):
        try:
            if entry.stat(follow_symlinks=False).st_uid == uid:
                out.add(entry.name)
        except OSError:
            continue
    return out


def x_leftovers(user: str) -> list[str]:
    uid = pwd.getpwnam(user).pw_uid
    paths = list(Path("/tmp").glob(".X*-lock")) + list(Path("/tmp/.X11-unix").glob("X*"))
    return [str(p) for p in paths if p.exists() and p.lstat().st_uid == uid]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def test_users() -> tuple[str, ...]:
    if os.geteuid() != 0:
        if CI:
            pytest.fail("the desktop tests run as root in CI")
        pytest.skip("needs root: the tests start servers as dedicated unix users")
    for user in TEST_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
    return TEST_USERS


@dataclass
class Server:
    """A `jupyter server` running as `user`, with jupyter-server-proxy and our entries."""

    user: str
    port: int
    proc: subprocess.Popen
    log: Path
    config: Path
    extra_env: dict = field(default_factory=dict)
    before: set = field(default_factory=set)  # runtime dirs of this user that are not ours

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, token: bool | str = True) -> str:
        """`token`: True for the owner's (TOKEN), False for none, or another token (e.g. VIEWER_TOKEN)."""
        sep = "&" if "?" in path else "?"
        if not token:
            return f"{self.base}/{path}"
        return f"{self.base}/{path}{sep}token={TOKEN if token is True else token}"

    def ws_url(self, path: str, token: bool | str = True, desktop_token: bool = True) -> str:
        """`desktop-vnc/` URLs carry the desktop page's secret, as the page's own do (unless told not to)."""
        url = self.url(path, token).replace("http://", "ws://", 1)
        if desktop_token and path.startswith("desktop-vnc"):
            # token=False (no Jupyter token: a cookie, or nobody) still carries the owner's page token
            url += ("&" if "?" in url else "?") + f"desktop_token={self.desktop_token(token or True)}"
        return url

    _desktop_tokens: dict = field(default_factory=dict)

    def desktop_token(self, token: bool | str = True) -> str:
        """The caller's own page token, read where the browser reads it: from the desktop page
        (served to the owner, or to the person `token` names)."""
        key = TOKEN if token is True else token
        if key not in self._desktop_tokens:
            page = requests.get(self.url("desktop/", key), timeout=30)
            page.raise_for_status()
            self._desktop_tokens[key] = re.search(r'"token": "([^"]+)"', page.text).group(1)
        return self._desktop_tokens[key]

    def desktop_headers(self, token: bool | str = True) -> dict:
        """What the desktop page's API calls send (tests/security plays pages that lack it)."""
        return {"X-Rcsc3-Desktop-Token": self.desktop_token(token)}

    def status(self, **params) -> dict:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        r = requests.get(self.url(f"desktop/api/status?{q}"), headers=self.desktop_headers(), timeout=60)
        r.raise_for_status()
        return r.json()

    def action(self, name: str) -> requests.Response:
        """POST desktop/api/<name> (start, stop) as the desktop page does."""
        return requests.post(self.url(f"desktop/api/{name}"), headers=self.desktop_headers(), timeout=30)

    def login_cookie(self) -> str:
        """A browser-style login cookie (what the hub's auth gives a student), obtained with the token."""
        r = requests.get(self.url("api/status"), timeout=20)
        r.raise_for_status()
        return "; ".join(f"{k}={v}" for k, v in r.cookies.get_dict().items())

    def runtime_dir(self) -> Path:
        dirs = [d for d in runtime_dirs(self.user) if d not in self.before]
        assert len(dirs) == 1, f"expected one runtime dir for this server of {self.user}: {dirs}"
        return dirs[0]

    def wait_running(self) -> dict:
        st = self.status(start=1, wait=1)
        assert st["state"] == "running", f"desktop not running: {st}\n{self.log_text()}"
        return st

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(user: str, config: dict | None = None, env: dict | None = None, stock: bool = False,
                 people: dict | None = None, server_config: dict | None = None,
                 extensions: dict | None = None) -> Server:
    """Start `jupyter server` as `user` and wait until it answers (bounded).

    `stock`: leave jupyter-remote-desktop-proxy's extension on (its /desktop/ page then wins) for the benchmark.
    `people`: token -> name of who else may open the server, as JupyterHub would let them
    (tests/desktop/identities.py; TOKEN is then `user`, the owner). `server_config`: more
    `c.<Class.trait> = value` lines. `extensions`: more server extensions on or off (modules here, e.g.
    job_standin).
    """
    pw = pwd.getpwnam(user)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-dtest-"))  # server config and log
    workdir.chmod(0o755)
    cfg = workdir / "jupyter_server_config.py"
    lines = [f"c.RemoteDesktop.{k} = {v!r}" for k, v in (config or {}).items()]
    extra = dict(server_config or {})
    env = dict(env or {})
    if people is not None:
        extra["ServerApp.identity_provider_class"] = "identities.NamedTokens"
        extra["NamedTokens.names"] = {TOKEN: user, **people}
        env["JUPYTERHUB_USER"] = user
    if extra or extensions:
        env["PYTHONPATH"] = str(HERE)  # identities.py and the tests' small server extensions
    lines += [f"c.{k} = {v!r}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    cfg.chmod(0o644)
    log = workdir / "server.log"
    cmd = [str(VENV_BIN / "jupyter"), "server", "--no-browser", f"--config={cfg}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={pw.pw_dir}"]
    cmd += [f"--ServerApp.jpserver_extensions={ext}=False" for ext in EXTENSIONS_OFF
            if not (stock and ext == "jupyter_remote_desktop_proxy")]
    cmd += [f"--ServerApp.jpserver_extensions={ext}={on}" for ext, on in (extensions or {}).items()]
    child_env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": "/bin/bash", "LANG": "C.UTF-8",
                 "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=child_env, cwd=pw.pw_dir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(user, port, proc, log, cfg, env or {}, before=set(runtime_dirs(user)))

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter server exited {proc.returncode}:\n{server.log_text()}")
        try:
            return requests.get(server.url("api/status"), timeout=2).status_code == 200
        except requests.RequestException:
            return False

    poll(up, 60, "the jupyter server to answer")
    poll(lambda: any((d / "web.sock").exists() for d in runtime_dirs(user) if d not in server.before), 20,
         "the desktop supervisor")
    return server


@pytest.fixture
def server_factory(test_users):
    """Start servers as test users; afterwards make sure nothing of them is left running."""
    need("Xvnc", "xfce4-session")
    started: list[Server] = []

    def factory(user: str = "rdtest3", config: dict | None = None, env: dict | None = None, **kw) -> Server:
        s = start_server(user, config, env, **kw)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()
        kill_user_processes(s.user)
        shutil.rmtree(s.config.parent, ignore_errors=True)


def _running_desktop(user: str, config: dict | None = None):
    """A server as `user` with its desktop running; stopped and cleaned up afterwards."""
    need("Xvnc", "xfce4-session")
    s = start_server(user, config=config) if config else start_server(user)
    try:
        s.wait_running()
        yield s
    finally:
        s.stop()
        kill_user_processes(s.user)
        shutil.rmtree(s.config.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def desktop_server(test_users):
    """One server as rdtest1 with a running desktop, shared by the tests that leave it running."""
    yield from _running_desktop("rdtest1")


@pytest.fixture(scope="session")
def websockify_server(test_users):
    """One server as rdtest4 with a running desktop bridged by the stock websockify."""
    yield from _running_desktop("rdtest4", config={"bridge": "websockify"})


def as_user(user: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a Python snippet as `user` (the 'other student' in isolation tests)."""
    pw = pwd.getpwnam(user)
    return subprocess.run([sys.executable, "-c", code], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                          env={"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)
