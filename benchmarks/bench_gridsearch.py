"""A small model selection: GridSearchCV over autopoly against the same grid over SGD.

Target 2: ``GridSearchCV`` over ``{degree: [1, 2, 3], lr: [1e-3, 1e-2, 1e-1]}``, 5-fold, on the
diabetes data with a ``StandardScaler`` in front, in at most 1.0x the time of the same grid over
``StandardScaler + PolynomialFeatures + StandardScaler + SGDRegressor`` (``eta0`` in place of
``lr``), with a best cross-validated R^2 of at least 0.489.

The exact least-squares grid (``PolynomialFeatures + LinearRegression`` over the degrees) runs
too: autopoly's defaults fit the least-squares optimum, so its best score must equal that one.

The split. Every timed search uses the same ``KFold(5, shuffle=True, random_state=0)`` and
``n_jobs=1``. The 0.489 threshold is the exact least-squares score on that split (0.48915). On
the unshuffled ``KFold(5)`` exact least squares scores 0.4823 and the SGD grid 0.4800; the best
ridge or lasso on the same terms, over 31 penalties, scores 0.4823 and 0.4867 there, so 0.489
on that split would take another model, not a better fit. The other splits are reported too,
untimed, so the comparison does not rest on one seed: on each, autopoly's best score must equal
the exact least-squares grid's.

Run ``python benchmarks/bench_gridsearch.py`` (``--quick`` for a seconds-long smoke run).
"""

import warnings

import _common as C
import numpy as np

TITLE = "bench_gridsearch: GridSearchCV on diabetes against SGDRegressor"
DEGREES = [1, 2, 3]
RATES = [1e-3, 1e-2, 1e-1]


SEED = 0
OTHER_SPLITS = {
    "KFold(5), unshuffled": None,
    **{f"KFold(5, shuffle, seed {seed})": seed for seed in (1, 2, 3, 4)},
}


def splitter(folds, seed):
    from sklearn.model_selection import KFold

    return KFold(folds) if seed is None else KFold(folds, shuffle=True, random_state=seed)


def searches(device, cv, degrees, rates):
    from sklearn.linear_model import LinearRegression, SGDRegressor
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from autopoly import TorchPolyRegressor

    auto = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("poly", TorchPolyRegressor(device=device))]),
        {"poly__degree": degrees, "poly__lr": rates},
        cv=cv,
        n_jobs=1,
    )
    sgd = GridSearchCV(
        Pipeline(
            [
                ("scale", StandardScaler()),
                ("features", PolynomialFeatures()),
                ("scale2", StandardScaler()),
                ("sgd", SGDRegressor(random_state=0)),
            ]
        ),
        {"features__degree": degrees, "sgd__eta0": rates},
        cv=cv,
        n_jobs=1,
    )
    exact = GridSearchCV(
        Pipeline(
            [
                ("scale", StandardScaler()),
                ("features", PolynomialFeatures()),
                ("ls", LinearRegression()),
            ]
        ),
        {"features__degree": degrees},
        cv=cv,
        n_jobs=1,
    )
    return {
        "autopoly: StandardScaler + TorchPolyRegressor (defaults)": auto,
        "StandardScaler + PolynomialFeatures + StandardScaler + SGDRegressor": sgd,
        "StandardScaler + PolynomialFeatures + LinearRegression (exact least squares)": exact,
    }


def fit_search(search, X, y):
    with warnings.catch_warnings():
        # SGD diverges on some cells and degree 3 has more terms than a fold has rows.
        warnings.simplefilter("ignore")
        search.fit(X, y)
    return search


