"""Convergence to the true optimum, losses, penalties, stopping and streaming."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import PolynomialFeatures

from autopoly import DivergenceError, TorchPolyRegressor


def _exact_polyfit(x, y, degree):
    """Least-squares coefficients (lowest power first) in exact rational arithmetic."""
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


def _digits(coef, exact):
    """Correct significant digits of the worst coefficient."""
    rel = np.abs(coef - exact) / np.abs(exact)
    return float(-np.log10(rel.max() + 1e-17))


def _digits_each(coef, exact):
    """Correct significant digits of every coefficient (16 when exact to rounding)."""
    rel = np.abs(coef - exact) / np.abs(exact)
    return np.minimum(-np.log10(rel + 1e-300), 16.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "x, degree",
    [
        (np.arange(21.0), 5),
        (np.linspace(1.5e5, 3e6, 40), 2),
        (np.linspace(-9.0, -3.0, 40), 10),
        (np.linspace(1e3, 1e3 + 10, 30), 3),
        (np.linspace(0.0, 1.0, 50), 8),
        (np.linspace(100.0, 200.0, 60), 4),
    ],
    ids=[
        "0..20-deg5",
        "1.5e5..3e6-deg2",
        "-9..-3-deg10",
        "1e3..1e3+10-deg3",
        "0..1-deg8",
        "100..200-deg4",
    ],
)
def test_raw_ill_conditioned_data_matches_exact_reference(x, degree, seed):
    """Every raw coefficient has at least numpy.polyfit's correct digits (exact reference)."""
    rng = np.random.default_rng(degree + 100 * seed)
    true = rng.standard_normal(degree + 1)
    y = np.polynomial.polynomial.polyval(x, true)
    y = y + 0.01 * y.std() * rng.standard_normal(len(x))
    exact = _exact_polyfit(x, y, degree)
    numpy_digits = _digits_each(np.polynomial.polynomial.polyfit(x, y, degree), exact)
    model = TorchPolyRegressor(degree=degree).fit(x.reshape(-1, 1), y)
    ours = _digits_each(np.r_[model.intercept_, model.coef_], exact)
    assert (ours >= numpy_digits - 0.05).all(), (ours, numpy_digits)
    assert ours.min() >= 11.5


def test_refinement_keeps_rows_on_the_device_and_helps_only_when_needed():
    """Centred inputs lose nothing to the basis change: no refinement pass is paid."""
    import autopoly._refine as refine

    rng = np.random.default_rng(5)
    x = rng.standard_normal(50)
    y = 1 + x - x**2 + 0.1 * rng.standard_normal(50)
    calls = []
    original = refine.RawDesign

    class Spy(original):
        def __init__(self, *args, **kwargs):
            calls.append(1)
            super().__init__(*args, **kwargs)

    refine.RawDesign = Spy
    try:
        TorchPolyRegressor().fit(x.reshape(-1, 1), y)
        assert calls == []
        # Raw x near 1e4 with small raw coefficients: the constant term is a difference of
        # numbers 1000 times larger.
        far = 1e4 + x
        y_far = 3 + 0.5 * far - 1e-5 * far**2 + 1e-9 * rng.standard_normal(50)
        TorchPolyRegressor().fit(far.reshape(-1, 1), y_far)
        assert calls == [1]
    finally:
        refine.RawDesign = original


def test_well_conditioned_reaches_exact_optimum_mse():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10_000, 5))
    P = PolynomialFeatures(3).fit_transform(X)
    y = P @ rng.standard_normal(P.shape[1]) + rng.standard_normal(len(X))
    coef, *_ = np.linalg.lstsq(P, y, rcond=None)
    optimum = np.mean((P @ coef - y) ** 2)
    model = TorchPolyRegressor(degree=3).fit(X, y)
    assert np.mean((model.predict(X) - y) ** 2) <= optimum * (1 + 1e-6)
    assert model.n_iter_ < 10
    assert model.best_loss_ == pytest.approx(optimum, rel=1e-6)


def test_float32_accuracy_is_documented_level():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5000, 3))
    y = X[:, 0] ** 3 - X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(5000)
    exact = TorchPolyRegressor(degree=3).fit(X, y)
    single = TorchPolyRegressor(degree=3, dtype="float32").fit(X, y)
    assert_allclose(single.coef_, exact.coef_, atol=1e-4)


