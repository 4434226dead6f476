"""The well-conditioned parametrization the optimizer works in.

Raw polynomial features are badly conditioned (``x`` in the thousands makes ``x**3`` span nine
orders of magnitude), so the optimizer never sees them. Three changes of variables stand between
the raw monomials and the optimizer's parameters ``V``:

1. the inputs are mapped to ``z = (x - offset) / scale`` with ``z`` in ``[-1, 1]``;
2. the design ``D = [1, monomials(z)]`` is whitened: with ``R`` the triangular factor of the
   weighted design (``R.T @ R`` is the weighted mean Gram matrix, accumulated chunk by chunk
   with a tall-skinny QR so the full design is never held), ``D @ M`` has orthonormal columns
   for ``M = diag(1/c) @ V_r @ diag(1/s_r)`` from the SVD of the column-scaled ``R``;
3. the targets are centred and scaled, ``t = (y - y_offset) / y_scale``.

The model is ``y_hat = y_offset + y_scale * (D @ M @ V)``. For the squared error the loss is an
exact quadratic in ``V`` with identity Hessian (``||V - C||**2 + const``), whatever the data.
Coefficients are reported in the raw monomial basis through the exact binomial basis change.
"""

import numpy as np
import torch

from ._features import binomial_basis_change


def input_scaling(X, centre):
    """Offsets and scales mapping each column of X into ``[-1, 1]`` (offset 0 when not centring)."""
    if X.shape[0] == 0:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    lo = np.min(X, axis=0).astype(np.float64)
    hi = np.max(X, axis=0).astype(np.float64)
    if centre:
        offset = (hi + lo) / 2
        scale = (hi - lo) / 2
    else:
        offset = np.zeros_like(lo)
        scale = np.maximum(np.abs(lo), np.abs(hi))
    scale[~(scale > 0)] = 1.0
    return offset, scale


def target_scaling(y, sample_weight, centre):
    """Weighted mean (or 0) and weighted standard deviation (or RMS) of each target column."""
    w = sample_weight / sample_weight.sum()
    offset = w @ y if centre else np.zeros(y.shape[1])
    scale = np.sqrt(w @ (y - offset) ** 2)
    scale[~(scale > 0)] = 1.0
    return offset, scale


class ChunkedQR:
    """Triangular factor of a tall matrix given in row chunks (tall-skinny QR).

    Only the ``(n_cols, n_cols)`` factor is kept between chunks, so memory does not grow with the
    number of rows, and the result is as accurate as a QR of the whole matrix.
    """

    def __init__(self):
        self.R = None

    def update(self, rows):
        stacked = rows if self.R is None else torch.cat([self.R, rows])
        self.R = torch.linalg.qr(stacked, mode="r").R

    def merge(self, other):
        """Combine with a factor computed elsewhere (another chunk, another worker)."""
        if other.R is not None:
            self.update(other.R)

    def square(self, n_cols):
        """The factor padded with zero rows to ``(n_cols, n_cols)``."""
        R = self.R
        if R.shape[0] < n_cols:
            R = torch.cat([R, R.new_zeros((n_cols - R.shape[0], n_cols))])
        return R[:n_cols]


class Whitening:
    """The map from optimizer parameters ``V`` (rank x n_outputs) to design coefficients.

    Built from the triangular factor of ``sqrt(w) * [D, t] / sqrt(sum(w))``. Directions of the
    design with singular values below ``rcond * s_max`` are dropped, which makes rank-deficient
    problems (more terms than rows, duplicated features) well posed: the fit is then the minimum
    norm solution in the column-scaled basis.
    """

    def __init__(self, R_aug, n_design, rcond=None):
        R = R_aug[:n_design, :n_design]
        Z = R_aug[:n_design, n_design:]
        R_tt = R_aug[n_design:, n_design:]
        col = torch.linalg.vector_norm(R, dim=0)
        col = torch.where(col > 0, col, torch.ones_like(col))
        U, s, Vh = torch.linalg.svd(R / col, full_matrices=False)
        if rcond is None:
            rcond = torch.finfo(R.dtype).eps * max(R.shape[0], 1) * 10
        keep = s > rcond * s.max() if s.numel() else s.bool()
        self.rank = int(keep.sum())
        U, s, Vh = U[:, keep], s[keep], Vh[keep]
        self._s, self._Vh, self._col = s, Vh, col
        self.M = (Vh.T / s) / col[:, None]  # (n_design, rank)
        self.C = U.T @ Z  # optimum of V for the squared error, (rank, n_outputs)
        # Mean squared residual of t at the optimum, per output (never negative).
        resid = (Z * Z).sum(0) - (self.C * self.C).sum(0) + (R_tt * R_tt).sum(0)
        self.resid = torch.clamp(resid, min=0.0)


    @classmethod
    def identity(cls, R_aug, n_design):
        """No whitening: the parameters are the design coefficients themselves."""
        self = cls.__new__(cls)
        self.rank = n_design
        eye = torch.eye(n_design, dtype=R_aug.dtype, device=R_aug.device)
        self._s, self._Vh, self._col = torch.ones_like(eye[0]), eye, torch.ones_like(eye[0])
        self.M = eye
        return self

    def to_params(self, theta_t):
        """Parameters ``V`` closest to given design coefficients (exact when in the kept span)."""
        return self._s[:, None] * (self._Vh @ (self._col[:, None] * theta_t))


def raw_coefficients(theta, powers, offset, scale, fit_intercept):
    """Coefficients of ``[1, z-monomials]`` (rows) mapped to ``[1, raw monomials]`` exactly.

    ``theta`` has shape ``(n_design, n_outputs)``; without an intercept there is no first row.
    """
    if not fit_intercept:
        T = binomial_basis_change(powers, np.zeros_like(offset), scale)[1:, 1:]
    else:
        T = binomial_basis_change(powers, offset, scale)
    return T @ theta, T
