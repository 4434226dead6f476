"""The Huber loss: the scale-free form of ``HuberRegressor`` and the meaning of ``alpha``.

The reference for ``huber_scale='joint'`` is ``HuberRegressor`` run to a tight tolerance and
then *polished*: on the partition of the rows it found (inside the threshold or not, and the
signs outside), the optimality conditions are a linear system in the coefficients for each
scale plus one equation in the scale, solved here to rounding. That removes the reference's
own stopping error (L-BFGS-B leaves 1e-6 to 1e-5 in the coefficients even at ``tol=1e-14``).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import brentq
from sklearn.linear_model import HuberRegressor, Ridge
from sklearn.preprocessing import PolynomialFeatures

from autopoly import TorchPolyRegressor
from autopoly._losses import huber_scale


def _features(X, degree=2):
    return PolynomialFeatures(degree, include_bias=False).fit_transform(X)


def _objective(F, y, w, intercept, coef, scale, epsilon, alpha):
    """HuberRegressor's objective divided by sum(w)."""
    z = np.abs(y - intercept - F @ coef) / scale
    H = np.where(z <= epsilon, z**2, 2 * epsilon * z - epsilon**2)
    return (w.sum() * scale + scale * w @ H + alpha * coef @ coef) / w.sum()


def _polished(F, y, w, epsilon, alpha, intercept, coef, scale):
    """The exact optimum on the partition of ``(intercept, coef, scale)``."""
    D = np.c_[np.ones(len(y)), F]
    r = y - D @ np.r_[intercept, coef]
    inside = np.abs(r) <= epsilon * scale
    sign = np.sign(r) * ~inside
    P = np.eye(D.shape[1])
    P[0, 0] = 0
    Wi = w * inside

    def beta(s):
        lhs = (D.T * Wi) @ D / s + alpha * P
        rhs = (D.T * Wi) @ y / s + epsilon * D.T @ (w * sign)
        return np.linalg.solve(lhs, rhs)

    def stationarity(s):
        res = y - D @ beta(s)
        return s * s * (w.sum() - epsilon**2 * w @ ~inside) - Wi @ res**2

    s = brentq(stationarity, scale / 2, scale * 2, xtol=1e-15, rtol=1e-15)
    b = beta(s)
    res = y - D @ b
    assert np.array_equal(np.abs(res) <= epsilon * s, inside), "the partition moved"
    return b[0], b[1:], s


@pytest.fixture
def outlier_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2))
    y = 1 + X[:, 0] - 2 * X[:, 1] ** 2 + 0.5 * rng.standard_normal(300)
    y[:20] += 20 * rng.standard_normal(20)
    return X, y


