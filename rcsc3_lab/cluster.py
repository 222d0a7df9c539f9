"""`rcsc3 lab up --hosts`: a three-host Slurm cluster on this machine, each host a set of namespaces.

    hub   10.250.0.1   munged (own key and socket), slurmctld; JupyterHub runs here (`make demo-cluster`)
    gpu1  10.250.0.11  slurmd -N gpu1, 2 fake GPUs (Gres=gpu:2), partitions interactive and cpu
    cpu1  10.250.0.21  slurmd -N cpu1, partition cpu
    the machine 10.250.0.254, through one veth: browsers and tests open http://10.250.0.1:8000

It runs beside the one-host lab without touching it: its own munged, ClusterName, state, spool,
pid and log files, job ids from 900001, and every daemon in its hosts' network namespaces (the
one-host lab only counts and stops processes in the machine's own). Each node's slurmd gets its
own PID and IPC namespaces and its own /tmp, /dev/shm and /run/user (see nodeinit), so that an
epilog on one node never kills or removes another node's things. Homes, users and the venv are the machine's,
as on a cluster with shared home directories.

`up --hosts` is idempotent (a healthy cluster is left as it is) and rebuilds a broken one or the
leftovers of a crashed run from scratch; `down --hosts` removes exactly what it made. Clients in
the machine's namespace use it with SLURM_CONF=/run/rcsc3-cluster/etc/slurm.conf; `rcsc3 lab on
[-u USER] HOST -- CMD` runs a command on one of its hosts.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .netns import (
    NETNS_DIR,
    Host,
    Network,
    address_conflicts,
    host_argv,
    make_network,
    make_uts,
    network_leftovers,
    ns_file_id,
    ns_id,
    remove_network,
    write_hosts_files,
)
from .slurm import COMMON_SETTINGS, CPU_PARTITION, GPU_PARTITION, MARKER, install_epilog
from .system import LabError, log, proc_stat, run, same_process, write_if_changed

BASE = Path("/run/rcsc3-cluster")
STATE_FILE = BASE / "state.json"
SLURM_CONF = BASE / "etc" / "slurm.conf"
GRES_CONF = BASE / "etc" / "gres.conf"
EPILOG = BASE / "etc" / "epilog.sh"
MUNGE_DIR = BASE / "munge"
MUNGE_SOCKET = MUNGE_DIR / "munge.socket"
GPU_DIR = BASE / "dev"
#: Logs stay after `down --hosts`, like the one-host lab's (a failed run can be read afterwards).
#: Not under the one-host lab's log directory: that one is slurm's, and munged refuses a log
#: file below a directory that anyone but root or munge owns.
CLUSTER_LOG_DIR = Path("/var/log/rcsc3-cluster")
CTLD_LOG_DIR = CLUSTER_LOG_DIR / "slurmctld"
CLUSTER_NAME = "rcsc3cluster"
#: Far from the one-host lab's ids: nothing keyed by a job id (files, environment) can collide.
FIRST_JOB_ID = 900001
HUB_PORT = 8000
#: seconds before slurmctld takes a silent node for DOWN (slurm.conf SlurmdTimeout; Slurm's default is 300)
SLURMD_TIMEOUT = 30
#: Not root's PATH (it may hold directories students cannot read): what daemons and users get.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

NETWORK = Network(
    hosts=(
        Host("hub", "10.250.0.1", "rcsc3-hub", "rc3v-hub"),
        Host("gpu1", "10.250.0.11", "rcsc3-gpu1", "rc3v-gpu1"),
        Host("cpu1", "10.250.0.21", "rcsc3-cpu1", "rc3v-cpu1"),
    ),
    switch_netns="rcsc3-sw",
    bridge="rcsc3br0",
    prefix_len=24,
    machine_veth="rc3v-root",
    machine_address="10.250.0.254",
    uts_dir=BASE / "ns",
)
HUB = NETWORK.host("hub")


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int
    features: str
    #: Slurm fills lower weights first: CPU jobs go to cpu1 and leave gpu1's GPUs free
    weight: int
    #: Declared, not real (SlurmdParameters=config_overrides): room for a class of 30 one-CPU
    #: servers on either node. The lab enforces nothing; a real node declares what it has.
    cpus: int = 64
    memory_mb: int = 65536


NODES = (Node("gpu1", gpus=2, features="gpu", weight=10), Node("cpu1", gpus=0, features="cpu", weight=1))
PARTITIONS = {GPU_PARTITION: ["gpu1"], CPU_PARTITION: ["cpu1", "gpu1"]}
COMMANDS = ("ip", "nsenter", "unshare", "runuser", "mknod", "mount", "sysctl", "munged", "mungekey", "munge",
            "unmunge", "slurmctld", "slurmd", "scontrol", "sinfo", "squeue", "scancel")


# ---------------------------------------------------------------- configuration
def render_slurm_conf(epilog: Path | None) -> str:
    epilog_line = f"Epilog={epilog}\n" if epilog else ""
    limits = "MaxTime=06:00:00 DefaultTime=01:00:00 State=UP"
    nodes = "".join(
        f"NodeName={n.name} NodeAddr={NETWORK.host(n.name).address} NodeHostname={n.name} CPUs={n.cpus} "
        f"RealMemory={n.memory_mb}{f' Gres=gpu:{n.gpus}' if n.gpus else ''} Features={n.features} Weight={n.weight} "
        "State=UNKNOWN\n"
        for n in NODES
    )
    return f"""{MARKER} (multi-host lab): hub, gpu1 and cpu1, each in its own namespaces on this machine.
