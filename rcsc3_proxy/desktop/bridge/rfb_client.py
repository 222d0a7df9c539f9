"""What a browser's RFB client sends to Xvnc, message by message: passed on, or held back when it is
input from someone who does not have control of the desktop.

Anyone but the desktop's owner watches it view-only (`viewers.py`), and that is enforced here, in
the bridge, not by noVNC's `viewOnly` (which the viewer's own browser could switch off). The
filter follows the client's side of the session from its first byte (RFC 6143 7.1-7.3 and 7.5,
plus the extensions noVNC 1.3 uses) and knows each message's length, so it can drop whole
messages and never desynchronise Xvnc:

* passed: SetPixelFormat, SetEncodings, FramebufferUpdateRequest, EnableContinuousUpdates,
  ClientFence: what a picture needs;
* input, passed only with control: KeyEvent, PointerEvent, ClientCutText (the clipboard, also
  ExtendedClipboard's negative lengths), QEMU extended KeyEvent, SetDesktopSize (a resize of the
  owner's screen) and xvp (power operations);
* a viewer's ClientInit always asks for a shared session, so a viewer never disconnects the
  owner (Xvnc also runs with AlwaysShared: `vnc.py`);
* the owner's clipboard stays the owner's: Xvnc pushes the clipboard's text to every client that
  did not tell it, by ExtendedClipboard's caps, to only *notify* it of changes (a client without
  that extension, or before its caps arrive, or whose caps offer to take the text unasked). So
  for a viewer the bridge tells Xvnc itself, right after their ClientInit and with each of their
  SetEncodings (which always names ExtendedClipboard then): notify only. The viewer's own caps
  never reach Xvnc, and the text itself comes only when asked for, which is input (ClientCutText):
  only with control. The price: a viewer's client gets ExtendedClipboard's messages (a
  ServerCutText with a negative length) even if it did not name the extension. noVNC, the only
  client the desktop page serves, does; a client that reads that length as unsigned would stall,
  which is better than the owner's clipboard reaching it.

A viewer's stream the filter cannot follow (another RFB version or security type, a message type
it does not know) is `error`, and the bridge closes it. For the owner, it just stops looking
(`opaque`): everything passes, and every message then counts as input.

When control is taken back, `set_control(False)` returns the releases of what the viewer still
held down (keys, mouse buttons), so nothing stays pressed on the owner's desktop.
"""

from __future__ import annotations

import struct

SUPPORTED_VERSIONS = (b"RFB 003.007\n", b"RFB 003.008\n")
SECURITY_NONE, SECURITY_VNC = 1, 2

SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST = 0, 2, 3
KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT = 4, 5, 6
ENABLE_CONTINUOUS_UPDATES, CLIENT_FENCE, XVP, SET_DESKTOP_SIZE, QEMU = 150, 248, 250, 251, 255
QEMU_EXTENDED_KEY = 0

#: ExtendedClipboard (RFB community extension): the pseudo-encoding, the caps and notify actions, the text format
EXTENDED_CLIPBOARD = -1063131698  # 0xC0A1E5CE
CLIPBOARD_CAPS, CLIPBOARD_NOTIFY, CLIPBOARD_TEXT = 1 << 24, 1 << 27, 1
#: what the bridge tells Xvnc of a viewer's clipboard: only notify me (of text), never send it unasked
VIEWER_CLIPBOARD_CAPS = (struct.pack(">Bxxxi", CLIENT_CUT_TEXT, -8)
                         + struct.pack(">II", CLIPBOARD_CAPS | CLIPBOARD_NOTIFY | CLIPBOARD_TEXT, 0))
VIEWER_ENCODINGS = struct.pack(">BxHi", SET_ENCODINGS, 1, EXTENDED_CLIPBOARD) + VIEWER_CLIPBOARD_CAPS

