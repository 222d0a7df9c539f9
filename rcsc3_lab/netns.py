"""Hosts made of Linux namespaces on one machine, joined by a bridge: the multi-host lab's network.

A "host" is a network namespace (`/run/netns/<netns>`: its own address on the bridge, its own
loopback) plus a persistent UTS namespace (its own hostname, bound on a file), and every command
"on" it also gets a fresh mount namespace in which `/etc/netns/<netns>/hosts` is bound on
/etc/hosts (the names of all hosts). The bridge sits in a "switch" namespace of its own, so bridged
frames never meet the machine's firewall; the machine joins it through one veth.

Commands are entered with nsenter (net, uts) + unshare (mount), not `ip netns exec`: that also
remounts /sys, which hides /sys/fs/cgroup, and slurmd 22.05 then refuses to start.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .system import LabError, log, run

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

# Run "$@" after binding the host's /etc/hosts, never in the machine's own mount namespace.
_ONHOST_SH = (
    '[ "$(readlink /proc/self/ns/mnt)" != "$1" ] || { echo "rcsc3 lab: no private mount namespace" >&2; exit 97; }; '
    'mount --bind "$2" /etc/hosts || exit 97; shift 2; exec "$@"'
)
_UTS_SH = '[ "$(readlink /proc/self/ns/uts)" != "$1" ] || exit 97; hostname "$2"'


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    netns: str
    #: the host's veth end on the bridge (the host's own end is eth0); at most 15 characters
    veth: str

    @property
    def hosts_file(self) -> Path:
        return ETC_NETNS / self.netns / "hosts"


@dataclass(frozen=True)
class Network:
    hosts: tuple[Host, ...]
    switch_netns: str
    bridge: str
    prefix_len: int
    #: the machine's own veth to the bridge and its address there
    machine_veth: str
    machine_address: str
    #: where the hosts' UTS namespaces are bound (<uts_dir>/<host>.uts)
    uts_dir: Path

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no host {name!r}: choose one of {', '.join(h.name for h in self.hosts)}")

    def uts_file(self, host: Host) -> Path:
        return self.uts_dir / f"{host.name}.uts"

    @property
    def all_netns(self) -> list[str]:
        return [h.netns for h in self.hosts] + [self.switch_netns]


def ns_id(kind: str, pid: int | str = "self") -> str:
    """`net:[4026531840]`: a namespace's identity, as /proc shows it."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def ns_file_id(kind: str, path: Path) -> str | None:
    """The identity of the namespace bound on `path` (an nsfs inode), None when nothing is bound there."""
    if not _is_mountpoint(path):
        return None  # a plain file (the namespace is gone), not a bound namespace
    return f"{kind}:[{os.stat(path).st_ino}]"


def _is_mountpoint(path: Path) -> bool:
    target = f" {path} "
    with open("/proc/self/mountinfo") as f:
        return any(target in line for line in f)


def host_argv(net: Network, host: Host) -> list[str]:
    """The argv prefix that runs a command on `host` (as root, in a mount namespace of its own)."""
    return [
        "nsenter", f"--net={NETNS_DIR / host.netns}", f"--uts={net.uts_file(host)}", "--",
        "unshare", "--mount", "--propagation", "slave", "--",
        "/bin/sh", "-c", _ONHOST_SH, "rcsc3-lab-on", ns_id("mnt"), str(host.hosts_file),
    ]


def _ip(*args: str, netns: str | None = None) -> None:
    run(["ip", *(["-n", netns] if netns else []), *args])


