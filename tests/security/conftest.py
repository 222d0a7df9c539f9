"""Attacker tests: each plays a curious student (a second real unix user) against real parts.

Every test here failed on the code before its fix (commit 92eed46, the last one without it) and
names how. They run as root, as CI does, and start their attackers with `as_student`.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # hubproc, hubclient, polling
from polling import wait_until  # noqa: E402,F401  (re-exported for the tests)

CI = bool(os.environ.get("CI"))


def as_student(user: str, argv: list[str], **kw) -> subprocess.Popen:
    """Start `argv` as `user` (no supplementary groups, a minimal environment), pipes on stdin/stdout."""
    pw = pwd.getpwnam(user)
    env = {"HOME": pw.pw_dir, "USER": user, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **kw.pop("env", {})}
    return subprocess.Popen(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd=pw.pw_dir,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


@pytest.fixture(scope="session")
def root():
    if os.geteuid() != 0:
        if CI:
            pytest.fail("the attacker tests run as root in CI")
        pytest.skip("needs root: the attackers are other unix users")
