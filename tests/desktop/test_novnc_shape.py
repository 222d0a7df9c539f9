"""The page's use of noVNC's private Display, against the installed noVNC: shape, release pin, fallback.

desktop.js (`decodeJpegOffThread`) replaces noVNC 1.3's `Display.imageRect` and `drawImage` and
uses its `_renderQPush`, `_damage` and `_drawCtx`, only for a release in novnc.ACCEPTED_RELEASES
and only when those members look as expected (`novncShapeProblem`). Real Chromium, real jupyter
server, real Xvnc; Debian's noVNC modules, and the bundle `rcsc3 novnc-bundle` makes of them
(built here with the real esbuild). A noVNC whose Display changed, or of another release (both
made from a copy of Debian's), must give a working page on plain noVNC: these fail when a noVNC
upgrade changes what the page relies on, and when the page's fallback breaks.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from cdp import CANVAS_COLOURS, Browser
from conftest import need

from rcsc3_proxy.desktop import novnc

NOVNC = Path("/usr/share/novnc")
PHASE = "window.rcsc3Desktop && window.rcsc3Desktop.phase"


def test_the_installed_novnc_is_a_release_the_page_accepts():
    release = novnc.release(NOVNC)
    assert novnc.accepted(release), f"Debian's noVNC is {release!r}; the page's JPEG path knows {novnc.ACCEPTED_RELEASES}"
    assert not novnc.accepted("1.30.0") and not novnc.accepted("") and novnc.accepted("1.3")


def test_the_release_of_a_source_tree_comes_from_its_package_json(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"name": "@novnc/novnc", "version": "1.5.0"}))
    assert novnc.release(tmp_path) == "1.5.0"
    assert novnc.release(tmp_path / "elsewhere") == ""


@pytest.fixture
def readable_dir():
    """A directory the test user's server can read (tmp_path is root's own)."""
    path = Path(tempfile.mkdtemp(prefix="rcsc3-novnc-shape-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _copy_of_debians(to: Path) -> Path:
    for sub in ("core", "vendor"):
        shutil.copytree(NOVNC / sub, to / sub)
    for p in [to, *to.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return to


async def _page(server) -> dict:
    need("/usr/bin/chromium")
    async with Browser() as browser:
        page = await browser.new_page()
        await page.navigate(server.url("desktop/"))
        await page.wait_for(f"{PHASE} === 'connected'", 60)
        colours, _ = await page.wait_for(f"(({CANVAS_COLOURS}) > 100) && ({CANVAS_COLOURS})", 60)
        seen = await page.evaluate("(({novncShape, jpegDecoder, jpegsDrawn}) => ({novncShape, jpegDecoder, jpegsDrawn}))"
                                   "(window.rcsc3Desktop)")
        seen["inline"] = await page.evaluate("!!window.rcsc3NoVNC")
        seen["colours"] = colours
        page.close()
        return seen


@pytest.mark.parametrize("how", ["modules", "bundle"])
async def test_debians_novnc_has_the_shape_the_page_uses(server_factory, readable_dir, how):
    if how == "bundle":
        esbuild = shutil.which(novnc.DEFAULT_ESBUILD) or shutil.which("esbuild")
        assert esbuild, "esbuild missing: make install puts it in /opt/rcsc3/node"
        novnc.build_bundle(NOVNC, readable_dir, esbuild)
        for p in readable_dir.iterdir():
            p.chmod(0o644)
    server = server_factory("rdtest3", config={"novnc_bundle_dir": str(readable_dir)}, env={"RCSC3_DESKTOP_PRESTART": "1"})
    server.wait_running()
    seen = await _page(server)
    assert seen["inline"] is (how == "bundle")
    assert seen["novncShape"] == "" and seen["jpegDecoder"] is True and seen["jpegsDrawn"] > 0, seen


@pytest.mark.parametrize("change, problem", [
    ("display", "lacks _renderQPush"),  # a noVNC whose Display was reworked
    ("release", "release 1.9.0 is not one the page knows"),  # a release nobody tested the page with
])
async def test_another_novnc_gets_plain_novnc_and_still_shows_the_desktop(server_factory, readable_dir, change, problem):
    copy = _copy_of_debians(readable_dir / "novnc")
    # a copy elsewhere is no Debian package: its release comes from a package.json, as in a source tree
    (copy / "package.json").write_text(json.dumps({"version": novnc.release(NOVNC) if change == "display" else "1.9.0"}))
    (copy / "package.json").chmod(0o644)
    if change == "display":
        display = copy / "core" / "display.js"
        text = display.read_text()
        assert "_renderQPush(" in text
        display.write_text(text.replace("_renderQPush(", "_renderQueuePush("))
    empty = readable_dir / "no-bundle"
    empty.mkdir(mode=0o755)
    server = server_factory("rdtest3", config={"novnc_path": str(copy), "novnc_bundle_dir": str(empty)},
                            env={"RCSC3_DESKTOP_PRESTART": "1"})
    server.wait_running()
    seen = await _page(server)
    assert problem in seen["novncShape"], seen
    assert seen["jpegDecoder"] is False and seen["jpegsDrawn"] == 0 and seen["colours"] > 100, seen
