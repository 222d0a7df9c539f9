"""`rcsc3 lab`: the root-only provisioning tool behind `make demo` and `make test`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import onehost
from .onehost import lab_down, lab_status, lab_up
from .system import LabError, log
from .users import ensure_demo_users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rcsc3 lab", description=onehost.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="install, configure and start the one-host Slurm (idempotent)")
    up.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")
    up.add_argument("--epilog", type=Path, help="node epilog to install (default: hub_config/slurm/epilog.sh of this checkout)")
    sub.add_parser("down", help="stop only the daemons `lab up` started")
    sub.add_parser("status", help="show munge, slurmctld, node and partitions")
    users = sub.add_parser("users", help="create the demo users student1..N and the hub admin 'teacher'")
    users.add_argument("--count", type=int, default=3, help="how many students (default 3)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            lab_up(install=not args.no_install, epilog=args.epilog)
        elif args.action == "down":
            lab_down()
        elif args.action == "status":
            return lab_status()
        elif args.action == "users":
            password = os.environ.get("RCSC3_DEMO_PASSWORD", "")
            if not password:
                password = "rcsc3-demo"
                log(f"RCSC3_DEMO_PASSWORD is not set: using the default password '{password}'")
            ensure_demo_users([f"student{i}" for i in range(1, args.count + 1)] + ["teacher"], password)
    except LabError as e:
        print(f"rcsc3 lab: error: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"rcsc3 lab: error: {' '.join(e.cmd)} failed ({e.returncode}): {(e.stderr or '').strip()}", file=sys.stderr)
        return 1
    return 0
