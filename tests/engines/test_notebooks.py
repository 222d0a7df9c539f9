"""The shipped notebooks, executed with nbclient by a student inside a real Slurm allocation."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
from engines_harness import (
    READ_ONLY_CWD,
    VENV_BIN,
    cancel_and_wait,
    job_state,
    require_student,
    student_workdir,
    submit_job,
    wait_until,
)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

RUNNER = textwrap.dedent(
    """\
    #!/bin/sh
    exec {python} - <<'EOF'
    import nbclient, nbformat
    nb = nbformat.read("{src}", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={{"metadata": {{"path": "{cwd}"}}}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, "{out}")
    EOF
    """
)


def _text(nb) -> str:
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                chunks.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                chunks.append(out.data.get("text/plain", ""))
            elif out.output_type == "error":
                chunks.append(f"ERROR {out.ename}: {out.evalue}")
    return "\n".join(chunks)


@pytest.fixture
def run_notebook(slurm_lab):
    user = require_student()
    jobs: list[tuple[str, Path]] = []

    def run(name: str, ntasks: int, engines: int, env: dict[str, str] | None = None):
        workdir = student_workdir(user)
        src = workdir / name
        shutil.copy(NOTEBOOKS / name, src)
        shutil.chown(src, user=user)
        out = workdir / f"executed-{name}"
        script = RUNNER.format(python=VENV_BIN / "python", src=src, out=out, cwd=READ_ONLY_CWD)
        job = submit_job(user, workdir, script, ntasks, engines, extra_env=env)
        jobs.append((job, workdir))
        wait_until(lambda: job_state(job) == "", 600, f"notebook job {job} to finish", 0.5)
        log = (workdir / "job.log").read_text()
        assert out.exists(), f"{name} was not written; job log:\n{log}"
        nb = nbformat.read(out, as_version=4)
        text = _text(nb)
        assert "ERROR" not in text and "Traceback" not in log, f"{text}\n{log}"
        return nb, text

    yield run
    for job, workdir in jobs:
        cancel_and_wait(job)
        shutil.rmtree(workdir, ignore_errors=True)


def test_getting_started_runs_in_a_slurm_allocation(run_notebook):
    _nb, text = run_notebook("getting-started.ipynb", ntasks=3, engines=2)
    assert "c on every engine: [42, 42]" in text
    assert "-> total 45" in text
    assert "engine step:" in text and "ipengine" in text


def test_parallel_mandelbrot_matches_serial_and_plots(run_notebook):
    nb, text = run_notebook("parallel-mandelbrot.ipynb", ntasks=3, engines=2, env={"MANDEL_SIZE": "240x120"})
    assert "parallel result equals serial: True" in text
    assert "2 engine(s):" in text and "speedup" in text
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    assert "M" in text and "#" in text  # the ASCII fractal was printed
