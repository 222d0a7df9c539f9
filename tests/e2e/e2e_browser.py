"""What a person does in a browser, on top of tests/desktop/cdp.py (which stays untouched).

`UserPage` adds real input to cdp.Page: mouse clicks at an element's centre
(Input.dispatchMouseEvent, so pages see a trusted user gesture and popups are
allowed), typing (Input.insertText / dispatchKeyEvent), and waiting for text.
`UserBrowser` adds following a tab the page opened itself (the JupyterLab
launcher's "Remote Desktop" tile opens a new tab).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "desktop"))
import cdp  # noqa: E402
from cdp import CANVAS_COLOURS, CDPError  # noqa: E402,F401

#: JS returning the element's centre in viewport pixels once it is visible, else null.
_CENTRE = """((el) => {
  if (!el) return null;
  el.scrollIntoView({block: 'center', inline: 'center'});
  const r = el.getBoundingClientRect();
  if (!r.width || !r.height) return null;
  const s = getComputedStyle(el);
  if (s.visibility === 'hidden' || s.display === 'none') return null;
  return [r.left + r.width / 2, r.top + r.height / 2];
})(%s)"""


def by_css(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


def by_text(selector: str, text: str) -> str:
    """The first visible element matching `selector` whose text is (or, failing that, contains) `text`."""
    return (f"(() => {{ const all = [...document.querySelectorAll({json.dumps(selector)})].filter(e => e.offsetParent !== null);"
            f" const t = {json.dumps(text)};"
            f" return all.find(e => e.innerText.trim() === t) || all.find(e => e.innerText.includes(t)) || null; }})()")


class UserPage(cdp.Page):
    target_id: str = ""  # the browser's id of this tab (set when attached)

    async def front(self) -> None:
        """Make this the visible tab, as a person switching tabs does (background tabs are not painted)."""
        await self.send("Page.bringToFront")

    async def screenshot(self, path: Path) -> bytes:
        await self.front()
        return await super().screenshot(path)

    async def url(self) -> str:
        return await self.evaluate("location.href")

    async def text(self, selector: str = "body") -> str:
        return await self.evaluate(f"({by_css(selector)} || {{innerText: ''}}).innerText") or ""

    async def wait_text(self, selector: str, text: str, timeout: float) -> str:
        """Wait until the element's text contains `text`; return the whole text."""
        value, _ = await self.wait_for(
            f"(() => {{ const e = {by_css(selector)}; return e && e.innerText.includes({json.dumps(text)}) && e.innerText; }})()",
            timeout, interval=0.05)
        return value

    async def click(self, element_js: str, timeout: float = 30, interval: float = 0.05) -> None:
        """Wait for the element (a JS expression) to be visible, then press and release the mouse on it.

        `interval`: how often to look for it (the press follows the first look that finds it).
        """
        (x, y), _ = await self.wait_for(_CENTRE % element_js, timeout, interval=interval)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    async def double_click(self, element_js: str, timeout: float = 30) -> None:
        (x, y), _ = await self.wait_for(_CENTRE % element_js, timeout, interval=0.05)
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)

    async def viewport(self, width: int = 1280, height: int = 800) -> None:
        """A fixed viewport (the screenshots' size), whatever the headless window's chrome takes."""
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    async def click_css(self, selector: str, timeout: float = 30) -> None:
        await self.click(by_css(selector), timeout)

    async def type(self, text: str) -> None:
        """Type into the focused element, as an IME would (one input event per call)."""
        await self.send("Input.insertText", text=text)

    async def type_into(self, selector: str, text: str, timeout: float = 30) -> None:
        await self.click_css(selector, timeout)
        await self.type(text)

    async def press(self, key: str, code: str, keycode: int, modifiers: int = 0) -> None:
        """A key press: modifiers 1 Alt, 2 Ctrl, 4 Meta, 8 Shift."""
        for kind in ("rawKeyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=keycode,
                            nativeVirtualKeyCode=keycode, modifiers=modifiers)

    async def shift_enter(self) -> None:
        await self.press("Enter", "Enter", 13, modifiers=8)

    async def nav_status(self) -> int:
        """The HTTP status of the document now shown (0 if unknown)."""
        return await self.evaluate(
            "(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0") or 0

    async def goto(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait until the new document has loaded (bounded)."""
        await self.evaluate("window.__rcsc3Old = true")
        await self.navigate(url)
        await self.wait_for("!window.__rcsc3Old && document.readyState === 'complete'", timeout)


class UserBrowser(cdp.Browser):
    async def _attach(self, target: dict) -> UserPage:
        ws = await websocket_connect(target["webSocketDebuggerUrl"], max_message_size=256 * 1024 * 1024)
        page = UserPage(ws)
        page.target_id = target["id"]
        await page.send("Page.enable")
        # every tab behaves as the focused one (a person looks at the tab they type into)
        await page.send("Emulation.setFocusEmulationEnabled", enabled=True)
        return page

    async def targets(self) -> list[dict]:
        res = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{self.port}/json/list")
        return [t for t in json.loads(res.body) if t.get("type") == "page"]

    async def new_page(self) -> UserPage:
        res = await AsyncHTTPClient().fetch(HTTPRequest(f"http://127.0.0.1:{self.port}/json/new?about:blank",
                                                        method="PUT", body=b""))
        return await self._attach(json.loads(res.body))

    async def close_tab(self, page: UserPage) -> None:
        """Close a tab, as a person closing it does (its page gets unload events; JupyterLab then frees its workspace)."""
        page.close()
        await AsyncHTTPClient().fetch(f"http://127.0.0.1:{self.port}/json/close/{page.target_id}")

    async def wait_tab(self, url_part: str, known: set[str], timeout: float = 30) -> UserPage:
        """Attach to a tab that was not in `known` (target ids) and whose URL contains `url_part`."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            seen = await self.targets()
            for t in seen:
                if t["id"] not in known and url_part in t.get("url", ""):
                    return await self._attach(t)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no new tab with {url_part!r} after {timeout}s: {[t.get('url') for t in seen]}")
