"""The exact minimizer of ``||V - C||**2 + lam * ||A @ V||_1``: the L1 part of a squared-error fit.

For the squared error on full batches the objective of one output, in the optimizer's
whitened parameters ``V``, is ``y_scale**2 * (||V - C||**2 + resid) + alpha * l1_ratio /
sum(w) * ||y_scale * A @ V||_1`` (the L2 part of the penalty is folded into ``C`` and
``resid`` by the whitening, and ``A @ V`` are the raw coefficients of the terms in units of
the scaled target). Divided by ``y_scale**2`` that is the generalized Lasso solved here, with
``lam = alpha * l1_ratio / (sum(w) * y_scale)``. A gradient method through ``|b|`` stops short
of its optimum and never lands on an exact zero; this solver returns the optimum itself, with
exact zeros where the optimum has them.

Method: a primal active-set method (the feature-sign search of Lee, Battle, Raina and Ng,
2007, in ``V`` rather than in ``b``). A *face* is a set ``S`` of nonzero coefficients with
fixed signs ``sigma``; the others (``Z``) are held at zero. On a face the objective is the
quadratic ``||V - C||**2 + lam * sigma @ A_S @ V`` under ``A_Z @ V = 0``, whose minimizer is
one projection: ``V = P_Z @ (C - lam / 2 * A_S.T @ sigma)``, with ``P_Z`` the orthogonal
projector onto the null space of ``A_Z`` (from a QR factorization of ``A_Z.T``). The
unpenalized directions (the null space of ``A``, normally the intercept) are thus solved in
closed form at every step and never need eliminating. Starting from the constant model
(``S`` empty, the exact answer when ``lam`` is at least ``lam_max``), each iteration:

1. moves from the current point towards the face minimizer, stopping where a coefficient
   first crosses zero (it leaves ``S``), so the objective never increases;
2. at a face minimizer, reads the multipliers of the zero coefficients from the same QR
   (``zeta_Z = 2 / lam * R_Z^-1 @ Q_Z.T @ u / ||A_Z rows||``): the point is the optimum
   when ``|zeta_j| <= 1`` for every zero coefficient (up to ``tol``); otherwise every
   violating one joins ``S`` with the sign of its multiplier (if they all come straight back
   to zero, the next round releases only the most violating one, the classical step, which
   always makes progress).

In exact arithmetic this ends at the optimum after finitely many faces (the objective
strictly decreases from one face minimizer to the next, and there are finitely many faces);
in practice it takes fewer iterations than there are nonzero coefficients (5 for the 9
terms of degree 3 in 2 features; 124 for 209 terms). Each costs one QR of an
``(n_design, n_zero)`` matrix, so the solver suits the small, dense problems autopoly has
(``n_design`` up to a few hundred).

Conditioning: the rows of ``A`` are scaled to unit norm first, which leaves the problem (a
weighted Lasso in the scaled coefficients) unchanged and makes the QR factorizations depend
only on the directions of the rows. What is left is ``cond`` = the condition number of the
row-scaled ``A`` (4 for standard normal inputs of degree 3; ~600 for raw ``x`` in ``[10,
20]``, where the monomials are nearly collinear). Every step is an orthogonal projection or a
triangular solve, never an explicit inverse or a Gram matrix, so ``V`` is accurate to about
``eps * cond`` relative (``eps`` = 2.2e-16) and the multipliers that decide the zeros to
about ``eps * cond * (1 + ||C|| / lam)``, which is what :func:`kkt_violation` reports at the
optimum (1e-16 to 1e-13 for penalties that zero some terms). A zero whose multiplier lies
within that accuracy of 1 is a tie the data cannot decide.

Dependent rows: rows that are multiples of one another (a repeated term) are merged into one
row first, exactly. Other dependence (rows of ``A`` that are numerically dependent, ``cond``
inf) is handled by SVDs instead of QRs; the minimizer is still unique, but the multipliers
are not, so optimality may go uncertified (``converged=False``; see
:func:`solve_generalized_lasso`). autopoly's ``A`` has independent rows: it is the invertible
basis change to the raw monomials times the invertible whitening.
"""

