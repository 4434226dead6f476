"""The exact solver of ``||V - C||**2 + lam * ||A @ V||_1`` behind the L1 penalty.

The statistics are built the way the squared-error path sees them: a QR factorization of the
weighted design ``[1, PolynomialFeatures(X)]`` (with the L2 part of an elastic net appended as
rows) gives ``V = R @ theta``, ``C = Q.T @ y`` and ``A = R^-1`` without its intercept row, so
that ``||V - C||**2`` is the weighted mean squared error up to a constant and ``A @ V`` are the
raw coefficients. Any invertible whitening is as good for testing the solver as autopoly's.
"""

import itertools
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import ElasticNet, Lasso
from sklearn.preprocessing import PolynomialFeatures

from autopoly import TorchPolyRegressor
from autopoly._l1 import kkt_violation, solve_generalized_lasso


def _features(X, degree=3):
    return PolynomialFeatures(degree, include_bias=False).fit_transform(X)


def _statistics(F, y, w, alpha, l1_ratio):
    """``(C, A, lam, R)`` of the objective ``mean_w (y - y_hat)**2 + alpha / W * penalty``."""
    W = w.sum()
    root = np.sqrt(w / W)[:, None]
    D = np.c_[np.ones(len(F)), F] * root
    t = y * root[:, 0]
    n_terms = F.shape[1]
    if alpha > 0 and l1_ratio < 1:
        # The L2 part as least-squares rows, as autopoly's Whitening folds it in.
        P = np.sqrt(alpha * (1 - l1_ratio) / W) * np.eye(n_terms + 1)[1:]
        D, t = np.r_[D, P], np.r_[t, np.zeros(n_terms)]
    Q, R = np.linalg.qr(D)
    A = np.linalg.solve(R, np.eye(n_terms + 1))[1:]
    return torch.tensor(Q.T @ t)[:, None], torch.tensor(A), alpha * l1_ratio / W, R


def _kkt_bound(C, lam, result):
    """The promised accuracy ``eps * condition * (1 + ||C|| / lam)``, with a margin of 100."""
    return 100 * np.finfo(float).eps * result.condition * (1 + float(C.norm()) / lam)


def _solve(F, y, w, alpha, l1_ratio):
    """The solver's fit: ``(intercept, coef, result, KKT bound)`` in the raw basis."""
    C, A, lam, R = _statistics(F, y, w, alpha, l1_ratio)
    result = solve_generalized_lasso(C, A, lam)
    theta = np.linalg.solve(R, result.V.numpy()[:, 0])
    return theta[0], result.coef.numpy(), result, _kkt_bound(C, lam, result)


def _objective(F, y, w, intercept, coef, alpha, l1_ratio):
    residual = y - intercept - F @ coef
    penalty = (1 - l1_ratio) * coef @ coef + l1_ratio * np.abs(coef).sum()
    return (w @ residual**2 + alpha * penalty) / w.sum()


def _sklearn(F, y, w, alpha, l1_ratio):
    """The documented mapping: half our objective is sklearn's, with W = sum(w)."""
    W = w.sum()
    if l1_ratio == 1:
        model = Lasso(alpha=alpha / (2 * W), tol=1e-12, max_iter=10**6)
    else:
        # alpha * (1 - l1_ratio) / (2W) = a * (1 - r) / 2 and alpha * l1_ratio / (2W) = a * r.
        a = alpha * (1 - l1_ratio / 2) / W
        model = ElasticNet(alpha=a, l1_ratio=l1_ratio / (2 - l1_ratio), tol=1e-12, max_iter=10**6)
    return model.fit(F, y, sample_weight=w)


def _solve_exactly(M, v):
    """``M^-1 @ v`` for a list of lists of Fractions (Gauss-Jordan, exact)."""
    n = len(v)
    M = [row[:] for row in M]
    v = v[:]
    for col in range(n):
        pivot = next(r for r in range(col, n) if M[r][col] != 0)
        M[col], M[pivot], v[col], v[pivot] = M[pivot], M[col], v[pivot], v[col]
        for r in range(n):
            if r != col and M[r][col] != 0:
                f = M[r][col] / M[col][col]
                M[r] = [a - f * b for a, b in zip(M[r], M[col])]
                v[r] -= f * v[col]
    return [v[i] / M[i][i] for i in range(n)]


