"""The start of an RFB session, sped up by the bridge next to Xvnc.

Between the websocket opening and noVNC's first picture there are four round trips between
the browser and Xvnc that carry no picture. Through the proxies each costs 10-60 ms on the lab
node, and noVNC only starts on them once it has loaded. The bridge (`handler.py`) talks to
Xvnc over a unix socket, in about a millisecond, so it takes them over:

* The handshake (RFC 6143 7.1-7.3): protocol version, security type, shared session. The
  bridge answers as noVNC does (3.8, None, shared) and passes Xvnc's messages on unchanged,
  one websocket message each (noVNC handles one handshake step per message). noVNC then
  reads them and gives the same answers, which the bridge drops instead of sending them to
  Xvnc a second time.
* The first picture. Xvnc answers a viewer's first FramebufferUpdateRequest with the
  pseudo-rectangles alone (desktop size, name, cursor) and sends the screen only for the
  next request, which noVNC makes once that answer has reached it. The bridge makes that
  request (incremental, same area) as soon as Xvnc's answer starts. Should Xvnc have sent
  the screen at once, the request only waits for the next change, as noVNC's own does.

Anything else ends the prelude at that point, and from there both sides talk directly:
another protocol version, no security type None, a failed security result; a viewer whose
first request is incremental or comes after messages the bridge does not know. A viewer
that answers what the bridge answered for it differently (a non-shared session, another
type) cannot be served: `from_client` returns None and the bridge closes the connection.
"""

from __future__ import annotations

import struct

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SHARED = b"\x01"
#: The LastRect pseudo-encoding: an update of unannounced length ends with a rectangle of this encoding.
LAST_RECT = -224
#: Pseudo-encodings that start Xvnc's picture-less first answer (TigerVNC and TurboVNC send
#: what changed of these alone, before any picture): ExtendedDesktopSize, DesktopSize,
#: DesktopName, Cursor, XCursor, VMware cursor, LED state.
NO_DATA_PSEUDO_ENCODINGS = frozenset({-308, -223, -307, -239, -240, 0x574D5664, -261})
#: How far into either side's messages after the handshake the first update request and
#: Xvnc's answer to it are looked for; past this the prelude gives up (never in practice).
WATCH_LIMIT = 64 * 1024


def _client_message_size(buf: bytearray) -> int | None:
    """Size of the client message at the start of `buf`: 0 if unknown to the prelude, None if incomplete."""
    kind = buf[0]
    if kind == 0:  # SetPixelFormat
        return 20
    if kind == 2:  # SetEncodings: a count, then 4 bytes each
        return None if len(buf) < 4 else 4 + 4 * struct.unpack_from(">H", buf, 2)[0]
    if kind == 3:  # FramebufferUpdateRequest
        return 10
    if kind == 6:  # ClientCutText: padding, a length (negative: ExtendedClipboard, as long), the text
        return None if len(buf) < 8 else 8 + abs(struct.unpack_from(">i", buf, 4)[0])
    return 0


def _server_message_size(buf: bytearray) -> int | None:
    """Size of a server message that may come before the first FramebufferUpdate: 0 if unknown, None if incomplete."""
    kind = buf[0]
    if kind in (2, 150):  # Bell, EndOfContinuousUpdates
        return 1
    if kind == 3:  # ServerCutText: padding, a length, the text (a negative length: ExtendedClipboard, as long)
        return None if len(buf) < 8 else 8 + abs(struct.unpack_from(">i", buf, 4)[0])
    if kind == 248:  # ServerFence: padding, flags, a length, the payload
        return None if len(buf) < 9 else 9 + buf[8]
    return 0


