"""The student's journey as steps a person takes in the browser; shared by tests/e2e and benchmarks/journey.py.

Each step waits (bounded) for what the person would see before going on, and
returns what it saw. `Steps.timings` keeps each step's wall time for the benchmark.
Also here: the process, job and socket checks the tests make afterwards.
"""

from __future__ import annotations

import json
import pwd
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # hubproc, hubclient
sys.path.insert(0, str(HERE))

from e2e_browser import CANVAS_COLOURS, UserBrowser, UserPage, by_css, by_text  # noqa: E402
from hubproc import password_of, user_jobs  # noqa: E402
from procfs import user_proc_fields  # noqa: E402

RESULT = "[0, 1, 4, 9, 16, 25, 36, 49]"
CELL = ('import ipyparallel as ipp; cluster = ipp.Cluster(engines="srun", n=2); rc = cluster.start_and_connect_sync(); '
        'print(sorted(rc[:].map_sync(lambda x: x * x, range(8)))); cluster.stop_cluster_sync()')
PROFILE_LABEL = "GPU desktop — interactive partition, 1 GPU"
EXAMPLES_DIR = "rcsc3-notebooks"
EXAMPLES = ("getting-started.ipynb", "parallel-mandelbrot.ipynb")
#: a launcher tile on the visible launcher
VISIBLE_CARD = "[...document.querySelectorAll('.jp-LauncherCard')].find(e => e.offsetParent !== null)"
#: the visible notebook panel (JupyterLab keeps hidden ones in the DOM)
NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"
DESKTOP_PHASE = "window.rcsc3Desktop && window.rcsc3Desktop.phase"
#: an xfce desktop shows hundreds of colours on the canvas; a black or error screen a handful
MIN_COLOURS = 100
#: what a student's desktop is made of: the supervisor, the VNC server, the xfce session and its helpers
DESKTOP_PROCESS = re.compile(r"Xvnc|Xtigervnc|xfce|xfwm|xfdesktop|xfsettingsd|rcsc3_proxy\.desktop\.supervisor|websockify|vglrun")


