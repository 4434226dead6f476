"""TorchPolyRegressorCV against GridSearchCV: the same scores from one pass over the rows.

Targets:

- 1e5 rows x 5 features, degrees 1-4 x alphas {0, 1e-2, 1, 100}, ``KFold(5, shuffle=True,
  random_state=0)``: every mean test score equal to ``GridSearchCV(TorchPolyRegressor(), ...)``
  to 1e-8 with the same best parameters, in at most 0.1x the time of ``GridSearchCV`` over
  ``PolynomialFeatures + Ridge`` on the same grid.
- diabetes, degrees 1-3 x five alphas, the same split: ``Pipeline(StandardScaler,
  TorchPolyRegressorCV)`` in at most 0.1x the time of ``GridSearchCV`` over
  ``Pipeline(StandardScaler, PolynomialFeatures, Ridge)``. The scores are compared with the
  grids on the rows standardized once (what the pipeline's search sees); the grid over the
  pipeline standardizes each training fold on its own, so with a penalty its scores differ a
  little (reported).
- ``--memory``: peak resident memory of a 5-fold search over 2e6 x 10 rows at degree 3, in a
  fresh process, against the 4.6 GB of the expanded float64 matrix (target: under 25%). The
  figure is kept in ``results/bench_cv_memory.json`` and reported by later runs.

Run ``python benchmarks/bench_cv.py`` (``--quick`` for a seconds-long smoke run).
"""

import json
import subprocess
import sys
import time
import warnings

import _common as C
import numpy as np

TITLE = "bench_cv: TorchPolyRegressorCV against GridSearchCV"
DEGREES = [1, 2, 3, 4]
ALPHAS = [0.0, 1e-2, 1.0, 100.0]
DIABETES_DEGREES = [1, 2, 3]
DIABETES_ALPHAS = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
MEMORY_ROWS, MEMORY_FEATURES, MEMORY_DEGREE = 2_000_000, 10, 3


def make_data(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n_rows, n_features))
    y = X[:, 0] ** 3 - 2 * X[:, 1] * X[:, -1] + 0.5 * X[:, 0] + 0.1 * rng.normal(size=n_rows)
    return X, y


def splitter():
    from sklearn.model_selection import KFold

    return KFold(5, shuffle=True, random_state=0)


def grid_poly_ridge(degrees, alphas, scale=False):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    steps = [("features", PolynomialFeatures()), ("ridge", Ridge())]
    if scale:
        steps.insert(0, ("scale", StandardScaler()))
    grid = {"features__degree": degrees, "ridge__alpha": alphas}
    return GridSearchCV(Pipeline(steps), grid, cv=splitter(), n_jobs=1)


def grid_autopoly(degrees, alphas, device):
    from sklearn.model_selection import GridSearchCV

    from autopoly import TorchPolyRegressor

    grid = {"degree": degrees, "alpha": alphas}
    return GridSearchCV(TorchPolyRegressor(device=device), grid, cv=splitter(), n_jobs=1)


def search_cv(degrees, alphas, device):
    from autopoly import TorchPolyRegressorCV

    return TorchPolyRegressorCV(degrees=degrees, alphas=alphas, cv=splitter(), device=device)


def fit(search, X, y):
    with warnings.catch_warnings():
        # Least squares at degree 4 on some folds is nearly singular for Ridge(alpha=0).
        warnings.simplefilter("ignore")
        return search.fit(X, y)


def scores_by_params(search, degree_key, alpha_key):
    r = search.cv_results_
    return {(p[degree_key], p[alpha_key]): s for p, s in zip(r["params"], r["mean_test_score"])}


def compare(cv_search, other, degree_key, alpha_key):
    """Largest |difference| of the mean test scores, and whether the best parameters agree."""
    mine = scores_by_params(cv_search, "degree", "alpha")
    theirs = scores_by_params(other, degree_key, alpha_key)
    diff = max(abs(mine[k] - theirs[k]) for k in theirs)
    best = other.best_params_
    same = (cv_search.degree_, cv_search.alpha_) == (best[degree_key], best[alpha_key])
    return diff, same


# ------------------------------------------------------------------------------ memory


