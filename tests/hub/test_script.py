"""The batch script: every line the hub writes is one of ours."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcsc3_spawner.batch_script import JobSpec, ScriptError, render_batch_script
from rcsc3_spawner.options import parse_spawn_options
from rcsc3_spawner.profiles import DEFAULT_PROFILES, parse_profiles

PROFILES = parse_profiles(DEFAULT_PROFILES)


def spec(**kw):
    base = dict(job_name="rcsc3-student1", log_path="/home/student1/.rcsc3/logs/jupyter-%j.log",
                workdir="/home/student1", venv="/opt/rcsc3/venv",
                command=["/opt/rcsc3/venv/bin/batchspawner-singleuser", "/opt/rcsc3/venv/bin/jupyterhub-singleuser"])
    base.update(kw)
    return JobSpec(**base)


def test_script_requests_what_the_form_chose():
    req = parse_spawn_options({"gpus": 2, "cpus": 3, "memory": 6, "walltime": "1:15"}, PROFILES, None)
    script = render_batch_script(req, spec())
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=rcsc3-student1",
        "#SBATCH --partition=interactive",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=3",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=6G",
        "#SBATCH --time=1:15:00",
        "#SBATCH --no-requeue",  # a failed node's server must end, not come back with a stale token
        "#SBATCH --gres=gpu:2",
        "#SBATCH --output=/home/student1/.rcsc3/logs/jupyter-%j.log",
        "#SBATCH --chdir=/home/student1",
        "#SBATCH --export=ALL",
    ]
    assert "export RCSC3_ENGINES=2" in script
    assert "PATH=/opt/rcsc3/venv/bin:" in script
    assert script.rstrip().endswith("exec /opt/rcsc3/venv/bin/batchspawner-singleuser /opt/rcsc3/venv/bin/jupyterhub-singleuser")


def test_example_notebooks_are_copied_once():
    req = parse_spawn_options({}, PROFILES, None)
    source = "/opt/rcsc3/venv/share/rcsc3/notebooks"
    script = render_batch_script(req, spec(examples_source=source, examples_target="rcsc3-notebooks"))
    assert ('if [ -d /opt/rcsc3/venv/share/rcsc3/notebooks ] && [ ! -e "$HOME"/rcsc3-notebooks ]; '
            'then cp -r /opt/rcsc3/venv/share/rcsc3/notebooks "$HOME"/rcsc3-notebooks || true; fi') in script
    for bad in ("../etc", "/etc", "a b", "x;id"):
        with pytest.raises(ScriptError):
            render_batch_script(req, spec(examples_source="/src", examples_target=bad))


def test_cpu_profile_asks_no_gpu():
    req = parse_spawn_options({"profile": "cpu"}, PROFILES, None)
    script = render_batch_script(req, spec())
    assert "--gres" not in script and "--partition=cpu" in script


@pytest.mark.parametrize("field, value", [
    ("job_name", "a\n#SBATCH --gres=gpu:2"), ("log_path", "/tmp/x y"), ("workdir", "/home/$(id)"),
])
def test_unsafe_directive_values_are_refused(field, value):
    req = parse_spawn_options({}, PROFILES, None)
    with pytest.raises(ScriptError):
        render_batch_script(req, spec(**{field: value}))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_command_words_stay_single_shell_words(word):
    """A weird server argument is quoted: it can neither add a line nor run a command."""
    req = parse_spawn_options({}, PROFILES, None)
    try:
        script = render_batch_script(req, spec(command=["/opt/rcsc3/venv/bin/jupyterhub-singleuser", f"--x={word}"]))
    except ScriptError:
        assert any(ord(c) < 32 or c in "\x7f\x85\u2028\u2029" for c in word)
        return
    last = script.rstrip("\n").splitlines()[-1]
    assert last.startswith("exec ") and len(script.splitlines()) == len(render_batch_script(req, spec()).splitlines())
    header = 1 + sum(line.startswith("#SBATCH") for line in render_batch_script(req, spec()).splitlines())
    assert not re.search(r"^#SBATCH", "\n".join(script.splitlines()[header:]), re.M)
