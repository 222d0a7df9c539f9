"""Others on the student's desktop: view-only unless the owner gives control, enforced in the bridge.

Real jupyter server, real Xvnc and xfce, both bridges; what reaches the desktop is checked on the
X display itself, as the owner (xdotool). The second person is a test identity
(tests/desktop/identities.py: a token that names "teacher"), as JupyterHub's login would make
them; the real hub, logins and browsers are tests/e2e/test_desktop_sharing.py.

An RFB message is handled by Xvnc in order, so a full update request sent after some input, and
its answer, say that the input was handled (or never arrived): no sleeps.
"""

from __future__ import annotations

import asyncio
import pwd
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import VIEWER_TOKEN, poll
from rfb import RFBClient
from tornado.httpclient import HTTPClientError

PEOPLE = {VIEWER_TOKEN: "teacher"}
PRESTART = {"RCSC3_DESKTOP_PRESTART": "1"}


def pointer_event(x: int, y: int, buttons: int = 0) -> bytes:
    return struct.pack(">BBHH", 5, buttons, x, y)


def key_event(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", 4, int(down), keysym)


def set_desktop_size(w: int, h: int) -> bytes:
    return struct.pack(">BxHHBx", 251, w, h, 1) + struct.pack(">IHHHHI", 0, 0, 0, w, h, 0)


def xdotool(server, *args: str) -> str:
    """xdotool on the owner's own display, as the owner (their X cookie)."""
    pw = pwd.getpwnam(server.user)
    display = server.status()["display"]
    env = {"DISPLAY": f":{display}", "XAUTHORITY": str(server.runtime_dir() / "Xauthority")}
    res = subprocess.run(["xdotool", *args], env=env, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                         capture_output=True, text=True, timeout=20, check=True)
    return res.stdout.strip()


def where(server) -> tuple[int, int]:
    fields = dict(kv.split(":") for kv in xdotool(server, "getmouselocation").split())
    return int(fields["x"]), int(fields["y"])


async def handled(client: RFBClient) -> None:
    """Return once Xvnc has handled everything `client` sent before (see the module docstring)."""
    await client.first_frame(timeout=20)


def viewers_api(server, token=True, action: str = "", name: str = "teacher", **body) -> requests.Response:
    headers = server.desktop_headers(token)
    if not action:
        return requests.get(server.url("desktop/api/viewers", token), headers=headers, timeout=20)
    return requests.post(server.url(f"desktop/api/viewers/{name}/{action}", token), headers=headers,
                         json=body, timeout=20)


async def connect(server, token=True, shared: bool = True) -> RFBClient:
    client = await RFBClient.over_websocket(server.ws_url("desktop-vnc/", token), headers={"Origin": server.base})
    await client.handshake(shared=shared)
    return client


@pytest.fixture(params=["raw", "websockify"])
def shared_desktop(request, server_factory):
    server = server_factory("rdtest3", config={"bridge": request.param}, env=PRESTART, people=PEOPLE)
    server.wait_running()
    return server


async def test_a_viewer_watches_and_only_the_owner_decides_what_else(shared_desktop):
    server = shared_desktop
    owner = await connect(server)
    viewer = other = None
    try:
        await owner.s.write(pointer_event(10, 10))
        await handled(owner)
        assert where(server) == (10, 10)
        size = xdotool(server, "getdisplaygeometry")
        # the teacher connects asking for an exclusive session: the owner stays connected
        viewer = await connect(server, VIEWER_TOKEN, shared=False)
        state = viewers_api(server).json()
        assert [(v["name"], v["control"], v["streams"]) for v in state["viewers"]] == [("teacher", False, 1)]
        assert viewers_api(server, VIEWER_TOKEN).json()["you"] == {"name": "teacher", "role": "viewer",
                                                                    "control": False, "ended": False}
        assert "viewers" not in viewers_api(server, VIEWER_TOKEN).json()  # a viewer sees only their own part
        # everything a viewer's client can send to act on the desktop: none of it arrives
        await viewer.s.write(pointer_event(300, 200, buttons=1) + pointer_event(300, 200) + key_event(0x61, True)
                             + key_event(0x61, False) + set_desktop_size(1024, 700)
                             + struct.pack(">BxxxI", 6, 5) + b"hello")
        await handled(viewer)
        assert where(server) == (10, 10)
        assert xdotool(server, "getdisplaygeometry") == size
        await handled(owner)  # the owner's session goes on

        # the viewer decides nothing: no control for themselves, no stop, no start
        assert viewers_api(server, VIEWER_TOKEN, "control", control=True).status_code == 403
        assert viewers_api(server, VIEWER_TOKEN, "end").status_code == 403
        r = requests.post(server.url("desktop/api/stop", VIEWER_TOKEN), headers=server.desktop_headers(VIEWER_TOKEN),
                          timeout=20)
        assert r.status_code == 403 and server.status()["state"] == "running"
        # nor does the owner's page token work for them, nor theirs for the owner
        assert requests.get(server.url("desktop/api/viewers", VIEWER_TOKEN), headers=server.desktop_headers(),
                            timeout=20).status_code == 403
        with pytest.raises(HTTPClientError) as refused:
            await RFBClient.over_websocket(server.ws_url("desktop-vnc/", True).replace(
                server.desktop_token(), server.desktop_token(VIEWER_TOKEN)), headers={"Origin": server.base})
        assert refused.value.code == 403

        # the owner gives control: the same input arrives
        r = viewers_api(server, action="control", control=True)
        assert r.status_code == 200 and r.json()["viewers"][0]["control"] is True
        await viewer.s.write(pointer_event(300, 200))
        await handled(viewer)
        assert where(server) == (300, 200)
        # ...and takes it back
        assert viewers_api(server, action="control", control=False).status_code == 200
        await viewer.s.write(pointer_event(400, 250))
        await handled(viewer)
        assert where(server) == (300, 200)
        # bad input is named
        r = viewers_api(server, action="control", control="yes")
        assert r.status_code == 400 and "control: expected" in r.json()["message"]
        assert viewers_api(server, action="end", name="nobody").status_code == 404

        # the owner ends the view: the viewer's stream closes within a second, and stays refused
        t0 = time.monotonic()
        assert viewers_api(server, action="end").status_code == 200
        with pytest.raises(ConnectionError):
            while True:  # bounded: the read times out
                await asyncio.wait_for(viewer.s.read(1 << 20), 2)
        assert time.monotonic() - t0 < 1.0
        assert viewer.s.ws.close_code == 4001
        assert viewers_api(server).json()["viewers"] == [] and viewers_api(server).json()["ended"] == ["teacher"]
        assert viewers_api(server, VIEWER_TOKEN).json()["you"]["ended"] is True
        with pytest.raises(HTTPClientError) as refused:
            await RFBClient.over_websocket(server.ws_url("desktop-vnc/", VIEWER_TOKEN), headers={"Origin": server.base})
        assert refused.value.code == 403
        # until the owner lets them back in
        assert viewers_api(server, action="allow").status_code == 200
        other = await connect(server, VIEWER_TOKEN)
        await handled(other)
        await handled(owner)
    finally:
        for c in (owner, viewer, other):
            if c is not None:
                c.close()


async def test_several_viewers_at_once_and_the_owners_own_tabs_are_no_viewers(shared_desktop):
    server = shared_desktop
    clients = [await connect(server), await connect(server)]  # the owner in two tabs
    try:
        clients += [await connect(server, VIEWER_TOKEN) for _ in range(3)]
        state = viewers_api(server).json()
        assert [(v["name"], v["streams"]) for v in state["viewers"]] == [("teacher", 3)]
        for c in clients:
            await handled(c)
        clients.pop().close()
        poll(lambda: viewers_api(server).json()["viewers"][0]["streams"] == 2, 10, "a closed tab to leave")
    finally:
        for c in clients:
            c.close()


def test_the_viewers_long_poll_answers_at_the_change(shared_desktop):
    server = shared_desktop
    version = viewers_api(server).json()["version"]

    async def watch_and_join() -> float:
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(None, lambda: requests.get(
            server.url(f"desktop/api/viewers?since={version}"), headers=server.desktop_headers(), timeout=40))
        viewer = await connect(server, VIEWER_TOKEN)
        joined = time.monotonic()
        try:
            answer = await waiting
            assert [v["name"] for v in answer.json()["viewers"]] == ["teacher"]
            return time.monotonic() - joined
        finally:
            viewer.close()

    assert asyncio.run(watch_and_join()) < 1.0
    r = requests.get(server.url("desktop/api/viewers?since=x"), headers=server.desktop_headers(), timeout=20)
    assert r.status_code == 400 and "since" in r.json()["message"]


def test_a_viewer_does_not_start_a_stopped_desktop(server_factory):
    server = server_factory("rdtest3", people=PEOPLE)  # no prestart: the desktop waits for its owner
    r = requests.get(server.url("desktop/api/status?start=1&geometry=1024x700", VIEWER_TOKEN),
                     headers=server.desktop_headers(VIEWER_TOKEN), timeout=20)
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    page = requests.get(server.url("desktop/", VIEWER_TOKEN), timeout=20).text
    assert '"role": "viewer"' in page and "rdtest3’s desktop" in page
    assert server.status()["state"] == "stopped"
    r = requests.post(server.url("desktop/api/start", VIEWER_TOKEN), headers=server.desktop_headers(VIEWER_TOKEN),
                      timeout=20)
    assert r.status_code == 403 and "only rdtest3" in r.text
    # a client's own claim to be the owner does not reach the supervisor
    forged = {**server.desktop_headers(VIEWER_TOKEN), "X-Rcsc3-Desktop-User": "rdtest3",
              "X-Rcsc3-Desktop-User-Proof": "x"}
    assert requests.post(server.url("desktop/api/start", VIEWER_TOKEN), headers=forged, timeout=20).status_code == 403
    assert server.status()["state"] == "stopped"


def last_activity(server) -> str:
    r = requests.get(server.url("api/status"), timeout=20)  # not activity itself (jupyter_server)
    r.raise_for_status()
    return r.json()["last_activity"]


@pytest.mark.parametrize("bridge", ["raw", "websockify"])
async def test_only_input_with_control_counts_as_activity(server_factory, bridge):
    """The idle culler's view (the server's last_activity): an open desktop whose pictures change all
    the time, and a viewer's held-back input, are no activity; the owner's pointer is."""
    server = server_factory("rdtest3", config={"bridge": bridge}, env=PRESTART, people=PEOPLE)
    server.wait_running()
    pw = pwd.getpwnam(server.user)
    display = server.status()["display"]
    gears = subprocess.Popen(["glxgears"], env={"DISPLAY": f":{display}",
                                                "XAUTHORITY": str(server.runtime_dir() / "Xauthority")},
                             user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    owner = viewer = None
    try:
        owner = await connect(server)
        viewer = await connect(server, VIEWER_TOKEN)
        server.desktop_token(VIEWER_TOKEN)  # both pages were loaded (a page load is activity) before:
        before = last_activity(server)
        await handled(owner)
        start = owner.s.received
        for _ in range(20):  # twenty changed pictures: glxgears keeps them coming
            await owner.request_update(incremental=True)
            while await asyncio.wait_for(owner.read_update(), 20) < 0:
                pass
        assert owner.s.received - start > 100_000
        await viewer.s.write(pointer_event(50, 60) + key_event(0x61, True) + key_event(0x61, False))
        await handled(viewer)
        assert last_activity(server) == before
        await owner.s.write(pointer_event(70, 80))
        await handled(owner)
        after = last_activity(server)
        assert after > before, (before, after)
    finally:
        gears.kill()
        gears.wait()
        for c in (owner, viewer):
            if c is not None:
                c.close()


class ServerMessages:
    """A client that asks for no pictures: what Xvnc sends it is clipboard traffic and fences, parsed here."""

    def __init__(self, client: RFBClient):
        self.client = client
        self.texts: list[tuple[int, bytes]] = []  # (length as sent: negative for ExtendedClipboard, payload)
        self.fences = 0

    async def next(self) -> None:
        (kind,) = struct.unpack("B", await self.client.s.read(1))
        if kind == 3:
            (length,) = struct.unpack(">xxxi", await self.client.s.read(7))
            self.texts.append((length, await self.client.s.read(abs(length))))
        elif kind == 248:
            _, n = struct.unpack(">xxxIB", await self.client.s.read(8))
            await self.client.s.read(n)
            self.fences += 1
        elif kind != 2:  # a bell is harmless
            raise AssertionError(f"unexpected server message {kind}")

    async def until(self, check, what: str, timeout: float = 15) -> None:
        async def loop():
            while not check():
                await self.next()
        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s; got {self.texts}") from None

    async def fence(self) -> None:
        """Return once Xvnc has answered a fence sent now: it sent everything it had for us before."""
        seen = self.fences
        await self.client.s.write(struct.pack(">BxxxIB", 248, 1 << 31, 0))
        await self.until(lambda: self.fences > seen, "answer to a fence")


EXTENDED_CLIPBOARD, FENCE = -1063131698, -312
CAPS, NOTIFY, PROVIDE = 1 << 24, 1 << 27, 1 << 28


def actions(texts: list[tuple[int, bytes]]) -> list[int]:
    """The ExtendedClipboard actions among Xvnc's messages (its caps, which name every action, left out)."""
    flags = [struct.unpack_from(">I", t)[0] for n, t in texts if n < 0]
    return [f & 0xFF000000 for f in flags if not f & CAPS]


@pytest.mark.parametrize("encodings", [[0, FENCE, EXTENDED_CLIPBOARD], [0, FENCE]], ids=["like-noVNC", "legacy"])
async def test_the_owners_clipboard_does_not_reach_a_viewer(shared_desktop, encodings):
    """Xvnc pushes the clipboard's text to clients that do not ask for notifications only; for a viewer
    the bridge asks that (rfb_client.py), and their request for the text is input they have no control for.
    The text is copied by an X program of the owner's (x_clipboard_owner.py), as a terminal would."""
    server = shared_desktop
    secret = "the owner's secret clipboard"
    observer = ServerMessages(await connect(server))  # the owner's other tab, a plain client: it gets the text pushed
    viewer = ServerMessages(await connect(server, VIEWER_TOKEN))
    pw = pwd.getpwnam(server.user)
    env = {"DISPLAY": f":{server.status()['display']}", "XAUTHORITY": str(server.runtime_dir() / "Xauthority")}
    copier = None
    try:
        await viewer.client.set_encodings(encodings)
        await viewer.fence()
        copier = subprocess.Popen(["/usr/bin/python3", str(Path(__file__).with_name("x_clipboard_owner.py")), secret],
                                  env=env, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        assert copier.stdout.readline().strip() == "copied"
        await observer.until(lambda: any(secret.encode() in t for _, t in observer.texts),
                             "text pushed to the owner's other tab")
        # the viewer is told that there is new text, and asks for it as noVNC does: nothing comes
        await viewer.until(lambda: NOTIFY in actions(viewer.texts), "notification of the new text")
        await viewer.client.s.write(struct.pack(">Bxxxi", 6, -4) + struct.pack(">I", (1 << 25) | 1))
        await viewer.fence()
        assert not any(secret.encode() in t for _, t in viewer.texts), viewer.texts
        assert PROVIDE not in actions(viewer.texts), viewer.texts
        assert not any(n >= 0 for n, _ in viewer.texts), viewer.texts  # no plain ServerCutText at all
    finally:
        if copier is not None:
            copier.kill()
            copier.wait()
        for c in (observer.client, viewer.client):
            c.close()