# `rcsc3 lab down --hosts` removes it all; clients: SLURM_CONF={SLURM_CONF}
ClusterName={CLUSTER_NAME}
SlurmctldHost={HUB.name}({HUB.address})
SlurmctldPort=6817
SlurmdPort=6818
# Its own munged: independent of (and invisible to) the machine's.
AuthInfo=socket={MUNGE_SOCKET}
{COMMON_SETTINGS}SlurmdUser=root
# The nodes declare more CPUs and memory than the machine has (see the NodeName lines).
SlurmdParameters=config_overrides
# A job that asks for no memory must not take a whole node's.
DefMemPerCPU=512
MailProg=/bin/true
{epilog_line}FirstJobId={FIRST_JOB_ID}
MessageTimeout=10
SlurmctldTimeout=30
# A node that stops answering is DOWN (its jobs NODE_FAIL) 30-50 s later (SlurmdTimeout plus up to two
# of slurmctld's pings, every SlurmdTimeout/3), not after Slurm's default 300 s: the tests of a failed
# node take seconds, not minutes. A network outage longer than that ends every job behind it
# (tests/cluster/test_cluster_faults.py raises it while it cuts the hub host off for 60 s).
SlurmdTimeout={SLURMD_TIMEOUT}
SlurmctldPidFile={BASE}/run/slurmctld.pid
SlurmdPidFile={BASE}/run/slurmd-%n.pid
SlurmdSpoolDir={BASE}/spool/slurmd-%n
StateSaveLocation={BASE}/state
SlurmctldLogFile={CTLD_LOG_DIR}/slurmctld.log
SlurmdLogFile={CLUSTER_LOG_DIR}/slurmd-%n.log
{nodes}# The GPU visualization partition (desktops and notebooks) and CPU-only work on both nodes.
PartitionName={GPU_PARTITION} Nodes={','.join(PARTITIONS[GPU_PARTITION])} Default=YES {limits}
PartitionName={CPU_PARTITION} Nodes={','.join(PARTITIONS[CPU_PARTITION])} {limits.replace('06:00:00', '12:00:00')}
"""


def render_gres_conf() -> str:
    lines = [f"{MARKER} (multi-host lab): fake GPUs, character devices with NVIDIA's major number", "AutoDetect=off"]
    lines += [f"NodeName={n.name} Name=gpu File={GPU_DIR}/{n.name}/nvidia[0-{n.gpus - 1}]" for n in NODES if n.gpus]
    return "\n".join(lines) + "\n"


def client_env() -> dict[str, str]:
    """The environment for Slurm clients in the machine's namespace, pointed at this cluster."""
    return {"PATH": SYSTEM_PATH, "SLURM_CONF": str(SLURM_CONF), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def slurm(*argv: str, check: bool = False, timeout: float = 15) -> subprocess.CompletedProcess:
    return run(list(argv), check=check, timeout=timeout, env=client_env())


# ---------------------------------------------------------------- state
def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE_FILE)


