"""What the end of an engine step says to the student.

ipyparallel's Cluster logs every engine set's end in the notebook, as
``f"engine set stopped {id}: {stop_data}"`` (at INFO, or WARNING when
``stop_data["exit_code"]`` is set). When the student stops the cluster, `scancel`
ends every engine, and srun reports each of them as ``Killed`` with exit code 137:
correct, but it reads like an error. So the step's stop data is a dict (what
ipyparallel and callers read) that *prints* as one sentence: a calm one for a
normal stop, and the exit code and the engines that died for a real failure.
"""

from __future__ import annotations

from collections.abc import Mapping

from .step_output import TaskEnd


class StepStopData(dict):
    """An engine step's stop data: a plain dict whose str()/repr() is its ``summary``."""

    def __repr__(self) -> str:
        return str(self.get("summary") or dict.__repr__(self))

    __str__ = __repr__


def _step(step_id: str, step_name: str) -> str:
    return f"Slurm step {step_id}" if step_id else f"srun step {step_name!r} (not started by Slurm yet)"


def _engines(n: int) -> str:
    return f"{n} engine" + ("s" if n != 1 else "")


def stop_summary(
    *,
    step_id: str,
    step_name: str,
    n: int,
    stop_requested: bool,
    srun_exit_code: int | None,
    died: Mapping[int, TaskEnd],
) -> tuple[bool, str]:
    """(failed, one line) for a step that ended.

    `died`: the engines that ended on their own -- before the stop was asked for, or
    at any time when nobody asked. Engines ended by the stop itself are not listed.
    """
    where = _step(step_id, step_name)
    dead = "; ".join(end.describe() for end in died.values())
    if stop_requested:
        line = f"Engines stopped ({where}, {_engines(n)})"
        if died:
            line += f"; {len(died)} had ended before: {dead}"
        return False, line
    if not srun_exit_code and not died:
        # e.g. rc.shutdown(): every engine exited by itself, cleanly
        return False, f"Engines exited ({where}, {_engines(n)})"
    code = "unknown" if srun_exit_code is None else srun_exit_code
    line = f"Engine step ended unexpectedly ({where}, {_engines(n)}, srun exit code {code})"
    if died:
        line += f": {dead}"
    return True, line
