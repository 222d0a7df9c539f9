"""Read what `srun --label` wrote about an engine step: which tasks died, and why.

srun reports a task's end as soon as it happens ("srun: error: vm: task 1: Killed"),
while the other engines keep running; with ``--label`` every engine line starts
with its task number, so the tail of one engine's output and the engine id it
registered with can be told apart. This module only parses text.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

_TASK_END = re.compile(r"^srun: error: (?P<node>\S+): tasks? (?P<tasks>[\d,\-]+): (?P<reason>.+?)\s*$")
_LABELLED = re.compile(r"^\s*(?P<task>\d+): (?P<text>.*)$")
_REGISTERED = re.compile(r"Completed registration with id (?P<id>\d+)")
_STEP_ID = re.compile(r"\bStepId=(?P<step>\d+\.\d+)|\*\*\* STEP (?P<step2>\d+\.\d+) ")


def expand_tasks(spec: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``."""
    tasks: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        tasks.extend(range(int(first), int(last or first) + 1))
    return tasks


@dataclass(frozen=True)
class TaskEnd:
    """One engine task that ended before its step."""

    task: int
    node: str
    reason: str
    #: the ipyparallel engine id it had registered with, if it got that far
    engine_id: int | None
    #: its last output lines (without the task label)
    tail: tuple[str, ...]

    def describe(self) -> str:
        engine = f"engine {self.engine_id}" if self.engine_id is not None else "unregistered engine"
        return f"{engine} (srun task {self.task} on {self.node}): {self.reason}"


@dataclass
class SrunOutput:
    """Incremental parser of an engine step's output file."""

    tail_lines: int = 20
    ended: dict[int, TaskEnd] = field(default_factory=dict)
    engine_ids: dict[int, int] = field(default_factory=dict)
    step_id: str = ""
    _partial: str = ""
    _tails: dict[int, deque] = field(default_factory=dict)
    _other: deque = field(default_factory=lambda: deque(maxlen=20))

    def feed(self, text: str) -> list[TaskEnd]:
        """Parse more output; returns the task ends first seen in it."""
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()  # an unterminated line waits for its end
        new: list[TaskEnd] = []
        for line in lines:
            new.extend(self._line(line.rstrip("\r")))
        return new

    def _line(self, line: str) -> list[TaskEnd]:
        m = _STEP_ID.search(line)
        if m and not self.step_id:
            self.step_id = m.group("step") or m.group("step2")
        m = _TASK_END.match(line)
        if m:
            new = []
            for task in expand_tasks(m.group("tasks")):
                if task in self.ended:
                    continue
                end = TaskEnd(
                    task=task,
                    node=m.group("node"),
                    reason=m.group("reason"),
                    engine_id=self.engine_ids.get(task),
                    tail=tuple(self._tails.get(task, ())),
                )
                self.ended[task] = end
                new.append(end)
            return new
        m = _LABELLED.match(line)
        if m:
            task, text = int(m.group("task")), m.group("text")
            self._tails.setdefault(task, deque(maxlen=self.tail_lines)).append(text)
            reg = _REGISTERED.search(text)
            if reg:
                self.engine_ids[task] = int(reg.group("id"))
        else:
            self._other.append(line)
        return []

    def srun_messages(self) -> list[str]:
        """srun's own recent lines (errors about the step rather than one task)."""
        return list(self._other)

    def by_reason(self) -> dict[str, list[int]]:
        """Ended tasks grouped by reason, for a one-line summary."""
        groups: dict[str, list[int]] = defaultdict(list)
        for end in self.ended.values():
            groups[end.reason].append(end.task)
        return dict(groups)
