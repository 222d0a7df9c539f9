"""Typed parsing and validation of a student's spawn options.

The same function checks the HTML form and `user_options` POSTed to the REST
API, so both paths accept exactly the same values. Every field is parsed into a
Python int from a whitelisted shape, checked against a range, and the result is
a frozen `SpawnRequest`: nothing but validated integers and a known profile
reaches the batch script. Unknown keys are refused, so admin settings (partition,
account, prologue, extra #SBATCH lines, ...) can never be overridden by a student.
Values are rejected, never clamped; a rejection names the field and the allowed values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .profiles import Profile, Range, WalltimeRange, human_walltime, parse_walltime_minutes
from .slurm.cluster_info import ClusterInfo

#: The form's field names; the REST API's `user_options` use the same names.
FIELDS = ("profile", "gpus", "cpus", "memory", "walltime")

INT_RE = re.compile(r"\s*(\d{1,6})\s*")
MEMORY_RE = re.compile(r"\s*(\d{1,6})\s*(?:(g|gb|gib)\s*)?", re.IGNORECASE)
_MAX_TEXT = 64


class OptionError(ValueError):
    """A student's option is invalid; str(e) names the field and what is allowed. `status` is the
    HTTP answer: 400 for a bad value, 403 for a value that exists but is not this student's to use."""

    def __init__(self, field: str, message: str, status: int = 400):
        self.field = field
        self.status = status
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Bounds:
    """What one profile allows right now: the admin's bounds clipped to Slurm's live limits."""

    gpus: Range
    cpus: Range
    memory_gb: Range
    walltime: WalltimeRange
    clipped_by_slurm: bool


@dataclass(frozen=True)
class SpawnRequest:
    """A validated spawn request: only known values, ready for the batch script."""

    profile: Profile
    gpus: int
    cpus: int
    memory_gb: int
    walltime_minutes: int

    def as_user_options(self) -> dict[str, Any]:
        """The canonical user_options (form field names), stored in the hub's database."""
        return {
            "profile": self.profile.slug,
            "gpus": self.gpus,
            "cpus": self.cpus,
            "memory": self.memory_gb,
            "walltime": human_walltime(self.walltime_minutes),
        }


def _clip(rng: Range, upper: int | None) -> Range:
    if upper is None or upper >= rng.max:
        return rng
    new_max = max(upper, rng.min) if upper >= rng.min else upper
    return Range(default=min(rng.default, new_max), min=min(rng.min, new_max), max=new_max)


def bounds_for(profile: Profile, cluster: ClusterInfo | None) -> Bounds:
    """Clip a profile's bounds to the partition's real nodes and MaxTime."""
    part = cluster.partitions.get(profile.partition) if cluster else None
    if part is None:
        return Bounds(profile.gpus, profile.cpus, profile.memory_gb, profile.walltime, clipped_by_slurm=False)
    gpus = _clip(profile.gpus, part.max_gpus_per_node)
    cpus = _clip(profile.cpus, part.max_cpus_per_node or None)
    memory = _clip(profile.memory_gb, part.max_memory_gb or None)
    wt = profile.walltime
    if part.max_time_minutes is not None and part.max_time_minutes < wt.max:
        top = part.max_time_minutes
        wt = WalltimeRange(default=min(wt.default, top), min=min(wt.min, top), max=top)
    clipped = (gpus, cpus, memory, wt) != (profile.gpus, profile.cpus, profile.memory_gb, profile.walltime)
    return Bounds(gpus, cpus, memory, wt, clipped_by_slurm=clipped)


