"""A Remote Desktop tile that shows takes a click: pressed the instant it appears, it opens the desktop tab.

rcsc3-jupyterlab opens JupyterLab's Launcher as soon as the layout is restored, which is the
moment JupyterLab's splash screen starts to fade out; the splash stays in the page, over
everything, for another 200 ms. A press on a tile in that window landed on the splash and the
click was lost (no new tab, no request to /desktop/). The plugin's stylesheet lets presses through
the fading splash.

Real hub, real Slurm job, real JupyterLab and jupyter-server-proxy in headless Chromium: the
server is started once, then 20 fresh tabs open plain /lab (as a returning student does); in
each, the mouse is pressed and released (CDP Input.dispatchMouseEvent, a person's trusted input)
at the tile's centre right after the first look that finds it visible, and the desktop's tab
must open. Each tab notes where its first press landed and whether the splash was still there,
so a failure says why.
"""

from __future__ import annotations

import json

from e2e_browser import UserBrowser, by_text
from e2e_journey import Steps, job_ids, reset_workspace

RUNS = 20
TILE = by_text(".jp-LauncherCard", "Remote Desktop")
#: runs in each new document before its own scripts: notes the first mouse press
PRESS_PROBE = """window.addEventListener('mousedown', (e) => {
  if (window.rcsc3Press) return;
  const splash = document.getElementById('jupyterlab-splash');
  const t = e.target;
  const classes = typeof t.className === 'string' ? t.className.trim().split(/\\s+/).filter(Boolean) : [];
  window.rcsc3Press = {
    on: t.tagName.toLowerCase() + (t.id ? '#' + t.id : '') + classes.map(c => '.' + c).join(''),
    onSplash: !!(splash && splash.contains(t)),
    splash: splash ? (splash.classList.contains('splash-fade') ? 'fading' : 'shown') : 'gone',
    tile: !!t.closest('.jp-LauncherCard'),
  };
}, true);"""


async def test_a_press_on_the_tile_the_instant_it_shows_opens_the_desktop(idle, shots):
    hub, user = idle, "student1"
    lab = f"{hub.url}/user/{user}/lab"
    runs: list[dict] = []
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        steps = Steps(hub.url, user, shots=shots)
        try:
            await steps.login(page)
            hub.started_jobs |= job_ids(await steps.spawn(page))
            # one JupyterLab tab at a time: with the workspace open in another tab, JupyterLab
            # would move the new one to a new workspace (not plain /lab, so no early Launcher)
            await browser.close_tab(page)
            for i in range(RUNS):
                reset_workspace(user)  # an empty layout: the plugin opens the Launcher (the case under test)
                page = await browser.new_page()
                await page.viewport()
                await page.send("Page.addScriptToEvaluateOnNewDocument", source=PRESS_PROBE)
                known = {t["id"] for t in await browser.targets()}
                await page.navigate(lab)
                await page.click(TILE, timeout=90, interval=0.01)
                try:
                    desktop = await browser.wait_tab(f"/user/{user}/desktop/", known, 15)
                    opened = True
                except TimeoutError:
                    opened = False
                run = {"run": i + 1, "desktop tab": opened,
                       "launcher": await page.evaluate("document.body.dataset.rcsc3Launcher"),
                       "press": await page.evaluate("window.rcsc3Press || null")}
                runs.append(run)
                if not opened:
                    await steps.shot(page, f"run-{i + 1}-no-desktop-tab")
                else:
                    await browser.close_tab(desktop)
                await browser.close_tab(page)
        finally:
            reset_workspace(user)
    report = "\n".join(json.dumps(r) for r in runs)
    fading = sum(1 for r in runs if (r["press"] or {}).get("splash") == "fading")
    print(f"{fading} of {len(runs)} presses came while JupyterLab's splash was still fading out\n{report}")
    assert all(r["launcher"] == "opened" for r in runs), f"the plugin did not open the Launcher every time:\n{report}"
    lost = [r for r in runs if not r["desktop tab"]]
    assert not lost, f"{len(lost)} of {RUNS} presses on the tile opened no desktop tab:\n{report}"
    assert all((r["press"] or {}).get("tile") for r in runs), f"a press did not land on the tile:\n{report}"
