"""The well-conditioned parametrization the optimizer works in.

Raw polynomial features are badly conditioned (``x`` in the thousands makes ``x**3`` span nine
orders of magnitude), so the optimizer never sees them. Three changes of variables stand between
the raw monomials and the optimizer's parameters ``V``:

1. the inputs are mapped to ``z = (x - offset) / scale`` with ``z`` in ``[-1, 1]``;
2. the design ``D = [1, monomials(z)]`` is whitened: with ``R`` the triangular factor of the
   weighted design (``R.T @ R`` is the weighted mean Gram matrix, accumulated chunk by chunk
   with a tall-skinny QR so the full design is never held), ``D @ M`` has orthonormal columns
   for ``M = R^-1`` (after scaling ``R``'s columns to unit norm; see :class:`Whitening` for
   rank-deficient designs and L2 penalties);
3. the targets are centred and scaled, ``t = (y - y_offset) / y_scale``.

The model is ``y_hat = y_offset + y_scale * (D @ M @ V)``. For the squared error the loss is an
exact quadratic in ``V`` with Hessian ``2 * I``: ``||V - C||**2 + const`` per output.
Coefficients are reported in the raw monomial basis through the exact binomial basis change.
"""

import copy
import math

import numpy as np
import torch
from sklearn.externals.array_api_compat import array_namespace, device

from ._features import binomial_basis_change
from ._rank import (
    involved_terms,
    rank_tolerance,
    reveal_rank,
    surely_deficient,
    surely_full_rank,
)


