"""OpenGL for the desktop: VirtualGL on the job's GPU, or Mesa in software.

Slurm hands the job GPU *indices*: `SLURM_JOB_GPUS` are node-global (the order
of gres.conf's `File=`, which on NVIDIA nodes is the `/dev/nvidiaN` minor), while
`CUDA_VISIBLE_DEVICES` may be renumbered from 0 when devices are constrained. The
DRM card numbers (`/dev/dri/cardN`) that VirtualGL's EGL back end wants follow
PCI probe order and differ from both, so we map index -> NVIDIA minor -> PCI bus
id -> DRM card through /proc and /sys.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GLMode:
    """How GL programs in the desktop will render; shown on the page."""

    kind: str  # "virtualgl" | "software"
    device: str | None = None  # VGL_DISPLAY, e.g. /dev/dri/card1
    gpu: str | None = None  # the Slurm GPU index it maps from
    vglrun: str | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "virtualgl":
            return f"VirtualGL (EGL) on GPU {self.gpu} ({self.device})"
        return f"Mesa software GL (llvmpipe){': ' + self.reason if self.reason else ''}"


def allocated_gpus(env: dict[str, str]) -> list[str]:
    """Node-global indices of the GPUs Slurm gave this job (empty: none)."""
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES"):
        raw = env.get(var, "").strip()
        if raw and raw not in ("NoDevFiles", "-1"):
            return [x.strip() for x in raw.split(",") if x.strip()]
    return []


def nvidia_bus_ids(proc_root: Path = Path("/proc")) -> dict[int, str]:
    """NVIDIA device minor -> PCI bus id, from the driver's /proc/driver/nvidia/gpus/*/information."""
    out: dict[int, str] = {}
    gpus = proc_root / "driver" / "nvidia" / "gpus"
    if not gpus.is_dir():
        return out
    for d in gpus.iterdir():
        try:
            info = (d / "information").read_text()
        except OSError:
            continue
        m = re.search(r"Device Minor:\s*(\d+)", info)
        if m:
            out[int(m.group(1))] = d.name.lower()
    return out


def drm_cards(sys_root: Path = Path("/sys")) -> dict[str, str]:
    """PCI bus id -> /dev/dri/cardN, from /sys/class/drm/cardN/device links."""
    out: dict[str, str] = {}
    drm = sys_root / "class" / "drm"
    if not drm.is_dir():
        return out
    for card in drm.iterdir():
        if not re.fullmatch(r"card\d+", card.name):
            continue
        try:
            bus = os.path.basename(os.path.realpath(card / "device")).lower()
        except OSError:
            continue
        out[bus] = f"/dev/dri/{card.name}"
    return out


def drm_device_for_gpu(index: str, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> str | None:
    """The /dev/dri/cardN of Slurm GPU `index`, or None when it can't be told."""
    if not index.isdigit():
        return None  # a UUID (MIG or CUDA_VISIBLE_DEVICES=GPU-...) has no DRM card we can trust
    bus = nvidia_bus_ids(proc_root).get(int(index))
    if bus is None:
        return None
    return drm_cards(sys_root).get(bus)


def choose(env: dict[str, str], vglrun: str | None = "auto", proc_root: Path = Path("/proc"),
           sys_root: Path = Path("/sys")) -> GLMode:
    """VirtualGL on the first allocated GPU when possible, else software GL with the reason."""
    if vglrun == "auto":
        vglrun = shutil.which("vglrun") or ("/opt/VirtualGL/bin/vglrun" if Path("/opt/VirtualGL/bin/vglrun").exists() else None)
    if not vglrun:
        return GLMode("software", reason="vglrun not installed")
    gpus = allocated_gpus(env)
    if env.get("RCSC3_GPUS", "").strip() in ("0",) or not gpus:
        return GLMode("software", reason="no GPU in this job")
    device = drm_device_for_gpu(gpus[0], proc_root, sys_root)
    if device is None:
        return GLMode("software", reason=f"no DRM device found for GPU {gpus[0]}")
    return GLMode("virtualgl", device=device, gpu=gpus[0], vglrun=vglrun)


def session_command(mode: GLMode, xstartup: list[str]) -> list[str]:
    """Run the whole session under vglrun (what TurboVNC's `vncserver -vgl` does) or as is."""
    if mode.kind == "virtualgl" and mode.vglrun and mode.device:
        return [mode.vglrun, "-d", mode.device, *xstartup]
    return list(xstartup)


def session_env(mode: GLMode) -> dict[str, str]:
    """Environment for the session: VGL's EGL device, or Mesa forced to software."""
    if mode.kind == "virtualgl" and mode.device:
        return {"VGL_DISPLAY": mode.device}
    # Xvnc's GLX is Mesa's swrast anyway; be explicit so a stray driver isn't tried.
    return {"LIBGL_ALWAYS_SOFTWARE": "1", "GALLIUM_DRIVER": "llvmpipe"}


def vglrun_version(vglrun: str) -> str:
    """VirtualGL's version: from its package, since `vglrun` has no --version."""
    for query in (["dpkg-query", "-W", "-f", "${Version}", "virtualgl"], ["rpm", "-q", "--qf", "%{VERSION}", "VirtualGL"]):
        try:
            res = subprocess.run(query, capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.strip()
    return "unknown"
