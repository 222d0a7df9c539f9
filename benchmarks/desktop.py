"""Remote Desktop benchmark: rcsc3_proxy vs the stock jupyter-remote-desktop-proxy, same machine, one go.

    /opt/rcsc3/venv/bin/python benchmarks/desktop.py [--runs N] [--seconds S]

Runs as root; every Jupyter server runs as test user rdtest3 (created by the test
fixtures' helper). The browser (headless Chromium) is already running before each
measured click, as a person's is. Every click time is measured *inside the page*:
`performance.now()` (ms since the navigation started) at the first 10 ms poll that
finds the noVNC canvas showing the desktop (> 100 colours: xfce's wallpaper and icons).

* cold: fresh server (desktop not started), first visit (empty browser cache);
  subjects interleaved run by run;
* prestart (rcsc3, RCSC3_DESKTOP_PRESTART=1): fresh server whose desktop started with
  it (and finished painting), first visit (empty cache);
* warm: desktop running, repeat visit (same browser: cached page assets);
* stream: bytes/s and updates/s of an RFB client (Raw encoding, incremental updates)
  through the full proxied path vs straight on Xvnc's unix socket, alternated N times
  (proxied first in even runs, raw first in odd ones), while glxgears runs in the desktop;
  plus the proxy processes' CPU seconds per MB (the Jupyter server; plus websockify's
  processes for bridge=websockify).

The stock tool's Xvnc (started by TigerVNC's `vncserver` wrapper, which reads
~/.vnc/config) runs with `BlacklistThreshold=1000000` for the benchmark only: its
readiness probes and the benchmark's many connections would otherwise get the
benchmark's viewers locked out (TigerVNC's blacklist), which once left its stream
samples empty. That only helps the stock tool. rcsc3 passes `-UseBlacklist=0` itself.

Prints min/median/max and ratios of medians against the stock tool. Not a test: no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "desktop"))

from cdp import CANVAS_COLOURS, Browser  # noqa: E402
from conftest import TEST_USERS, kill_user_processes, poll, start_server, user_pids  # noqa: E402
from rfb import RFBClient  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import describe as machine_now  # noqa: E402

USER = "rdtest3"
VISIBLE = f"(({CANVAS_COLOURS}) > 100)"
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_user() -> None:
    for user in TEST_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def xvnc_of(user: str) -> dict:
    """The user's Xvnc: its display, auth file and unix socket, read from its command line."""
    for pid in user_pids(user):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith(("Xvnc", "Xtigervnc")):
            opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
            display = next((a for a in argv[1:] if a.startswith(":")), None)
            return {"pid": pid, "display": display, "auth": opts.get("-auth"), "socket": opts.get("-rfbunixpath")}
    raise RuntimeError(f"no Xvnc of {user}")


#: Benchmark-only setting for the stock tool's Xvnc (see the docstring); removed after each stock server.
STOCK_VNC_CONFIG = "# written by rcsc3 benchmarks/desktop.py for the stock tool; removed afterwards\nBlacklistThreshold=1000000\n"


def stock_vnc_config(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / ".vnc" / "config"


def write_stock_vnc_config(user: str) -> None:
    path = stock_vnc_config(user)
    if path.exists() and path.read_text() != STOCK_VNC_CONFIG:
        raise RuntimeError(f"{path} exists and is not ours: not touching it")
    pw = pwd.getpwnam(user)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, pw.pw_uid, pw.pw_gid)
    path.write_text(STOCK_VNC_CONFIG)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def remove_stock_vnc_config(user: str) -> None:
    path = stock_vnc_config(user)
    if path.exists() and path.read_text() == STOCK_VNC_CONFIG:
        path.unlink()


def stop(server) -> None:
    server.stop()
    kill_user_processes(server.user)
    shutil.rmtree(server.config.parent, ignore_errors=True)
    remove_stock_vnc_config(server.user)