def _single(field: str, value: Any) -> Any:
    """Form data arrives as lists of strings; the API may send scalars. One value per field."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise OptionError(field, f"expected one value, got {len(value)}")
        value = value[0]
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _text(field: str, value: Any, allowed: str) -> str:
    if not isinstance(value, str):
        raise OptionError(field, f"expected {allowed}, got {type(value).__name__}")
    if len(value) > _MAX_TEXT or _CONTROL.search(value):
        raise OptionError(field, f"expected {allowed}; the value has control characters or is too long")
    return value


def _int(field: str, value: Any, rng: Range, unit: str = "") -> int:
    value = _single(field, value)
    allowed = f"a whole number from {rng.min} to {rng.max}{unit}"
    if isinstance(value, bool):
        raise OptionError(field, f"expected {allowed}, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = _text(field, value, allowed)
        pattern = MEMORY_RE if field == "memory" else INT_RE
        m = pattern.fullmatch(text)
        if not text.strip():
            raise OptionError(field, f"is required: {allowed}")
        if not m:
            raise OptionError(field, f"expected {allowed}, got {text!r}")
        number = int(m.group(1))
    else:
        raise OptionError(field, f"expected {allowed}, got {type(value).__name__}")
    if not rng.min <= number <= rng.max:
        raise OptionError(field, f"{number} is out of range; allowed: {rng.min} to {rng.max}{unit}")
    return number


def _walltime(value: Any, rng: WalltimeRange) -> int:
    value = _single("walltime", value)
    allowed = f"a time from {human_walltime(rng.min)} to {human_walltime(rng.max)} (H:MM)"
    if isinstance(value, bool):
        raise OptionError("walltime", f"expected {allowed}, got {value!r}")
    if isinstance(value, int):
        minutes = value  # the API may send minutes, like Slurm's --time
    elif isinstance(value, str):
        text = _text("walltime", value, allowed)
        if not text.strip():
            # An empty walltime must never mean "no limit".
            raise OptionError("walltime", f"is required: {allowed}")
        try:
            minutes = parse_walltime_minutes(text)
        except ValueError:
            raise OptionError("walltime", f"expected {allowed}, got {text!r}") from None
    else:
        raise OptionError("walltime", f"expected {allowed}, got {type(value).__name__}")
    if not rng.min <= minutes <= rng.max:
        raise OptionError("walltime", f"{human_walltime(minutes)} is out of range; allowed: {allowed}")
    return minutes


def parse_spawn_options(
    raw: Any,
    profiles: list[Profile],
    cluster: ClusterInfo | None,
    all_profiles: list[Profile] | None = None,
) -> SpawnRequest:
    """Validate raw user_options (from the form or the API) into a SpawnRequest.

    `profiles` are the ones this student may use; `all_profiles` (default: the same) the hub's, so
    that asking for another course's profile is a 403 that says whose it is. Missing fields take
    the chosen profile's defaults; present fields must be valid.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OptionError("user_options", "expected an object with the fields " + ", ".join(FIELDS))
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:_MAX_TEXT]) for k in unknown)
        raise OptionError(unknown[0][:_MAX_TEXT], f"unknown option {shown}; allowed options: {', '.join(FIELDS)}")
    by_slug = {p.slug: p for p in profiles}
    if not by_slug:
        raise OptionError("profile", "no profile of this hub is open to your courses", status=403)
    if "profile" in raw:
        allowed = "one of: " + ", ".join(by_slug)
        slug = _text("profile", _single("profile", raw["profile"]), allowed)
        others = {p.slug: p for p in all_profiles or ()}
        if slug not in by_slug and slug in others:
            raise OptionError("profile", f"{slug!r} is for the course(s) {', '.join(others[slug].groups)}, which you are "
                              f"not in; allowed: {', '.join(by_slug)}", status=403)
        if slug not in by_slug:
            raise OptionError("profile", f"{slug!r} is not a profile here; allowed: {', '.join(by_slug)}")
        profile = by_slug[slug]
    else:
        profile = profiles[0]
    b = bounds_for(profile, cluster)
    if b.cpus.max < b.cpus.min or b.memory_gb.max < b.memory_gb.min or b.gpus.max < b.gpus.min:
        raise OptionError(
            "profile", f"{profile.slug!r} cannot be served now: its partition {profile.partition!r} lacks the resources"
        )
    return SpawnRequest(
        profile=profile,
        gpus=_int("gpus", raw["gpus"], b.gpus) if "gpus" in raw else b.gpus.default,
        cpus=_int("cpus", raw["cpus"], b.cpus) if "cpus" in raw else b.cpus.default,
        memory_gb=_int("memory", raw["memory"], b.memory_gb, " GiB") if "memory" in raw else b.memory_gb.default,
        walltime_minutes=_walltime(raw["walltime"], b.walltime) if "walltime" in raw else b.walltime.default,
    )


def form_to_options(form: dict[str, list[str]]) -> dict[str, Any]:
    """Form data (lists of strings) to user_options with the same field names.

    Only the form's own fields are kept as they are; anything else is kept too,
    so that validation can reject it by name rather than silently drop it.
    """
    return {key: values for key, values in form.items() if not key.startswith("_")}
