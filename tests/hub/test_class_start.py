"""`rcsc3 class start`: the teacher starts their course's servers before the lecture, with their own token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubproc import user_jobs

pytestmark = pytest.mark.slurm

RCSC3 = str(Path(sys.executable).parent / "rcsc3")


def test_the_teacher_starts_the_whole_course_and_nobody_else(stopped, hub):
    teacher = hub.login("teacher")
    for c in stopped.values():  # the course's group is filled at each student's login
        assert c.user_model()["name"] == c.username
    argv = [RCSC3, "class", "start", "viz2026", "--profile", "cpu", "--option", "cpus=1", "--option", "memory=1",
            "--option", "walltime=0:15", "--hub", hub.url, "--wait", "120"]
    res = subprocess.run(argv, env={**os.environ, "JUPYTERHUB_API_TOKEN": teacher.token}, capture_output=True, text=True,
                         timeout=200, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "student1: starting" in res.stdout and "student2: starting" in res.stdout
    assert "course viz2026: 2 students, 2 ready" in res.stdout
    assert stopped["student1"].server_model()["ready"] and stopped["student2"].server_model()["ready"]
    assert stopped["student1"].server_model()["user_options"]["profile"] == "cpu"
    assert stopped["student3"].server_model() is None and user_jobs("student3") == []
    # again: nothing new to start
    again = subprocess.run(argv, env={**os.environ, "JUPYTERHUB_API_TOKEN": teacher.token}, capture_output=True,
                           text=True, timeout=200, stdin=subprocess.DEVNULL)
    assert again.returncode == 0 and "student1: already running" in again.stdout
    # another course is refused, by the hub, with its reason
    other = subprocess.run([*argv[:3], "hpc2026", *argv[4:]], env={**os.environ, "JUPYTERHUB_API_TOKEN": teacher.token},
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert other.returncode == 1 and "course 'hpc2026'" in other.stderr and "Traceback" not in other.stderr


def test_without_a_token_it_says_where_to_get_one():
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_API_TOKEN"}
    res = subprocess.run([RCSC3, "class", "start", "viz2026"], env=env, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "/hub/token" in res.stderr
