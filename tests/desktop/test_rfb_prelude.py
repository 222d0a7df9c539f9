"""The bridge's RFB prelude (rcsc3_proxy/desktop/bridge/rfb_prelude.py) and its gathering of Xvnc's pieces.

Pure protocol logic, fed the bytes a TigerVNC server and noVNC exchange; the same code runs
against a real Xvnc and Chromium in test_bridge.py and test_browser.py.
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from rcsc3_proxy.desktop.bridge import handler as bridge
from rcsc3_proxy.desktop.bridge.rfb_prelude import VERSION, RfbPrelude

SERVER_INIT = struct.pack(">HH", 1280, 683) + bytes.fromhex("2018000100ff00ff00ff100800000000") + \
    struct.pack(">I", 8) + b"student1"
#: noVNC 1.3's SetEncodings for a 24-bit screen: Tight first, then pseudo-encodings incl. LastRect (-224)
NOVNC_ENCODINGS = [1, 7, -260, 5, 2, 0, -26, -254, -223, -224, -258, -308, -309, -312, -313, -307, -1063131698,
                   0x574D5664, -239]


def set_encodings(encodings: list[int]) -> bytes:
    return struct.pack(">BxH", 2, len(encodings)) + b"".join(struct.pack(">i", e) for e in encodings)


def update_request(incremental: bool, w: int = 1280, h: int = 683) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), 0, 0, w, h)


def update_start(first_encoding: int) -> bytes:
    """A FramebufferUpdate header with one rectangle header (its payload left out)."""
    return struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, 0, 1280, 683, first_encoding)


def handshake(p: RfbPrelude) -> list[tuple[list[bytes], bytes]]:
    return [p.from_server(m) for m in (VERSION, b"\x01\x01", b"\0\0\0\0", SERVER_INIT)]


def test_the_bridge_answers_the_handshake_as_novnc_would_and_drops_novncs_answers():
    p = RfbPrelude()
    steps = handshake(p)
    # each server message goes to the viewer as a message of its own (noVNC: one step per message)
    assert [m for m, _ in steps] == [[VERSION], [b"\x01\x01"], [b"\0\0\0\0"], [SERVER_INIT]]
    assert [a for _, a in steps] == [VERSION, b"\x01", b"\x01", b""]  # 3.8, security None, shared
    assert p.server_done and not p.finished
    # noVNC then gives the same three answers: none of them reaches Xvnc a second time
    assert [p.from_client(d) for d in (VERSION, b"\x01", b"\x01")] == [b"", b"", b""]
    # what comes after them passes unchanged
    assert p.from_client(b"\0" * 20) == b"\0" * 20


def test_server_bytes_split_anywhere_give_the_same_messages_and_answers():
    whole = VERSION + b"\x01\x01" + b"\0\0\0\0" + SERVER_INIT
    p = RfbPrelude()
    messages, answers = [], b""
    for i in range(len(whole)):
        m, a = p.from_server(whole[i:i + 1])
        messages += m
        answers += a
    assert messages == [VERSION, b"\x01\x01", b"\0\0\0\0", SERVER_INIT]
    assert answers == VERSION + b"\x01\x01"


def test_the_bridge_asks_for_the_first_picture_when_xvncs_first_answer_has_none():
    p = RfbPrelude()
    handshake(p)
    for d in (VERSION, b"\x01", b"\x01", b"\0" * 20, set_encodings(NOVNC_ENCODINGS)):
        p.from_client(d)
    assert p.marks_update_ends  # noVNC asked for LastRect: the bridge may gather its updates
    assert p.from_client(update_request(False)) == update_request(False)
    # Xvnc (TigerVNC 1.12, as recorded): a fence, EndOfContinuousUpdates, its ExtendedClipboard caps
    # (a negative length), then its answer, starting with the desktop size (no picture)
    assert p.after_handshake(bytes.fromhex("f80000008000000001009603000000fffffff8")) == b""
    assert p.after_handshake(bytes.fromhex("1f00000100000000")) == b""
    assert p.after_handshake(update_start(-308)) == update_request(True)  # same area, incremental
    assert p.finished


@pytest.mark.parametrize(("client", "first_encoding"), [
    # Xvnc's first answer is the picture itself (Tight, Raw): else the viewer would have one request
    # more outstanding than it made, and its updates would come in pairs
    ([set_encodings([0]), update_request(False)], 7),
    ([set_encodings([0]), update_request(False)], 0),
    # the viewer's first request is incremental: it asked for changes only
    ([set_encodings(NOVNC_ENCODINGS), update_request(True)], -308),
    # a client message the prelude does not know (a KeyEvent) before the first request
    ([struct.pack(">BBxxI", 4, 1, 0x61), update_request(False)], -308),
], ids=["picture-tight", "picture-raw", "incremental", "unknown-message"])
def test_no_request_on_the_viewers_behalf_when_it_is_not_the_first_picture_missing(client, first_encoding):
    p = RfbPrelude()
    handshake(p)
    for d in [VERSION, b"\x01", b"\x01", *client]:
        p.from_client(d)
    assert p.after_handshake(update_start(first_encoding)) == b""
    assert p.finished


def test_only_a_viewer_asking_for_lastrect_has_its_updates_gathered():
    for encodings, marks in ((NOVNC_ENCODINGS, True), ([0], False)):
        p = RfbPrelude()
        handshake(p)
        for d in (VERSION, b"\x01", b"\x01", set_encodings(encodings)):
            p.from_client(d)
        assert p.marks_update_ends is marks


def test_a_viewer_answering_otherwise_cannot_be_served():
    """The bridge told Xvnc "shared"; a viewer asking for an exclusive session gets its connection closed."""
    p = RfbPrelude()
    handshake(p)
    assert p.from_client(VERSION) == b""
    assert p.from_client(b"\x01") == b""
    assert p.from_client(b"\x00") is None


def test_without_security_none_the_viewer_answers_itself():
    """E.g. a VNC password: the bridge answered the version only; the viewer's choice and password pass."""
    p = RfbPrelude()
    assert p.from_server(VERSION) == ([VERSION], VERSION)
    assert p.from_server(b"\x01\x02") == ([b"\x01\x02"], b"")  # VncAuth only
    assert p.server_done
    challenge = bytes(range(16))
    assert p.from_server(challenge) == ([challenge], b"")  # passes as it comes
    assert p.from_client(VERSION + b"\x02") == b"\x02"  # its version dropped (given), its choice passed
    assert p.from_client(b"r" * 16) == b"r" * 16
    assert p.finished


