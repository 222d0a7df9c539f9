"""The `desktop-vnc` websocket bridge (bridge "raw"): the browser's websocket <-> Xvnc's unix socket.

It runs inside the Jupyter server, as jupyter-server-proxy's `raw_socket_proxy`
does, and is a subclass of that handler: login, token, Origin and the 405 for
plain HTTP are jupyter-server-proxy's, unchanged. Only the data path is ours,
because on a 2-core node every CPU cycle the proxy spends is taken from Xvnc and
the student's GL program (benchmarks/desktop.py measures both):

* TCP_NODELAY on the browser's connection. Without it Nagle holds the last,
  partial segment of each framebuffer update until the browser ACKs the rest,
  which costs a round trip per update: ~0.85x the raw socket's updates/s.
* Xvnc -> browser: one reusable buffer (`recv_into`), the websocket header
  written in place in front of the payload, one `send()` per chunk straight to
  the socket while tornado has nothing queued: no per-chunk bytes object, no
  header+payload concatenation, no future per frame.
* Backpressure: when the browser can't take a chunk at once, the rest goes to
  tornado's queue and Xvnc's socket is not read until it is out, so a slow
  link slows Xvnc down (it then skips frames) instead of growing our memory.
* The "last activity" (idle culling) is recorded at most once a second, not per message.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time

from jupyter_server_proxy.rawsocket import RawSocketHandler
from tornado.iostream import IOStream, StreamClosedError

log = logging.getLogger("rcsc3.desktop")

#: Bytes read from Xvnc per chunk (one websocket frame each). Xvnc's socket buffer holds
#: ~200 KiB, so one read takes everything queued; larger buys nothing.
CHUNK = 256 * 1024
#: Room in front of the payload for the longest websocket header (2 + 8 bytes).
HEADROOM = 10
#: Seconds between two "last activity" records.
ACTIVITY_EVERY = 1.0
#: Header on the 101 response: which bridge answered (tests and curious admins).
BRIDGE_HEADER = "X-Rcsc3-Bridge"


def ws_header(n: int) -> bytes:
    """The server-to-client header of one final, unmasked binary frame of `n` payload bytes (RFC 6455 5.2)."""
    if n < 126:
        return struct.pack("!BB", 0x82, n)
    if n <= 0xFFFF:
        return struct.pack("!BBH", 0x82, 126, n)
    return struct.pack("!BBQ", 0x82, 127, n)


class _FromVnc(asyncio.BufferedProtocol):
    """Xvnc's side of the bridge: asyncio reads straight into the handler's buffer."""

    def __init__(self, bridge: VncBridgeHandler):
        self.bridge = bridge

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.bridge._vnc = transport  # before the first read can arrive, whatever the loop's ordering

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.bridge._payload

    def buffer_updated(self, nbytes: int) -> None:
        self.bridge._forward(nbytes)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bridge._vnc_lost(exc)


class VncBridgeHandler(RawSocketHandler):
    """jupyter-server-proxy's raw socket handler with a leaner, backpressured data path."""

    name = "desktop-vnc"
    unix_socket: str | None = None  # set on the subclass `handler_for` makes

    _vnc: asyncio.Transport | None = None
    _last_activity = 0.0

    def get_compression_options(self) -> None:
        # RFB is compressed already (Tight/JPEG/zlib) or deliberately not (Raw): deflating it again costs CPU only
        return None

    async def prepare(self, *args, **kwargs) -> None:
        await super().prepare(*args, **kwargs)
        self.set_header(BRIDGE_HEADER, "rcsc3")

    async def proxy_open(self, host: str, port: int, proxied_path: str = "") -> None:
        """Connect to Xvnc's socket once the browser's websocket is accepted."""
        # one buffer per connection, reused for every chunk: the header goes into its first HEADROOM bytes
        self._view = memoryview(bytearray(HEADROOM + CHUNK))
        self._payload = self._view[HEADROOM:]
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: _FromVnc(self), self.unix_socket)
        self.set_nodelay(True)
        self._activity()
        log.debug("desktop-vnc: bridged to %s", self.unix_socket)

    def _activity(self) -> None:
        now = time.monotonic()
        if now - self._last_activity >= ACTIVITY_EVERY:
            self._last_activity = now
            self._record_activity()

    def _forward(self, n: int) -> None:
        """Send the `n` bytes just read from Xvnc as one websocket frame."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        header = ws_header(n)
        start = HEADROOM - len(header)
        self._view[start:HEADROOM] = header
        frame = self._view[start:HEADROOM + n]
        stream = conn.stream
        sent = 0
        # Straight to the socket only when nothing is queued before us (order) and the stream
        # is plain TCP (an SSLIOStream's socket must be written through tornado).
        if type(stream) is IOStream and not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
        if sent < len(frame):
            self._queue(stream, bytes(frame[sent:]))  # a copy: the buffer is read into again
        self._activity()

    def _queue(self, stream: IOStream, rest: bytes) -> None:
        """The browser is behind: let tornado send the rest and read no more from Xvnc until it has."""
        try:
            done = stream.write(rest)
        except StreamClosedError:
            self.close()
            return
        vnc = self._vnc
        if vnc is None:
            return
        vnc.pause_reading()

        def resume(fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is None and not vnc.is_closing():
                vnc.resume_reading()

        done.add_done_callback(resume)

    def _vnc_lost(self, exc: Exception | None) -> None:
        log.info("desktop-vnc: Xvnc closed the connection (%s)", exc or "EOF")
        self.close()

    def on_message(self, message: str | bytes) -> None:
        """Browser -> Xvnc: input events and update requests, small; asyncio's transport buffers."""
        self._activity()
        if self._vnc is not None:
            self._vnc.write(message.encode() if isinstance(message, str) else message)

    def on_close(self) -> None:
        if self._vnc is not None:
            self._vnc.close()


def handler_for(unix_socket: str) -> type[VncBridgeHandler]:
    """A handler class bound to one desktop's socket (tornado makes one handler instance per request)."""
    return type("DesktopVncBridge", (VncBridgeHandler,), {"unix_socket": unix_socket})


def install(web_app, unix_socket: str) -> bool:
    """Serve `<base_url>desktop-vnc/` with our bridge on the running Jupyter server's `web_app`.

    Called while jupyter-server-proxy loads its entry points, i.e. before it adds its own
    handlers; tornado tries host rules in the order they were added, so ours answers and
    jupyter-server-proxy's `desktop-vnc` entry stays only as the fallback when this returns False.
    """
    from jupyter_server.utils import url_path_join

    try:
        base_url = web_app.settings["base_url"]
    except (AttributeError, KeyError):
        return False
    web_app.add_handlers(".*", [(url_path_join(base_url, "desktop-vnc", "(.*)"), handler_for(unix_socket))])
    return True
