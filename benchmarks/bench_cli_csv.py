"""Time and peak memory of the CLI reading a large numeric CSV: the previous reader vs today's.

Task: ``python -m autopoly fit data.csv --target y`` on a generated CSV of ``n`` rows x 11
numeric columns (10 features and the target, written with 17 significant digits: 221 MB for
1e6 rows). Target: the CLI's peak resident memory grows by less than 3x the numbers' own size
(3 x n x 11 x 8 bytes, 264 MB for 1e6 rows) over the interpreter with its imports, and the
command is faster than with the previous reader.

Two readers, each in a fresh process (this script calling itself with ``--child``):

* ``previous``: the reader of autopoly 0.2 (``_previous_read_csv`` below, as it was in
  ``autopoly/_csv.py``): Python's csv module, every row kept as a list of strings, then one
  ``float()`` per cell;
* ``loadtxt``: today's :func:`autopoly._csv.read_csv`, numpy.loadtxt's C parser 16 MiB of text
  at a time, straight into the final arrays.

Each is measured twice: reading alone, and the whole ``fit`` command with that reader (the same
fit, so the difference is the reader's). Memory is the child's ``VmHWM``, reset with
``/proc/self/clear_refs`` after the imports, minus its resident memory at that point. The
check: both readers give bit-identical arrays and the command prints identical coefficients.

Run ``python benchmarks/bench_cli_csv.py`` (a few minutes; ``--quick`` for seconds).
"""

import contextlib
import csv
import hashlib
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np

TITLE = "bench_cli_csv: the CLI on a large numeric CSV"
N_COLUMNS = 11
READERS = ("previous", "loadtxt")
TASKS = ("read", "cli")


# ------------------------------------------------------------------------ the previous reader


def _previous_read_csv(path, target, features=None, sep=","):
    """The reader of autopoly 0.2, messages left out: every row as strings, then floats."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = [name.strip() for name in next(reader)]
        records = [(reader.line_num, row) for row in reader if row]
    if features is None:
        features = [name for name in header if name != target]
    for line, row in records:
        if len(row) != len(header):
            raise ValueError(f"line {line} has {len(row)} fields")
    columns = {}
    for name in [*features, target]:
        index = header.index(name)
        columns[name] = np.array([_previous_number(row[index]) for _, row in records])
    X = np.column_stack([columns[name] for name in features])
    return X, columns[target], list(features)


def _previous_number(cell):
    text = cell.strip()
    if not text:
        raise ValueError("an empty value")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the non-finite value {text!r}")
    return value


def _previous_table(path, target, features=None, sep=",", encoding=None):
    from autopoly._csv import Table

    X, y, names = _previous_read_csv(path, target, features, sep)
    return Table(X=X, y=y, features=tuple(names), parser="Python's csv module (previous)")


# ------------------------------------------------------------------------------- the child


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def high_water_mark():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def reset_high_water_mark():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(reader, task, path):
    """One fresh process: import everything, then read (or run the command) once."""
    from autopoly import _cli
    from autopoly._csv import read_csv
    from autopoly._regressor import TorchPolyRegressor

    # Imports and lazy initialization (torch's first fit) belong to the baseline.
    TorchPolyRegressor(degree=1).fit(np.arange(6.0).reshape(-1, 1), np.arange(6.0))
    read = _previous_table if reader == "previous" else read_csv
    baseline = rss_bytes()
    exact = reset_high_water_mark()
    start, cpu = time.perf_counter(), time.process_time()
    if task == "read":
        table = read(path, "y")
        digest = hashlib.sha256(np.ascontiguousarray(table.X).data)  # no copy: X is C-ordered
        digest.update(table.y.data)
        output = digest.hexdigest()
    else:
        _cli.read_csv = read
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = _cli.main(["fit", path, "--target", "y"])
        if status != 0:
            raise SystemExit(f"the fit command failed with status {status}")
        text = out.getvalue()
        output = text[text.index("term") : text.index("R^2")]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = high_water_mark()
    print(
        json.dumps(
            {
                "reader": reader,
                "task": task,
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "baseline_rss": baseline,
                "peak_rss": peak,
                "peak_exact": exact,
                "output": output,
            }
        )
    )


def run_child(reader, task, path, threads):
    cmd = [sys.executable, __file__, "--child", reader, task, str(path)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{reader} {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- the parent


def write_data(path, n_rows, seed=0):
    """``n_rows`` x 11: ten Gaussian features and a quadratic target with noise."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(N_COLUMNS - 1)] + ["y"]) + "\n")
        for start in range(0, n_rows, 100_000):
            X = rng.standard_normal((min(100_000, n_rows - start), N_COLUMNS - 1))
            y = 1 + X[:, 0] - 2 * X[:, 1] * X[:, 2] + 0.5 * X[:, 3] ** 2
            y += 0.1 * rng.standard_normal(len(y))
            np.savetxt(f, np.column_stack([X, y]), delimiter=",", fmt="%.17g")


