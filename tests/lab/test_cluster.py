"""The multi-host lab (`rcsc3 lab up --hosts`): hub, gpu1 and cpu1 behave like three machines.

Real parts: real network namespaces, munged, slurmctld and two slurmds, real srun/sbatch as a
demo user, real TCP between the hosts. Faked (nothing else is possible here): the GPUs, character
device files with NVIDIA's major number that Slurm binds and counts. The fixture brings the
cluster up when it is not; the cluster is left up for the tests (and the lead) after this file:
the test that takes it down runs last and brings it back.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polling import wait_until

from rcsc3_lab.cluster import BASE, CLUSTER_NAME, FIRST_JOB_ID, NETWORK, render_gres_conf, render_slurm_conf
from rcsc3_lab.system import proc_stat

pytestmark = pytest.mark.slurm
RCSC3 = str(Path(sys.executable).parent / "rcsc3")
from needs import IN_CI  # noqa: E402

USER = "student3"  # a demo user: the cluster shares the machine's users and homes


def rcsc3(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([RCSC3, *args], capture_output=True, text=True, timeout=timeout, **kw)


def on(host: str, *cmd: str, user: str | None = USER, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A command on a host of the cluster (`rcsc3 lab on`), as USER unless user=None (root)."""
    return rcsc3("lab", "on", *(["-u", user] if user else []), host, "--", *cmd, timeout=timeout, **kw)


def status() -> dict:
    res = rcsc3("lab", "status", "--json", "--hosts", timeout=60)
    return json.loads(res.stdout)


def cluster_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SLURM_CONF": str(BASE / "etc" / "slurm.conf")}


def machine_slurm(*cmd: str) -> subprocess.CompletedProcess:
    """A Slurm client in the machine's own namespace, pointed at the cluster."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, env=cluster_env(), stdin=subprocess.DEVNULL)


def _missing(problem: str) -> None:
    if IN_CI:
        pytest.fail(f"the multi-host lab is required in CI: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def cluster() -> dict:
    """The cluster's `status --json`, brought up first when it is not up (skip locally, fail in CI, if it cannot be)."""
    if os.geteuid() != 0:
        _missing("the multi-host lab needs root (network namespaces)")
    st = status()
    if not st["up"]:
        res = rcsc3("lab", "up", "--hosts", "--no-install", timeout=180)
        if res.returncode:
            _missing(f"`rcsc3 lab up --hosts` failed: {res.stderr.strip()[-1500:]}")
        st = status()
    assert st["up"], st
    return st


def wait_job_gone(job: str) -> None:
    wait_until(lambda: machine_slurm("squeue", "-h", "-j", job, "-o", "%i").stdout.strip() == "", 60, f"job {job} to end")


# ---------------------------------------------------------------- configuration (no root needed)
def test_rendered_conf_is_its_own_cluster_with_room_for_a_class():
    conf = render_slurm_conf(BASE / "etc" / "epilog.sh")
    assert f"ClusterName={CLUSTER_NAME}\n" in conf and CLUSTER_NAME != "rcsc3lab"
    assert f"FirstJobId={FIRST_JOB_ID}\n" in conf and FIRST_JOB_ID >= 900000
    assert "SlurmctldHost=hub(10.250.0.1)" in conf
    assert f"AuthInfo=socket={BASE}/munge/munge.socket" in conf  # its own munged
    # 30 one-CPU servers fit on either node; the GPU count stays the real one
    assert "NodeName=gpu1 NodeAddr=10.250.0.11 NodeHostname=gpu1 CPUs=64 RealMemory=65536 Gres=gpu:2 " in conf
    assert "NodeName=cpu1 NodeAddr=10.250.0.21 NodeHostname=cpu1 CPUs=64 RealMemory=65536 Features" in conf
    assert "SlurmdParameters=config_overrides" in conf and "DefMemPerCPU=512" in conf
    assert "PartitionName=interactive Nodes=gpu1 Default=YES" in conf
    assert "PartitionName=cpu Nodes=cpu1,gpu1 " in conf
    assert f"Epilog={BASE}/etc/epilog.sh" in conf
    # every file Slurm writes is the cluster's own, per node where it is a node's
    for key in ("SlurmctldPidFile", "StateSaveLocation", "SlurmdSpoolDir", "SlurmdPidFile", "SlurmctldLogFile", "SlurmdLogFile"):
        [line] = [x for x in conf.splitlines() if x.startswith(key + "=")]
        assert "rcsc3-cluster" in line and "/etc/slurm" not in line and "rcsc3-lab/" not in line, line
    assert "%n" in conf.split("SlurmdSpoolDir=")[1].splitlines()[0]
    assert f"NodeName=gpu1 Name=gpu File={BASE}/dev/gpu1/nvidia[0-1]" in render_gres_conf()


