"""`rcsc3 lab`: make this machine a one-host Slurm cluster with a GPU partition.

The lab is the embedded default used by `make demo` and `make test`. It is for a
single Debian 12 machine (a laptop, a VM, a CI runner, a container): it installs
Slurm and munge from apt, writes a small `slurm.conf`/`gres.conf` with an
`interactive` GPU partition, fakes the GPU device files when there is no GPU, and
starts munged, slurmctld and slurmd without systemd (containers rarely have it).

It is idempotent, copes with daemons that are already running (it then leaves
them alone), and `lab down` stops only the daemons `lab up` started.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "# managed by rcsc3 lab"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
STATE_DIR = Path("/var/lib/rcsc3-lab")
STATE_FILE = STATE_DIR / "started.json"
LOG_DIR = Path("/var/log/rcsc3-lab")
EPILOG_DEST = Path("/etc/slurm/rcsc3-epilog.sh")

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
    # noVNC for the Remote Desktop page (Debian's, kept patched by apt; see rcsc3_proxy/config.py)
    "novnc",
]

#: Partition names the lab creates; the demo profiles refer to them.
GPU_PARTITION = "interactive"
CPU_PARTITION = "cpu"
FAKE_GPUS = 2
#: The one-host node advertises at least this many CPUs (Slurm's config_overrides),
#: so that two or three students fit at once on a 2-core machine. Real clusters
#: never need this; it only shapes the lab.
MIN_LAB_CPUS = 4


class LabError(RuntimeError):
    """The lab could not be brought to the asked state; the message says why and what to do."""


def log(msg: str) -> None:
    print(f"[rcsc3 lab] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run a command with stdin closed (the lab runs unattended) and text output."""
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=check, timeout=timeout, **kw
    )


# ---------------------------------------------------------------- packages

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


# ---------------------------------------------------------------- config

@dataclass
class NodeShape:
    hostname: str
    cpus: int
    real_cpus: int
    memory_mb: int
    gpu_files: list[str]
    gpus_faked: bool


def detect_node() -> NodeShape:
    hostname = socket.gethostname().split(".")[0]
    real_cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as f:
        mem_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    real_gpus = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    return NodeShape(
        hostname=hostname,
        cpus=max(real_cpus, MIN_LAB_CPUS),
        real_cpus=real_cpus,
        # leave room for the OS and the hub
        memory_mb=int(mem_kb / 1024 * 0.8),
        gpu_files=real_gpus,
        gpus_faked=False,
    )


def ensure_gpu_devices(shape: NodeShape, state: dict) -> None:
    """Make `/dev/nvidia0-1` character devices when the machine has no GPU.

    Slurm's gres plugin only needs the files to exist to bind and count them;
    `srun --gres=gpu:1` then sets CUDA_VISIBLE_DEVICES like on a real node.
    """
    if len(shape.gpu_files) >= 1 and not state.get("made_devices"):
        return
    made = list(state.get("made_devices", []))
    for i in range(FAKE_GPUS):
        dev = Path(f"/dev/nvidia{i}")
        if not dev.exists():
            run(["mknod", "-m", "666", str(dev), "c", "195", str(i)])
            made.append(str(dev))
    state["made_devices"] = made
    shape.gpu_files = [f"/dev/nvidia{i}" for i in range(FAKE_GPUS)]
    shape.gpus_faked = True


def render_slurm_conf(shape: NodeShape, epilog: Path | None) -> str:
    n_gpus = len(shape.gpu_files)
    overrides = "SlurmdParameters=config_overrides\n" if shape.cpus != shape.real_cpus else ""
    epilog_line = f"Epilog={epilog}\n" if epilog else ""
    return f"""{MARKER}: a one-host Slurm for rcsc3's demo and tests.
# Edit hub_config/slurm/ for a real cluster; `rcsc3 lab down` stops what `lab up` started.
ClusterName=rcsc3lab
SlurmctldHost={shape.hostname}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# Containers have neither cgroup delegation nor systemd: track processes by parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
# Students wait for a free GPU: look at pending jobs every few seconds, not every minute.
SchedulerParameters=sched_interval=3,bf_interval=5,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# A stopped desktop must be gone quickly: SIGKILL 5 s after SIGTERM.
KillWait=5
MinJobAge=60
SlurmctldPidFile=/run/rcsc3-lab/slurmctld.pid
SlurmdPidFile=/run/rcsc3-lab/slurmd.pid
SlurmdSpoolDir=/var/spool/rcsc3-lab/slurmd
StateSaveLocation=/var/spool/rcsc3-lab/slurmctld
SlurmctldLogFile={LOG_DIR}/slurmctld.log
SlurmdLogFile={LOG_DIR}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
{overrides}{epilog_line}
NodeName={shape.hostname} NodeAddr=127.0.0.1 CPUs={shape.cpus} RealMemory={shape.memory_mb} Gres=gpu:{n_gpus} State=UNKNOWN
# The GPU visualization partition (RcSC3's "interactive"): desktops and notebooks.
PartitionName={GPU_PARTITION} Nodes={shape.hostname} Default=YES MaxTime=06:00:00 DefaultTime=01:00:00 State=UP
# CPU-only work on the same node.
PartitionName={CPU_PARTITION} Nodes={shape.hostname} MaxTime=12:00:00 DefaultTime=01:00:00 State=UP
"""