def memory_child():
    """In a fresh process: peak RSS of one 5-fold search on the big rows (JSON on stdout)."""
    import gc

    import bench_memory as M

    X, y = M.make_data(MEMORY_ROWS, MEMORY_FEATURES)
    search = search_cv([1, 2, MEMORY_DEGREE], [0.0, 1.0], "cpu")
    fit(search, X[:2000], y[:2000])  # imports and lazy initialization: the baseline
    gc.collect()
    rss_before = M.rss_bytes()
    exact = M.reset_high_water_mark()
    start = time.perf_counter()
    fit(search, X, y)
    seconds = time.perf_counter() - start
    peak = M.high_water_mark()
    expanded = MEMORY_ROWS * M.n_columns(MEMORY_FEATURES, MEMORY_DEGREE) * 8
    print(
        json.dumps(
            {
                "rows": MEMORY_ROWS,
                "features": MEMORY_FEATURES,
                "degree": MEMORY_DEGREE,
                "grid": "degrees 1-3 x alphas {0, 1}, KFold(5, shuffle=True, random_state=0)",
                "seconds": seconds,
                "rss_before": rss_before,
                "peak_rss": peak,
                "peak_exact": exact,
                "expanded_bytes": expanded,
                "data_bytes": X.nbytes + y.nbytes,
                "best": search.best_params_,
            }
        )
    )


