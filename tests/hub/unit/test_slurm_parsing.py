"""What the hub reads from Slurm's text: squeue lines, queue places, scontrol's Key=Value lines."""

from __future__ import annotations

import pytest

from rcsc3_spawner.slurm.cluster_info import gpu_count, parse_cluster, parse_scontrol_line
from rcsc3_spawner.slurm.poller import SQUEUE_FORMAT, JobInfo, parse_squeue, queue_positions

# As the lab's Slurm 22.05 prints them (`scontrol show partition -o`, `scontrol show node -o`), abridged;
# note the spaces inside OS=, the double spaces, the empty AllocTRES=.
PARTITION_LINES = (
    "PartitionName=interactive AllowGroups=ALL AllowAccounts=ALL Default=YES QoS=N/A DefaultTime=01:00:00 "
    "MaxNodes=UNLIMITED MaxTime=06:00:00 MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=vm,gpu[1-2] State=UP "
    "TotalCPUs=68 TotalNodes=3 JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=65536 "
    "TRES=cpu=68,mem=19284M,node=3,billing=68\n"
    "PartitionName=cpu AllowGroups=ALL Default=NO MaxTime=1-12:00:00 Nodes=vm State=UP MaxMemPerNode=UNLIMITED\n"
    "PartitionName=long Default=NO MaxTime=UNLIMITED Nodes=vm State=INACTIVE MaxMemPerNode=UNLIMITED\n"
    "\n"
)
NODE_LINES = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=4 CPUTot=4 CPULoad=0.18 "
    "AvailableFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8 "
    "OS=Linux 6.18.44-fc-v769 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=19284 AllocMem=0 State=IDLE "
    "Partitions=interactive,cpu,long  BootTime=2026-12-01T20:11:26 AllocTRES= CapWatts=n/a\n"
    "NodeName=gpu1 Arch=x86_64 CPUTot=32 Gres=gpu:a100:4(S:0-1),shard:8 NodeAddr=10.0.0.11 OS=Linux 6.1 #1 SMP "
    "RealMemory=257000 State=MIXED Partitions=interactive\n"
    "NodeName=gpu2 Arch=x86_64 CPUTot=64 Gres=gpu:v100:2 NodeAddr=10.0.0.12 RealMemory=128000 "
    "Reason=Not responding [slurm@2026-12-01T20:00:00] State=DOWN Partitions=interactive\n"
)


def test_squeue_line_gives_every_field_of_the_format():
    assert SQUEUE_FORMAT == "%i|%T|%r|%B|%S|%M|%e|%P|%Q"  # the order parse_squeue reads
    jobs = parse_squeue("262|RUNNING|None|vm|2026-12-01T22:22:39|1:02:03|2026-12-02T00:22:39|interactive|4294901502\n")
    assert jobs == {"262": JobInfo(job_id="262", state="RUNNING", reason="", batch_host="vm",
                                   start_time="2026-12-01T22:22:39", elapsed="1:02:03",
                                   end_time="2026-12-02T00:22:39", partition="interactive", priority=4294901502)}
    assert jobs["262"].running and jobs["262"].active and not jobs["262"].pending


@pytest.mark.parametrize("empty", ["n/a", "N/A", "None", "(null)", "Unknown"])
def test_squeue_placeholders_mean_no_value(empty):
    [info] = parse_squeue(f"7|PENDING|{empty}|{empty}|{empty}|{empty}|{empty}|{empty}|{empty}").values()
    assert (info.reason, info.batch_host, info.start_time, info.elapsed, info.end_time, info.partition) == ("",) * 6
    assert info.priority == 0 and info.pending and not info.running


def test_squeue_pending_job_keeps_reason_and_estimated_start():
    [info] = parse_squeue("  8|pending|Resources|n/a|2026-12-01T23:00:00|0:00|Unknown|interactive|100  \n").values()
    assert info.state == "PENDING"  # upper-cased
    assert (info.reason, info.batch_host, info.start_time, info.end_time) == ("Resources", "", "2026-12-01T23:00:00", "")
    assert info.elapsed == "0:00" and info.priority == 100


def test_squeue_array_ids_and_short_or_broken_lines():
    text = "\n".join([
        "123_4|RUNNING|None|vm|N/A|0:10|N/A|cpu|5",
        "123_[5-9]|PENDING|JobArrayTaskLimit|n/a|N/A|0:00|N/A|cpu|5",
        "125|COMPLETED",          # short: the rest empty
        "126|TIMEOUT|None|vm",
        "no separators here",     # not a job line
        "|RUNNING|None|vm",       # no id
        "",
        "127|FAILED|NonZeroExitCode|vm|N/A|0:01|N/A|cpu|high",  # priority not a number
    ])
    jobs = parse_squeue(text)
    assert list(jobs) == ["123_4", "123_[5-9]", "125", "126", "127"]
    assert jobs["123_4"].running and jobs["123_4"].partition == "cpu"
    assert jobs["123_[5-9]"].pending and jobs["123_[5-9]"].reason == "JobArrayTaskLimit"
    assert jobs["125"] == JobInfo("125", "COMPLETED")
    assert jobs["126"].batch_host == "vm" and not jobs["126"].active
    assert jobs["127"].priority == 0 and jobs["127"].reason == "NonZeroExitCode"


