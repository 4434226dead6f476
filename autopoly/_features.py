"""Polynomial terms: their powers, their names and their expansion with torch.

The order of the terms is the order of :class:`sklearn.preprocessing.PolynomialFeatures`
with ``include_bias=False``: by degree, then lexicographically by the features involved.
"""

from functools import lru_cache
from itertools import chain, combinations, combinations_with_replacement, product
from math import comb
from numbers import Integral

import numpy as np
import torch


def degree_range(degree, fit_intercept):
    """``(min_degree, max_degree)`` of the estimator's ``degree`` parameter, checked."""
    if isinstance(degree, tuple):
        if (
            len(degree) != 2
            or not all(isinstance(d, Integral) and not isinstance(d, bool) for d in degree)
            or not 0 <= degree[0] <= degree[1]
        ):
            raise ValueError(
                "degree=(min_degree, max_degree) must be two integers with "
                f"0 <= min_degree <= max_degree; got degree={degree!r}."
            )
        lo, hi = int(degree[0]), int(degree[1])
    elif isinstance(degree, bool):
        raise ValueError(f"degree must be an integer or a tuple of two; got degree={degree!r}.")
    else:
        lo, hi = 0, int(degree)
    if hi == 0 and not fit_intercept:
        raise ValueError(
            f"degree={degree!r} with fit_intercept=False leaves no term to fit; "
            "use degree >= 1 or fit_intercept=True."
        )
    return lo, hi


def n_terms(n_features, min_degree, max_degree, interaction_only):
    """Number of monomials of degree ``max(min_degree, 1)..max_degree``, without building them."""
    start = max(min_degree, 1)
    if interaction_only:
        return sum(comb(n_features, d) for d in range(start, max_degree + 1))
    return sum(comb(n_features + d - 1, d) for d in range(start, max_degree + 1))


def monomial_powers(n_features, min_degree, max_degree, interaction_only):
    """Exponents of every term, shape ``(n_terms, n_features)``, in PolynomialFeatures order."""
    return _monomial_powers(n_features, min_degree, max_degree, interaction_only).copy()


@lru_cache(maxsize=64)
def _monomial_powers(n_features, min_degree, max_degree, interaction_only):
    # Cached: a grid search builds the same terms for every fold.
    pick = combinations if interaction_only else combinations_with_replacement
    combos = chain.from_iterable(
        pick(range(n_features), d) for d in range(max(min_degree, 1), max_degree + 1)
    )
    rows = [np.bincount(np.asarray(c, dtype=np.intp), minlength=n_features) for c in combos]
    if not rows:
        return np.zeros((0, n_features), dtype=np.int64)
    return np.vstack(rows).astype(np.int64)


def term_names(powers, input_features):
    """Names such as ``'x0^2 x1'``, exactly as PolynomialFeatures writes them."""
    names = []
    for row in powers:
        parts = []
        for name, p in zip(input_features, row):
            if p == 1:
                parts.append(str(name))
            elif p > 1:
                parts.append(f"{name}^{p}")
        names.append(" ".join(parts) if parts else "1")
    return np.asarray(names, dtype=object)


