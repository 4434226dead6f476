"""The absolute error and the pinball (quantile) loss reach the linear program's optimum.

Reference: scikit-learn's ``QuantileRegressor(alpha=0, solver="highs")`` on the same terms,
an interior-point/simplex LP solver: the objective must agree to 1e-8 relative and the
coefficients to 1e-6 of the largest, with the defaults.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import QuantileRegressor
from sklearn.preprocessing import PolynomialFeatures

from autopoly import TorchPolyRegressor
from autopoly._vertex import refine


def _problem(seed, n=300, raw=False):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    if raw:
        X = 1e3 + 10 * X  # unscaled inputs: the terms span nine orders of magnitude
    y = (X[:, 0] - X[:, 0].mean()) ** 2 - X[:, 1] + rng.standard_t(3, n)
    return X, y


def _pinball(y, pred, q, w):
    r = y - pred
    return float(np.sum(w * np.maximum(q * r, (q - 1) * r)) / np.sum(w))


def _check_against_highs(model, X, y, q, w, degree):
    P = PolynomialFeatures(degree, include_bias=False).fit_transform(X)
    ref = QuantileRegressor(quantile=q, alpha=0, solver="highs").fit(P, y, sample_weight=w)
    ours = _pinball(y, model.predict(X), q, w)
    best = _pinball(y, ref.predict(P), q, w)
    assert ours <= best * (1 + 1e-8) + 1e-300, (ours, best)
    scale = np.abs(ref.coef_).max()
    assert_allclose(model.coef_, ref.coef_, rtol=0, atol=1e-6 * scale)
    assert model.intercept_ == pytest.approx(ref.intercept_, abs=1e-6 * max(scale, 1.0))


@pytest.mark.parametrize("q", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("weighted", [False, True])
def test_quantile_loss_reaches_the_highs_optimum(q, weighted):
    X, y = _problem(seed=1)
    w = np.random.default_rng(2).uniform(0.2, 2.0, len(y)) if weighted else np.ones(len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a certified optimum: no warning
        model = TorchPolyRegressor(degree=3, loss="quantile", quantile=q).fit(X, y, sample_weight=w)
    assert model.n_iter_ >= 1
    _check_against_highs(model, X, y, q, w, 3)


def test_absolute_error_is_the_median_fit_and_reports_its_loss():
    X, y = _problem(seed=3)
    model = TorchPolyRegressor(degree=2, loss="absolute_error").fit(X, y)
    _check_against_highs(model, X, y, 0.5, np.ones(len(y)), 2)
    mae = float(np.mean(np.abs(y - model.predict(X))))
    assert model.best_loss_ == pytest.approx(mae, rel=1e-10)


def test_quantile_on_raw_unscaled_inputs():
    X, y = _problem(seed=4, raw=True)
    model = TorchPolyRegressor(degree=2, loss="quantile", quantile=0.9).fit(X, y)
    P = PolynomialFeatures(2, include_bias=False).fit_transform(X)
    ref = QuantileRegressor(quantile=0.9, alpha=0, solver="highs").fit(P, y)
    ours = _pinball(y, model.predict(X), 0.9, 1.0)
    assert ours <= _pinball(y, ref.predict(P), 0.9, 1.0) * (1 + 1e-8)


def test_multi_output_quantile_equals_single_output_fits():
    X, y = _problem(seed=5)
    Y = np.column_stack([y, 1e3 * y[::-1]])
    joint = TorchPolyRegressor(loss="quantile", quantile=0.25).fit(X, Y)
    for k in range(2):
        alone = TorchPolyRegressor(loss="quantile", quantile=0.25).fit(X, Y[:, k])
        assert_allclose(joint.coef_[k], alone.coef_, rtol=0, atol=1e-8 * np.abs(alone.coef_).max())


def test_quantile_on_tensors_equals_numpy():
    X, y = _problem(seed=6)
    ref = TorchPolyRegressor(loss="quantile", quantile=0.7).fit(X, y)
    model = TorchPolyRegressor(loss="quantile", quantile=0.7).fit(
        torch.from_numpy(X), torch.from_numpy(y)
    )
    assert_allclose(model.coef_, ref.coef_, rtol=1e-10, atol=1e-12)


def test_the_quantile_parameter_is_validated():
    X, y = _problem(seed=7, n=30)
    with pytest.raises(ValueError, match="quantile"):
        TorchPolyRegressor(loss="quantile", quantile=1.5).fit(X, y)


# ----------------------------------------------------------- the vertex walk on its own


def test_refine_certifies_the_lp_optimum_from_a_poor_start():
    rng = np.random.default_rng(8)
    n, p = 200, 6
    B = torch.from_numpy(np.linalg.qr(rng.standard_normal((n, p)))[0])
    t = torch.from_numpy(B.numpy() @ rng.standard_normal(p) + rng.standard_t(2, n) * 0.1)
    w = torch.ones(n, dtype=torch.float64)
    for q in (0.1, 0.5, 0.9):
        result = refine(B, t, w, q, torch.zeros(p, dtype=torch.float64))
        assert result.certified
        # Every row of the vertex is fitted exactly, and no direction descends.
        r = (t - B @ result.V).numpy()
        assert np.sum(np.abs(r) < 1e-12) >= p
        for _ in range(20):
            d = torch.from_numpy(rng.standard_normal(p)) * 1e-6
            moved = torch.mean(
                torch.maximum(q * (t - B @ (result.V + d)), (q - 1) * (t - B @ (result.V + d)))
            )
            assert float(moved) >= result.objective - 1e-15


# An L1 penalty keeps the problem a linear program: QuantileRegressor's own penalty.
@pytest.mark.parametrize(
    "loss, q", [("quantile", 0.05), ("quantile", 0.5), ("quantile", 0.95), ("absolute_error", 0.5)]
)
@pytest.mark.parametrize("alpha", [1.0, 30.0, 1e4])
def test_l1_penalty_reaches_the_highs_optimum_with_exact_zeros(loss, q, alpha):
    """``alpha`` maps to ``QuantileRegressor(alpha=alpha / sum(w))`` for the pinball loss and
    to ``alpha / (2 * sum(w))`` for the absolute error (twice the pinball loss at 0.5).
    """
    X, y = _problem(7)
    w = np.random.default_rng(8).uniform(0.5, 2, len(y))
    F = PolynomialFeatures(3, include_bias=False).fit_transform(X)
    W = w.sum()
    a = alpha / W if loss == "quantile" else alpha / (2 * W)
    params = {"quantile": q} if loss == "quantile" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = TorchPolyRegressor(degree=3, loss=loss, alpha=alpha, l1_ratio=1.0, **params)
        model.fit(X, y, sample_weight=w)
    ref = QuantileRegressor(quantile=q, alpha=a, solver="highs").fit(F, y, sample_weight=w)

    def objective(intercept, coef):
        return _pinball(y, intercept + F @ coef, q, w) + a * np.abs(coef).sum()

    ours, best = objective(model.intercept_, model.coef_), objective(ref.intercept_, ref.coef_)
    assert abs(ours - best) <= 1e-8 * best
    factor = 2 if loss == "absolute_error" else 1
    assert model.best_loss_ == pytest.approx(factor * ours, rel=1e-10)
    # HiGHS's zeros are exact to its feasibility tolerance; ours are exact.
    np.testing.assert_array_equal(model.coef_ == 0, np.abs(ref.coef_) < 1e-10)
    scale = max(np.abs(ref.coef_).max(), abs(ref.intercept_))
    assert_allclose(model.coef_, ref.coef_, rtol=0, atol=1e-6 * scale)
    if alpha == 1e4:
        assert (model.coef_ == 0).all()
