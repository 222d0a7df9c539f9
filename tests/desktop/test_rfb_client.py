"""The view-only filter of a browser's RFB stream (rcsc3_proxy/desktop/bridge/rfb_client.py), message by message.

Pure protocol logic, fed the bytes noVNC 1.3 sends (its RFB.messages); the same filter runs
against real Xvnc and Chromium in test_viewers.py and tests/e2e/test_desktop_sharing.py.
"""

from __future__ import annotations

import struct

import pytest
from test_rfb_prelude import NOVNC_ENCODINGS, set_encodings

from rcsc3_proxy.desktop.bridge.rfb_client import (
    EXTENDED_CLIPBOARD,
    VIEWER_CLIPBOARD_CAPS,
    VIEWER_ENCODINGS,
    ClientFilter,
    message_size,
)

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security None, ClientInit (shared)
PIXEL_FORMAT = bytes([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 1280, 683)
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 1280, 683)
FENCE = struct.pack(">BxxxIB", 248, 0x80000003, 3) + b"abc"
KEY_DOWN = struct.pack(">BBxxI", 4, 1, 0x61)
KEY_UP = struct.pack(">BBxxI", 4, 0, 0x61)
QEMU_DOWN = struct.pack(">BBHII", 255, 0, 1, 0x62, 48)
POINTER = struct.pack(">BBHH", 5, 1, 300, 200)
CUT = struct.pack(">BxxxI", 6, 5) + b"hello"
EXT_CAPS = struct.pack(">Bxxxi", 6, -8) + struct.pack(">II", 0x1F000001, 1024)  # caps: 1 KiB of text unasked
EXT_REQUEST = struct.pack(">Bxxxi", 6, -4) + struct.pack(">I", 0x02000001)  # ExtendedClipboard: send me the text
RESIZE = struct.pack(">BxHHBx", 251, 1024, 700, 1) + struct.pack(">IHHHHI", 0, 0, 0, 1024, 700, 0)
XVP = bytes([250, 0, 1, 2])  # xvp shutdown
PASSING = [PIXEL_FORMAT, set_encodings(NOVNC_ENCODINGS), REQUEST, CONTINUOUS, FENCE]
INPUT = [KEY_DOWN, KEY_UP, QEMU_DOWN, POINTER, CUT, EXT_REQUEST, RESIZE, XVP]
#: what the bridge says to Xvnc for a viewer: shared session, and the clipboard only on request
VIEWER_HANDSHAKE = HANDSHAKE + VIEWER_ENCODINGS


def feed_all(f: ClientFilter, data: bytes, step: int | None = None) -> tuple[bytes, bool]:
    out, took = b"", False
    for i in range(0, len(data), step or max(1, len(data))):
        o, t = f.feed(data[i:i + (step or len(data))])
        out, took = out + o, took or t
    return out, took


@pytest.mark.parametrize("msg", PASSING + INPUT + [EXT_CAPS])
def test_every_message_noVNC_sends_has_its_length(msg):
    for cut in range(1, len(msg)):  # a partial message never claims a size it cannot know yet
        size = message_size(msg[:cut])
        assert size is None or size == len(msg)
    assert message_size(msg) == len(msg)


def viewer_sees(parts: list[bytes]) -> bytes:
    """What reaches Xvnc of a viewer's PASSING messages: each SetEncodings followed by the bridge's clipboard caps."""
    return b"".join(m + VIEWER_CLIPBOARD_CAPS if m[0] == 2 else m for m in parts)


@pytest.mark.parametrize("step", [None, 1, 3, 7])
def test_a_viewer_without_control_sends_only_what_a_picture_needs(step):
    stream = HANDSHAKE + b"".join(PASSING) + b"".join(INPUT) + EXT_CAPS + REQUEST
    f = ClientFilter(control=False, strict=True)
    out, took = feed_all(f, stream, step)
    assert out == VIEWER_HANDSHAKE + viewer_sees(PASSING) + REQUEST
    assert not took and f.dropped == len(INPUT) and not f.error


@pytest.mark.parametrize("step", [None, 1, 5])
def test_with_control_a_viewers_input_passes_unchanged_and_counts_as_input(step):
    f = ClientFilter(control=True, strict=True)
    out, took = feed_all(f, HANDSHAKE + b"".join(PASSING) + b"".join(INPUT) + EXT_CAPS, step)
    # never their own clipboard caps: with these Xvnc would send them the owner's text unasked
    assert out == VIEWER_HANDSHAKE + viewer_sees(PASSING) + b"".join(INPUT)
    assert took and f.dropped == 0


