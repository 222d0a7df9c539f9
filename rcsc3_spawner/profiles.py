"""Admin-defined spawn profiles: what a student may choose, and within which bounds.

`c.RcSC3Spawner.profiles` is a list of dicts (so it can live in `jupyterhub_config.py` or YAML).
Each is validated once, when the configuration is loaded, into a `Profile`: a typed object
whose traits say what every key means (the `profiles` setting's help is generated from them,
as jupyter-server-proxy does for its servers). A malformed profile is a configuration error
that names the profile and the key, never something a student can trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from textwrap import dedent
from typing import Any

from traitlets import Bool, Float, HasTraits, Instance, List, TraitError, Unicode, Union, default, validate
from traitlets import Dict as DictTrait
from traitlets import Int as IntTrait

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Slurm names (partition, account, qos, reservation, constraint): no spaces, no shell meta.
SLURM_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# Extra admin #SBATCH flags: one long option, a safe value, nothing else on the line.
SBATCH_FLAG_RE = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=\-\[\]]+)?")
# JupyterHub group names, as JupyterHub allows them
GROUP_RE = re.compile(r"[^/\s][^/]{0,254}")


class ProfileError(ValueError):
    """A profile in the hub's configuration is malformed (an admin error)."""


@dataclass(frozen=True)
class Range:
    """An integer field's default and allowed bounds (inclusive)."""

    default: int
    min: int
    max: int


@dataclass(frozen=True)
class WalltimeRange:
    """Walltime default and bounds, in minutes."""

    default: int
    min: int
    max: int


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


def _range(key: str, raw: Any, fallback: Range, least: int = 0) -> Range:
    """An int (a fixed value) or {default, min, max} (missing keys from `fallback`) as a Range."""
    if isinstance(raw, Range):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"default": raw, "min": raw, "max": raw}
    if not isinstance(raw, dict):
        raise TraitError(f"{key}: expected an integer or a dict with default/min/max, got {raw!r}")
    unknown = set(raw) - {"default", "min", "max"}
    if unknown:
        raise TraitError(f"{key}: unknown keys {sorted(unknown)}; known: default, min, max")
    values = {k: raw.get(k, getattr(fallback, k)) for k in ("default", "min", "max")}
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise TraitError(f"{key}.{k}: expected an integer of at least {least}, got {v!r}")
    if not values["min"] <= values["default"] <= values["max"]:
        raise TraitError(f"{key}: need min <= default <= max, got {values}")
    return Range(**values)


def _slurm_name(key: str, value: str) -> str:
    if value and not SLURM_NAME_RE.fullmatch(value):
        raise TraitError(f"{key}: {value!r} is not a valid Slurm name (letters, digits, _ . -)")
    return value


_RANGE_HELP = "An integer (a fixed value) or a dict {default, min, max}; missing keys keep the defaults"