def test_on_refuses_bad_input_clearly():
    res = rcsc3("lab", "on", "gpu9", "--", "true")
    assert res.returncode == 1 and "no host 'gpu9': choose one of hub, gpu1, cpu1" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- the running cluster
def test_status_json_has_the_contract(cluster):
    assert cluster["lab"] == "hosts"
    assert set(cluster["hosts"]) == {"hub", "gpu1", "cpu1"}
    assert cluster["hosts"] == {"hub": "10.250.0.1", "gpu1": "10.250.0.11", "cpu1": "10.250.0.21"}
    assert cluster["hub_url"] == f"http://{cluster['hosts']['hub']}:8000"
    conf = Path(cluster["slurm_conf"])
    assert conf.is_file() and f"ClusterName={CLUSTER_NAME}" in conf.read_text()
    assert set(cluster["node_states"]) == {"gpu1", "cpu1"}
    # without --hosts, --json shows the cluster while it is up
    plain = json.loads(rcsc3("lab", "status", "--json").stdout)
    assert plain["lab"] == "hosts" and plain["hosts"] == cluster["hosts"]
    # the text status of the one-host lab says where the cluster is
    assert "multi-host lab: up" in rcsc3("lab", "status").stdout


def test_second_up_changes_nothing(cluster):
    conf = Path(cluster["slurm_conf"])
    before = (conf.stat().st_mtime_ns, status()["daemons"])
    t0 = time.monotonic()
    res = rcsc3("lab", "up", "--hosts", "--no-install")
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert "already up" in res.stdout and "network:" not in res.stdout
    assert (conf.stat().st_mtime_ns, status()["daemons"]) == before
    assert took < 10, took


def test_each_host_has_its_name_and_address_and_knows_the_others(cluster):
    for name, address in cluster["hosts"].items():
        res = on(name, "sh", "-c", 'echo "$(hostname) $(hostname -I) $(id -un) $SLURM_CONF"; getent hosts hub gpu1 cpu1')
        assert res.returncode == 0, res.stderr
        first, *names = res.stdout.splitlines()
        assert first.split() == [name, address, USER, cluster["slurm_conf"]]
        assert sorted(n.split() for n in names) == sorted([a, h] for h, a in cluster["hosts"].items())
    # as root, and the command's own exit status comes back
    res = on("gpu1", "sh", "-c", "hostname; exit 7", user=None)
    assert (res.returncode, res.stdout.strip()) == (7, "gpu1")
    assert socket.gethostname() not in cluster["hosts"]  # the machine's own hostname is untouched


