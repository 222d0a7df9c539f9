"""Just enough of the RFB (VNC) protocol to prove a desktop answers: handshake, ServerInit, updates.

Works over a websocket (the proxied path) or a plain unix socket (the raw path),
so tests and benchmarks/desktop.py compare the two on equal terms.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

from tornado.websocket import websocket_connect

RAW, COPYRECT, TIGHT, ZRLE = 0, 1, 7, 16


@dataclass
class ServerInit:
    width: int
    height: int
    name: str


class _Stream:
    """Byte-exact reads over websocket messages or an asyncio stream."""

    def __init__(self, ws=None, reader: asyncio.StreamReader | None = None, writer: asyncio.StreamWriter | None = None):
        self.ws, self.reader, self.writer = ws, reader, writer
        self.buf = bytearray()
        self.received = 0

    async def _more(self) -> None:
        if self.ws is not None:
            msg = await self.ws.read_message()
            if msg is None:
                raise ConnectionError(f"websocket closed ({self.ws.close_code} {self.ws.close_reason})")
            data = msg if isinstance(msg, bytes) else msg.encode()
        else:
            data = await self.reader.read(1 << 20)
            if not data:
                raise ConnectionError("socket closed")
        self.received += len(data)
        self.buf += data

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def write(self, data: bytes) -> None:
        if self.ws is not None:
            await self.ws.write_message(data, binary=True)
        else:
            self.writer.write(data)
            await self.writer.drain()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        elif self.writer is not None:
            self.writer.close()


class RFBClient:
    def __init__(self, stream: _Stream):
        self.s = stream
        self.init: ServerInit | None = None

    @classmethod
    async def over_websocket(cls, url: str, headers: dict | None = None, timeout: float = 20) -> RFBClient:
        from tornado.httpclient import HTTPRequest
        ws = await asyncio.wait_for(websocket_connect(HTTPRequest(url, headers=headers or {}),
                                                      max_message_size=64 << 20), timeout)
        return cls(_Stream(ws=ws))

    @classmethod
    async def over_unix(cls, path: str) -> RFBClient:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
        return cls(_Stream(reader=reader, writer=writer))

    async def handshake(self, shared: bool = True) -> ServerInit:
        version = await self.s.read(12)
        if not version.startswith(b"RFB "):
            raise AssertionError(f"not an RFB server: {version!r}")
        await self.s.write(b"RFB 003.008\n")
        (n,) = struct.unpack("B", await self.s.read(1))
        if n == 0:
            (ln,) = struct.unpack(">I", await self.s.read(4))
            raise AssertionError(f"server refused: {(await self.s.read(ln)).decode(errors='replace')}")
        types = await self.s.read(n)
        if 1 not in types:
            raise AssertionError(f"security type None not offered: {list(types)}")
        await self.s.write(b"\x01")
        (result,) = struct.unpack(">I", await self.s.read(4))
        if result != 0:
            raise AssertionError(f"security result {result}")
        await self.s.write(struct.pack("B", 1 if shared else 0))
        w, h = struct.unpack(">HH", await self.s.read(4))
        await self.s.read(16)  # pixel format
        (ln,) = struct.unpack(">I", await self.s.read(4))
        self.init = ServerInit(w, h, (await self.s.read(ln)).decode(errors="replace"))
        return self.init

    async def set_encodings(self, encodings: list[int]) -> None:
        await self.s.write(struct.pack(">BxH", 2, len(encodings)) + b"".join(struct.pack(">i", e) for e in encodings))

    async def request_update(self, incremental: bool) -> None:
        assert self.init is not None
        await self.s.write(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.init.width, self.init.height))

    async def read_update(self) -> int:
        """Read one server message; return the number of rectangles if it was a FramebufferUpdate, else -1.

        Only Raw/CopyRect/Tight-free encodings are parsed; ask for RAW (the default) to use this.
        """
        (mtype,) = struct.unpack("B", await self.s.read(1))
        if mtype == 0:
            (nrects,) = struct.unpack(">xH", await self.s.read(3))
            for _ in range(nrects):
                _x, _y, w, h, enc = struct.unpack(">HHHHi", await self.s.read(12))
                if enc == RAW:
                    await self.s.read(w * h * 4)
                elif enc == COPYRECT:
                    await self.s.read(4)
                elif enc in (-223, -308):  # DesktopSize / ExtendedDesktopSize
                    if enc == -308:
                        (screens,) = struct.unpack(">Bxxx", await self.s.read(4))
                        await self.s.read(16 * screens)
                    self.init.width, self.init.height = w, h
                else:
                    raise AssertionError(f"unexpected encoding {enc}")
            return nrects
        if mtype == 2:  # Bell
            return -1
        if mtype == 3:  # ServerCutText: a negative length is ExtendedClipboard's (the bridge asks it for a viewer)
            (ln,) = struct.unpack(">xxxi", await self.s.read(7))
            await self.s.read(abs(ln))
            return -1
        if mtype == 1:  # SetColourMapEntries
            _, n = struct.unpack(">xHH", await self.s.read(5))
            await self.s.read(6 * n)
            return -1
        raise AssertionError(f"unexpected server message {mtype}")

    async def first_frame(self, timeout: float = 20) -> float:
        """Seconds from the first full FramebufferUpdateRequest to its FramebufferUpdate."""
        t0 = time.monotonic()
        await self.request_update(incremental=False)
        while await asyncio.wait_for(self.read_update(), timeout) < 0:
            pass
        return time.monotonic() - t0

    async def stream(self, seconds: float) -> tuple[int, int]:
        """Keep asking for incremental updates for `seconds`; return (bytes received, updates)."""
        start_bytes = self.s.received
        updates = 0
        deadline = time.monotonic() + seconds
        await self.request_update(incremental=True)
        while time.monotonic() < deadline:
            try:
                n = await asyncio.wait_for(self.read_update(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if n >= 0:
                updates += 1
                await self.request_update(incremental=True)
        return self.s.received - start_bytes, updates

    def close(self) -> None:
        self.s.close()
