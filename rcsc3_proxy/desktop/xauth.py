"""A fresh X cookie per desktop start, written before the display number is known.

With `-displayfd` the X server picks the display, so the cookie can't be filed
under `:N` in advance. An Xauthority entry of family *Wild* with an empty display
number matches any display: Xvnc (`-auth`) loads it at start, and the session's
clients (XAUTHORITY=the same file) find it for whatever display was chosen.
"""

from __future__ import annotations

import os
import secrets
import struct

FAMILY_WILD = 0xFFFF
MIT_COOKIE = b"MIT-MAGIC-COOKIE-1"


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def write_cookie_file(path: str) -> bytes:
    """Write a 0600 Xauthority file holding one new wildcard MIT cookie; return the cookie."""
    cookie = secrets.token_bytes(16)
    entry = struct.pack(">H", FAMILY_WILD) + _field(b"") + _field(b"") + _field(MIT_COOKIE) + _field(cookie)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(entry)
    os.replace(tmp, path)
    return cookie
