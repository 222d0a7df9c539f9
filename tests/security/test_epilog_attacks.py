"""Issue #15 §3: a student cannot hang the root-run epilog or turn it against root's files.

The real epilog (hub_config/slurm/epilog.sh, as the lab installs it) runs as root the way slurmd
runs it, for the student's job; the student (student3, a real unix user) prepares the trap, and
in the race test keeps springing it from a process of "another job" of theirs (the epilog then
kills only this job's processes, so the attacker lives on).

Failed on 92eed46, each as its test's docstring says.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import as_student

EPILOG = Path(__file__).resolve().parents[2] / "hub_config" / "slurm" / "epilog.sh"
STUDENT = "student3"
JOB = "424242"
#: the epilog's own bound is 60 s; each of these finishes in a few seconds or has failed
BOUND = 30


def run_epilog(timeout: float = BOUND) -> float:
    env = {"SLURM_JOB_ID": JOB, "SLURM_JOB_USER": STUDENT, "RCSC3_EPILOG_OTHER_JOBS": "1",
           "PATH": "/usr/bin:/bin", "RCSC3_EPILOG_VERBOSE": "1"}
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(EPILOG)], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, res.stderr  # a failing epilog drains the node
    return time.monotonic() - t0


def student_does(code: str) -> None:
    pw = pwd.getpwnam(STUDENT)
    subprocess.run(["/usr/bin/python3", "-c", code], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], check=True,
                   env={"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"}, timeout=30, cwd="/tmp")


class Inotify:
    """Watches one file for being opened (IN_OPEN), through libc's inotify."""

    IN_OPEN, IN_NONBLOCK = 0x20, 0o4000

    def __init__(self, path: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK)
        assert self.fd >= 0
        assert self.libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_OPEN) >= 0

    def opened(self) -> bool:
        try:
            return bool(os.read(self.fd, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def clean_tmp(root):
    made: list[Path] = []
    yield made
    for path in made:
        if path.is_symlink() or path.is_file() or path.is_socket():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def test_a_sparse_lock_of_16_tib_does_not_hold_the_epilog(clean_tmp):
    """On 92eed46 the epilog read the whole lock (`tr -dc 0-9 < lock`): hours for 16 TiB of holes,
    the job stuck COMPLETING and its GPU held."""
    lock = Path("/tmp/.X4242-lock")
    clean_tmp.append(lock)
    lock.unlink(missing_ok=True)
    size = (16 << 40) - (1 << 20)  # ext4's largest file is just under 16 TiB
    student_does(f"import os\nf = open({str(lock)!r}, 'wb'); f.truncate({size}); f.close()")
    assert lock.stat().st_size == size
    seconds = run_epilog()
    assert seconds < 10, seconds
    assert not lock.exists()  # a lock whose "pid" is no process: stale, removed


def test_a_lock_that_is_a_symlink_is_not_followed(clean_tmp):
    """With fs.protected_symlinks=0 the epilog on 92eed46 read through a student's symlinked lock
    (as root: any file, and /proc/kmsg or a FIFO would have hung it)."""
    sysctl = Path("/proc/sys/fs/protected_symlinks")
    saved = sysctl.read_text().strip()
    secret = Path(tempfile.mkdtemp(prefix="rcsc3-root-only-")) / "secret"
    secret.write_text("12345\n")
    secret.chmod(0o600)
    secret.parent.chmod(0o755)  # traversable, but the file is root's alone
    lock = Path("/tmp/.X4243-lock")
    clean_tmp += [lock, secret.parent]
    lock.unlink(missing_ok=True)
    student_does(f"import os\nos.symlink({str(secret)!r}, {str(lock)!r})")
    watch = Inotify(secret)
    try:
        sysctl.write_text("0\n")
        seconds = run_epilog()
    finally:
        sysctl.write_text(saved + "\n")
        opened = watch.opened()
        watch.close()
    assert seconds < 10
    assert not opened, "the epilog opened a root-only file through the student's symlink"
    assert secret.read_text() == "12345\n"


RACER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b = sys.argv[1].encode(), sys.argv[2].encode()
print("racing", flush=True)
while True:
    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
"""


def test_swapping_an_agent_directory_for_a_symlink_never_deletes_roots_files(clean_tmp):
    """On 92eed46 the epilog checked /tmp/ssh-X/agent.N, then `rm -f`d it: a student who swaps
    /tmp/ssh-X for a symlink in between (renameat2 RENAME_EXCHANGE in a loop, from another job's
    process) has root delete a file named agent.N anywhere."""
    tag = secrets.token_hex(4)
    victim_dir = Path(tempfile.mkdtemp(prefix="rcsc3-root-dir-"))
    victim_dir.chmod(0o755)
    agent_dir, decoy = Path(f"/tmp/ssh-rcsc3race{tag}"), Path(f"/tmp/rcsc3race{tag}-link")
    clean_tmp += [agent_dir, decoy, victim_dir]
    # root's own file of the same name, a socket as the student's is (so the old type check passed)
    victims = []
    for n in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(victim_dir / f"agent.{n}"))
        s.close()
        victims.append(victim_dir / f"agent.{n}")
    student_does(
        "import os, socket\n"
        f"os.mkdir({str(agent_dir)!r}, 0o700)\n"
        f"for n in range(20):\n"
        f"    s = socket.socket(socket.AF_UNIX); s.bind({str(agent_dir)!r} + f'/agent.{{n}}'); s.close()\n"
        f"os.symlink({str(victim_dir)!r}, {str(decoy)!r})\n")
    racer = as_student(STUDENT, ["/usr/bin/python3", "-c", RACER, str(agent_dir), str(decoy)])
    try:
        assert racer.stdout.readline().strip() == "racing"
        for _ in range(30):
            run_epilog()
    finally:
        racer.kill()
        racer.wait(10)
    assert all(path.exists() for path in victims), [str(p) for p in victims if not p.exists()]
    assert all(os.lstat(p).st_uid == 0 for p in victims)
