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

import os
import shutil
from pathlib import Path

from .hub_host import STATE_DIRS, ensure_root_sudo_env, private_state_dir, remove_root_sudo_env
from .node import detect_node, ensure_gpu_devices, ensure_x_socket_dirs
from .packages import APT_PACKAGES, ensure_packages
from .slurm import (
    CPU_PARTITION,
    GPU_PARTITION,
    GRES_CONF,
    SLURM_CONF,
    conf_is_ours,
    install_epilog,
    munge_works,
    node_state,
    render_gres_conf,
    render_slurm_conf,
    slurmctld_up,
    start_munge,
    start_slurm,
    wait_node_idle,
)
from .system import STATE_FILE, LabError, load_state, log, run, save_state, stop_daemon, write_if_changed


def lab_up(install: bool = True, epilog: Path | None = None) -> None:
    if os.geteuid() != 0:
        raise LabError("`rcsc3 lab up` must run as root (it installs packages and starts daemons)")
    if install:
        ensure_packages(APT_PACKAGES)
    state = load_state()
    shape = detect_node()
    ensure_gpu_devices(shape, state)
    ensure_x_socket_dirs()
    ensure_root_sudo_env(state)
    for directory in STATE_DIRS:
        private_state_dir(directory)
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
    remove_root_sudo_env(state)
    for dev in state.get("made_devices", []):
        Path(dev).unlink(missing_ok=True)
    STATE_FILE.unlink(missing_ok=True)


def onehost_status() -> dict:
    """The one-host lab's facts in the shape of `rcsc3 lab status --json` for the multi-host lab."""
    shape = detect_node()
    up = munge_works() and shutil.which("scontrol") is not None and slurmctld_up()
    return {
        "lab": "onehost",
        "up": up,
        "problem": "" if up else "munge or slurmctld is not answering (rcsc3 lab up)",
        "cluster_name": "rcsc3lab",
        "hosts": {shape.hostname: "127.0.0.1"},
        "hub_url": "http://127.0.0.1:8000",
        "slurm_conf": str(SLURM_CONF),
        "partitions": {GPU_PARTITION: [shape.hostname], CPU_PARTITION: [shape.hostname]},
        "node_states": {shape.hostname: node_state(shape.hostname) if up else ""},
    }


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