def render_gres_conf(shape: NodeShape) -> str:
    n = len(shape.gpu_files)
    files = f"/dev/nvidia[0-{n - 1}]" if n > 1 else shape.gpu_files[0]
    return f"""{MARKER}
AutoDetect=off
NodeName={shape.hostname} Name=gpu File={files}
"""


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def conf_is_ours() -> bool:
    return not SLURM_CONF.exists() or SLURM_CONF.read_text().startswith(MARKER)


def install_epilog(source: Path | None) -> Path | None:
    """Copy the node epilog (hub_config/slurm/epilog.sh) to /etc/slurm; None when there is none."""
    if source is None:
        checkout = Path(__file__).resolve().parent.parent / "hub_config" / "slurm" / "epilog.sh"
        source = checkout if checkout.exists() else None
    if source is None:
        return None
    if not source.exists():
        raise LabError(f"epilog {source} does not exist")
    write_if_changed(EPILOG_DEST, source.read_text(), mode=0o755)
    return EPILOG_DEST


# ---------------------------------------------------------------- daemons

def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=1))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pids_of(name: str) -> list[int]:
    res = run(["pgrep", "-x", name], check=False)
    return [int(p) for p in res.stdout.split()]


def munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    try:
        m = subprocess.run(["munge", "-n"], stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
        if m.returncode != 0:
            return False
        u = subprocess.run(["unmunge"], input=m.stdout, capture_output=True, timeout=5)
        return u.returncode == 0
    except subprocess.TimeoutExpired:
        return False


def wait_for(what: str, check, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_munge(state: dict) -> None:
    if munge_works():
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        run(["mungekey", "--create", "--keyfile", str(key)])
    munge = pwd.getpwnam("munge")
    os.chown(key, munge.pw_uid, munge.pw_gid)
    key.chmod(0o400)
    for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        os.chown(d, munge.pw_uid, munge.pw_gid)
    log("starting munged")
    run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
    wait_for("munged", munge_works, 15)
    state["munged"] = pids_of("munged")


def slurmctld_up() -> bool:
    res = run(["scontrol", "ping"], check=False, timeout=15)
    return "is UP" in res.stdout


def node_state(hostname: str) -> str:
    res = run(["sinfo", "-h", "-N", "-n", hostname, "-o", "%T"], check=False, timeout=15)
    return res.stdout.strip().splitlines()[0].lower() if res.returncode == 0 and res.stdout.strip() else ""


def prepare_dirs() -> None:
    slurm = pwd.getpwnam("slurm")
    for d in ("/run/rcsc3-lab", "/var/spool/rcsc3-lab/slurmd", str(LOG_DIR)):
        Path(d).mkdir(parents=True, exist_ok=True)
    ctld = Path("/var/spool/rcsc3-lab/slurmctld")
    ctld.mkdir(parents=True, exist_ok=True)
    for p in (ctld, LOG_DIR, Path("/run/rcsc3-lab")):
        os.chown(p, slurm.pw_uid, slurm.pw_gid)
    LOG_DIR.chmod(0o755)


#: The shared X11 and ICE socket directories, as systemd-tmpfiles makes them (x11.conf) on a booted node
X_SOCKET_DIRS = ("/tmp/.X11-unix", "/tmp/.ICE-unix")


def ensure_x_socket_dirs() -> None:
    """Make /tmp/.X11-unix and /tmp/.ICE-unix root-owned 1777, as on a node booted with systemd.

    Without systemd (this lab, containers) the first desktop would create them as its student,
    and the owner of a sticky directory may delete everyone's sockets in it.
    """
    for d in X_SOCKET_DIRS:
        path = Path(d)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise LabError(f"{d} is not a directory: remove it and run `rcsc3 lab up` again")
        path.mkdir(exist_ok=True)
        os.chown(path, 0, 0)
        path.chmod(0o1777)


def start_slurm(shape: NodeShape, state: dict, conf_changed: bool) -> None:
    prepare_dirs()
    ctld_pids = pids_of("slurmctld")
    d_pids = pids_of("slurmd")
    if ctld_pids and d_pids and conf_changed:
        log("configuration changed: scontrol reconfigure")
        run(["scontrol", "reconfigure"], check=False)
    if not ctld_pids:
        log("starting slurmctld")
        # -i: ignore state that no longer matches the configuration (lab rewrites)
        run(["slurmctld", "-i"])
        state["slurmctld"] = True
    wait_for("slurmctld to answer `scontrol ping`", slurmctld_up, 30)
    if not d_pids:
        log("starting slurmd")
        run(["slurmd"])
        state["slurmd"] = True
    save_state(state)


def wait_node_idle(hostname: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    resumed = False
    st = ""
    while time.monotonic() < deadline:
        st = node_state(hostname)
        base = st.rstrip("*~#!%$@^-")
        if base in ("idle", "mixed", "allocated", "completing"):
            return
        if not resumed and any(s in st for s in ("down", "drain", "fail")):
            # A node left down by an earlier unclean stop comes back on its own once slurmd talks.
            run(["scontrol", "update", f"nodename={hostname}", "state=resume"], check=False)
            resumed = True
        time.sleep(0.3)
    reason = run(["sinfo", "-h", "-N", "-n", hostname, "-o", "%T %E"], check=False).stdout.strip()
    raise LabError(f"node {hostname} did not become idle in {timeout:.0f}s (state: {reason or st}); see {LOG_DIR}/slurmd.log")


# ---------------------------------------------------------------- commands

def lab_up(install: bool = True, epilog: Path | None = None) -> None:
    if os.geteuid() != 0:
        raise LabError("`rcsc3 lab up` must run as root (it installs packages and starts daemons)")
    if install:
        ensure_packages(APT_PACKAGES)
    state = load_state()
    shape = detect_node()
    ensure_gpu_devices(shape, state)
    ensure_x_socket_dirs()
    save_state(state)
    conf_changed = False
    if conf_is_ours():
        conf_changed |= write_if_changed(SLURM_CONF, render_slurm_conf(shape, install_epilog(epilog)))
        conf_changed |= write_if_changed(GRES_CONF, render_gres_conf(shape))
    else:
        log(f"{SLURM_CONF} is not the lab's: using the Slurm already configured here as it is")
    start_munge(state)
    save_state(state)
    start_slurm(shape, state, conf_changed)
    wait_node_idle(shape.hostname)
    log(f"ready: node {shape.hostname} ({shape.cpus} CPUs, {len(shape.gpu_files)} GPUs"
        f"{', faked' if shape.gpus_faked else ''}), partitions {GPU_PARTITION} (default, GPU) and {CPU_PARTITION}")


def stop_daemon(name: str, timeout: float = 20) -> None:
    pids = pids_of(name)
    for pid in pids:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, 9)


def lab_down() -> None:
    state = load_state()
    if not state:
        log("nothing to stop (the lab started nothing here)")
        return
    for daemon in ("slurmd", "slurmctld"):
        if state.get(daemon):
            log(f"stopping {daemon}")
            stop_daemon(daemon)
    if state.get("munged"):
        log("stopping munged")
        stop_daemon("munged")
    for dev in state.get("made_devices", []):
        Path(dev).unlink(missing_ok=True)
    STATE_FILE.unlink(missing_ok=True)


def lab_status() -> int:
    shape = detect_node()
    ok = True
    print(f"munge:      {'ok' if munge_works() else 'NOT WORKING'}")
    ok &= munge_works()
    up = slurmctld_up() if shutil.which("scontrol") else False
    print(f"slurmctld:  {'up' if up else 'DOWN'}")
    ok &= up
    st = node_state(shape.hostname) if up else ""
    print(f"node:       {shape.hostname} {st or 'unknown'}")
    if up:
        print(run(["sinfo", "-o", "%P %a %l %D %c %m %G %T"], check=False).stdout.rstrip())
    return 0 if ok else 1


def ensure_demo_users(names: list[str], password: str) -> None:
    """Create local demo users (idempotent) and set their password for the hub's PAM login."""
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            log(f"creating user {name}")
            run(["useradd", "--create-home", "--shell", "/bin/bash", name])
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rcsc3 lab", description=__doc__.split("\n\n")[0])
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