def _record(state: dict, name: str, pid: int) -> None:
    st = proc_stat(pid)
    if st is None:
        raise LabError(f"{name} (pid {pid}) exited right after it started; see {CLUSTER_LOG_DIR}")
    state.setdefault("daemons", {})[name] = {"pid": pid, "start": st[1], "exe": os.readlink(f"/proc/{pid}/exe")}
    save_state(state)


def _alive(state: dict, name: str) -> bool:
    d = state.get("daemons", {}).get(name)
    return bool(d) and same_process(d["pid"], d["start"])


def _expected_daemons() -> list[str]:
    names = ["munged", "slurmctld"]
    for n in NODES:
        names += [f"launcher-{n.name}", f"nodeinit-{n.name}", f"slurmd-{n.name}"]
    return names


# ---------------------------------------------------------------- daemons
def _wait(what: str, check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {CLUSTER_LOG_DIR}")
        time.sleep(interval)


def _pid_in(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if proc_stat(pid) else None


def _daemonize(argv: list[str], log_name: str, timeout: float = 30) -> None:
    """Run a daemon's start command (it forks into the background) with its output in a log file."""
    with open(CLUSTER_LOG_DIR / log_name, "ab") as out:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if res.returncode:
        raise LabError(f"{' '.join(argv[-3:])} failed ({res.returncode}); see {CLUSTER_LOG_DIR / log_name}")


def _on_hub_as(argv: list[str]) -> list[str]:
    return [*host_argv(NETWORK, HUB), "env", "-i", f"PATH={SYSTEM_PATH}", f"SLURM_CONF={SLURM_CONF}", "LANG=C.UTF-8", *argv]


def _start_munged(state: dict) -> None:
    munge = pwd.getpwnam("munge")
    MUNGE_DIR.mkdir(mode=0o755)
    os.chown(MUNGE_DIR, munge.pw_uid, munge.pw_gid)
    key = MUNGE_DIR / "munge.key"
    run(["mungekey", "--create", f"--keyfile={key}", "--bits=1024"])
    os.chown(key, munge.pw_uid, munge.pw_gid)
    key.chmod(0o400)
    log_file = CLUSTER_LOG_DIR / "munged.log"
    log_file.touch(mode=0o640)
    os.chown(log_file, munge.pw_uid, munge.pw_gid)
    _daemonize(_on_hub_as(["runuser", "-u", "munge", "--", "munged", f"--socket={MUNGE_SOCKET}", f"--key-file={key}",
                           f"--pid-file={MUNGE_DIR / 'munged.pid'}", f"--log-file={log_file}",
                           f"--seed-file={MUNGE_DIR / 'munged.seed'}", "--num-threads=2"]), "munged.stderr")
    _record(state, "munged", _wait("munged's pid file", lambda: _pid_in(MUNGE_DIR / "munged.pid"), 10))
    _wait("munged's socket", MUNGE_SOCKET.is_socket, 10)
    cred = run(["munge", "-n", "-S", str(MUNGE_SOCKET)])
    check = subprocess.run(["unmunge", "-S", str(MUNGE_SOCKET)], input=cred.stdout, capture_output=True, text=True, timeout=10)
    if check.returncode:
        raise LabError(f"the cluster's munged does not decode its own credential: {check.stderr.strip()}")


def _slurmctld_up() -> bool:
    return "is UP" in slurm("scontrol", "ping", timeout=5).stdout


def _start_slurmctld(state: dict) -> None:
    _daemonize(_on_hub_as(["slurmctld", "-f", str(SLURM_CONF)]), "slurmctld.stderr")
    _record(state, "slurmctld", _wait("slurmctld's pid file", lambda: _pid_in(BASE / "run" / "slurmctld.pid"), 15))
    _wait("slurmctld to answer `scontrol ping`", _slurmctld_up, 30, interval=0.2)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] == pid:
                kids.append(int(entry))
    return kids


def _start_slurmd(state: dict, node: Node) -> subprocess.Popen:
    """slurmd -D under nodeinit, pid 1 of the node's own PID namespace (see rcsc3_lab.nodeinit)."""
    host = NETWORK.host(node.name)
    outside = [f"--outside-{kind}={ns_id(kind)}" for kind in ("mnt", "net", "uts")]
    argv = [
        *host_argv(NETWORK, host), "env", "-i", f"PATH={SYSTEM_PATH}", f"SLURM_CONF={SLURM_CONF}", "LANG=C.UTF-8",
        "unshare", "--pid", "--ipc", "--fork", "--mount-proc", "--",
        sys.executable, "-m", "rcsc3_lab.nodeinit", f"--node={node.name}", *outside, "--",
        "slurmd", "-D", "-f", str(SLURM_CONF), "-N", node.name,
    ]
    with open(CLUSTER_LOG_DIR / f"slurmd-{node.name}.stderr", "ab") as out:
        # its own session: it outlives `rcsc3 lab up`, and no terminal's signals reach it
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _record_slurmd(state: dict, node: Node, launcher: subprocess.Popen) -> None:
    # The launcher (unshare --fork) waits for the node's init; the init's child is slurmd. slurmd's
    # pid file holds its pid inside the node's namespace: the machine's pids are found and recorded.
    def find() -> tuple[int, int] | None:
        if launcher.poll() is not None:
            raise LabError(f"slurmd on {node.name} exited ({launcher.returncode}); see {CLUSTER_LOG_DIR}/slurmd-{node.name}.*")
        for init in _children(launcher.pid):
            for pid in _children(init):
                try:  # by name: the executable is /usr/sbin/slurmd-wlm on Debian
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd":
                        return init, pid
                except FileNotFoundError:
                    pass
        return None

    init, slurmd = _wait(f"slurmd on {node.name}", find, 15)
    _record(state, f"launcher-{node.name}", launcher.pid)
    _record(state, f"nodeinit-{node.name}", init)
    _record(state, f"slurmd-{node.name}", slurmd)
    state.setdefault("node_pidns", {})[node.name] = ns_id("pid", init)
    save_state(state)


def node_states() -> dict[str, str]:
    res = slurm("sinfo", "-h", "-N", "-o", "%N %T", timeout=10)
    states = {}
    for line in res.stdout.splitlines():
        name, _, st = line.partition(" ")
        states[name] = st.strip()
    return states


def _nodes_ready() -> bool:
    states = node_states()
    return all(states.get(n.name, "").rstrip("*~#!%$@^-") in ("idle", "mixed", "allocated", "completing") for n in NODES)


# ---------------------------------------------------------------- up
def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"`rcsc3 lab {what}` must run as root (it makes network namespaces and starts daemons)")