class Expansion:
    """Computes the terms of a degree range from an input batch, one product per term.

    Each term of degree ``k >= 2`` is a term of degree ``k - 1`` (its *parent*) times one input
    column, so a whole degree is computed with one gather and one multiply. The plan is built
    once and reused for every chunk; when ``min_degree > 1`` the lower degrees are computed as
    parents and dropped.
    """

    def __init__(self, n_features, min_degree, max_degree, interaction_only):
        full = monomial_powers(n_features, 1, max_degree, interaction_only)
        degrees = full.sum(axis=1)
        index = {tuple(row): i for i, row in enumerate(full)}
        self.n_full = full.shape[0]
        self.levels = []  # (term indices, parent indices or None, input column indices)
        for d in range(1, max_degree + 1):
            idx = np.flatnonzero(degrees == d)
            if idx.size == 0:
                continue
            feats = np.array([np.flatnonzero(full[i])[-1] for i in idx], dtype=np.int64)
            parents = None
            if d > 1:
                parents = np.empty_like(idx)
                for k, (i, j) in enumerate(zip(idx, feats)):
                    parent = full[i].copy()
                    parent[j] -= 1
                    parents[k] = index[tuple(parent)]
            self.levels.append((idx, parents, feats))
        keep = np.flatnonzero(degrees >= max(min_degree, 1))
        self.select = None if keep.size == self.n_full else keep
        self.n_terms = keep.size
        self.runs = _runs(self.levels)
        self._on_device = {}

    def _plan(self, device):
        key = str(device)
        if key not in self._on_device:
            as_t = lambda a: None if a is None else torch.as_tensor(a, device=device)  # noqa: E731
            # Terms of one degree are contiguous in this order, so each level is a slice.
            self._on_device[key] = (
                [(int(i[0]), int(i[-1]) + 1, as_t(p), as_t(f)) for i, p, f in self.levels],
                as_t(self.select),
            )
        return self._on_device[key]

    def fill(self, ZT, out):
        """Write the terms of ``ZT`` (``(n_features, n)``) into the rows of ``out`` (terms x n).

        Working on transposed, row-contiguous buffers keeps every gather a copy of whole rows,
        and ``out.T`` is then a column-major ``(n, n_terms)`` matrix, as LAPACK wants it. Many
        rows are expanded run by run (:data:`RUN_ROWS`): one broadcast product per parent term,
        written in place, without the gathered copies of the level-at-a-time plan.
        """
        levels, select = self._plan(ZT.device)
        full = out if select is None else ZT.new_empty((self.n_full, ZT.shape[1]))
        if ZT.shape[1] >= RUN_ROWS:
            for start, stop, parent, f0, f1 in self.runs:
                if parent is None:
                    full[start:stop] = ZT[f0:f1]
                else:
                    torch.mul(full[parent : parent + 1], ZT[f0:f1], out=full[start:stop])
        else:
            for start, stop, par, feats in levels:
                if par is None:
                    full[start:stop] = ZT[feats]
                else:
                    torch.mul(
                        full.index_select(0, par), ZT.index_select(0, feats), out=full[start:stop]
                    )
        if select is not None:
            torch.index_select(full, 0, select, out=out)
        return out

    def fill_numpy(self, ZT, out):
        """:meth:`fill` for NumPy arrays: ``ZT`` is ``(n_features, n)``, ``out`` terms x n.

        For rows on the host that need no tensor (predictions): a NumPy operation costs a
        fraction of a torch one on small arrays, and as much on large ones.
        """
        full = out if self.select is None else np.empty((self.n_full, ZT.shape[1]), ZT.dtype)
        if ZT.shape[1] >= NUMPY_RUN_ROWS:
            for start, stop, parent, f0, f1 in self.runs:
                if parent is None:
                    full[start:stop] = ZT[f0:f1]
                else:
                    np.multiply(full[parent : parent + 1], ZT[f0:f1], out=full[start:stop])
        else:
            for idx, parents, feats in self.levels:
                start, stop = int(idx[0]), int(idx[-1]) + 1
                if parents is None:
                    full[start:stop] = ZT[feats]
                else:
                    np.multiply(full[parents], ZT[feats], out=full[start:stop])
        if self.select is not None:
            np.take(full, self.select, axis=0, out=out)
        return out

    def __getstate__(self):
        # Device-side index tensors are rebuilt where the plan is used (e.g. a Dask worker).
        return {**self.__dict__, "_on_device": {}}


# From this many rows on, an expansion runs parent by parent (see Expansion.fill): more
# operations, each a streaming product with no gathered copy.
RUN_ROWS = 4096
# The same for NumPy, whose operations cost less than torch's: the gathered copies of the
# level-at-a-time plan cost more than the extra operations from about a thousand rows on
# (1500 x 10 at degree 3: 3.3 ms level by level, 0.25 ms run by run).
NUMPY_RUN_ROWS = 1024