@pytest.mark.parametrize("epsilon", [1.35, 2.0])
@pytest.mark.parametrize("alpha", [0.0, 1e-4, 10.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
def test_joint_scale_reaches_huber_regressor_optimum(outlier_data, epsilon, alpha, weighted):
    X, y = outlier_data
    F = _features(X)
    w = np.random.default_rng(1).uniform(0.5, 2, len(y)) if weighted else np.ones(len(y))
    model = TorchPolyRegressor(loss="huber", huber_scale="joint", epsilon=epsilon, alpha=alpha)
    model.fit(X, y, sample_weight=w)
    reference = HuberRegressor(epsilon=epsilon, alpha=alpha, tol=1e-14, max_iter=10**5)
    reference.fit(F, y, sample_weight=w)
    b0, b, s = _polished(
        F, y, w, epsilon, alpha, reference.intercept_, reference.coef_, reference.scale_
    )
    best = _objective(F, y, w, b0, b, s, epsilon, alpha)
    ours = _objective(F, y, w, model.intercept_, model.coef_, model.scale_, epsilon, alpha)
    theirs = _objective(
        F, y, w, reference.intercept_, reference.coef_, reference.scale_, epsilon, alpha
    )
    assert abs(ours - best) <= 1e-8 * best
    assert theirs >= best * (1 - 1e-12)  # the polished point is the better optimum
    scale = np.abs(np.r_[b0, b]).max()
    # The fit ends with Newton steps on its partition: the optimum to rounding (1e-6 is the
    # acceptance; 1e-9 is what the polish gives).
    assert_allclose(model.coef_, b, rtol=0, atol=1e-9 * scale)
    assert model.intercept_ == pytest.approx(b0, abs=1e-9 * scale)
    assert model.scale_ == pytest.approx(s, rel=1e-9)
    assert model.loss_curve_[-1] == pytest.approx(ours, rel=1e-8)


def test_scale_is_the_exact_profile_minimizer():
    """The closed-form scale beats every other scale on a fine grid around it."""
    rng = np.random.default_rng(2)
    import torch

    r = torch.tensor(rng.standard_t(2, (500, 2)))
    w = torch.tensor(rng.uniform(0.1, 1, 500))
    w = w / w.sum()
    sigma = huber_scale(r, w, 1.35).numpy()

    def f(s, col):
        z = np.abs(r[:, col].numpy()) / s
        H = np.where(z <= 1.35, z**2, 2 * 1.35 * z - 1.35**2)
        return s + s * w.numpy() @ H

    for k in range(2):
        grid = sigma[k] * np.linspace(0.9, 1.1, 2001)
        values = np.array([f(s, k) for s in grid])
        assert f(sigma[k], k) <= values.min() * (1 + 1e-14)


def test_multi_output_equals_separate_fits(outlier_data):
    X, y = outlier_data
    Y = np.c_[y, 1e3 * y[::-1], 1e-3 * (y + X[:, 0] ** 3)]
    for scale in ("joint", "fixed"):
        params = dict(loss="huber", huber_scale=scale, epsilon=1.35, alpha=1.0)
        joint = TorchPolyRegressor(**params).fit(X, Y)
        for k in range(Y.shape[1]):
            alone = TorchPolyRegressor(**params).fit(X, Y[:, k])
            size = np.abs(alone.coef_).max()
            assert_allclose(joint.coef_[k], alone.coef_, rtol=0, atol=1e-8 * size)
            if scale == "joint":
                assert joint.scale_[k] == pytest.approx(alone.scale_, rel=1e-8)
        assert hasattr(joint, "scale_") == (scale == "joint")


def test_integer_weights_equal_repeated_rows(outlier_data):
    X, y = outlier_data
    w = np.random.default_rng(3).integers(1, 4, len(y))
    params = dict(loss="huber", huber_scale="joint", epsilon=1.35)
    weighted = TorchPolyRegressor(**params).fit(X, y, sample_weight=w)
    repeated = TorchPolyRegressor(**params).fit(np.repeat(X, w, 0), np.repeat(y, w))
    assert_allclose(weighted.coef_, repeated.coef_, rtol=0, atol=1e-7)
    assert weighted.scale_ == pytest.approx(repeated.scale_, rel=1e-7)


def test_scale_free_fit_is_equivariant_in_the_units_of_y(outlier_data):
    """Unlike a fixed epsilon, the joint scale makes the fit independent of y's units."""
    X, y = outlier_data
    params = dict(loss="huber", huber_scale="joint", epsilon=1.35)
    base = TorchPolyRegressor(**params).fit(X, y)
    scaled = TorchPolyRegressor(**params).fit(X, 1e4 * y)
    assert_allclose(scaled.coef_, 1e4 * base.coef_, rtol=0, atol=1e-3 * np.abs(base.coef_).max())
    assert scaled.scale_ == pytest.approx(1e4 * base.scale_, rel=1e-6)


def test_fixed_epsilon_alpha_is_ridge_of_twice_alpha_in_the_quadratic_region():
    """The fixed Huber loss is r**2 / 2 inside epsilon: with every residual inside, the fit
    with ``alpha`` is ``Ridge(2 * alpha)`` (documented).
    """
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 2))
    y = 1 + X[:, 0] - X[:, 1] ** 2 + 0.01 * rng.standard_normal(200)
    model = TorchPolyRegressor(loss="huber", epsilon=100.0, alpha=3.0).fit(X, y)
    ridge = Ridge(alpha=6.0).fit(_features(X), y)
    assert_allclose(model.coef_, ridge.coef_, rtol=0, atol=1e-8)