from dataclasses import dataclass

import torch

from ._threads import task_threads

_EPS = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class L1Result:
    """The minimizer of ``||V - C||**2 + lam * ||A @ V||_1`` and how it was found.

    Attributes
    ----------
    V : torch.Tensor of shape (n_design, 1) or (n_design,)
        The minimizer (float64, the shape of ``C``, on ``C``'s device).
    coef : torch.Tensor of shape (n_terms,)
        ``A @ V`` with the zeros of the optimum set to exactly 0.0 (float64, same device).
    zero : torch.Tensor of shape (n_terms,)
        Boolean mask of the exact zeros of ``coef``.
    n_iter : int
        Face solves (one QR factorization each).
    converged : bool
        Whether the KKT conditions held to ``tol`` when the solver stopped.
    kkt_violation : float
        :func:`kkt_violation` of the result, dimensionless (see there).
    objective : tuple of float
        ``||V - C||**2 + lam * ||coef||_1`` at the start and after every face minimizer;
        non-increasing.
    condition : float
        Condition number of ``A`` with its rows scaled to unit norm and repeated rows merged
        (inf when its rows are numerically dependent); ``V`` is accurate to about
        ``2.2e-16 * condition`` relative.
    """

    V: torch.Tensor
    coef: torch.Tensor
    zero: torch.Tensor
    n_iter: int
    converged: bool
    kkt_violation: float
    objective: tuple
    condition: float


def _as_problem(C, A, lam):
    """Validate, and return ``(c (n,) float64 CPU, A (m, n) float64 CPU, lam float)``."""
    if not isinstance(C, torch.Tensor) or not isinstance(A, torch.Tensor):
        raise TypeError(
            f"C and A must be torch tensors; got {type(C).__name__} and {type(A).__name__}."
        )
    if C.ndim not in (1, 2) or (C.ndim == 2 and C.shape[1] != 1):
        raise ValueError(
            f"C must have shape (n_design,) or (n_design, 1) (one output); got {tuple(C.shape)}."
        )
    n = C.shape[0]
    if A.ndim != 2 or A.shape[1] != n:
        raise ValueError(
            f"A must have shape (n_terms, {n}) to match C's {n} rows; got {tuple(A.shape)}."
        )
    lam = float(lam)
    if not lam >= 0 or lam == float("inf"):
        raise ValueError(f"lam must be a finite number >= 0; got {lam}.")
    # Small dense matrices with data-dependent control flow: the CPU is the fast place, and
    # float64 is needed for the accuracy promised (float32 inputs are upcast).
    c = C.detach().to("cpu", torch.float64).reshape(-1)
    A = A.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(c).all()) or not bool(torch.isfinite(A).all()):
        raise ValueError("C and A must be finite; got NaN or infinite entries.")
    return c, A, lam


def _merge_parallel(A):
    """Rows of ``A`` that are multiples of one another, merged into one row.

    ``|k1 * a @ V| + |k2 * a @ V| = (|k1| + |k2|) * |a @ V|``: a repeated term is the same
    penalty as one row scaled by the sum of the factors, whose rows are then independent again
    (repeats are the one dependence whose multipliers are otherwise ambiguous). Returns
    ``(merged rows, group)``: ``group[i]`` is the merged row of row ``i`` (-1 for a zero row).
    Only rows equal to rounding after scaling to unit norm are merged. A merged row has the
    orientation of the first row in it (the lowest index).
    """
    norm = torch.linalg.vector_norm(A, dim=1)
    nonzero = norm > 0
    unit = A / torch.where(nonzero, norm, 1.0)[:, None]
    cosine = (unit @ unit.T).abs().triu(1)
    group = torch.full((A.shape[0],), -1, dtype=torch.long)
    if not bool((cosine > 1 - 1e-8).any()):
        group[nonzero] = torch.arange(int(nonzero.sum()))
        return A[nonzero], group
    merged = []
    for i in torch.nonzero(nonzero).reshape(-1).tolist():
        if group[i] >= 0:
            continue
        orient = torch.where(unit @ unit[i] < 0, -1.0, 1.0)
        same = (
            nonzero
            & (group < 0)
            & ((unit * orient[:, None] - unit[i]).abs().amax(dim=1) <= 16 * _EPS)
        )
        group[same] = len(merged)
        merged.append(A[i] if int(same.sum()) == 1 else norm[same].sum() * unit[i])
    return torch.stack(merged) if merged else A[:0], group


