"""Shared fixtures: the one-host Slurm lab must be up; in CI its absence fails the run."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from needs import IN_CI  # noqa: E402


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
