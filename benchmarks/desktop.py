"""Remote Desktop benchmark: rcsc3_proxy vs the stock jupyter-remote-desktop-proxy, same machine, one go.

    /opt/rcsc3/venv/bin/python benchmarks/desktop.py [--runs N] [--seconds S]

Runs as root; every Jupyter server runs as test user rdtest3 (created by the test
fixtures' helper). Measures, each as the median of N runs:

* cold click: fresh server, navigate headless Chromium to /desktop/, until the
  noVNC canvas shows the desktop (> 100 colours: xfce's wallpaper and icons);
  for rcsc3 also with prestart (RCSC3_DESKTOP_PRESTART=1, desktop started with the server);
* warm click: desktop already running, navigate to /desktop/ until the canvas shows it;
* stream: bytes/s and updates/s of an RFB client (Raw encoding, incremental
  updates) through the full proxied path vs straight on Xvnc's unix socket,
  while glxgears runs in the desktop; plus the proxy's CPU seconds per MB.

Prints medians and ratios against the stock tool. Not a test: no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "desktop"))

from cdp import CANVAS_COLOURS, Browser  # noqa: E402
from conftest import TEST_USERS, kill_user_processes, poll, start_server, user_pids  # noqa: E402
from rfb import RFBClient  # noqa: E402

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


def stop(server) -> None:
    server.stop()
    kill_user_processes(server.user)
    shutil.rmtree(server.config.parent, ignore_errors=True)


class Subject:
    """One tool under test: how to start its server and where its websocket is."""

    def __init__(self, name: str, stock: bool, ws_path: str, config: dict | None = None, env: dict | None = None):
        self.name, self.stock, self.ws_path = name, stock, ws_path
        self.config, self.env = config or {}, env or {}

    def start(self):
        # for the stock tool its server extension is left on (its /desktop/ page wins); our supervisor idles
        return start_server(USER, config=self.config, env=self.env, stock=self.stock)

    def server_pids(self, server) -> list[int]:
        """The processes the proxied bytes cross (the Jupyter server; plus our supervisor when it bridges)."""
        pids = [server.proc.pid]
        if not self.stock and self.config.get("bridge") == "supervisor":
            pids += [p for p in user_pids(USER) if "rcsc3_proxy.supervisor" in _cmd(p)]
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


async def click(server, browser: Browser) -> float:
    page = await browser.new_page()
    t0 = time.monotonic()
    await page.navigate(server.url("desktop/"))
    await page.wait_for(VISIBLE, 90, interval=0.01)
    dt = time.monotonic() - t0
    page.close()
    return dt


async def cold(subject: Subject, runs: int, prestart_wait: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        server = subject.start()
        try:
            if prestart_wait:
                # what a student sees when the server started a while before the click
                poll(lambda: server.status()["state"] == "running", 60, "prestart")  # noqa: B023
                poll(lambda: "xfdesktop" in " ".join(_cmd(p) for p in user_pids(USER)), 60, "xfdesktop")
                await asyncio.sleep(3)  # benchmark only: let xfce finish painting, as a real pause before a click would
            async with Browser() as browser:
                out.append(await click(server, browser))
        finally:
            stop(server)
    return out


async def warm_and_stream(subject: Subject, runs: int, seconds: float) -> dict:
    server = subject.start()
    try:
        async with Browser() as browser:
            await click(server, browser)  # make it run
            warm = [await click(server, browser) for _ in range(runs)]
        x = xvnc_of(USER)
        gears = glxgears(x)
        try:
            await asyncio.sleep(1)  # benchmark only: let the animation start
            res = {"warm": warm, "proxy": [], "raw": [], "cpu_per_mb": []}
            for _ in range(runs):
                c = await RFBClient.over_websocket(server.ws_url(subject.ws_path), headers={"Origin": server.base})
                await c.handshake()
                await c.first_frame()
                pids = subject.server_pids(server)
                cpu0 = cpu_seconds(pids)
                nbytes, updates = await c.stream(seconds)
                cpu = cpu_seconds(pids) - cpu0
                c.close()
                res["proxy"].append((nbytes / seconds, updates / seconds))
                res["cpu_per_mb"].append(cpu / max(nbytes / 1e6, 1e-9))
                r = await RFBClient.over_unix(x["socket"])
                await r.handshake()
                await r.first_frame()
                nbytes, updates = await r.stream(seconds)
                r.close()
                res["raw"].append((nbytes / seconds, updates / seconds))
            return res
        finally:
            gears.kill()
            gears.wait()
    finally:
        stop(server)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def main() -> int:
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
    raw = Subject("rcsc3 (bridge=raw)", False, "desktop-vnc/", {"bridge": "raw"})
    sup = Subject("rcsc3 (bridge=supervisor)", False, "desktop/websockify", {"bridge": "supervisor"})
    pre = Subject("rcsc3 prestart", False, "desktop-vnc/", {"bridge": "raw"}, {"RCSC3_DESKTOP_PRESTART": "1"})

    results: dict[str, dict] = {}
    for s in (stock, raw):
        results[s.name] = {"cold": await cold(s, args.runs)}
    results[pre.name] = {"cold": await cold(pre, args.runs, prestart_wait=True)}
    for s in (stock, raw, sup):
        results.setdefault(s.name, {}).update(await warm_and_stream(s, args.runs, args.seconds))

    base = results[stock.name]
    print(f"\nRemote Desktop benchmark (median of {args.runs}; stream {args.seconds:.0f} s under glxgears, Raw encoding)")
    print(f"{'':36} {'cold s':>8} {'x stock':>8} {'warm s':>8} {'MB/s':>8} {'upd/s':>7} {'raw MB/s':>9} "
          f"{'raw upd/s':>9} {'path/raw':>9} {'CPU s/MB':>9} {'x stock':>8}")
    for name, r in results.items():
        c = med(r.get("cold", []))
        cold_ratio = c / med(base["cold"]) if r.get("cold") else float("nan")
        row = f"{name:36} {c:8.2f} {cold_ratio:8.2f} {med(r.get('warm', [])):8.2f}"
        if r.get("proxy"):
            mbs, ups = med([b for b, _ in r["proxy"]]) / 1e6, med([u for _, u in r["proxy"]])
            rmbs, rups = med([b for b, _ in r["raw"]]) / 1e6, med([u for _, u in r["raw"]])
            cpm = med(r["cpu_per_mb"])
            row += (f" {mbs:8.1f} {ups:7.1f} {rmbs:9.1f} {rups:9.1f} {mbs / rmbs:9.2f} {cpm * 1000:8.2f}m"
                    f" {cpm / med(base['cpu_per_mb']):8.2f}")
        print(row)
    print("cold: fresh server, click -> desktop visible; warm: desktop running, click -> desktop visible;"
          " path/raw: proxied MB/s over raw-socket MB/s; CPU s/MB in milliseconds (proxy processes only)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
