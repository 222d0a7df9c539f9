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
* Gathering: Xvnc writes a framebuffer update in many small pieces (a full screen in Tight/JPEG:
  ~60 writes of 0.1-3 KiB over ~15 ms). The browser handles each websocket message in a task of
  its own, on the page's main thread where noVNC parses it: sent one message per piece, the first
  full screen took ~200 ms to reach the canvas on the lab node, gathered ~70 ms. noVNC draws an
  update only once it has all of it, and it asks for LastRect, so Xvnc ends each update with a
  LastRect rectangle (and TigerVNC then a fence): the bridge gathers until it sees that end, for
  at most GATHER_S or GATHER_MAX bytes. A viewer that did not ask for LastRect gets each piece
  as it comes, as before: the bridge could not tell where its updates end.
* The RFB handshake's three answers and the request for the first picture come from the bridge,
  next to Xvnc, rather than from the browser four round trips later (`rfb_prelude.py`).
* Backpressure: when the browser can't take a chunk at once, the rest goes to
  tornado's queue and Xvnc's socket is not read until it is out, so a slow
  link slows Xvnc down (it then skips frames) instead of growing our memory.
* No "last activity" here: pictures flowing to an open tab are no activity (idle culling); the
  route's guard (`route.StreamGuard`) records the input of whoever has control, and filters what
  a viewer sends (`from_browser`).

Writing to tornado's websocket stream directly (`ws_connection.stream`, its `socket`, `writing()`)
relies on tornado's internals: setup.cfg pins tornado's range, tests/desktop/test_tornado_shape.py
fails when they change shape, and where they are not what the bridge expects it sends through
`write_message()` instead (`direct_write_possible`), slower but the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from jupyter_server_proxy.rawsocket import RawSocketHandler
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError

from .rfb_prelude import RfbPrelude

log = logging.getLogger("rcsc3.desktop")

#: Size of the buffer Xvnc's bytes are read (and gathered) into; at most this much per websocket
#: frame. Xvnc's socket buffer holds ~200 KiB, so one read takes everything queued; larger buys nothing.
CHUNK = 256 * 1024
#: How long the first unsent byte from Xvnc waits for more to go out with it (see the module docstring).
GATHER_S = 0.002
#: Sent at once when this much has gathered: a large update gains nothing by waiting.
GATHER_MAX = 64 * 1024
#: A LastRect rectangle's header (x, y, width, height 0; encoding -224): the end of an update.
LAST_RECT_HEADER = bytes(8) + struct.pack(">i", -224)
#: ServerFence message type, and the longest fence payload (RFB fence extension).
SERVER_FENCE, FENCE_MAX_PAYLOAD = 248, 64

#: Room in front of the payload for the longest websocket header (2 + 8 bytes).
HEADROOM = 10
#: Header on the 101 response: which bridge answered (tests and curious admins).
BRIDGE_HEADER = "X-Rcsc3-Bridge"


def ends_an_update(data: memoryview | bytes) -> bool:
    """Whether `data` ends with the end of a framebuffer update: a LastRect rectangle's header,
    alone or followed by one ServerFence (TigerVNC's round-trip probe after each update)."""
    tail = bytes(data[-(len(LAST_RECT_HEADER) + 9 + FENCE_MAX_PAYLOAD):])
    if tail.endswith(LAST_RECT_HEADER):
        return True
    for payload in range(FENCE_MAX_PAYLOAD + 1):
        start = len(tail) - 9 - payload
        if start < len(LAST_RECT_HEADER):
            break
        if tail[start] == SERVER_FENCE and tail[start + 8] == payload:
            return tail[start - len(LAST_RECT_HEADER):start] == LAST_RECT_HEADER
    return False


def direct_write_possible(conn) -> bool:
    """Whether tornado's websocket connection has the shape the direct write path relies on: a plain
    IOStream (not SSL) with a socket that has send(), and writing() telling whether tornado queued bytes."""
    stream = getattr(conn, "stream", None)
    return (type(stream) is IOStream and callable(getattr(stream, "writing", None))
            and callable(getattr(getattr(stream, "socket", None), "send", None)))


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
        return self.bridge._unused()

    def buffer_updated(self, nbytes: int) -> None:
        self.bridge._gathered(nbytes)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bridge._vnc_lost(exc)