class Profile(HasTraits):
    """One spawn profile. Its keys are the traits below (generated into the `profiles` help)."""

    slug = Unicode(help="Identifier, lowercase letters, digits and '-' (the form's `profile` value). Required.")
    display_name = Unicode(help="The profile's title on the spawn form (default: the slug).")
    description = Unicode(help="One line under the title on the form.")
    partition = Unicode(help="Slurm partition the server's job runs in. Required.")
    gpus = Union([IntTrait(), DictTrait(), Instance(Range)], default_value=Range(0, 0, 0),
                 help=f"GPUs (--gres=gpu:N). {_RANGE_HELP} (0, 0, 0).")
    cpus = Union([IntTrait(), DictTrait(), Instance(Range)], default_value=Range(2, 1, 4),
                 help=f"CPU cores: 1 for the notebook, the rest for ipyparallel engines. {_RANGE_HELP} (2, 1, 4).")
    memory_gb = Union([IntTrait(), DictTrait(), Instance(Range)], default_value=Range(4, 1, 16),
                      help=f"Memory in GiB. {_RANGE_HELP} (4, 1, 16).")
    walltime = Union([DictTrait(), Instance(WalltimeRange)], default_value=WalltimeRange(60, 15, 240),
                     help="A dict {default, min, max} of walltimes as 'H:MM' (1:00, 0:15, 4:00).")
    account = Unicode(help="Slurm account (--account); empty: the student's default.")
    qos = Unicode(help="Slurm QOS (--qos).")
    reservation = Unicode(help="Slurm reservation (--reservation), e.g. a lecture's.")
    constraint = Unicode(help="Slurm node constraint (--constraint).")
    extra_sbatch = List(Unicode(), help="More #SBATCH options, each one '--flag[=value]' without spaces.")
    prestart_desktop = Bool(False, help="Start the Remote Desktop with the server, so the first click is warm.")
    groups = List(Unicode(), help="""JupyterHub groups (a course's) whose members may use this profile; empty:
        everyone. Others do not see it on the form and get a 403 naming the profile if they ask for it.""")
    idle_timeout = Float(30 * 60, help="""Seconds without activity (desktop input, kernels running, page use)
        after which the idle culler stops the server and gives its GPU back (jupyterhub-idle-culler).""")

    @validate("slug")
    def _valid_slug(self, proposal: dict) -> str:
        if not SLUG_RE.fullmatch(proposal["value"]):
            raise TraitError(f"slug {proposal['value']!r}: use lowercase letters, digits and '-'")
        return proposal["value"]

    @validate("partition")
    def _valid_partition(self, proposal: dict) -> str:
        if not proposal["value"]:
            raise TraitError("partition: required")
        return _slurm_name("partition", proposal["value"])

    @validate("account", "qos", "reservation", "constraint")
    def _valid_slurm_name(self, proposal: dict) -> str:
        return _slurm_name(proposal["trait"].name, proposal["value"])

    @validate("gpus", "cpus", "memory_gb")
    def _valid_range(self, proposal: dict) -> Range:
        name = proposal["trait"].name
        least = 0 if name == "gpus" else 1
        return _range(name, proposal["value"], proposal["trait"].default_value, least)

    @validate("walltime")
    def _valid_walltime(self, proposal: dict) -> WalltimeRange:
        raw = proposal["value"]
        if isinstance(raw, WalltimeRange):
            return raw
        unknown = set(raw) - {"default", "min", "max"}
        if unknown:
            raise TraitError(f"walltime: unknown keys {sorted(unknown)}; known: default, min, max")
        fallback = {"default": "1:00", "min": "0:15", "max": "4:00"}
        try:
            wt = WalltimeRange(**{k: parse_walltime_minutes(str(raw.get(k, fallback[k]))) for k in fallback})
        except ValueError as e:
            raise TraitError(f"walltime: {e}") from None
        if not wt.min <= wt.default <= wt.max:
            raise TraitError("walltime: need min <= default <= max")
        return wt

    @validate("extra_sbatch")
    def _valid_extra(self, proposal: dict) -> list[str]:
        for flag in proposal["value"]:
            if not SBATCH_FLAG_RE.fullmatch(flag):
                raise TraitError(f"extra_sbatch: {flag!r} is not a single '--flag[=value]' without spaces")
        return proposal["value"]

    @validate("groups")
    def _valid_groups(self, proposal: dict) -> list[str]:
        for group in proposal["value"]:
            if not GROUP_RE.fullmatch(group):
                raise TraitError(f"groups: {group!r} is not a JupyterHub group name")
        return proposal["value"]

    @validate("idle_timeout")
    def _valid_idle(self, proposal: dict) -> float:
        if proposal["value"] <= 0:
            raise TraitError("idle_timeout: expected a number of seconds above 0")
        return proposal["value"]

    @classmethod
    def keys(cls) -> list[str]:
        return list(KEYS)

    @classmethod
    def from_dict(cls, raw: Any) -> Profile:
        """Validate one admin dict into a Profile; ProfileError names the profile and the key."""
        if isinstance(raw, Profile):
            return raw
        if not isinstance(raw, dict):
            raise ProfileError(f"a profile must be a dict, got {raw!r}")
        where = f"profile {raw.get('slug', '?')!r}"
        unknown = sorted(set(raw) - set(cls.keys()))
        if unknown:
            raise ProfileError(f"{where}: unknown keys {unknown}; known: {sorted(cls.keys())}")
        for required in ("slug", "partition"):
            if not raw.get(required):
                raise ProfileError(f"{where}: {required} is required")
        try:
            profile = cls(**raw)
        except TraitError as e:
            raise ProfileError(f"{where}: {_plain(e)}") from None
        return profile

    @default("display_name")
    def _default_display_name(self) -> str:
        return self.slug


def _plain(error: TraitError) -> str:
    """Our own validators' messages as they are; traitlets' type errors shortened to the point."""
    text = str(error)
    m = re.match(r"The '(\w+)' trait of a \w+ instance expected (.+?), not (.+?)\.?$", text, re.S)
    if not m:
        return text
    expected = re.sub(r" or an? (Range|WalltimeRange)\b", "", m.group(2))
    return f"{m.group(1)}: expected {expected}, got {m.group(3)}"


def parse_profiles(raw_list: list[Any]) -> list[Profile]:
    """Validate the admin's list: at least one profile, unique slugs."""
    if not isinstance(raw_list, (list, tuple)):
        raise ProfileError(f"profiles: expected a list of dicts, got {type(raw_list).__name__}")
    profiles = [Profile.from_dict(p) for p in raw_list]
    if not profiles:
        raise ProfileError("at least one profile is needed")
    slugs = [p.slug for p in profiles]
    if len(set(slugs)) != len(slugs):
        raise ProfileError(f"profile slugs must be unique, got {slugs}")
    return profiles


#: a profile's keys, in the order the help lists them
KEYS = ("slug", "display_name", "description", "partition", "gpus", "cpus", "memory_gb", "walltime", "account",
        "qos", "reservation", "constraint", "extra_sbatch", "prestart_desktop", "groups", "idle_timeout")


def profiles_help() -> str:
    """The keys of a profile dict and what they mean, from Profile's traits (for `profiles`' help)."""
    traits = Profile.class_traits()
    return "\n".join(f"- {name}: {' '.join(dedent(traits[name].help or '').split())}" for name in KEYS)


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