def main():
    from sklearn.base import clone
    from sklearn.datasets import load_diabetes

    args, device, out, env = C.start(__doc__)
    quick = args.quick
    X, y = load_diabetes(return_X_y=True)
    # --quick: a smaller grid on fewer folds, enough to exercise every code path.
    folds = 2 if quick else 5
    degrees, rates = (DEGREES[:2], RATES[1:]) if quick else (DEGREES, RATES)
    repeat = args.repeat or (1 if quick else 5)
    proto = searches(device, splitter(folds, SEED), degrees, rates)
    # A fresh clone per run: every timed search starts from unfitted estimators.
    methods = {name: (lambda s=s: fit_search(clone(s), X, y)) for name, s in proto.items()}
    timed = C.interleaved(methods, repeat)
    names = list(timed)
    auto_name, sgd_name, exact_name = names
    t = {name: min(r["times"]) for name, r in timed.items()}
    cold = {name: r["times"][0] for name, r in timed.items()}
    fitted = {name: r["result"] for name, r in timed.items()}

    header = [
        "search",
        "candidates x folds",
        "time (s, best)",
        "time / SGD grid",
        "best CV R^2",
        "best parameters",
    ]
    rows = []
    for name in names:
        s = fitted[name]
        n_cand = len(s.cv_results_["params"])
        best = {k.split("__")[1]: v for k, v in s.best_params_.items()}
        rows.append(
            (
                name,
                f"{n_cand} x {folds}",
                t[name],
                t[name] / t[sgd_name],
                f"{s.best_score_:.4f}",
                ", ".join(f"{k}={v}" for k, v in best.items()),
            )
        )

    # Mean test R^2 of every cell.
    cand_header = [
        "degree",
        "lr / eta0",
        "autopoly R^2",
        "SGD R^2",
        "exact LS R^2",
        "autopoly fit (ms)",
        "SGD fit (ms)",
    ]
    cand_rows = []
    exact_by_degree = {
        p["features__degree"]: sc
        for p, sc in zip(
            fitted[exact_name].cv_results_["params"],
            fitted[exact_name].cv_results_["mean_test_score"],
        )
    }
    sgd_cells = {
        (p["features__degree"], p["sgd__eta0"]): (sc, ft)
        for p, sc, ft in zip(
            fitted[sgd_name].cv_results_["params"],
            fitted[sgd_name].cv_results_["mean_test_score"],
            fitted[sgd_name].cv_results_["mean_fit_time"],
        )
    }
    a = fitted[auto_name].cv_results_
    for p, sc, ft in zip(a["params"], a["mean_test_score"], a["mean_fit_time"]):
        d, lr = p["poly__degree"], p["poly__lr"]
        s_sc, s_ft = sgd_cells[(d, lr)]
        cand_rows.append((d, lr, sc, s_sc, exact_by_degree[d], ft * 1e3, s_ft * 1e3))

    best_auto = fitted[auto_name].best_score_
    best_exact = fitted[exact_name].best_score_
    ratio = t[auto_name] / t[sgd_name]
    targets = [
        (
            "target 2a: GridSearchCV time: autopoly / SGD grid",
            f"{ratio:.2f}x ({t[auto_name]:.2f} s vs "
            f"{t[sgd_name]:.2f} s; first run {cold[auto_name]:.2f} s vs {cold[sgd_name]:.2f} s)",
            "<= 1.0x",
            ratio <= 1.0,
        ),
        (
            "target 2b: best CV R^2 of autopoly's defaults (timed split)",
            f"{best_auto:.4f} (SGD grid "
            f"{fitted[sgd_name].best_score_:.4f}, exact least squares {best_exact:.4f})",
            ">= 0.489",
            best_auto >= 0.489,
        ),
    ]
    checks = [
        (
            "autopoly's best CV R^2 equals the exact least-squares grid's",
            abs(best_auto - best_exact) <= 1e-6,
            f"{best_auto:.8f} vs {best_exact:.8f} (|diff| <= 1e-6)",
        )
    ]

    # The same three searches on other splits, once each and untimed.
    split_header = [
        "split",
        "autopoly best R^2",
        "SGD best R^2",
        "exact LS best R^2",
        "autopoly - exact LS",
    ]
    split_best = {
        f"KFold({folds}, shuffle, seed {SEED}) (timed above)": [
            best_auto,
            fitted[sgd_name].best_score_,
            best_exact,
        ]
    }
    # --quick: one other split, enough to exercise the path.
    for label, seed in list(OTHER_SPLITS.items())[: 1 if quick else None]:
        split_best[label] = [
            fit_search(s, X, y).best_score_
            for s in searches(device, splitter(folds, seed), degrees, rates).values()
        ]
    # Four decimals: the scores differ in the third.
    split_rows = [
        (label, *(f"{b:.4f}" for b in best), best[0] - best[2])
        for label, best in split_best.items()
    ]
    worst = max(abs(best[0] - best[2]) for best in split_best.values())
    checks.append(
        (
            "on every split, autopoly's best CV R^2 equals the exact least-squares grid's",
            worst <= 1e-6,
            f"{len(split_rows)} splits, largest |diff| {worst:.1e} (<= 1e-6)",
        )
    )

    env["load average at end"] = C.loadavg()
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_gridsearch.py`"
        + (" --quick" if quick else "")
        + f" (device: {device}); diabetes data "
        f"({X.shape[0]} rows x {X.shape[1]} features), KFold({folds}, shuffle=True, "
        f"random_state={SEED}), n_jobs=1, best of "
        f"{repeat} interleaved runs.",
        env,
        targets,
    ) + [
        "## Searches",
        "",
        C.markdown_table(header, rows),
        "",
        "## Every candidate (mean over the folds)",
        "",
        "The exact least-squares column depends on the degree only. At degree 3 the 286 "
        "columns come close to a fold's 353 training rows: least squares overfits, the "
        "scores are strongly negative, and methods that solve the nearly singular system "
        "differently disagree there.",
        "",
        C.markdown_table(cand_header, cand_rows),
        "",
        "## Other splits (untimed)",
        "",
        "The best score depends on the split much more than on the method: 0.489 is the "
        "exact least-squares score on the timed split. Whatever the split, autopoly's "
        "defaults find the same best score as exact least squares.",
        "",
        C.markdown_table(split_header, split_rows),
        "",
        "## Checks",
        "",
        C.checks_markdown(checks),
        "",
    ]
    C.write_report(out, "bench_gridsearch", md, targets)
    C.write_csv(out / "bench_gridsearch.csv", header, rows)
    C.write_csv(out / "bench_gridsearch_candidates.csv", cand_header, cand_rows)
    C.write_csv(out / "bench_gridsearch_splits.csv", split_header, split_rows)
    C.dump_json(
        out / "bench_gridsearch.json",
        {
            "env": env,
            "targets": targets,
            "checks": checks,
            "times": {k: v["times"] for k, v in timed.items()},
        },
    )
    plot(out / "bench_gridsearch.png", names, t, cand_rows)
    print("\n".join(md))
    C.finish(checks)


def plot(path, names, t, cand_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    short = ["autopoly", "SGDRegressor", "exact LS"]
    axes[0].barh(
        short[::-1], [t[n] for n in names][::-1], color=["tab:gray", "tab:gray", "tab:blue"]
    )
    axes[0].set_xlabel("GridSearchCV time (s, best)")
    axes[0].set_title("whole search")
    labels = [f"d={d}\nlr={lr:g}" for d, lr, *_ in cand_rows]
    x = np.arange(len(cand_rows))
    clip = -0.2
    for k, (col, name, color) in enumerate(
        ((2, "autopoly", "tab:blue"), (3, "SGD", "tab:gray"), (4, "exact LS", "tab:green"))
    ):
        vals = np.array([r[col] for r in cand_rows], dtype=float)
        axes[1].bar(x + (k - 1) * 0.27, np.maximum(vals, clip), width=0.27, color=color, label=name)
    axes[1].axhline(0.489, color="r", ls="--", lw=1, label="0.489 target")
    axes[1].set_ylim(clip, 0.6)
    axes[1].set_xticks(x, labels, fontsize=7)
    axes[1].set_ylabel(f"mean CV R^2 (clipped at {clip})")
    axes[1].set_title("every candidate")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    C.save_figure(fig, path)


if __name__ == "__main__":
    main()