def run_memory(out):
    cmd = [sys.executable, __file__, "--memory-child"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=C.HERE)
    if proc.returncode != 0:
        raise RuntimeError(f"the memory run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["date"] = C.environment()["date"]
    C.dump_json(out / "bench_cv_memory.json", result)
    return result


# -------------------------------------------------------------------------------- main


def main():
    from sklearn.base import clone
    from sklearn.datasets import load_diabetes
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    memory = "--memory" in sys.argv
    if memory:
        sys.argv.remove("--memory")
    args, device, out, env = C.start(__doc__)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)

    # --- the synthetic grid
    n_rows, n_features = (5_000, 3) if quick else (100_000, 5)
    X, y = make_data(n_rows, n_features)
    big = {
        "TorchPolyRegressorCV": lambda: fit(search_cv(DEGREES, ALPHAS, device), X, y),
        "GridSearchCV(PolynomialFeatures + Ridge)": lambda: fit(
            grid_poly_ridge(DEGREES, ALPHAS), X, y
        ),
        "GridSearchCV(TorchPolyRegressor)": lambda: fit(
            grid_autopoly(DEGREES, ALPHAS, device), X, y
        ),
    }
    # The grids take a minute each on the big rows: one warm-up on a slice, then timed runs.
    fit(search_cv(DEGREES, ALPHAS, device), X[:2000], y[:2000])
    fit(grid_poly_ridge(DEGREES, ALPHAS), X[:2000], y[:2000])
    fit(grid_autopoly(DEGREES, ALPHAS, device), X[:2000], y[:2000])
    timed = C.interleaved(big, 1, warmup=False)
    t_big = {k: min(v["times"]) for k, v in timed.items()}
    res = {k: v["result"] for k, v in timed.items()}
    cv_name, pf_name, ap_name = list(big)
    diff_ap, same_ap = compare(res[cv_name], res[ap_name], "degree", "alpha")
    diff_pf, same_pf = compare(res[cv_name], res[pf_name], "features__degree", "ridge__alpha")
    ratio_pf = t_big[cv_name] / t_big[pf_name]
    ratio_ap = t_big[cv_name] / t_big[ap_name]

    # --- diabetes
    Xd, yd = load_diabetes(return_X_y=True)
    alphas_d = DIABETES_ALPHAS[1:4] if quick else DIABETES_ALPHAS
    pipe_cv = make_pipeline(StandardScaler(), search_cv(DIABETES_DEGREES, alphas_d, device))
    pipe_pf = grid_poly_ridge(DIABETES_DEGREES, alphas_d, scale=True)
    diabetes = {
        "Pipeline(StandardScaler, TorchPolyRegressorCV)": lambda: fit(clone(pipe_cv), Xd, yd),
        "GridSearchCV(StandardScaler + PolynomialFeatures + Ridge)": lambda: fit(
            clone(pipe_pf), Xd, yd
        ),
    }
    timed_d = C.interleaved(diabetes, repeat if quick else 5)
    t_d = {k: min(v["times"]) for k, v in timed_d.items()}
    res_d = {k: v["result"] for k, v in timed_d.items()}
    d_cv_name, d_pf_name = list(diabetes)
    ratio_d = t_d[d_cv_name] / t_d[d_pf_name]
    # The same grids on the rows standardized once (what the pipeline's search sees).
    Xs = StandardScaler().fit_transform(Xd)
    d_ap = fit(grid_autopoly(DIABETES_DEGREES, alphas_d, device), Xs, yd)
    d_pf_once = fit(grid_poly_ridge(DIABETES_DEGREES, alphas_d), Xs, yd)
    d_cv = res_d[d_cv_name][-1]
    diff_d_ap, same_d_ap = compare(d_cv, d_ap, "degree", "alpha")
    diff_d_pf, same_d_pf = compare(d_cv, d_pf_once, "features__degree", "ridge__alpha")
    diff_d_pipe, same_d_pipe = compare(d_cv, res_d[d_pf_name], "features__degree", "ridge__alpha")

    # --- memory
    mem = None
    if memory and not quick:
        mem = run_memory(out)
    elif (C.RESULTS / "bench_cv_memory.json").exists():
        mem = json.loads((C.RESULTS / "bench_cv_memory.json").read_text())

    env["load average at end"] = C.loadavg()
    grid_big = f"{n_rows} x {n_features}, degrees {DEGREES} x alphas {ALPHAS}"
    targets = [
        (
            f"synthetic ({grid_big}): time / GridSearchCV(PolynomialFeatures + Ridge)",
            f"{ratio_pf:.3f}x ({t_big[cv_name]:.2f} s vs {t_big[pf_name]:.2f} s)",
            "<= 0.1x",
            ratio_pf <= 0.1,
        ),
        (
            f"diabetes (degrees {DIABETES_DEGREES} x alphas {alphas_d}): time / GridSearchCV"
            "(StandardScaler + PolynomialFeatures + Ridge)",
            f"{ratio_d:.3f}x ({t_d[d_cv_name]:.3f} s vs {t_d[d_pf_name]:.3f} s)",
            "<= 0.1x",
            ratio_d <= 0.1,
        ),
    ]
    if mem is not None:
        share = mem["peak_rss"] / mem["expanded_bytes"]
        targets.append(
            (
                f"peak RSS of a 5-fold search, {mem['rows']} x {mem['features']} at degree "
                f"{mem['degree']} / expanded float64 matrix"
                + ("" if memory and not quick else f" (recorded {mem['date']})"),
                f"{share:.1%} ({mem['peak_rss'] / 2**30:.2f} GiB, data "
                f"{mem['data_bytes'] / 2**30:.2f} GiB, vs {mem['expanded_bytes'] / 2**30:.2f}"
                f" GiB; {mem['seconds']:.1f} s)",
                "< 25%",
                share < 0.25,
            )
        )
    checks = [
        (
            "synthetic: mean test scores equal GridSearchCV(TorchPolyRegressor)'s, same best",
            diff_ap <= 1e-8 and same_ap,
            f"largest |diff| {diff_ap:.1e} (<= 1e-8), same best parameters: {same_ap}",
        ),
        (
            "synthetic: mean test scores equal GridSearchCV(PolynomialFeatures + Ridge)'s "
            "(Ridge's Cholesky on the raw monomials' normal equations loses digits at degree 4 "
            "with alpha near 0: a looser tolerance)",
            diff_pf <= 1e-5 and same_pf,
            f"largest |diff| {diff_pf:.1e} (<= 1e-5), same best parameters: {same_pf}",
        ),
        (
            "diabetes: mean test scores equal GridSearchCV(TorchPolyRegressor)'s on the rows "
            "standardized once",
            diff_d_ap <= 1e-8 and same_d_ap,
            f"largest |diff| {diff_d_ap:.1e} (<= 1e-8), same best parameters: {same_d_ap}",
        ),
        (
            "diabetes: mean test scores equal GridSearchCV(PolynomialFeatures + Ridge)'s on the "
            "rows standardized once",
            diff_d_pf <= 1e-6 and same_d_pf,
            f"largest |diff| {diff_d_pf:.1e} (<= 1e-6), same best parameters: {same_d_pf}",
        ),
    ]
    header = ["search", "time (s)", "/ PF + Ridge grid", "best parameters", "best mean R^2"]
    rows = []
    for name in big:
        s = res[name]
        best = {k.split("__")[-1]: v for k, v in s.best_params_.items()}
        rows.append(
            (
                f"synthetic: {name}",
                t_big[name],
                t_big[name] / t_big[pf_name],
                ", ".join(f"{k}={v}" for k, v in sorted(best.items())),
                f"{s.best_score_:.6f}",
            )
        )
    for name in diabetes:
        s = res_d[name]
        s = s[-1] if name == d_cv_name else s
        best = {k.split("__")[-1]: v for k, v in s.best_params_.items()}
        rows.append(
            (
                f"diabetes: {name}",
                t_d[name],
                t_d[name] / t_d[d_pf_name],
                ", ".join(f"{k}={v}" for k, v in sorted(best.items())),
                f"{s.best_score_:.6f}",
            )
        )
    cand_header = [
        "degree",
        "alpha",
        "TorchPolyRegressorCV",
        "GridSearchCV(TPR)",
        "abs. difference",
    ]
    mine = scores_by_params(res[cv_name], "degree", "alpha")
    theirs = scores_by_params(res[ap_name], "degree", "alpha")
    cand_rows = [
        (d, a, f"{mine[(d, a)]:.10f}", f"{theirs[(d, a)]:.10f}", abs(mine[(d, a)] - theirs[(d, a)]))
        for d, a in sorted(theirs)
    ]
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_cv.py`"
        + (" --quick" if quick else "")
        + (" --memory" if memory else "")
        + f" (device: {device}); KFold(5, shuffle=True, random_state=0), n_jobs=1. Synthetic "
        f"grid: one timed run of each search after a warm-up on 2000 rows; diabetes: best of "
        f"{repeat if quick else 5} interleaved runs.",
        env,
        targets,
    ) + [
        "## Searches",
        "",
        f"TorchPolyRegressorCV takes {ratio_ap:.3f}x the time of "
        "GridSearchCV(TorchPolyRegressor) on the synthetic grid.",
        "",
        C.markdown_table(header, rows),
        "",
        "The diabetes grid over the pipeline standardizes each training fold on its own; the "
        "pipeline around TorchPolyRegressorCV standardizes all rows once, so with a penalty "
        f"the scores differ slightly: largest |diff| {diff_d_pipe:.1e}, same best parameters: "
        f"{same_d_pipe}.",
        "",
        "## Every candidate of the synthetic grid (mean test R^2)",
        "",
        C.markdown_table(cand_header, cand_rows),
        "",
        "## Checks",
        "",
        C.checks_markdown(checks),
        "",
    ]
    C.write_report(out, "bench_cv", md, targets)
    C.write_csv(out / "bench_cv.csv", header, rows)
    C.write_csv(out / "bench_cv_candidates.csv", cand_header, cand_rows)
    C.dump_json(
        out / "bench_cv.json",
        {
            "env": env,
            "targets": targets,
            "checks": checks,
            "times": {**t_big, **t_d},
            "memory": mem,
        },
    )
    plot(out / "bench_cv.png", t_big, t_d, res[cv_name])
    print("\n".join(md))
    C.finish(checks)


def plot(path, t_big, t_d, search):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, times, title in ((axes[0], t_big, "synthetic grid"), (axes[1], t_d, "diabetes")):
        names = list(times)
        short = [n.replace("GridSearchCV", "GS").replace("StandardScaler", "SS") for n in names]
        ax.barh(short[::-1], [times[n] for n in names][::-1], color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlabel("search time (s, log scale)")
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=7)
    r = search.cv_results_
    for alpha in sorted(set(r["param_alpha"])):
        keep = np.asarray(r["param_alpha"]) == alpha
        axes[2].plot(
            np.asarray(r["param_degree"])[keep],
            r["mean_test_score"][keep],
            marker="o",
            label=f"alpha={alpha:g}",
        )
    axes[2].set_xlabel("degree")
    axes[2].set_ylabel("mean test R^2")
    axes[2].set_title("TorchPolyRegressorCV: validation curve")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    C.save_figure(fig, path)


if __name__ == "__main__":
    if "--memory-child" in sys.argv:
        memory_child()
    else:
        main()
