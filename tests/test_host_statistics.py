"""The statistics computed on the host: appended rows, the whitening, the target scaling and
the refinement's gradient, each against an independent reference.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from autopoly._conditioning import Whitening, _append_rows, target_scaling
from autopoly._refine import _gradient


def _dense_reference(R, Z, rows):
    """The factor of ``[[R, Z], [rows, 0]]`` by NumPy's dense QR (signs made positive)."""
    n = R.shape[1]
    stacked = np.vstack(
        [np.hstack([R, Z]), np.hstack([rows, np.zeros((rows.shape[0], Z.shape[1]))])]
    )
    F = np.linalg.qr(stacked, mode="r")
    F = F * np.where(np.diag(F) < 0, -1.0, 1.0)[:, None]
    tail = F[n:, n:]
    return F[:n, :n], F[:n, n:], (tail * tail).sum(0)


@pytest.mark.parametrize("n, k", [(1, 1), (7, 1), (40, 3), (130, 2)])
@pytest.mark.parametrize("kind", ["identity", "strictly-upper", "upper", "dense", "zero-rows"])
def test_appended_rows_give_the_factor_of_the_stacked_rows(n, k, kind):
    rng = np.random.default_rng(n + 10 * k)
    R = np.triu(rng.standard_normal((n, n))) + 3 * np.eye(n)
    if kind == "zero-rows":
        R[n // 2 :] = 0.0  # the factor of fewer rows than terms
    Z = rng.standard_normal((n, k))
    rows = {
        "identity": 0.3 * np.eye(n),
        "strictly-upper": np.triu(rng.standard_normal((n, n)), 1)[:-1]
        if n > 1
        else np.zeros((0, 1)),
        "upper": np.triu(rng.standard_normal((n, n))),
        "dense": rng.standard_normal((n + 2, n)),  # not triangular: the dense route
        "zero-rows": np.eye(n),
    }[kind]
    R2, Z2, resid = _append_rows(R, Z, rows)
    R_ref, Z_ref, resid_ref = _dense_reference(R, Z, rows)
    sign = np.where(np.diag(R2) < 0, -1.0, 1.0)
    scale = np.abs(R_ref).max()
    assert_allclose(np.tril(R2, -1), 0.0)
    assert_allclose(sign[:, None] * R2, R_ref, rtol=0, atol=1e-13 * scale)
    assert_allclose(sign[:, None] * Z2, Z_ref, rtol=0, atol=1e-13 * max(1.0, np.abs(Z_ref).max()))
    assert_allclose(resid, resid_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("penalty", [False, True])
def test_whitening_makes_the_design_orthonormal_in_the_fit_dtype(dtype, penalty):
    rng = np.random.default_rng(1)
    D = np.column_stack([np.ones(200), rng.uniform(-1, 1, (200, 6))])
    t = rng.standard_normal((200, 1))
    R_aug = np.linalg.qr(np.hstack([D, t]), mode="r") / np.sqrt(200)
    root = (
        torch.as_tensor(0.5 * np.triu(rng.standard_normal((6, 7)), 1), dtype=dtype)
        if penalty
        else None
    )
    w = Whitening(torch.as_tensor(R_aug, dtype=dtype), 7, root, truncate=True, n_rows=200)
    assert w.M.dtype == dtype and w.C.dtype == dtype and w.resid.dtype == dtype
    M = w.M.double().numpy()
    # D @ M is orthonormal (in the mean) against the data, plus the penalty's rows.
    B = D @ M / np.sqrt(200)
    gram = B.T @ B
    if penalty:
        P = root.double().numpy() @ M
        gram = gram + P.T @ P
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_allclose(gram, np.eye(7), rtol=0, atol=tol)
    # C holds the projected targets: the least-squares optimum is V = C.
    theta = M @ w.C.double().numpy()
    if not penalty:
        ref, *_ = np.linalg.lstsq(D, t, rcond=None)
        assert_allclose(theta, ref, rtol=0, atol=10 * tol)


def test_target_scaling_is_the_same_on_numpy_and_torch():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((50, 2)) * [1e-170, 1e155]
    w = rng.uniform(0.5, 2.0, 50)
    a = target_scaling(y, w, True)
    b = target_scaling(torch.from_numpy(y), torch.from_numpy(w), True)
    for u, v in zip(a, b):
        assert isinstance(v, np.ndarray)
        assert_allclose(u, v, rtol=1e-15)
    mean = (w[:, None] * y).sum(0) / w.sum()
    assert_allclose(a[0], mean, rtol=1e-13)
    std = np.sqrt((w[:, None] * ((y - mean) / np.abs(y - mean).max(0)) ** 2).sum(0) / w.sum())
    assert_allclose(a[1], std * np.abs(y - mean).max(0), rtol=1e-13)


def test_the_refinement_gradient_is_exact_to_rounding_despite_cancellation():
    rng = np.random.default_rng(3)
    D = rng.uniform(-1, 1, (30, 4))
    w = rng.uniform(0.5, 2.0, 30)
    # A residual orthogonal to the design up to rounding (the optimum's), in double-double.
    r = rng.standard_normal(30) * 1e3
    r = r - D @ np.linalg.lstsq(D * np.sqrt(w)[:, None], np.sqrt(w) * r, rcond=None)[0]
    r_hi, r_lo = r[:, None], rng.standard_normal((30, 1)) * 1e-14
    g = _gradient(D, w, r_hi, r_lo)[:, 0]
    exact = [
        sum(
            Fraction(D[i, j]) * Fraction(w[i]) * (Fraction(r_hi[i, 0]) + Fraction(r_lo[i, 0]))
            for i in range(30)
        )
        for j in range(4)
    ]
    exact = np.array([float(e) for e in exact])
    # An ordinary float64 dot product errs by about eps * sum(|D| w |r|) ~ 1e-12 here.
    assert_allclose(g, exact, rtol=1e-14, atol=1e-25)
    naive = D.T @ (w * r)
    assert np.abs(naive - exact).max() > np.abs(g - exact).max()
