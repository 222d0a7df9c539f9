"""rcsc3's JupyterLab plugin (rcsc3-jupyterlab): the Launcher shows as soon as the layout is restored.

Stock JupyterLab opens the Launcher on an empty main area only after its router has waited for a
debounced workspace save, about a second after the layout is restored. The plugin (built from
labextension/ by JupyterLab's builder) opens it at once on plain /lab with an empty main area,
and leaves every other page to JupyterLab. Real hub,
real Slurm job, real JupyterLab in headless Chromium; the plugin notes what it did on
document.body.dataset.rcsc3Launcher.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from e2e_browser import UserBrowser, UserPage
from e2e_journey import Steps, job_ids, reset_workspace
from hubproc import wait_until

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "labextension"  # the plugin's TypeScript and style, built by `make labextension`
EXTENSION = REPO / "rcsc3_proxy" / "jupyter" / "labextension"  # its build, which setup.cfg installs
VENV = Path(os.environ.get("RCSC3_VENV", "/opt/rcsc3/venv"))
NOTEBOOK = "rcsc3-launcher-test.ipynb"

MARKER = "document.body.dataset.rcsc3Launcher || ''"
TAB_LABELS = "[...document.querySelectorAll('.lm-DockPanel-tabBar .lm-TabBar-tabLabel')].map(e => e.innerText.trim())"
CURRENT_TAB = ("(() => { const t = document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current"
               " .lm-TabBar-tabLabel'); return t ? t.innerText.trim() : ''; })()")


def test_the_extension_is_built_installed_and_well_formed():
    source = json.loads((SOURCE / "package.json").read_text())
    package = json.loads((EXTENSION / "package.json").read_text())
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert source["version"] == package["version"] == setup["metadata"]["version"]
    # built from the sources as they are (`make install` rebuilds it when they change)
    sources = [SOURCE / "package.json", SOURCE / "package-lock.json", SOURCE / "tsconfig.json",
               *(SOURCE / "src").iterdir(), *(SOURCE / "style").iterdir()]
    stale = [str(p.relative_to(REPO)) for p in sources if p.stat().st_mtime > (EXTENSION / "package.json").stat().st_mtime]
    assert not stale, f"changed since the build (run `make labextension`): {stale}"
    # it declares the JupyterLab package it uses, so JupyterLab can tell whether it fits
    assert package["dependencies"]["@jupyterlab/application"].startswith("^4.")
    # JupyterLab's builder made it: a content-hashed module-federation entry, the plugin and its style
    build = package["jupyterlab"]["_build"]
    assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]{16,}\.js", build["load"]), build
    assert build["extension"] == "./extension" and build["style"] == "./style", build
    entry = EXTENSION / build["load"]
    node = shutil.which("node")
    if node:  # a syntax error would only show as a console error in the student's browser
        subprocess.run([node, "--check", str(entry)], check=True, capture_output=True)
    # `make install` put the same files where JupyterLab looks, and JupyterLab accepts it
    installed = VENV / "share" / "jupyter" / "labextensions" / package["name"]
    for path in (p for p in EXTENSION.rglob("*") if p.is_file()):
        copy = installed / path.relative_to(EXTENSION)
        assert copy.is_file() and copy.read_bytes() == path.read_bytes(), f"{copy} is not the build's {path.name}"
    listing = subprocess.run([str(VENV / "bin" / "jupyter"), "labextension", "list"], capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL)
    line = next((ln for ln in (listing.stdout + listing.stderr).splitlines() if package["name"] in ln), "")
    assert "enabled" in line and "OK" in line, listing.stdout + listing.stderr


def _write_notebook(user: str) -> Path:
    pw = pwd.getpwnam(user)
    path = Path(pw.pw_dir) / NOTEBOOK
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _workspace_has(user: str, name: str) -> bool:
    workspaces = Path(pwd.getpwnam(user).pw_dir) / ".jupyter" / "lab" / "workspaces"
    return any(name in p.read_text(errors="replace") for p in workspaces.glob("*.jupyterlab-workspace"))


async def _open(page: UserPage, url: str, current_tab: str) -> str:
    """Load a JupyterLab URL; wait until the plugin has decided and `current_tab` is the current tab."""
    await page.goto(url, timeout=60)
    marker, _ = await page.wait_for(f"({CURRENT_TAB}) === {json.dumps(current_tab)} && ({MARKER})", 60)
    return marker


async def test_launcher_opens_at_once_only_on_an_empty_plain_lab(idle, shots):
    hub, user = idle, "student2"
    reset_workspace(user)
    notebook = _write_notebook(user)
    lab = f"{hub.url}/user/{user}/lab"
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        steps = Steps(hub.url, user, shots=shots)
        try:
            await steps.login(page)
            hub.started_jobs |= job_ids(await steps.spawn(page))

            # a new student on /lab: the plugin opened the Launcher, and it is the only tab
            assert await page.evaluate(MARKER) == "opened"
            assert await page.evaluate(TAB_LABELS) == ["Launcher"]

            # a link to a notebook: left to JupyterLab, which opens the notebook and no Launcher
            marker = await _open(page, f"{lab}/tree/{NOTEBOOK}", NOTEBOOK)
            assert marker == "left to JupyterLab: not plain /lab"
            assert "Launcher" not in await page.evaluate(TAB_LABELS)
            wait_until(lambda: _workspace_has(user, NOTEBOOK), 30, "JupyterLab to save the layout with the notebook")

            # /lab again: the restored layout has the notebook, so no Launcher is added
            marker = await _open(page, lab, NOTEBOOK)
            assert marker == "left to JupyterLab: main area not empty"
            assert "Launcher" not in await page.evaluate(TAB_LABELS)
        except Exception:
            await steps.shot(page, "failed")
            raise
        finally:
            notebook.unlink(missing_ok=True)
            reset_workspace(user)
