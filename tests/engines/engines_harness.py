"""Test harness: a real IPython kernel, run by a student inside a real Slurm batch job, driven like a notebook.

`job_kernel(ntasks=3, engines=2)` submits ``sudo -u STUDENT sbatch`` from a clean
environment (like the rcsc3 spawner: ``--ntasks``, ``--cpus-per-task=1``, a GPU,
``RCSC3_ENGINES``), with a read-only working directory; the batch script execs
an ipykernel. The test connects to it with jupyter_client and runs code in it
exactly as a notebook would (so ipyparallel's in-kernel code paths are the ones
tested). The job is always cancelled afterwards, and waited for.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

sys.path.append(str(Path(__file__).resolve().parents[1]))  # needs.py, polling.py
from needs import IN_CI  # noqa: E402  (in CI a missing lab or test user fails the run instead of skipping)
from polling import wait_until  # noqa: E402,F401  (used here and by the engine tests)

VENV_BIN = Path(sys.executable).parent
#: the unix user the engine tests run as (a student created by `rcsc3 lab users`)
STUDENT = os.environ.get("RCSC3_ENGINES_TEST_USER", "student3")
#: a directory the student cannot write to: the kernel's cwd (nothing may be written there)
READ_ONLY_CWD = "/usr/share"


def job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], check=False, capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def job_steps(job: str) -> dict[str, str]:
    """{'12.0': 'step name'} for the job's running steps."""
    out = subprocess.run(
        ["squeue", "-h", "-s", "-j", job, "-o", "%i|%j"], check=False, capture_output=True, text=True, timeout=20
    )
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids of processes whose environment has key=value (root can read every /proc/PID/environ)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found.append(int(entry))
    return found


class KernelError(AssertionError):
    """Code run in the job's kernel raised; the message is the kernel's traceback."""


@dataclass
class JobKernel:
    """A kernel running in a Slurm batch job; `run()` executes code in it like a notebook cell."""

    job: str
    workdir: Path
    client: BlockingKernelClient
    user: str
    log: Path
    outputs: list[str] = field(default_factory=list)

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute `code`; return its stdout; raise KernelError with the traceback on error."""
        chunks: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                chunks.append(content["text"])
            elif kind == "error":
                chunks.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        text = "".join(chunks)
        self.outputs.append(text)
        if reply["content"]["status"] != "ok":
            raise KernelError(f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}\n{text}")
        return text

    def value(self, expr: str, timeout: float = 120) -> object:
        """Evaluate a JSON-able expression in the kernel."""
        out = self.run(f"import json as _j; print('@@' + _j.dumps({expr}))", timeout)
        return json.loads(out.rsplit("@@", 1)[1])


def require_student() -> str:
    try:
        pwd.getpwnam(STUDENT)
    except KeyError:
        msg = f"test user {STUDENT} does not exist (run `rcsc3 lab users`)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return STUDENT


def submit_job(user: str, workdir: Path, script: str, ntasks: int, engines: int | None, gpus: int = 0,
               extra_env: dict[str, str] | None = None, sbatch_args: tuple[str, ...] = ()) -> str:
    """Submit `script` as `user`'s batch job, from a clean environment, like the spawner; returns the job id."""
    home = pwd.getpwnam(user).pw_dir
    env = [f"HOME={home}", f"USER={user}", f"LOGNAME={user}", f"PATH={VENV_BIN}:/usr/bin:/bin", "LANG=C.UTF-8"]
    exports = ["ALL"] + [f"{k}={v}" for k, v in (extra_env or {}).items()]
    if engines is not None:
        exports.append(f"RCSC3_ENGINES={engines}")
    (workdir / "job.sh").write_text(script)
    argv = [
        "sudo", "-u", user, "env", "-i", *env,
        "sbatch", "--parsable", "--job-name=rcsc3-engines-test",
        # --mem: without it the job takes the whole node's memory in the lab and blocks every other job
        f"--ntasks={ntasks}", "--cpus-per-task=1", "--nodes=1", "--time=15", "--mem=2G",
        f"--chdir={READ_ONLY_CWD}", f"--output={workdir}/job.log",
        f"--export={','.join(exports)}",
    ]  # fmt: skip
    if gpus:
        argv.append(f"--gres=gpu:{gpus}")
    argv += [*sbatch_args, str(workdir / "job.sh")]
    res = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"sbatch failed: {res.stderr}"
    return res.stdout.strip().split(";")[0]


def student_workdir(user: str) -> Path:
    """A fresh 0700 directory owned by `user` (root, running the tests, can still read it)."""
    workdir = Path(tempfile.mkdtemp(prefix="rcsc3-engines-"))
    shutil.chown(workdir, user=user)
    workdir.chmod(0o700)
    return workdir


def cancel_and_wait(job: str) -> None:
    subprocess.run(["scancel", job], check=False, capture_output=True, timeout=30)
    wait_until(lambda: job_state(job) in ("", "COMPLETED", "CANCELLED"), 60, f"job {job} to leave the queue", 0.2)


@pytest.fixture
def job_kernel(slurm_lab) -> Iterator[Callable[..., JobKernel]]:
    """Factory: `job_kernel(ntasks=3, engines=2, gpus=1)` -> a connected JobKernel."""
    user = require_student()
    made: list[tuple[str, BlockingKernelClient | None, Path]] = []

    def make(ntasks: int = 3, engines: int | None = None, gpus: int = 0) -> JobKernel:
        workdir = student_workdir(user)
        # The kernel is a child of a long-lived process, as under the Jupyter server in a
        # real session: killing the kernel must not end the job.
        script = (
            "#!/bin/sh\n"
            f"{VENV_BIN}/python -m ipykernel_launcher --IPKernelApp.connection_file={workdir}/kernel.json &\n"
            f"exec {VENV_BIN}/python -c 'import signal; signal.pause()'\n"
        )
        job = submit_job(user, workdir, script, ntasks, engines, gpus)
        made.append((job, None, workdir))
        conn = workdir / "kernel.json"

        def ready() -> bool:
            state = job_state(job)
            if state not in ("PENDING", "CONFIGURING", "RUNNING"):
                log = (workdir / "job.log").read_text() if (workdir / "job.log").exists() else ""
                raise AssertionError(f"kernel job {job} is {state or 'gone'}: {log}")
            return conn.exists() and conn.stat().st_size > 0

        # a pending job (the lab is shared with other tests) counts against this bound too
        wait_until(ready, 180, f"the kernel of job {job} to write {conn}", 0.2)
        client = BlockingKernelClient()
        client.load_connection_file(str(conn))
        client.start_channels()
        made[-1] = (job, client, workdir)
        client.wait_for_ready(timeout=60)
        return JobKernel(job=job, workdir=workdir, client=client, user=user, log=workdir / "job.log")

    try:
        yield make
    finally:
        for job, client, workdir in made:
            if client is not None:
                client.stop_channels()
            cancel_and_wait(job)
            shutil.rmtree(workdir, ignore_errors=True)