@dataclass
class Steps:
    hub_url: str
    user: str
    shots: Path | None = None  # where screenshots go (None: none are taken)
    timings: dict[str, float] = field(default_factory=dict)
    seen: dict[str, object] = field(default_factory=dict)
    _t: float = 0.0

    def _start(self) -> None:
        self._t = time.monotonic()

    def _done(self, name: str) -> float:
        self.timings[name] = time.monotonic() - self._t
        return self.timings[name]

    async def shot(self, page: UserPage, name: str) -> Path | None:
        if self.shots is None:
            return None
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        await page.screenshot(path)
        return path

    # ------------------------------------------------------------------ steps
    async def login(self, page: UserPage, next_path: str = "/hub/spawn") -> None:
        """Open the login page, type name and password, press "Sign in"; wait for the page after it."""
        await page.goto(f"{self.hub_url}/hub/login")
        await page.wait_for("!!document.querySelector('#login_submit')", 20)
        self._start()
        await page.type_into("#username_input", self.user)
        await page.type_into("#password_input", password_of(self.user))
        await self.shot(page, "01-login")
        await page.click_css("#login_submit")
        arrived = f"location.pathname.startsWith({json.dumps(next_path)})"
        await page.wait_for(f"!location.pathname.startsWith('/hub/login') && {arrived} && document.readyState !== 'loading'", 30)
        self._done("login")

    async def spawn(self, page: UserPage, profile: str = "gpu-desktop") -> list[str]:
        """On the spawn form pick the profile, press Start, and watch the spawn page until JupyterLab loads.

        Returns the progress messages the page showed, in order.
        """
        radio = f"input[name=profile][value={json.dumps(profile)}]"
        await page.wait_for(f"!!document.querySelector({json.dumps(radio)})", 20)
        label = await page.evaluate(f"document.querySelector({json.dumps(radio)}).closest('label').innerText")
        self.seen["profile_label"] = label
        await page.click(f"document.querySelector({json.dumps(radio)}).closest('label').querySelector('strong')")
        assert await page.evaluate(f"document.querySelector({json.dumps(radio)}).checked"), "the profile radio is not checked"
        await self.shot(page, "02-spawn-form")
        self._start()
        await page.click(by_css("#spawn_form input[type=submit], #spawn_form button[type=submit]"))
        await page.wait_for("location.pathname.includes('/spawn-pending/') || location.pathname.includes('/lab')", 30)
        self._done("form_to_spawn_page")
        self._start()
        messages: list[str] = []  # the spawn page's event log, as last seen
        shot_taken = False
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            path, message, log = await page.evaluate(
                "(() => { const m = document.querySelector('#progress-message');"
                " const log = [...document.querySelectorAll('#progress-log .progress-log-event')].map(e => e.textContent.trim());"
                " return [location.pathname, m ? m.innerText : null, log]; })()") or ["", None, []]
            if len(log) > len(messages):
                messages = log
            if not shot_taken and message and re.search(r"Job \d+ (pending|running)", message):
                await self.shot(page, "03-spawn-progress")
                shot_taken = True
            if "/lab" in path and "/spawn-pending/" not in path:
                break
            if message and ("failed" in message.lower() or "ended" in message):
                raise AssertionError(f"spawn failed: {message}; event log: {messages}")
            await _tick()
        else:
            raise AssertionError(f"JupyterLab did not load in 180 s; the spawn page's event log: {messages}")
        await ensure_launcher(page, 90)
        self._done("spawn_to_lab")
        # of which JupyterLab's own page load (navigation start -> launcher shown)
        self.timings["lab_page_to_launcher"] = float(await page.evaluate("performance.now()")) / 1000
        self.seen["progress"] = messages
        return messages

    async def open_desktop(self, browser: UserBrowser, page: UserPage) -> tuple[UserPage, int]:
        """Click the launcher's "Remote Desktop" tile, follow the tab it opens, wait for the xfce desktop's pixels."""
        tile = by_text(".jp-LauncherCard", "Remote Desktop")
        await ensure_launcher(page)
        await self.shot(page, "04-launcher")
        known = {t["id"] for t in await browser.targets()}
        self._start()
        await page.click(tile)
        desktop = await browser.wait_tab(f"/user/{self.user}/desktop/", known, 30)
        await desktop.wait_for(f"{DESKTOP_PHASE} === 'connected'", 60)
        colours, _ = await desktop.wait_for(f"(({CANVAS_COLOURS}) > {MIN_COLOURS}) && ({CANVAS_COLOURS})", 60)
        self._done("click_to_desktop")
        self.seen["desktop_status"] = await desktop.evaluate("document.getElementById('status').textContent")
        self.seen["desktop_url"] = await desktop.url()
        return desktop, colours

    async def examples_listed(self, page: UserPage) -> list[str]:
        """Open the example notebooks' folder in the file browser (double click); return what it lists."""
        await page.front()  # back to the JupyterLab tab
        if not await page.evaluate("!!(document.querySelector('.jp-FileBrowser') || {}).offsetParent"):
            await page.click_css(".jp-SideBar [data-id='filebrowser']")
        await page.click_css(".jp-FileBrowser .jp-BreadCrumbs-home")  # from the home folder, wherever it was left
        item = by_text(".jp-DirListing-item", EXAMPLES_DIR)
        await page.wait_for(f"!!{item}", 20)
        await page.double_click(item)
        js = "[...document.querySelectorAll('.jp-DirListing-item .jp-DirListing-itemText')].map(e => e.innerText.trim())"
        names, _ = await page.wait_for(f"(() => {{ const n = {js}; return n.includes({json.dumps(EXAMPLES[0])}) && n; }})()",
                                       20)
        return names

    async def run_cell(self, page: UserPage, code: str = CELL, expect: str = RESULT, timeout: float = 180) -> tuple[str, str]:
        """New notebook from the launcher's Python 3 tile, type `code` into its cell, Shift+Enter, wait for `expect`.

        Returns (the notebook's file name, the cell's output text).
        """
        await page.front()
        await ensure_launcher(page)
        await page.click(by_text(".jp-LauncherCard[data-category='Notebook']", "Python 3"))
        editor = f"{NB} .jp-Cell .cm-content"
        await page.wait_for(f"!!document.querySelector({json.dumps(editor)})", 60)
        name, _ = await page.wait_for("document.title.includes('.ipynb') && document.title.split(' - ')[0]", 30)
        self.seen["notebook"] = name
        # as a person does: wait until the kernel shows "Idle" in the status bar before running the cell
        await page.wait_for("(document.querySelector('#jp-main-statusbar') || {innerText: ''}).innerText"
                            ".includes('| Idle')", 60)
        self._start()
        await page.type_into(editor, code)
        await page.wait_for(f"document.querySelector({json.dumps(editor)}).innerText.includes('map_sync')", 10)
        await page.shift_enter()
        prompt = f"document.querySelector('{NB} .jp-Cell .jp-InputPrompt').innerText"
        try:
            await page.wait_for(f"/\\[(\\*|\\d+)\\]/.test({prompt})", 10)
        except TimeoutError:  # the key press came before the notebook listened: click the cell, press again
            await page.click_css(editor)
            await page.shift_enter()
            await page.wait_for(f"/\\[(\\*|\\d+)\\]/.test({prompt})", 10)
        output = await page.wait_text(f"{NB} .jp-OutputArea", expect, timeout)
        self._done("cell_to_output")
        # the cell finishes (its prompt shows a number instead of "*") before the picture is taken
        await page.wait_for(f"/\\[\\d+\\]/.test({prompt})", 60)
        await self.shot(page, "06-notebook-output")
        return name, output

    async def stop_from_home(self, browser: UserBrowser, page: UserPage) -> UserPage:
        """JupyterLab's File menu, "Hub Control Panel" (opens /hub/home in a new tab), press "Stop My Server",
        wait until the page offers to start it again. Returns the control panel's tab."""
        await page.front()
        known = {t["id"] for t in await browser.targets()}
        await page.click(by_text(".lm-MenuBar-item", "File"))
        await page.click(by_text(".lm-Menu-item", "Hub Control Panel"))
        home = await browser.wait_tab("/hub/home", known, 30)
        await home.viewport()
        await home.front()
        stopped = ("(() => { const s = document.querySelector('#start'); const t = document.querySelector('#stop');"
                   " return !!s && s.offsetParent !== null && !(t && t.offsetParent); })()")
        # the button works once the page's script has hooked it up; it then disables "#start" at once
        reacted = f"{stopped} || (document.querySelector('#start') || {{}}).hasAttribute('disabled')"
        for attempt in range(3):
            await home.wait_for("document.readyState === 'complete'", 30)
            await home.click(by_text("#stop", "Stop My Server"))
            try:
                await home.wait_for(reacted, 5)
                break
            except TimeoutError:
                if attempt == 2:
                    raise
        await home.wait_for(stopped, 90)
        return home


