"""The last digits of a least-squares fit: one step of iterative refinement in the raw basis.

The fit solves least squares in the centred, scaled basis ``z = (x - x_offset) / x_scale``,
where the design is well conditioned, and maps the solution to the raw monomials by an exact
binomial basis change. Exact in the formula, but each raw coefficient is a sum of terms that
can be far larger than the result (``x`` near ``3e6``: the constant term is a difference of
numbers ``1e12`` times larger), so rounding in that sum costs digits that the raw problem
itself does not lose. ``numpy.polyfit``, which solves in the raw basis directly, keeps them on
some problems.

Iterative refinement recovers them. With ``c`` the raw coefficients:

1. the residual ``r = y - P @ c`` of the raw design ``P`` is computed in double-double
   arithmetic (error-free products and sums: about 32 significant digits), so that the
   cancellation between the large terms of ``P @ c`` loses nothing;
2. the correction ``delta`` is the least-squares solution for ``r``, solved in the well
   conditioned basis from the triangular factor the fit already has (``R^-1 R^-T D.T (w r)``,
   the corrected semi-normal equations) and mapped to the raw basis by the same basis change;
3. ``c + delta`` replaces ``c`` when its double-double residual is no larger.

The correction is small, so the rounding of its own basis change is small too: the raw
coefficients end within a few units of rounding of the exact least-squares solution. The step
costs one more pass over the rows in double-double, so it runs for problems small enough
that it is cheap next to the fit (:data:`REFINE_ENTRIES` design entries) and only where the
basis change can lose digits (inputs not already centred near zero).
"""

from functools import lru_cache

import numpy as np
import torch
from sklearn.externals.array_api_compat import array_namespace

from ._conditioning import host64

# Problems with at most this many design entries (rows x terms) are refined.
REFINE_ENTRIES = 2**16
# Refine only when the basis change loses at least one digit to cancellation.
MIN_CANCELLATION = 10.0
# Below this |x_offset| / x_scale (the inputs' centre in units of their spread) the basis
# change cannot lose digits: the terms of each raw coefficient are no larger than it.
MIN_OFFSET_RATIO = 0.25

_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a float64 into two 26-bit halves


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


def _split(a):
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_mul(hi, lo, b):
    """The double-double ``(hi, lo)`` times the float64 ``b``."""
    p, e = _two_prod(hi, b)
    return _fast_two_sum(p, e + lo * b)


def _dd_add(ah, al, bh, bl):
    s, e = _two_sum(ah, bh)
    return _fast_two_sum(s, e + (al + bl))


def _dd_sum(hi, lo, axis):
    """Sum double-doubles along ``axis`` (0 or 1) by pairwise halving (``log2`` vectorized
    levels; NumPy arrays or tensors alike).
    """
    if axis:
        hi, lo = hi.swapaxes(0, axis), lo.swapaxes(0, axis)
    while hi.shape[0] > 1:
        n = hi.shape[0]
        half = n // 2
        s_hi, s_lo = _dd_add(hi[:half], lo[:half], hi[half : 2 * half], lo[half : 2 * half])
        if n % 2:
            s_hi[:1], s_lo[:1] = _dd_add(s_hi[:1], s_lo[:1], hi[n - 1 :], lo[n - 1 :])
        hi, lo = s_hi, s_lo
    return hi[0], lo[0]


@lru_cache(maxsize=8)
def _level_plan(powers_bytes, shape, dtype):
    """What :class:`RawDesign` builds, degree by degree, for these powers (cached per term
    set: a grid search refines the same terms fold after fold).

    Returns ``levels``, one ``(parents, features)`` per degree (column ``j`` of the level is
    column ``parents[j]`` of the levels before times input ``features[j]``), and ``columns``,
    each term's column in the concatenated levels.
    """
    powers = np.frombuffer(powers_bytes, dtype=dtype).reshape(shape)
    index = {(0,) * shape[1]: 0}
    levels = []
    max_degree = int(powers.sum(1).max()) if len(powers) else 0
    for degree in range(1, max_degree + 1):
        # Every exponent vector of this degree that some term needs, by its parent.
        wanted = {tuple(p) for p in powers if p.sum() >= degree}
        level = set()
        for p in wanted:
            p = np.array(p)
            # Walk down to this degree, removing from the last features first.
            while p.sum() > degree:
                f = np.flatnonzero(p)[-1]
                p[f] -= 1
            level.add(tuple(p))
        level = sorted(level)
        parents, features = [], []
        for p in level:
            # The parent is the next step of the same walk: in the level below.
            f = int(np.flatnonzero(p)[-1])
            parent = list(p)
            parent[f] -= 1
            parents.append(index[tuple(parent)])
            features.append(f)
        for p in level:
            index[p] = len(index)  # its column in the concatenated levels
        levels.append((parents, features))
    return levels, [index[tuple(p)] for p in powers]


