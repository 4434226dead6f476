"""Rank-deficient designs get LinearRegression's minimum-norm solution, with a warning.

References: ``LinearRegression`` on ``PolynomialFeatures(degree, include_bias=False)`` where
its rank decision is the true rank (inputs near zero), and an exact minimum-norm solution
computed with mpmath at 60 digits for raw inputs far from zero, where LinearRegression's cutoff
on the raw monomials (``tol=1e-6`` since scikit-learn 1.9) also discards directions the data
determine.
"""

import warnings

import mpmath
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import PolynomialFeatures

from autopoly import TorchPolyRegressor
from autopoly._rank import RankDeficiencyWarning, rank_tolerance


def _three_values(rng):
    x = rng.choice([0.0, 2.0, 5.0], size=20)
    return x[:, None], np.linspace(-3, 8, 23)[:, None], 3


def _duplicated_column(rng):
    X = rng.standard_normal((40, 2))
    return X[:, [0, 0, 1]], (3 * rng.standard_normal((25, 2)))[:, [0, 0, 1]], 3


def _constant_column(rng):
    X = np.c_[rng.standard_normal((40, 2)), np.full(40, 1.5)]
    new = np.c_[3 * rng.standard_normal((25, 2)), np.full(25, 1.5)]
    return X, new, 2


def _fewer_rows_than_terms(rng):
    return rng.standard_normal((6, 2)), 3 * rng.standard_normal((25, 2)), 3


def _wide(rng):
    # 454 terms on 15 rows: 439 undetermined directions, inputs away from zero.
    X = 2.0 + rng.uniform(size=(15, 12))
    return X, 2.0 + rng.uniform(-0.5, 1.5, size=(25, 12)), 3


CASES = {
    "three-distinct-x-degree-3": _three_values,
    "duplicated-column": _duplicated_column,
    "constant-column": _constant_column,
    "six-rows-ten-terms": _fewer_rows_than_terms,
    "fifteen-rows-454-terms": _wide,
}


