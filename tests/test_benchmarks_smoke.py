"""The benchmark scripts run end to end with ``--quick`` and write results that parse.

No timing is asserted here: the scripts compare methods side by side and report ratios, which
only mean something on a quiet machine at full size. One test starts the scripts as
parallel subprocesses (most of their quick runtime is importing torch and scikit-learn), so
that ``pytest -n`` never runs them twice. skorch, a peer in ``bench_fit.py``, is optional: the
script leaves its rows out when it is not installed.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Each benchmark script runs in a subprocess that imports torch and sklearn: minutes in all.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = {
    "bench_fit": [
        "bench_fit_targets.csv",
        "bench_fit_tutorial.csv",
        "bench_fit_poly.csv",
        "bench_fit_overhead.csv",
    ],
    "bench_memory": ["bench_memory_targets.csv", "bench_memory.csv"],
    "bench_gridsearch": [
        "bench_gridsearch_targets.csv",
        "bench_gridsearch.csv",
        "bench_gridsearch_candidates.csv",
        "bench_gridsearch_splits.csv",
    ],
    "bench_solvers": ["bench_solvers_targets.csv", "bench_solvers.csv"],
    "bench_cv": ["bench_cv_targets.csv", "bench_cv.csv", "bench_cv_candidates.csv"],
    "bench_cli_csv": ["bench_cli_csv_targets.csv", "bench_cli_csv.csv"],
    "bench_startup": [
        "bench_startup_targets.csv",
        "bench_startup.csv",
        "bench_startup_first_fit.csv",
    ],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_runs_write_parsable_results(tmp_path):
    pytest.importorskip("matplotlib")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--out", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for name in SCRIPTS
    }
    outputs = {}
    for name, proc in procs.items():
        try:
            outputs[name] = proc.communicate(timeout=300)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            outputs[name] = proc.communicate()[0] + "\n(killed after 300 s)"

    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}.py --quick failed:\n{outputs[name][-4000:]}"

        md = (tmp_path / f"{name}.md").read_text()
        assert md.startswith(f"# {name}")
        assert "## Targets" in md and "## Checks" in md
        assert "**FAIL**" not in md

        for csv_name in SCRIPTS[name]:
            with open(tmp_path / csv_name, newline="") as f:
                rows = list(csv.reader(f))
            assert len(rows) >= 2, csv_name
            assert all(len(row) == len(rows[0]) for row in rows), csv_name

        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC)
        assert len(png) < 300_000

        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["env"]["commit"]
