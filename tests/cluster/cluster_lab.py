"""What the tests on the multi-host lab (`rcsc3 lab up --hosts`) look at and do to it.

The lab's hosts are namespaces of this machine (rcsc3_lab/cluster.py): a process "on gpu1" is one
whose network namespace is gpu1's, and what a job runs there is in gpu1's own PID namespace too.
The tests run in the machine's own namespaces, where every process of every host is visible, so
they read /proc instead of logging in to a host. Faults are made and undone here, each bounded:
a host's link (its port on the lab's switch) and a program hidden in one node's mount namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # needs, polling
from needs import IN_CI, require_tool  # noqa: E402,F401  (require_tool: for the cluster tests)
from polling import wait_until  # noqa: E402

RCSC3 = str(Path(sys.executable).parent / "rcsc3")

NETNS_DIR = Path("/run/netns")
SWITCH_NETNS = "rcsc3-sw"


def rcsc3(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([RCSC3, *args], capture_output=True, text=True, timeout=timeout, **kw)


def status() -> dict:
    return json.loads(rcsc3("lab", "status", "--json", "--hosts", timeout=60).stdout)


def require_cluster() -> dict:
    """The cluster's `status --json`, brought up when it is not (skip locally, fail in CI, if it cannot be)."""
    def missing(problem: str) -> None:
        if IN_CI:
            pytest.fail(f"the multi-host lab is required in CI: {problem}")
        pytest.skip(problem)

    if os.geteuid() != 0:
        missing("the multi-host lab needs root (network namespaces)")
    st = status()
    if not st["up"]:
        res = rcsc3("lab", "up", "--hosts", "--no-install", timeout=180)
        if res.returncode:
            missing(f"`rcsc3 lab up --hosts` failed: {res.stderr.strip()[-1500:]}")
        st = status()
    assert st["up"], st
    return st


def on(host: str, *cmd: str, user: str | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A command on a host of the cluster (`rcsc3 lab on`), as root unless `user` is given."""
    return rcsc3("lab", "on", *(["-u", user] if user else []), host, "--", *cmd, timeout=timeout, **kw)


def slurm_env(conf: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SLURM_CONF": conf, "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Cluster:
    """The running cluster, as `rcsc3 lab status --json` describes it."""

    facts: dict

    @property
    def conf(self) -> str:
        return self.facts["slurm_conf"]

    def address(self, host: str) -> str:
        return self.facts["hosts"][host]

    def slurm(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client in the machine's own namespace, pointed at the cluster."""
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=slurm_env(self.conf),
                              stdin=subprocess.DEVNULL)

    def as_user(self, user: str, *cmd: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """A command as `user` in the machine's namespace with the cluster's SLURM_CONF (a login node)."""
        home = pwd.getpwnam(user).pw_dir
        env = [f"{k}={v}" for k, v in slurm_env(self.conf).items()] + [f"HOME={home}", f"USER={user}", f"LOGNAME={user}"]
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env, *cmd], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def jobs(self, user: str) -> list[str]:
        """The user's jobs Slurm still holds (pending, running, completing)."""
        out = self.slurm("squeue", "-h", "-u", user, "-o", "%i").stdout
        return out.split()

    def job(self, job: str, fmt: str = "%T") -> str:
        """squeue's fields of a job in any state ("" once Slurm has forgotten it: a finished job shows its
        end state, e.g. NODE_FAIL, for MinJobAge)."""
        return self.slurm("squeue", "-h", "--states=all", "-j", job, "-o", fmt).stdout.strip()

    def job_details(self, job: str) -> str:
        return self.slurm("scontrol", "show", "job", job).stdout

    def config_value(self, name: str) -> str:
        """A setting of the running slurmctld (`scontrol show config`), e.g. SlurmdTimeout -> "30 sec"."""
        for line in self.slurm("scontrol", "show", "config").stdout.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == name:
                return value.strip()
        raise AssertionError(f"slurmctld shows no {name}")

    def node_state(self, node: str) -> str:
        """The node's state as sinfo shows it (one line per partition: the first), e.g. "idle", "down*"."""
        lines = self.slurm("sinfo", "-h", "-N", "-n", node, "-o", "%T").stdout.split()
        return lines[0] if lines else ""

    def cancel(self, *jobs: str) -> None:
        if jobs:
            self.slurm("scancel", *jobs)
            active = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "SUSPENDED")
            wait_until(lambda: not any(self.job(j).split(" ")[0] in active for j in jobs), 60, f"jobs {' '.join(jobs)} to end",
                       0.3)

    # ------------------------------------------------------------ namespaces and processes
    def netns(self, host: str) -> str:
        """`net:[inode]` of a host, as /proc/<pid>/ns/net shows it for its processes."""
        return f"net:[{os.stat(NETNS_DIR / self.facts['netns'][host]).st_ino}]"

    def pidns(self, node: str) -> str:
        """`pid:[inode]` of a node's own PID namespace (its init's), where its jobs run."""
        init = status()["daemons"][f"nodeinit-{node}"]
        return os.readlink(f"/proc/{init}/ns/pid")

    def slurmd_pid(self, node: str) -> int:
        pid = status()["daemons"].get(f"slurmd-{node}")
        if not pid:
            raise AssertionError(f"slurmd on {node} is not running (rcsc3 lab up --hosts starts it again)")
        return int(pid)