class _Rows:
    """``A`` with its rows scaled to unit norm, and the factorizations of its row subsets."""

    def __init__(self, A):
        self.A = A
        m, n = A.shape
        self.norm = torch.linalg.vector_norm(A, dim=1)
        # A zero row penalizes nothing: its coefficient is 0 whatever V is.
        self.penalized = self.norm > 0
        self.unit = A / torch.where(self.penalized, self.norm, 1.0)[:, None]
        kept = self.unit[self.penalized]
        if kept.shape[0] == 0:
            self.condition = 1.0
        elif kept.shape[0] > n:
            self.condition = float("inf")
        else:
            s = torch.linalg.svdvals(kept)
            self.condition = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
        self.cutoff = _EPS * max(m, n)
        self.full_rank = self.condition * self.cutoff < 1
        if not self.full_rank:
            self.condition = float("inf")

    def span(self, rows):
        """``(Q, solve)`` for the rows ``rows`` (a mask) of the unit-norm ``A``.

        ``Q`` is an orthonormal basis of the span of those rows (so ``I - Q @ Q.T`` projects onto
        their common null space) and ``solve(h)`` the least-squares ``x`` of
        ``unit[rows].T @ x = Q @ h``. A QR factorization when the rows are independent; with
        dependent rows an SVD, its numerically zero directions dropped (``x`` is then the
        minimum-norm solution, one of many).
        """
        B = self.unit[rows].T
        if self.full_rank:
            Q, R = torch.linalg.qr(B)
            return Q, lambda h: torch.linalg.solve_triangular(R, h[:, None], upper=True)[:, 0]
        U, s, Wh = torch.linalg.svd(B, full_matrices=False)
        keep = s > (s[0] if s.numel() else 0) * self.cutoff
        U, s, Wh = U[:, keep], s[keep], Wh[keep]
        return U, lambda h: Wh.T @ (h / s)


def _face(rows, c, lam, support, sign):
    """Minimizer of the objective on a face, and the multipliers of its zero coefficients.

    ``support`` (mask) holds the nonzero coefficients, with signs ``sign``; the other penalized
    ones are zero. Returns ``(V, zeta)``: ``zeta`` is the multiplier (the subgradient of
    ``|b_j|`` that the stationarity condition needs) of each zero coefficient, 0 elsewhere.
    """
    u = c - (lam / 2) * (rows.A[support].T @ sign[support])
    zeta = torch.zeros_like(rows.norm)
    zero = rows.penalized & ~support
    if not bool(zero.any()):
        return u, zeta
    Q, solve = rows.span(zero)
    h = Q.T @ u
    zeta[zero] = (2 / lam) * solve(h) / rows.norm[zero]
    return u - Q @ h, zeta


def _objective(c, A, lam, V, support):
    diff = V - c
    b = A[support] @ V
    return float(diff @ diff + lam * b.abs().sum())


def _step(rows, V, V_new, support, sign):
    """Move from ``V`` towards ``V_new``, stopping where a coefficient first reaches zero.

    Returns the new point and the mask of coefficients that reached zero there (they leave the
    support).
    """
    unit_s = rows.unit[support]
    now = (sign[support] * (unit_s @ V)).clamp(min=0)
    new = sign[support] * (unit_s @ V_new)
    crossing = new <= 0
    left = torch.zeros_like(support)
    if not bool(crossing.any()):
        return V_new, left
    t = torch.full_like(now, float("inf"))
    gap = now[crossing] - new[crossing]
    # A coefficient at zero whose face minimizer is zero too stops the step at once.
    t[crossing] = torch.where(gap > 0, now[crossing] / gap, 0.0)
    first = t.min()
    if first >= 1:
        return V_new, left
    left[support] = t <= first
    return V + first * (V_new - V), left


