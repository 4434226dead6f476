"""Peak memory and time of large fits: autopoly against closed forms, each in a fresh process.

Task: ``n`` rows x 10 Gaussian features, degree 3 (286 terms; the expanded float64 design of
2,000,000 rows takes 4.6 GB), ``y`` a sparse cubic plus noise of variance 0.01.
Target 4: autopoly fits 2e6 rows with a peak resident memory under 25% of that matrix, and its
time scales linearly in the rows (1e6 against 2e6).

Every fit runs in its own Python process (this script calling itself with ``--child``), which
reports its own high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``), its resident memory just
before the fit (imports and data included) and a sampled resident-memory timeline of the fit.
Methods: autopoly's defaults; ``PolynomialFeatures + Ridge(solver="cholesky")`` on the fully
expanded matrix (run only while the machine has the memory for it); and a bounded-memory closed
form in NumPy (``PolynomialFeatures`` row chunk by row chunk, accumulating the float64 normal
equations, then a solve), which is also the accuracy reference: every method's training MSE is
compared with it.

Run ``python benchmarks/bench_memory.py`` (about ten minutes here; ``--quick`` for seconds).
"""

import gc
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from math import comb

import _common as C
import numpy as np

TITLE = "bench_memory: peak memory and scaling of large fits"
N_FEATURES = 10
DEGREE = 3
CHUNK_ROWS = 50_000  # for the NumPy reference and for chunked predictions


def make_data(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))

    def x(j):
        return X[:, j % n_features]

    y = (
        1.0
        + x(0)
        - 2.0 * x(1) * x(2)
        + 0.5 * x(3) ** 3
        + x(4) * x(5) * x(6)
        - 0.3 * x(7) ** 2
        + 0.1 * rng.standard_normal(n_rows)
    )
    return X, y


