"""Rank-deficient designs: the numerical rank, the warning, and the minimum-norm solution.

Rows that do not determine every coefficient (more terms than rows, fewer distinct values than
the degree needs, duplicated or constant features) leave the least-squares fitted values unique
but the coefficients free along the design's null space. Like
:class:`~sklearn.linear_model.LinearRegression` (and ``numpy.linalg.lstsq``), the fit then
returns the solution whose raw coefficients of the terms (``coef_``, the intercept left out) have
the smallest Euclidean norm. Three steps, each where its data live:

1. :func:`reveal_rank` decides the rank from the singular values of the triangular factor of
   the whitened design (``z`` in ``[-1, 1]``, columns scaled to unit norm), where every
   determined direction stands well clear of rounding; :class:`~autopoly._conditioning.Whitening`
   then gives the optimizer the determined directions only (no ridge: the fitted values reach
   the least-squares optimum) and keeps them as ``determined``;
2. the optimizer finds one solution, ``theta``, in those directions;
3. :func:`min_norm_theta` picks, among the solutions with the same determined part, the one of
   least raw norm: a minimum-norm problem with one equation per determined direction, in the
   raw basis, no pass over the rows.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ._features import term_names


class RankDeficiencyWarning(UserWarning):
    """The rows do not determine every coefficient of the polynomial.

    Raised by :meth:`~autopoly.TorchPolyRegressor.fit` when the design is numerically
    rank-deficient (more terms than rows, fewer distinct values than the degree needs,
    duplicated or constant features) and no L2 penalty makes the solution unique. The fit then
    returns the minimum-norm least-squares solution, as
    :class:`~sklearn.linear_model.LinearRegression` does; ``numpy.polyfit`` warns with its
    ``RankWarning`` in the same situation.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from autopoly import RankDeficiencyWarning, TorchPolyRegressor
    >>> x = np.repeat([0.0, 1.0, 2.0], 4).reshape(-1, 1)  # 3 distinct values, degree 3
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = TorchPolyRegressor(degree=3).fit(x, x.ravel() ** 2)
    >>> any(issubclass(w.category, RankDeficiencyWarning) for w in caught)
    True
    """


# Singular values below RANK_RTOL * eps * max(n_design, sqrt(n_rows)) times the largest are
# taken as zero. LAPACK's and numpy.linalg.lstsq's rule is eps * max(n_rows, n_cols) on the
# design itself; ours is applied to the whitened factor, where rounding is the only source of a
# tiny singular value. There the rounding floor of an exactly rank-deficient design (duplicated
# columns) measures about 0.1 * eps * sqrt(n_rows) (float32: 1e-6 at 1e4 rows, 1e-5 at 1e6;
# float64: 1e-15 at any size), so sqrt(n_rows) with a margin of 10 rejects it by two orders of
# magnitude, while a linear n_rows would throw away real directions of float32 fits with many
# rows (815 Gaussian terms have a relative smallest singular value of 0.03). sklearn's
# LinearRegression (cond = tol = 1e-6 since 1.9) applies its cutoff to the raw monomials, whose
# columns differ in scale by powers of x: on data far from zero it discards directions the data
# do determine (a cubic through four distinct x near 1e3), which the whitened basis keeps.
RANK_RTOL = 10.0


def rank_tolerance(dtype, n_design, n_rows=None):
    """Relative cutoff on the singular values of the whitened factor (see ``RANK_RTOL``)."""
    size = max(n_design, math.sqrt(n_rows) if n_rows else 0.0)
    return RANK_RTOL * torch.finfo(dtype).eps * size


@dataclass(frozen=True)
class RankReveal:
    """The thin singular value decomposition of ``Rs`` (float64 NumPy) and the numerical rank.

    ``Rs = U @ diag(s) @ W.T`` with ``W`` of ``min(rows, n)`` orthonormal columns: the first
    ``rank`` span the directions the rows determine. The undetermined ones (their orthogonal
    complement, up to ``n - rank`` of them: thousands for a wide design) are never formed.
    """

    U: np.ndarray
    s: np.ndarray
    W: np.ndarray
    rank: int


def surely_full_rank(Rs, Rs_inv, tol):
    """A cheap sufficient test: the 1-norm condition number bounds the 2-norm one within ``n``.

    ``Rs`` and its inverse are float64 NumPy arrays, as in the rest of this module.
    """
    with np.errstate(all="ignore"):
        cond = np.abs(Rs).sum(0).max(initial=0.0) * np.abs(Rs_inv).sum(0).max(initial=0.0)
    return bool(np.isfinite(cond)) and float(cond) * Rs.shape[0] * tol < 1


def surely_deficient(Rs):
    """A triangular factor with an exactly zero diagonal entry (fewer rows than terms) is
    singular: no inverse to form, no condition number to estimate.
    """
    return bool((np.diagonal(Rs) == 0).any())


def _numerical_rank(s, tol):
    if s.size == 0 or not np.isfinite(s).all() or float(s[0]) == 0.0:
        return 0
    return int((s > tol * s[0]).sum())


def reveal_rank(Rs, tol):
    """The numerical rank of ``Rs`` (a float64 array; relative cutoff ``tol``).

    None when it is full (the singular values alone decide, at half the cost of the vectors),
    else a :class:`RankReveal`. Rows of ``Rs`` that are exactly zero (the factor of fewer rows
    than terms) are left out of the decomposition, whose cost then grows with the rows, not
    with the cube of the terms.
    """
    n = Rs.shape[1]
    kept = np.flatnonzero((Rs != 0).any(1))
    if len(kept) >= n and _numerical_rank(np.linalg.svd(Rs, compute_uv=False), tol) == n:
        return None
    U_kept, s, Wt = np.linalg.svd(Rs[kept], full_matrices=False)
    rank = _numerical_rank(s, tol)
    if rank == n:
        # The two routines may round a singular value at the cutoff to either side.
        return None
    U = np.zeros((Rs.shape[0], U_kept.shape[1]))
    U[kept] = U_kept
    return RankReveal(U=U, s=s, W=Wt.T, rank=rank)


def involved_terms(W_r, cutoff=1e-3):
    """Design columns with a share above ``cutoff`` in the undetermined directions.

    ``W_r`` (orthonormal columns) spans the determined directions; a column's share in their
    complement is one minus its share in ``W_r``.
    """
    share = 1.0 - (W_r * W_r).sum(1)
    return np.flatnonzero(share > cutoff)


def min_norm_theta(theta, determined, basis_change, fit_intercept, undetermined=None):
    """The solution with the same fitted values as ``theta`` whose raw term coefficients have
    the least norm.

    ``theta`` (n_design x n_outputs) is any least-squares solution in design coefficients;
    ``determined`` (rank x n_design) has the directions the rows determine as rows, so the
    solutions are those with ``determined @ theta`` unchanged; ``basis_change`` ``S`` (upper
    triangular: a raw monomial expands only into monomials of lower or equal degree) maps design
    coefficients to raw ones. In raw coefficients ``beta = S @ theta`` the constraints read
    ``B @ beta = c`` with ``B = determined @ inv(S)``, and the terms' part of ``beta`` (the
    intercept left out, as LinearRegression leaves it out of the norm it minimizes) of least
    norm is the minimum-norm solution of ``rank`` equations: the intercept takes the part of
    the constraints along its own column, the terms the rest. The cost grows with
    ``rank * n_design**2``, however many directions are undetermined.

    With ``undetermined`` (``n_design x n_null``, the undetermined directions in design
    coefficients, when the decomposition has them) one refinement step follows: the part of
    the solution's raw term coefficients that the undetermined directions can still remove is
    removed by a least-squares solve in those directions. Far from zero the basis change is
    ill conditioned, and its rounding alone left up to 6e-8 of the largest coefficient in the
    null space (two duplicated columns near 1e3 at degree 2); the step, applied to what is
    left, brings that to rounding of the small remainder.
    """
    from scipy.linalg import solve_triangular

    S = np.asarray(basis_change, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if determined.shape[0] == 0:
        # The rows determine nothing (every term vanishes on them): all terms zero, and the
        # intercept (free too, unless the rows fixed it) the one ``theta`` has.
        beta = np.zeros((S.shape[0], theta.shape[1]))
        if fit_intercept:
            beta[0] = (S @ theta)[0]
        return solve_triangular(S, beta, lower=False)
    c = determined @ theta
    B = solve_triangular(S, determined.T, trans="T", lower=False).T
    # Equations differ in scale by powers of the inputs' offset: scaling them (rows of B and c
    # alike) changes no solution and helps the least-squares solver's cutoff.
    norms = np.linalg.norm(B, axis=1)
    norms[~(norms > 0)] = 1.0
    B, c = B / norms[:, None], c / norms[:, None]
    beta = np.zeros((S.shape[0], theta.shape[1]))
    if fit_intercept:
        b0 = B[:, 0]
        b0_norm2 = float(b0 @ b0)
        B_t = B[:, 1:]
        if b0_norm2 > 0:
            q = b0 / math.sqrt(b0_norm2)
            B_t, c_t = B_t - np.outer(q, q @ B_t), c - np.outer(q, q @ c)
        else:
            c_t = c
        beta[1:], *_ = np.linalg.lstsq(B_t, c_t, rcond=None)
        if b0_norm2 > 0:
            beta[0] = b0 @ (c - B[:, 1:] @ beta[1:]) / b0_norm2
        else:
            # No equation involves the intercept: keep the one ``theta`` has.
            beta[0] = (S @ theta)[0]
    else:
        beta, *_ = np.linalg.lstsq(B, c, rcond=None)
    theta = solve_triangular(S, beta, lower=False)
    if undetermined is None or undetermined.shape[1] == 0:
        return theta
    first = int(fit_intercept)
    moves = (S @ undetermined)[first:]  # raw term coefficients of each undetermined direction
    v, *_ = np.linalg.lstsq(moves, -(S @ theta)[first:], rcond=None)
    return theta + undetermined @ v


def rank_message(setup, rank, involved, max_names=8):
    """The text of the :class:`RankDeficiencyWarning`: rank, collinear terms, remedies."""
    n_design = setup.n_design
    fit_intercept = setup.terms.fit_intercept
    names = list(term_names(setup.powers, [f"x{i}" for i in range(setup.powers.shape[1])]))
    if fit_intercept:
        names = ["1 (the intercept)"] + names
    listed = [names[j] for j in involved[:max_names]]
    more = len(involved) - len(listed)
    terms = ", ".join(listed) + (f" and {more} more" if more > 0 else "")
    columns = (
        f"the intercept and {n_design - 1} term(s)" if fit_intercept else f"{n_design} term(s)"
    )
    return (
        f"The polynomial's design ({columns}) has numerical rank {rank} on these rows, so the "
        f"data do not determine {n_design - rank} combination(s) of its coefficients; the "
        f"terms involved are {terms}. The fit returns the minimum-norm least-squares solution "
        "in the raw monomial basis, as sklearn.linear_model.LinearRegression does. Lower the "
        "degree, drop duplicated or constant features, fit more distinct rows, or set "
        "alpha > 0 (with l1_ratio < 1) for a ridge penalty that makes the solution unique."
    )


def warn_rank_deficiency(setup, whitening, stacklevel):
    """Warn once per fit that ``whitening`` dropped undetermined directions."""
    warnings.warn(
        rank_message(setup, setup.n_design - whitening.n_null, whitening.involved),
        RankDeficiencyWarning,
        stacklevel=stacklevel + 1,
    )
