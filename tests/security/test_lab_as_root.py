"""Issue #15 §4: `rcsc3 lab up` (root) makes the shared X socket directories without being led astray.

The student (student3) owns the directory root is about to fix and keeps swapping it with a
symlink to a directory of root's (renameat2 RENAME_EXCHANGE in a loop) while the lab's real
`ensure_x_socket_dirs` runs, here on a scratch sticky directory standing in for /tmp.

Failed on 92eed46: it checked `is_symlink()`, then chowned and chmodded by path, which followed
the swapped-in symlink: root made its own directory world-writable (1777).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from conftest import as_student

from rcsc3_lab.node import ensure_x_socket_dirs

STUDENT = "student3"
PAIRS = 20
RACER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
pairs = [(a.encode(), b.encode()) for a, b in zip(sys.argv[1::2], sys.argv[2::2])]
print("racing", flush=True)
while True:
    for a, b in pairs:
        libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
"""


@pytest.fixture
def scratch(root):
    base = Path(tempfile.mkdtemp(prefix="rcsc3-sticky-"))
    base.chmod(0o1777)  # as /tmp
    roots = Path(tempfile.mkdtemp(prefix="rcsc3-roots-dirs-"))
    yield base, roots
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(roots, ignore_errors=True)


def test_a_swapping_student_never_gets_a_root_directory_chmodded(scratch):
    """20 directories at once (the first fix of each ends its race: root owns it then)."""
    base, roots = scratch
    tag = secrets.token_hex(3)
    targets = [base / f".X11-unix-{tag}-{n}" for n in range(PAIRS)]
    decoys = [base / f"decoy-{tag}-{n}" for n in range(PAIRS)]
    victims = [roots / f"root-{n}" for n in range(PAIRS)]
    for victim in victims:
        victim.mkdir(mode=0o755)
    roots.chmod(0o755)
    made = "\n".join(f"os.mkdir({str(t)!r}, 0o1777); os.symlink({str(v)!r}, {str(d)!r})"
                      for t, d, v in zip(targets, decoys, victims, strict=True))
    setup = as_student(STUDENT, ["/usr/bin/python3", "-c", "import os\n" + made])
    assert setup.wait(20) == 0, setup.stderr.read()
    racer = as_student(STUDENT, ["/usr/bin/python3", "-c", RACER,
                                 *[str(p) for pair in zip(targets, decoys, strict=True) for p in pair]])
    try:
        assert racer.stdout.readline().strip() == "racing"
        for target in targets:
            for _ in range(50):
                try:
                    ensure_x_socket_dirs((str(target),))
                    break
                except Exception as e:  # noqa: BLE001 - a refusal is fine; touching root's directories is not
                    print("refused:", e)
    finally:
        racer.kill()
        racer.wait(10)
    changed = [str(v) for v in victims if (stat.S_IMODE(os.stat(v).st_mode), os.stat(v).st_uid) != (0o755, 0)]
    assert changed == [], "root's directories were changed"
    # the student has stopped: every directory ends up root's own, 1777, and not a symlink
    for target in targets:
        ensure_x_socket_dirs((str(target),))
        st = os.lstat(target)
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o1777), target
