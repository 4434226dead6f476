"""The pass over the rows: host (NumPy) chunks against torch's, column ranges, basis changes."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator

from autopoly import TorchPolyRegressor
from autopoly._data_pass import weighted_chunks
from autopoly._features import binomial_basis_change, monomial_powers
from autopoly._setup import make_setup
from autopoly._sources import ArraySource, column_range
from autopoly._spec import resolve_spec

CASES = [
    # rows, features, degree, interaction_only, fit_intercept, weighted, outputs
    (20, 1, 2, False, True, False, 1),
    (1_000, 5, 3, False, True, True, 2),
    (5_000, 3, (2, 4), False, True, True, 1),
    (300, 4, 3, True, False, False, 3),
    (9_000, 2, 5, False, True, True, 1),
]


@pytest.mark.parametrize("n, f, degree, interaction_only, intercept, weighted, k", CASES)
def test_host_chunks_equal_the_torch_chunks_bit_for_bit(
    n, f, degree, interaction_only, intercept, weighted, k
):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, f)) * 7 + 3
    y = rng.standard_normal((n, k)) * 100
    w = rng.uniform(0.1, 3.0, n) if weighted else np.ones(n)
    spec = resolve_spec(
        TorchPolyRegressor(
            degree=degree, interaction_only=interaction_only, fit_intercept=intercept
        )
    )
    host = ArraySource(X, y, w, 2)
    setup = make_setup(spec, f, k, host.scaling(spec), None)
    tensors = ArraySource(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w), 2)
    got = [chunk.clone() for chunk in weighted_chunks(host, setup)]
    expected = [chunk.clone() for chunk in weighted_chunks(tensors, setup)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        assert torch.equal(a, b)


@pytest.mark.parametrize("weighted", [False, True])
def test_host_and_tensor_fits_agree(weighted):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 3)) * 50 - 20
    y = X[:, 0] ** 3 - X[:, 1] * X[:, 2] + rng.standard_normal(500)
    w = rng.uniform(0.5, 2.0, 500) if weighted else None
    host = TorchPolyRegressor(degree=3).fit(X, y, sample_weight=w)
    tensor = TorchPolyRegressor(degree=3).fit(
        torch.from_numpy(X),
        torch.from_numpy(y),
        sample_weight=None if w is None else torch.from_numpy(w),
    )
    # The chunks are equal bit for bit (above); sums over rows (the weights' sum, the target
    # scaling) may be NumPy's for host rows and torch's for tensors, whose last bits differ.
    top = np.abs(tensor.coef_).max()
    assert_allclose(host.coef_, tensor.coef_, rtol=0, atol=1e-12 * top)
    assert_allclose(host.intercept_, tensor.intercept_, rtol=0, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("shape", [(1, 1), (20, 1), (1_000, 5), (70_000, 3), (3, 70_000)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_column_range_is_numpys_min_and_max(shape, dtype):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    X[-1, 0] = np.nan
    lo, hi = column_range(X)
    assert lo.dtype == hi.dtype == np.float64
    assert np.array_equal(lo, X.min(axis=0).astype(np.float64), equal_nan=True)
    assert np.array_equal(hi, X.max(axis=0).astype(np.float64), equal_nan=True)


def _exact_basis_change(powers, offset, scale):
    """The binomial basis change in rational arithmetic, rounded once at the end."""
    full = [tuple([0] * powers.shape[1])] + [tuple(int(p) for p in row) for row in powers]
    index = {b: i for i, b in enumerate(full)}
    T = np.zeros((len(full), len(full)))
    offset = [Fraction(float(o)) for o in offset]
    scale = [Fraction(float(s)) for s in scale]
    for col, a in enumerate(full):
        for b in full:
            if any(bj > aj for aj, bj in zip(a, b)):
                continue
            weight = Fraction(1)
            for aj, bj, o, s in zip(a, b, offset, scale):
                weight *= comb(aj, bj) * (-o) ** (aj - bj) / s**aj
            T[index[b], col] = float(weight)
    return T


@pytest.mark.parametrize(
    "f, lo, hi, interaction_only",
    [(1, 0, 2, False), (5, 0, 3, False), (3, 0, 6, False), (4, 1, 3, True), (1, 0, 0, False)],
)
def test_basis_change_matches_exact_arithmetic(f, lo, hi, interaction_only):
    rng = np.random.default_rng(f * 10 + hi)
    powers = monomial_powers(f, lo, hi, interaction_only)
    for _ in range(3):
        offset = rng.standard_normal(f) * 10.0 ** rng.uniform(-2, 2)
        scale = rng.uniform(0.1, 5.0, f) * 10.0 ** rng.uniform(-2, 2)
        T = binomial_basis_change(powers, offset, scale)
        exact = _exact_basis_change(powers, offset, scale)
        # A product of one factor per feature: a few roundings per entry.
        assert_allclose(T, exact, rtol=1e-14, atol=0)


def test_parameter_names_are_sklearns():
    names = BaseEstimator._get_param_names.__func__(TorchPolyRegressor)
    assert TorchPolyRegressor._get_param_names() == names
    # A copy each time: a caller that changes the list changes nothing else.
    TorchPolyRegressor._get_param_names().append("other")
    assert TorchPolyRegressor._get_param_names() == names