def test_srun_on_two_nodes_each_on_its_own_address(cluster):
    res = on("hub", "srun", "-p", "cpu", "-N2", "-n2", "--ntasks-per-node=1", "-t", "2", "-l",
             "sh", "-c", 'echo "$SLURMD_NODENAME $(hostname) $(hostname -I) $SLURM_JOB_ID"', timeout=90)
    assert res.returncode == 0, res.stderr
    rows = sorted(line.split(": ", 1)[1].split() for line in res.stdout.splitlines())
    job_ids = {r[3] for r in rows}
    assert [r[:3] for r in rows] == [["cpu1", "cpu1", "10.250.0.21"], ["gpu1", "gpu1", "10.250.0.11"]]
    assert len(job_ids) == 1 and int(job_ids.pop()) >= FIRST_JOB_ID
    # and `srun -N2 -p cpu hostname` from the machine's own namespace (a browser's or a test's)
    res = subprocess.run(["runuser", "-u", USER, "--", "env", *(f"{k}={v}" for k, v in cluster_env().items()),
                          "srun", "-p", "cpu", "-N2", "-t", "2", "hostname"],
                         capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["cpu1", "gpu1"]


def test_gpu_job_runs_on_gpu1_with_a_gpu(cluster):
    # the GPUs are device files (no GPU here): Slurm binds one and sets CUDA_VISIBLE_DEVICES as on a real node
    res = on("hub", "srun", "-p", "interactive", "--gres=gpu:1", "-t", "2",
             "sh", "-c", 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"', timeout=90)
    assert res.returncode == 0, res.stderr
    node, cuda = res.stdout.split()
    assert node == "gpu1" and cuda in ("0", "1")


LISTENER = """#!/usr/bin/python3
#SBATCH -p interactive -t 5 -o /dev/null
# What a notebook server or an ipyparallel controller does: listen on the node's own address.
import os, socket, time
ip = socket.gethostbyname(os.environ["SLURMD_NODENAME"])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, int(os.environ["LISTEN_PORT"]))); s.listen(8); s.settimeout(1)
deadline = time.time() + 240
while time.time() < deadline:
    try:
        c, peer = s.accept()
    except socket.timeout:
        continue
    c.sendall(f"hello from {socket.gethostname()} job {os.environ['SLURM_JOB_ID']} to {peer[0]}\\n".encode()); c.close()
"""
CONNECT = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
           "print(s.recv(200).decode().strip())")


def test_listener_on_gpu1_is_reached_from_hub_and_from_a_task_on_cpu1(cluster):
    gpu1, port = cluster["hosts"]["gpu1"], 18000 + os.getpid() % 1000
    res = on("hub", "sbatch", "--parsable", f"--export=ALL,LISTEN_PORT={port}", input=LISTENER, stdin=None)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip()
    try:
        def listening():
            r = subprocess.run([sys.executable, "-c", CONNECT, gpu1, str(port)], capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else None
        # the machine reaches gpu1 too (through its veth): poll from here until the job listens
        assert f"job {job} to {cluster['machine_address']}" in wait_until(listening, 60, "the job's listener on gpu1")
        from_hub = on("hub", "python3", "-c", CONNECT, gpu1, str(port))
        assert from_hub.stdout.strip() == f"hello from gpu1 job {job} to {cluster['hosts']['hub']}", from_hub.stderr
        from_cpu1 = on("hub", "srun", "-p", "cpu", "-w", "cpu1", "-t", "2", "python3", "-c", CONNECT, gpu1, str(port), timeout=90)
        assert from_cpu1.stdout.strip() == f"hello from gpu1 job {job} to {cluster['hosts']['cpu1']}", from_cpu1.stderr
        # cpu1's loopback is its own: the listener is not there
        refused = on("cpu1", "python3", "-c", CONNECT, "127.0.0.1", str(port))
        assert refused.returncode != 0 and "Connection refused" in refused.stderr
    finally:
        machine_slurm("scancel", job)
        wait_job_gone(job)


def test_nodes_have_their_own_tmp_and_process_space(cluster):
    marker = f"/tmp/rcsc3-cluster-test-{os.getpid()}"
    srun = ("srun", "-p", "cpu", "-t", "2", "-N1", "-n1")
    try:
        assert on("hub", *srun, "-w", "cpu1", "touch", marker, timeout=90).returncode == 0
        seen = on("hub", *srun, "-w", "cpu1", "sh", "-c", f"test -e {marker} && echo here", timeout=90).stdout.strip()
        elsewhere = on("hub", *srun, "-w", "gpu1", "sh", "-c", f"test -e {marker} && echo here || echo absent", timeout=90)
        assert (seen, elsewhere.stdout.strip(), os.path.exists(marker)) == ("here", "absent", False)
        # a job on gpu1 sees its node's processes only: its init, one slurmd, no slurmctld, no munged
        ps = on("hub", *srun, "-w", "gpu1", "ps", "-eo", "pid=,comm=", timeout=90)
        procs = dict(line.split(None, 1) for line in ps.stdout.strip().splitlines())
        names = list(procs.values())
        assert procs["1"] == "python3" and names.count("slurmd") == 1, procs
        assert "slurmctld" not in names and "munged" not in names and len(names) < 15, procs
    finally:
        on("hub", *srun, "-w", "cpu1", "rm", "-f", marker, timeout=90)


def test_the_one_host_lab_still_answers(cluster, slurm_lab):
    plain = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}  # no SLURM_CONF: the machine's default cluster
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30, env=plain)
    assert "is UP" in ping.stdout, ping.stdout + ping.stderr
    names = [subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, env=env).stdout
             for env in (plain, cluster_env())]
    assert [n.split("ClusterName")[1].split()[1] for n in names] == ["rcsc3lab", CLUSTER_NAME]