@dataclass(frozen=True)
class Proc:
    pid: int
    uid: int
    argv: list[str]

    @property
    def cmdline(self) -> str:
        return " ".join(self.argv)


def _ns(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def processes(user: str | None = None, *, netns: str | None = None, pidns: str | None = None) -> list[Proc]:
    """Processes (of `user`) in a host's network namespace and/or a node's PID namespace."""
    uid = pwd.getpwnam(user).pw_uid if user else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if uid is not None and entry.stat().st_uid != uid:
                continue
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            owner = entry.stat().st_uid
        except OSError:
            continue
        if not argv:
            continue  # a kernel thread or a zombie
        if netns and _ns(pid, "net") != netns:
            continue
        if pidns and _ns(pid, "pid") != pidns:
            continue
        found.append(Proc(pid, owner, argv))
    return found


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    uid: int
    inode: int


def _hex_address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        address = ".".join(str(b) for b in raw[::-1])
    else:  # /proc/net/tcp6: four little-endian 32-bit words
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        import ipaddress

        address = str(ipaddress.IPv6Address(b"".join(words)))
    return address, int(port, 16)


def listening_tcp(pid_in_netns: int) -> list[Listener]:
    """Every listening TCP socket of the network namespace `pid_in_netns` is in (its /proc/<pid>/net/tcp{,6})."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid_in_netns}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = _hex_address(fields[1])
            found.append(Listener(address, port, int(fields[7]), int(fields[9])))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The socket inodes a process holds open."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def leftovers(cluster: Cluster, user: str) -> dict:
    """The user's jobs on the cluster and processes on its nodes."""
    procs = [f"{p.pid} {p.cmdline[:120]}" for node in ("gpu1", "cpu1") for p in processes(user, pidns=cluster.pidns(node))]
    return {"jobs": cluster.jobs(user), "processes": procs}


def wait_clean(cluster: Cluster, user: str, timeout: float = 60) -> None:
    """Wait (bounded) until the user has no job on the cluster and no process on its nodes."""
    try:
        wait_until(lambda: not any(leftovers(cluster, user).values()), timeout,
                   f"{user}'s jobs and node processes to be gone", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {leftovers(cluster, user)}") from None


# ---------------------------------------------------------------- faults (each undone, bounded)
def _switch_port(cluster: Cluster, host: str) -> str:
    """The host's port on the lab's switch: its veth's bridge end (rcsc3_lab.cluster.NETWORK)."""
    from rcsc3_lab.cluster import NETWORK

    return NETWORK.host(host).veth


def _link(port: str, state: str) -> None:
    subprocess.run(["ip", "-n", SWITCH_NETNS, "link", "set", port, state], check=True, timeout=10)


@contextlib.contextmanager
def link_down(cluster: Cluster, host: str) -> Iterator[float]:
    """Pull the host's cable at the switch (its bridge port down) and plug it back in at the end.

    Yields the monotonic time the link went down. The host keeps its own address and loopback
    (its local traffic goes on); nothing reaches it from the other hosts or the machine.
    """
    port = _switch_port(cluster, host)
    _link(port, "down")
    try:
        yield time.monotonic()
    finally:
        _link(port, "up")
        from rcsc3_lab.netns import tcp_path_open

        wait_until(lambda: tcp_path_open(cluster.address(host), timeout=1), 30, f"{host}'s link to be back")


IN_SERVICE = ("idle", "mixed", "allocated")


def slurmd_started_again(cluster: Cluster, node: str, timeout: float = 60) -> None:
    """The node's slurmd (dead, or still running) started again, and the node back in service.

    `rcsc3 lab up --hosts` starts a node's dead slurmd again through the node's init (the node and
    its jobs' processes stay up, as after an admin's `systemctl restart slurmd`). The new slurmd
    registers with slurmctld at once, and a node DOWN for not responding takes jobs again
    (ReturnToService=2).
    """
    pid = status()["daemons"].get(f"slurmd-{node}")  # None: it is dead
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, f"slurmd on {node} to stop", 0.2)
    res = rcsc3("lab", "up", "--hosts", "--no-install", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert cluster.slurmd_pid(node) != pid, res.stdout
    wait_until(lambda: cluster.node_state(node) in IN_SERVICE, timeout, f"{node} to be back in service", 0.5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def back_in_service(cluster: Cluster, node: str, timeout: float = 60) -> None:
    """Bring a node Slurm took for DOWN back in service, as one whose network came back.

    slurmctld pings a DOWN node only every few minutes; SIGHUP makes its slurmd register now, and a
    node that registers returns to service by itself (ReturnToService=2).
    """
    if cluster.node_state(node) not in IN_SERVICE:
        os.kill(cluster.slurmd_pid(node), signal.SIGHUP)
    wait_until(lambda: cluster.node_state(node) in IN_SERVICE, timeout, f"{node} to be back in service", 0.5)


def orphans_ended(cluster: Cluster, node: str, job: str, timeout: float = 180) -> float:
    """Have Slurm end what a failed job left on a node that is back; returns the seconds it took.

    slurmctld does not tell a returning node to end the steps of a job it already counts as failed
    (NODE_FAIL). It forgets the job MinJobAge after its end, at its once-a-minute purge; at the
    node's next registration the steps are orphans and slurmd ends them (slurmctld asks the nodes
    to register every few minutes; SIGHUP makes slurmd register now, the lab's shortcut).
    """
    t0 = time.monotonic()
    wait_until(lambda: cluster.job(job) == "", timeout, f"slurmctld to forget job {job}", 1)
    os.kill(cluster.slurmd_pid(node), signal.SIGHUP)
    return time.monotonic() - t0


@contextlib.contextmanager
def slurmd_dead(cluster: Cluster, node: str) -> Iterator[float]:
    """Kill the node's slurmd (SIGKILL, as a crash) and start it again at the end.

    The node itself stays up, as a real one does: its init and the jobs' processes go on without
    slurmd (rcsc3_lab/nodeinit.py). Yields the monotonic time slurmd died.
    """
    os.kill(cluster.slurmd_pid(node), signal.SIGKILL)
    t0 = time.monotonic()
    try:
        yield t0
    finally:
        slurmd_started_again(cluster, node)


@contextlib.contextmanager
def hidden_on_node(cluster: Cluster, node: str, path: str) -> Iterator[None]:
    """Make the program `path` unavailable on one node only, as on a node where it is not installed.

    An empty, non-executable file is bound over it in the node's own mount namespace (slurmd's,
    which its jobs inherit); the machine and the other nodes keep theirs. Unbound at the end.
    """
    slurmd = cluster.slurmd_pid(node)
    if _ns(slurmd, "mnt") == _ns(os.getpid(), "mnt"):
        raise AssertionError(f"slurmd on {node} shares this machine's mount namespace: refusing to hide {path}")
    blank = Path(f"/run/rcsc3-cluster-test-blank-{os.getpid()}")
    blank.write_bytes(b"")
    blank.chmod(0o644)
    # the node's PID namespace too: its /proc is mounted for it, and (u)mount reads /proc/self/mountinfo
    enter = ["nsenter", "-t", str(slurmd), "-m", "-p", "--"]

    def bound() -> bool:
        res = subprocess.run([*enter, "cat", "/proc/self/mountinfo"], capture_output=True, text=True, timeout=10, check=True)
        return any(line.split()[4] == path for line in res.stdout.splitlines())

    try:
        subprocess.run([*enter, "mount", "--bind", str(blank), path], check=True, timeout=10, capture_output=True)
        try:
            assert bound(), f"{path} was not hidden on {node}"
            yield
        finally:
            res = subprocess.run([*enter, "umount", path], timeout=10, capture_output=True, text=True)
            if res.returncode or bound():
                raise AssertionError(f"{path} is still hidden on {node} (umount: {res.stderr.strip()}): "
                                     f"nsenter -t {slurmd} -m -p -- umount {path}")
    finally:
        blank.unlink(missing_ok=True)


@contextlib.contextmanager
def slurmd_timeout(cluster: Cluster, seconds: int) -> Iterator[None]:
    """Run the block with slurmctld's SlurmdTimeout at `seconds`; then the lab's own slurm.conf again.

    The lab's is short (its nodes fail fast, rcsc3_lab/cluster.py); a site's is Slurm's default 300 s
    or so, which is what lets a cluster ride out a network outage of a minute. The lab's file is
    put back as it was and Slurm reconfigured (not `rcsc3 lab up --hosts`: that rebuilds a cluster
    whose nodes are not all up yet).
    """
    conf = Path(cluster.conf)
    text = conf.read_text()
    lines = [line for line in text.splitlines() if line.startswith("SlurmdTimeout=")]
    assert len(lines) == 1, lines
    conf.write_text(text.replace(lines[0] + "\n", f"SlurmdTimeout={seconds}\n"))
    try:
        res = cluster.slurm("scontrol", "reconfigure")
        assert res.returncode == 0, res.stderr
        assert cluster.config_value("SlurmdTimeout") == f"{seconds} sec"
        yield
    finally:
        conf.write_text(text)
        res = cluster.slurm("scontrol", "reconfigure")
        assert res.returncode == 0, res.stderr
        assert cluster.config_value("SlurmdTimeout") == f"{lines[0].split('=')[1]} sec"