def _runs(levels):
    """The plan as runs ``(start, stop, parent, f0, f1)``: terms ``start:stop`` are the parent
    term times the inputs ``f0:f1`` (a parent's children are consecutive terms of consecutive
    inputs in the graded order; ``parent`` is None for the inputs themselves).
    """
    runs = []
    for idx, parents, feats in levels:
        for k, (i, f) in enumerate(zip(idx, feats)):
            i, f = int(i), int(f)
            parent = None if parents is None else int(parents[k])
            if runs:
                start, stop, p, f0, f1 = runs[-1]
                if stop == i and p == parent and f1 == f:
                    runs[-1] = (start, i + 1, p, f0, f + 1)
                    continue
            runs.append((i, i + 1, parent, f, f + 1))
    return runs


@lru_cache(maxsize=64)
def expansion(n_features, min_degree, max_degree, interaction_only):
    """A shared :class:`Expansion` for these terms (its plan is built once per process)."""
    return Expansion(n_features, min_degree, max_degree, interaction_only)


def binomial_basis_change(powers, offset, scale):
    """Matrix ``T`` mapping coefficients in ``z = (x - offset) / scale`` to the raw ``x`` basis.

    Rows and columns are ``[intercept, *terms]``. A term ``z^a`` expands by the binomial theorem
    into the raw monomials ``x^b`` with ``b <= a``, with weight
    ``prod_j C(a_j, b_j) (-offset_j)^(a_j - b_j) / scale_j^a_j``; every such ``b`` must itself
    be a term (or the intercept), which holds when ``offset`` is zero or the term set is closed
    downwards.
    """
    powers = np.asarray(powers, dtype=np.int64)
    full = np.vstack([np.zeros((1, powers.shape[1]), dtype=np.int64), powers])
    binom, gap, rows, cols, index = _basis_change_plan(full.shape, full.tobytes())
    k = np.arange(binom.shape[0])
    offset = np.asarray(offset, dtype=np.float64)[:, None, None]
    scale = np.asarray(scale, dtype=np.float64)[:, None, None]
    # factor[j, b, a]: the weight of x_j^b in ((x_j - o_j) / s_j)^a, for every feature at once.
    shift = np.where(gap >= 0, (-offset) ** np.maximum(gap, 0), 0.0)
    factor = binom * shift / scale ** k[None, None, :]
    # T[r, c] = prod_j factor[j, full[r, j], full[c, j]], multiplied in the order of j, for
    # the entries whose monomial r divides term c (every other entry is zero).
    gathered = factor.reshape(-1).take(index)
    values = gathered[0].copy()
    for j in range(1, gathered.shape[0]):
        values *= gathered[j]
    T = np.zeros((full.shape[0], full.shape[0]))
    T[rows, cols] = values
    return T


# A plan holds n_features int64 numbers per nonzero entry (a term of degree d has at most
# 2**d sub-monomials): a few plans cover a grid search's term sets.
@lru_cache(maxsize=8)
def _basis_change_plan(shape, data):
    """What :func:`binomial_basis_change` needs of the powers alone (cached: a grid search
    changes the data of every fold, not the terms): the binomial coefficients
    ``binom[b, a] = C(a, b)``, the exponent gaps ``a - b``, the entries ``(rows, cols)`` where
    monomial ``r`` divides term ``c`` (each term's sub-monomials, enumerated: no comparison of
    every pair of terms), and per feature the flat index of ``factor[j, full[r, j], full[c, j]]``
    for each of them.
    """
    full = np.frombuffer(data, dtype=np.int64).reshape(shape)
    k = np.arange(int(full.max(initial=0)) + 1)
    binom = np.array([[comb(int(a), int(b)) for a in k] for b in k], dtype=np.float64)
    gap = k[None, :] - k[:, None]
    size = k.size
    terms = [tuple(a) for a in full.tolist()]
    position = {a: i for i, a in enumerate(terms)}
    rows, cols = [], []
    for col, a in enumerate(terms):
        for b in product(*(range(e + 1) for e in a)):
            row = position.get(b)
            if row is not None:
                rows.append(row)
                cols.append(col)
    rows, cols = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
    features = np.arange(full.shape[1])[:, None]
    index = (features * size + full[rows].T) * size + full[cols].T
    return binom, gap, rows, cols, index