class RfbPrelude:
    """The start of one bridged session; feed it both sides' bytes in order."""

    def __init__(self) -> None:
        self._server = bytearray()  # Xvnc's bytes not yet split into messages
        self._phase = "version"  # Xvnc's handshake: then "security", "result", "serverinit", "done"
        self._owed = bytearray()  # answers given for the client that it has not sent yet
        self._client = bytearray()  # the client's messages after the handshake, until its first request
        self._watch_client = True
        self._first_request: bytes | None = None  # the client's first (full) FramebufferUpdateRequest
        self._watch_server = True  # Xvnc's messages after the handshake, until its first FramebufferUpdate
        self._seen = 0  # bytes watched after the handshake, both sides
        self.marks_update_ends = False  # whether the client asked for LastRect (see handler.py)

    @property
    def server_done(self) -> bool:
        """Whether Xvnc's side of the handshake is over (its messages now pass as they come)."""
        return self._phase == "done"

    @property
    def finished(self) -> bool:
        """Whether there is nothing left for the prelude to do on either side."""
        return self.server_done and not self._owed and not self._watch_client and not self._watch_server

    def from_server(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Take Xvnc's bytes during its handshake; return the messages for the client (one
        websocket message each) and the answers to write to Xvnc."""
        self._server += data
        messages: list[bytes] = []
        answers = bytearray()
        while not self.server_done:
            msg = self._next_handshake_message()
            if msg is None:
                break
            messages.append(msg)
            answers += self._answer(msg)
        if self.server_done and self._server:
            rest = bytes(self._server)
            self._server.clear()
            messages.append(rest)
            answers += self.after_handshake(rest)
        return messages, bytes(answers)

    def after_handshake(self, data: bytes | memoryview) -> bytes:
        """Watch Xvnc's bytes after its handshake (they pass unchanged); return what to write to
        Xvnc: the request for the first picture, once Xvnc's answer to the first request starts."""
        if not self._watch_server:
            return b""
        self._server += data
        while self._server:
            if self._server[0] == 0:  # a FramebufferUpdate: the answer to the client's first request
                if len(self._server) < 16:  # its header and its first rectangle's
                    break
                nrects, encoding = struct.unpack_from(">2xH8xi", self._server)
                self._stop_watching_server()
                # only for an answer without the picture: else the request would be one more
                # outstanding than the viewer's own, and its updates would come in pairs
                if self._first_request is None or not nrects or encoding not in NO_DATA_PSEUDO_ENCODINGS:
                    return b""
                x, y, w, h = struct.unpack_from(">HHHH", self._first_request, 2)
                return struct.pack(">BBHHHH", 3, 1, x, y, w, h)  # incremental, same area
            size = _server_message_size(self._server)
            if size is None:
                break
            if size == 0:
                self._stop_watching_server()
                break
            if len(self._server) < size:
                break
            self._count(size)
            del self._server[:size]
        return b""

    def from_client(self, data: bytes) -> bytes | None:
        """Take the client's bytes; return what goes on to Xvnc, or None if the client's answer
        differs from the one the bridge gave for it (the connection cannot go on)."""
        if self._owed:
            n = min(len(self._owed), len(data))
            if data[:n] != self._owed[:n]:
                return None
            del self._owed[:n]
            data = data[n:]
        if self._watch_client and data and self.server_done and not self._owed:
            self._watch_client_bytes(data)
        return data

    def _watch_client_bytes(self, data: bytes) -> None:
        """Find the client's first FramebufferUpdateRequest among its first messages."""
        self._client += data
        while self._client:
            size = _client_message_size(self._client)
            if size == 0:  # a message the prelude does not know: the first request is the client's business
                self._stop_watching_client()
                return
            if size is None or len(self._client) < size:
                return
            msg = bytes(self._client[:size])
            del self._client[:size]
            self._count(size)
            if msg[0] == 2:
                encodings = struct.unpack_from(f">{(size - 4) // 4}i", msg, 4)
                self.marks_update_ends = LAST_RECT in encodings
            if msg[0] == 3:
                self._first_request = msg if msg[1] == 0 else None
                self._stop_watching_client()
                return

    def _stop_watching_client(self) -> None:
        self._watch_client = False
        self._client.clear()
        if self._first_request is None:  # nothing to ask for on the client's behalf
            self._stop_watching_server()

    def _stop_watching_server(self) -> None:
        self._watch_server = False
        self._server.clear()

    def _count(self, n: int) -> None:
        self._seen += n
        if self._seen > WATCH_LIMIT:
            self._first_request = None
            self._stop_watching_client()
            self._stop_watching_server()

    def _next_handshake_message(self) -> bytes | None:
        """Xvnc's next whole handshake message, or None until it is all here (or the prelude ends)."""
        buf = self._server
        if self._phase == "version":
            size = 12
        elif self._phase == "security":
            if not buf:
                return None
            if buf[0] == 0:  # no types: a failure reason follows; the client reads it itself
                self._end_handshake()
                return None
            size = 1 + buf[0]
        elif self._phase == "result":
            size = 4
        else:  # serverinit: size, pixel format, then the desktop name's length and the name
            if len(buf) < 24:
                return None
            size = 24 + struct.unpack_from(">I", buf, 20)[0]
        if len(buf) < size:
            return None
        msg = bytes(buf[:size])
        del buf[:size]
        return msg

    def _answer(self, msg: bytes) -> bytes:
        """The answer to one handshake message (b"" when the client must answer it itself)."""
        phase = self._phase
        answer = b""
        if phase == "version" and msg == VERSION:
            answer, self._phase = VERSION, "security"
        elif phase == "security" and SECURITY_NONE in msg[1:]:
            answer, self._phase = bytes([SECURITY_NONE]), "result"
        elif phase == "result" and msg == b"\0\0\0\0":
            answer, self._phase = SHARED, "serverinit"  # ClientInit
        elif phase == "serverinit":
            self._phase = "done"  # the session starts: watch for the first picture
        else:  # something the bridge does not answer for the client: it talks to Xvnc itself
            self._end_handshake()
        self._owed += answer
        return answer

    def _end_handshake(self) -> None:
        """The handshake goes on (or fails) between client and Xvnc directly; no first-picture help."""
        self._phase = "done"
        self._first_request = None
        self._watch_client = False
        self._watch_server = False
