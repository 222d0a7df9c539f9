"""`rcsc3 lab`: idempotent, unattended, and `down` stops only what `up` started."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rcsc3_lab.node import NodeShape
from rcsc3_lab.slurm import GRES_CONF, SLURM_CONF, render_gres_conf, render_slurm_conf

pytestmark = pytest.mark.slurm
RCSC3 = str(Path(sys.executable).parent / "rcsc3")


def rcsc3(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RCSC3, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_rendered_config_has_the_gpu_partition():
    shape = NodeShape("node1", cpus=4, real_cpus=2, memory_mb=8000, gpu_files=["/dev/nvidia0", "/dev/nvidia1"], gpus_faked=True)
    conf = render_slurm_conf(shape, Path("/etc/slurm/rcsc3-epilog.sh"))
    assert "GresTypes=gpu" in conf
    assert "NodeName=node1 NodeAddr=127.0.0.1 CPUs=4 RealMemory=8000 Gres=gpu:2" in conf
    assert "PartitionName=interactive Nodes=node1 Default=YES MaxTime=06:00:00" in conf
    assert "ProctrackType=proctrack/linuxproc" in conf and "TaskPlugin=task/none" in conf
    assert "SlurmdParameters=config_overrides" in conf  # 4 advertised CPUs on a 2-core machine
    assert "Epilog=/etc/slurm/rcsc3-epilog.sh" in conf
    assert "batch_sched_delay=0" in conf  # students wait for a GPU, not for the scheduler
    assert "File=/dev/nvidia[0-1]" in render_gres_conf(shape)


def test_up_is_idempotent_and_status_ok(slurm_lab):
    before = (SLURM_CONF.stat().st_mtime, GRES_CONF.stat().st_mtime)
    res = rcsc3("lab", "up", "--no-install")
    assert res.returncode == 0, res.stderr
    assert "ready: node" in res.stdout and "starting" not in res.stdout
    assert (SLURM_CONF.stat().st_mtime, GRES_CONF.stat().st_mtime) == before
    status = rcsc3("lab", "status")
    assert status.returncode == 0 and "slurmctld:  up" in status.stdout and "interactive" in status.stdout


def test_up_makes_the_shared_x_socket_dirs_root_owned(slurm_lab):
    # as systemd-tmpfiles does on a booted node: a student owning one could delete everyone's sockets in it
    ice = Path("/tmp/.ICE-unix")
    os.chown(ice, 65534, 65534)  # as if "nobody"'s desktop had made it first
    res = rcsc3("lab", "up", "--no-install")
    assert res.returncode == 0, res.stderr
    for d in ("/tmp/.X11-unix", "/tmp/.ICE-unix"):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o1777), (d, st)
    # the one that was not root's was moved aside (never changed in place: see tests/security/test_lab_as_root.py)
    [aside] = [p for p in Path("/tmp").glob(".ICE-unix.not-root-*") if p.stat().st_uid == 65534]
    assert "moved it aside" in res.stdout
    for sock in aside.iterdir():  # sessions running meanwhile keep their sockets
        sock.rename(ice / sock.name)
    aside.rmdir()


def test_gpu_gres_sets_cuda_visible_devices(slurm_lab):
    out = subprocess.run(["srun", "-p", "interactive", "--gres=gpu:1", "-n1", "-t", "1", "printenv", "CUDA_VISIBLE_DEVICES"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("0", "1")


def test_cli_reports_unknown_commands():
    res = rcsc3("nope")
    assert res.returncode == 2 and "unknown command 'nope'" in res.stderr and "lab" in res.stderr