@pytest.mark.parametrize("step", [None, 1])
def test_the_owners_stream_passes_unchanged(step):
    stream = b"RFB 003.008\n\x01\x00" + b"".join(PASSING) + b"".join(INPUT) + EXT_CAPS
    out, took = feed_all(ClientFilter(control=True, strict=False), stream, step)
    assert out == stream and took


def test_a_viewers_encodings_always_name_extended_clipboard():
    f = ClientFilter(control=False, strict=True)
    f.feed(HANDSHAKE)
    out, _ = f.feed(set_encodings([7, 0, -224]))
    assert out == set_encodings([7, 0, -224, EXTENDED_CLIPBOARD]) + VIEWER_CLIPBOARD_CAPS
    assert message_size(VIEWER_CLIPBOARD_CAPS) == len(VIEWER_CLIPBOARD_CAPS) == 16
    # caps + notify, text of size 0: Xvnc may tell of changes, and sends the text only when asked
    assert struct.unpack(">II", VIEWER_CLIPBOARD_CAPS[8:]) == ((1 << 24) | (1 << 27) | 1, 0)


def test_update_requests_alone_are_no_input():
    f = ClientFilter(control=True)
    f.feed(HANDSHAKE)
    assert f.feed(REQUEST * 3 + FENCE) == (REQUEST * 3 + FENCE, False)
    assert f.feed(POINTER)[1] is True


def test_a_long_clipboard_text_is_dropped_or_passed_as_it_comes():
    text = b"x" * 200_000
    msg = struct.pack(">BxxxI", 6, len(text)) + text
    for control in (False, True):
        f = ClientFilter(control=control, strict=True)
        f.feed(HANDSHAKE)
        out = b"".join(f.feed(msg[i:i + 4096])[0] for i in range(0, len(msg), 4096)) + f.feed(REQUEST)[0]
        assert out == (msg + REQUEST if control else REQUEST)


def test_control_given_mid_stream_applies_from_the_next_message():
    f = ClientFilter(control=False, strict=True)
    f.feed(HANDSHAKE)
    assert f.feed(POINTER) == (b"", False)
    assert f.set_control(True) == b""
    assert f.feed(POINTER) == (POINTER, True)


def test_taking_control_back_releases_what_the_viewer_holds_down():
    f = ClientFilter(control=True, strict=True)
    f.feed(HANDSHAKE)
    f.feed(KEY_DOWN + QEMU_DOWN + struct.pack(">BBxxI", 4, 1, 0x63) + struct.pack(">BBxxI", 4, 0, 0x63) + POINTER)
    release = f.set_control(False)
    # 'a' (KeyEvent) and 'b' (QEMU) go up, 'c' was released already, the button at (300, 200) too
    assert sorted([release[:8], release[8:20], release[20:]]) == sorted(
        [KEY_UP, struct.pack(">BBHII", 255, 0, 0, 0x62, 48), struct.pack(">BBHH", 5, 0, 300, 200)])
    assert f.feed(KEY_DOWN) == (b"", False)
    assert f.set_control(False) == b""  # nothing held any more


def test_a_viewer_always_asks_for_a_shared_session():
    exclusive = b"RFB 003.008\n\x01\x00"
    assert ClientFilter(control=True, strict=True).feed(exclusive)[0] == VIEWER_HANDSHAKE
    assert ClientFilter(control=True, strict=False).feed(exclusive)[0] == exclusive  # the owner's choice


def test_vnc_authentication_is_followed_too():
    f = ClientFilter(control=False, strict=True)
    stream = b"RFB 003.008\n\x02" + bytes(range(16)) + b"\x01" + POINTER + REQUEST
    assert f.feed(stream)[0] == stream[:-len(POINTER) - len(REQUEST)] + VIEWER_ENCODINGS + REQUEST


@pytest.mark.parametrize("stream, what", [
    (b"RFB 003.003\n", "RFB version"),
    (b"RFB 003.008\n\x13", "security type 19"),
    (HANDSHAKE + bytes([7, 0, 0, 0]), "message type 7"),
    (HANDSHAKE + bytes([255, 1, 0, 0]), "message type 255"),  # QEMU audio: not noVNC's
])
def test_what_the_filter_cannot_follow_closes_a_viewer_but_not_the_owner(stream, what):
    viewer = ClientFilter(control=False, strict=True)
    assert viewer.feed(stream + POINTER)[0] == b"" and what in viewer.error
    assert viewer.feed(REQUEST) == (b"", False)
    owner = ClientFilter(control=True, strict=False)
    out, took = owner.feed(stream + POINTER)
    assert out == stream + POINTER and took and owner.opaque and not owner.error
    assert owner.feed(REQUEST) == (REQUEST, True)  # opaque: every message counts as input then
