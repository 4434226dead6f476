"""Every objective to its optimum: autopoly against the reference solver of each, side by side.

For each problem, autopoly's defaults (plus the loss and penalty parameters) and the reference
solver of the field run in the same process, interleaved, on the same polynomial terms:

* L1 and elastic net: ``Lasso`` / ``ElasticNet`` (coordinate descent) at their default
  tolerance and at ``tol=1e-12`` (the accuracy reference), with the documented alpha mapping;
* the pinball loss at q in {0.05, 0.5, 0.95}, the absolute error, and both with an L1 penalty:
  ``QuantileRegressor(solver="highs")``;
* the scale-free Huber loss: ``HuberRegressor`` at its default tolerance and at ``tol=1e-14``;
* a rank-deficient design (duplicated feature, too few distinct values): ``LinearRegression``;
* float32 at 815 terms (3000 x 15, degree 3) against the float64 fit;
* raw ill-conditioned 1-D least squares: ``numpy.polynomial.polynomial.polyfit``, digits
  against exact rational arithmetic.

Reported: the time of each (best of interleaved runs), the ratio to the reference, and the
accuracy (objective excess relative to the best of the two, the largest coefficient gap
relative to the largest coefficient, whether the exact zeros agree). The checks require the
acceptance of the "every objective to its optimum" work: objective within 1e-8 relative,
coefficients within 1e-6 of the largest, the same exact zeros, float32 within 1e-4 of std(y),
and at least polyfit's digits on every coefficient.

Run ``python benchmarks/bench_solvers.py`` (``--quick`` for a seconds-long smoke run).
"""

import warnings
from fractions import Fraction

import _common as C
import numpy as np

TITLE = "bench_solvers: exact optima against the reference solvers"


def features(X, degree):
    from sklearn.preprocessing import PolynomialFeatures

    return PolynomialFeatures(degree, include_bias=False).fit_transform(X)


