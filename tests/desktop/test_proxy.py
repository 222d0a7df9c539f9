"""The proxied path, end to end: browser-side websocket -> jupyter-server-proxy -> Xvnc's unix socket.

Both bridges: "raw" (jupyter-server-proxy's raw_socket_proxy into Xvnc's socket;
server as test user rdtest1) and "websockify" (jupyter-server-proxy -> the stock
websockify on a unix socket -> Xvnc; server as rdtest4). Real jupyter server,
real jupyter-server-proxy, real Xvnc and xfce session; the RFB client is ours
(tests/desktop/rfb.py).
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from rfb import RFBClient
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClosedError

#: the page's websocket path is the same for both bridges; the fixture decides which one serves it
WS_PATH = "desktop-vnc/"
BRIDGES = {"raw": "desktop_server", "websockify": "websockify_server"}


@pytest.fixture(params=sorted(BRIDGES))
def bridged(request):
    """(bridge name, server whose desktop runs with that bridge)."""
    return request.param, request.getfixturevalue(BRIDGES[request.param])


async def test_rfb_handshake_and_first_framebuffer_update(bridged):
    bridge, desktop_server = bridged
    st = desktop_server.status()
    assert st["state"] == "running" and st["flavor"] == "tigervnc" and st["bridge"] == bridge
    client = await RFBClient.over_websocket(desktop_server.ws_url(WS_PATH),
                                            headers={"Origin": desktop_server.base})
    try:
        init = await client.handshake()
        assert init.width >= 640 and init.height >= 480
        seconds = await client.first_frame(timeout=20)
        assert seconds < 10
        # a full update of the whole screen in Raw: at least width*height*4 bytes came through
        assert client.s.received >= init.width * init.height * 4
    finally:
        client.close()


@pytest.mark.parametrize("why", ["no token", "foreign origin"])
async def test_websocket_refuses_without_login_or_from_foreign_origin(bridged, why):
    _, desktop_server = bridged
    url = desktop_server.ws_url(WS_PATH, token=False)
    if why == "no token":
        headers = {"Origin": desktop_server.base}
    else:
        # logged in by cookie, as a student's browser is; a token in the URL would skip Jupyter's origin check
        headers = {"Origin": "http://evil.example", "Cookie": desktop_server.login_cookie()}
    with pytest.raises((HTTPClientError, WebSocketClosedError, ConnectionError)) as err:
        client = await RFBClient.over_websocket(url, headers=headers)
        try:
            await asyncio.wait_for(client.handshake(), 5)
        finally:
            client.close()
    if isinstance(err.value, HTTPClientError):
        assert err.value.code in (302, 401, 403)


async def test_same_origin_cookie_login_is_enough(bridged):
    """The control for the refusals above: same cookie, our own Origin, no token -> connects."""
    _, desktop_server = bridged
    headers = {"Origin": desktop_server.base, "Cookie": desktop_server.login_cookie()}
    client = await RFBClient.over_websocket(desktop_server.ws_url(WS_PATH, token=False), headers=headers)
    try:
        assert (await asyncio.wait_for(client.handshake(), 10)).width > 0
    finally:
        client.close()


async def test_ten_connect_then_close_probes_do_not_lock_the_next_viewer_out(desktop_server):
    """TigerVNC blacklists a peer after ~5 unauthenticated connections; every proxied viewer is one peer."""
    url = desktop_server.ws_url(WS_PATH)
    for _ in range(10):
        probe = await RFBClient.over_websocket(url, headers={"Origin": desktop_server.base})
        await probe.s.read(12)  # the server greeted us; hang up before authenticating
        probe.close()
    for path in (desktop_server.runtime_dir() / "vnc.sock",):
        assert path.exists()
    t0 = time.monotonic()
    viewer = await RFBClient.over_websocket(url, headers={"Origin": desktop_server.base})
    try:
        await asyncio.wait_for(viewer.handshake(), 5)
        await viewer.first_frame(timeout=5)
    finally:
        viewer.close()
    assert time.monotonic() - t0 < 2.0, "the next viewer had to wait: blacklisted?"


def test_page_and_status(desktop_server):
    import requests
    page = requests.get(desktop_server.url("desktop/"), timeout=20)
    assert page.status_code == 200 and "<title>Remote Desktop</title>" in page.text
    st = desktop_server.status()
    assert st["gl"] == "software" and "software GL" in st["gl_description"]
    # noVNC comes from Debian's package, through the same proxy
    assert requests.get(desktop_server.url("desktop/novnc/core/rfb.js"), timeout=20).status_code == 200
    # the page carries noVNC inline, as the one bundle `make install` built (rcsc3 novnc-bundle) from
    # these very modules, and its own script too: a first visit requests nothing before the websocket
    assert "<script>var rcsc3NoVNC=" in page.text and len(page.text) > 50_000
    assert 'rel="modulepreload"' not in page.text and '"rfb": null' in page.text
    assert re.search(r'<script type="module">\s*// The Remote Desktop page', page.text)
    # the control API refuses requests a foreign page could forge
    assert requests.post(desktop_server.url("desktop/api/stop"), timeout=20).status_code == 403
    assert desktop_server.status()["state"] == "running"