def main():
    args, _, out, env = C.start(__doc__)
    n_rows = 20_000 if args.quick else 1_000_000
    repeat = args.repeat or 1
    numbers = n_rows * N_COLUMNS * 8
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        write_data(path, n_rows)
        file_size = path.stat().st_size
        print(
            f"{n_rows} rows x {N_COLUMNS} columns: {file_size / 1e6:.0f} MB of text, "
            f"{numbers / 1e6:.0f} MB of numbers"
        )
        runs = {(reader, task): [] for task in TASKS for reader in READERS}
        for _ in range(repeat):  # interleaved: a burst of load hits both readers alike
            for task in TASKS:
                for reader in READERS:
                    result = run_child(reader, task, path, args.threads)
                    runs[reader, task].append(result)
                    print(
                        f"{reader:>8} {task:>4}: {result['seconds']:.2f} s, peak "
                        f"{result['peak_rss'] / 1e6:.0f} MB (+"
                        f"{(result['peak_rss'] - result['baseline_rss']) / 1e6:.0f} MB)"
                    )
    env["load average at end (1, 5, 15 min)"] = C.loadavg()

    def best(reader, task):
        results = runs[reader, task]
        fastest = min(results, key=lambda r: r["seconds"])
        growth = min(r["peak_rss"] - r["baseline_rss"] for r in results)
        return fastest, growth

    rows, summary = [], {}
    for task in TASKS:
        for reader in READERS:
            fastest, growth = best(reader, task)
            summary[reader, task] = (fastest["seconds"], growth, fastest["peak_rss"])
            rows.append(
                (
                    "fit command" if task == "cli" else "reading alone",
                    "previous (csv module, rows as strings)"
                    if reader == "previous"
                    else "numpy.loadtxt in 16 MiB chunks",
                    fastest["seconds"],
                    min(r["cpu_seconds"] for r in runs[reader, task]),
                    fastest["peak_rss"] / 1e6,
                    growth / 1e6,
                    growth / numbers,
                )
            )
    same_arrays = (
        len({r["output"] for r in runs["previous", "read"] + runs["loadtxt", "read"]}) == 1
    )
    same_fit = len({r["output"] for r in runs["previous", "cli"] + runs["loadtxt", "cli"]}) == 1
    checks = [
        ("identical arrays", same_arrays, "SHA-256 of X and y from both readers"),
        ("identical coefficients", same_fit, "the fit command's coefficient table"),
    ]
    cli_new, cli_old = summary["loadtxt", "cli"], summary["previous", "cli"]
    targets = [
        (
            "fit command: peak memory growth < 3x the numbers",
            f"{cli_new[1] / numbers:.2f}x",
            "3x",
            cli_new[1] < 3 * numbers,
        ),
        (
            "fit command faster than with the previous reader",
            f"{cli_new[0]:.2f} s vs {cli_old[0]:.2f} s",
            "< 1x",
            cli_new[0] < cli_old[0],
        ),
    ]
    header = [
        "task",
        "reader",
        "time (s)",
        "CPU time (s)",
        "peak RSS (MB)",
        "growth (MB)",
        "growth / numbers",
    ]
    C.write_csv(out / "bench_cli_csv.csv", header, rows)
    C.write_csv(out / "bench_cli_csv_targets.csv", *C.targets_table(targets))
    md = [
        f"# {TITLE}",
        "",
        f"{n_rows} rows x {N_COLUMNS} numeric columns: {file_size / 1e6:.0f} MB of CSV text, "
        f"{numbers / 1e6:.0f} MB of float64 numbers. Best of {repeat} run(s) per reader, "
        "each in a fresh process. *CPU time*: the process's, all threads (steadier than the "
        "wall-clock time on a loaded machine). *Growth*: the peak resident memory (VmHWM) above "
        "the process's size after its imports (torch, scikit-learn, autopoly) and one small fit.",
        "",
        C.markdown_table(header, rows),
        "",
        "## Targets",
        "",
        C.markdown_table(*C.targets_table(targets)),
        "",
        "## Checks",
        "",
        C.checks_markdown(checks),
        "",
        "## Environment",
        "",
        C.environment_markdown(env),
        "",
    ]
    (out / "bench_cli_csv.md").write_text("\n".join(md))
    C.dump_json(
        out / "bench_cli_csv.json",
        {
            "env": env,
            "n_rows": n_rows,
            "numbers_bytes": numbers,
            "file_bytes": file_size,
            "runs": {f"{reader} {task}": results for (reader, task), results in runs.items()},
            "targets": targets,
            "checks": checks,
        },
    )
    plot(out / "bench_cli_csv.png", summary, numbers, n_rows)
    print("\n".join(md[: 6 + len(rows)]))
    C.finish(checks)


def plot(path, summary, numbers, n_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    labels = ["reading", "fit command"]
    x = np.arange(len(TASKS))
    for offset, reader, color in ((-0.2, "previous", "tab:gray"), (0.2, "loadtxt", "tab:blue")):
        name = "previous reader" if reader == "previous" else "numpy.loadtxt in chunks"
        left.bar(x + offset, [summary[reader, t][0] for t in TASKS], 0.4, label=name, color=color)
        right.bar(x + offset, [summary[reader, t][1] / 1e6 for t in TASKS], 0.4, color=color)
    right.axhline(3 * numbers / 1e6, color="tab:red", linestyle="--", label="3x the numbers")
    for ax, title in ((left, "time (s)"), (right, "peak memory growth (MB)")):
        ax.set_xticks(x, labels)
        ax.set_title(title)
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(f"CLI on a {n_rows:g}-row x {N_COLUMNS} numeric CSV", fontsize=10)
    C.save_figure(fig, path)


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        if "--threads" in sys.argv:
            C.apply_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
        child(*sys.argv[i + 1 : i + 4])
    else:
        main()