def solve_generalized_lasso(C, A, lam, *, tol=1e-12, max_iter=None, start=None):
    """The exact minimizer of ``||V - C||**2 + lam * ||A @ V||_1``.

    Parameters
    ----------
    C : torch.Tensor of shape (n_design, 1) or (n_design,)
        Centre of the quadratic (one output). Any float dtype and device; computed in float64
        on the CPU (the matrices are small and the method branches on every iteration).
    A : torch.Tensor of shape (n_terms, n_design)
        The penalized linear map. Its null space (normally the intercept) is unpenalized.
        Rows should be independent, or repeats of one another, for the optimality check to
        be exact (see Notes).
    lam : float
        Penalty weight, ``>= 0``. ``lam=0`` returns ``C``.
    tol : float, default=1e-12
        A zero coefficient whose multiplier exceeds 1 by more than ``tol`` (relative to
        ``lam``) is released; ``converged`` means no such coefficient remained.
    max_iter : int, default=None
        Most face solves; None means ``10 * n_terms + 100``.
    start : torch.Tensor of shape (n_terms,), default=None
        A warm start: the ``coef`` of a neighbouring problem's result (the previous penalty
        along a path of ``lam``, say). Its nonzero entries and their signs are the first face
        tried, kept when that face's minimizer has the same signs (a valid start of the
        active-set method) and otherwise dropped for the constant model. The optimum does
        not depend on the start; the number of faces solved does (one more when it is
        dropped).

    Returns
    -------
    L1Result
        The minimizer ``V``, ``coef = A @ V`` with exact zeros, and the solver's record.

    See Also
    --------
    kkt_violation : The optimality check the result reports.

    Notes
    -----
    The method (a primal active-set method) and the accuracy to expect are described in the
    module docstring: ``V`` to about ``2.2e-16 * condition`` relative.

    Rows that are multiples of one another (a repeated term) are merged first, which is
    exact. When the rows are dependent otherwise (``condition`` inf) the minimizer is still
    unique (the objective is strictly convex in ``V``) and the faces are still solved exactly,
    by SVDs, but the multipliers of the zero coefficients are no longer unique: the
    minimum-norm ones may exceed 1 at the optimum. A coefficient released on that false
    evidence comes back to zero without progress; the solver then blocks it, stops when
    nothing else is left, and reports ``converged=False`` with the violation it could not
    disprove (on random 6 x 4 maps the point was still the minimizer, to 1e-9).

    Examples
    --------
    >>> import torch
    >>> C = torch.tensor([[3.0], [0.5], [-2.0]], dtype=torch.float64)
    >>> A = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> result = solve_generalized_lasso(C, A, lam=2.0)
    >>> result.V.reshape(-1).tolist(), result.coef.tolist(), result.converged
    ([3.0, 0.0, -1.0], [0.0, -1.0], True)
    """
    out_device = C.device
    out_shape = C.shape
    c, A, lam = _as_problem(C, A, lam)
    if start is not None:
        if not isinstance(start, torch.Tensor) or start.reshape(-1).shape[0] != A.shape[0]:
            raise ValueError(
                f"start must be a tensor of the {A.shape[0]} terms' coefficients (a previous "
                f"result's coef); got {getattr(start, 'shape', type(start).__name__)}."
            )
        start = start.detach().to("cpu", torch.float64).reshape(-1)
    max_iter = 10 * A.shape[0] + 100 if max_iter is None else int(max_iter)
    # Matrices of n_design columns, whatever the number of rows: one thread is fastest (five
    # times faster than two for 35 terms).
    with task_threads():
        return _solve(c, A, lam, tol, max_iter, start, out_device, out_shape)


