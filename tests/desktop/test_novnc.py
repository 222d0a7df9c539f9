"""noVNC as one bundle (rcsc3 novnc-bundle) and the page's fallback to Debian's modules.

Real esbuild (npm, installed by `make install`), real Debian noVNC, real jupyter server.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from rcsc3_proxy.desktop import novnc

NOVNC = Path("/usr/share/novnc")
ESBUILD = shutil.which(novnc.DEFAULT_ESBUILD) or shutil.which("esbuild")


@pytest.fixture
def novnc_copy(tmp_path):
    """A private copy of Debian's noVNC (its version hash can change without touching the system's)."""
    if not (NOVNC / "core" / "rfb.js").exists():
        pytest.fail("Debian's novnc is not installed (make system-deps installs it)")
    shutil.copytree(NOVNC / "core", tmp_path / "novnc" / "core")
    shutil.copytree(NOVNC / "vendor", tmp_path / "novnc" / "vendor")
    return tmp_path / "novnc"


def test_bundle_is_one_module_named_after_the_modules_it_was_built_from(novnc_copy, tmp_path):
    assert ESBUILD, "esbuild missing: make install puts it in /opt/rcsc3/node"
    out = tmp_path / "bundle"
    built = novnc.build_bundle(novnc_copy, out, ESBUILD)
    version = novnc.version(novnc_copy)
    assert built.name == f"rfb-{version}.js" and novnc.find_bundle(out, version) == built
    text = built.read_text()
    # one classic script (the page carries it inline) that hands noVNC's RFB class over as a global
    assert text.startswith(f"var {novnc.GLOBAL_NAME}=") and novnc.inline_script(built) == text
    assert "import " not in text[:2000] and "export{" not in text.replace(" ", "")  # nothing left to fetch
    # an upgraded noVNC (another hash) does not use the old bundle; rebuilding replaces it
    (novnc_copy / "core" / "rfb.js").write_text((novnc_copy / "core" / "rfb.js").read_text() + "\n// upgraded\n")
    assert novnc.version(novnc_copy) != version and novnc.find_bundle(out, novnc.version(novnc_copy)) is None
    rebuilt = novnc.build_bundle(novnc_copy, out, ESBUILD)
    assert [p.name for p in out.iterdir()] == [rebuilt.name]


def test_a_bundle_that_would_break_the_page_is_not_inlined(tmp_path):
    good = tmp_path / "good.js"
    good.write_text(f"var {novnc.GLOBAL_NAME}=(()=>{{return {{default: 1}}}})();")
    assert novnc.inline_script(good) == good.read_text()
    for bad in (f'var {novnc.GLOBAL_NAME}=(()=>"</SCRIPT><script>alert(1)")();',  # would end the <script> early
                f"var {novnc.GLOBAL_NAME}=(()=>'<!--')();",
                "export{q as default};"):  # an ES module (an old bundle): not a classic script
        (tmp_path / "bad.js").write_text(bad)
        assert novnc.inline_script(tmp_path / "bad.js") is None, bad
    assert novnc.inline_script(tmp_path / "missing.js") is None


def test_command_says_what_is_missing(tmp_path, capsys):
    assert novnc.main(["--esbuild", str(tmp_path / "no-esbuild"), "--out", str(tmp_path)]) in (0, 1)
    if not ESBUILD:
        assert "esbuild not found" in capsys.readouterr().err
    assert novnc.main(["--novnc", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 1
    assert "rfb.js not found" in capsys.readouterr().err


def test_without_a_matching_bundle_the_page_loads_the_modules(server_factory):
    empty = Path(tempfile.mkdtemp(prefix="rcsc3-no-bundle-"))  # readable by the test user, and empty
    empty.chmod(0o755)
    try:
        server = server_factory("rdtest3", config={"novnc_bundle_dir": str(empty)})
    finally:
        empty.rmdir()
    page = requests.get(server.url("desktop/"), timeout=20).text
    preloads = re.findall(r'rel="modulepreload"[^>]*href="([^"]+)"', page)
    assert len(preloads) > 30 and any(p.endswith("/core/rfb.js") for p in preloads), preloads
    assert '"rfb": "novnc/' in page and '/core/rfb.js"' in page
    assert "var rcsc3NoVNC=" not in page  # nothing inline: the modules load
    r = requests.get(server.url(f"desktop/{preloads[0]}"), timeout=20)
    assert r.status_code == 200 and "immutable" in r.headers["Cache-Control"]
