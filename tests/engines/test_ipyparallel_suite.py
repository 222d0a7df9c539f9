"""ipyparallel's own test suite for launchers, green with ``engines="srun"`` inside real Slurm jobs.

ipyparallel tests each launcher by rerunning its generic cluster tests
(``ipyparallel/tests/test_cluster.py``) with another ``engine_launcher_class``
fixture -- see its ``test_slurm.py`` and ``test_mpi.py``. ipp_srun_cases.py does the
same for ``srun``; this module submits it as a student's batch job (``sudo -u
STUDENT sbatch``, a clean environment, a read-only working directory, like
engines_harness.py) and checks the job's JUnit report: every selected test passed.

Which tests, and why: the 13 test functions of test_cluster.py (14 tests, one is
parametrized) that start engines through the ``Cluster`` fixture, i.e. through
the launcher under test -- start/stop of engines and of whole clusters, signals,
restart, ``get_output``, ``async with``/``with`` (5 engines), to_dict/from_dict,
cluster files, the cluster manager noticing a stop, engines crashing on startup,
``start_and_connect``, ``repr``. That is a superset of the 5 that test_slurm.py and
test_mpi.py rerun. Left out: test_cluster.py's tests that start no engines (they
test ipyparallel itself, not a launcher) and the rest of ipyparallel's suite
(clients, views, serialization...), which runs against local engines started by
its own fixtures, not through ``engine_launcher_class``, and takes many minutes.

Two allocations:
- ``sbatch -n 6 --overcommit`` (1 CPU, 6 tasks): all 14; the job asked Slurm for 6
  tasks sharing CPUs, so 5 engines must start with no configuration;
- ``sbatch -n 4`` (4 CPUs): all but the two 5-engine tests, which do not fit (the
  error for that is tested in test_srun_engines.py).

The tests are ipyparallel's, unmodified, from the installed wheel (it ships
``ipyparallel/tests``); `test_the_upstream_tests_are_the_installed_wheels_unmodified`
checks them against the wheel's RECORD and the version against setup.cfg's pin.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import importlib.metadata
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from engines_harness import (
    VENV_BIN,
    cancel_and_wait,
    job_state,
    require_student,
    student_workdir,
    submit_job,
    wait_until,
)
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("ipp_srun_cases.py")
#: the wheel's files the run depends on (ipp_srun_cases imports them, -p loads the conftest)
UPSTREAM_FILES = ("__init__.py", "conftest.py", "clienttest.py", "test_cluster.py", "_test_startup_crash.py")

ALL = [
    "test_async_with",
    "test_cluster_manager_notice_stop",
    "test_cluster_repr",
    "test_default_from_file",
    "test_get_output",
    "test_restart_engines",
    "test_signal_engines",
    "test_start_and_connect_activate[True]",
    "test_start_and_connect_activate[False]",
    "test_start_stop_cluster",
    "test_start_stop_engines",
    "test_sync_with",
    "test_to_from_dict",
    "test_wait_for_engines_crash",
]
FIVE_ENGINES = ("test_async_with", "test_sync_with")

SCRIPT = """#!/bin/sh
# ipyparallel's tests put profiles in tempfile's directory: keep them in the student's private one
export TMPDIR={workdir}/tmp PYTHONDONTWRITEBYTECODE=1
mkdir -m 700 "$TMPDIR"
exec {python} -m pytest -c {repo}/setup.cfg --rootdir={repo} -p ipyparallel.tests.conftest -p no:cacheprovider \\
    -q -rfE --durations=5 --junitxml={workdir}/junit.xml {select} {cases}
"""


def _results(junit: Path) -> dict[str, str]:
    results = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = kind
        results[case.get("name")] = outcome
    return results


def test_the_upstream_tests_are_the_installed_wheels_unmodified():
    dist = importlib.metadata.distribution("ipyparallel")
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    [pin] = [Requirement(line) for line in cfg["options"]["install_requires"].split("\n") if line.startswith("ipyparallel")]
    assert dist.version in pin.specifier, f"ipyparallel {dist.version} is outside setup.cfg's {pin}"
    recorded = {str(f): f for f in dist.files or ()}
    for name in UPSTREAM_FILES:
        entry = recorded[f"ipyparallel/tests/{name}"]
        assert entry.hash is not None and entry.hash.mode == "sha256", entry
        digest = base64.urlsafe_b64encode(hashlib.sha256(Path(entry.locate()).read_bytes()).digest()).rstrip(b"=").decode()
        assert digest == entry.hash.value, f"{entry.locate()} differs from ipyparallel {dist.version}'s wheel"


@pytest.mark.parametrize(
    ("ntasks", "sbatch_args", "expected"),
    [
        (6, ("--overcommit",), ALL),
        (4, (), [t for t in ALL if t not in FIVE_ENGINES]),
    ],
    ids=["sbatch -n 6 --overcommit", "sbatch -n 4"],
)
def test_ipyparallels_cluster_tests_pass_with_srun_engines_in_a_students_job(slurm_lab, ntasks, sbatch_args, expected):
    user = require_student()
    workdir = student_workdir(user)
    left_out = [t for t in ALL if t not in expected]
    select = f"-k '{' and '.join(f'not {t}' for t in left_out)}'" if left_out else ""
    script = SCRIPT.format(workdir=workdir, python=VENV_BIN / "python", repo=REPO, select=select, cases=CASES)
    job = submit_job(user, workdir, script, ntasks, engines=None, sbatch_args=sbatch_args)
    try:
        started = time.monotonic()
        wait_until(lambda: job_state(job) == "", 300, f"ipyparallel's tests in job {job} to finish", 0.5)
        log = (workdir / "job.log").read_text(errors="replace")
        junit = workdir / "junit.xml"
        assert junit.exists(), f"job {job} wrote no JUnit report; its log:\n{log[-6000:]}"
        results = _results(junit)
        summary = log.strip().splitlines()[-1] if log.strip() else ""
        print(f"job {job} (sbatch -n {ntasks} {' '.join(sbatch_args)}): {summary} [{time.monotonic() - started:.0f}s]")
        assert results == dict.fromkeys(expected, "passed"), f"{results}\n--- job log (tail) ---\n{log[-8000:]}"
    finally:
        cancel_and_wait(job)
        shutil.rmtree(workdir, ignore_errors=True)