@pytest.mark.parametrize("state, active, pending", [
    ("PENDING", True, True), ("CONFIGURING", True, True), ("REQUEUED", True, True), ("RUNNING", True, False),
    ("COMPLETING", True, False), ("SUSPENDED", True, False), ("COMPLETED", False, False),
    ("CANCELLED", False, False), ("TIMEOUT", False, False), ("NODE_FAIL", False, False),
    ("OUT_OF_MEMORY", False, False), ("PREEMPTED", False, False),
])
def test_job_states(state, active, pending):
    info = JobInfo("1", state)
    assert (info.active, info.pending, info.running) == (active, pending, state == "RUNNING")


def test_queue_positions_by_priority_then_age_per_partition():
    jobs = parse_squeue("\n".join([
        "30|PENDING|Priority|n/a|N/A|0:00|N/A|interactive|50",
        "21|PENDING|Resources|n/a|N/A|0:00|N/A|interactive|90",
        "12|PENDING|Priority|n/a|N/A|0:00|N/A|interactive|50",   # same priority as 30, older: before it
        "40|PENDING|Priority|n/a|N/A|0:00|N/A|cpu|1",
        "11|RUNNING|None|vm|N/A|1:00|N/A|interactive|1000",     # not waiting: no place
    ]))
    assert queue_positions(jobs) == {"21": (1, 3), "12": (2, 3), "30": (3, 3), "40": (1, 1)}
    assert queue_positions({}) == {}


def test_scontrol_values_with_spaces_and_empty_values():
    kv = parse_scontrol_line(NODE_LINES.splitlines()[0])
    assert kv["OS"] == "Linux 6.18.44-fc-v769 #1 SMP PREEMPT_DYNAMIC @0"
    assert kv["RealMemory"] == "19284" and kv["CPUTot"] == "4" and kv["Gres"] == "gpu:2"
    assert kv["Partitions"] == "interactive,cpu,long"  # the double space after it is not part of it
    assert kv["AllocTRES"] == "" and kv["CapWatts"] == "n/a" and kv["AvailableFeatures"] == "(null)"
    down = parse_scontrol_line(NODE_LINES.splitlines()[2])
    assert down["Reason"] == "Not responding [slurm@2026-12-01T20:00:00]" and down["State"] == "DOWN"
    # a value that itself holds `=` (TRES) stays whole
    assert parse_scontrol_line(PARTITION_LINES.splitlines()[0])["TRES"] == "cpu=68,mem=19284M,node=3,billing=68"


@pytest.mark.parametrize("gres, gpus", [
    ("gpu:2", 2), ("gpu:a100:4(S:0-1),shard:8", 4), ("gpu:a100:2,gpu:v100:1", 3), ("shard:8", 0),
    ("(null)", 0), ("", 0), ("gpu", 0), ("gpu:a100", 0), ("mps:100,gpu:1(S:0)", 1),
])
def test_gpu_count(gres, gpus):
    assert gpu_count(gres) == gpus


def test_parse_cluster_partitions_and_their_nodes():
    cluster = parse_cluster(PARTITION_LINES, NODE_LINES)
    assert set(cluster.partitions) == {"interactive", "cpu", "long"}
    interactive, cpu, long = (cluster.partitions[p] for p in ("interactive", "cpu", "long"))
    assert interactive.max_time_minutes == 6 * 60
    assert cpu.max_time_minutes == 36 * 60 and long.max_time_minutes is None
    assert long.state == "INACTIVE" and interactive.state == "UP"
    assert interactive.nodes == ["vm", "gpu1", "gpu2"] and cpu.nodes == ["vm"] and long.nodes == ["vm"]
    # the biggest node of each partition; MaxMemPerNode (MiB) caps a node's RealMemory (MiB)
    assert (interactive.max_cpus_per_node, interactive.max_gpus_per_node, interactive.max_memory_gb) == (64, 4, 64)
    assert (cpu.max_cpus_per_node, cpu.max_gpus_per_node, cpu.max_memory_gb) == (4, 2, 19284 // 1024)
    assert cluster.node_addresses == {"vm": "127.0.0.1", "gpu1": "10.0.0.11", "gpu2": "10.0.0.12"}


def test_parse_cluster_without_node_addr_or_with_odd_values():
    cluster = parse_cluster(
        "PartitionName=p MaxTime=bogus State=UP MaxMemPerNode=UNLIMITED\nnot a partition line\n",
        "NodeName=n1 CPUTot=2 RealMemory=2048 Partitions=p,unknown\nNodeName=n2 Partitions=p\n",
    )
    p = cluster.partitions["p"]
    assert p.max_time_minutes is None  # unreadable MaxTime: no limit from Slurm, the profile's own holds
    assert (p.max_cpus_per_node, p.max_memory_gb, p.max_gpus_per_node, p.nodes) == (2, 2, 0, ["n1", "n2"])
    assert cluster.node_addresses == {"n1": "n1", "n2": "n2"}