def n_columns(n_features, degree):
    """Columns of the expanded design, the constant included (286 for 10 features, degree 3)."""
    return comb(n_features + degree, degree)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def high_water_mark():
    """Peak resident memory of this process image (``VmHWM``).

    Not ``getrusage().ru_maxrss``: that one survives ``exec`` and so starts at the size of the
    parent that forked the child.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def reset_high_water_mark():
    """Set ``VmHWM`` back to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """Resident memory every ``period`` seconds while a fit runs."""

    def __init__(self, period=0.02):
        super().__init__(daemon=True)
        self.period, self.samples, self.stop = period, [], threading.Event()

    def run(self):
        start = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_bytes()))
            time.sleep(self.period)

    def finish(self):
        self.stop.set()
        self.join()
        step = max(1, len(self.samples) // 100)
        return [(round(t, 3), rss) for t, rss in self.samples[::step]]


# --------------------------------------------------------------------------- the methods


def fit_autopoly(X, y, device):
    from autopoly import TorchPolyRegressor

    model = TorchPolyRegressor(degree=DEGREE, device=device).fit(X, y)
    return model.predict


def fit_ridge(X, y, device):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    model = make_pipeline(
        PolynomialFeatures(DEGREE, include_bias=False), Ridge(alpha=0.0, solver="cholesky")
    ).fit(X, y)
    return model.predict


def fit_normal_equations(X, y, device):
    """Bounded-memory closed form: chunked float64 normal equations of ``[1, PF(X)]``."""
    import scipy.linalg
    from sklearn.preprocessing import PolynomialFeatures

    pf = PolynomialFeatures(DEGREE, include_bias=True).fit(X[:1])
    k = pf.n_output_features_
    G, b = np.zeros((k, k)), np.zeros(k)
    for start in range(0, X.shape[0], CHUNK_ROWS):
        A = pf.transform(X[start : start + CHUNK_ROWS])
        G += A.T @ A
        b += A.T @ y[start : start + CHUNK_ROWS]
    coef = scipy.linalg.solve(G, b, assume_a="pos")
    return lambda Xn: pf.transform(Xn) @ coef


METHODS = {
    "autopoly (defaults)": fit_autopoly,
    "PolynomialFeatures + Ridge(cholesky)": fit_ridge,
    "NumPy chunked normal equations (reference)": fit_normal_equations,
}


def child(method, n_rows, n_features, repeat, device):
    """One fresh process: data, ``repeat`` fits, then the accuracy of the last one."""
    fit = METHODS[method]
    X, y = make_data(n_rows, n_features)
    # A small untimed fit first: imports and lazy initialization belong to the baseline.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(X[:2000], y[:2000], device)
    gc.collect()
    rss_before = rss_bytes()
    peak_before = high_water_mark()
    times, timeline, fit_peak, resettable = [], None, 0, True
    for i in range(repeat):
        predict = None
        gc.collect()
        resettable &= reset_high_water_mark()
        sampler = Sampler()
        sampler.start()
        start = time.perf_counter()
        predict = fit(X, y, device)
        times.append(time.perf_counter() - start)
        samples = sampler.finish()
        fit_peak = max(fit_peak, high_water_mark())
        if i == 0:
            timeline = samples
    gpu_peak = None
    if device.startswith("cuda") and method.startswith("autopoly"):
        import torch

        gpu_peak = torch.cuda.max_memory_allocated()
    sse = 0.0
    for start in range(0, n_rows, CHUNK_ROWS):
        r = predict(X[start : start + CHUNK_ROWS]) - y[start : start + CHUNK_ROWS]
        sse += float(r @ r)
    print(
        json.dumps(
            {
                "method": method,
                "n_rows": n_rows,
                "times": times,
                "rss_before_fit": rss_before,
                # Without a reset the high-water mark also covers the data generation: an
                # upper bound.
                "peak_rss": max(fit_peak, peak_before),
                "fit_peak_rss": fit_peak,
                "fit_peak_exact": resettable,
                "gpu_peak": gpu_peak,
                "mse": sse / n_rows,
                "timeline": timeline,
            }
        )
    )


def run_child(method, n_rows, n_features, repeat, device, threads):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--rows",
        str(n_rows),
        "--features",
        str(n_features),
        "--repeat",
        str(repeat),
        "--device",
        device,
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} on {n_rows} rows failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def available_memory():
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def main():
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--child", help=argparse_hidden())
    p.add_argument("--rows", type=int, help=argparse_hidden())
    p.add_argument(
        "--features",
        type=int,
        default=None,
        help=f"input features (default {N_FEATURES}; 5 with --quick)",
    )
    p.add_argument(
        "--ridge-memory-factor",
        type=float,
        default=2.6,
        help="run Ridge only while available memory exceeds this many expanded "
        "matrices (default 2.6: the expanded matrix, its centred copy, slack)",
    )
    args = p.parse_args()
    C.apply_threads(args.threads)
    if args.child:
        child(args.child, args.rows, args.features, args.repeat or 1, args.device)
        return
    device = C.check_device(args.device)
    out = C.prepare_out(args.out)
    quick = args.quick
    env = C.environment()
    print(C.environment_markdown(env))
    sizes = [10_000, 20_000] if quick else [250_000, 500_000, 1_000_000, 2_000_000]
    repeat = args.repeat or (1 if quick else 2)
    n_features = args.features or (5 if quick else N_FEATURES)
    terms = n_columns(n_features, DEGREE)
    results, skipped = [], []
    for n in sizes:
        expanded = n * terms * 8
        # --quick leaves Ridge out: bench_fit --quick already smoke-tests it.
        for method in [m for m in METHODS if not (quick and m.startswith("Polynomial"))]:
            if method.startswith("PolynomialFeatures") and (
                available_memory() < args.ridge_memory_factor * expanded
            ):
                skipped.append(
                    f"{method} at {n:,} rows: needs about {args.ridge_memory_factor:.1f} x "
                    f"{expanded / 1e9:.1f} GB, more than the {available_memory() / 1e9:.1f} GB "
                    "available"
                )
                print("skipped:", skipped[-1])
                continue
            reps = 1 if method.startswith("PolynomialFeatures") else repeat
            print(f"{method}: {n:,} rows ...", flush=True)
            r = run_child(
                method,
                n,
                n_features,
                reps,
                device if method.startswith("autopoly") else "cpu",
                args.threads,
            )
            r["expanded"] = n * terms * 8
            results.append(r)
            print(
                f"  {min(r['times']):.2f} s, peak {r['fit_peak_rss'] / 2**20:.0f} MiB", flush=True
            )

    ref = {r["n_rows"]: r["mse"] for r in results if "reference" in r["method"]}
    header = [
        "method",
        "rows",
        "fit time (s, best)",
        "rows / s",
        "peak RSS in fit (MiB)",
        "RSS before fit (MiB)",
        "fit increment (MiB)",
        "expanded matrix (MiB)",
        "peak / expanded",
        "(MSE - ref) / ref",
    ]
    rows = []
    for r in results:
        t = min(r["times"])
        inc = r["fit_peak_rss"] - r["rss_before_fit"]
        rows.append(
            (
                r["method"],
                r["n_rows"],
                t,
                r["n_rows"] / t,
                r["fit_peak_rss"] / 2**20,
                r["rss_before_fit"] / 2**20,
                inc / 2**20,
                r["expanded"] / 2**20,
                r["fit_peak_rss"] / r["expanded"],
                (r["mse"] - ref[r["n_rows"]]) / ref[r["n_rows"]],
            )
        )
    checks, targets = [], []
    for r in results:
        rel = (r["mse"] - ref[r["n_rows"]]) / ref[r["n_rows"]]
        checks.append(
            (
                f"{r['method']} at {r['n_rows']:,} rows matches the reference optimum",
                abs(rel) <= 1e-6,
                f"(MSE - ref) / ref = {rel:.1e} (|.| <= 1e-6)",
            )
        )
    auto = {r["n_rows"]: r for r in results if r["method"].startswith("autopoly")}
    big, half = sizes[-1], sizes[-2]
    a = auto[big]
    frac_total = a["fit_peak_rss"] / a["expanded"]
    frac_inc = (a["fit_peak_rss"] - a["rss_before_fit"]) / a["expanded"]
    targets.append(
        (
            f"target 4a: peak RSS of the {big:,}-row fit / expanded float64 matrix "
            f"({a['expanded'] / 1e9:.2f} GB)",
            f"{frac_total:.1%} of the process ({a['fit_peak_rss'] / 2**20:.0f} MiB, data and "
            "imports "
            f"included); {frac_inc:.1%} for the fit alone",
            "< 25%",
            frac_total < 0.25,
        )
    )
    t_ratio = min(auto[big]["times"]) / min(auto[half]["times"])
    targets.append(
        (
            f"target 4b: linear in rows: time({big:,}) / time({half:,})",
            f"{t_ratio:.2f} ({min(auto[big]['times']):.1f} s vs {min(auto[half]['times']):.1f} s)",
            "about 2 (1.8 to 2.2)",
            1.8 <= t_ratio <= 2.2,
        )
    )
    by_method = {}
    for r in results:
        by_method.setdefault(r["method"], {})[r["n_rows"]] = r
    summary = []
    for method, per in by_method.items():
        if big in per and half in per:
            summary.append(
                (
                    method,
                    min(per[big]["times"]) / min(per[half]["times"]),
                    (per[big]["fit_peak_rss"] - per[big]["rss_before_fit"])
                    / max(1, per[half]["fit_peak_rss"] - per[half]["rss_before_fit"]),
                )
            )
    ridge_ratio = None
    ridge_n = [n for n in by_method.get("PolynomialFeatures + Ridge(cholesky)", {})]
    if ridge_n:
        n = max(ridge_n)
        ridge_ratio = (
            n,
            min(auto[n]["times"])
            / min(by_method["PolynomialFeatures + Ridge(cholesky)"][n]["times"]),
        )

    env["load average at end"] = C.loadavg()
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_memory.py`"
        + (" --quick" if quick else "")
        + f" (device: {device}). Each fit ran in a fresh "
        "process after a small untimed warm-up fit; *peak RSS in fit* is that process's "
        "`VmHWM`, reset just before the fit (imports and the input data stay resident and "
        "are included); the *fit increment* is that peak minus the resident memory just "
        "before the fit.",
        env,
        targets,
    ) + [
        f"## {n_features} features, degree {DEGREE} ({terms} columns with the constant)",
        "",
        C.markdown_table(header, rows),
        "",
        f"## Scaling from {half:,} to {big:,} rows",
        "",
        C.markdown_table(["method", "time ratio", "fit-increment ratio"], summary),
        "",
    ]
    if ridge_ratio:
        md += [
            f"autopoly / Ridge(cholesky) fit time at {ridge_ratio[0]:,} rows: "
            f"{ridge_ratio[1]:.2f}x.",
            "",
        ]
    if skipped:
        md += ["Skipped:", ""] + [f"- {s}" for s in skipped] + [""]
    md += ["## Checks", "", C.checks_markdown(checks), ""]
    C.write_report(out, "bench_memory", md, targets)
    C.write_csv(out / "bench_memory.csv", header, rows)
    C.dump_json(out / "bench_memory.json", {"env": env, "results": results, "targets": targets})
    plot(out / "bench_memory.png", results, big, terms)
    print("\n".join(md))
    C.finish(checks)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def plot(path, results, big, terms):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    by_method = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    styles = {
        "autopoly": ("tab:blue", "o"),
        "Polynomial": ("tab:gray", "s"),
        "NumPy": ("tab:green", "^"),
    }
    for method, rs in by_method.items():
        color, marker = next(v for k, v in styles.items() if method.startswith(k))
        n = [r["n_rows"] for r in rs]
        axes[0].plot(
            n, [r["fit_peak_rss"] / 2**30 for r in rs], marker=marker, color=color, label=method
        )
        axes[1].plot(n, [min(r["times"]) for r in rs], marker=marker, color=color, label=method)
    n_all = sorted({r["n_rows"] for r in results})
    axes[0].plot(n_all, [n * terms * 8 / 2**30 for n in n_all], "k:", label="expanded matrix")
    axes[0].plot(
        n_all,
        [0.25 * n * terms * 8 / 2**30 for n in n_all],
        "r--",
        lw=1,
        label="25% of it (target)",
    )
    for ax, label in ((axes[0], "peak RSS (GiB)"), (axes[1], "fit time (s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    auto = [r for r in results if r["method"].startswith("autopoly")]
    if auto:
        t0 = min(auto[0]["times"])
        axes[1].plot(n_all, [t0 * n / auto[0]["n_rows"] for n in n_all], "b:", lw=1, label="linear")
        axes[1].legend(fontsize=7)
    axes[0].set_title("peak resident memory (fresh process)")
    axes[1].set_title("fit time")
    for r in results:
        if r["n_rows"] == big and r["timeline"]:
            color, _ = next(v for k, v in styles.items() if r["method"].startswith(k))
            t, rss = zip(*r["timeline"])
            axes[2].plot(t, np.asarray(rss) / 2**30, color=color, label=r["method"])
    axes[2].set_xlabel("seconds into the fit")
    axes[2].set_ylabel("RSS (GiB)")
    axes[2].set_title(f"resident memory during the {big:,}-row fits")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    C.save_figure(fig, path)


if __name__ == "__main__":
    main()