def data(n, d, seed, heavy=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    noise = rng.standard_t(3, n) if heavy else rng.standard_normal(n)
    y = 1 + X[:, 0] - 2 * X[:, -1] ** 2 + 0.5 * X[:, 0] * X[:, -1] ** 2 + noise
    if heavy:
        y[: n // 15] += 20 * rng.standard_normal(n // 15)
    return X, y


# ------------------------------------------------------------------ objectives, in sklearn's
# units where sklearn defines one (the comparison is relative, so the scale does not matter)


def enet_objective(F, y, b0, b, alpha, l1_ratio):
    r = y - b0 - F @ b
    return r @ r / len(y) + alpha / len(y) * (l1_ratio * np.abs(b).sum() + (1 - l1_ratio) * b @ b)


def pinball_objective(F, y, b0, b, q, a):
    r = y - b0 - F @ b
    return np.mean(np.maximum(q * r, (q - 1) * r)) + a * np.abs(b).sum()


def huber_objective(F, y, b0, b, scale, epsilon, alpha):
    z = np.abs(y - b0 - F @ b) / scale
    H = np.where(z <= epsilon, z**2, 2 * epsilon * z - epsilon**2)
    return (len(y) * scale + scale * H.sum() + alpha * b @ b) / len(y)


def row(problem, ours, ref_name, reference, objective, coef, zeros_agree, t_ours, t_ref):
    """One table row: accuracy of autopoly against the best of the two, and the times."""
    best = min(ours["objective"], reference["objective"])
    size = max(np.abs(reference["coef"]).max(), 1e-300)
    return {
        "problem": problem,
        "reference": ref_name,
        "objective excess (autopoly)": (ours["objective"] - best) / abs(best),
        "objective excess (reference)": (reference["objective"] - best) / abs(best),
        "max coef gap / max coef": float(np.abs(coef - reference["coef"]).max() / size),
        "same exact zeros": zeros_agree,
        "autopoly (ms)": t_ours * 1e3,
        "reference (ms)": t_ref * 1e3,
        "time ratio": t_ours / t_ref,
    }


def compare(problem, fit_ours, fit_ref, ref_name, objective, repeat, zeros=False, fit_tight=None):
    """Time both (interleaved), then judge accuracy against the tight reference when given."""
    timed = C.interleaved({"ours": fit_ours, "ref": fit_ref}, repeat)
    ours, ref = timed["ours"]["result"], timed["ref"]["result"]
    accurate = fit_tight() if fit_tight is not None else ref
    o = {"objective": objective(ours), "coef": ours.coef_}
    r = {"objective": objective(accurate), "coef": accurate.coef_}
    agree = (
        bool(np.array_equal(ours.coef_ == 0, np.abs(accurate.coef_) < 1e-10)) if zeros else "n/a"
    )
    return row(
        problem,
        o,
        ref_name,
        r,
        objective,
        ours.coef_,
        agree,
        min(timed["ours"]["times"]),
        min(timed["ref"]["times"]),
    )


# ------------------------------------------------------------------------------ problems


def lasso_rows(repeat, sizes):
    from sklearn.linear_model import ElasticNet, Lasso

    from autopoly import TorchPolyRegressor

    rows = []
    for n, d, degree in sizes:
        X, y = data(n, d, 0)
        F = features(X, degree)
        for alpha, l1 in [(30.0, 1.0), (3.0, 0.5)]:
            if l1 == 1:

                def reference(tol, a=alpha):
                    return Lasso(alpha=a / (2 * n), tol=tol, max_iter=10**6)
            else:

                def reference(tol, a=alpha, r=l1):
                    return ElasticNet(
                        alpha=a * (1 - r / 2) / n, l1_ratio=r / (2 - r), tol=tol, max_iter=10**6
                    )

            def objective(m, a=alpha, r=l1):
                return enet_objective(F, y, m.intercept_, m.coef_, a, r)

            name = "Lasso" if l1 == 1 else "ElasticNet"
            rows.append(
                compare(
                    f"{name} alpha={alpha:g}, {n} x {d}, degree {degree}",
                    lambda a=alpha, r=l1: TorchPolyRegressor(degree, alpha=a, l1_ratio=r).fit(X, y),
                    lambda ref=reference: ref(1e-4).fit(F, y),
                    f"{name} (default tol)",
                    objective,
                    repeat,
                    zeros=True,
                    fit_tight=lambda ref=reference: ref(1e-12).fit(F, y),
                )
            )
    return rows


def quantile_rows(repeat, sizes):
    from sklearn.linear_model import QuantileRegressor

    from autopoly import TorchPolyRegressor

    rows = []
    for n, d, degree in sizes:
        X, y = data(n, d, 1, heavy=True)
        F = features(X, degree)
        cases = [
            ("quantile", 0.05, 0.0),
            ("quantile", 0.5, 0.0),
            ("quantile", 0.95, 0.0),
            ("absolute_error", 0.5, 0.0),
            ("quantile", 0.5, 10.0),
            ("absolute_error", 0.5, 10.0),
        ]
        for loss, q, alpha in cases:
            a = alpha / n if loss == "quantile" else alpha / (2 * n)
            params = {"quantile": q} if loss == "quantile" else {}

            def ours(loss=loss, alpha=alpha, params=params):
                return TorchPolyRegressor(
                    degree, loss=loss, alpha=alpha, l1_ratio=1.0 if alpha else 0.0, **params
                ).fit(X, y)

            def objective(m, q=q, a=a):
                return pinball_objective(F, y, m.intercept_, m.coef_, q, a)

            label = f"{loss}" + (f" q={q}" if loss == "quantile" else "")
            label += f", L1 alpha={alpha:g}" if alpha else ""
            rows.append(
                compare(
                    f"{label}, {n} x {d}, degree {degree}",
                    ours,
                    lambda q=q, a=a: QuantileRegressor(quantile=q, alpha=a, solver="highs").fit(
                        F, y
                    ),
                    "QuantileRegressor(highs)",
                    objective,
                    repeat,
                    zeros=alpha > 0,
                )
            )
    return rows


class Polished:
    """HuberRegressor's optimum polished on its partition of the rows (see tests/test_huber.py):
    for the rows inside / outside the threshold and the signs outside, the optimality
    conditions are linear in the coefficients for each scale, plus one equation in the scale.
    """

    def __init__(self, F, y, epsilon, alpha, start, rounds=20):
        from scipy.optimize import brentq

        D = np.c_[np.ones(len(y)), F]
        P = np.eye(D.shape[1])
        P[0, 0] = 0
        b, scale = np.r_[start.intercept_, start.coef_], start.scale_
        # Repeat until the partition the solution induces is the one it was solved on.
        for _ in range(rounds):
            r = y - D @ b
            inside = np.abs(r) <= epsilon * scale
            sign = np.sign(r) * ~inside

            def beta(s, inside=inside, sign=sign):
                lhs = (D.T * inside) @ D / s + alpha * P
                return np.linalg.solve(lhs, (D.T * inside) @ y / s + epsilon * D.T @ sign)

            def stationarity(s, inside=inside, beta=beta):
                res = y - D @ beta(s)
                return s * s * (len(y) - epsilon**2 * (~inside).sum()) - inside @ res**2

            scale = brentq(stationarity, scale / 2, scale * 2, xtol=1e-15, rtol=1e-15)
            b = beta(scale)
            if np.array_equal(np.abs(y - D @ b) <= epsilon * scale, inside):
                break
        self.scale_ = scale
        self.intercept_, self.coef_ = b[0], b[1:]


def huber_rows(repeat, sizes):
    from sklearn.linear_model import HuberRegressor

    from autopoly import TorchPolyRegressor

    rows = []
    for n, d, degree in sizes:
        X, y = data(n, d, 2, heavy=True)
        F = features(X, degree)
        for alpha in (1e-4, 10.0):

            def objective(m, alpha=alpha):
                return huber_objective(F, y, m.intercept_, m.coef_, m.scale_, 1.35, alpha)

            rows.append(
                compare(
                    f"Huber (joint scale) alpha={alpha:g}, {n} x {d}, degree {degree}",
                    lambda alpha=alpha: TorchPolyRegressor(
                        degree, loss="huber", huber_scale="joint", alpha=alpha
                    ).fit(X, y),
                    lambda alpha=alpha: HuberRegressor(alpha=alpha, max_iter=10**4).fit(F, y),
                    "HuberRegressor (default tol)",
                    objective,
                    repeat,
                    fit_tight=lambda alpha=alpha: Polished(
                        F,
                        y,
                        1.35,
                        alpha,
                        HuberRegressor(alpha=alpha, tol=1e-14, max_iter=10**5).fit(F, y),
                    ),
                )
            )
    return rows


def rank_rows(repeat):
    from sklearn.linear_model import LinearRegression

    from autopoly import RankDeficiencyWarning, TorchPolyRegressor

    rng = np.random.default_rng(3)
    x = rng.choice([-1.0, 0.5, 2.0], 60)
    X = np.c_[x, x, rng.standard_normal(60)]  # a duplicated feature, 3 distinct values
    y = 1 + x - x**2 + X[:, 2] + 0.1 * rng.standard_normal(60)
    F = features(X, 3)
    X_new = rng.standard_normal((200, 3))

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficiencyWarning)
            return TorchPolyRegressor(3).fit(X, y)

    timed = C.interleaved({"ours": ours, "ref": lambda: LinearRegression().fit(F, y)}, repeat)
    m, ref = timed["ours"]["result"], timed["ref"]["result"]
    size = np.abs(ref.coef_).max()
    gap_new = np.abs(m.predict(X_new) - ref.predict(features(X_new, 3))).max()
    return [
        {
            "problem": "rank-deficient (duplicated feature, 3 distinct values), degree 3",
            "reference": "LinearRegression",
            "objective excess (autopoly)": float(
                np.mean((m.predict(X) - y) ** 2) / np.mean((ref.predict(F) - y) ** 2) - 1
            ),
            "objective excess (reference)": 0.0,
            "max coef gap / max coef": float(np.abs(m.coef_ - ref.coef_).max() / size),
            "same exact zeros": f"new points: {gap_new:.1e}",
            "autopoly (ms)": min(timed["ours"]["times"]) * 1e3,
            "reference (ms)": min(timed["ref"]["times"]) * 1e3,
            "time ratio": min(timed["ours"]["times"]) / min(timed["ref"]["times"]),
        }
    ], gap_new / max(np.abs(ref.predict(features(X_new, 3))).max(), 1.0)


def float32_rows(repeat, quick):
    from autopoly import TorchPolyRegressor

    n, d = (600, 8) if quick else (3000, 15)
    rng = np.random.default_rng(9)
    X = rng.standard_normal((n, d))
    F = features(X, 3)
    y = F @ rng.standard_normal(F.shape[1]) / 30 + 0.1 * rng.standard_normal(n)
    timed = C.interleaved(
        {
            "f32": lambda: TorchPolyRegressor(3, dtype="float32").fit(X, y),
            "f64": lambda: TorchPolyRegressor(3).fit(X, y),
        },
        repeat,
    )
    f32, f64 = timed["f32"]["result"], timed["f64"]["result"]
    X_new = rng.standard_normal((500, d))
    gap = max(np.abs(f32.predict(r) - f64.predict(r)).max() for r in (X, X_new)) / y.std()
    return [
        {
            "problem": f"float32, {n} x {d}, degree 3 ({F.shape[1]} terms)",
            "reference": "the float64 fit",
            "objective excess (autopoly)": "n/a",
            "objective excess (reference)": "n/a",
            "max coef gap / max coef": float(
                np.abs(f32.coef_ - f64.coef_).max() / np.abs(f64.coef_).max()
            ),
            "same exact zeros": f"prediction gap / std(y): {gap:.1e}",
            "autopoly (ms)": min(timed["f32"]["times"]) * 1e3,
            "reference (ms)": min(timed["f64"]["times"]) * 1e3,
            "time ratio": min(timed["f32"]["times"]) / min(timed["f64"]["times"]),
        }
    ], gap


def exact_polyfit(x, y, degree):
    xs = [Fraction(float(v)) for v in x]
    ys = [Fraction(float(v)) for v in y]
    n = degree + 1
    powers = [[xi**k for k in range(2 * n - 1)] for xi in xs]
    A = [[sum(p[i + j] for p in powers) for j in range(n)] for i in range(n)]
    b = [sum(yi * p[i] for yi, p in zip(ys, powers)) for i in range(n)]
    for c in range(n):
        pivot = next(r for r in range(c, n) if A[r][c] != 0)
        A[c], A[pivot], b[c], b[pivot] = A[pivot], A[c], b[pivot], b[c]
        for r in range(n):
            if r != c and A[r][c] != 0:
                f = A[r][c] / A[c][c]
                A[r] = [a - f * ac for a, ac in zip(A[r], A[c])]
                b[r] -= f * b[c]
    return np.array([float(b[i] / A[i][i]) for i in range(n)])


def digits(coef, exact):
    return np.minimum(-np.log10(np.abs(coef - exact) / np.abs(exact) + 1e-300), 16.0)


def polyfit_rows(repeat, quick):
    from autopoly import TorchPolyRegressor

    cases = [
        (np.arange(21.0), 5),
        (np.linspace(1.5e5, 3e6, 40), 2),
        (np.linspace(-9.0, -3.0, 40), 10),
        (np.linspace(1e3, 1e3 + 10, 30), 3),
    ]
    rows, worst = [], np.inf
    for x, degree in cases[:2] if quick else cases:
        rng = np.random.default_rng(degree)
        y = np.polynomial.polynomial.polyval(x, rng.standard_normal(degree + 1))
        y = y + 0.01 * y.std() * rng.standard_normal(len(x))
        exact = exact_polyfit(x, y, degree)
        timed = C.interleaved(
            {
                "ours": lambda x=x, y=y, d=degree: TorchPolyRegressor(d).fit(x[:, None], y),
                "ref": lambda x=x, y=y, d=degree: np.polynomial.polynomial.polyfit(x, y, d),
            },
            repeat,
        )
        m = timed["ours"]["result"]
        ours = digits(np.r_[m.intercept_, m.coef_], exact)
        theirs = digits(timed["ref"]["result"], exact)
        worst = min(worst, float((ours - theirs).min()))
        rows.append(
            {
                "problem": f"raw 1-D least squares, x in [{x[0]:g}, {x[-1]:g}], degree {degree}",
                "reference": "numpy polyfit (exact rational reference)",
                "objective excess (autopoly)": "n/a",
                "objective excess (reference)": "n/a",
                "max coef gap / max coef": f"fewest digits: {ours.min():.1f} vs {theirs.min():.1f}",
                "same exact zeros": (
                    f"worst per-coefficient gain {float((ours - theirs).min()):+.1f}"
                ),
                "autopoly (ms)": min(timed["ours"]["times"]) * 1e3,
                "reference (ms)": min(timed["ref"]["times"]) * 1e3,
                "time ratio": min(timed["ours"]["times"]) / min(timed["ref"]["times"]),
            }
        )
    return rows, worst


def plot(path, rows):
    """Time ratio to the reference per problem (log scale; 1 = as fast)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1))
    labels = [r["problem"] for r in rows]
    ax.barh(range(len(rows)), [r["time ratio"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("autopoly time / reference time")
    C.save_figure(fig, path)


def main():
    args, device, out, env = C.start(__doc__)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 5)
    small = [(200, 2, 3)] if quick else [(200, 2, 3), (5000, 5, 3)]
    rows = []
    rows += lasso_rows(repeat, small)
    rows += quantile_rows(repeat, [(300, 2, 3)] if quick else [(300, 2, 3), (2000, 3, 3)])
    rows += huber_rows(repeat, [(300, 2, 2)] if quick else [(300, 2, 2), (5000, 5, 3)])
    rank, rank_gap = rank_rows(repeat)
    rows += rank
    f32, f32_gap = float32_rows(1 if quick else 3, quick)
    rows += f32
    digits_rows, digits_gain = polyfit_rows(repeat, quick)
    rows += digits_rows

    header = list(rows[0])
    table = [[r[k] for k in header] for r in rows]
    optimum_rows = [
        r
        for r in rows
        if isinstance(r["objective excess (autopoly)"], float)
        and not r["problem"].startswith("rank")
    ]
    worst_excess = max(r["objective excess (autopoly)"] for r in optimum_rows)
    worst_coef = max(r["max coef gap / max coef"] for r in optimum_rows)
    zeros_ok = all(
        r["same exact zeros"] is True for r in rows if isinstance(r["same exact zeros"], bool)
    )
    targets = [
        (
            "objective excess over the best of autopoly and the reference (worst problem)",
            f"{worst_excess:.1e}",
            "<= 1e-8",
            worst_excess <= 1e-8,
        ),
        (
            "coefficient gap to the accurate reference / largest coefficient (worst problem)",
            f"{worst_coef:.1e}",
            "<= 1e-6",
            worst_coef <= 1e-6,
        ),
        (
            "same exact zeros as Lasso / ElasticNet / QuantileRegressor",
            C.fmt(zeros_ok),
            "yes",
            zeros_ok,
        ),
        (
            "rank-deficient: predictions at new points vs LinearRegression (relative)",
            f"{rank_gap:.1e}",
            "<= 1e-8",
            rank_gap <= 1e-8,
        ),
        ("float32 prediction gap / std(y)", f"{f32_gap:.1e}", "<= 1e-4", f32_gap <= 1e-4),
        (
            "raw 1-D digits: worst per-coefficient gain over polyfit",
            f"{digits_gain:+.2f}",
            ">= 0",
            digits_gain >= -0.05,
        ),
    ]
    checks = [(t[0], bool(t[3]), f"{t[1]} ({t[2]})") for t in targets]
    env["load average at end"] = C.loadavg()
    md = C.report_head(
        TITLE,
        "Generated by `benchmarks/bench_solvers.py`"
        + (" --quick" if quick else "")
        + f"; best of {repeat} interleaved runs. The "
        "accuracy columns compare with the reference run to a tight tolerance (Lasso, "
        "ElasticNet at tol=1e-12; HuberRegressor at tol=1e-14, then polished on its "
        "partition of the rows, as it stops 1e-6 to 1e-5 short even so); the times with the "
        "reference at its defaults.",
        env,
        targets,
    ) + [
        "## Problems",
        "",
        C.markdown_table(header, table),
        "",
        "## Checks",
        "",
        C.checks_markdown(checks),
        "",
    ]
    C.write_report(out, "bench_solvers", md, targets)
    C.write_csv(out / "bench_solvers.csv", header, table)
    C.dump_json(out / "bench_solvers.json", {"env": env, "targets": targets, "rows": rows})
    plot(out / "bench_solvers.png", rows)
    print("\n".join(md))
    C.finish(checks)


if __name__ == "__main__":
    main()
