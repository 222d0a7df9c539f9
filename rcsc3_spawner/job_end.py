"""How a student's job ended, and how long the running one has left, in words for the hub's pages.

Slurm's times (squeue's %e, EndTime) are the cluster's local time without a zone; the hub host
shares the cluster's clock and zone, so they are read as this host's local time.
"""

from __future__ import annotations

import time
from datetime import datetime

#: Slurm's final job states (and rcsc3's own IDLE, CANCELLED by the student) -> what happened
ENDS = {
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "ended because its node failed",
    "BOOT_FAIL": "ended because its node failed to start",
    "OUT_OF_MEMORY": "ran out of memory",
    "PREEMPTED": "was preempted by higher-priority work",
    "DEADLINE": "reached its deadline",
    "FAILED": "ended with an error",
    "IDLE": "was stopped to give its resources back",
    "CANCELLED": "was cancelled",
}


def _local(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError):
        return None


def describe_end(end: dict[str, str]) -> str:
    """One sentence for the student's next visit, e.g. "Your last session reached its time limit at 12:00."."""
    state = (end or {}).get("state", "")
    what = ENDS.get(state)
    if not what:
        return ""  # COMPLETED (a stop through the hub) or nothing known: nothing to say
    when = _local(end.get("at", ""))
    at = f" at {when:%H:%M}" if when else ""
    reason = end.get("reason", "")
    why = f" ({reason})" if reason and state in ("IDLE", "CANCELLED", "FAILED", "NODE_FAIL") else ""
    return f"Your last session {what}{at}{why}."


def describe_time_left(end_time: str, now: float | None = None) -> str:
    """"1 h 12 min left" until Slurm's EndTime ("" when unknown)."""
    end = _local(end_time)
    if end is None:
        return ""
    seconds = end.timestamp() - (time.time() if now is None else now)
    if seconds <= 0:
        return "ending now"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes} min left" if hours else f"{minutes} min left") + f" (until {end:%H:%M})"