def _fit_warns(model, X, y, sample_weight=None):
    """Fit, checking that exactly one RankDeficiencyWarning points at this file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y, sample_weight=sample_weight)
    rank = [w for w in caught if issubclass(w.category, RankDeficiencyWarning)]
    assert len(rank) == 1, [str(w.message) for w in caught]
    assert rank[0].filename == __file__
    assert "numerical rank" in str(rank[0].message)
    return model


def _assert_same_polynomial(model, coef, intercept, X, X_new, predict_ref, rtol=1e-8):
    scale = np.abs(coef).max()
    assert_allclose(model.coef_, coef, rtol=0, atol=rtol * scale)
    assert_allclose(model.intercept_, intercept, rtol=0, atol=rtol * max(scale, abs(intercept)))
    for rows in (X, X_new):
        ref = predict_ref(rows)
        assert_allclose(model.predict(rows), ref, rtol=0, atol=rtol * ref.std())


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_rank_deficient_fit_equals_linear_regression(case, fit_intercept, weighted):
    rng = np.random.default_rng(0)
    X, X_new, degree = CASES[case](rng)
    y = rng.standard_normal(X.shape[0])
    sample_weight = rng.uniform(0.5, 2.0, X.shape[0]) if weighted else None
    poly = PolynomialFeatures(degree, include_bias=False).fit(X)
    ref = LinearRegression(fit_intercept=fit_intercept).fit(
        poly.transform(X), y, sample_weight=sample_weight
    )
    assert ref.rank_ < poly.n_output_features_  # the case is rank-deficient
    model = _fit_warns(
        TorchPolyRegressor(degree=degree, fit_intercept=fit_intercept), X, y, sample_weight
    )
    _assert_same_polynomial(
        model, ref.coef_, ref.intercept_, X, X_new, lambda rows: ref.predict(poly.transform(rows))
    )


def test_warning_names_the_rank_and_the_terms():
    rng = np.random.default_rng(1)
    X = np.c_[rng.standard_normal((30, 2)), np.full(30, 4.0)]
    y = rng.standard_normal(30)
    with pytest.warns(
        RankDeficiencyWarning,
        match=r"numerical rank 6 .*terms involved are "
        r"x2, x0 x2, x1 x2, x2\^2\. .*alpha > 0",
    ):
        TorchPolyRegressor(degree=2).fit(X, y)


def _exact_min_norm(X, y, degree, dps=60):
    """LinearRegression's answer in exact arithmetic: centred, minimum-norm least squares."""
    mpmath.mp.dps = dps
    powers = PolynomialFeatures(degree, include_bias=False).fit(X).powers_
    F = mpmath.matrix(
        [
            [mpmath.fprod(mpmath.mpf(float(v)) ** int(p) for v, p in zip(row, pw)) for pw in powers]
            for row in X
        ]
    )
    n, m = F.rows, F.cols
    means = [mpmath.fsum(F[i, j] for i in range(n)) / n for j in range(m)]
    y_mean = mpmath.fsum(mpmath.mpf(float(v)) for v in y) / n
    A = mpmath.matrix([[F[i, j] - means[j] for j in range(m)] for i in range(n)])
    U, S, V = mpmath.svd_r(A)
    coef = [mpmath.mpf(0)] * m
    for k in range(len(S)):
        if S[k] > max(S) * mpmath.mpf(10) ** (-dps // 2):
            u_y = mpmath.fsum(U[i, k] * (mpmath.mpf(float(y[i])) - y_mean) for i in range(n))
            coef = [coef[j] + V[k, j] * u_y / S[k] for j in range(m)]
    intercept = y_mean - mpmath.fsum(means[j] * coef[j] for j in range(m))
    return np.array([float(c) for c in coef]), float(intercept), powers


@pytest.mark.parametrize("case", ["three-distinct-x-degree-3", "duplicated-column-degree-2"])
def test_raw_inputs_far_from_zero_get_the_exact_minimum_norm_solution(case):
    rng = np.random.default_rng(2)
    if case == "three-distinct-x-degree-3":
        X = 1e3 + rng.choice([0.0, 2.0, 5.0], size=(20, 1))
        X_new = 1e3 + np.linspace(-3, 8, 23)[:, None]
        degree = 3
    else:
        X = (1e3 + rng.uniform(0, 5, (40, 2)))[:, [0, 0, 1]]
        X_new = (1e3 + rng.uniform(-3, 8, (25, 2)))[:, [0, 0, 1]]
        degree = 2
    y = rng.standard_normal(X.shape[0])
    coef, intercept, powers = _exact_min_norm(X, y, degree)

    def exact_predict(rows):
        terms = np.prod(rows[:, None, :] ** powers[None], axis=2)
        return intercept + terms @ coef

    model = _fit_warns(TorchPolyRegressor(degree=degree), X, y)
    _assert_same_polynomial(model, coef, intercept, X, X_new, exact_predict)


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_terms_that_all_vanish_on_the_rows_get_zero_coefficients(loss):
    X = np.zeros((5, 2))
    y = np.arange(5.0)
    model = TorchPolyRegressor(degree=2, fit_intercept=False, loss=loss)
    with pytest.warns(RankDeficiencyWarning, match="numerical rank 0"):
        model.fit(X, y)
    assert_allclose(model.coef_, 0.0)
    assert_allclose(model.predict(np.ones((3, 2))), 0.0)


def test_multi_output_rank_deficient_fit_equals_linear_regression():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 2))[:, [0, 0, 1]]
    Y = rng.standard_normal((30, 3)) * [1.0, 1e3, 1e-3]
    poly = PolynomialFeatures(2, include_bias=False).fit(X)
    ref = LinearRegression().fit(poly.transform(X), Y)
    model = _fit_warns(TorchPolyRegressor(degree=2), X, Y)
    for k in range(3):
        scale = np.abs(ref.coef_[k]).max()
        assert_allclose(model.coef_[k], ref.coef_[k], rtol=0, atol=1e-8 * scale)
        assert_allclose(model.intercept_[k], ref.intercept_[k], rtol=0, atol=1e-8 * scale)


