"""ipyparallel's own cluster tests, rerun with ``engine_launcher_class = "srun"``.

Not a test module of the rcsc3 suite (its name does not match ``test_*.py``):
test_ipyparallel_suite.py runs it *inside* real Slurm jobs of a student, as

    python -m pytest -p ipyparallel.tests.conftest tests/engines/ipp_srun_cases.py

exactly as ipyparallel's ``tests/test_slurm.py`` and ``tests/test_mpi.py`` rerun the
generic tests of ``tests/test_cluster.py`` for their launchers: import the tests,
override the ``engine_launcher_class`` fixture. The tests come unmodified from the
installed ipyparallel wheel (it ships ``ipyparallel/tests``), whose files
test_ipyparallel_suite.py checks against the wheel's RECORD hashes; setup.cfg pins
the version range. See test_ipyparallel_suite.py for which tests and why.
"""

from __future__ import annotations

import pytest
from ipyparallel.tests.test_cluster import (  # noqa: F401  (collected from here)
    test_async_with,
    test_cluster_manager_notice_stop,
    test_cluster_repr,
    test_default_from_file,
    test_get_output,
    test_restart_engines,
    test_signal_engines,
    test_start_and_connect_activate,
    test_start_stop_cluster,
    test_start_stop_engines,
    test_sync_with,
    test_to_from_dict,
    test_wait_for_engines_crash,
)


@pytest.fixture
def engine_launcher_class() -> str:
    """Overrides ipyparallel's conftest fixture ('local'): every Cluster the tests build uses srun."""
    return "srun"
