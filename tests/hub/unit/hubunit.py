"""What the hub unit tests share: the fake Slurm (fake_slurm.py) driver and a
stand-in for the job's Jupyter server."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

FAKE = Path(__file__).with_name("fake_slurm.py")
PROGRAMS = ("squeue", "sbatch", "scancel", "scontrol")

#: `scontrol show partition -o` / `show node -o` as the one-host lab prints them (abridged)
PARTITIONS = (
    "PartitionName=interactive AllowGroups=ALL Default=YES MaxNodes=UNLIMITED MaxTime=06:00:00 Nodes=node1 "
    "State=UP TotalCPUs=4 MaxMemPerNode=UNLIMITED\n"
    "PartitionName=cpu AllowGroups=ALL Default=NO MaxTime=12:00:00 Nodes=node1 State=UP TotalCPUs=4 "
    "MaxMemPerNode=UNLIMITED\n"
)
NODES = (
    "NodeName=node1 Arch=x86_64 CoresPerSocket=2 CPUAlloc=0 CPUTot=4 Gres=gpu:2 NodeAddr=127.0.0.1 "
    "NodeHostName=node1 OS=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian RealMemory=8192 "
    "Partitions=interactive,cpu State=IDLE\n"
)
SOCKET_TIMEOUT = "slurm_load_jobs error: Socket timed out on send/recv operation"


class FakeSlurm:
    """The fake's state file and call log, and a bin/ directory with squeue, sbatch, scancel, scontrol."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.path = root / "slurm-state.json"
        self.path.write_text(json.dumps({"next_id": 100, "jobs": {}, "partitions": PARTITIONS, "nodes": NODES}))
        for program in PROGRAMS:
            wrapper = self.bin / program
            wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S {FAKE} {program} {self.path} "$@"\n')
            wrapper.chmod(0o755)

    def cmd(self, program: str) -> str:
        return str(self.bin / program)

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict]:
        """Change the state under the fake's own lock (a call in flight sees all of it or none)."""
        with open(f"{self.path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text())
            yield state
            tmp = self.path.with_suffix(".test.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)

    def state(self) -> dict:
        return json.loads(self.path.read_text())

    def job(self, job_id: str) -> dict | None:
        return self.state()["jobs"].get(job_id)

    def add_job(self, job_id: str, **fields) -> None:
        with self.edit() as s:
            s["jobs"][job_id] = fields

    def set_job(self, job_id: str, **fields) -> None:
        with self.edit() as s:
            s["jobs"][job_id].update(fields)

    def down(self, program: str, error: str = SOCKET_TIMEOUT, times: int | None = None, hang: bool = False) -> None:
        """Make `program` fail (exit 1 with `error`), or hang, for `times` calls or until up()."""
        with self.edit() as s:
            entry: dict = {"error": error, "hang": hang}
            if times is not None:
                entry["times"] = times
            s.setdefault("down", {})[program] = entry

    def up(self, program: str) -> None:
        with self.edit() as s:
            s.get("down", {}).pop(program, None)

    def calls(self, program: str | None = None) -> list[dict]:
        log = Path(f"{self.path}.calls")
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [c for c in calls if program is None or c["prog"] == program]


async def stop_poller(poller) -> None:
    """End a poller's background loop at the end of a test (the hub's lives as long as the hub).

    Not by cancelling it: a round cancelled mid-squeue would leave that process to outlive the
    test's event loop. With nothing to watch or cancel, the loop ends by itself after one more round.
    """
    task = poller._task
    if task is None or task.done():
        return
    poller._watched.clear()
    poller._cancel_queue.clear()
    poller._wake.set()
    await asyncio.wait_for(task, 30)


def identity_proof(token: str, challenge: str, port: int) -> str:
    """The proof as the protocol defines it (rcsc3_spawner.server_identity's docstring), computed here
    rather than with the hub's own function, so a change on one side only shows."""
    return hmac.new(token.encode(), f"rcsc3-identity:{challenge}:{port}".encode(), hashlib.sha256).hexdigest()


class IdentityServer:
    """Stands in for the job's Jupyter server: answers rcsc3/api/identity as rcsc3-singleuser does
    (`genuine`), or as another user's process on the reported port would: a proof made without the
    server's token (`wrong-token`), or the real server's proof relayed from another port (`other-port`)."""

    def __init__(self, token: str, mode: str = "genuine"):
        from tornado import netutil, web
        from tornado.httpserver import HTTPServer

        owner = self

        class Identity(web.RequestHandler):
            def get(self) -> None:
                challenge = self.get_argument("challenge")
                owner.challenges.append(challenge)
                key = "not-the-token" if owner.mode == "wrong-token" else token
                port = owner.port + 1 if owner.mode == "other-port" else owner.port
                self.finish({"proof": identity_proof(key, challenge, port)})

        self.mode = mode
        self.challenges: list[str] = []
        [sock] = netutil.bind_sockets(0, "127.0.0.1")
        self.port = sock.getsockname()[1]
        self.http = HTTPServer(web.Application([("/rcsc3/api/identity", Identity)]))
        self.http.add_sockets([sock])

    def close(self) -> None:
        self.http.stop()
