"""The teacher at the student's side (issue #19 §2): a shared desktop, view-only unless the student agrees.

Real hub with the demo config (courses from unix groups: viz2026 = student1, student2, taught by
`teacher` through the role `viz2026-teacher`; student3 is in hpc2026), real configurable-http-proxy,
real Slurm job, real Xvnc + xfce, four real headless Chromiums (one per person: each has their own
login). This test's hub adds one setting, JupyterHub's sharing (`shares!user` for users), so that a
classmate the student shares the server with is a second viewer.

What reaches the student's desktop is checked on the student's X display itself, as the student:
the pointer (`xdotool getmouselocation`) and the keys typed into a window of theirs (`xev`, which
prints each key it gets). The teacher's page has noVNC's own view-only switched off, as anyone
may in their own browser: the bridge holds their input back. That it arrived there and was held
back is the owner's viewer API's count (`held_back`), so the checks that nothing changed follow
the input they check, without a sleep.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from e2e_browser import CANVAS_COLOURS, UserBrowser, UserPage, by_css
from e2e_journey import Steps
from hubproc import Hub, user_jobs, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.browser, pytest.mark.desktop]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RCSC3_ARTIFACTS", REPO / "artifacts")) / "e2e" / "desktop-sharing"
STUDENT, CLASSMATE, TEACHER, OUTSIDER = "student1", "student2", "teacher", "student3"
DESKTOP = {"profile": "gpu-desktop", "gpus": 1, "cpus": 2, "memory": 2, "walltime": "0:15"}
#: JupyterHub's sharing, for the classmate: users may share their own servers, with a user they name
SHARING = ('\nc.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", "shares!user", "read:users:name"]})\n')
PHASE = "window.rcsc3Desktop && window.rcsc3Desktop.phase"
DESKTOP_URL = f"/user/{STUDENT}/desktop/"
#: the page's own call of its viewer API (its token, its Referer), as the owner's bar makes it
VIEWERS = ("fetch('api/viewers', {headers: {[JSON.parse(document.getElementById('rcsc3-config').textContent).token_header]:"
           " JSON.parse(document.getElementById('rcsc3-config').textContent).token}}).then(r => r.json())")


class StudentDisplay:
    """The student's own X display, used as the student (their X cookie in their desktop's runtime dir)."""

    def __init__(self, display: int):
        [self.xauth] = Path("/tmp").glob(f"rcsc3-desktop-{STUDENT}-*/Xauthority")
        self.pw = pwd.getpwnam(STUDENT)
        self.env = {"DISPLAY": f":{display}", "XAUTHORITY": str(self.xauth), "PATH": "/usr/bin:/bin"}

    def run(self, *cmd: str) -> str:
        return subprocess.run(cmd, env=self.env, user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                              capture_output=True, text=True, timeout=20, check=True).stdout.strip()

    def pointer(self) -> tuple[int, int]:
        fields = dict(kv.split(":") for kv in self.run("xdotool", "getmouselocation").split())
        return int(fields["x"]), int(fields["y"])

    def start_key_window(self, log: Path) -> tuple[subprocess.Popen, dict]:
        """xev as the student: a window that prints every key it gets (line-buffered, to `log`)."""
        out = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["stdbuf", "-oL", "xev", "-event", "keyboard", "-name", "rcsc3-keys",
                                 "-geometry", "420x260+320+220"], env=self.env, user=self.pw.pw_uid,
                                group=self.pw.pw_gid, extra_groups=[], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wid = wait_until(lambda: self._window("rcsc3-keys"), 20, "the key window to map")
        geometry = dict(line.split("=") for line in self.run("xdotool", "getwindowgeometry", "--shell", wid).split())
        self.run("xdotool", "windowactivate", "--sync", wid)  # it has the keyboard: a leaked key would show
        return proc, {k: int(v) for k, v in geometry.items() if k in ("X", "Y", "WIDTH", "HEIGHT")}

    def _window(self, name: str) -> str:
        res = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], env=self.env, user=self.pw.pw_uid,
                             group=self.pw.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=20)
        return res.stdout.split()[0] if res.stdout.split() else ""


def typed(log: Path) -> str:
    """The characters xev reports as pressed keys."""
    text = log.read_text(errors="replace")
    blocks = text.split("KeyPress event")[1:]
    return "".join(m.group(1) for b in blocks for m in [re.search(r'XLookupString gives 1 bytes: \(\w+\) "(.)"', b)] if m)


async def open_desktop_as(browser: UserBrowser, hub: Hub, user: str) -> UserPage:
    """Log in as `user` and open the student's desktop page, authorizing the student's server if asked."""
    page = await browser.new_page()
    await page.viewport(1280, 720)
    await Steps(hub.url, user).login(page, next_path="/")
    await page.goto(f"{hub.url}{DESKTOP_URL}", 60)
    if "/oauth2/authorize" in await page.url():  # JupyterHub asks before letting them into someone else's server
        await page.click(by_css("form button[type=submit], form input[type=submit]"))
        await page.wait_for(f"location.pathname === {DESKTOP_URL!r} && document.readyState === 'complete'", 60)
    return page


async def click_at(page: UserPage, x: float, y: float) -> None:
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
        await page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)


async def type_keys(page: UserPage, text: str) -> None:
    for ch in text:
        code = f"Key{ch.upper()}" if ch.isalpha() else f"Digit{ch}"
        await page.press(ch, code, ord(ch.upper()))


async def on_canvas(page: UserPage, x: int, y: int) -> tuple[float, float]:
    """Where on the (scaled) canvas of `page` the student's screen point (x, y) is."""
    return tuple(await page.evaluate(
        "(() => { const c = document.querySelector('#screen canvas'); const r = c.getBoundingClientRect();"
        f" return [r.left + {x} * r.width / c.width, r.top + {y} * r.height / c.height]; }})()"))