def _start_face(rows, c, lam, group, start):
    """``(support, sign, face, wasted)``: the face the active-set method starts from.

    The face of the signs of ``start`` when its minimizer keeps them (``face`` is then that
    minimizer and its multipliers, so it is not solved twice), else the constant model's
    (``face`` None; ``wasted`` is 1 when a face was solved for nothing).
    """
    m = rows.A.shape[0]
    support = torch.zeros(m, dtype=torch.bool)
    sign = torch.zeros(m, dtype=torch.float64)
    if start is None or m == 0:
        return support, sign, None, 0
    # A merged row is oriented as its first row: that row's sign is the merged row's.
    kept = torch.nonzero(group >= 0).reshape(-1)
    first = torch.full((m,), len(group), dtype=torch.long)
    first = first.scatter_reduce(0, group[kept], kept, reduce="amin")
    wanted = torch.sign(start[first])
    if not bool((wanted != 0).any()):
        return support, sign, None, 0
    trial = wanted != 0
    face = _face(rows, c, lam, trial, wanted)
    if bool((wanted[trial] * (rows.unit[trial] @ face[0]) > 0).all()):
        return trial, wanted, face, 0
    return support, sign, None, 1


def _solve(c, A, lam, tol, max_iter, start, out_device, out_shape):
    """The body of :func:`solve_generalized_lasso` on validated float64 CPU inputs."""
    merged, group = _merge_parallel(A)
    rows = _Rows(merged)
    if lam == 0:
        V, n_iter, converged, history = c.clone(), 0, True, ()
        zero = A @ V == 0
    elif merged.shape[0] == 0:
        # No term to penalize (the intercept alone, degree 0): one trivial face, V = C.
        V, n_iter, converged, history = c.clone(), 1, True, (0.0,)
        zero = torch.ones(A.shape[0], dtype=torch.bool)
    else:
        support, sign, face, wasted = _start_face(rows, c, lam, group, start)
        V, n_iter, converged, history = _active_set(
            rows, c, lam, support, sign, tol, max(max_iter - wasted, 1), face
        )
        n_iter += wasted
        zero = torch.ones(A.shape[0], dtype=torch.bool)
        zero[group >= 0] = ~support[group[group >= 0]]
    coef = A @ V
    coef[zero] = 0.0
    violation = _violation(rows, group, V, c, lam, zero) if lam > 0 else 0.0
    device = out_device if out_device.type != "mps" else torch.device("cpu")  # no float64
    return L1Result(
        V=V.reshape(out_shape).to(device),
        coef=coef.to(device),
        zero=zero.to(device),
        n_iter=n_iter,
        converged=converged,
        kkt_violation=violation,
        objective=history,
        condition=rows.condition,
    )


def _active_set(rows, c, lam, support, sign, tol, max_iter, face=None):
    """The active-set iterations; ``support`` and ``sign`` are updated in place.

    ``face`` is ``_face(rows, c, lam, support, sign)`` when the caller has it already.

    Every zero coefficient whose multiplier exceeds 1 is released at once, which needs far
    fewer faces than one at a time when many coefficients are nonzero. The objective still
    never increases (the released coefficients start at zero, where the new face's quadratic
    equals the objective), but nothing guarantees progress: when every released coefficient
    comes straight back to zero, the next round releases the single most violating one, the
    classical step that does make progress.
    """
    V, zeta = _face(rows, c, lam, support, sign) if face is None else face
    n_iter = 1
    history = [_objective(c, rows.A, lam, V, support)]
    blocked = torch.zeros_like(support)
    single = False
    while True:
        # V is the minimizer of its face: optimal unless a zero coefficient's multiplier
        # says that moving it off zero lowers the objective.
        excess = torch.where(rows.penalized & ~support, zeta.abs() - 1, -1.0)
        candidates = torch.where(blocked, -1.0, excess)
        j = int(candidates.argmax())
        if float(candidates[j]) <= tol:
            return V, n_iter, float(excess.max()) <= tol, tuple(history)
        if n_iter >= max_iter:
            return V, n_iter, False, tuple(history)
        if single:
            release = torch.zeros_like(support)
            release[j] = True
        else:
            release = candidates > tol
        support |= release
        sign[release] = torch.sign(zeta[release])
        while n_iter < max_iter:
            V_new, zeta = _face(rows, c, lam, support, sign)
            n_iter += 1
            V, left = _step(rows, V, V_new, support, sign)
            if not bool(left.any()):
                break
            support &= ~left
            sign[left] = 0.0
        history.append(_objective(c, rows.A, lam, V, support))
        if history[-1] < history[-2] * (1 - 16 * _EPS):
            blocked.zero_()
            single = False
        elif single:
            # Released on rounding-level evidence (or on a multiplier that is not unique, for
            # dependent rows) and no better for it: try the others, stop when none is left.
            blocked[j] = True
        else:
            single = True