def test_the_hubs_sudo_sbatch_in_the_hub_namespace_submits_to_the_cluster(cluster):
    # Exactly what RcSC3Spawner runs for a demo hub that runs as root (submit_prefix `sudo -E -u`), with
    # SLURM_CONF in the environment it passes (env_keep): the job must go to the cluster's slurmctld.
    logs = f"{os.path.expanduser('~' + USER)}/.rcsc3/logs"
    script = "#!/bin/sh\n#SBATCH -p cpu -t 2 -o /dev/null\nsleep 120\n"
    res = on("hub", "env", "-i", "PATH=/usr/bin:/bin", f"SLURM_CONF={cluster['slurm_conf']}",
             "sudo", "-E", "-u", USER, "--", "/bin/sh", "-c", 'mkdir -p -m 700 -- "$1" && exec sbatch --parsable', "sh", logs,
             user=None, input=script, stdin=None)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip()
    try:
        assert int(job) >= FIRST_JOB_ID
        shown = machine_slurm("scontrol", "show", "job", job)
        assert f"UserId={USER}(" in shown.stdout and "Partition=cpu" in shown.stdout, shown.stdout + shown.stderr
        one_host = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30,
                                  env={"PATH": "/usr/bin:/bin"})
        assert f"JobId={job} " not in one_host.stdout
    finally:
        machine_slurm("scancel", job)
        wait_job_gone(job)


HUB_CONFIG = Path(__file__).resolve().parents[2] / "hub_config" / "cluster" / "jupyterhub_config.py"
LOAD_CONFIG = """
import json, os, sys
from jupyterhub.app import JupyterHub
app = JupyterHub()
app.load_config_file(sys.argv[1])
c = app.config
print(json.dumps({"bind_url": c.JupyterHub.bind_url, "hub_ip": c.JupyterHub.hub_ip, "hub_connect_ip": c.JupyterHub.hub_connect_ip,
                  "spawner_ip": c.RcSC3Spawner.ip, "db_url": c.JupyterHub.db_url, "slurm_conf": os.environ.get("SLURM_CONF"),
                  "spawner": c.JupyterHub.spawner_class, "authenticator": c.JupyterHub.authenticator_class}))
"""


