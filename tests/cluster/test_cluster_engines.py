"""ipyparallel engines as srun steps of a job that spans two nodes of the multi-host lab.

A student's kernel runs in the batch step of a 2-node job (`-p cpu -N2 -n4`, gpu1 + cpu1). Slurm
puts the batch step on the allocation's first node by Weight, which is cpu1; the job asks for
gpu1 with `--constraint='[gpu*1&cpu*1]' --batch=gpu` (one node of each feature, the batch step
on the gpu one). `ipp.Cluster(engines="srun", n=4)` must then start engines on both nodes, which
register with the controller on gpu1 (in a multi-node job it listens on gpu1's address, not on
loopback: rcsc3_proxy/engines/session_defaults.py); the thesis' Mandelbrot `map_sync`
(notebooks/parallel-mandelbrot.ipynb, run cell by cell in that kernel) must equal the serial
picture; `stop_cluster` must leave nothing on either node.

And a classmate on the cluster network (another student, on cpu1) can reach the controller's
ports but not use them: the connection files are the student's alone (0600 in a 0700 home), and
a request signed without the cluster's key is refused (ipyparallel's HMAC-signed messages).

Real parts: the lab's slurmctld and two slurmds, real srun steps, a real ipykernel, the real
ipyparallel controller and engines. The test drives the kernel from this machine over gpu1's
address (the kernel listens there: its 127.0.0.1 is gpu1's own).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest
from cluster_lab import Cluster, listening_tcp, on, processes, socket_inodes, wait_until
from jupyter_client import BlockingKernelClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
from engines_harness import READ_ONLY_CWD, VENV_BIN, JobKernel, KernelError  # noqa: E402

pytestmark = pytest.mark.slurm

STUDENT = "student3"
CLASSMATE = "student2"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "parallel-mandelbrot.ipynb"
#: what ipyparallel runs (`python -m ipyparallel.engine` / `.controller`); srun and its guard name the
#: engine command too, but are not engines
ENGINE_PROCESS = ("ipyparallel.engine",)
CONTROLLER_PROCESS = ("ipyparallel.controller",)

KERNEL_JOB = """#!/bin/sh
# The kernel listens on this node's address (the test connects from the machine), as a notebook
# server's kernel would listen on the node; it is a child of a long-lived process, as under a server.
ip=$(getent hosts "$SLURMD_NODENAME" | cut -d' ' -f1)
{python} -m ipykernel_launcher --IPKernelApp.connection_file={workdir}/kernel.json --IPKernelApp.ip="$ip" &
exec {python} -c 'import signal; signal.pause()'
"""

#: a classmate on cpu1: read the student's connection file, then ask the controller for its engines
#: with a guessed key (and, as the control, the student does the same with the real key)
PROBE = textwrap.dedent("""\
    import json, pickle, sys, zmq
    from jupyter_client.session import Session
    conn_file, url, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    try:
        open(conn_file).read(); readable = "yes"
    except OSError as e:
        readable = type(e).__name__
    s = zmq.Context().socket(zmq.DEALER); s.linger = 0; s.connect(url)
    session = Session(key=key, signature_scheme="hmac-sha256", packer="pickle", unpacker="pickle")
    session.send(s, "connection_request", content={})
    reply = "none"
    if s.poll(5000):
        frames = s.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        header, content = pickle.loads(frames[i + 2]), pickle.loads(frames[i + 5])
        reply = header["msg_type"] + " " + (str(content.get("evalue", "")) or str(len(content.get("engines", {}))))
    print(json.dumps({"readable": readable, "reply": reply}))
""")


def submit_kernel(cluster: Cluster, workdir: Path, env: dict[str, str]) -> str:
    (workdir / "job.sh").write_text(KERNEL_JOB.format(python=VENV_BIN / "python", workdir=workdir))
    exports = ",".join(["ALL", *(f"{k}={v}" for k, v in env.items())])
    res = cluster.as_user(
        STUDENT, "sbatch", "--parsable", "--job-name=rcsc3-cluster-engines", "-p", "cpu", "-N2", "-n4",
        "--cpus-per-task=1", "--constraint=[gpu*1&cpu*1]", "--batch=gpu", "--mem=2G", "--time=15",
        f"--chdir={READ_ONLY_CWD}", f"--output={workdir}/job.log", f"--export={exports}", str(workdir / "job.sh"))
    assert res.returncode == 0, f"sbatch failed: {res.stderr}"
    return res.stdout.strip()


def student_procs(cluster: Cluster, node: str, modules: tuple[str, ...]) -> list:
    """The student's processes on `node` that run one of `modules` (`python -m MODULE ...`)."""
    return [p for p in processes(STUDENT, pidns=cluster.pidns(node)) if p.argv[1:2] == ["-m"] and p.argv[2:3]
            and p.argv[2] in modules]


