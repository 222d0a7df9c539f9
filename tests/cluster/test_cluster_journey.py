"""The student's journey across hosts: browser on this machine, hub on `hub`, the server and desktop on gpu1.

tests/e2e/test_journey.py runs the same steps on the one-host lab, where hub, proxy and server
share one loopback. Here they cannot: the hub runs in the hub host's network namespace
(hub_config/cluster/jupyterhub_config.py, `c.RcSC3Spawner.ip = ""`), the job on gpu1, and the
browser (real headless Chromium) on the machine, which reaches the hub at 10.250.0.1. What this
adds to the one-host journey is where each connection goes:

* the proxy's route to the server is gpu1's address, and the server listens there only (not
  on gpu1's 127.0.0.1, not on 0.0.0.0): a connection to gpu1's loopback port is refused;
* the server was told the hub's address (hub_connect_ip) and used it: the port report, the
  OAuth token exchange and the activity reports reach the hub from 10.250.0.11 (the hub's
  request log names the peer);
* the Remote Desktop runs on gpu1 and none of it listens on TCP: while it shows, the only TCP
  socket the student listens on anywhere on gpu1 is the server's.

Real parts: the multi-host lab's Slurm, JupyterHub + configurable-http-proxy, Xvnc + xfce, srun
engine steps, Chromium. Nothing is faked except the GPUs (device files, see rcsc3_lab/cluster.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))

from cluster_hub import ARTIFACTS  # noqa: E402
from cluster_lab import environ, listening_tcp, on, processes, require_tool, socket_inodes, wait_clean  # noqa: E402
from e2e_browser import UserBrowser  # noqa: E402
from e2e_journey import MIN_COLOURS, RESULT, Steps, job_ids, remove_notebook  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.browser, pytest.mark.desktop]

USER = "student1"
CONNECT = ("import socket, sys\n"
           "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close(); print('connected')\n"
           "except OSError as e:\n    print(type(e).__name__)")


def need_browser_tools() -> None:
    for tool in ("chromium", "Xvnc", "xfce4-session"):
        require_tool(tool)


def server_process(cluster, user: str):
    """The student's Jupyter server on gpu1 (rcsc3-singleuser, the batch script's exec)."""
    found = [p for p in processes(user, netns=cluster.netns("gpu1")) if any("rcsc3-singleuser" in a for a in p.argv[:3])]
    assert len(found) == 1, [p.cmdline for p in processes(user, netns=cluster.netns("gpu1"))]
    return found[0]


async def test_student_journey_across_hosts(cluster, idle_hub):
    need_browser_tools()
    hub = idle_hub
    gpu1, hub_ip = cluster.address("gpu1"), cluster.address("hub")
    shots = ARTIFACTS / "journey"
    steps = Steps(hub.url, USER, shots=shots)
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        try:
            await steps.login(page)
            messages = await steps.spawn(page)
            assert any(re.search(r"Job \d+ running on gpu1", m) for m in messages), messages
            [job] = job_ids(messages)
            assert cluster.job(job, "%B %P") == "gpu1 interactive"

            # the proxy goes to gpu1's address; the server listens there and only there
            server = server_process(cluster, USER)
            target = hub.route_target(USER)
            m = re.fullmatch(rf"http://{re.escape(gpu1)}:(\d+)", target)
            assert m, f"the proxy's route to {USER}'s server is {target!r}, not gpu1's address {gpu1}"
            port = int(m.group(1))
            own = socket_inodes(server.pid)
            server_sockets = [(s.address, s.port) for s in listening_tcp(server.pid) if s.inode in own]
            assert server_sockets == [(gpu1, port)], server_sockets
            on_port = [(s.address, s.port) for s in listening_tcp(server.pid) if s.port == port]
            assert on_port == [(gpu1, port)], f"something else listens on the server's port on gpu1: {on_port}"
            for address, expect in ((gpu1, "connected"), ("127.0.0.1", "ConnectionRefusedError")):
                res = on("gpu1", sys.executable, "-c", CONNECT, address, str(port))
                assert res.stdout.strip() == expect, (address, res.stdout, res.stderr)

            # the server was pointed at the hub host, and the hub heard it from gpu1
            env = environ(server.pid)
            assert env["JUPYTERHUB_API_URL"] == f"http://{hub_ip}:{hub.hub_port}/hub/api", env["JUPYTERHUB_API_URL"]
            assert env["JUPYTERHUB_ACTIVITY_URL"].startswith(f"http://{hub_ip}:{hub.hub_port}/hub/api/users/{USER}/activity")
            peer = rf"\((?:{USER})?@{re.escape(gpu1)}\)"
            log = hub.log_text()
            for what, request in (("port report", "POST /hub/api/batchspawner"),
                                  ("OAuth token exchange", "POST /hub/api/oauth2/token"),
                                  ("activity", f"POST /hub/api/users/{USER}/activity")):
                assert re.search(rf"\b20\d {re.escape(request)}\S* {peer}", log), (
                    f"the hub logged no {what} ({request}) from gpu1; its log: {hub.log_path}")

            desktop, colours = await steps.open_desktop(browser, page)
            assert colours > MIN_COLOURS
            assert steps.seen["desktop_url"].startswith(f"{hub.url}/user/{USER}/desktop/")
            await steps.shot(desktop, "05-desktop")
            # the desktop runs on gpu1 (its network and PID namespaces), on a unix socket
            on_gpu1 = processes(USER, netns=cluster.netns("gpu1"), pidns=cluster.pidns("gpu1"))
            xvnc = [p for p in on_gpu1 if p.argv[0].endswith(("Xvnc", "Xtigervnc"))]
            assert len(xvnc) == 1 and "-rfbunixpath" in xvnc[0].argv, [p.cmdline for p in on_gpu1]
            # ... and nothing of it listens on TCP: the student's one TCP listener on gpu1 is the server
            uid = server.uid
            listeners = sorted({(s.address, s.port) for s in listening_tcp(server.pid) if s.uid == uid})
            assert listeners == [(gpu1, port)], f"{USER} listens on TCP on gpu1 at {listeners}"

            _, output = await steps.run_cell(page)
            assert RESULT in output, output
            home = await steps.stop_from_home(browser, page)
            await steps.shot(home, "07-home-stopped")
            wait_clean(cluster, USER)
        except Exception:
            await steps.shot(page, "failed")
            raise
        finally:
            remove_notebook(USER, str(steps.seen.get("notebook", "")))