def _exact_optimum(F, y, w, alpha, l1_ratio, zero, sign):
    """The optimum on the face ``(zero, sign)`` in rational arithmetic, and whether it is the
    optimum of the whole problem (exact KKT conditions).

    On the face the normal equations are ``F_S.T @ (w * res) = alpha * (1 - l1_ratio) *
    theta_S + alpha * l1_ratio / 2 * sign_S`` and ``sum(w * res) = 0``; the point is optimal
    when the signs come out as assumed and ``|F_j.T @ (w * res)| <= alpha * l1_ratio / 2`` on
    the zeros.
    """
    frac = np.vectorize(Fraction)
    F, y, w = frac(F), frac(y), frac(w)
    l1 = Fraction(alpha) * Fraction(l1_ratio) / 2
    l2 = Fraction(alpha) * (1 - Fraction(l1_ratio))
    support = np.flatnonzero(~zero)
    D = np.c_[np.full(len(y), Fraction(1)), F[:, support]]
    wD = D * w[:, None]
    M = [[sum(wD[:, i] * D[:, j]) for j in range(D.shape[1])] for i in range(D.shape[1])]
    for i in range(1, D.shape[1]):
        M[i][i] += l2
    v = [
        sum(wD[:, i] * y) - (l1 * int(sign[support[i - 1]]) if i else 0) for i in range(D.shape[1])
    ]
    theta = _solve_exactly(M, v)
    coef = [Fraction(0)] * F.shape[1]
    for j, value in zip(support, theta[1:]):
        coef[j] = value
    weighted_residual = w * (y - theta[0] - F[:, support] @ np.array(theta[1:], dtype=object))
    signs_hold = all((c > 0) == (sign[j] > 0) for j, c in zip(support, theta[1:]))
    zeros_hold = all(abs(sum(F[:, j] * weighted_residual)) <= l1 for j in np.flatnonzero(zero))
    return float(theta[0]), np.array([float(c) for c in coef]), signs_hold and zeros_hold


@pytest.fixture
def normal_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = 1 + X[:, 0] - 2 * X[:, 1] ** 2 + 0.5 * X[:, 0] * X[:, 1] ** 2 + rng.standard_normal(200)
    return _features(X), y, rng.uniform(0.2, 3.0, 200)


# alpha=1e-3 leaves every coefficient nonzero, 1e6 zeroes them all.
@pytest.mark.parametrize("alpha", [1e-3, 30.0, 300.0, 1e6])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
def test_matches_sklearn_lasso_and_elastic_net(normal_data, alpha, l1_ratio, weighted):
    F, y, w = normal_data
    if not weighted:
        w = np.ones_like(y)
    intercept, coef, result, bound = _solve(F, y, w, alpha, l1_ratio)
    reference = _sklearn(F, y, w, alpha, l1_ratio)

    assert result.converged and result.kkt_violation < bound
    ours = _objective(F, y, w, intercept, coef, alpha, l1_ratio)
    theirs = _objective(F, y, w, reference.intercept_, reference.coef_, alpha, l1_ratio)
    assert abs(ours - theirs) <= 1e-8 * theirs
    assert_array_equal(coef == 0.0, reference.coef_ == 0.0)
    scale = max(np.abs(reference.coef_).max(), np.abs(reference.intercept_))
    assert_allclose(coef, reference.coef_, rtol=0, atol=1e-6 * scale)
    assert_allclose(intercept, reference.intercept_, rtol=0, atol=1e-6 * scale)
    if alpha == 1e-3:
        assert (coef != 0).all()
    if alpha == 1e6:
        assert (coef == 0).all() and result.n_iter == 1
    assert np.all(np.diff(result.objective) <= 1e-15 * result.objective[0])


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 30.0, 1000.0])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_raw_ill_conditioned_features_match_exact_reference(alpha, l1_ratio):
    # x in [10, 20], not centred: x, x**2 and x**3 are nearly collinear.
    rng = np.random.default_rng(1)
    X = rng.uniform(10, 20, (200, 2))
    y = 1 + X[:, 0] - 0.02 * X[:, 1] ** 2 + 0.001 * X[:, 0] * X[:, 1] ** 2
    y = y + rng.standard_normal(200)
    F, w = _features(X), rng.uniform(0.2, 3.0, 200)
    intercept, coef, result, bound = _solve(F, y, w, alpha, l1_ratio)
    assert result.converged and result.condition > 100
    assert result.kkt_violation < bound

    zero = coef == 0.0
    exact_intercept, exact_coef, optimal = _exact_optimum(
        F, y, w, alpha, l1_ratio, zero, np.sign(coef)
    )
    assert optimal, "the solver's zeros and signs are not those of the exact optimum"
    scale = np.abs(np.r_[exact_intercept, exact_coef]).max()
    assert_allclose(coef, exact_coef, rtol=0, atol=1e-8 * scale)
    assert_allclose(intercept, exact_intercept, rtol=0, atol=1e-8 * scale)
    ours = _objective(F, y, w, intercept, coef, alpha, l1_ratio)
    exact = _objective(F, y, w, exact_intercept, exact_coef, alpha, l1_ratio)
    assert abs(ours - exact) <= 1e-12 * exact