@pytest.fixture
def two_node_kernel(cluster: Cluster):
    """A kernel in the batch step (on gpu1) of a 2-node, 4-task job of STUDENT; cancelled afterwards."""
    home = Path(pwd.getpwnam(STUDENT).pw_dir)
    # in the shared home: the nodes' /tmp are their own
    workdir = Path(tempfile.mkdtemp(prefix=".rcsc3-cluster-engines-", dir=home))
    shutil.chown(workdir, user=STUDENT)
    workdir.chmod(0o700)
    job, client = "", None
    try:
        job = submit_kernel(cluster, workdir, {"RCSC3_ENGINES": "4", "MANDEL_SIZE": "160x80"})
        conn = workdir / "kernel.json"

        def ready() -> bool:
            state = cluster.job(job)
            if state not in ("PENDING", "CONFIGURING", "RUNNING"):
                log = (workdir / "job.log").read_text() if (workdir / "job.log").exists() else ""
                raise AssertionError(f"kernel job {job} is {state or 'gone'}: {log}")
            return conn.exists() and conn.stat().st_size > 0

        wait_until(ready, 120, f"the kernel of job {job} to write {conn}", 0.2)
        client = BlockingKernelClient()
        client.load_connection_file(str(conn))
        client.start_channels()
        client.wait_for_ready(timeout=60)
        yield JobKernel(job=job, workdir=workdir, client=client, user=STUDENT, log=workdir / "job.log")
    finally:
        if client is not None:
            client.stop_channels()
        if job:
            cluster.cancel(job)
        shutil.rmtree(workdir, ignore_errors=True)