async def ensure_launcher(page: UserPage, timeout: float = 30) -> None:
    """Wait for JupyterLab's main area; if it restored a layout whose current tab is no launcher, press "+"."""
    current = ("(() => { const t = document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current"
               " .lm-TabBar-tabLabel'); return t ? t.innerText.trim() || '?' : ''; })()")
    label, _ = await page.wait_for(current, timeout)
    if label != "Launcher":
        await page.click_css(".lm-DockPanel-tabBar .lm-TabBar-addButton")
    await page.wait_for(f"!!{VISIBLE_CARD}", 20)
    # JupyterLab's "get notified about official Jupyter news?" toast, if it is up already: answer No
    no = by_text(".jp-toast-button, .jp-Notification-Toast button, .Toastify button", "No")
    if await page.evaluate(f"!!{no}"):
        await page.click(no, timeout=5)


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.05)


# ---------------------------------------------------------------------- host checks
def desktop_processes(user: str) -> list[str]:
    """The user's processes that belong to a desktop (supervisor, Xvnc, xfce...): "pid command line"."""
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,args="], capture_output=True, text=True, check=False).stdout
    return [line.strip() for line in out.splitlines() if DESKTOP_PROCESS.search(line)]


def vnc_sockets(user: str) -> list[str]:
    """The VNC unix socket paths of the user's running Xvnc servers, read from /proc (-rfbunixpath)."""
    found = []
    for _, argv in user_proc_fields(pwd.getpwnam(user).pw_uid, "cmdline"):
        for flag, value in zip(argv, argv[1:], strict=False):  # neighbours: one pair fewer than argv
            if flag == b"-rfbunixpath":
                found.append(value.decode())
    return found


def connect_as(user: str, socket_path: str) -> subprocess.CompletedProcess:
    """Try to connect to a unix socket as `user` (runuser); prints OK or the exception's class name."""
    code = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1]); print('OK')\nexcept Exception as e:\n    print(type(e).__name__)")
    return subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, socket_path],
                          capture_output=True, text=True, timeout=20, check=False)


def leftovers(user: str, jobs: list[str] | None = None) -> dict:
    """What is left of a student's server: Slurm jobs (all of the user's, or just `jobs`) and desktop processes."""
    running = user_jobs(user)
    if jobs is not None:
        running = [j for j in running if j in jobs]
    return {"jobs": running, "processes": desktop_processes(user)}


def cleaned_up(user: str, jobs: list[str] | None = None) -> bool:
    left = leftovers(user, jobs)
    return not left["jobs"] and not left["processes"]


def job_ids(messages: list[str]) -> set[str]:
    """The Slurm job ids the spawn page's messages name."""
    return {m for msg in messages for m in re.findall(r"[Jj]ob (\d+)", msg)}


def reset_workspace(user: str) -> None:
    """Forget the JupyterLab layout a run saved (open notebook, tabs): the next run starts like a new student's."""
    workspaces = Path(pwd.getpwnam(user).pw_dir) / ".jupyter" / "lab" / "workspaces"
    for path in workspaces.glob("*.jupyterlab-workspace"):
        path.unlink()


def remove_notebook(user: str, name: str, folder: str = EXAMPLES_DIR) -> None:
    """Remove a notebook the test created in the student's home (test cleanup)."""
    if not name or "/" in name or not name.endswith(".ipynb"):
        return
    home = Path(pwd.getpwnam(user).pw_dir)
    for d in (home / folder, home):
        p = d / name
        if p.is_file() and p.name.startswith("Untitled"):
            p.unlink()
            break
