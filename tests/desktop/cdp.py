"""A minimal Chrome DevTools Protocol client for headless Chromium (tests and benchmarks/desktop.py).

Only what the desktop tests need: open a page, evaluate JavaScript, take a
screenshot. It speaks CDP over tornado's websocket client, so it needs nothing
beyond what jupyter_server already installs.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

CHROMIUM = os.environ.get("RCSC3_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--window-size=1280,800"]


class CDPError(RuntimeError):
    pass


class Page:
    def __init__(self, ws):
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.read_message()
            if msg is None:
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(CDPError("devtools connection closed"))
                return
            data = json.loads(msg)
            fut = self._pending.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(CDPError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))

    async def send(self, method: str, timeout: float = 30, **params) -> dict:
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self.ws.write_message(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, timeout)

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str, timeout: float = 30):
        res = await self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                              returnByValue=True)
        if "exceptionDetails" in res:
            raise CDPError(str(res["exceptionDetails"]))
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float, interval: float = 0.02):
        """Poll a JS expression until it is truthy (bounded); return its value and the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = await self.evaluate(expression, timeout=max(1.0, deadline - time.monotonic()))
            except CDPError:
                last = None  # page still navigating
            if last:
                return last, time.monotonic() - t0
            await asyncio.sleep(interval)
        raise TimeoutError(f"{expression!r} still falsy after {timeout}s (last: {last!r})")

    async def screenshot(self, path: Path) -> bytes:
        res = await self.send("Page.captureScreenshot", format="png")
        data = base64.b64decode(res["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self._reader.cancel()
        self.ws.close()


class Browser:
    """Headless Chromium with a fresh profile; `async with Browser() as b: page = await b.new_page()`."""

    def __init__(self, binary: str = CHROMIUM):
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.profile = tempfile.mkdtemp(prefix="rcsc3-chromium-")
        self.port: int | None = None

    async def __aenter__(self) -> Self:
        if not shutil.which(self.binary):
            raise FileNotFoundError(f"{self.binary} not found (apt-get install chromium)")
        self.proc = self._spawn()
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its devtools port")
            await asyncio.sleep(0.02)
        self.port = int(marker.read_text().split()[0])
        return self

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    async def new_page(self) -> Page:
        client = AsyncHTTPClient()
        res = await client.fetch(HTTPRequest(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT",
                                             body=b""))
        target = json.loads(res.body)
        ws = await websocket_connect(target["webSocketDebuggerUrl"], max_message_size=256 * 1024 * 1024)
        page = Page(ws)
        await page.send("Page.enable")
        return page

    async def __aexit__(self, *exc) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


#: JS: how many distinct colours the noVNC canvas shows, on a grid of ~20000 samples; 0 if no canvas yet.
#: Polled every 10 ms while timing a desktop's start, so it must cost the page (and, on 2 cores, the
#: desktop) next to nothing:
#: - the grid is picked by a nearest-neighbour drawImage into a small canvas, not a read-back of the
#:   whole canvas (~7-12 ms each);
#: - the counting function is made once per page and kept on `window`: re-created by every evaluation,
#:   V8 optimized and deoptimized it over and over (Chromium traces of a cold click: 72 polls of ~5 ms
#:   of the page's main thread each plus ~0.25 s of compiles in the renderer's worker threads, against
#:   87 polls of ~1.5 ms and ~0.1 s of compiles made once);
#: - colours are counted in a bit set that is cleared after each poll, not in a new `Set`.
CANVAS_COLOURS = """(window.__rcsc3Colours || (window.__rcsc3Colours = (() => {
  const probe = document.createElement('canvas');
  const bits = new Uint32Array(1 << 19);  // one bit per 24-bit colour
  let found = new Int32Array(1 << 15);
  return () => {
    const c = document.querySelector('#screen canvas, #noVNC_container canvas, canvas');
    if (!c || !c.width || !c.height) return 0;
    const k = Math.max(1, Math.sqrt(c.width * c.height / 20000));
    const w = Math.max(1, Math.round(c.width / k)), h = Math.max(1, Math.round(c.height / k));
    if (probe.width !== w || probe.height !== h) { probe.width = w; probe.height = h; }
    const g = probe.getContext('2d', {willReadFrequently: true});
    g.imageSmoothingEnabled = false;
    g.drawImage(c, 0, 0, w, h);
    const px = new Uint32Array(g.getImageData(0, 0, w, h).data.buffer);
    if (found.length < px.length) found = new Int32Array(px.length);
    let n = 0;
    for (let i = 0; i < px.length; i++) {
      const rgb = px[i] & 0xffffff;
      const word = rgb >>> 5, bit = 1 << (rgb & 31);
      if (!(bits[word] & bit)) { bits[word] |= bit; found[n++] = word; }
    }
    for (let i = 0; i < n; i++) bits[found[i]] = 0;
    return n;
  };
})()))()"""
