"""The deploy guide, replayed literally on the multi-host lab (tests/cluster/replay_deploy.py).

The script does what docs/deploy.md tells an admin (a non-root `jupyterhub` account on the hub
host, the shipped sudo rules, the epilog where the guide puts it, the production hub config with
the guide's environment variables), says where it cannot follow the guide literally here, and a
student's spawn must succeed through that hub. Afterwards nothing it made may be left.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
SCRIPT = Path(__file__).resolve().parent / "replay_deploy.py"


def test_the_deploy_guide_replayed_gives_a_working_hub(cluster):
    accounts_before = {u.pw_name for u in pwd.getpwall()}
    students_before = next((g.gr_mem for g in grp.getgrall() if g.gr_name == "students"), None)
    shadow_before = grp.getgrnam("shadow").gr_mem
    conf_before = Path(cluster.conf).read_text()
    made = [Path("/etc/sudoers.d/rcsc3"), Path("/etc/rcsc3")]
    existed = [p.exists() for p in made]
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    print(res.stdout[-6000:])
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    out = res.stdout
    for section in ("§1 ", "§2 ", "§3 ", "§6.3 ", "§6.4 ", "§6.5 ", "§6.7 ", "A student's spawn"):
        assert f"== {section}" in out, section
    assert "its processes run as jupyterhub" in out
    assert "stopped: the hub cancelled job" in out and "after the guide's epilog" in out
    # where it could not be literal, it said so; the guide fix it found is in the guide
    assert out.count("NOT LITERAL:") >= 5
    assert "GUIDE FIXED:" not in out or "usermod -aG shadow jupyterhub" in (
        Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    # and it undid everything
    assert {u.pw_name for u in pwd.getpwall()} == accounts_before
    assert next((g.gr_mem for g in grp.getgrall() if g.gr_name == "students"), None) == students_before
    assert grp.getgrnam("shadow").gr_mem == shadow_before
    assert Path(cluster.conf).read_text() == conf_before
    assert [p.exists() for p in made] == existed
