"""`rcsc3 lab`: the root-only provisioning tool behind `make demo`, `make demo-cluster` and `make test`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from . import cluster, onehost
from .onehost import lab_down, lab_status, lab_up, onehost_status
from .system import LabError
from .users import ensure_demo_users

EPILOG_HELP = "node epilog to install (default: hub_config/slurm/epilog.sh of this checkout)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcsc3 lab", description=onehost.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="install, configure and start the one-host Slurm, or with --hosts the multi-host lab "
                                   "(idempotent)")
    up.add_argument("--hosts", action="store_true",
                    help="the multi-host lab instead: hub, gpu1 and cpu1 in network namespaces on 10.250.0.0/24, "
                         "beside the one-host lab (see `rcsc3 lab status --hosts`)")
    up.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")
    up.add_argument("--epilog", type=Path, help=EPILOG_HELP)
    down = sub.add_parser("down", help="stop only the daemons `lab up` started; --hosts: remove the multi-host lab")
    which = down.add_mutually_exclusive_group()
    which.add_argument("--hosts", action="store_true",
                       help="remove exactly what `up --hosts` made (jobs, daemons, namespaces, veths, mounts, files) "
                            "and leave the one-host lab alone")
    which.add_argument("--all", action="store_true", help="both: the multi-host lab, then the one-host lab")
    status = sub.add_parser(
        "status", help="show munge, slurmctld, node and partitions",
        description="Without options: the one-host lab (text), and one line on the multi-host lab. --hosts: the "
                    "multi-host lab. --json: the multi-host lab's facts as JSON when it is up (hosts, hub_url, "
                    "slurm_conf, ...; \"lab\": \"hosts\"), otherwise the one-host lab's in the same shape "
                    "(\"lab\": \"onehost\"); --json --hosts: only the multi-host lab (exit 1 when it is not up). "
                    "Exit status 0 when the lab shown is up.")
    status.add_argument("--hosts", action="store_true", help="the multi-host lab")
    status.add_argument("--json", action="store_true", help="machine-readable")
    on = sub.add_parser("on", help="run a command on a host of the multi-host lab (hub, gpu1, cpu1)",
                        description="Run COMMAND on HOST of the multi-host lab: in its network and UTS namespaces with "
                                    "its /etc/hosts and SLURM_CONF pointing at the cluster; as root, or with -u as USER "
                                    "with a clean environment. Not in a node's private PID namespace or /tmp: only "
                                    "slurmd and its jobs are. Example: rcsc3 lab on -u student1 hub -- srun -p cpu -N2 hostname")
    on.add_argument("-u", "--user", help="run as this user (clean environment: HOME, USER, PATH, SLURM_CONF, LANG)")
    on.add_argument("host", metavar="HOST", help=f"one of {', '.join(h.name for h in cluster.NETWORK.hosts)}")
    on.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    users = sub.add_parser("users", help="create the demo users student1..N, the teacher and the demo courses' groups")
    users.add_argument("--count", type=int, default=3, help="how many students (default 3)")
    return parser


def _status(args: argparse.Namespace) -> int:
    if args.json:
        if args.hosts or cluster.is_up():
            st = cluster.cluster_status()
            if args.hosts and not st["up"]:
                print(f"rcsc3 lab: error: the multi-host lab is not up ({st['problem']}): run `rcsc3 lab up --hosts`",
                      file=sys.stderr)
        else:
            st = onehost_status()
        print(json.dumps(st, indent=1))
        return 0 if st["up"] else 1
    if args.hosts:
        st = cluster.cluster_status()
        cluster.print_status(st)
        return 0 if st["up"] else 1
    rc = lab_status()
    print(f"multi-host lab: {'up' if cluster.is_up() else 'not up'} (rcsc3 lab status --hosts)")
    return rc


def _on(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if os.geteuid() != 0:
        raise LabError("`rcsc3 lab on` must run as root (it enters the hosts' namespaces)")
    argv = cluster.on_argv(args.host, command, args.user)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # the command's own exit status and signals, nothing in between
    return 127


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "up":
            if args.hosts:
                cluster.cluster_up(install=not args.no_install, epilog=args.epilog)
            else:
                lab_up(install=not args.no_install, epilog=args.epilog)
        elif args.action == "down":
            if args.hosts or args.all:
                cluster.cluster_down()
            if not args.hosts:
                lab_down()
        elif args.action == "status":
            return _status(args)
        elif args.action == "on":
            return _on(args)
        elif args.action == "users":
            ensure_demo_users(args.count)
    except LabError as e:
        print(f"rcsc3 lab: error: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"rcsc3 lab: error: {' '.join(e.cmd)} failed ({e.returncode}): {(e.stderr or '').strip()}", file=sys.stderr)
        return 1
    return 0
