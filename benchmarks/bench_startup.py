"""Cold start: a fresh ``python -m autopoly`` against importing torch and scikit-learn.

Tasks
-----
cold start
    Each command runs in a fresh Python process, interleaved (A B C A B C ...), and the
    median wall time of the repetitions is reported:

    - ``python -c "import torch, sklearn.linear_model"``: the floor, what any script that uses
      both libraries pays before its first line of work;
    - ``python -c "import autopoly"``;
    - ``python -m autopoly``: the demo, end to end (imports, two fits of the tutorial problem,
      the printed table).

    Target: the demo takes at most 1.3x the floor.
first fit
    In one process (timed from inside): ``import autopoly`` after torch and scikit-learn, the
    first fit of the tutorial problem and a second one. The first fit used to import torch's
    compiler stack (``torch._dynamo``, when the first ``torch.optim`` optimizer is built); the
    check is that the default fit does not, and that ``import autopoly`` imports no optional
    dependency (dask, matplotlib, skops) nor the compiler stack.

Run ``python benchmarks/bench_startup.py`` (``--quick`` for a seconds-long smoke run, ``--repeat``
for the number of fresh processes per command, default 5); results go to
``benchmarks/results/bench_startup.{md,png}`` and CSV tables beside them.
"""

import json
import subprocess
import sys
import time

import _common as C
import numpy as np

TITLE = "bench_startup: cold start of python -m autopoly against importing torch and sklearn"

FLOOR = "python -c 'import torch, sklearn.linear_model'"
COMMANDS = {
    FLOOR: ["-c", "import torch, sklearn.linear_model"],
    "python -c 'import autopoly'": ["-c", "import autopoly"],
    "python -m autopoly (the demo)": ["-m", "autopoly"],
}

# Run in a fresh process: what the first fit costs, and what it imports.
PROBE = r"""
import json, sys, time
import numpy as np
import torch, sklearn.base
start = time.perf_counter()
import autopoly
imported = time.perf_counter() - start
after_import = set(sys.modules)
x = 5 * np.random.default_rng(0).standard_normal(20)
X, y = x.reshape(-1, 1), x**2 + 2 * x + 3
start = time.perf_counter()
autopoly.TorchPolyRegressor(degree=2).fit(X, y)
first = time.perf_counter() - start
start = time.perf_counter()
autopoly.TorchPolyRegressor(degree=2).fit(X, y)
second = time.perf_counter() - start
watched = ["torch._dynamo", "sympy", "dask", "matplotlib", "skops", "autopoly._cli"]
print(json.dumps({
    "import": imported, "first": first, "second": second,
    "after_import": [m for m in watched if m in after_import],
    "after_fit": [m for m in watched if m in sys.modules],
}))
"""


def run(args):
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=C.REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main():
    args, device, out, env = C.start(__doc__)
    repeat = args.repeat or (1 if args.quick else 5)
    checks, targets, sections, csvs = [], [], [], {}

    if not args.quick:
        # Warm the page cache once for every command (a cold disk is not what is measured).
        for argv in COMMANDS.values():
            run(argv)
    times = {name: [] for name in COMMANDS}
    for _ in range(repeat):
        for name, argv in COMMANDS.items():
            times[name].append(run(argv))
    floor = float(np.median(times[FLOOR]))
    header = ["command", "median (s)", "best (s)", "runs", "median / floor"]
    rows = [
        (name, float(np.median(t)), min(t), len(t), float(np.median(t)) / floor)
        for name, t in times.items()
    ]
    csvs["bench_startup"] = (header, rows)
    sections.append(
        (
            f"Cold start: median of {repeat} fresh processes each, interleaved",
            C.markdown_table(header, rows),
        )
    )
    demo = float(np.median(times["python -m autopoly (the demo)"]))
    targets.append(
        (
            "cold start: python -m autopoly / python -c 'import torch, sklearn.linear_model'",
            f"{demo / floor:.2f}x ({demo:.2f} s vs {floor:.2f} s, medians of {repeat})",
            "<= 1.3x",
            demo / floor <= 1.3,
        )
    )

    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=C.REPO, check=True, capture_output=True, text=True
    )
    first = json.loads(probe.stdout.strip().splitlines()[-1])
    header = ["step (one fresh process)", "time (s)"]
    rows = [
        ("import autopoly (after torch and sklearn.base)", first["import"]),
        ("first fit of the tutorial problem", first["first"]),
        ("second fit", first["second"]),
    ]
    csvs["bench_startup_first_fit"] = (header, rows)
    sections.append(
        (
            "First fit in a process",
            C.markdown_table(header, rows)
            + "\n\nWatched modules imported by `import autopoly`: "
            + (", ".join(first["after_import"]) or "none")
            + "; after the first fit: "
            + (", ".join(first["after_fit"]) or "none")
            + ".",
        )
    )
    optional = {"dask", "matplotlib", "skops", "torch._dynamo", "sympy", "autopoly._cli"}
    checks.append(
        (
            "import autopoly imports no optional dependency nor torch's compiler stack",
            not optional & set(first["after_import"]),
            ", ".join(first["after_import"]) or "none of " + ", ".join(sorted(optional)),
        )
    )
    checks.append(
        (
            "the default fit does not import torch._dynamo",
            "torch._dynamo" not in first["after_fit"],
            ", ".join(first["after_fit"]) or "none",
        )
    )
    # The compiler stack's import took about a second here (a third of the floor): the first
    # fit now pays only torch's lazy set-up of its first kernels.
    targets.append(
        (
            "first fit in a process / the floor (cold import of torch and sklearn)",
            f"{first['first'] / floor:.3f}x ({first['first'] * 1e3:.0f} ms; a second fit "
            f"{first['second'] * 1e3:.1f} ms)",
            "<= 0.05x",
            first["first"] / floor <= 0.05,
        )
    )

    env["load average at end"] = C.loadavg()
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_startup.py`" + (" --quick" if args.quick else "") + ".",
        env,
        targets,
    )
    for title, table in sections:
        md += [f"## {title}", "", table, ""]
    md += ["## Checks", "", C.checks_markdown(checks), ""]
    C.write_report(out, "bench_startup", md, targets)
    for name, (header, rows) in csvs.items():
        C.write_csv(out / f"{name}.csv", header, rows)
    plot(out / "bench_startup.png", times)
    C.dump_json(
        out / "bench_startup.json",
        {"env": env, "targets": targets, "checks": checks, "times": times, "first_fit": first},
    )
    print("\n".join(md))
    C.finish(checks)


def plot(path, times):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(times)[::-1]
    medians = [float(np.median(times[n])) for n in names]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    colors = ["tab:blue" if "autopoly" in n else "tab:gray" for n in names]
    ax.barh(names, medians, color=colors)
    for i, n in enumerate(names):
        ax.plot(times[n], [i] * len(times[n]), "k.", ms=3)
    floor = float(np.median(times[FLOOR]))
    ax.axvline(1.3 * floor, color="k", ls="--", lw=1, label="1.3x the floor")
    ax.set_xlabel("wall time of a fresh process (s; bars: median, dots: runs)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    C.save_figure(fig, path)


if __name__ == "__main__":
    main()