def _outlier_data(rng, n=400):
    X = rng.uniform(-2, 2, (n, 1))
    y = 1 + 2 * X[:, 0] - X[:, 0] ** 2 + 0.05 * rng.standard_normal(n)
    bad = rng.choice(n, n // 10, replace=False)
    y[bad] += rng.uniform(20, 50, bad.size)
    return X, y, np.array([2.0, -1.0]), 1.0


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_robust_losses_resist_outliers(loss):
    X, y, coef, intercept = _outlier_data(np.random.default_rng(3))
    robust = TorchPolyRegressor(degree=2, loss=loss, epsilon=0.1, max_iter=500).fit(X, y)
    squared = TorchPolyRegressor(degree=2).fit(X, y)
    err_robust = np.abs(np.r_[robust.intercept_ - intercept, robust.coef_ - coef]).max()
    err_squared = np.abs(np.r_[squared.intercept_ - intercept, squared.coef_ - coef]).max()
    assert err_robust < 0.1
    assert err_squared > 10 * err_robust


def test_callable_loss_is_used():
    X, y, coef, intercept = _outlier_data(np.random.default_rng(4))
    calls = []

    def pinball_median(y_pred, y_true, sample_weight):
        calls.append(1)
        r = y_true - y_pred
        per_row = torch.maximum(0.5 * r, -0.5 * r).sum(1)
        return (sample_weight * per_row).sum() / sample_weight.sum()

    model = TorchPolyRegressor(degree=2, loss=pinball_median, max_iter=500).fit(X, y)
    assert calls
    assert np.abs(model.coef_ - coef).max() < 0.1
    assert abs(model.loss_curve_[-1] - model.best_loss_) < 1e-2


@pytest.mark.parametrize("weighted", [False, True])
def test_ridge_matches_sklearn_ridge(weighted):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 3))
    y = X[:, 0] * X[:, 1] + X[:, 2] ** 2 + 0.3 * rng.standard_normal(300)
    w = rng.uniform(0.5, 2, 300) if weighted else None
    P = PolynomialFeatures(2, include_bias=False).fit_transform(X)
    ref = Ridge(alpha=3.0, solver="cholesky", tol=1e-12).fit(P, y, sample_weight=w)
    ours = TorchPolyRegressor(degree=2, alpha=3.0).fit(X, y, sample_weight=w)
    assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6, atol=1e-8)


def test_ridge_penalty_does_not_depend_on_input_scale_parametrization():
    rng = np.random.default_rng(6)
    X = 1000 + 100 * rng.standard_normal((200, 1))
    y = 0.01 * X[:, 0] + rng.standard_normal(200)
    P = PolynomialFeatures(1, include_bias=False).fit_transform(X)
    ref = Ridge(alpha=1e4, solver="cholesky").fit(P, y)
    ours = TorchPolyRegressor(degree=1, alpha=1e4).fit(X, y)
    assert_allclose(ours.coef_, ref.coef_, rtol=1e-6)


def test_large_l1_drives_coefficients_to_zero():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 3))
    y = 2 * X[:, 0] + 0.1 * rng.standard_normal(300)
    free = TorchPolyRegressor(degree=2).fit(X, y)
    lasso = TorchPolyRegressor(degree=2, alpha=300.0, l1_ratio=1.0, max_iter=500).fit(X, y)
    small = np.delete(np.abs(lasso.coef_), 0)
    assert small.max() < 1e-3
    assert 0.5 < lasso.coef_[0] < free.coef_[0]


def test_diverging_lr_raises_and_keeps_previous_state():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((100, 2))
    y = X[:, 0] ** 2
    model = TorchPolyRegressor(degree=2).fit(X, y)
    before = model.coef_.copy(), model.predict(X)
    model.set_params(optimizer="sgd", lr=1e6, max_iter=500)
    with pytest.raises(DivergenceError, match="non-finite.*smaller lr"):
        model.fit(X, y)
    assert np.isfinite(model.coef_).all()
    assert_allclose(model.coef_, before[0])
    assert_allclose(model.predict(X), before[1])


def test_diverging_fit_on_unfitted_estimator_leaves_it_unfitted():
    X, y = np.random.default_rng(9).standard_normal((50, 1)), np.arange(50.0)
    model = TorchPolyRegressor(optimizer="sgd", lr=1e8, max_iter=200)
    with pytest.raises(DivergenceError):
        model.fit(X, y)
    assert not hasattr(model, "coef_")