def test_the_cluster_hub_config_is_the_demo_on_the_hub_host(cluster, tmp_path):
    state = tmp_path / "hub-cluster"
    res = on("hub", "env", "-u", "SLURM_CONF", f"RCSC3_CLUSTER_HUB_STATE={state}", sys.executable, "-c", LOAD_CONFIG,
             str(HUB_CONFIG), user=None)
    assert res.returncode == 0, res.stderr
    hub = cluster["hosts"]["hub"]
    assert json.loads(res.stdout.splitlines()[-1]) == {
        "bind_url": cluster["hub_url"], "hub_ip": hub, "hub_connect_ip": hub, "spawner_ip": "",
        "db_url": f"sqlite:///{state}/jupyterhub.sqlite", "slurm_conf": cluster["slurm_conf"],
        "spawner": "rcsc3", "authenticator": "rcsc3-pam",  # the rest is the demo's (load_subconfig)
    }
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # in the machine's own namespace it refuses, saying where to run it
    outside = subprocess.run([sys.executable, "-c", LOAD_CONFIG, str(HUB_CONFIG)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "RCSC3_CLUSTER_HUB_STATE": str(state)})
    assert outside.returncode != 0 and "is not an address of this namespace" in outside.stderr
    assert "rcsc3 lab on hub" in outside.stderr


