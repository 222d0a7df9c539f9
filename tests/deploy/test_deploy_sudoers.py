"""hub_config/sudoers.d/rcsc3 against what RcSC3Spawner really runs, with a real non-root account.

A copy of the shipped rules is installed for a throwaway hub account (`rcsc3hubtest`,
standing in for `jupyterhub`) and a throwaway group (`rcsc3dtstudents`, standing in for
`students`, with student1 in it). Then, as that account, `sudo -n -l -u USER ARGV...`
says whether sudo would run ARGV (without running it), and the submit, cancel and
log-tail commands are run for real against the lab Slurm.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: RCSC3_TEST_SUDOERS: test a site-adapted copy instead of the shipped file
SUDOERS = Path(os.environ.get("RCSC3_TEST_SUDOERS") or ROOT / "hub_config" / "sudoers.d" / "rcsc3")
HUB = "rcsc3hubtest"
GROUP = "rcsc3dtstudents"
STUDENT = "student1"  # in GROUP for the test
OTHER = "student2"  # not in GROUP
INSTALLED = Path("/etc/sudoers.d/zz-rcsc3-deploytest")
from needs import IN_CI  # noqa: E402

SUBMIT_SH = 'mkdir -p -m 700 -- "$1" && exec sbatch --parsable'


def submit_argv(log_dir: str) -> list[str]:
    """As RcSC3Spawner.submit_batch_script (after the sudo prefix)."""
    return ["/bin/sh", "-c", SUBMIT_SH, "sh", log_dir]


def run(argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None)
    if not path:
        if IN_CI:
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} is not installed")
    return path


def test_shipped_file_parses() -> None:
    res = run([need("visudo"), "-c", "-f", str(SUDOERS)])
    assert res.returncode == 0 and "parsed OK" in res.stdout, res.stdout + res.stderr


def test_the_rules_name_what_the_spawner_runs() -> None:
    """The hub's sudo prefix is the spawner's default; the rules name the commands it builds."""
    from rcsc3_spawner.spawner import RcSC3Spawner

    assert RcSC3Spawner().submit_prefix == ["sudo", "-u", "{username}", "--"]
    text = SUDOERS.read_text()
    spawner_src = (ROOT / "rcsc3_spawner" / "spawner.py").read_text()
    assert repr(SUBMIT_SH) in spawner_src or f"'{SUBMIT_SH}'" in spawner_src, "the spawner's submit command changed"
    for needle in ("sbatch --parsable", "/usr/bin/scancel", "--batch --signal\\=TERM", "--signal\\=KILL", "/usr/bin/tail"):
        assert needle in text or needle.replace("\\=", "=") in text, needle
    assert "NOPASSWD" in text and "!root" in text
    assert "SETENV" not in "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def localized_rules() -> str:
    """The shipped rules for the test account and group instead of jupyterhub and %students."""
    out = []
    for line in SUDOERS.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            line = re.sub(r"(?<![\w-])jupyterhub(?![\w-])", HUB, line)
            line = re.sub(r"%students\b", f"%{GROUP}", line)
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def hub_account():
    if os.geteuid() != 0:
        pytest.skip("installing sudoers rules and accounts needs root")
    visudo, useradd, groupadd = need("visudo"), need("useradd"), need("groupadd")
    for user in (STUDENT, OTHER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            if IN_CI:
                pytest.fail(f"{user} is missing: run `rcsc3 lab users`")
            pytest.skip(f"{user} is missing: run `rcsc3 lab users`")
    made = []
    try:
        pwd.getpwnam(HUB)
    except KeyError:
        subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", HUB], check=True)
        made.append("user")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run([groupadd, GROUP], check=True)
        made.append("group")
    subprocess.run(["gpasswd", "-a", STUDENT, GROUP], check=True, capture_output=True)
    tmp = INSTALLED.with_name(".rcsc3-deploytest.tmp")  # sudo ignores names with a dot
    tmp.write_text(localized_rules())
    tmp.chmod(0o440)
    res = run([visudo, "-c", "-f", str(tmp)])
    assert res.returncode == 0, res.stdout + res.stderr
    tmp.replace(INSTALLED)
    try:
        res = run([visudo, "-c"])
        assert res.returncode == 0, res.stdout + res.stderr
        yield HUB
    finally:
        INSTALLED.unlink(missing_ok=True)
        subprocess.run(["gpasswd", "-d", STUDENT, GROUP], capture_output=True)
        if "group" in made:
            subprocess.run(["groupdel", GROUP], capture_output=True)
        if "user" in made:
            subprocess.run(["userdel", HUB], capture_output=True)


def as_hub(*sudo_args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    runuser = need("runuser")
    return subprocess.run(
        [runuser, "-u", HUB, "--", "sudo", "-n", *sudo_args],
        capture_output=True, text=True, timeout=30, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env=env or {"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )


def allowed(user: str, argv: list[str]) -> bool:
    return as_hub("-u", user, "-l", *argv).returncode == 0


ALLOWED = {
    "submit": submit_argv("/home/student1/.rcsc3/logs"),
    "cancel": ["scancel", "1234"],
    "stop-term": ["scancel", "--batch", "--signal=TERM", "1234"],
    "stop-kill": ["scancel", "--signal=KILL", "1234"],
    "log-tail": ["tail", "-n", "30", "--", "/home/student1/.rcsc3/logs/jupyter-1234.log"],
}

DENIED = {
    "a shell": ["/bin/sh", "-c", "id"],
    "other programs": ["/usr/bin/id"],
    "squeue (the hub runs it as itself)": ["squeue"],
    # The -c text extended inside one argument: sudo joins the arguments with spaces
    # before matching, so a trailing `*` would accept this and sh would run `id`.
    "submit with a command appended": ["/bin/sh", "-c", SUBMIT_SH + " sh /tmp; id #"],
    "submit with a command glued to the path": ["/bin/sh", "-c", SUBMIT_SH + " sh /tmp;id"],
    "scancel of all the student's jobs": ["scancel", "-u", STUDENT],
    "tail -f": ["tail", "-n", "30", "-f", "--", "/home/student1/x.log"],
}


@pytest.mark.parametrize("name", list(ALLOWED))
def test_spawner_commands_are_allowed_as_a_student(hub_account, name: str) -> None:
    argv = ALLOWED[name]
    assert allowed(STUDENT, argv), f"sudo refuses what the spawner runs: {argv}"


@pytest.mark.parametrize("name", list(ALLOWED))
def test_never_as_root_or_outside_the_group(hub_account, name: str) -> None:
    assert not allowed("root", ALLOWED[name])
    assert not allowed(OTHER, ALLOWED[name])


@pytest.mark.parametrize("name", list(DENIED))
def test_nothing_else_is_allowed(hub_account, name: str) -> None:
    assert not allowed(STUDENT, DENIED[name]), f"sudo allows {DENIED[name]} ({name})"


@pytest.mark.slurm
def test_submit_tail_and_cancel_for_real(hub_account, slurm_lab) -> None:
    """The hub's exact commands through sudo: sbatch with the environment env_keep lets through, tail, scancel."""
    home = Path(pwd.getpwnam(STUDENT).pw_dir)
    log_dir = home / ".rcsc3" / "logs"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "RCSC3_PROBE": f"probe-{os.getpid()}", "JUPYTERHUB_PROBE": "hub",
           "OTHER_PROBE": "dropped"}
    script = (
        "#!/bin/bash\n#SBATCH --job-name=rcsc3-deploy-sudo\n#SBATCH --time=1\n#SBATCH --mem=16M\n"
        f"#SBATCH --output={log_dir}/deploytest-%j.log\n"
        'echo "probe=$RCSC3_PROBE hub=$JUPYTERHUB_PROBE other=${OTHER_PROBE:-none} user=$(id -un)"\n'
    )
    res = as_hub("-u", STUDENT, "--", *submit_argv(str(log_dir)), env=env, input=script)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    assert job.isdigit(), res.stdout
    log = log_dir / f"deploytest-{job}.log"
    try:
        assert (log_dir.stat().st_mode & 0o777) == 0o700 and log_dir.stat().st_uid == pwd.getpwnam(STUDENT).pw_uid
        deadline = time.monotonic() + 120
        tail = None
        while time.monotonic() < deadline:
            tail = as_hub("-u", STUDENT, "--", "tail", "-n", "5", "--", str(log), env=env)
            if tail.returncode == 0 and "probe=" in tail.stdout:
                break
            time.sleep(0.5)
        assert tail is not None and f"probe={env['RCSC3_PROBE']} hub=hub other=none user={STUDENT}" in tail.stdout, \
            (tail.stdout, tail.stderr)

        held = script.replace("#SBATCH --time=1\n", "#SBATCH --time=1\n#SBATCH --hold\n")
        res = as_hub("-u", STUDENT, "--", *submit_argv(str(log_dir)), env=env, input=held)
        assert res.returncode == 0, res.stderr
        held_job = res.stdout.strip().split(";")[0]
        res = as_hub("-u", STUDENT, "--", "scancel", held_job, env=env)
        assert res.returncode == 0, res.stderr
        def cancelled() -> bool:
            return run(["squeue", "-h", "-j", held_job, "-o", "%T"]).stdout.strip() in ("", "CANCELLED")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not cancelled():
            time.sleep(0.3)
        assert cancelled()
    finally:
        run(["scancel", job])
        for f in log_dir.glob("deploytest-*.log"):
            f.unlink(missing_ok=True)


def test_the_hub_account_cannot_set_the_environment_of_what_it_runs(hub_account) -> None:
    """Issue #15 §5. Failed on 92eed46 (SETENV): `sudo -u s LD_PRELOAD=... tail` ran the hub's code as the student."""
    log = "/home/student1/.rcsc3/logs/jupyter-1.log"
    res = as_hub("-u", STUDENT, "LD_PRELOAD=/tmp/rcsc3-evil.so", "tail", "-n", "1", "--", log)
    assert res.returncode != 0 and "not allowed to set the following environment variables" in res.stderr, res.stderr
    res = as_hub("-E", "-u", STUDENT, "--", "tail", "-n", "1", "--", log,
                 env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/tmp/rcsc3-evil.so"})
    assert res.returncode != 0 and "not allowed to preserve the environment" in res.stderr, res.stderr