def test_convergence_warning_says_what_to_change():
    X = np.random.default_rng(10).standard_normal((100, 2))
    y = X[:, 0] ** 2 + X[:, 1]
    with pytest.warns(ConvergenceWarning, match="max_iter=3.*Increase max_iter"):
        TorchPolyRegressor(optimizer="sgd", lr=0.01, max_iter=3).fit(X, y)


def test_easy_problem_stops_before_max_iter():
    X = np.random.default_rng(11).standard_normal((500, 2))
    y = X[:, 0] ** 2 + X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = TorchPolyRegressor(degree=2).fit(X, y)
    assert model.n_iter_ < 10 and len(model.loss_curve_) == model.n_iter_


def test_sgd_oscillating_at_lr_1_warns_instead_of_claiming_convergence():
    # In the whitened parametrization the squared error's Hessian is 2 * I: SGD at lr=1 jumps
    # between two points of equal loss forever, and must not pass that off as convergence.
    rng = np.random.default_rng(13)
    X = rng.uniform(-2, 2, (60, 2))
    y = 1 + X[:, 0] - 2 * X[:, 0] * X[:, 1]
    with pytest.warns(ConvergenceWarning, match=r"oscillates across the optimum.*smaller lr"):
        TorchPolyRegressor(optimizer="sgd", lr=1.0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        newton = TorchPolyRegressor(optimizer="sgd", lr=0.5).fit(X, y)
        # Adam wobbles near the optimum: a stall there is the usual (documented) stop.
        adam = TorchPolyRegressor(optimizer="adam", lr=0.1).fit(X, y)
    assert newton.n_iter_ <= 3
    assert_allclose(newton.coef_, [1, 0, 0, -2, 0], atol=1e-9)
    assert adam.score(X, y) > 0.9999


@pytest.mark.parametrize("alpha", [0.0, 1e-9, 1e-3, 10.0])
def test_float32_keeps_its_accuracy_with_a_ridge_penalty(alpha):
    # The penalty is appended to the least-squares rows by QR: no squared condition number.
    rng = np.random.default_rng(16)
    X = rng.uniform(-1, 1, (2000, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] ** 2 + 0.1 * rng.standard_normal(2000)
    ref = TorchPolyRegressor(degree=5, alpha=alpha).fit(X, y)
    f32 = TorchPolyRegressor(degree=5, alpha=alpha, dtype="float32").fit(X, y)
    assert_allclose(f32.coef_, ref.coef_, atol=1e-4)
    assert abs(f32.score(X, y) - ref.score(X, y)) < 1e-6


def test_duplicated_features_share_their_coefficients():
    rng = np.random.default_rng(14)
    x = rng.uniform(-2, 2, 50)
    y = 3 + 0.5 * x + x**2 + 0.1 * rng.standard_normal(50)
    model = TorchPolyRegressor(degree=2).fit(np.c_[x, x], y)
    # Terms x0, x1, x0^2, x0 x1, x1^2: each copy gets an equal share.
    assert_allclose(model.coef_[0], model.coef_[1], rtol=1e-7)
    assert_allclose(model.coef_[2:], model.coef_[2], rtol=1e-7)
    single = TorchPolyRegressor(degree=2).fit(x.reshape(-1, 1), y)
    assert_allclose(2 * model.coef_[0], single.coef_[0], rtol=1e-6)
    assert_allclose(3 * model.coef_[2], single.coef_[1], rtol=1e-6)
    assert_allclose(model.predict(np.c_[x, x]), single.predict(x.reshape(-1, 1)), atol=1e-6)


def test_batch_size_covering_every_row_is_a_full_batch_fit():
    rng = np.random.default_rng(15)
    X = rng.standard_normal((60, 2))
    y = X[:, 0] ** 2 - X[:, 1] + 0.1 * rng.standard_normal(60)
    for loss in ("squared_error", "huber"):
        full = TorchPolyRegressor(loss=loss, optimizer="adam", lr=0.05, random_state=0).fit(X, y)
        covering = TorchPolyRegressor(
            loss=loss, optimizer="adam", lr=0.05, batch_size=1000, random_state=0
        ).fit(X, y)
        assert covering.n_iter_ == full.n_iter_
        assert_allclose(covering.coef_, full.coef_, rtol=1e-12, atol=1e-12)


def test_early_stopping_with_a_constant_validation_target_still_ranks_by_error():
    # A step function: with 20 rows, most seeds hold out rows of one side only.
    X = np.linspace(-1, 1, 20).reshape(-1, 1)
    y = (X[:, 0] > 0).astype(float)
    exact = TorchPolyRegressor(degree=3).fit(X, y)
    scores = []
    for seed in range(6):
        model = TorchPolyRegressor(
            degree=3, early_stopping=True, optimizer="adam", lr=0.05, random_state=seed
        ).fit(X, y)
        # Not an R^2 of -1e300, nor a constant 0 that would stop the fit at its first epoch.
        assert np.isfinite(model.validation_scores_).all()
        assert len(set(model.validation_scores_)) == model.n_iter_ > 1
        scores.append(model.score(X, y))
    # Two held-out rows are a noisy judge, but most splits train well past the start.
    assert np.median(scores) > 0.85 * exact.score(X, y)


def test_early_stopping_with_a_few_rows_holds_out_two():
    X = np.linspace(-1, 1, 5).reshape(-1, 1)
    y = X[:, 0] ** 2
    model = TorchPolyRegressor(early_stopping=True, random_state=0).fit(X, y)
    # One held-out row would give R^2 = 1 - residual / 0, about -1e300.
    assert min(model.validation_scores_) > -1e3


def test_divergence_error_has_its_public_name():
    assert DivergenceError.__module__ == "autopoly"
    assert "autopoly.DivergenceError" in repr(DivergenceError)


def test_warm_start_on_shifted_data_solves_the_new_problem():
    # The previous model, extrapolated to far-away rows, starts a millionfold worse than the
    # constant model: that is where the fit starts, not a divergence.
    rng = np.random.default_rng(17)
    X = rng.standard_normal((200, 2))
    y = X[:, 0] ** 2 - X[:, 1] + 0.1 * rng.standard_normal(200)
    streamed = TorchPolyRegressor().partial_fit(X, y).partial_fit(X + 100, y)
    whole = TorchPolyRegressor().fit(np.r_[X, X + 100], np.r_[y, y])
    assert_allclose(streamed.coef_, whole.coef_, rtol=1e-8, atol=1e-10)
    warm = TorchPolyRegressor(warm_start=True).fit(X, y).fit(100 * X, y)
    assert_allclose(warm.coef_, TorchPolyRegressor().fit(100 * X, y).coef_, rtol=1e-8, atol=1e-12)


def test_a_stream_whose_loss_grows_at_every_call_is_stopped_early():
    # Each call starts where the last one left off: the guard must not move with it.
    rng = np.random.default_rng(20)
    model = TorchPolyRegressor(optimizer="sgd", lr=1.2, batch_size=100, random_state=0)
    with pytest.raises(DivergenceError):
        for _ in range(20):
            X = rng.standard_normal((200, 2))
            model.partial_fit(X, X[:, 0] ** 2 - X[:, 1])


@pytest.mark.parametrize(
    "loss, dtype, scale",
    [
        ("absolute_error", "float32", 1e20),
        ("absolute_error", "float64", 1e-160),
        ("huber", "float32", 1e20),
    ],
)
def test_losses_linear_in_y_take_spreads_whose_square_would_not_fit(loss, dtype, scale):
    rng = np.random.default_rng(21)
    X = rng.standard_normal((100, 2))
    y = scale * (X[:, 0] ** 2 - X[:, 1] + 0.1 * rng.standard_normal(100))
    assert TorchPolyRegressor(loss=loss, dtype=dtype).fit(X, y).score(X, y) > 0.99


def test_reaching_the_optimum_on_the_last_iteration_is_convergence():
    rng = np.random.default_rng(18)
    X = rng.standard_normal((200, 2))
    y = X[:, 0] ** 2 - X[:, 1] + 0.1 * rng.standard_normal(200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        TorchPolyRegressor(max_iter=1, optimizer_kwargs={"max_iter": 50}).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        TorchPolyRegressor(max_iter=1).fit(X, y)  # one L-BFGS iteration is not enough here


def test_huber_with_large_residuals_is_not_called_oscillating():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = 1e5 * (X[:, 0] ** 2 - X[:, 1] + 0.1 * rng.standard_normal(200))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        TorchPolyRegressor(loss="huber").fit(X, y)  # epsilon=1 is tiny next to y


def test_early_stopping_records_scores_and_restores_best():
    rng = np.random.default_rng(12)
    X = rng.uniform(-1, 1, (300, 1))
    y = np.sin(3 * X[:, 0]) + 0.3 * rng.standard_normal(300)
    model = TorchPolyRegressor(
        degree=12,
        early_stopping=True,
        optimizer="adam",
        lr=0.05,
        max_iter=400,
        n_iter_no_change=15,
        random_state=0,
    ).fit(X, y)
    scores = model.validation_scores_
    assert len(scores) == model.n_iter_ < 400
    assert model.best_validation_score_ == max(scores)
    assert model.best_validation_score_ > 0.5


def test_partial_fit_streaming_squared_error_equals_full_fit():
    rng = np.random.default_rng(13)
    X = 50 + 10 * rng.standard_normal((5000, 3))
    y = X[:, 0] * X[:, 1] / 100 - X[:, 2] + rng.standard_normal(5000)
    full = TorchPolyRegressor(degree=2).fit(X, y)
    stream = TorchPolyRegressor(degree=2)
    for rows in np.array_split(np.arange(5000), 25):
        stream.partial_fit(X[rows], y[rows])
    assert_allclose(stream.coef_, full.coef_, rtol=1e-7, atol=1e-10)
    assert_allclose(stream.intercept_, full.intercept_, rtol=1e-7)


def test_partial_fit_streaming_minibatch_huber_approaches_full_fit():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((4000, 2))
    y = 1 + X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.standard_normal(4000)
    full = TorchPolyRegressor(degree=2, loss="huber").fit(X, y)
    stream = TorchPolyRegressor(
        degree=2, loss="huber", optimizer="adam", lr=0.01, batch_size=100, random_state=0
    )
    for _ in range(8):
        for rows in np.array_split(np.arange(4000), 20):
            stream.partial_fit(X[rows], y[rows])
    assert_allclose(stream.coef_, full.coef_, atol=0.05)


def test_conditioning_off_reproduces_the_raw_tutorial_recipe():
    rng = np.random.default_rng(0)
    x = 5 * rng.standard_normal((20, 1))
    y = x[:, 0] ** 2 + 2 * x[:, 0] + 3
    raw = TorchPolyRegressor(
        degree=2,
        optimizer="nadam",
        lr=0.01,
        max_iter=1000,
        tol=0,
        n_iter_no_change=1000,
        conditioning=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        raw.fit(x, y)
    assert raw.n_iter_ == 1000
    assert abs(raw.intercept_ - 3) > 0.1
    assert abs(TorchPolyRegressor(degree=2).fit(x, y).intercept_ - 3) < 1e-9


def test_large_fit_takes_the_gram_route_and_matches_least_squares(monkeypatch):
    import autopoly._data_pass as data_pass
    import autopoly._fitting as fitting

    calls = []
    original = data_pass.gram_factor
    monkeypatch.setattr(data_pass, "gram_factor", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(15)
    X = rng.standard_normal((3000, 4))
    P = PolynomialFeatures(3).fit_transform(X)
    y = P @ rng.standard_normal(P.shape[1]) + rng.standard_normal(len(X))
    monkeypatch.setattr(fitting, "GRAM_ROUTE_ENTRIES", 0)
    model = TorchPolyRegressor(degree=3).fit(X, y)
    assert calls
    coef, *_ = np.linalg.lstsq(P, y, rcond=None)
    assert_allclose(np.r_[model.intercept_, model.coef_], coef, rtol=1e-9, atol=1e-10)


def test_ill_conditioned_large_fit_falls_back_to_qr(monkeypatch):
    import autopoly._fitting as fitting

    monkeypatch.setattr(fitting, "GRAM_ROUTE_ENTRIES", 0)
    x = np.linspace(-9.0, -3.0, 40)
    rng = np.random.default_rng(16)
    y = np.polynomial.polynomial.polyval(x, rng.standard_normal(11))
    y = y + 0.01 * y.std() * rng.standard_normal(len(x))
    exact = _exact_polyfit(x, y, 10)
    model = TorchPolyRegressor(degree=10).fit(x.reshape(-1, 1), y)
    assert _digits(np.r_[model.intercept_, model.coef_], exact) > 11


# Not the absolute error: after the optimizer it walks to its certified vertex, which a
# callable loss (of unknown form) does not.
@pytest.mark.parametrize("loss", ["squared_error", "huber"])
@pytest.mark.parametrize("conditioning", [True, False])
def test_builtin_fast_paths_equal_the_generic_callable_path(loss, conditioning):
    """The single-output shortcuts (folded weights and scalings) change no result."""
    from autopoly._losses import resolve_loss

    rng = np.random.default_rng(17)
    X = rng.uniform(-2, 2, (200, 2))
    y = 1 + X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.standard_normal(200)
    w = rng.uniform(0.5, 2.0, 200)
    _, builtin = resolve_loss(loss, 0.5)

    def generic(y_pred, y_true, sample_weight):
        return builtin(y_pred, y_true, sample_weight / sample_weight.sum()).mean()

    params = dict(
        degree=2,
        optimizer="adam",
        lr=0.01,
        max_iter=50,
        tol=0,
        n_iter_no_change=50,
        epsilon=0.5,
        conditioning=conditioning,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast = TorchPolyRegressor(loss=loss, **params).fit(X, y, sample_weight=w)
        slow = TorchPolyRegressor(loss=generic, **params).fit(X, y, sample_weight=w)
    # With conditioning the squared error runs on the sufficient statistics instead of the
    # rows: the same objective by other arithmetic, whose rounding Adam amplifies a little.
    rtol = 1e-5 if loss == "squared_error" and conditioning else 1e-7
    assert_allclose(fast.coef_, slow.coef_, rtol=rtol, atol=1e-9)
    assert_allclose(fast.loss_curve_, slow.loss_curve_, rtol=rtol)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"loss": "huber"},
        {"loss": "absolute_error"},
        {"alpha": 3.0, "l1_ratio": 0.5},
        {"loss": "huber", "alpha": 1.0},
        {"optimizer": "sgd", "lr": 0.25},
    ],
    ids=["squared", "huber", "absolute", "elastic-net", "huber-ridge", "sgd"],
)
def test_each_output_of_a_multi_output_fit_stops_where_its_own_fit_stops(params):
    # Outputs of very different scales and difficulty: one shared stopping rule would stop
    # the easy ones late and the hard ones early.
    rng = np.random.default_rng(21)
    X = rng.uniform(-2, 2, (300, 2))
    Y = np.column_stack(
        [
            X[:, 0] ** 2 + 0.3 * rng.standard_t(2, 300),
            1000 * (X[:, 1] - X[:, 0] * X[:, 1]) + 50 * rng.standard_t(2, 300),
            1e-3 * (X[:, 0] + rng.standard_normal(300)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        joint = TorchPolyRegressor(**params).fit(X, Y)
        for k in range(Y.shape[1]):
            alone = TorchPolyRegressor(**params).fit(X, Y[:, k])
            scale = np.abs(alone.coef_).max()
            assert_allclose(joint.coef_[k], alone.coef_, rtol=0, atol=1e-8 * scale)
            assert joint.intercept_[k] == pytest.approx(
                alone.intercept_, rel=1e-8, abs=1e-8 * scale
            )
            assert joint.n_iter_ >= alone.n_iter_


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_refining_the_raw_coefficients_keeps_the_predictions_at_the_optimum(weighted):
    # Two nearly collinear features near 1e3 at degree 4: float64 raw coefficients (up to
    # 1e8, with an intercept of -2e9) cannot hold the optimum, so the raw refinement step must
    # not move the scaled coefficients that predict uses (it did: 3% above the optimum).
    rng = np.random.default_rng(8)
    X = np.sort(rng.uniform(1000, 1010, (900, 2)), axis=0)
    X[300:400, 1] = 1004.0
    y = np.sin(X[:, 0]) + 1e-3 * X[:, 1] ** 2 + 0.05 * rng.normal(size=900)
    w = rng.uniform(0.5, 2, 900) if weighted else np.ones(900)
    w[600:700] = 0.0 if weighted else 1.0
    poly = PolynomialFeatures(4, include_bias=False)
    Z = (X - 1005.0) / 5.0  # the reference in a well-conditioned basis, no rank cutoff
    ref = LinearRegression(tol=1e-15).fit(poly.fit_transform(Z), y, sample_weight=w)
    optimum = w @ (ref.predict(poly.transform(Z)) - y) ** 2
    model = TorchPolyRegressor(degree=4).fit(X, y, sample_weight=w if weighted else None)
    assert w @ (model.predict(X) - y) ** 2 <= optimum * (1 + 1e-10)
