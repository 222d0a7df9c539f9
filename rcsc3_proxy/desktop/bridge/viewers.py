"""Who is watching the desktop: the viewers of this Jupyter server's desktop, and their control.

Anyone the hub lets open the student's server (the course's teacher through their role, a
classmate the student shared the server with) may open the desktop page, but only the owner
(the server's user) drives it: everyone else's stream is view-only, enforced in the bridge
(`rfb_client.ClientFilter`). The owner's page shows who watches (`viewers_api.py`: a long poll
that answers within milliseconds of a change) and can give a viewer control, take it back, or
end their view; an ended viewer's streams close at once and stay refused until the owner lets
them back in (or the Jupyter server restarts).

The registry lives in the Jupyter server process, next to the streams it closes and the filters
it switches: the page's own API (the supervisor process) has no part in it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from .. import request_guard

#: more streams than this per viewer (tabs) are refused: a viewer cannot make the owner's bridge carry hundreds
MAX_STREAMS_PER_VIEWER = 8


class Stream(Protocol):
    """A viewer's open stream, as the registry drives it."""

    held_back: int  # input messages of this stream that were not passed on

    def set_control(self, control: bool) -> None: ...

    def end(self, reason: str) -> None: ...


@dataclass
class _Viewer:
    name: str
    since: float
    control: bool = False
    streams: set = field(default_factory=set)


class Viewers:
    """The viewers of one desktop (one per Jupyter server process: `registry()`)."""

    def __init__(self, owner: str):
        self.owner = owner
        #: goes up at every change; the owner's page asks "what changed since N"
        self.version = 0
        self._viewers: dict[str, _Viewer] = {}
        self._control: set[str] = set()  # given control (kept while their tab reloads)
        self._ended: set[str] = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ streams

    def refuse(self, name: str) -> str:
        """Why `name` may not open another stream now ('' if they may)."""
        if name in self._ended:
            return f"{self.owner} ended your view of their desktop"
        viewer = self._viewers.get(name)
        if viewer is not None and len(viewer.streams) >= MAX_STREAMS_PER_VIEWER:
            return f"you already watch this desktop in {MAX_STREAMS_PER_VIEWER} tabs"
        return ""

    def has_control(self, name: str) -> bool:
        return name == self.owner or name in self._control

    def join(self, name: str, stream: Stream) -> None:
        viewer = self._viewers.setdefault(name, _Viewer(name, time.time(), name in self._control))
        viewer.streams.add(stream)
        self._bump()

    def leave(self, name: str, stream: Stream) -> None:
        viewer = self._viewers.get(name)
        if viewer is None or stream not in viewer.streams:
            return
        viewer.streams.discard(stream)
        if not viewer.streams:
            del self._viewers[name]
        self._bump()

    # ------------------------------------------------------------------ the owner's actions

    def set_control(self, name: str, control: bool) -> bool:
        """Give or take back control; False if `name` is not watching (nor was given control)."""
        if name not in self._viewers and name not in self._control:
            return False
        (self._control.add if control else self._control.discard)(name)
        viewer = self._viewers.get(name)
        if viewer is not None:
            viewer.control = control
            for stream in list(viewer.streams):
                stream.set_control(control)
        self._bump()
        return True

    def end(self, name: str) -> bool:
        """End `name`'s view: their streams close now, new ones are refused; False if they do not watch."""
        viewer = self._viewers.get(name)
        if viewer is None:
            return False
        self._ended.add(name)
        self._control.discard(name)
        for stream in list(viewer.streams):
            stream.end(f"{self.owner} ended your view of their desktop")
        self._viewers.pop(name, None)
        self._bump()
        return True

    def allow(self, name: str) -> bool:
        """Let an ended viewer watch again; False if their view was not ended."""
        if name not in self._ended:
            return False
        self._ended.discard(name)
        self._bump()
        return True

    # ------------------------------------------------------------------ what the pages see

    def state(self, name: str) -> dict:
        """What `name`'s page may know: the owner everything, a viewer their own part."""
        you = {"name": name, "role": "owner" if name == self.owner else "viewer",
               "control": self.has_control(name), "ended": name in self._ended}
        out = {"version": self.version, "owner": self.owner, "you": you}
        if name == self.owner:
            out["viewers"] = [{"name": v.name, "streams": len(v.streams), "control": v.control,
                               "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.since)),
                               "held_back": sum(s.held_back for s in v.streams)}
                              for v in sorted(self._viewers.values(), key=lambda v: v.since)]
            out["ended"] = sorted(self._ended)
        return out

    async def wait_change(self, since: int, timeout: float) -> None:
        """Return once the version is past `since`, or after `timeout` seconds."""
        if self.version != since:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


_registry: Viewers | None = None


def registry() -> Viewers:
    """This Jupyter server's registry (its owner: `request_guard.owner()`)."""
    global _registry
    if _registry is None:
        _registry = Viewers(request_guard.owner())
    return _registry
