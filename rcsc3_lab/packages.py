"""The Debian packages the lab and the demo desktop need, installed unattended."""

from __future__ import annotations

import os
from pathlib import Path

from .system import LabError, log, run

#: apt packages the lab and the demo desktop need (Debian 12 names).
APT_PACKAGES = [
    "slurm-wlm",
    "munge",
    "sudo",
    "procps",
    "psmisc",
    "tigervnc-standalone-server",
    "tigervnc-tools",
    "xfce4-session",
    "xfwm4",
    "xfdesktop4",
    "xfce4-panel",
    "xfce4-terminal",
    "xfce4-settings",
    "dbus-x11",
    "at-spi2-core",
    "mesa-utils",
    "x11-utils",
    "xauth",
    # the tests read a desktop's own X display (pointer, typed text) with it
    "xdotool",
    # noVNC for the Remote Desktop page (Debian's, kept patched by apt; see rcsc3_proxy/desktop/settings.py)
    "novnc",
]



def missing_packages(packages: list[str]) -> list[str]:
    out = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *packages], check=False)
    rows = [line.split() for line in out.stdout.splitlines()]
    installed = {row[0] for row in rows if len(row) > 1 and row[1].startswith("ii")}
    return [p for p in packages if p not in installed]


def ensure_packages(packages: list[str]) -> None:
    missing = missing_packages(packages)
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Daemons must not be auto-started by the packages' maintainer scripts
    # inside containers; we start them ourselves.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        res = run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env, timeout=1800)
        if res.returncode != 0:
            raise LabError(f"apt-get install failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