#: message types that act on the desktop: only someone with control may send them
INPUT = frozenset({KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT, XVP, SET_DESKTOP_SIZE, QEMU})
NAMES = {SET_PIXEL_FORMAT: "SetPixelFormat", SET_ENCODINGS: "SetEncodings", UPDATE_REQUEST: "FramebufferUpdateRequest",
         KEY_EVENT: "KeyEvent", POINTER_EVENT: "PointerEvent", CLIENT_CUT_TEXT: "ClientCutText",
         ENABLE_CONTINUOUS_UPDATES: "EnableContinuousUpdates", CLIENT_FENCE: "ClientFence", XVP: "xvp",
         SET_DESKTOP_SIZE: "SetDesktopSize", QEMU: "QEMU extended KeyEvent"}


def message_size(buf: bytes | bytearray) -> int | None:
    """Length of the client message at the start of `buf` (None: more bytes are needed to tell;
    -1: a message type this filter does not know)."""
    kind = buf[0]
    fixed = {SET_PIXEL_FORMAT: 20, UPDATE_REQUEST: 10, KEY_EVENT: 8, POINTER_EVENT: 6,
             ENABLE_CONTINUOUS_UPDATES: 10, XVP: 4}.get(kind)
    if fixed is not None:
        return fixed
    if kind == SET_ENCODINGS:  # padding, a count, 4 bytes each
        return None if len(buf) < 4 else 4 + 4 * struct.unpack_from(">H", buf, 2)[0]
    if kind == CLIENT_CUT_TEXT:  # padding, a length (negative: ExtendedClipboard, as long), the text
        return None if len(buf) < 8 else 8 + abs(struct.unpack_from(">i", buf, 4)[0])
    if kind == CLIENT_FENCE:  # padding, flags, a length byte, the payload
        return None if len(buf) < 9 else 9 + buf[8]
    if kind == SET_DESKTOP_SIZE:  # padding, width, height, a screen count, padding, 16 bytes per screen
        return None if len(buf) < 8 else 8 + 16 * buf[6]
    if kind == QEMU:  # a subtype; noVNC sends only the extended key event
        if len(buf) < 2:
            return None
        return 12 if buf[1] == QEMU_EXTENDED_KEY else -1
    return -1


