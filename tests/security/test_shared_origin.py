"""Issue #15 §2: a page another student serves must not drive a student's desktop (real Chromium).

Student A (student1) serves tests/security/attack.html from their own Jupyter server
(`c.ServerApp.extra_static_paths` in A's own ~/.jupyter config: anything A likes can be there).
Student B (student2) is logged in to the same hub with a running desktop open, and visits A's page.
Its script tries B's desktop stream, B's desktop API (with the old header, a guessed secret, and
the secret if it can read it from B's desktop page by fetch() or in a frame) and B's files.

Failed on 92eed46: the stream answered with the RFB banner and api/stop (with `X-Rcsc3-Desktop: 1`,
which same-origin script can set) returned 200 and closed B's desktop.

With `c.JupyterHub.subdomain_host` (one origin per student) the same page is cross-origin and the
browser itself keeps it away from B's server; the second test runs the attack in that mode too.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from conftest import wait_until
from hubclient import HubClient
from hubproc import Hub, user_jobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_browser import CANVAS_COLOURS, UserBrowser  # noqa: E402
from e2e_journey import Steps  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.browser, pytest.mark.desktop]

HERE = Path(__file__).resolve().parent
ATTACKER, VICTIM = "student1", "student2"
CPU_ONLY = {"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}
DESKTOP = {"profile": "gpu-desktop", "gpus": 1, "cpus": 2, "memory": 2, "walltime": "0:15"}
ARTIFACTS = Path(os.environ.get("RCSC3_ARTIFACTS", Path.cwd() / "artifacts")) / "security"


@pytest.fixture
def attackers_page(root):
    """A's own server config serves attack.html from A's home (restored afterwards)."""
    pw = pwd.getpwnam(ATTACKER)
    home = Path(pw.pw_dir)
    static, config = home / ".rcsc3-attack", home / ".jupyter" / "jupyter_server_config.py"
    saved = config.read_bytes() if config.exists() else None
    static.mkdir(exist_ok=True)
    shutil.copy(HERE / "attack.html", static / "attack.html")
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"c.ServerApp.extra_static_paths = [{str(static)!r}]\n")
    for path in (static, static / "attack.html", config.parent, config):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    yield "static/attack.html"
    shutil.rmtree(static, ignore_errors=True)
    if saved is None:
        config.unlink(missing_ok=True)
    else:
        config.write_bytes(saved)


def _hub(extra: str = "") -> Hub:
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-origin-hub-"))
    workdir.chmod(0o755)
    hub = Hub(workdir)
    hub.config.write_text(hub.config.read_text() + TEST_SERVICE + extra.format(port=hub.port))
    return hub


def _pointer(display: int) -> str:
    """Where the pointer is on B's own X display (as B, with B's cookie)."""
    [xauth] = [p for p in Path("/tmp").glob(f"rcsc3-desktop-{VICTIM}-*/Xauthority")]
    pw = pwd.getpwnam(VICTIM)
    res = subprocess.run(["xdotool", "getmouselocation"], env={"DISPLAY": f":{display}", "XAUTHORITY": str(xauth)},
                         user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=20,
                         check=True)
    return res.stdout.strip()


SERVICE_TOKEN = secrets.token_hex(16)
#: an API client for the tests that needs no browser-style login (requests keeps no cookie for the
#: `localhost` domain a subdomain hub sets, so its XSRF check fails for a scripted login)
TEST_SERVICE = f"""
c.JupyterHub.services = [{{"name": "rcsc3-tests", "api_token": {SERVICE_TOKEN!r}}}]
c.JupyterHub.load_roles = [{{"name": "rcsc3-tests", "scopes": ["tokens", "read:users"], "services": ["rcsc3-tests"]}}]
"""


def _client(hub: Hub, user: str) -> HubClient:
    """A client with a fresh token of `user`, made through the tests' service."""
    r = requests.post(f"{hub.url}/hub/api/users/{user}/tokens", json={"note": "rcsc3 tests", "expires_in": 3600},
                      headers={"Authorization": f"token {SERVICE_TOKEN}"}, timeout=20)
    r.raise_for_status()
    return HubClient(hub.url, user, requests.Session(), r.json()["token"])


