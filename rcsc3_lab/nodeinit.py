"""PID 1 of a multi-host lab node: its own /tmp, /dev/shm and /run/user, then slurmd, reaping every orphan.

`rcsc3 lab up --hosts` starts this as the first process of a node's own PID namespace
(`unshare --pid --ipc --fork --mount-proc`, inside the node's network, UTS and mount namespaces),
so that a node is a separate machine for what runs on it: an epilog that kills "every process
of the job's user" or removes "stale" X sockets in /tmp only reaches its own node, as on a real
cluster. When slurmd ends because it was told to (SIGTERM or SIGINT, forwarded from here: `rcsc3
lab down --hosts`), this process ends with its status and the kernel ends everything else in the
node's PID namespace (job steps, desktops, engines). When slurmd dies on its own (a crash, SIGKILL),
the node stays up as a real machine does: its jobs' processes (under their slurmstepd) go on, and
SIGUSR1 starts slurmd again (`rcsc3 lab up --hosts` does), which then finds the jobs' steps left
behind and slurmctld has it end those it no longer knows.

    python -m rcsc3_lab.nodeinit --node NAME --outside-mnt ID --outside-net ID --outside-uts ID -- slurmd -D ...

The --outside-* namespace ids are those of the machine (`readlink /proc/self/ns/mnt` there): a
guard, so that /tmp is never mounted over in the machine's own mount namespace.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

#: The shared X11 and ICE socket directories a booted node has (root-owned, 1777)
X_SOCKET_DIRS = ("/tmp/.X11-unix", "/tmp/.ICE-unix")


def _ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


#: Per machine on a real cluster, so per node here: (directory, mode). /run/user holds the users'
#: runtime directories, where the epilog looks for stale desktop directories.
PRIVATE_DIRS = (("/tmp", "1777"), ("/dev/shm", "1777"), ("/run/user", "0755"))


MS_BIND = 4096


def _checkout_under_private_dirs() -> list[tuple[int, str]]:
    """This checkout, when the venv's rcsc3 is an editable install of one under /tmp (a CI clone):
    held open, so that it can stay visible at its path on the node once /tmp is the node's own
    (a real cluster's nodes see the same install at the same path)."""
    root = Path(__file__).resolve().parents[1]
    if not any(str(root).startswith(target + "/") for target, _ in PRIVATE_DIRS):
        return []
    return [(os.open(root, os.O_PATH | os.O_DIRECTORY), str(root))]


def _bind_held(fd: int, path: str) -> None:
    # the held fd names the directory beneath the new tmpfs; mount(8) would resolve the path instead
    os.makedirs(path, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind-mounting the checkout at {path}")
    os.close(fd)


def _private_tmp(node: str, tmp_size: str) -> None:
    # tmpfs, as many compute nodes have: nothing a job leaves in /tmp outlives the node.
    kept = _checkout_under_private_dirs()
    for target, mode in PRIVATE_DIRS:
        if not os.path.isdir(target):
            continue
        source = f"rcsc3-{node}{target.replace('/', '-')}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode={mode},size={tmp_size},nosuid,nodev", source, target],
                       check=True, stdin=subprocess.DEVNULL)
    for d in X_SOCKET_DIRS:
        os.mkdir(d, 0o1777)
        os.chmod(d, 0o1777)  # mkdir's mode is masked by the umask
    for fd, path in kept:
        _bind_held(fd, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcsc3_lab.nodeinit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--outside-mnt", required=True)
    parser.add_argument("--outside-net", required=True)
    parser.add_argument("--outside-uts", required=True)
    parser.add_argument("--tmp-size", default="2g")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    for kind, outside in (("mnt", args.outside_mnt), ("net", args.outside_net), ("uts", args.outside_uts)):
        if _ns(kind) == outside:
            print(f"nodeinit: refusing to run in the machine's own {kind} namespace ({outside})", file=sys.stderr)
            return 97
    if os.getpid() != 1 or not command:
        print("nodeinit: must be pid 1 of a new PID namespace, with a command", file=sys.stderr)
        return 97
    _private_tmp(args.node, args.tmp_size)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            if child.returncode is not None:  # slurmd is already gone: the node shuts down now
                sys.exit(0)
        try:
            child.send_signal(sig)
        except ProcessLookupError:
            pass

    def restart(_sig: int, _frame: object) -> None:
        nonlocal child
        if child.returncode is not None and not stopping:
            print(f"nodeinit {args.node}: starting {command[0]} again", file=sys.stderr, flush=True)
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(signal.SIGUSR1, restart)
    # Reap every process that ends here (orphans are re-parented to pid 1) until slurmd ends as told.
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # nothing left at all on the node: wait for SIGUSR1 or SIGTERM
            signal.pause()
            continue
        if pid == child.pid:
            child.returncode = code = os.waitstatus_to_exitcode(status)
            if stopping:
                return code if code >= 0 else 128 - code
            print(f"nodeinit {args.node}: {command[0]} ended ({code}) on its own; the node stays up "
                  "(SIGUSR1 starts it again)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
