"""Fit time and accuracy of autopoly against its peers, side by side in one run.

Tasks
-----
tutorial
    20 samples, ``x = 5 * randn``, ``y = x**2 + 2*x + 3`` (no noise), degree 2.
poly1e5
    100,000 rows x 5 features, degree 3 (55 terms), Gaussian inputs, noise of variance 1.
    Target 1: autopoly's defaults reach the optimum to 1e-6 relative in at most 1.5x the time of
    ``PolynomialFeatures + Ridge(solver="cholesky")``.
overhead
    Target 3: 1000 fixed NAdam steps on the tutorial task through the estimator cost at most
    1.2x the same loop written by hand.
small
    The per-fit cost on small data: 20 x 1 at degree 2 (the tutorial) and 1,000 x 5 at
    degree 3, autopoly's defaults against ``PolynomialFeatures + Ridge(solver="cholesky")``
    (batches of 100 fits, best of interleaved batches). Target: at most 1.0x.
grid
    ``GridSearchCV`` over degrees 1-3 x 5 alphas, shuffled 5-fold, on diabetes with a
    ``StandardScaler`` in front: autopoly against the same grid over ``PolynomialFeatures +
    Ridge(solver="cholesky")``; both must pick the same candidate. Target: at most 1.0x.
large
    1e5 x 5, 1e6 x 5 and 1e5 x 10 at degree 3: autopoly against ``PF + Ridge(cholesky)`` and
    against one ``P.T @ P`` over the materialized design (the least any exact fit does), with
    the MSE against the optimum. Targets: at most 0.5x Ridge at 1e5 x 5, at most 2.5x one
    ``P.T @ P`` everywhere, MSE within 1e-12 relative.
predict
    ``predict`` on 20, 1e3, 1e5 and 1e6 rows against the fitted ``PF + Ridge``'s. Target: at
    most 1.0x at every size.
device (with ``--device cuda``; or ``--device cpu --tasks device`` to run its code here)
    1e6 and 1e7 rows x 5 features at degree 3 on the device, from NumPy input and from a
    tensor already there, against the CPU. The GPU check is one short run (a few minutes):
    ``python benchmarks/bench_fit.py --device cuda --tasks device,large,predict --out
    benchmarks/results/gpu``. Without CUDA, ``--device cuda`` exits with a message.

``--tasks a,b`` runs only the named tasks (default: all).

Peers: ``PolynomialFeatures + Ridge(solver="cholesky", alpha=0)`` (closed form),
``PolynomialFeatures + StandardScaler + SGDRegressor``, skorch ``NeuralNetRegressor`` with a
``torch.nn.Linear`` module on the same standardized expanded features, and the tutorial's raw
torch loop (``x @ w`` on the raw features ``[1, x, x**2, ...]``, MSE, ``NAdam(lr=0.01)``, 1000
full-batch steps from zero). Accuracy is the training MSE against the exact least-squares
optimum (``numpy.linalg.lstsq`` on ``[1, PolynomialFeatures(X)]``).

Run ``python benchmarks/bench_fit.py`` (``--quick`` for a seconds-long smoke run); results go
to ``benchmarks/results/bench_fit.{md,png}`` and CSV tables beside them.
"""

import sys
import warnings

import _common as C
import numpy as np

TITLE = "bench_fit: fit time and accuracy against the peers"
TASKS = ["tutorial", "poly", "overhead", "tensors", "small", "grid", "large", "predict", "device"]

try:
    import skorch  # noqa: F401  (a peer, from the "bench" extra; optional)

    HAVE_SKORCH = True
except ImportError:
    HAVE_SKORCH = False


# ------------------------------------------------------------------------------------ data


def tutorial_data():
    rng = np.random.default_rng(0)
    x = 5 * rng.standard_normal(20)
    return x.reshape(-1, 1), x**2 + 2 * x + 3


def poly_data(n_rows, n_features, degree, seed=0):
    """Gaussian inputs, a dense random polynomial of ``degree`` and unit-variance noise."""
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    P = PolynomialFeatures(degree, include_bias=False).fit_transform(X)
    y = 1.0 + P @ rng.standard_normal(P.shape[1]) + rng.standard_normal(n_rows)
    return X, y


def design(X, degree):
    from sklearn.preprocessing import PolynomialFeatures

    return PolynomialFeatures(degree, include_bias=True).fit_transform(X)


# ----------------------------------------------------------------------------------- peers


