"""The node's Slurm epilog: what a finished job's student left behind goes, and nothing else.

Run as root by slurmd when a job ends, through hub_config/slurm/epilog.sh (which bounds the whole
run with `timeout` and always exits 0: a failing epilog drains the node). Two parts:

* Processes (as root): the desktop's and the engines' daemons that escaped the job's process
  tree. If the student has no other job on this node, every process of theirs here goes; else
  only those whose environment names this job (`SLURM_JOB_ID`). Each is signalled through a pidfd
  opened before its owner and environment are read, so a pid reused meanwhile is never hit; only
  processes in the epilog's own PID namespace count (other "nodes" of a lab share the kernel).
  With `env -i` a process can drop the job id: `ProctrackType=proctrack/cgroup` is what really
  contains a job (docs/deploy.md).
* Files (as the student, in a child process that has dropped root): X locks and sockets,
  session-manager sockets, xfce's ICE-auth scripts, agents' and buses' sockets, rcsc3's runtime
  directories. Every one of them is in a directory the student can write, so they may be swapped
  for symlinks, FIFOs or sparse files at any moment: the clean-up opens nothing without
  O_NOFOLLOW, reads at most a few KiB, and, having the student's rights only, can remove nothing
  the student could not remove themselves.

    python -I -m rcsc3_proxy.epilog    (SLURM_JOB_ID and SLURM_JOB_USER in the environment)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import syslog
import time
from collections.abc import Iterator

#: users below this uid (root, system accounts) are never touched
FIRST_STUDENT_UID = 1000
#: the most bytes read of any file a student controls
READ_LIMIT = 64 * 1024
#: seconds the processes get after SIGTERM, and after SIGKILL
TERM_GRACE, KILL_GRACE = 2.0, 3.0
#: seconds the file clean-up (as the student) may take before it is killed
FILES_DEADLINE = 20.0
TMP = "/tmp"
X_SOCKETS = "/tmp/.X11-unix"
ICE_SOCKETS = "/tmp/.ICE-unix"
RUNTIME_PREFIX = "rcsc3-desktop-"
_LOCK = re.compile(r"\.X(\d+)-lock")
_ICE_PID = re.compile(rb"/\.ICE-unix/(\d+)\b")
#: /proc/net/unix's flag for a listening socket (__SO_ACCEPTCON)
_ACCEPTING = 0x00010000


class Epilog:
    def __init__(self, job: str, user: str, uid: int, gid: int, verbose: bool = False):
        self.job, self.user, self.uid, self.gid, self.verbose = job, user, uid, gid, verbose

    def log(self, message: str) -> None:
        syslog.syslog(syslog.LOG_INFO, f"job {self.job} user {self.user}: {message}")
        if self.verbose:
            print(f"rcsc3-epilog: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ processes
    def other_jobs_here(self) -> bool:
        """Whether the student has another job on this node (unknown counts as yes: kill less)."""
        pinned = os.environ.get("RCSC3_EPILOG_OTHER_JOBS")  # tests pin the answer
        if pinned in ("0", "1"):
            return pinned == "1"
        node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename.split(".")[0]
        try:
            res = subprocess.run(["squeue", "-h", "-u", self.user, "-w", node, "-t", "RUNNING,COMPLETING,SUSPENDED",
                                  "-o", "%A"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return True
        if res.returncode != 0:
            return True
        return any(line.strip() and line.strip() != self.job for line in res.stdout.splitlines())

    def kill_processes(self, only_this_job: bool) -> None:
        own_ns = _pid_namespace("self")
        targets = {}
        for pid in _pids():
            fd = _pidfd(pid)
            if fd is None:
                continue
            # read after the pidfd is open: if the pid was reused, these describe the process the
            # pidfd holds, or it is already gone and signals through the pidfd reach nobody
            if (_uid_of(pid) != self.uid or _is_zombie(pid) or _pid_namespace(pid) != own_ns
                    or (only_this_job and not _has_job(pid, self.job))):
                os.close(fd)
                continue
            targets[pid] = fd
        if not targets:
            return
        scope = "this job's processes" if only_this_job else "all of the user's processes"
        self.log(f"killing {scope}: {' '.join(map(str, sorted(targets)))}")
        try:
            for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, KILL_GRACE)):
                for fd in targets.values():
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(fd, sig)
                        signal.pidfd_send_signal(fd, signal.SIGCONT)  # stopped processes act on SIGTERM too
                _wait_exited(targets, grace)
                if not targets:
                    return
            self.log(f"still alive after SIGKILL: {' '.join(map(str, sorted(targets)))}")
        finally:
            for fd in targets.values():
                os.close(fd)

    # ------------------------------------------------------------------ files
    def clean_files_as_student(self) -> None:
        """Run `clean_files` in a child that has the student's rights only, bounded in time."""
        pid = os.fork()
        if pid == 0:  # the child: drop root for good, then clean
            code = 1
            try:
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)
                self.clean_files()
                code = 0
            except BaseException as e:  # noqa: BLE001 - the child must exit, whatever happened
                self.log(f"file clean-up failed: {type(e).__name__}: {e}")
            finally:
                os._exit(code)
        deadline = time.monotonic() + FILES_DEADLINE
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.02)  # bounded poll of our own child
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.log(f"file clean-up still running after {FILES_DEADLINE:.0f} s: stopped")

    def clean_files(self) -> None:
        listening = _listening_sockets()
        alive = self._alive
        for name in _names(TMP):
            m = _LOCK.fullmatch(name)
            if not m:
                continue
            path = f"{TMP}/{name}"
            text = _read_own_file(path, self.uid, 32)
            if text is None or alive(_int(text)):
                continue
            self._remove(path)
            self._remove_own(f"{X_SOCKETS}/X{m.group(1)}", stat.S_ISSOCK)
        # X servers started with -displayfd (rcsc3's) write no lock: sockets nothing listens on
        for name in _names(X_SOCKETS):
            n = name[1:]
            if name.startswith("X") and n.isdigit() and not os.path.lexists(f"{TMP}/.X{n}-lock"):
                self._remove_stale_socket(f"{X_SOCKETS}/{name}", listening)
        # a killed xfce4-session's /tmp/.ICE-unix/<pid>: another student's session given that pid
        # could not listen there (sticky directory) and would exit at once
        for name in _names(ICE_SOCKETS):
            if name.isdigit():
                self._remove_stale_socket(f"{ICE_SOCKETS}/{name}", listening)
        # xfce4-session's ICE-auth clean-up scripts, which a killed session never runs
        for name in _names(TMP):
            if name.startswith(".xfsm-ICE-"):
                path = f"{TMP}/{name}"
                text = _read_own_file(path, self.uid, READ_LIMIT)
                pids = [int(p) for p in _ICE_PID.findall(text or b"")]
                if pids and not any(alive(p) for p in pids):
                    self._remove(path)
        # ssh-agent's /tmp/ssh-XXXX/agent.<pid> and dbus-daemon's /tmp/dbus-XXXX
        for name in _names(TMP):
            if name.startswith("dbus-"):
                self._remove_stale_socket(f"{TMP}/{name}", listening)
            elif name.startswith("ssh-"):
                self._clean_agent_dir(f"{TMP}/{name}", listening)
        # rcsc3's private runtime directories: in use while something listens on their web.sock
        for base in (TMP, f"/run/user/{self.uid}"):
            for name in _names(base):
                if name.startswith(f"{RUNTIME_PREFIX}{self.user}-"):
                    path = f"{base}/{name}"
                    if _owned_dir(path, self.uid) and f"{path}/web.sock" not in listening:
                        self.log(f"removing {path}")
                        shutil.rmtree(path, ignore_errors=True)  # fd-based: follows no symlink inside

    def _alive(self, pid: int | None) -> bool:
        return bool(pid) and not _is_zombie(pid)

    def _remove(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
            self.log(f"removing {path}")

    def _remove_own(self, path: str, kind) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if st.st_uid == self.uid and kind(st.st_mode):
                self._remove(path)

    def _remove_stale_socket(self, path: str, listening: set[str]) -> None:
        if path not in listening:
            self._remove_own(path, stat.S_ISSOCK)

    def _clean_agent_dir(self, path: str, listening: set[str]) -> None:
        """An ssh-agent directory: opened without following a symlink, cleaned through its fd."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            if os.fstat(fd).st_uid != self.uid:
                return
            entries = [e for e in os.scandir(fd) if e.name.startswith("agent.")]
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid == self.uid and stat.S_ISSOCK(st.st_mode) and f"{path}/{entry.name}" not in listening:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=fd)
                        self.log(f"removing {path}/{entry.name}")
            if entries and not os.listdir(fd):
                with contextlib.suppress(OSError):
                    os.rmdir(path)  # a swapped-in symlink or another directory: rmdir refuses both
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ all
    def run(self) -> None:
        self.kill_processes(only_this_job=self.other_jobs_here())
        self.clean_files_as_student()


# ---------------------------------------------------------------------- /proc and files
def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _uid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f.read(READ_LIMIT).splitlines():
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read(4096)
    except OSError:
        return True
    return text[text.rfind(b")") + 2:][:1] in (b"Z", b"X")


def _pid_namespace(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _has_job(pid: int, job: str) -> bool:
    """Whether the process's environment names this job (the first MiB of it is read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read(1 << 20)
    except OSError:
        return False
    return f"SLURM_JOB_ID={job}".encode() in env.split(b"\0")


def _wait_exited(targets: dict[int, int], grace: float) -> None:
    """Wait (bounded) for the processes behind the pidfds to exit; drop those that did."""
    deadline = time.monotonic() + grace
    while targets and time.monotonic() < deadline:
        ready, _, _ = select.select(list(targets.values()), [], [], max(0.0, deadline - time.monotonic()))
        for pid, fd in list(targets.items()):
            if fd in ready or _is_zombie(pid):
                os.close(targets.pop(pid))


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _int(text: bytes) -> int | None:
    digits = re.search(rb"\d+", text)
    return int(digits.group()) if digits else None


def _read_own_file(path: str, uid: int, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file of `uid`, never through a symlink and never blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != uid or not stat.S_ISREG(st.st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _owned_dir(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid


def _listening_sockets(limit: int = 64 << 20) -> set[str]:
    """Paths of the unix sockets something listens on (this network namespace's /proc/net/unix)."""
    try:
        with open("/proc/net/unix", "rb") as f:
            text = f.read(limit)
    except OSError:
        return set()
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and int(fields[3], 16) & _ACCEPTING:
            found.add(fields[7].decode(errors="replace"))
    return found


def main() -> int:
    job, user = os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_JOB_USER", "")
    if not job.isdigit() or not user:
        return 0
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return 0
    if pw.pw_uid < FIRST_STUDENT_UID:
        return 0  # never root or a system account
    syslog.openlog("rcsc3-epilog")
    epilog = Epilog(job, user, pw.pw_uid, pw.pw_gid, verbose=bool(os.environ.get("RCSC3_EPILOG_VERBOSE")))
    try:
        epilog.run()
    except Exception as e:  # an epilog that fails drains the node: log and go on
        epilog.log(f"failed: {type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