def test_a_failed_security_result_and_its_reason_pass_to_the_viewer():
    p = RfbPrelude()
    p.from_server(VERSION)
    p.from_server(b"\x01\x01")
    reason = b"\0\0\0\x01" + struct.pack(">I", 6) + b"denied"
    messages, answers = p.from_server(reason)
    assert b"".join(messages) == reason and answers == b""
    assert p.server_done


def test_another_protocol_version_is_left_to_the_viewer():
    p = RfbPrelude()
    assert p.from_server(b"RFB 003.003\n") == ([b"RFB 003.003\n"], b"")
    assert p.from_client(b"RFB 003.003\n") == b"RFB 003.003\n"
    assert p.finished


@pytest.mark.parametrize(("tail", "ends"), [
    (bridge.LAST_RECT_HEADER, True),
    (bridge.LAST_RECT_HEADER + bytes.fromhex("f8000000800000010101"), True),  # TigerVNC's fence after it
    (bridge.LAST_RECT_HEADER + bytes.fromhex("f800000080000001") + bytes([3]) + b"abc", True),
    (b"\x07" * 40, False),
    (bridge.LAST_RECT_HEADER + b"\x07", False),
    (b"\xf8" * 30, False),
])
def test_ends_an_update(tail, ends):
    assert bridge.ends_an_update(b"\x55" * 200 + tail) is ends


class _Gatherer(bridge.VncBridgeHandler):
    """The bridge's gathering alone: no tornado request, `_forward` records what would be sent."""

    def __init__(self, gather: bool):  # noqa: D107 - a test double; tornado's constructor is not wanted here
        self._view = memoryview(bytearray(bridge.HEADROOM + bridge.CHUNK))
        self._payload = self._view[bridge.HEADROOM:]
        self._gather = gather
        self.sent: list[bytes] = []

    def _forward(self, n: int) -> None:
        self.sent.append(bytes(self._payload[:n]))

    def read(self, data: bytes) -> None:
        """As asyncio's BufferedProtocol does: into `_unused()`, then `_gathered(n)`."""
        buf = self._unused()
        buf[:len(data)] = data
        self._gathered(len(data))


async def test_pieces_of_an_update_go_out_as_one_message_at_its_end():
    g = _Gatherer(gather=True)
    pieces = [b"\x00\x00\xff\xff", b"a" * 1500, b"b" * 300, b"c" * 2800 + bridge.LAST_RECT_HEADER]
    for piece in pieces[:-1]:
        g.read(piece)
    assert g.sent == []  # waiting for the rest of the update
    g.read(pieces[-1])
    assert g.sent == [b"".join(pieces)]


async def test_gathering_waits_at_most_gather_s():
    g = _Gatherer(gather=True)
    g.read(b"x" * 1000)
    g.read(b"y" * 1000)
    t0 = time.monotonic()
    while not g.sent and time.monotonic() - t0 < 1:  # bounded: the timer fires after GATHER_S
        await asyncio.sleep(bridge.GATHER_S / 4)
    assert g.sent == [b"x" * 1000 + b"y" * 1000]


async def test_a_large_update_is_not_held_back():
    g = _Gatherer(gather=True)
    g.read(b"z" * bridge.GATHER_MAX)
    assert g.sent == [b"z" * bridge.GATHER_MAX]


async def test_without_lastrect_every_piece_goes_out_as_it_comes():
    """A viewer that did not ask for LastRect: the bridge cannot tell where an update ends, so it does not wait."""
    g = _Gatherer(gather=False)
    g.read(b"p" * 10)
    g.read(b"q" * 20)
    assert g.sent == [b"p" * 10, b"q" * 20]