class RawDesign:
    """The raw monomials of the rows ``X`` in double-double, for exact-ish residuals.

    Every monomial of degree ``d`` is a monomial of degree ``d - 1`` times one input, so the
    monomials are built one degree at a time, each degree one vectorized error-free product.
    ``X`` is a float64 NumPy array (host rows) or tensor (a device's rows): array-API code.
    """

    def __init__(self, X, powers, fit_intercept):
        self.fit_intercept = fit_intercept
        xp = array_namespace(X)
        one = X[:, :1] * 0.0 + 1.0
        hi, lo = [one], [one * 0.0]
        levels, columns = _level_plan(powers.tobytes(), powers.shape, powers.dtype.str)
        for parents, features in levels:
            all_hi, all_lo = xp.concat(hi, axis=1), xp.concat(lo, axis=1)
            new_hi, new_lo = _dd_mul(all_hi[:, parents], all_lo[:, parents], X[:, features])
            hi.append(new_hi)
            lo.append(new_lo)
        all_hi, all_lo = xp.concat(hi, axis=1), xp.concat(lo, axis=1)
        self.hi, self.lo = all_hi[:, columns, None], all_lo[:, columns, None]
        self._hi_split = _split(self.hi)  # reused by every residual

    def residual(self, y, raw):
        """``y - [1, monomials] @ raw`` in double-double, rounded: ``(n, k)``."""
        hi, lo = self.residual_dd(y, raw)
        return hi + lo

    def residual_dd(self, y, raw):
        """``y - [1, monomials] @ raw`` in double-double: ``(hi, lo)``, each ``(n, k)``."""
        first = int(self.fit_intercept)
        coef = -raw[first:][None]  # (1, n_terms, k)
        # The monomials times the coefficients, error-free (Dekker's product, halves reused).
        p = self.hi * coef
        ah, al = self._hi_split
        bh, bl = _split(coef)
        e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        t_hi, t_lo = _fast_two_sum(p, e + self.lo * coef)
        s_hi, s_lo = _dd_sum(t_hi, t_lo, axis=1)
        s_hi, s_lo = _dd_add(s_hi, s_lo, y, 0.0)
        if first:
            s_hi, s_lo = _dd_add(s_hi, s_lo, -raw[0][None, :], 0.0)
        return s_hi, s_lo


def _gradient(D, w, r_hi, r_lo):
    """``D.T @ (w * r)`` for the double-double residual ``r``, in double-double, rounded.

    At the optimum this is zero: a sum of terms far larger than itself, whose ordinary
    rounding (about ``eps * sum(|D| w |r|)``) would decide the correction's last digits, and
    differ from one BLAS to another.
    """
    a_hi, a_lo = _two_prod(D, w[:, None])  # w_i * D_ij exactly
    a_hi, a_lo = a_hi[:, :, None], a_lo[:, :, None]
    p, e = _two_prod(a_hi, r_hi[:, None, :])
    hi, lo = _fast_two_sum(p, e + (a_lo * r_hi[:, None, :] + a_hi * r_lo[:, None, :]))
    s_hi, s_lo = _dd_sum(hi, lo, axis=0)
    return s_hi + s_lo


