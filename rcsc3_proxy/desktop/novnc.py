"""The noVNC client the desktop page loads: Debian's modules, or one bundle built from them.

Debian's `novnc` package ships noVNC as ~45 ES modules. Through the hub's proxy and
jupyter-server-proxy each costs a request, and on the lab node loading them took about
0.5 s of the 0.75 s from the click to the desktop. `rcsc3 novnc-bundle` (run by `make
install` when node's esbuild is there) joins them into one minified classic script that
sets `window.rcsc3NoVNC.default` to noVNC's RFB class, named after a hash of the installed
modules: after an upgrade of Debian's noVNC the old bundle no longer matches and the page
falls back to the modules until the bundle is built again. The page carries the bundle
inline (see supervisor.py), so a first visit makes no request for noVNC at all.
Nothing of noVNC is copied into rcsc3 itself; the bundle is made from what the node has.

The page's JPEG path (desktop.js, `decodeJpegOffThread`) replaces two methods of noVNC's private
Display and uses three of its private members. It does so only for the releases in
ACCEPTED_RELEASES (`release()` says which one is installed) and only when those members have the
shape it expects; otherwise noVNC runs as it is. tests/desktop/test_novnc_shape.py checks both the
installed modules and the bundle in Chromium, and fails when a new noVNC changes that shape.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_BUNDLE_DIR = os.path.join(sys.prefix, "share", "rcsc3", "novnc")
DEFAULT_ESBUILD = "/opt/rcsc3/node/bin/esbuild"
#: Where the bundle puts noVNC's RFB class (as `.default`, like the module's default export).
GLOBAL_NAME = "rcsc3NoVNC"


#: noVNC releases (major.minor) whose private Display the page's JPEG path was written for and tested with
ACCEPTED_RELEASES = ["1.3"]
#: Debian's record of the installed `novnc` package (its first line names the version)
DEBIAN_CHANGELOG = Path("/usr/share/doc/novnc/changelog.Debian.gz")


def release(novnc: Path, debian_changelog: Path = DEBIAN_CHANGELOG) -> str:
    """The installed noVNC's release, e.g. "1.3.0" ('' if unknown): its package.json (a source tree
    or npm's package), else, for Debian's /usr/share/novnc, the package's version."""
    try:
        version = json.loads((novnc / "package.json").read_text()).get("version", "")
        return version if isinstance(version, str) else ""
    except (OSError, ValueError, AttributeError):
        pass
    if novnc.resolve() != Path("/usr/share/novnc"):
        return ""
    try:
        with gzip.open(debian_changelog, "rt", errors="replace") as f:
            first = f.readline(200)
    except (OSError, EOFError):
        return ""
    m = re.match(r"novnc \((?:\d+:)?([0-9][0-9.]*)", first)  # "novnc (1:1.3.0-1) unstable; ..."
    return m.group(1).rstrip(".") if m else ""


def accepted(novnc_release: str) -> bool:
    """Whether the page's JPEG path may touch this noVNC release's internals (same test as desktop.js)."""
    return any(novnc_release == r or novnc_release.startswith(r + ".") for r in ACCEPTED_RELEASES)


def modules(novnc: Path) -> list[str]:
    """Every ES module of noVNC, relative to its directory."""
    return sorted(str(p.relative_to(novnc)) for sub in ("core", "vendor/pako") for p in (novnc / sub).rglob("*.js"))


def version(novnc: Path, names: list[str] | None = None) -> str:
    """A short hash of the installed noVNC modules (names, sizes, mtimes): cache key and bundle name."""
    h = hashlib.sha1()
    for m in modules(novnc) if names is None else names:
        st = (novnc / m).stat()
        h.update(f"{m}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def bundle_name(novnc_version: str) -> str:
    return f"rfb-{novnc_version}.js"


def find_bundle(bundle_dir: Path, novnc_version: str) -> Path | None:
    """The bundle built from exactly these modules, if there is one."""
    path = bundle_dir / bundle_name(novnc_version)
    try:
        return path if path.is_file() else None
    except OSError:  # an unreadable directory: same as no bundle
        return None


def fits_in_script_tag(js: str) -> bool:
    """Whether JavaScript can go between <script> tags as it is: an HTML parser ends the script
    at "</script" whatever the JS means there, and "<!--" starts the legacy script-escape states."""
    return "</script" not in js.lower() and "<!--" not in js


def inline_script(bundle: Path) -> str | None:
    """The bundle's text, fit to go between <script> tags, or None if it cannot be (then the page loads it)."""
    try:
        text = bundle.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    # minified noVNC has neither "</script" nor "<!--" today; an old ESM bundle is no classic script
    if not fits_in_script_tag(text) or not text.lstrip().startswith(f"var {GLOBAL_NAME}="):
        return None
    return text


def build_bundle(novnc: Path, bundle_dir: Path, esbuild: str) -> Path:
    """Bundle noVNC's RFB module into `bundle_dir` as one classic script setting
    `window.rcsc3NoVNC.default`; returns the file written."""
    if not (novnc / "core" / "rfb.js").is_file():
        raise FileNotFoundError(f"{novnc}/core/rfb.js not found (apt-get install novnc)")
    bundle_dir.mkdir(parents=True, exist_ok=True)
    target = bundle_dir / bundle_name(version(novnc))
    # write beside the target and rename: a page never loads half a bundle
    with tempfile.NamedTemporaryFile(dir=bundle_dir, suffix=".js.tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        subprocess.run([esbuild, str(novnc / "core" / "rfb.js"), "--bundle", "--format=iife",
                        f"--global-name={GLOBAL_NAME}", "--minify",
                        "--log-level=warning", f"--outfile={tmp_path}"], check=True, stdin=subprocess.DEVNULL)
        tmp_path.chmod(0o644)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)
    for old in bundle_dir.glob("rfb-*.js"):
        if old != target:
            old.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    """`rcsc3 novnc-bundle`: build the one-file noVNC client for the desktop page."""
    ap = argparse.ArgumentParser(prog="rcsc3 novnc-bundle", description=main.__doc__)
    ap.add_argument("--novnc", default="/usr/share/novnc", help="noVNC's directory (Debian: /usr/share/novnc)")
    ap.add_argument("--out", default=DEFAULT_BUNDLE_DIR, help="where the bundle goes (c.RemoteDesktop.novnc_bundle_dir)")
    ap.add_argument("--esbuild", default=DEFAULT_ESBUILD, help="the esbuild program (npm install -g esbuild)")
    args = ap.parse_args(argv)
    esbuild = shutil.which(args.esbuild) or shutil.which("esbuild")
    if esbuild is None:
        print(f"rcsc3 novnc-bundle: esbuild not found ({args.esbuild}); the page loads noVNC's modules one by one",
              file=sys.stderr)
        return 1
    try:
        path = build_bundle(Path(args.novnc), Path(args.out), esbuild)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"rcsc3 novnc-bundle: {e}", file=sys.stderr)
        return 1
    print(f"rcsc3 novnc-bundle: {path} ({path.stat().st_size // 1024} KiB)")
    return 0
