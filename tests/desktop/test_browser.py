"""What the student sees: headless Chromium opens /desktop/ and shows the xfce desktop.

Real Chromium (Debian's), real jupyter server + jupyter-server-proxy, real Xvnc
and xfce. The assertion is on pixels of the noVNC canvas (an xfce desktop has
hundreds of colours; a black or error screen has a handful), and the
screenshot is kept in artifacts/ for a human to look at.
"""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest
from cdp import CANVAS_COLOURS, Browser
from conftest import ARTIFACTS, need, poll

PHASE = "window.rcsc3Desktop && window.rcsc3Desktop.phase"


@pytest.mark.parametrize("bridge", ["raw", "websockify"])
async def test_the_page_shows_the_desktop(server_factory, bridge):
    need("/usr/bin/chromium")
    server = server_factory("rdtest3", config={"bridge": bridge})
    async with Browser() as browser:
        page = await browser.new_page()
        await page.navigate(server.url("desktop/"))
        await page.wait_for(f"{PHASE} === 'connected'", 60)
        colours, _ = await page.wait_for(f"(({CANVAS_COLOURS}) > 100) && ({CANVAS_COLOURS})", 60)
        assert colours > 100
        # the JPEG rectangles of that picture were decoded by WebCodecs' ImageDecoder (127.0.0.1 is a secure
        # context), not by noVNC's data: URLs: the page took over noVNC's image path and drew every one
        assert await page.evaluate("window.rcsc3Desktop.jpegDecoder") is True
        assert await page.evaluate("window.rcsc3Desktop.jpegsDrawn") > 0
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status.startswith("Connected") and "TigerVNC" in status and "software GL" in status
        # resize-to-browser: the X screen took the page's size, not the 1680x1050 default
        size = await page.evaluate("[document.querySelector('#screen canvas').width, "
                                   "document.querySelector('#screen').clientWidth]")
        assert size[0] == size[1] and size[0] != 1680
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = await page.screenshot(ARTIFACTS / f"desktop-{bridge}.png")
        assert png.startswith(b"\x89PNG") and len(png) > 20000
        # the "Reconnect" button gives a fresh connection that works again
        await page.evaluate("document.getElementById('reconnect').click()")
        await page.wait_for(f"{PHASE} === 'connected' && window.rcsc3Desktop.connects >= 2", 30)
        # a visit while the desktop runs (a reload; prestart): the page opened the websocket before noVNC
        # was parsed and handed it over with the server's first RFB bytes; the desktop still shows
        geometry_file = Path(pwd.getpwnam(server.user).pw_dir) / ".local/state/rcsc3/desktop-geometry"
        geometry_file.unlink()
        await page.evaluate("location.reload()")
        await page.wait_for(f"{PHASE} === 'connected' && window.rcsc3Desktop.connects === 1", 30)
        assert await page.evaluate("window.rcsc3Desktop.earlyChannel") is True
        colours, _ = await page.wait_for(f"(({CANVAS_COLOURS}) > 100) && ({CANVAS_COLOURS})", 30)
        assert colours > 100
        # ...and asked nothing of the server before connecting (it ran: nothing to start or wait for)
        starts = await page.evaluate("performance.getEntriesByType('resource')"
                                     ".filter((e) => e.name.includes('start=1')).length")
        assert starts == 0
        # once the desktop shows: the page's icon, and the viewer's size told for the next prestart
        await page.wait_for("document.querySelector('link[rel=icon]').href.includes('favicon.svg')", 30)
        poll(geometry_file.exists, 30, "the viewer's size to be remembered")
        assert geometry_file.read_text().strip() == await page.evaluate("window.rcsc3Geometry()")
        page.close()