def sbatch_sleep(*options: str) -> str:
    res = on("hub", "sbatch", "--parsable", "-t", "5", "-o", "/dev/null", *options, "--wrap", "exec sleep 300")
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip()
    wait_until(lambda: machine_slurm("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING", 60, f"job {job} to run")
    return job


def test_the_epilog_ends_only_its_own_nodes_processes(cluster):
    """The node epilog (hub_config/slurm/epilog.sh, installed as on the one-host lab) runs on each node
    at a job's end and kills the user's processes there: never a process of the same user on another node."""
    keep = sbatch_sleep("-p", "interactive")  # on gpu1
    try:
        # cpu1: the user has no other job there, so its epilog kills every process of the user it sees
        other_node = sbatch_sleep("-p", "cpu", "-w", "cpu1")
        machine_slurm("scancel", other_node)
        wait_job_gone(other_node)
        # gpu1: the user still has `keep` there, so only the ended job's processes go
        same_node = sbatch_sleep("-p", "interactive")
        machine_slurm("scancel", same_node)
        wait_job_gone(same_node)
        left = on("hub", "srun", "--jobid", keep, "--overlap", "-t", "1", "pgrep", "-u", USER, "-x", "sleep", timeout=90)
        assert left.returncode == 0 and len(left.stdout.split()) == 1, left.stdout + left.stderr
        assert machine_slurm("squeue", "-h", "-j", keep, "-o", "%T").stdout.strip() == "RUNNING"
    finally:
        machine_slurm("scancel", keep)
        wait_job_gone(keep)


def test_a_node_outlives_its_slurmd_and_up_starts_it_again(cluster):
    """slurmd dies on cpu1 (SIGKILL): the node stays up with its job's processes, as a real machine
    does; `up` starts only that slurmd again, through the node's init, and rebuilds nothing."""
    before = status()["daemons"]
    init, slurmd = before["nodeinit-cpu1"], before["slurmd-cpu1"]
    pidns = os.readlink(f"/proc/{init}/ns/pid")
    uid = pwd.getpwnam(USER).pw_uid

    def sleeps() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (entry.name.isdigit() and entry.stat().st_uid == uid and os.readlink(entry / "ns" / "pid") == pidns
                        and (entry / "comm").read_text().strip() == "sleep"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    job = sbatch_sleep("-p", "cpu", "-w", "cpu1")
    try:
        job_sleep = wait_until(sleeps, 30, f"job {job}'s sleep to run on cpu1")
        assert len(job_sleep) == 1, job_sleep
        os.kill(slurmd, 9)
        wait_until(lambda: not status()["daemons"].get("slurmd-cpu1"), 15, "cpu1's slurmd to be gone")
        st = status()
        assert not st["up"] and "slurmd-cpu1" in st["problem"], st["problem"]
        assert st["daemons"]["nodeinit-cpu1"] == init and sleeps() == job_sleep  # the node and the job went on
        res = rcsc3("lab", "up", "--hosts", "--no-install")
        assert res.returncode == 0, res.stderr
        assert "slurmd on cpu1 is not running: its node's init starts it again" in res.stdout, res.stdout
        assert "not healthy" not in res.stdout and "multi-host lab up in" not in res.stdout  # nothing rebuilt
        after = status()
        assert after["up"], after["problem"]
        assert after["daemons"]["nodeinit-cpu1"] == init and after["daemons"]["slurmd-cpu1"] != slurmd
        assert {k: v for k, v in after["daemons"].items() if k != "slurmd-cpu1"} == {
            k: v for k, v in before.items() if k != "slurmd-cpu1"}
        # the job slurmctld still runs there is the restarted slurmd's again: it ends when cancelled
        assert machine_slurm("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING"
    finally:
        machine_slurm("scancel", job)
        wait_job_gone(job)
    wait_until(lambda: not sleeps(), 30, "the job's sleep on cpu1 to end")


def test_up_rebuilds_after_a_crash(cluster):
    st = status()
    # 1. every daemon killed at once (a crash, the OOM killer): up sees it and builds it again
    for pid in st["daemons"].values():
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    res = rcsc3("lab", "up", "--hosts", "--no-install")
    assert res.returncode == 0, res.stderr
    assert "not healthy" in res.stdout and "multi-host lab up in" in res.stdout
    assert status()["up"]
    # 2. the record lost while everything still runs: up removes the leftovers first, no second daemon
    (BASE / "state.json").unlink()
    res = rcsc3("lab", "up", "--hosts", "--no-install")
    assert res.returncode == 0, res.stderr
    assert "leftovers of an earlier multi-host lab" in res.stdout and "multi-host lab up in" in res.stdout
    hub_net = f"net:[{os.stat('/run/netns/rcsc3-hub').st_ino}]"
    ctlds = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True, text=True).stdout.split()
    nets = [net_of(p) for p in ctlds if net_of(p) not in ("", net_of("self"))]  # the one-host lab's is the machine's
    assert nets == [hub_net], ctlds  # the killed ones are gone (or zombies, without namespaces)
    assert status()["up"]


def net_of(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:  # gone, or a zombie: no namespaces any more
        return ""


def test_down_leaves_nothing_then_up_again(cluster):
    """Ordered last: takes the cluster down and brings it back up for what comes after."""
    before = status()
    pids = list(before["daemons"].values())
    t0 = time.monotonic()
    res = rcsc3("lab", "down", "--hosts")
    took_down = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    netns_dir = Path("/run/netns")
    ours = [n.name for n in netns_dir.iterdir() if n.name.startswith("rcsc3-")] if netns_dir.is_dir() else []
    assert ours == []
    assert not Path(f"/sys/class/net/{NETWORK.machine_veth}").exists()
    assert [p for p in pids if proc_stat(p)] == []  # gone (or a zombie the machine's init has yet to reap)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if "rcsc3-cluster" in line or "/run/netns/rcsc3-" in line]
    assert not BASE.exists() and not any(Path(f"/etc/netns/{h.netns}").exists() for h in NETWORK.hosts)
    assert "10.250.0." not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    left = subprocess.run(["pgrep", "-f", "/run/rcsc3-cluster|rcsc3_lab.nodeinit"], capture_output=True, text=True).stdout.split()
    assert left == [], left
    # the one-host lab is untouched; a second down is a no-op
    assert "is UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30,
                                     env={"PATH": "/usr/bin:/bin"}).stdout
    again = rcsc3("lab", "down", "--hosts")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    assert json.loads(rcsc3("lab", "status", "--json").stdout)["lab"] == "onehost"
    assert rcsc3("lab", "status", "--json", "--hosts").returncode == 1
    # back up for the tests (and the people) that use it next
    t0 = time.monotonic()
    res = rcsc3("lab", "up", "--hosts", "--no-install")
    took_up = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert status()["up"]
    print(f"down {took_down:.1f}s, up {took_up:.1f}s")
    assert took_down < 30 and took_up < 30