async def _attack(hub: Hub, page_path: str, users_origin, shots: Path, clients: dict) -> dict:
    """B logs in, opens their running desktop, then opens A's page; returns what A's script got."""
    attacker = clients[ATTACKER] = _client(hub, ATTACKER)
    assert attacker.start(CPU_ONLY).status_code in (201, 202)
    attacker.wait_ready(timeout=120)
    victim = clients[VICTIM] = _client(hub, VICTIM)
    assert victim.start(DESKTOP).status_code in (201, 202)
    victim.wait_ready(timeout=120)
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        await Steps(users_origin(None), VICTIM).login(page, next_path=f"/user/{VICTIM}/")
        desktop = await browser.new_page()
        await desktop.viewport()
        await desktop.goto(f"{users_origin(VICTIM)}/user/{VICTIM}/desktop/", 60)
        await desktop.wait_for("window.rcsc3Desktop && window.rcsc3Desktop.phase === 'connected'", 60)
        await desktop.wait_for(f"({CANVAS_COLOURS}) > 100", 60)
        display = await desktop.evaluate("window.rcsc3Desktop.status.display")
        before = _pointer(display)
        evil = await browser.new_page()
        target = f"{users_origin(ATTACKER)}/user/{ATTACKER}/{page_path}?victim={VICTIM}&origin={users_origin(VICTIM)}"
        await evil.goto(target, 30)
        got = await evil.evaluate("window.attack", timeout=90)
        await evil.screenshot(shots / "attackers-page.png")
        # B's desktop: still connected, still the same display, nothing moved on it
        await desktop.front()
        assert await desktop.evaluate("window.rcsc3Desktop.phase") == "connected"
        own = await desktop.evaluate(
            "fetch('api/status', {headers: {[JSON.parse(document.getElementById('rcsc3-config').textContent)"
            ".token_header]: JSON.parse(document.getElementById('rcsc3-config').textContent).token}})"
            ".then(r => r.json())")
        assert own["state"] == "running" and own["display"] == display, own
        assert _pointer(display) == before
        await desktop.screenshot(shots / "victims-desktop-after.png")
    return got


def _stop(hub: Hub, clients: dict) -> None:
    for client in clients.values():
        try:
            client.stop()
            client.wait_stopped(timeout=60)
        except Exception as e:  # keep cleaning
            print(f"cleanup of {client.username}: {e}", file=sys.stderr)
    hub.stop()
    for user in (ATTACKER, VICTIM):
        for job in user_jobs(user):
            subprocess.run(["scancel", job], check=False)
    wait_until(lambda: not any(user_jobs(u) for u in (ATTACKER, VICTIM)), 60, "the test's jobs to end")


REFUSED_STREAM = re.compile(r"closed \d+|refused")


async def test_a_page_on_the_shared_origin_cannot_reach_another_students_desktop(slurm_lab, attackers_page):
    hub, clients = _hub(), {}
    hub.start()
    shots = ARTIFACTS / "shared-origin"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        got = await _attack(hub, attackers_page, lambda user: hub.url, shots, clients)
    finally:
        _stop(hub, clients)
    print("attack results:", got)
    assert REFUSED_STREAM.fullmatch(got["stream"]), got
    assert REFUSED_STREAM.fullmatch(got["stream_guessed_token"]), got
    # the page with the secret is served to no fetch() and no frame
    assert got["page_fetch"] == 403, got
    assert got["page_frame"] != "token read", got
    assert got["token_stolen"] is False, got
    for call in ("stop_old_header", "stop_guessed_token", "status"):
        assert got[call] == 403, (call, got)
    assert got["contents"] == 403, got  # JupyterHub's own XSRF protection


async def test_with_one_origin_per_student_the_browser_keeps_the_page_away(slurm_lab, attackers_page):
    """`c.JupyterHub.subdomain_host`: A's page is on student1.localhost, B's desktop on student2.localhost."""
    hub, clients = _hub("c.JupyterHub.subdomain_host = 'http://localhost:{port}'\n"), {}
    hub.url = f"http://localhost:{hub.port}"  # the hub's own host in this mode (JupyterHub checks it)
    hub.start()
    shots = ARTIFACTS / "subdomains"
    shots.mkdir(parents=True, exist_ok=True)

    def origin(user: str | None) -> str:
        return f"http://{user}.localhost:{hub.port}" if user else f"http://localhost:{hub.port}"

    try:
        got = await _attack(hub, attackers_page, origin, shots, clients)
    finally:
        _stop(hub, clients)
    print("attack results:", got)
    assert REFUSED_STREAM.fullmatch(got["stream"]), got
    assert got["token_stolen"] is False, got
    for call in ("page_fetch", "stop_old_header", "stop_guessed_token", "status", "contents"):
        assert str(got[call]).startswith("error"), (call, got)  # cross-origin: the browser never hands over an answer
