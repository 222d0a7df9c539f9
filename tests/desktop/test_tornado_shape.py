"""The raw bridge's direct write path against the installed tornado: the internals it relies on are there
and behave as it expects; where they are not (TLS here), it falls back to write_message().

The bridge (rcsc3_proxy/desktop/bridge/handler.py) writes a websocket frame's header and payload
straight to `ws_connection.stream.socket.send()` while `stream.writing()` says tornado queued
nothing. setup.cfg pins tornado's range; this fails first when a new tornado changes that shape.
A real tornado websocket server and client in this process; the bridge's own methods do the writing.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess

from tornado import httpserver, netutil, web, websocket
from tornado.iostream import IOStream

from rcsc3_proxy.desktop.bridge import handler as bridge

PAYLOADS = [b"x", bytes(range(256)) * 3, b"\x07" * 70_000, b"\x01" * 200_000]


class Frames(websocket.WebSocketHandler):
    """Sends PAYLOADS with the bridge's own `_forward`, then records what it saw of tornado's stream."""

    _forward = bridge.VncBridgeHandler._forward
    _send_message = bridge.VncBridgeHandler._send_message
    _queue = bridge.VncBridgeHandler._queue
    _direct = None
    _vnc = None
    seen: dict = {}

    def open(self) -> None:
        self._view = memoryview(bytearray(bridge.HEADROOM + bridge.CHUNK))
        self._payload = self._view[bridge.HEADROOM:]
        for payload in PAYLOADS:
            self._payload[:len(payload)] = payload
            self._forward(len(payload))
        conn = self.ws_connection
        Frames.seen = {"direct": self._direct, "stream": type(conn.stream), "is_closing": conn.is_closing()}


async def _receive(url: str, ssl_options=None) -> list[bytes]:
    from tornado.httpclient import HTTPRequest

    ws = await websocket.websocket_connect(HTTPRequest(url, ssl_options=ssl_options), max_message_size=1 << 24)
    try:
        return [await asyncio.wait_for(ws.read_message(), 10) for _ in PAYLOADS]
    finally:
        ws.close()


def _serve(ssl_options=None) -> tuple[httpserver.HTTPServer, int]:
    [sock] = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(web.Application([(r"/", Frames)]), ssl_options=ssl_options)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


async def test_plain_tcp_takes_the_direct_path_and_the_browser_gets_the_same_messages():
    server, port = _serve()
    try:
        assert await _receive(f"ws://127.0.0.1:{port}/") == PAYLOADS
    finally:
        server.stop()
    assert Frames.seen == {"direct": True, "stream": IOStream, "is_closing": False}


async def test_over_tls_the_bridge_falls_back_to_write_message(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    server, port = _serve(server_ctx)
    try:
        assert await _receive(f"wss://127.0.0.1:{port}/", client_ctx) == PAYLOADS
    finally:
        server.stop()
    assert Frames.seen["direct"] is False and Frames.seen["stream"] is not IOStream


def test_the_shape_check_refuses_what_it_does_not_know():
    class NoSocket(IOStream):
        pass

    assert not bridge.direct_write_possible(None)
    assert not bridge.direct_write_possible(type("Conn", (), {"stream": object()})())
    assert not bridge.direct_write_possible(type("Conn", (), {"stream": NoSocket.__new__(NoSocket)})())


class Slow(websocket.WebSocketHandler):
    """writing() is what orders the direct path after tornado's queue: True while tornado holds bytes."""

    result: dict = {}

    async def open(self) -> None:
        stream = self.ws_connection.stream
        before = stream.writing()
        big = b"\x02" * (32 << 20)  # more than any socket buffer takes at once
        done = stream.write(bridge.ws_header(len(big)) + big)
        queued = stream.writing()
        await done
        Slow.result = {"before": before, "queued": queued, "after": stream.writing()}


async def test_writing_says_whether_tornado_still_holds_bytes():
    [sock] = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(web.Application([(r"/", Slow)]))
    server.add_sockets([sock])
    try:
        ws = await websocket.websocket_connect(f"ws://127.0.0.1:{sock.getsockname()[1]}/", max_message_size=64 << 20)
        msg = await asyncio.wait_for(ws.read_message(), 30)
        ws.close()
    finally:
        server.stop()
    assert len(msg) == 32 << 20
    assert Slow.result == {"before": False, "queued": True, "after": False}