def test_full_rank_fits_do_not_warn():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 3))
    y = rng.standard_normal(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TorchPolyRegressor(degree=3).fit(X, y)
        # Far from zero: the raw monomials are nearly collinear, the whitened terms are not.
        TorchPolyRegressor(degree=3).fit(1e3 + X, y)
        TorchPolyRegressor(degree=3, dtype="float32").fit(X, y)


def test_a_ridge_penalty_is_not_rank_deficiency():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 2))[:, [0, 0, 1]]
    y = rng.standard_normal(40)
    poly = PolynomialFeatures(3, include_bias=False).fit(X)
    ref = Ridge(alpha=0.5).fit(poly.transform(X), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = TorchPolyRegressor(degree=3, alpha=0.5).fit(X, y)
    assert_allclose(model.coef_, ref.coef_, rtol=0, atol=1e-8 * np.abs(ref.coef_).max())
    assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8)


def test_repeated_rows_equal_integer_weights_on_a_rank_deficient_design():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((12, 2))
    y = rng.standard_normal(12)
    counts = rng.integers(1, 4, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        weighted = TorchPolyRegressor(degree=4).fit(X, y, sample_weight=counts)
        repeated = TorchPolyRegressor(degree=4).fit(np.repeat(X, counts, 0), np.repeat(y, counts))
    scale = np.abs(weighted.coef_).max()
    assert_allclose(weighted.coef_, repeated.coef_, rtol=0, atol=1e-9 * scale)
    assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-9)


def test_partial_fit_and_warm_start_keep_the_minimum_norm_solution():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((60, 2))[:, [0, 0, 1]]
    y = rng.standard_normal(60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        full = TorchPolyRegressor(degree=3).fit(X, y)
        stream = TorchPolyRegressor(degree=3)
        for rows in np.array_split(np.arange(60), 3):
            stream.partial_fit(X[rows], y[rows])
        warm = TorchPolyRegressor(degree=3, warm_start=True).fit(X, y).fit(X, y)
    for model in (stream, warm):
        assert_allclose(model.coef_, full.coef_, rtol=0, atol=1e-9 * np.abs(full.coef_).max())
        assert_allclose(model.intercept_, full.intercept_, rtol=1e-9)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_other_losses_warn_and_split_duplicated_terms_equally(loss):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(50)
    y = 1 + 2 * x + rng.standard_normal(50)
    model = _fit_warns(TorchPolyRegressor(degree=1, loss=loss), np.c_[x, x], y)
    # The loss sees only x0 + x1: the least-norm split of the slope is an equal one.
    assert_allclose(model.coef_[0], model.coef_[1], rtol=1e-9)


def test_rank_tolerance_grows_with_terms_and_rows():
    import torch

    eps = torch.finfo(torch.float32).eps
    assert rank_tolerance(torch.float32, 816, 3000) == pytest.approx(10 * eps * 816)
    assert rank_tolerance(torch.float32, 10, 10**6) == pytest.approx(10 * eps * 1000)
    assert rank_tolerance(torch.float64, 20) == pytest.approx(10 * 2.0**-52 * 20)


def test_float32_with_815_terms_agrees_with_float64():
    # 15 Gaussian features at degree 3: every term is determined, none may be dropped or damped.
    rng = np.random.default_rng(9)
    X = rng.standard_normal((3000, 15))
    poly = PolynomialFeatures(3, include_bias=False).fit(X)
    assert poly.n_output_features_ == 815
    y = poly.transform(X) @ rng.standard_normal(815) / 30 + 0.1 * rng.standard_normal(3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        f64 = TorchPolyRegressor(degree=3).fit(X, y)
        f32 = TorchPolyRegressor(degree=3, dtype="float32").fit(X, y)
    X_new = rng.standard_normal((500, 15))
    for rows in (X, X_new):
        gap = np.abs(f32.predict(rows) - f64.predict(rows)).max()
        assert gap < 1e-4 * y.std(), gap / y.std()
