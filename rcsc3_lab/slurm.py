"""The lab's Slurm: slurm.conf and gres.conf for this machine, munged, slurmctld and slurmd without systemd."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from .node import NodeShape
from .system import LOG_DIR, LabError, log, pids_of, run, save_state, wait_for, write_if_changed

MARKER = "# managed by rcsc3 lab"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
EPILOG_DEST = Path("/etc/slurm/rcsc3-epilog.sh")
#: Partition names the lab creates; the demo profiles refer to them.
GPU_PARTITION = "interactive"
CPU_PARTITION = "cpu"

#: What every lab's slurm.conf says about accounts, plugins and scheduling (the one-host lab and
#: the multi-host lab alike: no systemd, no cgroup delegation, students waiting for a GPU).
COMMON_SETTINGS = """SlurmUser=slurm
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
# The node epilog bounds itself (60 s); Slurm kills it here at the latest.
PrologEpilogTimeout=90
"""


def render_slurm_conf(shape: NodeShape, epilog: Path | None) -> str:
    n_gpus = len(shape.gpu_files)
    overrides = "SlurmdParameters=config_overrides\n" if shape.cpus != shape.real_cpus else ""
    epilog_line = f"Epilog={epilog}\n" if epilog else ""
    return f"""{MARKER}: a one-host Slurm for rcsc3's demo and tests.
# Edit hub_config/slurm/ for a real cluster; `rcsc3 lab down` stops what `lab up` started.
ClusterName=rcsc3lab
SlurmctldHost={shape.hostname}(127.0.0.1)
{COMMON_SETTINGS}SlurmctldPidFile=/run/rcsc3-lab/slurmctld.pid
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



def conf_is_ours() -> bool:
    return not SLURM_CONF.exists() or SLURM_CONF.read_text().startswith(MARKER)


def install_epilog(source: Path | None, dest: Path = EPILOG_DEST) -> Path | None:
    """Copy the node epilog (hub_config/slurm/epilog.sh) to `dest`; None when there is none."""
    if source is None:
        checkout = Path(__file__).resolve().parent.parent / "hub_config" / "slurm" / "epilog.sh"
        source = checkout if checkout.exists() else None
    if source is None:
        return None
    if not source.exists():
        raise LabError(f"epilog {source} does not exist")
    write_if_changed(dest, source.read_text(), mode=0o755)
    return dest



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


