"""Run Slurm and sudo commands asynchronously, without a shell.

Every command is an argv list passed to `create_subprocess_exec`: nothing a
student types is ever parsed by a shell on the hub.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """A one-line summary for errors: the program, its exit code and its stderr."""
        err = self.stderr.strip() or self.stdout.strip()
        return f"{self.argv[0]} exited {self.returncode}: {err[-500:]}" if err else f"{self.argv[0]} exited {self.returncode}"


async def run_command(
    argv: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> CommandResult:
    """Run argv and return its result; a timeout or a missing program is a result, not an exception.

    returncode is -1 on timeout (the process is killed) and 127 when the program is missing.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError:
        return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
    except PermissionError as e:
        return CommandResult(tuple(argv), 126, "", str(e))
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout=timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CommandResult(tuple(argv), -1, "", f"{argv[0]} timed out after {timeout:.0f}s")
    return CommandResult(tuple(argv), proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def hub_environment() -> dict[str, str]:
    """The environment for Slurm commands the hub runs as itself (squeue, scontrol).

    Only what Slurm clients need: no hub secrets leak into child processes.
    """
    keep = ("PATH", "SLURM_CONF", "LANG", "LC_ALL", "HOME", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}