def test_every_coefficient_is_zero_from_lam_max_on(normal_data):
    F, y, w = normal_data
    C, A, _, _ = _statistics(F, y, w, 0.0, 1.0)
    # Minus the gradient of the mean squared error w.r.t. the raw coefficients, at the
    # constant model: the largest is where the first coefficient leaves zero.
    centred = y - w @ y / w.sum()
    descent = 2 * F.T @ (w * centred) / w.sum()
    lam_max = np.abs(descent).max()

    above = solve_generalized_lasso(C, A, lam_max * (1 + 1e-9))
    assert (above.coef == 0).all() and above.n_iter == 1 and above.converged
    below = solve_generalized_lasso(C, A, lam_max * (1 - 1e-6))
    first = np.argmax(np.abs(descent))
    assert_array_equal(below.coef != 0, np.arange(F.shape[1]) == first)
    assert np.sign(float(below.coef[first])) == np.sign(descent[first])


def test_kkt_violation_tells_optimum_from_near_misses(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    result = solve_generalized_lasso(C, A, lam)
    assert result.zero.any() and not result.zero.all()
    assert kkt_violation(result.V, C, A, lam, zero=result.zero) < 1e-12

    # A point that is nearly optimal in value, as a gradient method leaves it.
    nudged = result.V + 1e-6 * torch.ones_like(result.V)
    assert kkt_violation(nudged, C, A, lam, zero=result.zero) > 1e-7
    # The zeros must be named: the solution's own rounding-level A @ V is not zero, and
    # as nonzero coefficients they would need the full penalty gradient.
    assert kkt_violation(result.V, C, A, lam) > 1e-3
    # Too large a penalty makes the solution suboptimal: its zeros' gradients exceed lam.
    assert kkt_violation(result.V, C, A, lam * 0.9, zero=result.zero) > 0.01
    with pytest.raises(ValueError, match="lam > 0"):
        kkt_violation(result.V, C, A, 0.0)


def test_float32_input_is_solved_in_float64(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    C32, A32 = C.to(torch.float32), A.to(torch.float32)
    result = solve_generalized_lasso(C32, A32, lam)
    assert result.V.dtype == torch.float64 and result.coef.dtype == torch.float64
    upcast = solve_generalized_lasso(C32.double(), A32.double(), lam)
    assert torch.equal(result.V, upcast.V) and torch.equal(result.zero, upcast.zero)
    assert result.converged and result.kkt_violation < 1e-12


def test_shapes_and_lam_zero(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    flat = solve_generalized_lasso(C.reshape(-1), A, lam)
    column = solve_generalized_lasso(C, A, lam)
    assert flat.V.shape == (C.shape[0],) and column.V.shape == C.shape
    assert torch.equal(flat.V, column.V.reshape(-1))
    plain = solve_generalized_lasso(C, A, 0.0)
    assert torch.equal(plain.V, C) and plain.converged and plain.n_iter == 0


def test_no_intercept_square_map():
    # Without an intercept A is square: nothing is unpenalized.
    rng = np.random.default_rng(3)
    C = torch.tensor(rng.standard_normal((5, 1)))
    A = torch.tensor(rng.standard_normal((5, 5)))
    for lam in [0.01, 0.5, 2.0]:
        result = solve_generalized_lasso(C, A, lam)
        assert result.converged and result.kkt_violation < 1e-12
        V = result.V.numpy()[:, 0]

        def f(v):
            return ((v - C.numpy()[:, 0]) ** 2).sum() + lam * np.abs(A.numpy() @ v).sum()  # noqa: B023

        # No point nearby does better (a convex function: local is global).
        for _ in range(200):
            assert f(V) <= f(V + 1e-4 * rng.standard_normal(5))


def test_repeated_rows_match_the_folded_problem():
    # A row repeated (or scaled) penalizes |a @ V| several times: the same as one row scaled
    # by the sum of the factors, whose rows are independent. The solver merges such rows.
    rng = np.random.default_rng(4)
    C = torch.tensor(rng.standard_normal((6, 1)))
    A = torch.tensor(rng.standard_normal((4, 6)))
    repeated = torch.cat([A, -0.5 * A[1:2], 2 * A[3:4]])
    folded = A.clone()
    folded[1] *= 1.5
    folded[3] *= 3
    for lam in [0.1, 0.5, 1.0, 2.0, 5.0]:
        ours = solve_generalized_lasso(C, repeated, lam)
        reference = solve_generalized_lasso(C, folded, lam)
        assert ours.converged and ours.kkt_violation < 1e-12
        assert ours.condition == pytest.approx(reference.condition, rel=1e-12)
        assert_allclose(ours.V, reference.V, rtol=0, atol=1e-12)
        assert_array_equal(ours.zero, reference.zero[[0, 1, 2, 3, 1, 3]])


def _brute_force(C, A, lam):
    """The minimizer by trying every face: each sign pattern's projection, kept if it is
    consistent (the optimum is the minimizer of its own face).
    """
    c, A = C.numpy()[:, 0], A.numpy()
    best, best_V = np.inf, None
    for pattern in itertools.product((-1, 0, 1), repeat=A.shape[0]):
        s = np.array(pattern)
        u = c - lam / 2 * A[s != 0].T @ s[s != 0]
        Z = A[s == 0]
        V = u - Z.T @ np.linalg.lstsq(Z.T, u, rcond=None)[0] if len(Z) else u
        if np.all(np.sign(A[s != 0] @ V) == s[s != 0]):
            value = ((V - c) ** 2).sum() + lam * np.abs(A @ V).sum()
            if value < best:
                best, best_V = value, V
    return best, best_V


def test_more_terms_than_parameters_stays_close_to_the_optimum():
    # Rows that are dependent in general position: the multipliers are not unique, so
    # optimality may not be certified, but the point is the minimizer.
    rng = np.random.default_rng(1)
    C = torch.tensor(rng.standard_normal((4, 1)))
    A = torch.tensor(rng.standard_normal((6, 4)))
    for lam in [0.05, 0.3, 1.0, 3.0]:
        result = solve_generalized_lasso(C, A, lam)
        assert result.n_iter < 50 and result.condition == float("inf")
        best, best_V = _brute_force(C, A, lam)
        assert result.objective[-1] <= best * (1 + 1e-12)
        assert_allclose(result.V.numpy()[:, 0], best_V, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "C, A, lam, match",
    [
        (torch.zeros(3, 2), torch.zeros(2, 3), 1.0, r"C must have shape \(n_design,\)"),
        (torch.zeros(3, 1), torch.zeros(2, 4), 1.0, r"A must have shape \(n_terms, 3\)"),
        (torch.zeros(3, 1), torch.zeros(2, 3), -1.0, "lam must be a finite number >= 0"),
        (torch.full((3, 1), float("nan")), torch.zeros(2, 3), 1.0, "must be finite"),
    ],
)
def test_invalid_inputs_are_named(C, A, lam, match):
    with pytest.raises(ValueError, match=match):
        solve_generalized_lasso(C, A, lam)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_result_is_on_the_device_of_C(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    on_gpu = solve_generalized_lasso(C.cuda(), A.cuda(), lam)
    on_cpu = solve_generalized_lasso(C, A, lam)
    assert on_gpu.V.device.type == "cuda" and on_gpu.coef.device.type == "cuda"
    assert torch.equal(on_gpu.V.cpu(), on_cpu.V)


@pytest.mark.parametrize("n_terms", [0, 3], ids=["no_term", "zero_rows"])
def test_nothing_penalized_returns_C(n_terms):
    # The intercept alone (degree 0) has no term: the minimizer is C, with no face to search.
    C = torch.tensor([[1.5], [-2.0]], dtype=torch.float64)
    A = torch.zeros((n_terms, 2), dtype=torch.float64)
    result = solve_generalized_lasso(C, A, 3.0)
    assert torch.equal(result.V, C)
    assert result.coef.shape == (n_terms,) and bool((result.coef == 0).all())
    assert bool(result.zero.all()) and result.converged and result.kkt_violation == 0.0


def test_warm_start_reaches_the_cold_optimum_in_fewer_faces(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 1.0, 1.0)
    lams = lam * np.logspace(4, -2, 13)  # from every coefficient zero to none
    previous = None
    cold_faces = warm_faces = 0
    for lam in lams:
        cold = solve_generalized_lasso(C, A, lam)
        warm = solve_generalized_lasso(C, A, lam, start=previous)
        assert warm.converged
        assert_allclose(warm.V, cold.V, rtol=1e-12, atol=1e-12 * float(C.norm()))
        assert_array_equal(warm.zero, cold.zero)
        cold_faces += cold.n_iter
        warm_faces += warm.n_iter
        previous = warm.coef
    assert warm_faces < cold_faces


def test_a_start_of_wrong_signs_or_zeros_still_reaches_the_optimum(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    cold = solve_generalized_lasso(C, A, lam)
    for start in (-cold.coef, torch.zeros_like(cold.coef), torch.ones_like(cold.coef)):
        warm = solve_generalized_lasso(C, A, lam, start=start)
        assert_allclose(warm.V, cold.V, rtol=1e-12, atol=1e-12 * float(C.norm()))
        assert_array_equal(warm.zero, cold.zero)
    with pytest.raises(ValueError, match="start must be a tensor of the 9 terms"):
        solve_generalized_lasso(C, A, lam, start=cold.coef[:3])


def test_start_on_repeated_rows_is_read_through_the_first_of_each(normal_data):
    F, y, w = normal_data
    C, A, lam, _ = _statistics(F, y, w, 30.0, 1.0)
    repeated = torch.cat([A, -2 * A[:3]])
    cold = solve_generalized_lasso(C, repeated, lam)
    warm = solve_generalized_lasso(C, repeated, lam, start=cold.coef)
    assert warm.n_iter == 1  # the start is the optimum's face
    assert_allclose(warm.V, cold.V, rtol=1e-12, atol=1e-12 * float(C.norm()))


# ------------------------------------------------------------- through the estimator


def _estimator_objective(model, F, y, w, alpha, l1_ratio):
    return _objective(F, y, w, model.intercept_, model.coef_, alpha, l1_ratio)


@pytest.mark.parametrize("alpha", [1e-3, 30.0, 300.0])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
@pytest.mark.parametrize("raw", [False, True], ids=["normal", "raw-far-from-0"])
def test_estimator_defaults_reach_the_sklearn_optimum(alpha, l1_ratio, raw):
    """Defaults plus the penalty: Lasso's / ElasticNet's objective to 1e-8, its exact zeros."""
    rng = np.random.default_rng(3)
    X = rng.uniform(10, 20, (200, 2)) if raw else rng.standard_normal((200, 2))
    y = 1 + X[:, 0] - 0.2 * X[:, 1] ** 2 + 0.05 * X[:, 0] * X[:, 1] ** 2 + rng.standard_normal(200)
    w = rng.uniform(0.2, 3.0, 200)
    F = _features(X)
    model = TorchPolyRegressor(degree=3, alpha=alpha, l1_ratio=l1_ratio).fit(X, y, sample_weight=w)
    reference = _sklearn(F, y, w, alpha, l1_ratio)
    ours = _estimator_objective(model, F, y, w, alpha, l1_ratio)
    theirs = _objective(F, y, w, reference.intercept_, reference.coef_, alpha, l1_ratio)
    # Never worse than the reference beyond rounding (sklearn stops at its own tolerance).
    assert ours <= theirs * (1 + 1e-8)
    assert abs(ours - theirs) <= 1e-8 * theirs
    if not raw:
        # (On raw features coordinate descent itself leaves 1e-5-sized noise in the zeros.)
        assert_array_equal(model.coef_ == 0.0, reference.coef_ == 0.0)
        scale = max(np.abs(reference.coef_).max(), abs(reference.intercept_))
        assert_allclose(model.coef_, reference.coef_, rtol=0, atol=1e-6 * scale)
    assert model.loss_curve_[-1] == pytest.approx(ours, rel=1e-9)
    assert np.all(np.diff(model.loss_curve_) <= 1e-12 * model.loss_curve_[0])


def test_estimator_zeros_are_exact_and_certified(normal_data):
    F, y, w = normal_data
    X = F[:, :2]
    model = TorchPolyRegressor(degree=3, alpha=300.0, l1_ratio=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # certified: no ConvergenceWarning
        model.fit(X, y)
    zero = model.coef_ == 0.0
    assert 0 < zero.sum() < zero.size
    # The exact rational optimum on the face the estimator found is the optimum.
    intercept, coef, optimal = _exact_optimum(
        F, y, np.ones_like(y), 300.0, 1.0, zero, np.sign(model.coef_)
    )
    assert optimal
    assert_allclose(model.coef_, coef, rtol=0, atol=1e-9 * np.abs(coef).max())
    assert model.intercept_ == pytest.approx(intercept, abs=1e-9 * np.abs(coef).max())


def test_multi_output_equals_separate_fits(normal_data):
    F, y, w = normal_data
    X = F[:, :2]
    Y = np.c_[y, 1e4 * (y - 3 * X[:, 0]), 1e-3 * X[:, 1] ** 3]
    params = dict(degree=3, alpha=30.0, l1_ratio=0.7)
    joint = TorchPolyRegressor(**params).fit(X, Y, sample_weight=w)
    for k in range(Y.shape[1]):
        alone = TorchPolyRegressor(**params).fit(X, Y[:, k], sample_weight=w)
        scale = np.abs(alone.coef_).max()
        assert_allclose(joint.coef_[k], alone.coef_, rtol=0, atol=1e-8 * scale)
        assert_array_equal(joint.coef_[k] == 0, alone.coef_ == 0)


def test_stream_float32_and_dask_free_paths_agree(normal_data):
    """partial_fit over batches (exact statistics) and float32 reach the same zeros."""
    F, y, w = normal_data
    X = F[:, :2]
    params = dict(degree=3, alpha=30.0, l1_ratio=1.0)
    full = TorchPolyRegressor(**params).fit(X, y)
    stream = TorchPolyRegressor(**params)
    for rows in np.array_split(np.arange(len(y)), 4):
        stream.partial_fit(X[rows], y[rows])
    scale = np.abs(full.coef_).max()
    assert_allclose(stream.coef_, full.coef_, rtol=0, atol=1e-9 * scale)
    assert_array_equal(stream.coef_ == 0, full.coef_ == 0)
    single = TorchPolyRegressor(dtype="float32", **params).fit(X, y)
    assert_allclose(single.coef_, full.coef_, rtol=0, atol=1e-4 * scale)


def test_early_stopping_keeps_the_optimizer_loop(normal_data):
    """Early stopping watches the optimizer's iterations: the exact solver is not used."""
    F, y, w = normal_data
    model = TorchPolyRegressor(
        degree=3, alpha=30.0, l1_ratio=1.0, early_stopping=True, random_state=0
    ).fit(F[:, :2], y)
    assert len(model.validation_scores_) == model.n_iter_ > 0


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_estimator_of_degree_zero_with_l1_is_the_weighted_mean(normal_data, l1_ratio):
    F, y, w = normal_data
    model = TorchPolyRegressor(degree=0, alpha=1.0, l1_ratio=l1_ratio)
    model.fit(F[:, :2], y, sample_weight=w)
    assert model.coef_.shape == (0,)
    assert model.intercept_ == pytest.approx(np.average(y, weights=w), rel=1e-13)
    assert model.n_iter_ == 1 and model.loss_curve_[-1] == pytest.approx(
        np.average((y - np.average(y, weights=w)) ** 2, weights=w), rel=1e-12
    )
