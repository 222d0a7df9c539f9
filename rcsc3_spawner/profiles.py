"""Admin-defined spawn profiles: what a student may choose, and within which bounds.

A profile is plain data from `c.RcSC3Spawner.profiles` (a list of dicts, so it can
live in `jupyterhub_config.py` or YAML). It is parsed once into a frozen
`Profile`; a malformed profile is a configuration error reported at hub start,
never something a student can trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Slurm names (partition, account, qos, reservation, constraint): no spaces, no shell meta.
SLURM_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# Extra admin #SBATCH flags: one long option, a safe value, nothing else on the line.
SBATCH_FLAG_RE = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=\-\[\]]+)?")


class ProfileError(ValueError):
    """A profile in the hub's configuration is malformed (an admin error)."""


@dataclass(frozen=True)
class Range:
    """An integer field's default and allowed bounds (inclusive)."""

    default: int
    min: int
    max: int

    @classmethod
    def parse(cls, name: str, raw: Any, fallback: Range) -> Range:
        if raw is None:
            return fallback
        if isinstance(raw, int) and not isinstance(raw, bool):
            return cls(raw, raw, raw)
        if not isinstance(raw, dict):
            raise ProfileError(f"{name}: expected an integer or a dict with default/min/max, got {raw!r}")
        unknown = set(raw) - {"default", "min", "max"}
        if unknown:
            raise ProfileError(f"{name}: unknown keys {sorted(unknown)}")
        values = {k: raw.get(k, getattr(fallback, k)) for k in ("default", "min", "max")}
        for k, v in values.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ProfileError(f"{name}.{k}: expected a non-negative integer, got {v!r}")
        rng = cls(**values)
        if not rng.min <= rng.default <= rng.max:
            raise ProfileError(f"{name}: need min <= default <= max, got {rng}")
        return rng


@dataclass(frozen=True)
class WalltimeRange:
    """Walltime default and bounds, in minutes."""

    default: int
    min: int
    max: int


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str
    partition: str
    gpus: Range
    cpus: Range
    memory_gb: Range
    walltime: WalltimeRange
    account: str = ""
    qos: str = ""
    reservation: str = ""
    constraint: str = ""
    extra_sbatch: tuple[str, ...] = field(default_factory=tuple)
    prestart_desktop: bool = False


def parse_walltime_minutes(text: str) -> int:
    """Parse a Slurm-style walltime: `MM`, `H:MM`, `H:MM:SS`, `D-H`, `D-H:MM`, `D-H:MM:SS`.

    Seconds are rounded up to the next minute. Raises ValueError on anything else.
    """
    m = re.fullmatch(r"(?:(\d{1,3})-)?(\d{1,4})(?::(\d{1,2}))?(?::(\d{1,2}))?", text.strip())
    if not m:
        raise ValueError(f"not a walltime: {text!r}")
    days, a, b, c = m.groups()
    if days is None and b is None:
        minutes = int(a)  # a bare number is minutes, like Slurm's --time
    elif days is not None and b is None:
        minutes = int(a) * 60
    else:
        hours, mins, secs = int(a), int(b or 0), int(c or 0)
        if mins >= 60 or secs >= 60:
            raise ValueError(f"not a walltime: {text!r}")
        minutes = hours * 60 + mins + (1 if secs else 0)
    if days is not None:
        minutes += int(days) * 24 * 60
    return minutes


def format_walltime(minutes: int) -> str:
    """Minutes as Slurm `--time` text, e.g. 90 -> '1:30:00', 1500 -> '1-01:00:00'."""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours}:{mins:02d}:00"


def human_walltime(minutes: int) -> str:
    """Minutes as the form shows them: 'H:MM'."""
    hours, mins = divmod(minutes, 60)
    return f"{hours}:{mins:02d}"


def _slurm_name(field_name: str, value: Any, required: bool = False) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not SLURM_NAME_RE.fullmatch(value):
        raise ProfileError(f"{field_name}: {value!r} is not a valid Slurm name")
    return value