def test_engines_on_both_nodes_register_with_the_controller_on_gpu1(cluster, two_node_kernel):
    kernel, gpu1 = two_node_kernel, cluster.address("gpu1")
    assert cluster.job(kernel.job, "%B %D %N") == "gpu1 2 cpu1,gpu1"
    assert kernel.value("__import__('socket').gethostname()") == "gpu1"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    start = next(i for i, src in enumerate(cells) if "ipp.Cluster(" in src)
    timing = next(i for i, src in enumerate(cells) if "parallel result equals serial" in src)
    stop = next(i for i, src in enumerate(cells) if "stop_cluster" in src)
    try:
        for src in cells[:start]:
            kernel.run(src)
        # the notebook's own cell: Cluster(engines="srun") with the session's 4 reserved engines
        out = kernel.run(cells[start].replace('ipp.Cluster(engines="srun")', 'ipp.Cluster(engines="srun", n=4)'), 180)
        assert "4 engines in Slurm step" in out, out
        hosts = kernel.value("sorted(rc[:].apply_sync(__import__('socket').gethostname))")
        assert hosts.count("gpu1") >= 1 and hosts.count("cpu1") >= 1 and len(hosts) == 4, hosts

        # the controller runs on gpu1 beside the kernel and listens on gpu1's address only
        # (the controller and the scheduler processes it forks)
        controllers = student_procs(cluster, "gpu1", CONTROLLER_PROCESS)
        assert controllers and not student_procs(cluster, "cpu1", CONTROLLER_PROCESS)
        own = set().union(*(socket_inodes(p.pid) for p in controllers))
        ports = sorted((s.address, s.port) for s in listening_tcp(controllers[0].pid) if s.inode in own)
        print(f"controller ({len(controllers)} processes) listens on {ports}")
        # every port in the connection files (what engines on cpu1 and the client use) is on gpu1's
        # address; ipyparallel's own internal ones (scheduler tree, monitor) stay on gpu1's loopback
        files = kernel.value("[open(cluster.profile_dir + f'/security/ipcontroller-{cluster.cluster_id}-{k}.json').read()"
                             " for k in ('client', 'engine')]")
        advertised = {v for text in files for k, v in json.loads(text).items() if isinstance(v, int) and k != "pid"}
        advertised |= {p for text in files for v in json.loads(text).values() if isinstance(v, list) for p in v
                       if isinstance(p, int)}
        on_gpu1 = {port for address, port in ports if address == gpu1}
        assert advertised and advertised <= on_gpu1, (advertised, ports)
        assert {a for a, _ in ports} <= {gpu1, "127.0.0.1"}, f"the controller listens beyond gpu1's address: {ports}"
        engines = {node: len(student_procs(cluster, node, ENGINE_PROCESS)) for node in ("gpu1", "cpu1")}
        assert engines == {"gpu1": hosts.count("gpu1"), "cpu1": hosts.count("cpu1")}, (engines, hosts)
        security = json.loads(kernel.value(
            "__import__('json').dumps({'dir': oct(__import__('os').stat(cluster.profile_dir + '/security').st_mode), "
            "'files': {f: oct(__import__('os').stat(cluster.profile_dir + '/security/' + f).st_mode) "
            "for f in __import__('os').listdir(cluster.profile_dir + '/security') if cluster.cluster_id in f}})"))
        # the connection files hold the key: the student's alone, in a directory of the student's alone
        key = json.loads(files[0])["key"]
        assert int(security["dir"], 8) & 0o077 == 0, security
        for name, mode in security["files"].items():
            text = kernel.value(f"open(cluster.profile_dir + '/security/{name}').read()")
            assert int(mode, 8) & 0o077 == 0 or key not in text, (name, mode)
        assert all(int(m, 8) & 0o077 == 0 for f, m in security["files"].items() if f.startswith("ipcontroller-")), security

        # the thesis' benchmark: map_sync over both nodes equals the serial picture
        out = kernel.run(cells[timing], 300)
        assert "parallel result equals serial: True" in out and "4 engine(s):" in out, out
        both = kernel.value(
            "(lambda parts: [sorted({h for h, _ in parts}), ''.join(t for _, t in parts) == serial])("
            "rc[:].map_sync(lambda rows: (__import__('socket').gethostname(), mandel(WIDTH, HEIGHT, *rows)), "
            "split_rows(HEIGHT, 16)))")
        assert both == [["cpu1", "gpu1"], True], both

        probe_classmate_and_owner(cluster, kernel)

        kernel.run(cells[stop], 120)
    except KernelError:
        print(kernel.log.read_text() if kernel.log.exists() else "(no job log)")
        raise
    # stop_cluster leaves nothing: no engine or controller of the student on either node, no step
    def nothing_left():
        procs = {n: student_procs(cluster, n, ENGINE_PROCESS + CONTROLLER_PROCESS) for n in ("gpu1", "cpu1")}
        steps = [s for s in cluster.slurm("squeue", "-h", "-s", "-j", kernel.job, "-o", "%i %j").stdout.splitlines()
                 if "ipengine" in s]
        return (not any(procs.values()) and not steps) or None

    wait_until(nothing_left, 30, "the engines, the controller and the engine step to be gone", 0.3)
    assert cluster.job(kernel.job) == "RUNNING"  # the kernel's job itself goes on


def probe_classmate_and_owner(cluster: Cluster, kernel: JobKernel) -> None:
    """A classmate on cpu1 can connect to the controller but is refused without the key; the owner is answered."""
    client_file = kernel.value("cluster.profile_dir + '/security/ipcontroller-' + cluster.cluster_id + '-client.json'")
    info = json.loads(Path(client_file).read_text())  # root reads it; the classmate cannot (below)
    url = f"{info['interface']}:{info['registration']}"
    assert info["interface"] == f"tcp://{cluster.address('gpu1')}", info["interface"]
    assert stat.S_IMODE(os.stat(client_file).st_mode) == 0o600
    guess = "0" * len(info["key"])
    classmate = on("cpu1", str(VENV_BIN / "python"), "-c", PROBE, client_file, url, guess, user=CLASSMATE)
    assert classmate.returncode == 0, classmate.stderr
    seen = json.loads(classmate.stdout.strip().splitlines()[-1])
    assert seen["readable"] == "PermissionError", seen
    # ipyparallel drops a message whose HMAC does not match before it unpacks it (no answer, or an error)
    assert seen["reply"] == "none" or (seen["reply"].startswith("hub_error") and "Invalid Signature" in seen["reply"]), seen
    owner = on("cpu1", str(VENV_BIN / "python"), "-c", PROBE, client_file, url, info["key"], user=STUDENT)
    assert json.loads(owner.stdout.strip().splitlines()[-1]) == {"readable": "yes", "reply": "connection_reply 4"}, (
        owner.stdout + owner.stderr)
