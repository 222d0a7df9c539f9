"""A stand-in for Slurm's client commands (squeue, sbatch, scancel, scontrol) for the hub's unit tests.

Run as `fake_slurm.py PROGRAM STATE_FILE ARGS...` by the small wrappers conftest.py writes (one per
program, first on PATH or named by absolute path). It answers from STATE_FILE, a JSON document the
test edits (see conftest.FakeSlurm), and appends each call's argv to STATE_FILE's `.calls` log so a
test can count and order them. Only the argument shapes rcsc3 uses are understood; anything else
exits 2 naming the argument, so a change in how the hub calls Slurm fails the tests loudly.

State: {"next_id": int, "jobs": {id: job}, "submit": job fields for the next sbatch, "log": text a
new job writes to its --output file, "partitions"/"nodes": `scontrol show ... -o` text, "down":
{program: {"error": stderr text, "times": n (omitted: until the test clears it), "hang": bool}},
"squeue_delay"/"sbatch_delay"/...: seconds a program takes after it acted on the state}. A job: {"state", "reason", "host",
"start", "elapsed", "end", "partition", "priority", "then": [changes applied one per `squeue -j`
that lists it, after printing; {"gone": true} removes it], "on_cancel": changes for a kill or cancel
(default CANCELLED), "signals": signals received}.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time

FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "DEADLINE"}
#: squeue -o specifiers -> (job field, what real squeue prints when it has no value)
FIELDS = {"i": ("id", ""), "T": ("state", ""), "r": ("reason", "None"), "B": ("host", "n/a"), "S": ("start", "N/A"),
          "M": ("elapsed", "0:00"), "e": ("end", "Unknown"), "P": ("partition", ""), "Q": ("priority", "0")}


class Usage(Exception):
    pass


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def save(path: str, state: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def render(fmt: str, job_id: str, job: dict) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            out.append(fmt[i])
            i += 1
            continue
        spec = fmt[i + 1:i + 2]
        if spec not in FIELDS:
            raise Usage(f"unknown format specifier %{spec}")
        key, missing = FIELDS[spec]
        value = job_id if key == "id" else job.get(key, "")
        out.append(str(value) if value not in ("", None) else missing)
        i += 2
    return "".join(out)


def squeue(state: dict, args: list[str]) -> tuple[int, str, str]:
    ids: list[str] | None = None
    partitions: list[str] | None = None
    states = "active"
    fmt = ""
    it = iter(args)
    for arg in it:
        if arg == "-h":
            continue
        if arg.startswith("--states="):
            states = arg.split("=", 1)[1]
        elif arg == "-j":
            ids = next(it).split(",")
        elif arg == "-p":
            partitions = next(it).split(",")
        elif arg == "-o":
            fmt = next(it)
        else:
            raise Usage(f"unexpected argument {arg!r}")
    if not fmt:
        raise Usage("no -o format")
    jobs = state.setdefault("jobs", {})
    if ids is not None and not any(j in jobs for j in ids):
        return 1, "", "slurm_load_jobs error: Invalid job id specified\n"
    lines, listed = [], []
    for job_id in sorted(jobs, key=lambda j: int(j.split("_")[0]) if j.split("_")[0].isdigit() else 0):
        job = jobs[job_id]
        if ids is not None and job_id not in ids:
            continue
        if partitions is not None and job.get("partition") not in partitions:
            continue
        st = job.get("state", "PENDING")
        if states == "active" and st in FINAL or states not in ("all", "active") and st not in states.split(","):
            continue
        lines.append(render(fmt, job_id, job))
        listed.append(job_id)
    for job_id in listed if ids is not None else ():  # a job's scripted future moves on after this listing
        then = jobs[job_id].get("then") or []
        if then:
            change = then.pop(0)
            if change.get("gone"):
                del jobs[job_id]
            else:
                jobs[job_id].update(change)
    return 0, "".join(line + "\n" for line in lines), ""


def scancel(state: dict, args: list[str]) -> tuple[int, str, str]:
    signal = ""
    batch = False
    job_ids = []
    for arg in args:
        if arg.startswith("--signal="):
            signal = arg.split("=", 1)[1]
        elif arg == "--batch":
            batch = True
        elif arg.startswith("-"):
            raise Usage(f"unexpected argument {arg!r}")
        else:
            job_ids.append(arg)
    if len(job_ids) != 1:
        raise Usage(f"expected one job id, got {job_ids}")
    [job_id] = job_ids
    job = state.setdefault("jobs", {}).get(job_id)
    if job is None:
        return 1, "", f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified\n"
    if job.get("state") in FINAL:
        return 1, "", f"scancel: error: Kill job error on job id {job_id}: Job/step already completing or completed\n"
    if signal and signal != "KILL":
        job.setdefault("signals", []).append(f"{signal}{' (batch step)' if batch else ''}")
        return 0, "", ""
    job.setdefault("signals", []).append(signal or "cancel")
    job.update(job.pop("on_cancel", None) or {"state": "CANCELLED", "reason": "None"})
    return 0, "", ""


def sbatch(state: dict, args: list[str], script: str) -> tuple[int, str, str]:
    if args != ["--parsable"]:
        raise Usage(f"unexpected arguments {args}")
    job_id = str(state.get("next_id", 100))
    state["next_id"] = int(job_id) + 1
    directives = dict(line[len("#SBATCH --"):].split("=", 1) for line in script.splitlines()
                      if line.startswith("#SBATCH --") and "=" in line)
    job = {"state": "PENDING", "reason": "None", "partition": directives.get("partition", ""), "script": script}
    job.update(state.get("submit", {}))
    state.setdefault("jobs", {})[job_id] = job
    output = directives.get("output", "").replace("%j", job_id)
    if output and state.get("log"):
        with open(output, "w") as f:
            f.write(state["log"])
    return 0, f"{job_id}\n", ""


def scontrol(state: dict, args: list[str]) -> tuple[int, str, str]:
    if args not in (["show", "partition", "-o"], ["show", "node", "-o"]):
        raise Usage(f"unexpected arguments {args}")
    return 0, state.get("partitions" if args[1] == "partition" else "nodes", ""), ""


def main() -> int:
    program, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    script = sys.stdin.read() if program == "sbatch" else ""
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load(path)
        with open(f"{path}.calls", "a") as log:
            log.write(json.dumps({"prog": program, "argv": args, "t": time.monotonic()}) + "\n")
        down = state.get("down", {}).get(program)
        if down is not None:
            if "times" in down:
                down["times"] -= 1
                if down["times"] <= 0:
                    del state["down"][program]
                save(path, state)
            hang = down.get("hang", False)
            error = down.get("error", "")
        else:
            hang, error = False, ""
            delay = state.get(f"{program}_delay", 0)
            try:
                code, out, err = {"squeue": lambda: squeue(state, args), "scancel": lambda: scancel(state, args),
                                  "sbatch": lambda: sbatch(state, args, script),
                                  "scontrol": lambda: scontrol(state, args)}[program]()
            except Usage as e:
                code, out, err = 2, "", f"fake {program}: {e}\n"
            save(path, state)
    if hang:
        time.sleep(60)  # Slurm that never answers: the hub's timeout must end it
    if error:
        sys.stderr.write(error + "\n")
        return 1
    if delay:
        time.sleep(delay)  # the answer reflects the state when the call began
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