def fit_autopoly(X, y, degree, device, **params):
    from autopoly import TorchPolyRegressor

    with warnings.catch_warnings():
        # The fixed-step configurations stop at max_iter by design.
        warnings.simplefilter("ignore")
        model = TorchPolyRegressor(degree=degree, device=device, **params).fit(X, y)
    return model.predict, model.n_iter_


def fit_ridge(X, y, degree):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    model = make_pipeline(
        PolynomialFeatures(degree, include_bias=False), Ridge(alpha=0.0, solver="cholesky")
    ).fit(X, y)
    return model.predict, None


def fit_sgd(X, y, degree):
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(
            PolynomialFeatures(degree, include_bias=False),
            StandardScaler(),
            SGDRegressor(random_state=0),
        ).fit(X, y)
    return model.predict, int(model[-1].n_iter_)


def fit_skorch(X, y, degree, optimizer, lr, max_epochs, batch_size):
    """A linear module on the standardized expanded features, trained by skorch."""
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from skorch import NeuralNetRegressor

    features = make_pipeline(PolynomialFeatures(degree, include_bias=False), StandardScaler())
    F = features.fit_transform(X).astype(np.float32)
    torch.manual_seed(0)  # skorch initializes the module from the global generator
    net = NeuralNetRegressor(
        torch.nn.Linear,
        module__in_features=F.shape[1],
        module__out_features=1,
        optimizer=optimizer,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=None,
        verbose=0,
    )
    net.fit(F, y.astype(np.float32).reshape(-1, 1))

    def predict(Xn):
        return net.predict(features.transform(Xn).astype(np.float32)).reshape(-1).astype(float)

    return predict, max_epochs


def fit_torch_loop(X, y, degree, device, steps=1000):
    """The tutorial's loop: raw features, ``x @ w``, MSE, NAdam(lr=0.01), fixed steps."""
    import torch

    F = torch.tensor(design(X, degree), device=device)
    t = torch.tensor(y, device=device)
    w = torch.zeros(F.shape[1], dtype=F.dtype, device=device, requires_grad=True)
    opt = torch.optim.NAdam([w], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((F @ w - t) ** 2)
        loss.backward()
        opt.step()
    coef = w.detach().cpu().numpy()
    return (lambda Xn: design(Xn, degree) @ coef), steps


# The estimator configuration that mirrors the hand loop (target 3): raw parametrization,
# NAdam at lr=0.01, exactly 1000 steps (tol=0 and n_iter_no_change=max_iter never stop early).
LOOP_CONFIG = dict(
    optimizer="nadam",
    lr=0.01,
    max_iter=1000,
    tol=0.0,
    n_iter_no_change=1000,
    conditioning=False,
)


# ------------------------------------------------------------------ speed to the limit

# The small problems, the grid and the large problems of the speed targets, against
# PolynomialFeatures + Ridge and against one Gram matrix of the materialized design.
SMALL = [("20 x 1, degree 2 (tutorial)", None, 2), ("1,000 x 5, degree 3", (1_000, 5), 3)]
LARGE = [(100_000, 5), (1_000_000, 5), (100_000, 10)]
PREDICT_ROWS = [20, 1_000, 100_000, 1_000_000]
GRID_ALPHAS = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


def per_call(methods, calls, repeat):
    """Best time per call of each method: ``calls`` calls in a row, ``repeat`` interleaved."""

    def batch(fn):
        return lambda: [fn() for _ in range(calls)][-1]

    timed = C.interleaved({name: batch(fn) for name, fn in methods.items()}, repeat)
    return {name: min(r["times"]) / calls for name, r in timed.items()}, timed


def task_small(device, quick, repeat):
    """Per-fit cost on small data: autopoly's defaults vs ``PF + Ridge(cholesky)``."""
    rows, targets, checks = [], [], []
    for title, shape, degree in SMALL:
        X, y = tutorial_data() if shape is None else poly_data(*shape, degree)
        methods = {
            "autopoly (defaults)": lambda: fit_autopoly(X, y, degree, device),
            "PolynomialFeatures + Ridge(cholesky)": lambda: fit_ridge(X, y, degree),
        }
        best, timed = per_call(methods, 5 if quick else 100, repeat)
        a, r = best["autopoly (defaults)"], best["PolynomialFeatures + Ridge(cholesky)"]
        rows.append((title, a * 1e3, r * 1e3, a / r))
        targets.append(
            (f"small fit: {title}: autopoly / PF + Ridge", f"{a / r:.2f}x", "<= 1.0x", a / r <= 1.0)
        )
        optimum, _ = C.ls_optimum(design(X, degree), y)
        predict, _ = timed["autopoly (defaults)"]["result"]
        mse = float(np.mean((predict(X) - y) ** 2))
        excess = C.relative_excess(mse, optimum, float(np.var(y)))[1]
        checks.append(
            (
                f"small fit: {title}: autopoly reaches the optimum",
                excess < 1e-9,
                f"(MSE - opt) / Var(y) = {excess:.1e} (< 1e-9)",
            )
        )
    header = ["problem", "autopoly (ms per fit)", "PF + Ridge (ms per fit)", "ratio"]
    return (header, rows), targets, checks


def grid_searches(device, degrees, alphas, cv):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from autopoly import TorchPolyRegressor

    auto = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("poly", TorchPolyRegressor(device=device))]),
        {"poly__degree": degrees, "poly__alpha": alphas},
        cv=cv,
    )
    ridge = GridSearchCV(
        Pipeline(
            [
                ("scale", StandardScaler()),
                ("features", PolynomialFeatures(include_bias=False)),
                ("ridge", Ridge(solver="cholesky")),
            ]
        ),
        {"features__degree": degrees, "ridge__alpha": alphas},
        cv=cv,
    )
    return auto, ridge