class Subject:
    """One tool under test: how to start its server and where its websocket is."""

    def __init__(self, name: str, stock: bool, ws_path: str, config: dict | None = None, env: dict | None = None):
        self.name, self.stock, self.ws_path = name, stock, ws_path
        self.config, self.env = config or {}, env or {}

    def start(self):
        # for the stock tool its server extension is left on (its /desktop/ page wins); our supervisor idles
        if self.stock:
            write_stock_vnc_config(USER)
        return start_server(USER, config=self.config, env=self.env, stock=self.stock)

    def server_pids(self, server) -> list[int]:
        """The processes the proxied bytes cross (the Jupyter server; plus our supervisor when it bridges)."""
        pids = [server.proc.pid]
        if not self.stock and self.config.get("bridge") == "websockify":
            # websockify's listener and the handler process it forked for this connection
            pids += [p for p in user_pids(USER) if "-m websockify" in _cmd(p)]
        return pids


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def glxgears(x: dict) -> subprocess.Popen:
    """The moving load: glxgears in the desktop, as the desktop's user."""
    pw = pwd.getpwnam(USER)
    if not x["display"]:  # ours: -displayfd, so the number is not on the command line
        x["display"] = ":" + str(next(d for d in range(64) if Path(f"/tmp/.X11-unix/X{d}").exists()
                                      and Path(f"/tmp/.X11-unix/X{d}").stat().st_uid == pw.pw_uid))
    return subprocess.Popen(["glxgears"], env={"DISPLAY": x["display"], "XAUTHORITY": x["auth"] or "",
                                               "HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"},
                            user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def click(server, page) -> float:
    """Navigate the (already open) page to the desktop; seconds from navigation start to desktop pixels."""
    await page.navigate("about:blank")
    await page.wait_for("document.readyState === 'complete' && location.href === 'about:blank'", 10)
    await page.navigate(server.url("desktop/"))
    ms, _ = await page.wait_for(f"{VISIBLE} && performance.now()", 90, interval=0.01)
    return ms / 1000


async def cold_once(subject: Subject, prestart_wait: bool = False) -> float:
    async with Browser() as browser:  # fresh profile: a first visit, empty cache
        page = await browser.new_page()
        server = subject.start()
        try:
            if prestart_wait:
                # what a student sees when the server started a while before the click
                poll(lambda: server.status()["state"] == "running", 60, "prestart")  # noqa: B023
                poll(lambda: "xfdesktop" in " ".join(_cmd(p) for p in user_pids(USER)), 60, "xfdesktop")
                await asyncio.sleep(3)  # benchmark only: let xfce finish painting, as a real pause before a click would
            return await click(server, page)
        finally:
            page.close()
            stop(server)


async def warm_and_stream(subject: Subject, runs: int, seconds: float) -> dict:
    server = subject.start()
    try:
        async with Browser() as browser:
            page = await browser.new_page()
            await click(server, page)  # make it run
            warm = [await click(server, page) for _ in range(runs)]
            page.close()
        x = xvnc_of(USER)
        gears = glxgears(x)
        try:
            await asyncio.sleep(1)  # benchmark only: let the animation start
            res = {"warm": warm, "proxy": [], "raw": [], "cpu_per_mb": []}
            for i in range(runs):
                # alternated, so that a drift of the load (glxgears warming up, a neighbour) hits both
                for path in ("proxy", "raw") if i % 2 == 0 else ("raw", "proxy"):
                    if path == "proxy":
                        c = await RFBClient.over_websocket(server.ws_url(subject.ws_path), headers={"Origin": server.base})
                    else:
                        c = await RFBClient.over_unix(x["socket"])
                    await c.handshake()
                    await c.first_frame()
                    pids = subject.server_pids(server)
                    cpu0 = cpu_seconds(pids)
                    nbytes, updates = await c.stream(seconds)
                    cpu = cpu_seconds(pids) - cpu0
                    c.close()
                    res[path].append((nbytes / seconds, updates / seconds))
                    if path == "proxy":
                        res["cpu_per_mb"].append(cpu / max(nbytes / 1e6, 1e-9))
            return res
        finally:
            gears.kill()
            gears.wait()
    finally:
        stop(server)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """min/median/max"""
    if not xs:
        return "-"
    return "/".join(fmt.format(v * scale) for v in (min(xs), med(xs), max(xs)))


async def main() -> int:
    import importlib.util

    if importlib.util.find_spec("jupyter_remote_desktop_proxy") is None:
        # The baseline is not a dependency: it adds its own "Desktop" tile and /desktop/ page,
        # so it must not stay in a venv students use.
        print("install the baseline first: pip install jupyter-remote-desktop-proxy==3.0.1 "
              "(and uninstall it afterwards)", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/desktop.py runs as root (it starts servers as a test user)", file=sys.stderr)
        return 2
    ensure_user()
    kill_user_processes(USER)
    stock = Subject("stock jupyter-remote-desktop-proxy", True, "desktop-websockify/")
    raw = Subject("rcsc3 bridge=raw", False, "desktop-vnc/", {"bridge": "raw"})
    wsk = Subject("rcsc3 bridge=websockify", False, "desktop-vnc/", {"bridge": "websockify"})
    pre = Subject("rcsc3 raw, prestart", False, "desktop-vnc/", {"bridge": "raw"}, {"RCSC3_DESKTOP_PRESTART": "1"})

    print(machine_now(), flush=True)
    results: dict[str, dict] = {s.name: {"cold": []} for s in (stock, raw, wsk, pre)}
    for _ in range(args.runs):  # interleaved: the machine is shared, its load drifts
        for s in (stock, raw, wsk):
            results[s.name]["cold"].append(await cold_once(s))
        results[pre.name]["cold"].append(await cold_once(pre, prestart_wait=True))
    for s in (stock, raw, wsk):
        results[s.name].update(await warm_and_stream(s, args.runs, args.seconds))

    print(json.dumps(results))  # the raw samples, whatever the table below makes of them
    base = results[stock.name]

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    print(f"\nRemote Desktop benchmark (min/median/max of {args.runs}; stream {args.seconds:.0f} s per sample "
          "under glxgears, Raw encoding)")
    print(f"{'':28} {'click s':>16} {'x stock':>7} {'warm s':>16} {'proxied MB/s':>16} {'raw MB/s':>16} "
          f"{'path/raw':>8} {'CPU ms/MB':>16} {'x stock':>7}")
    for name, r in results.items():
        row = f"{name:28} {spread(r['cold']):>16} {ratio(med(r['cold']), med(base['cold'])):7.2f} {spread(r.get('warm', [])):>16}"
        if r.get("proxy"):
            ratios = [p / q for (p, _), (q, _) in zip(r["proxy"], r["raw"], strict=True)]
            cpm = med(r["cpu_per_mb"])
            row += (f" {spread([b for b, _ in r['proxy']], 1e-6, '{:.0f}'):>16}"
                    f" {spread([b for b, _ in r['raw']], 1e-6, '{:.0f}'):>16} {med(ratios):8.2f}"
                    f" {spread(r['cpu_per_mb'], 1e3, '{:.1f}'):>16} {ratio(cpm, med(base['cpu_per_mb'])):7.2f}")
        print(row)
    print("click: navigation start -> desktop pixels, first visit (cold: desktop not running; prestart: running);"
          " warm: repeat visit, desktop running; path/raw: median of proxied/raw MB/s of back-to-back samples;"
          " CPU: proxy processes only")
    print("stock tool: its Xvnc ran with BlacklistThreshold=1000000 (benchmark only, ~/.vnc/config) so the"
          " benchmark's connections could not lock it out")
    print(machine_now())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
