"""Shared fixtures: the one-host Slurm lab must be up; in CI its absence fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = bool(os.environ.get("CI") or os.environ.get("RCSC3_REQUIRE_LAB"))


def _lab_problem() -> str:
    if not shutil.which("scontrol"):
        return "Slurm is not installed (run `make test` or `rcsc3 lab up`)"
    res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    if "is UP" not in res.stdout:
        return f"slurmctld does not answer: {res.stdout.strip()} {res.stderr.strip()}"
    return ""


@pytest.fixture(scope="session")
def slurm_lab() -> None:
    """Skip locally, fail in CI, when the Slurm lab is not running."""
    problem = _lab_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"the Slurm lab is required in CI: {problem}")
        pytest.skip(problem)


def require_tool(name: str) -> str:
    """Path of a tool a test needs: skip locally, fail in CI, if it is missing."""
    path = shutil.which(name)
    if not path:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} not installed")
    return path