def task_grid(device, quick, repeat):
    """GridSearchCV over degree x alpha on diabetes: autopoly vs the same grid over PF + Ridge."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import KFold

    X, y = load_diabetes(return_X_y=True)
    degrees = [1, 2] if quick else [1, 2, 3]
    cv = KFold(5, shuffle=True, random_state=0)
    auto, ridge = grid_searches(device, degrees, GRID_ALPHAS, cv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ridge warns of ill-conditioned degree-3 systems
        timed = C.interleaved(
            {"autopoly": lambda: auto.fit(X, y), "PF + Ridge": lambda: ridge.fit(X, y)}, repeat
        )
    a, r = min(timed["autopoly"]["times"]), min(timed["PF + Ridge"]["times"])
    n_fits = len(degrees) * len(GRID_ALPHAS) * 5
    header = [
        "grid",
        "autopoly (s)",
        "PF + Ridge (s)",
        "ratio",
        "best (autopoly)",
        "best (PF + Ridge)",
    ]
    best_a = (
        f"degree {auto.best_params_['poly__degree']}, alpha {auto.best_params_['poly__alpha']:g}"
    )
    best_r = (
        f"degree {ridge.best_params_['features__degree']}, "
        f"alpha {ridge.best_params_['ridge__alpha']:g}"
    )
    rows = [
        (
            f"diabetes, degrees {degrees} x {len(GRID_ALPHAS)} alphas, 5-fold ({n_fits} fits)",
            a,
            r,
            a / r,
            best_a,
            best_r,
        )
    ]
    same = best_a == best_r and abs(auto.best_score_ - ridge.best_score_) < 1e-9
    targets = [
        (
            "grid: diabetes GridSearchCV, autopoly / PF + Ridge",
            f"{a / r:.2f}x ({a:.3f} s vs {r:.3f} s)",
            "<= 1.0x",
            a / r <= 1.0,
        )
    ]
    checks = [
        (
            "grid: both grids pick the same candidate with the same score",
            same,
            f"{best_a} ({auto.best_score_:.6f}) vs {best_r} ({ridge.best_score_:.6f})",
        )
    ]
    return (header, rows), targets, checks


def gram_time(P, repeat):
    """Best time of one ``P.T @ P`` over the materialized design (the limit of a fit)."""
    timed = C.interleaved({"gram": lambda: P.T @ P}, repeat)
    return min(timed["gram"]["times"])


def task_large(device, quick, repeat):
    """Large fits: autopoly vs PF + Ridge(cholesky) vs one P.T @ P; MSE against the optimum."""
    rows, targets, checks = [], [], []
    for n_rows, n_features in LARGE:
        n = n_rows // 20 if quick else n_rows
        X, y = poly_data(n, n_features, 3)
        P = design(X, 3)
        optimum, _ = C.ls_optimum(P, y)
        t_gram = gram_time(P, repeat)
        del P
        methods = {"autopoly": lambda: fit_autopoly(X, y, 3, device)}
        if n_rows <= 100_000 or not quick:
            methods["PF + Ridge(cholesky)"] = lambda: fit_ridge(X, y, 3)
        timed = C.interleaved(methods, max(1, repeat if n <= 200_000 else repeat // 2))
        t_auto = min(timed["autopoly"]["times"])
        t_ridge = min(timed["PF + Ridge(cholesky)"]["times"]) if len(methods) > 1 else None
        predict, _ = timed["autopoly"]["result"]
        mse = float(np.mean((predict(X) - y) ** 2))
        rel = (mse - optimum) / optimum
        name = f"{n:,} x {n_features}, degree 3 ({P_terms(n_features)} terms)"
        rows.append(
            (
                name,
                t_auto,
                t_ridge,
                t_gram,
                t_auto / t_ridge if t_ridge else None,
                t_auto / t_gram,
                rel,
            )
        )
        targets.append(
            (
                f"large: {name}: autopoly / one P.T @ P",
                f"{t_auto / t_gram:.2f}x ({t_auto * 1e3:.0f} ms vs {t_gram * 1e3:.0f} ms)",
                "<= 2.5x",
                t_auto / t_gram <= 2.5,
            )
        )
        if n_features == 5 and n_rows == 100_000:
            targets.append(
                (
                    f"large: {name}: autopoly / PF + Ridge(cholesky)",
                    f"{t_auto / t_ridge:.2f}x ({t_auto * 1e3:.0f} ms vs {t_ridge * 1e3:.0f} ms)",
                    "<= 0.5x",
                    t_auto / t_ridge <= 0.5,
                )
            )
        checks.append(
            (
                f"large: {name}: autopoly's MSE within 1e-12 of the optimum",
                abs(rel) <= 1e-12,
                f"(MSE - opt) / opt = {rel:.1e}",
            )
        )
    header = [
        "problem",
        "autopoly (s)",
        "PF + Ridge(cholesky) (s)",
        "one P.T @ P (s)",
        "autopoly / Ridge",
        "autopoly / P.T @ P",
        "(MSE - opt) / opt",
    ]
    return (header, rows), targets, checks


def P_terms(n_features):
    from math import comb

    return comb(n_features + 3, 3) - 1


def task_predict(device, quick, repeat):
    """Prediction time: autopoly vs PF + Ridge's predict, from 20 to 1e6 rows."""
    X, y = poly_data(2_000 if quick else 20_000, 5, 3)
    auto, _ = fit_autopoly(X, y, 3, device)
    ridge, _ = fit_ridge(X, y, 3)
    rows, targets, checks = [], [], []
    for n in PREDICT_ROWS:
        n = min(n, 20_000) if quick else n
        Xp = np.random.default_rng(1).standard_normal((n, 5))
        calls = max(1, 20_000 // n) if not quick else 1
        best, _ = per_call(
            {"autopoly": lambda: auto(Xp), "PF + Ridge": lambda: ridge(Xp)}, calls, repeat
        )
        a, r = best["autopoly"], best["PF + Ridge"]
        gap = float(np.max(np.abs(auto(Xp) - ridge(Xp))) / np.std(y))
        rows.append((f"{n:,} rows", a * 1e3, r * 1e3, a / r, gap))
        targets.append(
            (
                f"predict: {n:,} rows: autopoly / PF + Ridge",
                f"{a / r:.2f}x",
                "<= 1.0x",
                a / r <= 1.0,
            )
        )
        checks.append(
            (
                f"predict: {n:,} rows: the same predictions",
                gap < 1e-9,
                f"max abs gap / std(y) = {gap:.1e} (< 1e-9)",
            )
        )
    header = ["rows", "autopoly (ms)", "PF + Ridge (ms)", "ratio", "max abs gap / std(y)"]
    return (header, rows), targets, checks


CPU_REFERENCE = "the CPU (reference), NumPy input"


def task_device(device, quick):
    """1e6 and 1e7 rows on ``device`` against the CPU (NumPy input, and a tensor already there).

    Without a GPU (``--device cpu --tasks device``) it times the CPU against itself: the code
    path of the table runs, the ratios mean nothing.
    """
    import torch

    rows, targets, checks = [], [], []
    for n in [20_000, 200_000] if quick else [1_000_000, 10_000_000]:
        rng = np.random.default_rng(1)
        X = rng.uniform(-1, 1, (n, 5))  # no expanded matrix: 1e7 rows would take 4.4 GB
        y = X[:, 0] ** 3 - 2 * X[:, 1] * X[:, 2] + X[:, 3] + 0.1 * rng.standard_normal(n)
        fit_autopoly(X[:1000], y[:1000], 3, device)  # context and kernels, not timed
        X_d, y_d = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
        methods = {
            f"on {device}, NumPy input": lambda: fit_autopoly(X, y, 3, device),
            f"on {device}, tensor on {device}": lambda: fit_autopoly(X_d, y_d, 3, "auto"),
            CPU_REFERENCE: lambda: fit_autopoly(X, y, 3, "cpu"),
        }
        timed = C.interleaved(methods, 1 if quick or n > 1_000_000 else 2)
        t_cpu = min(timed[CPU_REFERENCE]["times"])
        ref = timed[CPU_REFERENCE]["result"][0](X[:10_000])
        for name, r in timed.items():
            t = min(r["times"])
            rows.append((f"{n:,} x 5, degree 3", name, t, t_cpu / t))
            gap = float(np.max(np.abs(r["result"][0](X[:10_000]) - ref)) / np.std(y))
            checks.append(
                (
                    f"device: {n:,} rows, {name}: predicts as the CPU fit",
                    gap < 1e-9,
                    f"max abs gap / std(y) = {gap:.1e} (< 1e-9)",
                )
            )
        best = min(min(timed[k]["times"]) for k in methods if k != CPU_REFERENCE)
        targets.append(
            (
                f"device: {n:,} x 5, degree 3 on {device} vs this machine's CPU",
                f"{t_cpu / best:.1f}x faster",
                "reported",
                None if device == "cpu" else True,
            )
        )
    header = ["problem", "fit", "time (s, best)", "speed-up over the CPU"]
    return (header, rows), targets, checks


# ------------------------------------------------------------------------------- the tasks


def run_task(methods, X, y, degree, repeat, warmup=True):
    """Time the methods side by side; score each against the exact optimum."""
    optimum, _ = C.ls_optimum(design(X, degree), y)
    variance = float(np.var(y))
    timed = C.interleaved(methods, repeat, warmup)
    rows = []
    for name, res in timed.items():
        predict, n_iter = res["result"]
        mse = float(np.mean((predict(X) - y) ** 2))
        rel_opt, rel_var = C.relative_excess(mse, optimum, variance)
        rows.append(
            {
                "method": name,
                "time": min(res["times"]),
                "times": res["times"],
                "iterations": n_iter,
                "mse": mse,
                "rel_opt": rel_opt,
                "rel_var": rel_var,
            }
        )
    return {"optimum": optimum, "variance": variance, "rows": rows}


def task_table(task, reference):
    ref_time = next(r["time"] for r in task["rows"] if r["method"] == reference)
    header = [
        "method",
        "fit time (s, best)",
        f"time / {reference}",
        "iterations / epochs",
        "MSE",
        "(MSE - opt) / opt",
        "(MSE - opt) / Var(y)",
    ]
    rows = [
        (
            r["method"],
            r["time"],
            r["time"] / ref_time,
            r["iterations"],
            r["mse"],
            r["rel_opt"],
            r["rel_var"],
        )
        for r in task["rows"]
    ]
    return header, rows


def main():
    import torch

    args, device, out, env = C.start(__doc__)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 5)
    steps = 50 if quick else 1000
    checks, targets, sections, csvs, notes = [], [], [], {}, []

    tasks = set(args.tasks.split(",")) if args.tasks else set(TASKS)
    unknown = tasks - set(TASKS)
    if unknown:
        sys.exit(
            f"--tasks {args.tasks!r}: unknown {sorted(unknown)}; choose from {', '.join(TASKS)}."
        )
    tutorial = poly = None
    t_hand = t_est = None
    n_rows = 5_000 if quick else 100_000

    if "tutorial" in tasks:
        # Tutorial task: every peer on 20 rows.
        X, y = tutorial_data()
        methods = {
            "autopoly (defaults)": lambda: fit_autopoly(X, y, 2, device),
            "autopoly (tutorial loop config)": lambda: fit_autopoly(
                X, y, 2, device, **{**LOOP_CONFIG, "max_iter": steps, "n_iter_no_change": steps}
            ),
            "PolynomialFeatures + Ridge(cholesky)": lambda: fit_ridge(X, y, 2),
            "PolynomialFeatures + StandardScaler + SGDRegressor": lambda: fit_sgd(X, y, 2),
            "skorch NeuralNetRegressor (Linear, NAdam lr=0.01, full batch)": lambda: fit_skorch(
                X, y, 2, torch.optim.NAdam, 0.01, steps, 20
            ),
            "torch loop (tutorial)": lambda: fit_torch_loop(X, y, 2, device, steps),
        }
        if not HAVE_SKORCH:
            methods = {k: v for k, v in methods.items() if not k.startswith("skorch")}
            notes.append("skorch is not installed (`pip install skorch`): its rows are left out.")
        print("task: tutorial")
        tutorial = run_task(methods, X, y, 2, max(1, repeat // 2) if not quick else 1)
        header, rows = task_table(tutorial, "PolynomialFeatures + Ridge(cholesky)")
        csvs["bench_fit_tutorial"] = (header, rows)
        sections.append(
            (
                f"Tutorial task: 20 samples, y = x^2 + 2x + 3 (no noise), degree 2; "
                f"{steps} steps for the fixed-step methods",
                C.markdown_table(header, rows),
            )
        )
        by = {r["method"]: r for r in tutorial["rows"]}
        for name in ("autopoly (defaults)", "PolynomialFeatures + Ridge(cholesky)"):
            ok = by[name]["rel_var"] < 1e-9
            checks.append(
                (
                    f"tutorial: {name} reaches the exact fit",
                    ok,
                    f"(MSE - opt) / Var(y) = {by[name]['rel_var']:.2e} (< 1e-9)",
                )
            )

    if "poly" in tasks:
        # 1e5 x 5, degree 3 (target 1).
        n_rows = 5_000 if quick else 100_000
        X, y = poly_data(n_rows, 5, 3)
        methods = {
            "autopoly (defaults)": lambda: fit_autopoly(X, y, 3, device),
            "PolynomialFeatures + Ridge(cholesky)": lambda: fit_ridge(X, y, 3),
            "PolynomialFeatures + StandardScaler + SGDRegressor": lambda: fit_sgd(X, y, 3),
        }
        slow = {
            "skorch NeuralNetRegressor (Linear, Adam lr=0.01, batch 256, 10 epochs)": lambda: (
                fit_skorch(X, y, 3, torch.optim.Adam, 0.01, 2 if quick else 10, 256)
            ),
            "torch loop (tutorial: NAdam lr=0.01, 1000 full-batch steps)": lambda: fit_torch_loop(
                X, y, 3, device, steps
            ),
        }
        if not HAVE_SKORCH:
            slow = {k: v for k, v in slow.items() if not k.startswith("skorch")}
        print(f"task: poly ({n_rows} x 5, degree 3)")
        poly = run_task(methods, X, y, 3, repeat)
        # The slow peers are far from the race; one timed run each is enough.
        poly_slow = run_task(slow, X, y, 3, 1, warmup=False)
        poly["rows"] += poly_slow["rows"]
        header, rows = task_table(poly, "PolynomialFeatures + Ridge(cholesky)")
        csvs["bench_fit_poly"] = (header, rows)
        sections.append(
            (
                f"{n_rows:,} rows x 5 features, degree 3 (55 terms), noise variance 1",
                C.markdown_table(header, rows),
            )
        )
        by = {r["method"]: r for r in poly["rows"]}
        auto, ridge = by["autopoly (defaults)"], by["PolynomialFeatures + Ridge(cholesky)"]
        for r in (auto, ridge):
            checks.append(
                (
                    f"poly: {r['method']} reaches the optimum",
                    r["rel_opt"] <= 1e-6,
                    f"(MSE - opt) / opt = {r['rel_opt']:.2e} (<= 1e-6)",
                )
            )
        ratio1 = auto["time"] / ridge["time"]
        targets.append(
            (
                "target 1: 1e5 x 5, degree 3: autopoly defaults / Ridge(cholesky) time, "
                "at 1e-6 of the optimum",
                f"{ratio1:.2f}x ({auto['time']:.3f} s vs {ridge['time']:.3f} s), "
                f"excess {auto['rel_opt']:.1e}",
                "<= 1.5x, <= 1e-6",
                ratio1 <= 1.5 and auto["rel_opt"] <= 1e-6,
            )
        )

    if "overhead" in tasks:
        # Per-step overhead (target 3): the same 1000 NAdam steps, estimator vs hand loop.
        X, y = tutorial_data()
        over_repeat = args.repeat or (1 if quick else 15)
        timed = C.interleaved(
            {
                "torch loop by hand": lambda: fit_torch_loop(X, y, 2, device, steps),
                "TorchPolyRegressor (tutorial loop config)": lambda: fit_autopoly(
                    X, y, 2, device, **{**LOOP_CONFIG, "max_iter": steps, "n_iter_no_change": steps}
                ),
            },
            over_repeat,
        )
        (hand_name, hand), (est_name, est) = timed.items()
        t_hand, t_est = min(hand["times"]), min(est["times"])
        p_hand, p_est = hand["result"][0](X), est["result"][0](X)
        gap = float(np.max(np.abs(p_hand - p_est)) / np.std(y))
        header = ["method", "time (s, best)", "median (s)", "per step (us)", "ratio to hand loop"]
        rows = [
            (
                name,
                min(r["times"]),
                float(np.median(r["times"])),
                min(r["times"]) / steps * 1e6,
                min(r["times"]) / t_hand,
            )
            for name, r in timed.items()
        ]
        csvs["bench_fit_overhead"] = (header, rows)
        sections.append(
            (
                f"Overhead: {steps} fixed NAdam steps on the tutorial task, best of {over_repeat}",
                "The tutorial loop config is `TorchPolyRegressor(degree=2, optimizer='nadam', "
                f"lr=0.01, max_iter={steps}, tol=0, n_iter_no_change={steps}, "
                "conditioning=False)`: raw monomials, no whitening, no early stop.\n\n"
                + C.markdown_table(header, rows),
            )
        )
        checks.append(
            (
                "overhead: estimator and hand loop take the same steps",
                gap < 1e-5,
                f"max |prediction gap| / std(y) = {gap:.1e} (< 1e-5)",
            )
        )
        targets.append(
            (
                "target 3: 1000 NAdam steps: estimator / hand loop",
                f"{t_est / t_hand:.2f}x "
                f"({t_est * 1e6 / steps:.0f} vs {t_hand * 1e6 / steps:.0f} us per step)",
                "<= 1.2x",
                t_est / t_hand <= 1.2,
            )
        )

    if "tensors" in tasks:
        # Torch tensors in: the same fit from a tensor already on the fit device (no copy to
        # make) against the fit from the NumPy array (copied there chunk by chunk).
        X, y = poly_data(n_rows, 5, 3)
        X_t = torch.from_numpy(X).to(device)
        y_t = torch.from_numpy(y).to(device)
        timed = C.interleaved(
            {
                "autopoly on a NumPy array": lambda: fit_autopoly(X, y, 3, device),
                f"autopoly on a float64 tensor on {device} (device='auto')": lambda: fit_autopoly(
                    X_t, y_t, 3, "auto"
                ),
            },
            repeat,
        )
        (np_name, on_np), (t_name, on_t) = timed.items()
        t_np, t_t = min(on_np["times"]), min(on_t["times"])
        gap = float(np.max(np.abs(on_np["result"][0](X) - on_t["result"][0](X_t))) / np.std(y))
        header = ["input", "time (s, best)", "median (s)", "ratio to NumPy input"]
        rows = [
            (name, min(r["times"]), float(np.median(r["times"])), min(r["times"]) / t_np)
            for name, r in timed.items()
        ]
        csvs["bench_fit_tensors"] = (header, rows)
        sections.append(
            (
                f"Torch tensors in: {n_rows:,} rows x 5 features, degree 3, best of {repeat}",
                C.markdown_table(header, rows),
            )
        )
        checks.append(
            (
                "tensors: the tensor fit predicts what the NumPy fit predicts",
                gap < 1e-10,
                f"max |prediction gap| / std(y) = {gap:.1e} (< 1e-10)",
            )
        )
        targets.append(
            (
                "tensors: fit on a tensor / fit on the same NumPy array",
                f"{t_t / t_np:.2f}x ({t_t:.3f} s vs {t_np:.3f} s)",
                "<= 1.1x",
                t_t / t_np <= 1.1,
            )
        )

    # Speed to the limit: small fits, the grid, large fits, predictions, devices.
    speed = {
        "small": ("Small fits: time per fit, best of interleaved batches", task_small),
        "grid": ("GridSearchCV over degree x alpha on diabetes", task_grid),
        "large": ("Large fits: against PF + Ridge(cholesky) and one P.T @ P", task_large),
        "predict": ("Predict: time per call, best of interleaved batches", task_predict),
    }
    for name, (title, task) in speed.items():
        if name in tasks:
            print(f"task: {name}")
            table, t, c = task(device, quick, repeat)
            csvs[f"bench_fit_{name}"] = table
            sections.append((title, C.markdown_table(*table)))
            targets += t
            checks += c
    gpu = None
    if "device" in tasks and (device != "cpu" or args.tasks):
        # On a GPU; or on the CPU when asked by name (the table's code path, ratios of 1).
        print("task: device")
        table, t, c = task_device(device, quick)
        csvs["bench_fit_device"] = table
        sections.append((f"Devices: {device} against the CPU", C.markdown_table(*table)))
        targets += t
        checks += c
        gpu = table[1]
    elif "device" in tasks:
        targets.append(
            (
                "device: 1e6 and 1e7 rows on a CUDA GPU vs the CPU",
                "not run (needs --device cuda; --device cpu --tasks device runs the table's "
                "code on the CPU)",
                "reported",
                None,
            )
        )

    # Output.
    env["load average at end"] = C.loadavg()
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_fit.py`"
        + (" --quick" if quick else "")
        + f" (device: {device}).",
        env,
        targets,
    )
    for title, table in sections:
        md += [f"## {title}", "", table, ""]
    md += ["## Checks", "", C.checks_markdown(checks), ""]
    md += [line for note in notes for line in (note, "")]
    md += [
        "Times are the best of interleaved repetitions; `(MSE - opt) / opt` is n/a when "
        "the optimum is zero (noiseless data).",
        "",
    ]
    C.write_report(out, "bench_fit", md, targets)
    for name, (header, rows) in csvs.items():
        C.write_csv(out / f"{name}.csv", header, rows)
    if tutorial is not None and poly is not None and t_hand is not None:
        plot(
            out / "bench_fit.png",
            tutorial,
            poly,
            timed_overhead=(t_hand, t_est),
            steps=steps,
            n_rows=n_rows,
        )
    else:
        plot_ratios(out / "bench_fit.png", targets)
    C.dump_json(
        out / "bench_fit.json",
        {
            "env": env,
            "targets": targets,
            "checks": checks,
            "gpu": gpu,
            "tutorial": tutorial and tutorial["rows"],
            "poly": poly and poly["rows"],
        },
    )
    print("\n".join(md))
    C.finish(checks)


def plot(path, tutorial, poly, timed_overhead, steps, n_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [3, 3, 1.4]})
    for ax, task, title in (
        (axes[0], tutorial, "tutorial task (20 rows, degree 2)"),
        (axes[1], poly, f"{n_rows:,} x 5, degree 3"),
    ):
        rows = task["rows"][::-1]
        names = [_short(r["method"]) for r in rows]
        times = [r["time"] for r in rows]
        colors = ["tab:blue" if r["method"].startswith("autopoly") else "tab:gray" for r in rows]
        ax.barh(names, times, color=colors)
        ax.set_xscale("log")
        ax.set_xlabel("fit time (s, log scale)")
        ax.set_title(title)
        for i, r in enumerate(rows):
            label = "exact" if abs(r["rel_var"]) < 1e-12 else f"excess {r['rel_var']:.0e}"
            ax.text(times[i], i, "  " + label, va="center", fontsize=8)
        ax.set_xlim(min(times) / 2, max(times) * 60)
    t_hand, t_est = timed_overhead
    axes[2].bar(
        ["hand loop", "estimator"],
        [t_hand * 1e6 / steps, t_est * 1e6 / steps],
        color=["tab:gray", "tab:blue"],
    )
    axes[2].axhline(1.2 * t_hand * 1e6 / steps, color="k", ls="--", lw=1, label="1.2x target")
    axes[2].set_ylabel("microseconds per NAdam step")
    axes[2].set_title(f"overhead ({steps} steps)")
    axes[2].legend(fontsize=8, loc="upper left")
    fig.suptitle("autopoly vs peers (excess = (MSE - optimum) / Var(y))", fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, path)


def plot_ratios(path, targets):
    """The measured ratios of the targets (a run of some tasks only)."""
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = [(t[0], re.match(r"([0-9.]+)x", str(t[1]))) for t in targets]
    found = [(name, float(m.group(1))) for name, m in found if m]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(found) + 1))
    if found:
        names, ratios = zip(*found[::-1])
        ax.barh([n[:70] for n in names], ratios, color="tab:blue")
        ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_xlabel("measured ratio (see each target's threshold)")
    fig.tight_layout()
    C.save_figure(fig, path)


def _short(name):
    return name.replace("PolynomialFeatures", "PF").replace("StandardScaler", "Scaler").replace(
        "NeuralNetRegressor", "NNR"
    ).split(" (")[0] + (
        " (" + name.split(" (")[1].split(",")[0].rstrip(")") + ")" if " (" in name else ""
    )


if __name__ == "__main__":
    main()
