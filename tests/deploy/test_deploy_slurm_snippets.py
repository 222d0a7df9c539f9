"""hub_config/slurm/: the slurm.conf snippet, gres.conf and cgroup.conf agree with each other and with rcsc3.

Slurm's own parser is not available without a second controller, so this checks what an
admin would get wrong: the `interactive` GPU partition (RcSC3's, from its GUANE cluster)
with a MaxTime, GresTypes=gpu, a node whose Gres matches gres.conf in type and count, the
Epilog path the lab and the images install, and no parameter Slurm removed (Shared=).
"""

from __future__ import annotations

import re
from pathlib import Path

SLURM = Path(__file__).resolve().parents[2] / "hub_config" / "slurm"


def records(path: Path) -> list[dict[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        record = {}
        for word in line.split():
            key, sep, value = word.partition("=")
            assert sep, f"{path.name}: {word!r} is not Key=Value"
            record[key] = value
        out.append(record)
    return out


def find(recs: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    return [r for r in recs if key in r]


def gpu_count(files: str) -> int:
    m = re.fullmatch(r"/dev/nvidia\[(\d+)-(\d+)\]", files)
    if m:
        return int(m.group(2)) - int(m.group(1)) + 1
    return len(files.split(","))


def test_interactive_gpu_partition() -> None:
    conf = records(SLURM / "slurm.conf.snippet")
    assert find(conf, "GresTypes")[0]["GresTypes"] == "gpu"
    [part] = [r for r in find(conf, "PartitionName") if r["PartitionName"] == "interactive"]
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", part["MaxTime"])
    assert part["State"] == "UP"
    assert "Shared" not in part, "Shared= was replaced by OverSubscribe= in Slurm"
    [node] = find(conf, "NodeName")
    assert node["NodeName"] in part["Nodes"].split(",")
    assert re.fullmatch(r"gpu:(\w+:)?\d+", node["Gres"])


def test_gres_conf_matches_the_node() -> None:
    [node] = find(records(SLURM / "slurm.conf.snippet"), "NodeName")
    _, *typ, count = node["Gres"].split(":")
    gres = [r for r in find(records(SLURM / "gres.conf"), "NodeName") if r["NodeName"] == node["NodeName"]]
    assert gres, "gres.conf has no line for the GPU node"
    assert all(g["Name"] == "gpu" for g in gres)
    if typ:
        assert all(g.get("Type") == typ[0] for g in gres)
    assert sum(gpu_count(g["File"]) for g in gres) == int(count)


def test_epilog_and_process_tracking() -> None:
    conf = {k: v for r in records(SLURM / "slurm.conf.snippet") for k, v in r.items()}
    # the path `rcsc3 lab up` and the node images install the epilog at
    from rcsc3_lab.slurm import EPILOG_DEST

    assert conf["Epilog"] == str(EPILOG_DEST)
    assert conf["ProctrackType"] == "proctrack/cgroup" and "task/cgroup" in conf["TaskPlugin"]
    cgroup = {k: v for r in records(SLURM / "cgroup.conf") for k, v in r.items()}
    assert cgroup["ConstrainDevices"] == "yes"