def kkt_violation(V, C, A, lam, zero=None):
    """How far ``V`` is from satisfying the optimality conditions, dimensionless.

    The conditions for minimizing ``||V - C||**2 + lam * ||A @ V||_1`` are that some ``zeta``
    with ``zeta_j = sign(b_j)`` where ``b = A @ V`` is nonzero and ``|zeta_j| <= 1`` where it
    is zero makes ``2 * (V - C) + lam * A.T @ zeta`` vanish. The zeros' ``zeta`` is taken as
    the least-squares solution of that equation, and the result is the largest of

    - ``max(|zeta_j|) - 1`` over the zeros (a gradient beyond ``lam``, relative to ``lam``),
    - the residual of the equation relative to the norms of its two terms,
    - ``||A_Z @ V||`` (rows scaled to unit norm) relative to ``||V|| + ||C||`` (the zeros'
      rounding-level values).

    Parameters
    ----------
    V, C : torch.Tensor of shape (n_design, 1) or (n_design,)
        The point to check and the centre of the quadratic.
    A : torch.Tensor of shape (n_terms, n_design)
        The penalized map.
    lam : float
        The penalty weight, ``> 0``.
    zero : torch.Tensor of shape (n_terms,), dtype bool, default=None
        Coefficients to treat as exact zeros (a solver's rounding leaves ``A @ V`` at ~1e-17
        there); None means those with ``A @ V == 0``.

    Returns
    -------
    float
        0 at the exact optimum; rounding gives about ``2.2e-16 * condition * (1 + ||C|| /
        lam)`` (``condition`` as in :class:`L1Result`).

    Examples
    --------
    >>> import torch
    >>> C = torch.tensor([3.0, 0.5, -2.0], dtype=torch.float64)
    >>> A = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> kkt_violation(torch.tensor([3.0, 0.0, -1.0]), C, A, lam=2.0)
    0.0
    >>> round(kkt_violation(torch.tensor([3.0, 0.0, -1.1]), C, A, lam=2.0), 3)
    0.049
    """
    c, A, lam = _as_problem(C, A, lam)
    if lam <= 0:
        raise ValueError(f"kkt_violation needs lam > 0; got {lam}.")
    V = V.detach().to("cpu", torch.float64).reshape(-1)
    zero = (A @ V == 0) if zero is None else zero.detach().to("cpu").reshape(-1).bool()
    merged, group = _merge_parallel(A)
    return _violation(_Rows(merged), group, V, c, lam, zero)


def _violation(rows, group, V, c, lam, zero):
    """:func:`kkt_violation` on merged rows (``group`` maps the terms to them)."""
    A = rows.A
    # A merged row is zero when every row in it is.
    nonzero = torch.zeros(A.shape[0], dtype=torch.bool)
    nonzero[group[(group >= 0) & ~zero]] = True
    zero = ~nonzero
    b = A @ V
    support = rows.penalized & ~zero
    smooth = 2 * (V - c)
    penalty = lam * (A[support].T @ torch.sign(b[support]))
    r = smooth + penalty
    scale = float(torch.linalg.vector_norm(smooth) + torch.linalg.vector_norm(penalty))
    box = 0.0
    feasibility = 0.0
    if bool(zero.any()):
        Q, solve = rows.span(zero)
        h = Q.T @ (-r / lam)
        zeta = solve(h) / rows.norm[zero]
        box = max(float((zeta.abs() - 1).max()), 0.0)
        r = r + lam * (Q @ h)
        # Relative to the problem's scale: V itself is ~0 when the optimum is the zero model.
        size = float(torch.linalg.vector_norm(V) + torch.linalg.vector_norm(c))
        if size > 0:
            feasibility = float(torch.linalg.vector_norm(rows.unit[zero] @ V)) / size
    stationarity = float(torch.linalg.vector_norm(r)) / scale if scale > 0 else 0.0
    return max(box, stationarity, feasibility)
