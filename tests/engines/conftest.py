"""Fixtures of the engine tests; the harness lives in engines_harness.py (a unique module name,
so `from engines_harness import ...` never picks up another directory's conftest)."""

from engines_harness import job_kernel  # noqa: F401  (fixture)