def _no_ipv6(netns: str) -> None:
    # No link-local addresses or IPv6 chatter: nothing but the lab's IPv4 /24 in these namespaces.
    if Path("/proc/sys/net/ipv6").exists():
        run(["nsenter", f"--net={NETNS_DIR / netns}", "--", "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])


def _new_netns(name: str) -> None:
    _ip("netns", "add", name)
    _no_ipv6(name)
    _ip("link", "set", "lo", "up", netns=name)


def write_hosts_files(net: Network, header: str) -> bool:
    """Each host's /etc/hosts: localhost and every host's name. True when /etc/netns was made here."""
    made_etc_netns = not ETC_NETNS.exists()
    for host in net.hosts:
        host.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# {header}: hosts as seen from {host.name}", "127.0.0.1 localhost"]
        lines += [f"{h.address} {h.name}" for h in net.hosts]
        lines.append(f"{net.machine_address} machine")
        host.hosts_file.write_text("\n".join(lines) + "\n")
        host.hosts_file.chmod(0o644)
    return made_etc_netns


def make_network(net: Network) -> None:
    """The switch namespace with the bridge, one namespace per host on it, the machine's veth."""
    sw = net.switch_netns
    _new_netns(sw)
    _ip("link", "add", net.bridge, "type", "bridge", netns=sw)
    _ip("link", "set", net.bridge, "up", netns=sw)
    for host in net.hosts:
        _new_netns(host.netns)
        # both ends made where they belong: the bridge side in the switch, eth0 in the host
        _ip("link", "add", host.veth, "netns", sw, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("link", "set", host.veth, "master", net.bridge, "up", netns=sw)
        _ip("addr", "add", f"{host.address}/{net.prefix_len}", "dev", "eth0", netns=host.netns)
        _ip("link", "set", "eth0", "up", netns=host.netns)
    peer = net.machine_veth + "p"
    _ip("link", "add", net.machine_veth, "type", "veth", "peer", "name", peer, "netns", sw)
    ipv6 = Path(f"/proc/sys/net/ipv6/conf/{net.machine_veth}/disable_ipv6")
    if ipv6.exists():
        ipv6.write_text("1\n")
    _ip("link", "set", peer, "master", net.bridge, "up", netns=sw)
    _ip("addr", "add", f"{net.machine_address}/{net.prefix_len}", "dev", net.machine_veth)
    _ip("link", "set", net.machine_veth, "up")
    # Every host answers the machine (a refused connection to port 9 proves the path).
    for host in net.hosts:
        if not tcp_path_open(host.address):
            raise LabError(f"{host.name} ({host.address}) is not reachable from this machine through {net.machine_veth}")


def tcp_path_open(address: str, port: int = 9, timeout: float = 2) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect((address, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return True


def make_uts(net: Network) -> None:
    """A persistent UTS namespace per host, bound on <uts_dir>/<host>.uts, with the host's name."""
    net.uts_dir.mkdir(parents=True, exist_ok=True)
    machine_uts, machine_hostname = ns_id("uts"), socket.gethostname()
    for host in net.hosts:
        f = net.uts_file(host)
        f.touch()
        run(["unshare", f"--uts={f}", "/bin/sh", "-c", _UTS_SH, "sh", machine_uts, host.name])
        got = run(["nsenter", f"--uts={f}", "hostname"]).stdout.strip()
        if got != host.name:
            raise LabError(f"the UTS namespace of {host.name} has hostname {got!r}")
    if socket.gethostname() != machine_hostname:  # never happens: the guard above
        raise LabError(f"this machine's hostname changed to {socket.gethostname()!r}")


def network_leftovers(net: Network) -> list[str]:
    """What of `net` exists on this machine (after a crash, or while it is up)."""
    found = [f"netns {n}" for n in net.all_netns if (NETNS_DIR / n).exists()]
    if Path(f"/sys/class/net/{net.machine_veth}").exists():
        found.append(f"link {net.machine_veth}")
    found += [f"{h.hosts_file.parent}" for h in net.hosts if h.hosts_file.parent.exists()]
    found += [f"mount {net.uts_file(h)}" for h in net.hosts if _is_mountpoint(net.uts_file(h))]
    return found


def address_conflicts(net: Network) -> list[str]:
    """Addresses of the lab's subnet on this machine's other interfaces (someone else uses it)."""
    subnet = net.machine_address.rsplit(".", 1)[0] + "."
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout
    conflicts = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3].startswith(subnet) and parts[1] != net.machine_veth:
            conflicts.append(f"{parts[3]} on {parts[1]}")
    return conflicts


def remove_network(net: Network, made_etc_netns: bool) -> list[str]:
    """Undo make_network, make_uts and write_hosts_files; the problems left (empty: all gone)."""
    problems = []
    if Path(f"/sys/class/net/{net.machine_veth}").exists():
        res = run(["ip", "link", "del", net.machine_veth], check=False)
        if res.returncode:
            problems.append(f"ip link del {net.machine_veth}: {res.stderr.strip()}")
    for n in net.all_netns:  # the veths and the bridge go with their namespaces
        if (NETNS_DIR / n).exists():
            res = run(["ip", "netns", "del", n], check=False)
            if res.returncode:
                problems.append(f"ip netns del {n}: {res.stderr.strip()}")
    for host in net.hosts:
        f = net.uts_file(host)
        if _is_mountpoint(f):
            res = run(["umount", str(f)], check=False)
            if res.returncode:
                problems.append(f"umount {f}: {res.stderr.strip()}")
        d = host.hosts_file.parent
        if d.exists():
            for child in d.iterdir():
                child.unlink()
            d.rmdir()
    if made_etc_netns and ETC_NETNS.is_dir():
        try:
            ETC_NETNS.rmdir()
        except OSError:
            log(f"{ETC_NETNS} is not empty (someone else's namespaces): kept")
    return problems