def _preflight() -> None:
    missing = [c for c in COMMANDS if not shutil.which(c, path=SYSTEM_PATH)]
    if missing:
        raise LabError(f"missing commands for the multi-host lab: {', '.join(missing)} "
                       "(run `rcsc3 lab up --hosts` without --no-install)")
    for user in ("munge", "slurm"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise LabError(f"missing user {user!r} (installed with munge and slurm-wlm)") from None
    conflicts = address_conflicts(NETWORK)
    if conflicts:
        raise LabError(f"the lab's subnet {NETWORK.machine_address.rsplit('.', 1)[0]}.0/{NETWORK.prefix_len} is in use here: "
                       f"{', '.join(conflicts)}")


def health_problem(state: dict) -> str:
    """Why the cluster recorded in `state` is not fully up; '' when it is."""
    if not state.get("complete"):
        return "it was never completely up"
    dead = [name for name in _expected_daemons() if not _alive(state, name)]
    if dead:
        return f"not running: {', '.join(dead)}"
    missing = [n for n in NETWORK.all_netns if not (NETNS_DIR / n).exists()]
    if missing:
        return f"netns missing: {', '.join(missing)}"
    if not _slurmctld_up():
        return "slurmctld does not answer"
    if not _nodes_ready():
        return f"nodes not ready: {node_states()}"
    return ""


def cluster_up(install: bool = True, epilog: Path | None = None) -> dict:
    """Bring the multi-host lab up (idempotent); returns its status."""
    _require_root("up --hosts")
    if install:
        from .packages import APT_PACKAGES, ensure_packages

        ensure_packages(APT_PACKAGES)
    state = load_state()
    if state:
        problem = health_problem(state)
        if problem and _restart_nodes(state):
            problem = health_problem(state)
        if not problem:
            _refresh(epilog)
            log(f"multi-host lab already up: {', '.join(f'{h.name} {h.address}' for h in NETWORK.hosts)}; "
                f"SLURM_CONF={SLURM_CONF}")
            return cluster_status()
        log(f"the multi-host lab is not healthy ({problem}): removing it and building it again")
        cluster_down()
    else:
        left = network_leftovers(NETWORK) + ([str(BASE)] if BASE.exists() else [])
        if left:
            log(f"leftovers of an earlier multi-host lab ({', '.join(left)}): removing them first")
            cluster_down()
    _preflight()
    t0 = time.monotonic()
    try:
        _build(epilog, t0)
    except (LabError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else ""
        log(f"building the multi-host lab failed: {e} {detail}".rstrip())
        _log_tails()
        if os.environ.get("RCSC3_LAB_KEEP_ON_FAIL"):
            raise LabError(f"building the multi-host lab failed: {e} (kept for inspection: RCSC3_LAB_KEEP_ON_FAIL)") from None
        log("removing what was made")
        try:
            cluster_down()
        except LabError as down_error:
            log(f"cleanup after the failure: {down_error}")
        if isinstance(e, LabError):
            raise
        raise LabError(f"building the multi-host lab failed: {e} {detail}".rstrip()) from None
    return cluster_status()


def _restart_nodes(state: dict) -> bool:
    """Start again the slurmd of nodes where it died while the rest of the cluster runs (True if any).

    As on a real node whose slurmd crashed: its init (and the jobs' processes under it) still run
    and start slurmd again (SIGUSR1, rcsc3_lab.nodeinit), which registers with slurmctld and is told
    to end the steps of jobs slurmctld no longer runs there. A node whose init is gone too is
    booted again (a new PID namespace and /tmp). Anything else wrong is left to the full rebuild.
    """
    if not state.get("complete"):
        return False
    dead = [name for name in _expected_daemons() if not _alive(state, name)]
    node_daemons = {f"{kind}-{n.name}": n for n in NODES for kind in ("launcher", "nodeinit", "slurmd")}
    if not dead or any(name not in node_daemons for name in dead) or not _slurmctld_up():
        return False
    if any(not (NETNS_DIR / n).exists() for n in NETWORK.all_netns):
        return False
    for node in dict.fromkeys(node_daemons[name] for name in dead):
        if _alive(state, f"nodeinit-{node.name}") and _alive(state, f"launcher-{node.name}"):
            log(f"slurmd on {node.name} is not running: its node's init starts it again")
            init = state["daemons"][f"nodeinit-{node.name}"]["pid"]
            os.kill(init, signal.SIGUSR1)

            def slurmd(init: int = init) -> int | None:
                return next((pid for pid in _children(init) if _comm(pid) == "slurmd"), None)

            _record(state, f"slurmd-{node.name}", _wait(f"slurmd on {node.name} to start again", slurmd, 15))
        else:
            log(f"{node.name} is down (its init ended): booting it again")
            _stop_recorded(state, [f"slurmd-{node.name}", f"nodeinit-{node.name}", f"launcher-{node.name}"],
                           [f"nodeinit-{node.name}", f"slurmd-{node.name}"])
            _record_slurmd(state, node, _start_slurmd(state, node))
    # a node DOWN for not responding takes jobs again once its slurmd registers (ReturnToService=2)
    _wait("the restarted nodes to be back in service", _nodes_ready, 60, interval=0.2)
    return True


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _refresh(epilog: Path | None) -> None:
    """A healthy cluster: rewrite the epilog copy and slurm.conf only if they changed (then reconfigure)."""
    installed = install_epilog(epilog, EPILOG)
    if write_if_changed(SLURM_CONF, render_slurm_conf(installed)):
        log("slurm.conf changed: scontrol reconfigure")
        slurm("scontrol", "reconfigure", check=True)


def _build(epilog: Path | None, t0: float) -> None:
    state: dict = {"outside": {k: ns_id(k) for k in ("mnt", "net", "uts")}}
    BASE.mkdir(mode=0o755)
    save_state(state)
    slurm_user = pwd.getpwnam("slurm")
    for d in ("etc", "run", "spool", "dev"):
        (BASE / d).mkdir(mode=0o755)
    for n in NODES:
        (BASE / "spool" / f"slurmd-{n.name}").mkdir(mode=0o755)
    os.chown(BASE / "run", slurm_user.pw_uid, slurm_user.pw_gid)
    (BASE / "state").mkdir(mode=0o700)
    os.chown(BASE / "state", slurm_user.pw_uid, slurm_user.pw_gid)
    CLUSTER_LOG_DIR.mkdir(parents=True, exist_ok=True)
    os.chown(CLUSTER_LOG_DIR, 0, 0)
    CLUSTER_LOG_DIR.chmod(0o755)
    # slurmctld works in its log's directory and wants to write there (core files): its own one
    CTLD_LOG_DIR.mkdir(mode=0o755, exist_ok=True)
    os.chown(CTLD_LOG_DIR, slurm_user.pw_uid, slurm_user.pw_gid)
    for n in NODES:
        # Slurm's gres plugin only needs the files to bind and count them (CUDA_VISIBLE_DEVICES)
        if n.gpus:
            (GPU_DIR / n.name).mkdir(mode=0o755)
        for i in range(n.gpus):
            run(["mknod", "-m", "666", str(GPU_DIR / n.name / f"nvidia{i}"), "c", "195", str(i)])

    log(f"network: bridge {NETWORK.bridge} in netns {NETWORK.switch_netns}, "
        + ", ".join(f"{h.name} {h.address} ({h.netns})" for h in NETWORK.hosts)
        + f", this machine {NETWORK.machine_address} ({NETWORK.machine_veth})")
    state["made_etc_netns"] = write_hosts_files(NETWORK, f"{MARKER} (multi-host lab)")
    save_state(state)
    try:
        make_network(NETWORK)
    except subprocess.CalledProcessError as e:
        raise LabError(f"cannot make network namespaces here ({' '.join(e.cmd)}: {(e.stderr or '').strip()}); "
                       "the multi-host lab needs CAP_NET_ADMIN and CAP_SYS_ADMIN") from None
    make_uts(NETWORK)
    t_net = time.monotonic()

    installed = install_epilog(epilog, EPILOG)
    write_if_changed(SLURM_CONF, render_slurm_conf(installed))
    write_if_changed(GRES_CONF, render_gres_conf())
    write_if_changed(BASE / "etc" / "plugstack.conf", f"{MARKER}: no SPANK plugins\n")
    _start_munged(state)
    t_munge = time.monotonic()
    _start_slurmctld(state)
    t_ctld = time.monotonic()
    launchers = {n.name: _start_slurmd(state, n) for n in NODES}
    for n in NODES:
        _record_slurmd(state, n, launchers[n.name])
    _wait("both nodes to be idle", _nodes_ready, 30, interval=0.2)
    t_end = time.monotonic()
    state["timing"] = {"network": round(t_net - t0, 2), "munged": round(t_munge - t_net, 2),
                       "slurmctld": round(t_ctld - t_munge, 2), "slurmd": round(t_end - t_ctld, 2), "total": round(t_end - t0, 2)}
    state["complete"] = True
    save_state(state)
    log(f"multi-host lab up in {t_end - t0:.1f}s ({', '.join(f'{k} {v}s' for k, v in state['timing'].items() if k != 'total')}): "
        f"{', '.join(f'{h.name} {h.address}' for h in NETWORK.hosts)}; SLURM_CONF={SLURM_CONF}")


def _log_tails() -> None:
    for f in sorted(CLUSTER_LOG_DIR.glob("**/*")):
        if f.is_file():
            lines = f.read_text(errors="replace").splitlines()[-10:]
            if lines:
                print(f"== {f} (last lines)\n" + "\n".join(lines), file=sys.stderr)


# ---------------------------------------------------------------- down
def _our_namespace_ids(state: dict) -> set[str]:
    """The namespaces whose processes are the lab's: the hosts' net and UTS, the nodes' PID namespaces."""
    ids = {i for n in NETWORK.all_netns if (i := ns_file_id("net", NETNS_DIR / n))}
    ids |= {i for h in NETWORK.hosts if (i := ns_file_id("uts", NETWORK.uts_file(h)))}
    for node, pidns in state.get("node_pidns", {}).items():
        if _alive(state, f"nodeinit-{node}"):  # a recorded id only while its namespace is surely ours
            ids.add(pidns)
    return ids


def _pids_in(ids: set[str]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for kind in ("net", "uts", "pid"):
            try:
                if os.readlink(f"/proc/{entry}/ns/{kind}") in ids:
                    found.append(int(entry))
                    break
            except OSError:
                break
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop_recorded(state: dict, names: list[str], signal_names: list[str]) -> list[str]:
    """SIGTERM the recorded processes `signal_names` (pid and start time must match), wait for all of
    `names` to end, SIGKILL what is left after 10 s. Returns the problems."""
    daemons = state.get("daemons", {})
    for name in signal_names:
        if _alive(state, name):
            log(f"stopping {name} (pid {daemons[name]['pid']})")
            _signal([daemons[name]["pid"]], 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(state, n) for n in names):
        time.sleep(0.05)
    left = [n for n in names if _alive(state, n)]
    for name in left:
        log(f"{name} (pid {daemons[name]['pid']}) did not stop in 10 s: SIGKILL")
        _signal([daemons[name]["pid"]], 9)
    return [f"{n} needed SIGKILL" for n in left]


def _cancel_jobs() -> None:
    if not (SLURM_CONF.exists() and (NETNS_DIR / HUB.netns).exists() and _slurmctld_up()):
        return
    jobs = slurm("squeue", "-h", "-o", "%i", timeout=10).stdout.split()
    if not jobs:
        return
    log(f"cancelling the cluster's jobs: {' '.join(jobs)}")
    slurm("scancel", *jobs, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and slurm("squeue", "-h", "-o", "%i", timeout=5).stdout.split():
        time.sleep(0.2)


def cluster_down() -> None:
    """Remove exactly what `cluster_up` made: jobs, daemons, whatever still runs in the hosts, the
    namespaces, veths, mounts, /etc/netns entries and /run/rcsc3-cluster. Safe to run twice."""
    _require_root("down --hosts")
    t0 = time.monotonic()
    state = load_state()
    if not state and not network_leftovers(NETWORK) and not BASE.exists():
        log("the multi-host lab is not up: nothing to remove")
        return
    problems: list[str] = []
    _cancel_jobs()
    # slurmds first (they would re-register), then slurmctld, then munged
    for n in NODES:
        # through the node's init, which forwards it to slurmd and then ends (a slurmd that ends on
        # its own leaves the node up: rcsc3_lab.nodeinit); slurmd itself when the init is gone
        first = [f"nodeinit-{n.name}"] if _alive(state, f"nodeinit-{n.name}") else [f"slurmd-{n.name}"]
        problems += _stop_recorded(state, [f"slurmd-{n.name}", f"nodeinit-{n.name}", f"launcher-{n.name}"], first)
        # a slurmd that ignored SIGTERM was killed; its init ends the node's PID namespace
        problems += _stop_recorded(state, [f"nodeinit-{n.name}", f"launcher-{n.name}"], [f"nodeinit-{n.name}"])
    problems += _stop_recorded(state, ["slurmctld"], ["slurmctld"])
    problems += _stop_recorded(state, ["munged"], ["munged"])
    # What else runs on the hosts (a JupyterHub started with `rcsc3 lab on hub`, stray job processes)
    ids = _our_namespace_ids(state)
    for sig in (15, 9):
        left = _pids_in(ids) if ids else []
        if not left:
            break
        log(f"{'SIGTERM' if sig == 15 else 'SIGKILL'} to what still runs on the hosts: "
            + ", ".join(f"{p} ({_cmdline(p)})" for p in left))
        _signal(left, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _pids_in(ids):
            time.sleep(0.05)
    left = _pids_in(ids) if ids else []
    if left:
        problems.append(f"still running on the hosts: {left}")
    problems += remove_network(NETWORK, bool(state.get("made_etc_netns")))
    mounted = _mounts_under(BASE)
    if mounted:
        problems.append(f"still mounted under {BASE}: {', '.join(mounted)}")
    elif BASE.exists():
        shutil.rmtree(BASE)  # never follows a symlink (job users can write only in nothing of BASE)
    left_over = network_leftovers(NETWORK) + ([str(BASE)] if BASE.exists() else [])
    if left_over:
        problems.append(f"left over: {', '.join(left_over)}")
    if problems:
        raise LabError("the multi-host lab was not removed cleanly: " + "; ".join(problems))
    log(f"multi-host lab removed in {time.monotonic() - t0:.1f}s")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(200).replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _mounts_under(path: Path) -> list[str]:
    prefix = f"{path}/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


# ---------------------------------------------------------------- status and `on`
def cluster_facts() -> dict:
    """What clients need to know, the same while it is up or not."""
    return {
        "lab": "hosts",
        "cluster_name": CLUSTER_NAME,
        "hosts": {h.name: h.address for h in NETWORK.hosts},
        "netns": {h.name: h.netns for h in NETWORK.hosts},
        "machine_address": NETWORK.machine_address,
        "hub_url": f"http://{HUB.address}:{HUB_PORT}",
        "slurm_conf": str(SLURM_CONF),
        "munge_socket": str(MUNGE_SOCKET),
        "partitions": PARTITIONS,
        "nodes": {n.name: {"address": NETWORK.host(n.name).address, "cpus": n.cpus, "memory_mb": n.memory_mb, "gpus": n.gpus}
                  for n in NODES},
        "log_dir": str(CLUSTER_LOG_DIR),
        "on": "rcsc3 lab on [-u USER] HOST -- COMMAND...",
    }


def is_up() -> bool:
    return bool(load_state().get("complete")) and (NETNS_DIR / HUB.netns).exists()


def cluster_status() -> dict:
    state = load_state()
    facts = cluster_facts()
    if not state:
        return {**facts, "up": False, "problem": "not up (rcsc3 lab up --hosts)"}
    problem = health_problem(state)
    daemons = {name: d["pid"] for name, d in state.get("daemons", {}).items() if _alive(state, name)}
    ctld = "up" if (NETNS_DIR / HUB.netns).exists() and _slurmctld_up() else "down"
    return {**facts, "up": not problem, "problem": problem, "slurmctld": ctld,
            "node_states": node_states() if ctld == "up" else {}, "daemons": daemons, "timing": state.get("timing", {})}


def print_status(status: dict) -> None:
    print(f"multi-host lab: {'up' if status['up'] else 'NOT UP: ' + status['problem']} "
          f"(cluster {status['cluster_name']}, SLURM_CONF={status['slurm_conf']})")
    states = status.get("node_states", {})
    for name, address in status["hosts"].items():
        if name == HUB.name:
            what = f"slurmctld {status.get('slurmctld', 'down')}, munged; JupyterHub: {status['hub_url']}"
        else:
            parts = [p for p, nodes in PARTITIONS.items() if name in nodes]
            gpus = status["nodes"][name]["gpus"]
            what = f"slurmd {states.get(name, 'down')}; partitions {', '.join(parts)}{f'; {gpus} GPUs (faked)' if gpus else ''}"
        print(f"  {name:<5} {address:<12} netns {status['netns'][name]:<11} {what}")
    print(f"  this machine {status['machine_address']} ({NETWORK.machine_veth}); "
          f"run on a host: {status['on']}")


def on_argv(host_name: str, command: list[str], user: str | None = None) -> list[str]:
    """The argv that runs `command` on a host of the cluster, as root or as `user` (clean environment)."""
    host = NETWORK.host(host_name)
    if not command:
        raise LabError("no command given: rcsc3 lab on [-u USER] HOST -- COMMAND...")
    if not (is_up() and NETWORK.uts_file(host).exists()):
        raise LabError("the multi-host lab is not up: run `rcsc3 lab up --hosts` first")
    argv = host_argv(NETWORK, host)
    if user is None:
        return [*argv, "env", f"SLURM_CONF={SLURM_CONF}", *command]
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise LabError(f"-u: no user {user!r} on this machine") from None
    env = [f"HOME={pw.pw_dir}", f"USER={user}", f"LOGNAME={user}", f"SHELL={pw.pw_shell}", f"PATH={SYSTEM_PATH}",
           f"SLURM_CONF={SLURM_CONF}", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"]
    if os.environ.get("TERM"):
        env.append(f"TERM={os.environ['TERM']}")
    return [*argv, "runuser", "-u", user, "--", "env", "-i", *env, *command]