def test_refit_with_another_loss_drops_scale(outlier_data):
    X, y = outlier_data
    model = TorchPolyRegressor(loss="huber", huber_scale="joint").fit(X, y)
    assert model.scale_ > 0
    model.set_params(loss="squared_error").fit(X, y)
    assert not hasattr(model, "scale_")


def test_rows_beyond_the_cache_are_refused_clearly(outlier_data, monkeypatch):
    import autopoly._sources as sources

    monkeypatch.setattr(sources, "CACHE_BYTES", 1024)
    X, y = outlier_data
    with pytest.raises(ValueError, match="huber_scale='joint'.*in memory"):
        TorchPolyRegressor(loss="huber", huber_scale="joint").fit(X, y)


def test_minibatches_estimate_a_scale_per_batch(outlier_data):
    X, y = outlier_data
    full = TorchPolyRegressor(loss="huber", huber_scale="joint").fit(X, y)
    batched = TorchPolyRegressor(
        loss="huber",
        huber_scale="joint",
        optimizer="adam",
        lr=0.05,
        batch_size=100,
        max_iter=300,
        random_state=0,
    ).fit(X, y)
    assert batched.score(X, y) == pytest.approx(full.score(X, y), abs=0.02)
    assert batched.scale_ == pytest.approx(full.scale_, rel=0.2)


def test_joint_scale_refuses_epsilon_below_one(outlier_data):
    X, y = outlier_data
    with pytest.raises(ValueError, match="epsilon=0.8 is below 1 with huber_scale='joint'"):
        TorchPolyRegressor(loss="huber", huber_scale="joint", epsilon=0.8).fit(X, y)


def test_default_epsilon_depends_on_the_scale(outlier_data):
    X, y = outlier_data
    joint = TorchPolyRegressor(loss="huber", huber_scale="joint").fit(X, y)
    explicit = TorchPolyRegressor(loss="huber", huber_scale="joint", epsilon=1.35).fit(X, y)
    assert_allclose(joint.coef_, explicit.coef_, rtol=0, atol=0)
    fixed = TorchPolyRegressor(loss="huber").fit(X, y)
    one = TorchPolyRegressor(loss="huber", epsilon=1.0).fit(X, y)
    assert_allclose(fixed.coef_, one.coef_, rtol=0, atol=0)


@pytest.mark.parametrize("units", [1.0, 100.0])
@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_fixed_epsilon_ends_at_its_exact_optimum(units, alpha):
    """A certificate, in NumPy: on the partition of the rows at the fit (inside epsilon or
    not, and the signs outside) the stationarity conditions are linear; their solution is the
    fit and induces the same partition, so the fit is the optimum (a convex problem). With y in
    units where epsilon=1 is small, gradient methods alone stop 1e-6 short.
    """
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2))
    y = 1 + X[:, 0] - 2 * X[:, 1] ** 2 + 0.5 * rng.standard_normal(300)
    y[:20] += 20 * rng.standard_normal(20)
    y *= units
    model = TorchPolyRegressor(degree=3, loss="huber", epsilon=1.0, alpha=alpha).fit(X, y)
    D = np.c_[np.ones(len(y)), _features(X, 3)]
    b = np.r_[model.intercept_, model.coef_]
    r = y - D @ b
    inside = np.abs(r) <= 1.0
    P = np.eye(D.shape[1])
    P[0, 0] = 0
    exact = np.linalg.solve(
        D[inside].T @ D[inside] + 2 * alpha * P,
        D[inside].T @ y[inside] + D.T @ (np.sign(r) * ~inside),
    )
    assert np.array_equal(np.abs(y - D @ exact) <= 1.0, inside)
    assert_allclose(b, exact, rtol=0, atol=1e-10 * np.abs(exact).max())