async def viewers_panel(page: UserPage) -> None:
    """Open the owner's panel of viewers (a press on the bar's notice), unless it is open."""
    if await page.evaluate("document.getElementById('viewers-panel').hidden"):
        await page.click_css("#viewers")
    await page.wait_for("!document.getElementById('viewers-panel').hidden", 5)


async def viewer_state(page: UserPage, name: str) -> dict:
    state = await page.evaluate(VIEWERS)
    return next((v for v in state["viewers"] if v["name"] == name), {})


def _cleanup(hub: Hub, clients: list, procs: list) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for client in clients:
        try:
            client.stop()
            client.wait_stopped(timeout=60)
        except Exception as e:  # keep cleaning
            print(f"cleanup of {client.username}: {e}", file=sys.stderr)
    hub.stop()
    for job in user_jobs(STUDENT):
        if job in hub.started_jobs:
            subprocess.run(["scancel", job], check=False)
    wait_until(lambda: not any(j in hub.started_jobs for j in user_jobs(STUDENT)), 60, "the test's job to end")
    for line in subprocess.run(["ps", "-u", STUDENT, "-o", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
        if "xev -event keyboard" in line:
            os.kill(int(line.split()[0]), signal.SIGKILL)


async def test_the_teacher_watches_view_only_until_the_student_gives_control(slurm_lab):
    for tool in ("xev", "xdotool", "stdbuf", os.environ.get("RCSC3_CHROMIUM", "/usr/bin/chromium")):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-sharing-hub-"))
    workdir.chmod(0o755)
    hub = Hub(workdir, extra_config=SHARING)
    hub.started_jobs = set()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    keys_log = workdir / "keys.log"
    clients, procs = [], []
    hub.start()
    try:
        student = hub.login(STUDENT)
        clients.append(student)
        before = set(user_jobs(STUDENT))
        assert student.start(DESKTOP).status_code in (201, 202)
        student.wait_ready(timeout=180)
        hub.started_jobs |= set(user_jobs(STUDENT)) - before
        # the student shares their server with a classmate (JupyterHub's sharing)
        r = student.api("POST", f"/shares/{STUDENT}/", json={"user": CLASSMATE})
        assert r.status_code in (200, 201), r.text

        async with UserBrowser() as s_browser, UserBrowser() as t_browser, UserBrowser() as c_browser:
            # ---- the student at their desktop
            own = await open_desktop_as(s_browser, hub, STUDENT)
            await own.wait_for(f"{PHASE} === 'connected'", 90)
            await own.wait_for(f"({CANVAS_COLOURS}) > 100", 60)
            assert await own.evaluate("window.rcsc3Desktop.role") == "owner"
            screen = StudentDisplay(await own.evaluate("window.rcsc3Desktop.status.display"))
            xev, win = screen.start_key_window(keys_log)
            procs.append(xev)
            screen.run("xdotool", "mousemove", "50", "50")
            assert screen.pointer() == (50, 50)
            assert await own.evaluate("document.getElementById('viewers').hidden") is True
            # the session's time left (rcsc3/api/job, a cookie-authenticated GET with JupyterHub's XSRF header)
            left, _ = await own.wait_for("(e => !e.hidden && e.textContent)(document.getElementById('time-left'))", 30)
            assert re.fullmatch(r"1[0-5] min left(: save your work)?", left), left

            # ---- the teacher opens the student's desktop: they see it, the student sees them, within a second
            teacher = await open_desktop_as(t_browser, hub, TEACHER)
            await teacher.wait_for(f"{PHASE} === 'connected'", 60)
            connected = time.monotonic()
            notice, _ = await own.wait_for("(e => !e.hidden && e.textContent)(document.getElementById('viewers'))", 5)
            assert time.monotonic() - connected < 1.0 and notice == f"{TEACHER} is watching"
            colours, _ = await teacher.wait_for(f"(({CANVAS_COLOURS}) > 100) && ({CANVAS_COLOURS})", 60)
            assert colours > 100
            assert await teacher.evaluate("window.rcsc3Desktop.role") == "viewer"
            assert await teacher.text("#mode") == "View only"
            assert await teacher.text("#title") == f"{STUDENT}’s desktop"
            assert await teacher.evaluate("document.getElementById('close').hidden") is True
            await teacher.screenshot(ARTIFACTS / "teacher-view.png")
            (REPO / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
            shutil.copy(ARTIFACTS / "teacher-view.png", REPO / "docs" / "screenshots" / "7-teacher-view.png")
            await own.screenshot(ARTIFACTS / "student-sees-the-teacher.png")
            shot = await own.send("Page.captureScreenshot", format="png",
                                  clip={"x": 0, "y": 0, "width": 1280, "height": 30, "scale": 1})
            (ARTIFACTS / "bar-1280.png").write_bytes(base64.b64decode(shot["data"]))

            # ---- the teacher's clicks and keys change nothing, even with noVNC's own view-only off
            await teacher.evaluate("window.rcsc3Desktop.rfb.viewOnly = false")
            await click_at(teacher, *await on_canvas(teacher, win["X"] + 200, win["Y"] + 130))
            await type_keys(teacher, "hello")
            await own.wait_for(f"{VIEWERS}.then(s => (s.viewers.find(v => v.name === {TEACHER!r}) || {{}}).held_back >= 11)",
                               20)  # ten key events and the click's pointer events reached the bridge, held back
            assert screen.pointer() == (50, 50)
            assert typed(keys_log) == ""

            # ---- a classmate the student shared the server with watches too
            classmate = await open_desktop_as(c_browser, hub, CLASSMATE)
            await classmate.wait_for(f"{PHASE} === 'connected'", 60)
            await own.wait_for("document.getElementById('viewers').textContent === '2 watching'", 5)
            await c_browser.close_tab(classmate)
            await own.wait_for(f"document.getElementById('viewers').textContent === '{TEACHER} is watching'", 5)

            # ---- the student gives control: now the same clicks and keys arrive
            await viewers_panel(own)
            await own.click(by_css(f"#viewer-list li[data-name={TEACHER}] button[data-action=control]"))
            await teacher.wait_for("window.rcsc3Desktop.control === true", 5)
            assert await teacher.text("#mode") == "You have control"
            assert "has control" in await own.text("#viewers")
            target = (win["X"] + 200, win["Y"] + 130)
            await click_at(teacher, *await on_canvas(teacher, *target))
            wait_until(lambda: abs(screen.pointer()[0] - target[0]) <= 3 and abs(screen.pointer()[1] - target[1]) <= 3, 10,
                       "the teacher's click to reach the student's display")
            await type_keys(teacher, "rcsc3")
            wait_until(lambda: typed(keys_log) == "rcsc3", 10, "the teacher's keys in the student's window")
            await teacher.screenshot(ARTIFACTS / "teacher-with-control.png")

            # ---- the student ends the teacher's view: their stream closes within a second, the notice goes
            await viewers_panel(own)
            t0 = time.monotonic()
            await own.click(by_css(f"#viewer-list li[data-name={TEACHER}] button[data-action=end]"))
            await teacher.wait_for(f"{PHASE} === 'disconnected'", 5)
            assert time.monotonic() - t0 < 1.0
            await teacher.wait_text("#status", f"{STUDENT} ended your view", 5)
            await own.wait_for("!document.getElementById('viewers').textContent.includes('watching')", 5)
            assert (await viewer_state(own, TEACHER)) == {}
            await teacher.evaluate("location.reload()")  # and the teacher cannot just come back
            await teacher.wait_for(f"{PHASE} === 'disconnected' || window.rcsc3Desktop.ended", 30)
            await teacher.wait_text("#mode", "View ended", 10)
            await teacher.screenshot(ARTIFACTS / "teacher-view-ended.png")
            assert (await viewer_state(own, TEACHER)) == {}
            assert await own.evaluate("window.rcsc3Desktop.phase") == "connected"  # the student's own session goes on
            # the teacher's tab closes and the student lets them back in: nobody watches, the notice is gone
            await t_browser.close_tab(teacher)
            await viewers_panel(own)
            await own.click(by_css(f"#viewer-list li[data-name={TEACHER}] button[data-action=allow]"))
            await own.wait_for("document.getElementById('viewers').hidden && document.getElementById('viewers-panel').hidden", 5)
            assert (await own.evaluate(VIEWERS))["ended"] == []

        # ---- a student of another course: 403, no page, no stream
        async with UserBrowser() as o_browser:
            page = await o_browser.new_page()
            await page.viewport(1280, 720)
            await Steps(hub.url, OUTSIDER).login(page, next_path="/")
            await page.goto(f"{hub.url}{DESKTOP_URL}", 60)
            assert await page.nav_status() == 403
            assert "rcsc3-config" not in await page.evaluate("document.documentElement.outerHTML")
            stream = await page.evaluate(
                f"new Promise(done => {{ const ws = new WebSocket(location.origin.replace('http', 'ws') + "
                f"'/user/{STUDENT}/desktop-vnc/?desktop_token=guess'); ws.onopen = () => done('open');"
                " ws.onclose = (e) => done('closed ' + e.code); })", timeout=30)
            assert stream.startswith("closed"), stream
            await page.screenshot(ARTIFACTS / "outsider-refused.png")
    finally:
        _cleanup(hub, clients, procs)
