"""The three packages stay apart: the hub side (`rcsc3_spawner`) and the node side (`rcsc3_proxy`)
never import each other, and neither imports the root-only lab (`rcsc3_lab`).

A hub host need not have the desktop's dependencies, a node needs nothing of the hub's, and
provisioning code (apt-get, mknod, /etc/slurm) must never be reachable from either. Checked two
ways: every import statement in the source, and what importing every module really loads.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rcsc3_spawner", "rcsc3_proxy", "rcsc3_lab")
#: package -> the packages it must not import
FORBIDDEN = {
    "rcsc3_spawner": {"rcsc3_proxy", "rcsc3_lab"},
    "rcsc3_proxy": {"rcsc3_spawner", "rcsc3_lab"},
    "rcsc3_lab": set(),
}
#: data files that look like modules but are read by other programs, never imported
NOT_MODULES = {"rcsc3_proxy.engines.ipcluster_config", "rcsc3_spawner.idle_culler_config"}


def imported_names(path: Path) -> set[str]:
    """Top-level package names of every absolute import in a source file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_no_source_file_imports_a_forbidden_package(package):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_names(path) & FORBIDDEN[package]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def all_modules(package: str) -> list[str]:
    pkg = __import__(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")]
    return [n for n in names if n not in NOT_MODULES]


@pytest.mark.parametrize("package", ["rcsc3_spawner", "rcsc3_proxy"])
def test_importing_every_module_loads_nothing_of_the_other_sides(package):
    # a fresh interpreter: this test process has imported everything already
    code = (
        "import importlib, json, sys\n"
        f"for name in {all_modules(package)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if m.startswith('rcsc3')})))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
    assert loaded & FORBIDDEN[package] == set(), loaded


def test_the_forbidden_import_check_sees_an_offender(tmp_path):
    # the checker itself: a node-side file importing the hub would be caught
    bad = tmp_path / "bad.py"
    bad.write_text("from rcsc3_spawner.spawner import RcSC3Spawner\nimport os\n")
    assert imported_names(bad) & FORBIDDEN["rcsc3_proxy"] == {"rcsc3_spawner"}
