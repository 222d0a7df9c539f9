"""The desktop page's bar (real Chromium): one line at 1280 px and in a narrow window, the whole status
on hover and click, who is watching, and the session's time left with its warnings at 10 and 2 minutes.

Real jupyter server, Xvnc and xfce; the viewer is a second person's real RFB stream
(tests/desktop/identities.py). The job API is a stand-in (job_standin.py: the contract of
rcsc3_proxy/server/job_api.py, with an end the test sets), since a test cannot wait for a real
job's last minutes; the real one is shown in tests/e2e/test_desktop_sharing.py. Pictures of the
bar go to artifacts/desktop/.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from cdp import Browser
from conftest import ARTIFACTS, VIEWER_TOKEN, need
from rfb import RFBClient

PHASE = "window.rcsc3Desktop && window.rcsc3Desktop.phase"
#: what of the bar is laid out wrong: a visible item taller than one line, or outside the bar
LAYOUT = """(() => {
  const bar = document.getElementById('bar').getBoundingClientRect();
  const bad = [];
  for (const el of document.querySelectorAll('#bar > *')) {
    if (el.hidden || !el.offsetParent || el.classList.contains('spacer')) continue;
    const r = el.getBoundingClientRect();
    if (r.height > 24 || r.left < bar.left - 0.5 || r.right > bar.right + 0.5 || r.width < 4)
      bad.push(`${el.id}: ${Math.round(r.left)}..${Math.round(r.right)} x ${Math.round(r.height)}`);
  }
  return {bad, barHeight: bar.height, scroll: document.getElementById('bar').scrollWidth - bar.width,
          shown: [...document.querySelectorAll('#bar > *')].filter((e) => !e.hidden && e.offsetParent && e.id).map((e) => e.id)};
})()"""


@pytest.fixture
def job_end():
    """The stand-in job's end (a file the test user's server reads)."""
    d = Path(tempfile.mkdtemp(prefix="rcsc3-job-end-"))
    d.chmod(0o755)
    path = d / "end"

    def set_left(seconds: float) -> None:
        path.write_text(str(time.time() + seconds))
        path.chmod(0o644)

    set_left(3600)
    yield path, set_left
    shutil.rmtree(d, ignore_errors=True)


async def _bar_shot(page, name: str, width: int) -> Path:
    import base64

    res = await page.send("Page.captureScreenshot", format="png",
                          clip={"x": 0, "y": 0, "width": width, "height": 30, "scale": 1})
    out = ARTIFACTS / "desktop" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(res["data"]))
    return out


async def test_the_bar_fits_says_everything_and_warns_before_the_end(server_factory, job_end):
    need("/usr/bin/chromium")
    end_file, set_left = job_end
    server = server_factory("rdtest3", env={"RCSC3_DESKTOP_PRESTART": "1", "RCSC3_TEST_JOB_END": str(end_file)},
                            people={VIEWER_TOKEN: "teacher"}, extensions={"job_standin": True})
    server.wait_running()
    set_left(4300)  # 71.7 min: "1 h 12 min left"
    viewer = None
    async with Browser() as browser:
        page = await browser.new_page()
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=720, deviceScaleFactor=1, mobile=False)
        await page.navigate(server.url("login", token=False))  # as any Jupyter page does, it sets the _xsrf cookie
        await page.wait_for("document.cookie.includes('_xsrf=')", 30)
        await page.navigate(server.url("desktop/"))
        await page.wait_for(f"{PHASE} === 'connected'", 60)
        left, _ = await page.wait_for("(e => !e.hidden && e.textContent)(document.getElementById('time-left'))", 30)
        assert left == "1 h 12 min left"
        assert "Slurm job 4242" in await page.evaluate("document.getElementById('time-left').title")

        # someone watches: the owner's bar names them within a second
        viewer = await RFBClient.over_websocket(server.ws_url("desktop-vnc/", VIEWER_TOKEN), headers={"Origin": server.base})
        _, took = await page.wait_for("(e => !e.hidden && e.textContent)(document.getElementById('viewers'))", 10)
        assert took < 1.0
        assert await page.evaluate("document.getElementById('viewers').textContent") == "teacher is watching"

        # 1280 x 720: all of it on one line, nothing cut but the status, which is whole on hover and click
        layout = await page.evaluate(LAYOUT)
        assert layout["bad"] == [] and layout["barHeight"] == 30 and layout["scroll"] <= 0, layout
        for item in ("title", "status", "time-left", "viewers", "picture", "clipboard-toggle", "reconnect", "close"):
            assert item in layout["shown"], layout
        status = await page.evaluate("[document.getElementById('status').textContent, document.getElementById('status').title]")
        assert status[0].startswith("Connected") and "TigerVNC" in status[0] and status[1] == status[0]
        await page.evaluate("document.getElementById('status').click()")
        detail = await page.evaluate("(e => !e.hidden && e.textContent)(document.getElementById('status-detail'))")
        assert detail == status[0]
        await page.evaluate("document.getElementById('status').click()")
        await _bar_shot(page, "bar-1280.png", 1280)
        # the owner's panel: who, since when, and what they may do
        await page.evaluate("document.getElementById('viewers').click()")
        rows = await page.evaluate("[...document.querySelectorAll('#viewer-list li')].map(li => li.innerText)")
        assert len(rows) == 1 and rows[0].startswith("teacher watching since") and "Give control" in rows[0]
        await page.screenshot(ARTIFACTS / "desktop" / "viewers-panel-1280.png")
        await page.evaluate("document.getElementById('viewers').click()")

        # a narrow window: still one line; the title gives way first, then the long words
        await page.send("Emulation.setDeviceMetricsOverride", width=640, height=480, deviceScaleFactor=1, mobile=False)
        await page.wait_for("window.innerWidth === 640", 10)
        layout = await page.evaluate(LAYOUT)
        assert layout["bad"] == [] and layout["scroll"] <= 0, layout
        assert "title" not in layout["shown"] and "close" in layout["shown"] and "viewers" in layout["shown"], layout
        await _bar_shot(page, "bar-640.png", 640)

        # ten minutes before the end, and two: a message in the bar that cannot be missed
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=720, deviceScaleFactor=1, mobile=False)
        for seconds, text, cls in ((602, "10 min left: save your work", "warn"),
                                   (122, "2 min left: save your work now", "urgent")):
            set_left(seconds)
            await page.evaluate("location.reload()")
            await page.wait_for(f"{PHASE} === 'connected'", 60)
            await page.wait_for(f"(e => e.textContent === {text!r} && e.className === {cls!r})"
                                "(document.getElementById('time-left'))", 15)
            layout = await page.evaluate(LAYOUT)
            assert layout["bad"] == [], layout
            await _bar_shot(page, f"bar-1280-{cls}.png", 1280)
        page.close()
    viewer.close()