def input_scaling(lo, hi, centre):
    """Offsets and scales mapping columns with these minima and maxima into ``[-1, 1]``.

    ``lo`` and ``hi`` are float64 vectors (+inf and -inf for a column without rows); the
    offset is 0 when not centring.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    nan = np.isnan(lo) | np.isnan(hi)
    if nan.any():
        # NaN that validation let through (assume_finite=True): keep it visible in its
        # column, for :func:`~autopoly._setup.check_finite_scaling` to name.
        offset, scale = input_scaling(np.where(nan, 0.0, lo), np.where(nan, 0.0, hi), centre)
        return np.where(nan, np.nan, offset), np.where(nan, np.nan, scale)
    if (lo == np.inf).all() and (hi == -np.inf).all():  # no rows
        return np.zeros(lo.shape[0]), np.ones(lo.shape[0])
    if centre:
        offset = (hi + lo) / 2
        scale = (hi - lo) / 2
    else:
        offset = np.zeros_like(lo)
        scale = np.maximum(np.abs(lo), np.abs(hi))
    scale[~(scale > 0)] = 1.0
    return offset, scale


def target_scaling(y, sample_weight, centre):
    """Weighted mean (or 0) and weighted standard deviation (or RMS) of each target column.

    ``y`` (2-D) and ``sample_weight`` are float64 arrays of one kind: NumPy arrays for rows in
    host memory, or torch tensors on the device they live on (the rows are reduced where they
    are: array-API code, see ``sklearn.utils._array_api``). The result is two float64 NumPy
    vectors.
    """
    with np.errstate(all="ignore"):  # (non-finite y is named by the caller's check)
        return _target_scaling(array_namespace(y, sample_weight), y, sample_weight, centre)


def _target_scaling(xp, y, sample_weight, centre):
    w = sample_weight / xp.sum(sample_weight)
    offset = w @ y if centre else xp.zeros(y.shape[1], dtype=y.dtype, device=device(y))
    # Squared deviations in units of the largest one (over the rows of positive weight): no
    # overflow near 1e155, no underflow to zero near 1e-170.
    deviation = y - offset
    if y.shape[0]:
        reach = xp.max(xp.abs(deviation) * xp.astype(sample_weight[:, None] > 0, y.dtype), axis=0)
    else:
        reach = xp.zeros_like(offset)
    unit = xp.where(reach > 0, reach, xp.ones_like(reach))
    scale = unit * xp.sqrt(w @ (deviation / unit) ** 2)
    scale = xp.where(scale > 0, scale, xp.ones_like(scale))
    return host64(offset), host64(scale)


class ChunkedQR:
    """Triangular factor of a tall matrix given in row chunks (tall-skinny QR).

    Only the ``(n_cols, n_cols)`` factor is kept between chunks, so memory does not grow with the
    number of rows, and the result is as accurate as a QR of the whole matrix.
    """

    def __init__(self):
        self.R = None

    def update(self, rows):
        # Factor the chunk on its own first: stacking it under R would copy the whole chunk.
        R_rows = torch.linalg.qr(rows, mode="r").R
        if self.R is None:
            self.R = R_rows
        else:
            self.R = torch.linalg.qr(torch.cat([self.R, R_rows]), mode="r").R

    def square(self, n_cols):
        """The factor padded with zero rows to ``(n_cols, n_cols)``."""
        R = self.R
        if R.shape[0] < n_cols:
            R = torch.cat([R, R.new_zeros((n_cols - R.shape[0], n_cols))])
        return R[:n_cols]


def gram_is_accurate(R, max_cond=1e3):
    """Whether a Cholesky factor of a Gram matrix is as good as a QR factor would be.

    Forming the Gram matrix squares the condition number: with the columns scaled to unit
    norm and a condition number (1-norm) under ``max_cond``, the squared one stays below 1e6,
    so the coefficients lose at most about six of float64's sixteen digits (the bound is loose;
    on well-conditioned data they agree with the QR route to ~1e-13).
    """
    col = torch.linalg.vector_norm(R, dim=0)
    if not bool((col > 0).all()):
        return False
    Rs = R / col
    eye = torch.eye(R.shape[0], dtype=R.dtype, device=R.device)
    R_inv = torch.linalg.solve_triangular(Rs, eye, upper=True)
    cond = torch.linalg.matrix_norm(Rs, 1) * torch.linalg.matrix_norm(R_inv, 1)
    return bool(torch.isfinite(cond)) and float(cond) < max_cond


# Relative ridge for the numerically rank-deficient terms of penalized fits and of row-wise
# streams (the least-squares fit drops those terms instead; see ``Whitening``).
RIDGE = 1e-7


def _append_rows(R, Z, rows):
    """The triangular factor of ``[[R, Z], [rows, 0]]``: ``(R', Z', residual sum of squares)``.

    Appending rows to a least-squares problem through a QR factorization never forms
    ``R.T @ R``, so it keeps every digit the data have (no squared condition number). Float64
    NumPy arrays in and out; ``R`` is upper triangular.
    """
    n_design = R.shape[1]
    if rows.shape[0] <= n_design:
        # The penalty rows (the basis change's term rows, a multiple of the identity) are
        # upper triangular once placed at the bottom of a square: LAPACK's triangular-
        # pentagonal QR then does about a fifth of a dense QR's work (286 terms: 1.4 ms
        # instead of 4.9).
        B = np.zeros((n_design, n_design))
        B[n_design - rows.shape[0] :] = rows
        if not np.tril(B, -1).any():
            return _append_triangle(R, Z, B)
    top = np.hstack([R, Z])
    # Zero rows (the factor of fewer rows than terms) change no factor: the QR, whose cost
    # grows with its rows, leaves them out.
    top = top[(top != 0).any(1)]
    stacked = np.vstack([top, np.hstack([rows, np.zeros((rows.shape[0], Z.shape[1]))])])
    F = torch.linalg.qr(torch.from_numpy(stacked), mode="r").R.numpy()
    if F.shape[0] < n_design:
        F = np.vstack([F, np.zeros((n_design - F.shape[0], F.shape[1]))])
    tail = F[n_design:, n_design:]
    return F[:n_design, :n_design], F[:n_design, n_design:], (tail * tail).sum(0)


def _append_triangle(R, Z, B):
    """:func:`_append_rows` for an upper triangular square ``B`` (LAPACK ``tpqrt``)."""
    from scipy.linalg import lapack

    n = R.shape[0]
    block = min(32, n)
    A, V, T, info = lapack.dtpqrt(n, block, np.triu(R), B)
    if info != 0:
        raise np.linalg.LinAlgError(f"dtpqrt failed (info={info})")
    # The same reflections applied to the targets' columns [Z; 0]: Z' on top, the rest is
    # residual.
    Z_new, tail, info = lapack.dtpmqrt(n, V, T, Z, np.zeros((n, Z.shape[1])), trans="T")
    if info != 0:
        raise np.linalg.LinAlgError(f"dtpmqrt failed (info={info})")
    return np.triu(A), Z_new, (tail * tail).sum(0)


def _scale_columns(R, col):
    """``R / col``. The factor of fewer rows than terms is mostly zero rows: only the others
    are written (``np.zeros`` maps fresh pages lazily; touching all of a wide design's
    thousands-square factor costs more than the rest of its fit).
    """
    nonzero = R.any(1)
    if nonzero.all():
        return R / col
    Rs = np.zeros(R.shape)
    Rs[nonzero] = R[nonzero] / col
    return Rs


def inverse_upper(Rs):
    """The inverse of the upper triangular float64 array ``Rs`` (LAPACK's ``trtri``)."""
    from scipy.linalg import lapack

    inverse, info = lapack.dtrtri(Rs, lower=0)
    if info != 0:  # an exactly singular factor: the rank test sees inf and reveals the rank
        return np.full_like(Rs, np.inf)
    return inverse


def host64(array):
    """Values as a float64 NumPy array: a view where they already are float64 in host memory
    (a NumPy array, or a CPU tensor without grad: one check instead of the four calls of
    ``detach().cpu().to(float64).numpy()``), else a copy.
    """
    if isinstance(array, torch.Tensor):
        if array.dtype == torch.float64 and array.device.type == "cpu" and not array.requires_grad:
            return array.numpy()
        return array.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(array).astype(np.float64, copy=False)


class Whitening:
    """The map from optimizer parameters ``V`` (rank x n_outputs) to design coefficients.

    Built from the triangular factor of ``sqrt(w) * [D, t] / sqrt(sum(w))``, columns scaled to
    unit norm. A well-conditioned factor is simply inverted (``M = R^-1``, a triangular
    inverse), which makes ``D @ M`` orthonormal.

    A numerically rank-deficient factor (more terms than rows, too few distinct values,
    duplicated or constant features: a singular value below
    :func:`~autopoly._rank.rank_tolerance` times the largest) is handled in one of two ways:

    - ``truncate=True`` (least squares without a penalty, over all the rows): ``M`` keeps only
      the ``rank`` directions the rows determine (``M = W_r / s_r`` from the singular value
      decomposition ``Rs = U diag(s) W.T``), so ``D @ M`` is again orthonormal, with ``rank``
      columns, and the squared error is exactly that of the data (no ridge: the fitted values
      reach the least-squares optimum). The determined directions are kept as ``determined``
      (``rank x n_design``, acting on design coefficients) for
      :func:`~autopoly._rank.min_norm_theta`, which picks the minimum-norm solution in the raw
      basis; ``n_null`` counts the undetermined directions and ``involved`` lists the design
      columns they involve;
    - otherwise (a lasso penalty, whose optimum depends on every direction, or a row-wise
      stream whose whitening comes from its first batch and must leave room for later rows)
      ``sqrt(ridge) * I`` is appended as extra rows, so that the objective gains that ridge
      (``1e-7`` on unit-norm columns, more only where the dtype's precision needs it) and has
      a unique optimum: rounding noise in the undetermined directions is damped instead of
      amplified.

    With ``penalty_root`` (a matrix ``P`` whose ``P.T @ P`` is the Hessian of an L2 penalty in
    the design coefficients, divided by the squared target scale), ``P`` is appended the same
    way first, so that ridge fits are exactly conditioned too and a user's ridge makes any
    design full-rank; ``C`` and ``resid`` then describe loss plus penalty. The rows are
    appended by QR, never by forming a Gram matrix, so float32 keeps its accuracy.

    Either way, the squared error is ``||V - C||**2 + resid`` per output. ``n_rows`` (the rows
    behind the factor, when known) enters the rank tolerance.

    The factor is ``(n_design + n_outputs)`` square whatever the number of rows, so all of
    this is computed once, on the host in float64, for every device and dtype: NumPy arrays
    (a NumPy operation on a small matrix costs a fraction of a torch one); appended rows go
    through LAPACK's triangular-pentagonal QR when they are triangular (penalties), else
    torch's QR on views (faster than NumPy's on large factors). With many terms the estimator
    runs NumPy's BLAS on one thread for small problems (its threads spin against torch's on
    few cores; see ``TorchPolyRegressor._threads``). Float64 keeps a float32 fit's factor
    exactly; the rank tolerance is the compute dtype's, whose rounding the factor carries.
    ``M``, ``C`` and ``resid`` are then handed to the optimizer as tensors on the fit's device
    in its dtype (views, for a float64 fit on the CPU).
    """

    def __init__(self, R_aug, n_design, penalty_root=None, *, truncate=False, n_rows=None):
        self._built_from = (R_aug, n_design, penalty_root, truncate, n_rows)
        self._output = None
        self._dtype, self._device = R_aug.dtype, R_aug.device
        A = host64(R_aug)
        R = A[:n_design, :n_design]
        Z = A[:n_design, n_design:]
        R_tt = A[n_design:, n_design:]
        # (einsum: no temporary the size of R, whose first touch dominates a wide design)
        col = np.sqrt(np.einsum("ij,ij->j", R, R))
        col[~(col > 0)] = 1.0
        Rs = _scale_columns(R, col)
        resid = (R_tt * R_tt).sum(0)
        eps = torch.finfo(R_aug.dtype).eps
        self.rank = n_design
        self.n_null = 0
        self.determined = None
        self.involved = None
        self.undetermined = None
        if penalty_root is not None:
            # Squared error plus an L2 term is again a least-squares problem: rows appended.
            Rs, Z, extra = _append_rows(Rs, Z, host64(penalty_root) / col)
            resid = resid + extra
        tol = rank_tolerance(R_aug.dtype, n_design, n_rows)
        # A zero on the diagonal (fewer rows than terms) needs no inverse to be told singular.
        R_inv = None if surely_deficient(Rs) else inverse_upper(Rs)
        surely_full = R_inv is not None and surely_full_rank(Rs, R_inv, tol)
        reveal = None if surely_full else reveal_rank(Rs, tol)
        if reveal is not None:
            if truncate:
                self._keep_determined(reveal, col, Z, resid)
                return
            # The ridge keeps the condition number near 1 / sqrt(ridge).
            ridge = max(RIDGE, (100 * eps * n_design) ** 2)
            Rs, Z, extra = _append_rows(Rs, Z, math.sqrt(ridge) * np.eye(n_design))
            resid = resid + extra
            R_inv = None
        if R_inv is None:
            R_inv = inverse_upper(Rs)
        self._publish(R_inv / col[:, None], Rs * col, Z, resid)  # V = R @ theta

    def _publish(self, M, inverse, C, resid):
        """The optimizer's tensors, on the fit's device in its dtype."""

        def compute(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self._device, self._dtype)

        self.M = compute(M)
        self._inverse = compute(inverse)
        self.C = compute(C)
        self.resid = compute(resid)

    def _keep_determined(self, reveal, col, Z, resid):
        """Parametrize the ``rank`` determined directions only."""
        r = reveal.rank
        U_r, s_r, W_r = reveal.U[:, :r], reveal.s[:r], reveal.W[:, :r]
        C = U_r.T @ Z
        # The part of the projected targets outside the determined span is residual too.
        outside = Z - U_r @ C
        M = (W_r / s_r) / col[:, None]
        inverse = (s_r[:, None] * W_r.T) * col  # V = S_r W_r.T (col * theta)
        if r == 0:
            # No term is determined (every term vanishes on the rows): one parameter that
            # moves nothing, as optimizers need at least one.
            M, inverse = np.zeros((M.shape[0], 1)), np.zeros((1, M.shape[0]))
            C = np.zeros((1, C.shape[1]))
        self.rank = M.shape[1]
        self._publish(M, inverse, C, resid + (outside * outside).sum(0))
        self.n_null = reveal.W.shape[0] - r
        # The determined part of design coefficients theta is W_r.T @ (col * theta).
        self.determined = W_r.T * col
        self.involved = involved_terms(W_r)
        # The undetermined directions in design coefficients, where the decomposition has
        # them (not for fewer rows than terms: they are never formed there).
        W = reveal.W
        self.undetermined = W[:, r:] / col[:, None] if W.shape[1] == W.shape[0] else None

    @classmethod
    def identity(cls, R_aug, n_design):
        """No whitening: the parameters are the design coefficients themselves."""
        self = cls.__new__(cls)
        self.rank = n_design
        self.n_null, self.determined, self.involved, self.undetermined = 0, None, None, None
        self.M = self._inverse = torch.eye(n_design, dtype=R_aug.dtype, device=R_aug.device)
        return self

    def output(self, k):
        """The same whitening with the statistics of output ``k`` alone (``C``, ``resid``)."""
        one = copy.copy(self)
        if hasattr(self, "C"):
            one.C, one.resid = self.C[:, k : k + 1], self.resid[k : k + 1]
        one._output = k
        return one

    def with_penalty_weight(self, factor):
        """The whitening with the L2 penalty's Hessian weighted by ``factor`` (same outputs).

        A loss that is not the squared error weighs the penalty differently against the rows
        than the squared error does (see :func:`~autopoly._fitting.penalty_weight`); whitening
        with the reweighted penalty keeps the optimizer's problem well conditioned.
        """
        R_aug, n_design, penalty_root, truncate, n_rows = self._built_from
        if penalty_root is None or factor == 1:
            return self
        root = penalty_root * math.sqrt(factor)
        one = Whitening(R_aug, n_design, root, truncate=truncate, n_rows=n_rows)
        return one if self._output is None else one.output(self._output)

    def to_params(self, theta_scaled):
        """Parameters ``V`` closest to given design coefficients (exact when in the kept span)."""
        return self._inverse @ theta_scaled


def basis_change(powers, offset, scale, fit_intercept):
    """Matrix mapping coefficients of ``[1, z-monomials]`` (or the monomials alone, without an
    intercept) to those of the raw monomials, exactly (binomial expansion).
    """
    if not fit_intercept:
        return binomial_basis_change(powers, np.zeros_like(offset), scale)[1:, 1:]
    return binomial_basis_change(powers, offset, scale)