class VncBridgeHandler(RawSocketHandler):
    """jupyter-server-proxy's raw socket handler with a leaner, backpressured data path."""

    name = "desktop-vnc"
    unix_socket: str | None = None  # set on the subclass `route.raw_handler` makes

    _vnc: asyncio.Transport | None = None
    _direct: bool | None = None  # whether frames go straight to the socket (decided at the first one)
    _pending = 0  # bytes read from Xvnc into the payload buffer, not sent yet
    _flush_timer: asyncio.TimerHandle | None = None
    _prelude: RfbPrelude | None = None  # the session's start, while the bridge helps with it
    _gather = False  # whether the viewer's updates are gathered (it asked for LastRect)

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
        self._prelude = RfbPrelude()
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: _FromVnc(self), self.unix_socket)
        self.set_nodelay(True)
        log.debug("desktop-vnc: bridged to %s", self.unix_socket)

    def from_browser(self, data: bytes) -> bytes | None:
        """What of the browser's bytes goes on to Xvnc (None: close). The guarded route filters here."""
        return data

    def to_vnc(self, data: bytes) -> None:
        """Bytes of the bridge's own for Xvnc (e.g. the releases when a viewer's control is taken back)."""
        if self._vnc is not None and not self._vnc.is_closing():
            self._vnc.write(data)

    def _unused(self) -> memoryview:
        """Where the next read from Xvnc goes: after what is gathered. Never less than
        CHUNK - GATHER_MAX bytes, since reaching GATHER_MAX sends it all."""
        return self._payload[self._pending:]

    def _gathered(self, n: int) -> None:
        prelude = self._prelude
        if prelude is not None:
            if not prelude.server_done:
                self._handshake_from_vnc(bytes(self._payload[:n]))
                return
            request = prelude.after_handshake(self._payload[self._pending:self._pending + n])
            if request and self._vnc is not None:
                self._vnc.write(request)
            self._drop_prelude_when_finished()
        self._pending += n
        if not self._gather or self._pending >= GATHER_MAX or ends_an_update(self._payload[:self._pending]):
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(GATHER_S, self._flush)

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _flush(self) -> None:
        """Send what has gathered from Xvnc as one websocket message."""
        self._cancel_flush_timer()
        n, self._pending = self._pending, 0
        if n:
            self._forward(n)

    def _handshake_from_vnc(self, data: bytes) -> None:
        """Xvnc's handshake messages: answered here, passed on one websocket message each."""
        prelude = self._prelude
        messages, answers = prelude.from_server(data)
        if answers and self._vnc is not None:
            self._vnc.write(answers)
        for msg in messages:
            try:
                sent = self.write_message(msg, binary=True)
            except WebSocketClosedError:  # the browser is gone
                self.close()
                return
            # a close while it is queued fails the future; nobody awaits it, so it must not log as "never retrieved"
            sent.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._drop_prelude_when_finished()

    def _drop_prelude_when_finished(self) -> None:
        """Once the prelude has nothing left to do, the data path no longer consults it."""
        if self._prelude is not None and self._prelude.finished:
            self._prelude = None

    def _forward(self, n: int) -> None:
        """Send the first `n` bytes of the payload buffer as one websocket frame."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if self._direct is None:
            self._direct = direct_write_possible(conn)
            if not self._direct:
                log.info("desktop-vnc: tornado's websocket stream is not the plain IOStream the direct path "
                         "expects (%s); sending through write_message()", type(getattr(conn, "stream", None)).__name__)
        if not self._direct:
            self._send_message(bytes(self._payload[:n]))
            return
        header = ws_header(n)
        start = HEADROOM - len(header)
        self._view[start:HEADROOM] = header
        frame = self._view[start:HEADROOM + n]
        stream = conn.stream
        sent = 0
        # Straight to the socket only when nothing is queued before us (order); an SSLIOStream's
        # socket must be written through tornado (direct_write_possible said no then).
        if not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
        if sent < len(frame):
            self._queue(stream.write, bytes(frame[sent:]))  # a copy: the buffer is read into again

    def _send_message(self, payload: bytes) -> None:
        """The fallback path: tornado frames and queues it; backpressure as with the direct path."""
        self._queue(lambda data: self.write_message(data, binary=True), payload)

    def _queue(self, write, rest: bytes) -> None:
        """Let tornado send `rest` and read no more from Xvnc until it has (the browser is behind)."""
        try:
            done = write(rest)
        except (StreamClosedError, WebSocketClosedError):
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
        self._flush()  # Xvnc's last words (e.g. why it refused) before the close
        self.close()

    def on_message(self, message: str | bytes) -> None:
        """Browser -> Xvnc: input events and update requests, small; asyncio's transport buffers."""
        data = self.from_browser(message.encode() if isinstance(message, str) else message)
        if data is None:
            return
        prelude = self._prelude
        if prelude is not None:
            data = prelude.from_client(data)
            if data is None:
                log.warning("desktop-vnc: the viewer answered the RFB handshake differently from the bridge; closing")
                self.close()
                return
            self._gather = prelude.marks_update_ends
            self._drop_prelude_when_finished()
        if self._vnc is not None and data:
            self._vnc.write(data)

    def on_close(self) -> None:
        self._cancel_flush_timer()
        if self._vnc is not None:
            self._vnc.close()
