"""What a test needs from the machine: skipped on a developer's machine without it, a failure in CI.

A plain module (not a conftest.py): test folders each have a conftest, so `from conftest import`
depends on which one was imported last.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = bool(os.environ.get("CI") or os.environ.get("RCSC3_REQUIRE_LAB"))


def require_tool(name: str) -> str:
    """Path of a tool a test needs: skip locally, fail in CI, if it is missing."""
    path = shutil.which(name)
    if not path:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} not installed")
    return path
