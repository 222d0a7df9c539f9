"""rcsc3's own `desktop-vnc` bridge (bridge "raw") and the viewer-sized start.

Real jupyter server, real Xvnc; the websocket client is tornado's, the RFB client ours.
"""

from __future__ import annotations

import struct

import pytest
from rfb import RFBClient
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rcsc3_proxy.bridge import BRIDGE_HEADER, ws_header
from rcsc3_proxy.manager import parse_geometry


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 256 * 1024])
def test_ws_header_is_rfc6455_for_every_length_class(n):
    h = ws_header(n)
    assert h[0] == 0x82  # FIN, binary, no RSV bits
    assert not h[1] & 0x80  # server frames are never masked
    if n < 126:
        assert len(h) == 2 and h[1] == n
    elif n <= 0xFFFF:
        assert len(h) == 4 and h[1] == 126 and struct.unpack("!H", h[2:])[0] == n
    else:
        assert len(h) == 10 and h[1] == 127 and struct.unpack("!Q", h[2:])[0] == n


@pytest.mark.parametrize(("text", "expected"), [("1280x683", "1280x683"), ("0800x0600", "800x600"), ("199x600", None),
                                                ("8193x600", None), ("1280x", None), ("1280x683;rm", None), ("", None)])
def test_parse_geometry_accepts_only_sane_sizes(text, expected):
    assert parse_geometry(text) == expected


async def test_the_websocket_is_served_by_the_rcsc3_bridge(desktop_server):
    """Our handler, not jupyter-server-proxy's, answers desktop-vnc/ (it was added first)."""
    req = HTTPRequest(desktop_server.ws_url("desktop-vnc/"), headers={"Origin": desktop_server.base})
    ws = await websocket_connect(req)
    try:
        assert ws.headers.get(BRIDGE_HEADER) == "rcsc3"
        assert (await ws.read_message()).startswith(b"RFB ")
    finally:
        ws.close()


async def test_the_websockify_bridge_is_not_replaced(websockify_server):
    req = HTTPRequest(websockify_server.ws_url("desktop-vnc/"), headers={"Origin": websockify_server.base})
    ws = await websocket_connect(req)
    try:
        assert ws.headers.get(BRIDGE_HEADER) is None
        assert (await ws.read_message()).startswith(b"RFB ")
    finally:
        ws.close()


async def test_the_desktop_starts_at_the_viewers_size(server_factory):
    """The page asks with its screen area's size: Xvnc starts at it, so noVNC has nothing to resize."""
    server = server_factory("rdtest3")
    st = server.status(start=1, wait=1, geometry="1024x700")
    assert st["state"] == "running", st
    client = await RFBClient.over_websocket(server.ws_url("desktop-vnc/"), headers={"Origin": server.base})
    try:
        init = await client.handshake()
        assert (init.width, init.height) == (1024, 700)
    finally:
        client.close()
    # once running, another size asks for nothing (a second viewer does not restart or resize it)
    assert server.status(start=1, wait=1, geometry="800x600")["display"] == st["display"]