def worth_refining(spec, source, setup, full_rank):
    """Whether the fit of ``spec`` on ``source`` gets the refinement step (see module doc)."""
    scaling = setup.scaling
    ratio = np.abs(scaling.x_offset) / scaling.x_scale
    return (
        spec.loss_name == "squared_error"
        and spec.alpha == 0
        and spec.conditioning
        and spec.dtype == torch.float64
        and setup.device.type != "mps"
        and full_rank
        and hasattr(source, "take")
        and spec.stats_mode(source.n_rows)
        and not spec.early_stopping
        and source.n_rows * setup.n_design <= REFINE_ENTRIES
        and source.n_rows > 0
        and bool((ratio >= MIN_OFFSET_RATIO).any())
    )


def cancellation(basis_change, theta, raw):
    """How many times larger the terms of the raw coefficients' sums are than the sums.

    ``raw = basis_change @ theta``: rounding in that sum costs about ``log10`` of this many
    digits of the worst coefficient (relative to its own size).
    """
    with np.errstate(all="ignore"):
        growth = (np.abs(basis_change) @ np.abs(theta)) / np.abs(raw)
    growth = growth[np.isfinite(growth)]
    return float(growth.max()) if growth.size else 1.0


def refine(source, setup, R_design, raw, theta, steps=1):
    """Refinement steps: ``(raw, theta)`` with ``raw`` improved (or as it was when the step
    does not help) and ``theta`` as it was.

    ``R_design`` is the triangular factor of ``sqrt(w) * D`` (the design block of the fit's
    factor, float64); ``raw`` the raw coefficients ``(n_design, k)``; ``theta`` the scaled
    design's coefficients (what ``predict`` uses), solved where the design is well conditioned.
    ``theta`` is not moved: the correction mostly undoes the rounding of ``raw`` itself, and
    where the raw monomials are ill conditioned (inputs far from zero, a high degree, nearly
    collinear features) float64 raw coefficients cannot hold the optimum at all, so a
    ``theta`` moved with them to "the same polynomial" lost what it had (a degree-4 fit of
    two nearly collinear features near 1e3 ended 3% above the optimum squared error). The
    rows are read on the fit's device and stay there.
    """
    if setup.device.type == "cpu" and source.on_host:
        # Host rows in NumPy (a small problem's few hundred operations cost a fraction of
        # torch's); the same array-API arithmetic below.
        X, y, w = source.take_host(slice(None))
        D = setup.design.host(X, extra_rows=0).T
        R = host64(R_design)
        change, raw_t = setup.basis_change, raw
    else:
        X, y, w = source.take(slice(None), torch.float64, setup.device)
        D = setup.design(X)
        R = R_design.to(device=setup.device, dtype=torch.float64)
        change = torch.as_tensor(setup.basis_change, device=setup.device)
        raw_t = torch.as_tensor(raw, device=setup.device)
    xp = array_namespace(X)
    design = RawDesign(X, setup.powers, setup.terms.fit_intercept)
    r_hi, r_lo = design.residual_dd(y, raw_t)
    r = r_hi + r_lo
    if not bool(xp.all(xp.isfinite(r))):
        return raw, theta
    for _ in range(steps):
        delta_z = _solve_normal(R, _gradient(D, w, r_hi, r_lo))
        candidate = raw_t + change @ delta_z
        new_hi, new_lo = design.residual_dd(y, candidate)
        r_new = new_hi + new_lo
        # A guard against garbage (overflow, a wrong factor), not a test of the last digits:
        # near the optimum the squared error changes only at second order.
        before = float(w @ xp.sum(r * r, axis=1))
        after = float(w @ xp.sum(r_new * r_new, axis=1))
        if not (bool(xp.all(xp.isfinite(candidate))) and after <= before * (1 + 1e-9)):
            break
        raw_t, r, r_hi, r_lo = candidate, r_new, new_hi, new_lo
    # Coefficients (n_design x k numbers) come back to the host; the rows never do.
    return host64(raw_t), theta


def _solve_normal(R, g):
    """``R^-1 R^-T g`` for the upper triangular ``R`` (NumPy or torch, as ``g``)."""
    if isinstance(R, torch.Tensor):
        inner = torch.linalg.solve_triangular(R.T, g, upper=False)
        return torch.linalg.solve_triangular(R, inner, upper=True)
    from scipy.linalg import lapack

    inner, _ = lapack.dtrtrs(R, g, lower=0, trans=1)
    return lapack.dtrtrs(R, inner, lower=0, trans=0)[0]