class ClientFilter:
    """One browser's stream towards Xvnc. `feed()` it the browser's bytes in order."""

    def __init__(self, control: bool = True, strict: bool = False):
        #: whether input passes (the owner's always does; a viewer's once the owner gives control)
        self.control = control
        #: a viewer's stream: what cannot be followed is an error; its session is always shared
        self.strict = strict
        #: why the stream cannot go on ('' while it can)
        self.error = ""
        #: whether the filter stopped looking (the owner's stream only): everything passes as input
        self.opaque = False
        #: input messages held back so far
        self.dropped = 0
        self._phase = "version"  # the client's handshake: "security", "auth", "init", then "messages"
        self._buf = bytearray()  # the start of a message not complete yet
        self._skip = 0  # bytes still to come of a ClientCutText's text
        self._skip_passes = False  # whether they go on to Xvnc
        self._keys: set[bytes] = set()  # key events held down (with control), as their "up" message
        self._buttons = 0  # the pointer's button mask, and where it is
        self._pointer = (0, 0)

    def set_control(self, control: bool) -> bytes:
        """Give or take control; returns what to send to Xvnc now (when it is taken: the releases of
        what is held down). A ClientCutText under way goes on as it started."""
        release = b""
        if self.control and not control:
            release = b"".join(sorted(self._keys))
            if self._buttons:
                release += struct.pack(">BBHH", POINTER_EVENT, 0, *self._pointer)
            self._keys.clear()
            self._buttons = 0
        self.control = control
        return release

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[bytes, bool]:
        """The browser's bytes -> (what goes on to Xvnc, whether input went with it)."""
        if self.error:
            return b"", False
        if self.opaque:
            return bytes(data), bool(data)
        out = bytearray()
        took_input = False
        data = memoryview(data)
        if self._skip:
            n = min(self._skip, len(data))
            if self._skip_passes:
                out += data[:n]
                took_input = True
            self._skip -= n
            data = data[n:]
        self._buf += data
        while self._buf and not self.error and not self.opaque:
            if self._phase != "messages":
                if not self._handshake(out):
                    break
                continue
            size = message_size(self._buf)
            if size is None:
                break
            if size < 0:
                self._cannot_follow(f"message type {self._buf[0]}", out)
                break
            kind = self._buf[0]
            if kind == CLIENT_CUT_TEXT:  # the text can be long: passed or dropped as it comes
                caps = self.strict and self._clipboard_caps(size)
                if caps is None:
                    break  # the flags that tell caps apart have not come yet
                passes = not caps and self._allowed(kind)
                here = min(len(self._buf), size)
                if passes:
                    out += self._buf[:here]
                    took_input = True
                del self._buf[:here]
                self._skip, self._skip_passes = size - here, passes
                continue
            if len(self._buf) < size:
                break
            msg = bytes(self._buf[:size])
            del self._buf[:size]
            if kind == SET_ENCODINGS and self.strict:
                out += self._viewer_encodings(msg)
                continue
            if kind in INPUT:
                if not self._allowed(kind):
                    continue
                self._track(msg)
                took_input = True
            out += msg
        if self.opaque:
            took_input = True
        return bytes(out), took_input

    def _clipboard_caps(self, size: int) -> bool | None:
        """Whether the ClientCutText at the start of the buffer is ExtendedClipboard's caps (None: can't tell yet)."""
        if struct.unpack_from(">i", self._buf, 4)[0] >= 0 or size < 12:
            return False  # plain text, or an extended message too short to have flags
        if len(self._buf) < 12:
            return None
        return bool(struct.unpack_from(">I", self._buf, 8)[0] & CLIPBOARD_CAPS)

    @staticmethod
    def _viewer_encodings(msg: bytes) -> bytes:
        """A viewer's SetEncodings, naming ExtendedClipboard, then the bridge's notify-only caps."""
        encodings = list(struct.unpack_from(f">{(len(msg) - 4) // 4}i", msg, 4))
        if EXTENDED_CLIPBOARD not in encodings:
            encodings.append(EXTENDED_CLIPBOARD)
            msg = struct.pack(f">BxH{len(encodings)}i", SET_ENCODINGS, len(encodings), *encodings)
        return msg + VIEWER_CLIPBOARD_CAPS

    def _allowed(self, kind: int) -> bool:
        if self.control:
            return True
        self.dropped += 1
        return False

    def _track(self, msg: bytes) -> None:
        """Remember what input holds down, to release it when control is taken back."""
        kind = msg[0]
        if kind == KEY_EVENT:
            up = msg[:1] + b"\0" + msg[2:]
            (self._keys.add if msg[1] else self._keys.discard)(up)
        elif kind == QEMU:
            up = msg[:2] + b"\0\0" + msg[4:]
            (self._keys.add if struct.unpack_from(">H", msg, 2)[0] else self._keys.discard)(up)
        elif kind == POINTER_EVENT:
            self._buttons = msg[1]
            self._pointer = struct.unpack_from(">HH", msg, 2)

    def _handshake(self, out: bytearray) -> bool:
        """One step of the client's handshake, if its bytes are all here (False: wait for more)."""
        size = {"version": 12, "security": 1, "auth": 16, "init": 1}[self._phase]
        if len(self._buf) < size:
            return False
        msg = bytes(self._buf[:size])
        del self._buf[:size]
        if self._phase == "version":
            if msg not in SUPPORTED_VERSIONS:
                out += msg
                self._cannot_follow(f"RFB version {msg.strip()!r}", out)
                return False
            self._phase = "security"
        elif self._phase == "security":
            if msg[0] not in (SECURITY_NONE, SECURITY_VNC):
                out += msg
                self._cannot_follow(f"security type {msg[0]}", out)
                return False
            self._phase = "auth" if msg[0] == SECURITY_VNC else "init"
        elif self._phase == "auth":
            self._phase = "init"
        else:  # ClientInit: the shared flag
            if self.strict:
                msg = b"\x01" + VIEWER_ENCODINGS  # shared; and the clipboard is not pushed to a viewer from the start
            self._phase = "messages"
        out += msg
        return True

    def _cannot_follow(self, what: str, out: bytearray) -> None:
        if self.strict:
            self.error = f"the viewer sent {what}, which the view-only bridge cannot follow"
            out.clear()
            return
        self.opaque = True  # the owner's own stream: nothing to hold back
        out += self._buf
        self._buf.clear()
