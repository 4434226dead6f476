"""The benchmark scripts run end to end with ``--quick`` and write results that parse.

No timing is asserted here: the scripts compare methods side by side and report ratios, which
only mean something on a quiet machine at full size. The three scripts run in parallel
subprocesses (most of their quick runtime is importing torch, sklearn and skorch).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = {
    "bench_fit": ["bench_fit_targets.csv", "bench_fit_tutorial.csv", "bench_fit_poly.csv",
                  "bench_fit_overhead.csv"],
    "bench_memory": ["bench_memory_targets.csv", "bench_memory.csv"],
    "bench_gridsearch": ["bench_gridsearch_targets.csv", "bench_gridsearch.csv",
                         "bench_gridsearch_candidates.csv"],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skorch")
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for name in SCRIPTS
    }
    results = {}
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        results[name] = (proc.returncode, output)
    return out, results


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_quick_run_writes_parsable_results(quick_runs, name):
    out, results = quick_runs
    returncode, output = results[name]
    assert returncode == 0, f"{name}.py --quick failed:\n{output[-4000:]}"

    md = (out / f"{name}.md").read_text()
    assert md.startswith(f"# {name}")
    assert "## Targets" in md and "## Checks" in md
    assert "**FAIL**" not in md

    for csv_name in SCRIPTS[name]:
        with open(out / csv_name, newline="") as f:
            rows = list(csv.reader(f))
        assert len(rows) >= 2, csv_name
        assert all(len(row) == len(rows[0]) for row in rows), csv_name

    png = (out / f"{name}.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) < 300_000

    data = json.loads((out / f"{name}.json").read_text())
    assert data["env"]["commit"]
