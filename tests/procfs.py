"""Reading other processes from /proc, as the tests' leftover and isolation checks do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def user_proc_fields(uid: int, name: str) -> Iterator[tuple[int, list[bytes]]]:
    """(pid, /proc/<pid>/<name> split at NULs) for every process of `uid`; ones that vanish meanwhile are skipped."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fields = (entry / name).read_bytes().split(b"\0")
        except OSError:
            continue
        yield int(entry.name), fields
