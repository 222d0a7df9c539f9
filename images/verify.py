"""Check an rcsc3 image (or host) after installation; run at image build time and by tests/deploy.

    python verify.py --role node --version 0.1.0 [--constraints constraints.txt] [--no-binaries]

Checks that the installed rcsc3 is the expected version, that the entry points and programs
the deployment relies on exist (`rcsc3 lab`, `rcsc3 doctor`, the `rcsc3` spawner, the
`desktop` server-proxy entry, the `srun` engine launcher, batchspawner-singleuser, ...),
that a node's JupyterLab files are in the environment (student defaults, rcsc3's plugin),
that pinned dependencies are the installed ones, and (unless --no-binaries) that the
system programs are there: TurboVNC >= 3.1 as rcsc3 itself detects it and VirtualGL 3.x on
a node; configurable-http-proxy, sudo and the Slurm clients on the hub.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

ENTRY_POINTS = {
    "both": [("console_scripts", "rcsc3"), ("rcsc3.commands", "lab"), ("rcsc3.commands", "doctor")],
    "hub": [("jupyterhub.spawners", "rcsc3")],
    "node": [
        ("jupyter_serverproxy_servers", "desktop"),
        ("ipyparallel.engine_launchers", "srun"),
    ],
}
# Programs of the Python environment (its bin/) the hub or the jobs run.
VENV_PROGRAMS = {
    "hub": ["rcsc3", "jupyterhub"],
    "node": ["rcsc3", "rcsc3-singleuser", "batchspawner-singleuser",
             "jupyterhub-singleuser", "jupyter-lab", "ipcluster", "ipengine",
             "ipcontroller", "websockify"],
}
# Data files of the environment (under its prefix) that setup.cfg's data_files put there for the
# jobs: JupyterLab's student defaults and rcsc3's JupyterLab plugin (the Launcher at once).
PREFIX_FILES = {
    "hub": [],
    "node": ["etc/jupyter/labconfig/page_config.json", "etc/jupyter/jupyter_lab_config.json",
             "share/jupyter/lab/settings/overrides.json",
             "share/jupyter/labextensions/rcsc3-jupyterlab/package.json"],
}
# rcsc3's JupyterLab plugin as built (labextension/): its entry file's name has a content hash,
# and its package.json names it (jupyterlab._build.load).
LABEXTENSION = "share/jupyter/labextensions/rcsc3-jupyterlab"
SYSTEM_PROGRAMS = {
    "hub": ["configurable-http-proxy", "sudo", "sbatch", "squeue", "scancel", "scontrol", "munge"],
    "node": ["srun", "slurmd", "xfce4-session", "dbus-run-session", "xauth"],
}


def check_entry_points(role: str) -> list[str]:
    problems = []
    for group, name in ENTRY_POINTS["both"] + ENTRY_POINTS[role]:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        if not found:
            problems.append(f"entry point {group}:{name} is missing")
            continue
        try:
            found[0].load()
        except Exception as e:  # noqa: BLE001 - report any import problem
            problems.append(f"entry point {group}:{name} does not load: {e}")
    return problems


def check_labextension(path: Path) -> list[str]:
    """The plugin's entry file, as its package.json names it, is installed next to it."""
    try:
        load = json.loads((path / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    except FileNotFoundError:
        return []  # reported with PREFIX_FILES
    except (ValueError, KeyError, TypeError) as e:
        return [f"{path}/package.json is not a built JupyterLab extension ({e!r})"]
    return [] if (path / load).is_file() else [f"{path}/{load} (its package.json's entry file) is missing"]


def check_constraints(path: Path) -> list[str]:
    problems = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, want = line.partition("==")
        try:
            have = version(name.strip())
        except PackageNotFoundError:
            problems.append(f"{name.strip()} is not installed (constraints want {want})")
            continue
        if have != want.strip():
            problems.append(f"{name.strip()} {have} is installed, constraints want {want.strip()}")
    return problems


def check_binaries(role: str) -> list[str]:
    problems = [f"{p} is not on PATH" for p in SYSTEM_PROGRAMS[role] if not shutil.which(p)]
    if role == "node":
        from rcsc3_proxy.desktop import gl, vnc

        server = vnc.detect("turbovnc")
        if server is None:
            problems.append("TurboVNC is not installed (no /opt/TurboVNC/bin/Xvnc)")
        elif not server.unix_socket:
            problems.append(f"TurboVNC {server.version_str} is older than 3.1 (no -rfbunixpath)")
        vglrun = "/opt/VirtualGL/bin/vglrun"
        if not os.access(vglrun, os.X_OK):
            problems.append("VirtualGL is not installed (no /opt/VirtualGL/bin/vglrun)")
        elif not re.match(r"3\.", gl.vglrun_version(vglrun)):
            problems.append(f"VirtualGL {gl.vglrun_version(vglrun)} is not 3.x")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["hub", "node"], required=True)
    parser.add_argument("--version", required=True, help="the rcsc3 version that must be installed")
    parser.add_argument("--constraints", type=Path, help="pip constraints file whose pins must be installed")
    parser.add_argument("--no-binaries", action="store_true", help="check the Python side only")
    args = parser.parse_args(argv)

    problems = []
    try:
        installed = version("rcsc3")
        if installed != args.version:
            problems.append(f"rcsc3 {installed} is installed, expected {args.version}")
    except PackageNotFoundError:
        problems.append("rcsc3 is not installed")
    problems += check_entry_points(args.role)
    bin_dir = Path(sys.executable).parent
    problems += [f"{bin_dir}/{p} is missing" for p in VENV_PROGRAMS[args.role] if not (bin_dir / p).exists()]
    prefix = Path(sys.prefix)
    problems += [f"{prefix}/{p} is missing" for p in PREFIX_FILES[args.role] if not (prefix / p).is_file()]
    if args.role == "node":
        problems += check_labextension(prefix / LABEXTENSION)
    if args.constraints:
        problems += check_constraints(args.constraints)
    if not args.no_binaries:
        problems += check_binaries(args.role)
    for p in problems:
        print(f"verify ({args.role}): {p}", file=sys.stderr)
    if not problems:
        print(f"verify ({args.role}): rcsc3 {args.version} ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