def parse_profile(raw: dict) -> Profile:
    """Turn one admin profile dict into a Profile; raise ProfileError naming the bad key."""
    if not isinstance(raw, dict):
        raise ProfileError(f"a profile must be a dict, got {raw!r}")
    known = {
        "slug", "display_name", "description", "partition", "gpus", "cpus", "memory_gb",
        "walltime", "account", "qos", "reservation", "constraint", "extra_sbatch", "prestart_desktop",
    }
    unknown = set(raw) - known
    if unknown:
        raise ProfileError(f"profile {raw.get('slug', '?')!r}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    slug = raw.get("slug", "")
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise ProfileError(f"profile slug {slug!r}: use lowercase letters, digits and '-'")
    where = f"profile {slug!r}"
    wt_raw = raw.get("walltime", {})
    if not isinstance(wt_raw, dict):
        raise ProfileError(f"{where}.walltime: expected a dict with default/min/max like '2:00'")
    try:
        walltime = WalltimeRange(
            default=parse_walltime_minutes(str(wt_raw.get("default", "1:00"))),
            min=parse_walltime_minutes(str(wt_raw.get("min", "0:15"))),
            max=parse_walltime_minutes(str(wt_raw.get("max", "4:00"))),
        )
    except ValueError as e:
        raise ProfileError(f"{where}.walltime: {e}") from None
    if not walltime.min <= walltime.default <= walltime.max:
        raise ProfileError(f"{where}.walltime: need min <= default <= max")
    extra = raw.get("extra_sbatch", [])
    if not isinstance(extra, (list, tuple)) or not all(isinstance(x, str) and SBATCH_FLAG_RE.fullmatch(x) for x in extra):
        raise ProfileError(f"{where}.extra_sbatch: a list of single '--flag[=value]' strings without spaces")
    cpus = Range.parse(f"{where}.cpus", raw.get("cpus"), Range(2, 1, 4))
    if cpus.min < 1:
        raise ProfileError(f"{where}.cpus.min must be at least 1")
    memory = Range.parse(f"{where}.memory_gb", raw.get("memory_gb"), Range(4, 1, 16))
    if memory.min < 1:
        raise ProfileError(f"{where}.memory_gb.min must be at least 1")
    display_name = raw.get("display_name", slug)
    description = raw.get("description", "")
    if not isinstance(display_name, str) or not isinstance(description, str):
        raise ProfileError(f"{where}: display_name and description must be strings")
    return Profile(
        slug=slug,
        display_name=display_name,
        description=description,
        partition=_slurm_name(f"{where}.partition", raw.get("partition"), required=True),
        gpus=Range.parse(f"{where}.gpus", raw.get("gpus"), Range(0, 0, 0)),
        cpus=cpus,
        memory_gb=memory,
        walltime=walltime,
        account=_slurm_name(f"{where}.account", raw.get("account")),
        qos=_slurm_name(f"{where}.qos", raw.get("qos")),
        reservation=_slurm_name(f"{where}.reservation", raw.get("reservation")),
        constraint=_slurm_name(f"{where}.constraint", raw.get("constraint")),
        extra_sbatch=tuple(extra),
        prestart_desktop=bool(raw.get("prestart_desktop", False)),
    )


def parse_profiles(raw_list: list[dict]) -> list[Profile]:
    profiles = [parse_profile(p) for p in raw_list]
    if not profiles:
        raise ProfileError("at least one profile is needed")
    slugs = [p.slug for p in profiles]
    if len(set(slugs)) != len(slugs):
        raise ProfileError(f"profile slugs must be unique, got {slugs}")
    return profiles


#: The embedded default matches `rcsc3 lab`'s partitions; real sites set their own.
DEFAULT_PROFILES: list[dict] = [
    {
        "slug": "gpu-desktop",
        "display_name": "GPU desktop — interactive partition, 1 GPU",
        "description": "JupyterLab and a Remote Desktop with OpenGL on the GPU; ipyparallel engines on the extra cores.",
        "partition": "interactive",
        "gpus": {"default": 1, "min": 1, "max": 2},
        "cpus": {"default": 2, "min": 1, "max": 4},
        "memory_gb": {"default": 4, "min": 1, "max": 16},
        "walltime": {"default": "2:00", "min": "0:15", "max": "6:00"},
        "prestart_desktop": True,
    },
    {
        "slug": "cpu",
        "display_name": "CPU only — notebooks and ipyparallel engines",
        "description": "JupyterLab without a GPU; the desktop still works with software OpenGL.",
        "partition": "cpu",
        "gpus": 0,
        "cpus": {"default": 2, "min": 1, "max": 4},
        "memory_gb": {"default": 2, "min": 1, "max": 16},
        "walltime": {"default": "1:00", "min": "0:15", "max": "12:00"},
    },
]
