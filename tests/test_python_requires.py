"""setup.cfg's python_requires agrees with the code and with the interpreter the tests run on.

The node code catches the builtin `TimeoutError` around `asyncio.wait_for`
(rcsc3_proxy/engines/allocation.py's run_command, the desktop manager's wait_settled),
which only works where `asyncio.TimeoutError is TimeoutError`: Python 3.11 and later.
"""

from __future__ import annotations

import asyncio
import configparser
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _python_requires() -> SpecifierSet:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    return SpecifierSet(cfg["options"]["python_requires"])


def test_python_requires_excludes_versions_where_asyncio_timeouts_are_not_builtin():
    spec = _python_requires()
    for too_old in ("3.9", "3.10", "3.10.14"):
        assert too_old not in spec, f"python_requires {spec} admits {too_old}, where asyncio.TimeoutError is not TimeoutError"
    assert "3.11" in spec and "3.12" in spec, spec


def test_the_interpreter_running_the_tests_meets_python_requires_and_the_codes_assumption():
    spec = _python_requires()
    version = ".".join(map(str, sys.version_info[:3]))
    assert version in spec, f"the tests run on Python {version}, outside setup.cfg's python_requires {spec}"
    assert asyncio.TimeoutError is TimeoutError
