"""Node concerns of the lab: the (fake) GPUs and the shared X socket directories of a booted node."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .system import LabError, log, run

FAKE_GPUS = 2
#: The one-host node advertises at least this many CPUs (Slurm's config_overrides),
#: so that two or three students fit at once on a 2-core machine. Real clusters
#: never need this; it only shapes the lab.
MIN_LAB_CPUS = 4


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



#: The shared X11 and ICE socket directories, as systemd-tmpfiles makes them (x11.conf) on a booted node
X_SOCKET_DIRS = ("/tmp/.X11-unix", "/tmp/.ICE-unix")


def ensure_x_socket_dirs(paths: tuple[str, ...] = X_SOCKET_DIRS) -> None:
    """Make /tmp/.X11-unix and /tmp/.ICE-unix root-owned 1777, as on a node booted with systemd.

    Without systemd (this lab, containers) the first desktop would create them as its student,
    and the owner of a sticky directory may delete everyone's sockets in it. Root works here in
    a directory students write to: a student's entry there can be swapped for a symlink at any
    moment, so nothing is changed through a path. An entry that is not root's own directory is
    moved aside (and logged) and a fresh one made; the mode is set through a descriptor opened
    with O_NOFOLLOW on the directory just checked.
    """
    for d in paths:
        for _ in range(5):
            fd = _open_own_dir(d)
            if fd is not None:
                try:
                    os.fchmod(fd, 0o1777)
                finally:
                    os.close(fd)
                break
            if os.path.lexists(d):
                aside = f"{d}.not-root-{int(time.time())}-{os.getpid()}"
                os.rename(d, aside)  # root may rename anything in a sticky directory
                log(f"{d} was not a directory of root's: moved it aside to {aside}")
            with contextlib.suppress(FileExistsError):  # lost a race: look again
                os.mkdir(d, 0o700)
        else:
            raise LabError(f"{d} keeps being replaced while `rcsc3 lab up` makes it; look at who writes to {os.path.dirname(d)}")


def _open_own_dir(path: str) -> int | None:
    """A descriptor of `path` if it is a real directory owned by root (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_gid != 0:
        os.close(fd)
        return None
    return fd
