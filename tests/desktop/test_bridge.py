"""rcsc3's own `desktop-vnc` bridge (bridge "raw") and the viewer-sized start.

Real jupyter server, real Xvnc; the websocket client is tornado's, the RFB client ours.
"""

from __future__ import annotations

import asyncio
import re
import struct

import pytest
from rfb import RFBClient
from test_rfb_prelude import NOVNC_ENCODINGS, set_encodings
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rcsc3_proxy.desktop.bridge.handler import BRIDGE_HEADER, ends_an_update, ws_header
from rcsc3_proxy.desktop.bridge.rfb_prelude import SECURITY_NONE, VERSION
from rcsc3_proxy.desktop.manager import parse_geometry


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


async def _ws(server):
    req = HTTPRequest(server.ws_url("desktop-vnc/"), headers={"Origin": server.base})
    return await websocket_connect(req, max_message_size=64 << 20)


async def test_the_bridge_starts_the_session_for_the_viewer(desktop_server):
    """rfb_prelude.py against a real Xvnc: the handshake comes answered, and the first picture
    comes for the single request the viewer makes (Xvnc's own answer to it has no picture)."""
    ws = await _ws(desktop_server)
    try:
        # all four handshake messages arrive before the viewer has answered anything, one message each
        version, types, result, server_init = [await asyncio.wait_for(ws.read_message(), 20) for _ in range(4)]
        assert version == VERSION and SECURITY_NONE in types[1:] and result == b"\0\0\0\0"
        width, height = struct.unpack_from(">HH", server_init)
        assert len(server_init) == 24 + struct.unpack_from(">I", server_init, 20)[0] and width >= 200 and height >= 200
        # noVNC's answers (dropped by the bridge), its encodings, and one full update request
        for msg in (VERSION, b"\x01", b"\x01", set_encodings(NOVNC_ENCODINGS),
                    struct.pack(">BBHHHH", 3, 0, 0, 0, width, height)):
            await ws.write_message(msg, binary=True)
        received = b""
        while not ends_an_update(received):  # bounded by the read timeout
            msg = await asyncio.wait_for(ws.read_message(), 20)
            assert msg is not None, f"connection closed after {len(received)} bytes"
            received += msg
        # Xvnc's answer to the request (pseudo-rectangles: cursor, desktop size), then the picture for the
        # bridge's request: an update of LastRect length whose first rectangle is Tight, ended by LastRect
        assert re.search(rb"\x00\x00\xff\xff.{8}\x00\x00\x00\x07", received, re.DOTALL), received[:300].hex()
    finally:
        ws.close()


async def test_a_viewer_asking_for_an_exclusive_session_is_closed(desktop_server):
    """The bridge answered "shared" for it; it answers otherwise: it cannot be served, and nobody else is kicked."""
    ws = await _ws(desktop_server)
    try:
        for _ in range(4):
            assert await asyncio.wait_for(ws.read_message(), 20) is not None
        for msg in (VERSION, b"\x01", b"\x00"):
            await ws.write_message(msg, binary=True)
        assert await asyncio.wait_for(ws.read_message(), 20) is None  # closed by the bridge
    finally:
        ws.close()
    assert desktop_server.status()["state"] == "running"
