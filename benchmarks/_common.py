"""Shared helpers for the benchmark scripts: data, exact optima, timing, memory and output.

Every script compares autopoly with its peers in the same run and reports ratios; absolute
times move with the machine (and with whatever else it is running), ratios much less. Times
are the minimum over interleaved repetitions (A B C A B C ...), so that a burst of load from
another process hits every method alike and the minimum is the undisturbed cost.
"""

import argparse
import csv
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent


def parser(description):
    """The command line every script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and one repetition: runs in seconds (used by the smoke test)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help=f"folder for the Markdown, CSV and PNG results (default: {RESULTS})",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="device for autopoly's fits: 'cpu' (default) or 'cuda'; peers run on the CPU",
    )
    p.add_argument("--repeat", type=int, default=None, help="timed repetitions per method")
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated names of the tasks to run (default: all; see the script's doc)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit every library (torch, OpenBLAS, OpenMP) to this many threads; default: "
        "each library's own choice",
    )
    return p


def apply_threads(threads):
    """Limit torch's and the BLAS/OpenMP thread pools for the rest of the process.

    Returns a description for the report. Limiting to one thread compares the methods' work
    without their threading; it also shields torch from the slowdown its OpenMP threads suffer
    when the machine is loaded by other processes (see ``profile_fit.py``).
    """
    if threads is None:
        apply_threads.description = "each library's default"
        return apply_threads.description
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    # Kept alive for the whole process on purpose: the limit must outlast this call.
    apply_threads.limits = threadpool_limits(limits=threads)
    apply_threads.description = f"limited to {threads} (torch.set_num_threads, threadpoolctl)"
    return apply_threads.description


def check_device(device):
    """Exit with a clear message when the requested device does not exist here."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            f"--device {device} was requested but CUDA is not available on this machine; "
            "run on a machine with a CUDA GPU, or use --device cpu."
        )
    return device


def environment():
    """What the numbers were measured on: versions, threads, BLAS variables, load, commit."""
    from importlib.metadata import version

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "autopoly"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " (autopoly/ has uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": commit,
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "python": platform.python_version(),
        "torch": version("torch")
        + (
            f" ({sys.modules['torch'].get_num_threads()} intra-op threads)"
            if "torch" in sys.modules
            else ""
        ),
        "numpy": np.__version__,
        "scikit-learn": version("scikit-learn"),
        "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE": " / ".join(
            os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        ),
        "load average at start (1, 5, 15 min)": loadavg(),
        "threads": getattr(apply_threads, "description", "each library's default"),
    }


def loadavg():
    """The machine's load: other processes' work slows every method, autopoly's threads most."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def environment_markdown(env):
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    return "\n".join(lines)


def interleaved(methods, repeat, warmup=True):
    """Time each ``name -> callable`` ``repeat`` times, round-robin; return times and results.

    With ``warmup``, each method first runs once untimed (imports, lazy initialization, caches).
    Returns ``{name: {"times": [...], "result": last return value}}``.
    """
    out = {name: {"times": [], "result": None} for name in methods}
    if warmup:
        for fn in methods.values():
            fn()
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            result = fn()
            out[name]["times"].append(time.perf_counter() - start)
            out[name]["result"] = result
    return out


def ls_optimum(A, y):
    """Mean squared residual of the least-squares fit of ``y`` on the columns of ``A``."""
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(np.mean((A @ coef - y) ** 2)), coef


def relative_excess(mse, optimum, variance):
    """``(mse - optimum) / optimum`` (None when the optimum is zero) and ``/ variance``."""
    rel_opt = (mse - optimum) / optimum if optimum > 1e-12 * variance else None
    return rel_opt, (mse - optimum) / variance


def fmt(x, digits=3):
    """Compact number formatting for tables."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _md_cell(x):
    """A table cell; a literal ``|`` (as in ``|gap|``) would end the cell, so it is escaped."""
    return fmt(x).replace("|", "\\|")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets):
    """Header and rows for ``(target, measured, threshold, met or None)`` tuples."""
    rows = [(t[0], t[1], t[2], "not run" if t[3] is None else t[3]) for t in targets]
    return ["target", "measured", "threshold", "met"], rows


def write_csv(path, header, rows):
    """The same table for ``docs/benchmarks.rst`` (``csv-table :file:``).

    The docs parse every cell as reStructuredText, where ``|name|`` is a substitution
    (an error in the docs build), so a ``|`` in a cell is refused here, where it is made.
    """
    for c in [*header, *(c for row in rows for c in row)]:
        if isinstance(c, str) and "|" in c:
            raise ValueError(f"CSV cell {c!r} has a '|' (a substitution in the docs); reword it")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[fmt(c) for c in row] for row in rows])
    path.write_text(buf.getvalue())


def save_figure(fig, path):
    """A small PNG (the committed results must stay well under 300 KB)."""
    fig.savefig(path, dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def start(doc):
    """The common start of a benchmark: options, device, output folder, threads, environment.

    Returns ``(args, device, out, env)`` after printing the environment.
    """
    args = parser(doc.split("\n")[0]).parse_args()
    device = check_device(args.device)
    out = prepare_out(args.out)
    apply_threads(args.threads)
    env = environment()
    print(environment_markdown(env))
    return args, device, out, env


def prepare_out(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def finish(checks):
    """Print the checks and exit non-zero if any failed (after the results were written)."""
    failed = [c for c in checks if not c[1]]
    for name, ok, detail in checks:
        print(f"[{'ok' if ok else 'FAILED'}] {name}: {detail}")
    if failed:
        sys.exit(f"{len(failed)} check(s) failed; the results were written all the same.")


def report_head(title, generated, env, targets):
    """The first lines of a benchmark's Markdown report: its title, how it was generated (the
    command and what the timings mean), the environment and the targets table.
    """
    return [
        f"# {title}",
        "",
        generated,
        "",
        environment_markdown(env),
        "",
        "## Targets",
        "",
        markdown_table(*targets_table(targets)),
        "",
    ]


def write_report(out, name, md, targets):
    """``name.md`` (the report's lines) and ``name_targets.csv`` (its targets, for the docs)."""
    (out / f"{name}.md").write_text("\n".join(md))
    write_csv(out / f"{name}_targets.csv", *targets_table(targets))


def checks_markdown(checks):
    rows = [(name, "pass" if ok else "**FAIL**", detail) for name, ok, detail in checks]
    return markdown_table(["check", "result", "detail"], rows)


def dump_json(path, obj):
    path.write_text(json.dumps(obj, indent=1, default=float))
