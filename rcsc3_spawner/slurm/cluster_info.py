"""Live limits from Slurm: partitions' MaxTime, their nodes' CPUs, memory and GPUs.

The spawn form's bounds are the admin profile's bounds clipped to what Slurm
really has. The information is read with two `scontrol -o` calls, cached for
`ttl` seconds and refreshed by at most one task at a time, so rendering the
form never blocks the hub's event loop and 300 students opening the form cost
two commands a minute.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

from ..profiles import parse_walltime_minutes
from ..subprocesses import hub_environment, run_command

KV_RE = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|\s*$)")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """`scontrol show X -o` prints one `Key=Value Key=Value` line per object; values may hold spaces."""
    return {k: v.strip() for k, v in KV_RE.findall(line)}


def gpu_count(gres: str) -> int:
    """Sum the GPUs in a node's Gres string, e.g. 'gpu:2', 'gpu:a100:4(S:0-1),shard:8' -> 2, 4."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts and parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


@dataclass
class PartitionInfo:
    name: str
    state: str = "UP"
    max_time_minutes: int | None = None  # None: UNLIMITED
    max_cpus_per_node: int = 0
    max_memory_gb: int = 0
    max_gpus_per_node: int = 0
    nodes: list[str] = field(default_factory=list)


@dataclass
class ClusterInfo:
    partitions: dict[str, PartitionInfo]
    node_addresses: dict[str, str]
    fetched_at: float


def parse_cluster(partition_text: str, node_text: str) -> ClusterInfo:
    partitions: dict[str, PartitionInfo] = {}
    memory_caps_gb: dict[str, int] = {}
    for line in partition_text.splitlines():
        kv = parse_scontrol_line(line)
        name = kv.get("PartitionName")
        if not name:
            continue
        max_time = kv.get("MaxTime", "UNLIMITED")
        try:
            minutes = None if max_time in ("UNLIMITED", "NONE", "") else parse_walltime_minutes(max_time)
        except ValueError:
            minutes = None
        partitions[name] = PartitionInfo(name=name, state=kv.get("State", "UP"), max_time_minutes=minutes)
        per_node = kv.get("MaxMemPerNode", "UNLIMITED")
        if per_node.isdigit():
            memory_caps_gb[name] = int(per_node) // 1024
    addresses: dict[str, str] = {}
    for line in node_text.splitlines():
        kv = parse_scontrol_line(line)
        node = kv.get("NodeName")
        if not node:
            continue
        addresses[node] = kv.get("NodeAddr", node)
        cpus = int(kv.get("CPUTot", "0") or 0)
        mem_gb = int(kv.get("RealMemory", "0") or 0) // 1024
        gpus = gpu_count(kv.get("Gres", ""))
        for part in kv.get("Partitions", "").split(","):
            p = partitions.get(part)
            if p is None:
                continue
            p.nodes.append(node)
            p.max_cpus_per_node = max(p.max_cpus_per_node, cpus)
            p.max_memory_gb = max(p.max_memory_gb, min(mem_gb, memory_caps_gb.get(part, mem_gb)))
            p.max_gpus_per_node = max(p.max_gpus_per_node, gpus)
    return ClusterInfo(partitions=partitions, node_addresses=addresses, fetched_at=time.monotonic())


class SlurmInfoCache(LoggingConfigurable):
    """Cached ClusterInfo shared by every spawner of the hub (made by the first spawner with parent=)."""

    ttl = Float(60.0, help="Seconds the partitions' and nodes' limits are kept (the spawner's slurm_info_ttl).")
    timeout = Float(10.0, help="Seconds an scontrol may take.").tag(config=True)
    scontrol = List(Unicode(), ["scontrol"], help="The scontrol command (found on the hub's PATH).").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._info: ClusterInfo | None = None
        self._refreshing: asyncio.Task | None = None
        self.last_error = ""

    @property
    def cached(self) -> ClusterInfo | None:
        """What is known now, without asking Slurm (None before the first answer)."""
        return self._info

    async def _fetch(self) -> ClusterInfo | None:
        env = hub_environment()
        parts, nodes = await asyncio.gather(
            run_command([*self.scontrol, "show", "partition", "-o"], env=env, timeout=self.timeout),
            run_command([*self.scontrol, "show", "node", "-o"], env=env, timeout=self.timeout),
        )
        if not parts.ok or not nodes.ok:
            self.last_error = (parts if not parts.ok else nodes).describe()
            self.log.warning("rcsc3: could not read Slurm limits: %s", self.last_error)
            return None
        self.last_error = ""
        return parse_cluster(parts.stdout, nodes.stdout)

    async def get(self, max_age: float | None = None) -> ClusterInfo | None:
        """The cached info, refreshed if older than max_age (default ttl). None if Slurm never answered."""
        max_age = self.ttl if max_age is None else max_age
        if self._info is not None and time.monotonic() - self._info.fetched_at < max_age:
            return self._info
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch())
        info = await asyncio.shield(self._refreshing)
        if info is not None:
            self._info = info
        return self._info
