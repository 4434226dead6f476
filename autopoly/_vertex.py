"""The exact optimum of the absolute error and the pinball loss: a vertex, certified.

Both losses are piecewise linear, so their minimum is a linear program whose optimum sits at a
vertex: ``n_design`` rows fitted exactly (zero residual). First-order and quasi-Newton steps on
the kinked objective stall near it, so after the user's optimizer:

1. **a vertex**: the rows with the smallest residuals at the optimizer's point that are
   linearly independent (a greedy pass in order of ``|r|``) are fitted exactly by a linear solve;
2. **the certificate**: a vertex is optimal exactly when the subgradient condition holds: with
   ``psi(r) = q`` above and ``q - 1`` below the fit, the multipliers ``a`` of the vertex rows
   solving ``B_S^T (w_S * a) = -sum_{i not in S} w_i psi(r_i) b_i`` lie in ``[q - 1, q]``;
3. **simplex pivots** while it does not: the row whose multiplier is furthest out leaves the
   vertex, the solution moves along the edge that opens its residual, as far as the objective
   keeps decreasing (an exact line search over the residuals' zero crossings), and the row
   where it stops enters. Each pivot decreases the objective; from the optimizer's point a few
   suffice.
4. should the pivots not certify a vertex (degenerate data, rounding), **smoothing with
   continuation** moves closer first (the kink of ``|r|`` rounded to a quadratic of width
   ``mu`` shrinking from ``1e-2`` to ``1e-10``, each width minimized by L-BFGS) and steps 1 to
   3 run again. A point still not certified is reported as not converged; the best point found
   is kept.

Everything runs in torch on the fit device, in the whitened parametrization (``B = D @ M``,
so the vertex solves are well conditioned), with the targets scaled as the objective scales
them.
"""

from dataclasses import dataclass

import torch

# Continuation: the smoothing width (units of the scaled target), from start to end.
MU_START, MU_END = 1e-2, 1e-10
# L-BFGS iterations per smoothing width.
STAGE_ITERATIONS = 50


@dataclass(frozen=True)
class VertexResult:
    """The refined parameters and whether the subgradient certificate holds."""

    V: torch.Tensor
    certified: bool
    violation: float  # how far the worst multiplier lies outside [q - 1, q] (0 when certified)
    objective: float  # mean weighted pinball loss at V, in units of the scaled target


def _pinball(r, q):
    return torch.maximum(q * r, (q - 1) * r)


def _smooth_pinball(r, q, mu):
    """``(huber_mu(r) + (2q - 1) r) / 2``: the pinball loss with its kink rounded over ``mu``."""
    a = r.abs()
    huber = torch.where(a <= mu, r * r / (2 * mu), a - mu / 2)
    return (huber + (2 * q - 1) * r) / 2


def _continuation(B, t, w, q, V):
    V = V.detach().clone()
    mu = MU_START
    while mu >= MU_END:
        V.requires_grad_(True)
        # A fresh L-BFGS per width: curvature pairs of a wider kink would mislead it.
        optimizer = torch.optim.LBFGS(
            [V],
            lr=1,
            max_iter=STAGE_ITERATIONS,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
            history_size=20,
        )

        # L-BFGS calls the closure within this iteration: the current V and optimizer.
        def closure(mu=mu):
            optimizer.zero_grad()  # noqa: B023
            value = w @ _smooth_pinball(t - B @ V, q, mu)  # noqa: B023
            value.backward()
            return value

        optimizer.step(closure)
        V = V.detach()
        mu /= 10
    return V


def _independent_rows(B, order, tol):
    """The first rows in ``order`` that are linearly independent, ``B.shape[1]`` of them."""
    p = B.shape[1]
    basis = B.new_zeros((0, p))
    chosen = []
    for i in order.tolist():
        row = B[i]
        rest = row - (basis.T @ (basis @ row)) if basis.shape[0] else row
        norm = torch.linalg.vector_norm(rest)
        if norm > tol * max(1.0, float(torch.linalg.vector_norm(row))):
            basis = torch.cat([basis, (rest / norm)[None]])
            chosen.append(i)
            if len(chosen) == p:
                break
    return chosen


def refine(B, t, w, q, V, tol=1e-9, max_pivots=None):
    """The certified optimum of ``sum_i w_i * pinball_q(t_i - B_i @ V)`` near ``V``.

    Parameters
    ----------
    B : torch.Tensor of shape (n, p)
        The whitened design of the rows.
    t : torch.Tensor of shape (n,)
        Scaled targets.
    w : torch.Tensor of shape (n,)
        Non-negative weights (any normalization).
    q : float or torch.Tensor of shape (n,)
        The quantile (0.5 for the absolute error), or one per row (an L1 penalty's pseudo-rows
        use 0.5: twice their pinball loss is the absolute value).
    V : torch.Tensor of shape (p,)
        Where the optimizer stopped.
    tol : float, default=1e-9
        Relative slack of the certificate and of the rank test of the vertex rows.
    max_pivots : int, default=None
        Most simplex pivots per attempt (``20 * p + 100`` when None).

    Returns
    -------
    result : VertexResult
    """
    w = w / w.sum()
    q = torch.as_tensor(q, dtype=B.dtype, device=B.device).expand(B.shape[0])
    max_pivots = 20 * B.shape[1] + 100 if max_pivots is None else max_pivots
    best, best_value = V, float(w @ _pinball(t - B @ V, q))
    # The optimizer's point names a nearby vertex; the pivots walk from it to the optimum.
    for attempt in range(2):
        start = V if attempt == 0 else _continuation(B, t, w, q, V)
        vertex = _walk(B, t, w, q, start, tol, max_pivots)
        if vertex is not None and vertex.certified:
            return vertex
        for candidate in (start, None if vertex is None else vertex.V):
            if candidate is not None:
                value = float(w @ _pinball(t - B @ candidate, q))
                if value < best_value:
                    best, best_value = candidate, value
    return VertexResult(best, False, float("nan"), best_value)


def _walk(B, t, w, q, start, tol, max_pivots):
    """A vertex near ``start`` (rows of smallest residual), then simplex pivots to the optimum."""
    r = t - B @ start
    # Rows that weigh nothing cannot pin the fit; rank the others by |residual|.
    key = torch.where(w > 0, r.abs(), torch.full_like(r, float("inf")))
    rows = _independent_rows(B, torch.argsort(key), tol)
    if len(rows) < B.shape[1]:
        return None
    S = torch.as_tensor(rows, device=B.device)
    V = torch.linalg.solve(B[S], t[S])
    for _ in range(max_pivots + 1):
        r = t - B @ V
        a, scale = _multipliers(B, w, q, r, S, tol)
        excess = torch.clamp(torch.maximum(a - q[S], (q[S] - 1) - a), min=0.0)
        worst = float(excess.max())
        if worst <= scale:
            return VertexResult(V, True, 0.0, float(w @ _pinball(r, q)))
        step = _pivot(B, w, q, r, S, a, int(torch.argmax(excess)))
        if step is None:
            break
        V, S = V + step[0], step[1]
    return VertexResult(V, False, worst, float(w @ _pinball(t - B @ V, q)))


def _multipliers(B, w, q, r, S, tol):
    """Multipliers of the vertex rows ``S`` in the subgradient condition, and their slack."""
    outside = torch.ones_like(r, dtype=torch.bool)
    outside[S] = False
    psi = torch.where(r > 0, q, q - 1)
    g = B[outside].T @ (w[outside] * psi[outside])
    u = torch.linalg.solve(B[S].T, -g)
    # Zero-weight vertex rows: any multiplier is fine.
    safe = torch.where(w[S] > 0, w[S], torch.ones_like(w[S]))
    a = torch.where(w[S] > 0, u / safe, q[S])
    return a, tol * max(1.0, float(g.abs().max()) / float(safe.min()))


def _pivot(B, w, q, r, S, a, k):
    """One simplex step: row ``S[k]`` leaves the vertex, the row that stops the descent enters.

    Moving along ``d`` with ``B_S d = sigma * e_k`` keeps the other vertex rows fitted and opens
    row ``S[k]``'s residual; ``sigma`` is the sign that descends (``a_k > q``: its residual goes
    positive). The objective along the edge is convex and piecewise linear: its slope starts
    negative and grows by ``w_i * |B_i d|`` at each row whose residual crosses zero; the step
    ends at the crossing where the slope turns non-negative, and that row enters.
    Returns ``(step, new S)`` or None when no row stops the descent (it cannot happen for a
    bounded problem; rounding only).
    """
    q_k = float(q[S[k]])
    sigma = -1.0 if float(a[k]) > q_k else 1.0
    e = torch.zeros(S.shape[0], dtype=B.dtype, device=B.device)
    e[k] = sigma
    d = torch.linalg.solve(B[S], e)
    Bd = B @ d
    slope = float(w[S[k]]) * ((q_k - float(a[k])) if sigma < 0 else (float(a[k]) + 1 - q_k))
    outside = torch.ones_like(r, dtype=torch.bool)
    outside[S] = False
    # Crossings: r_i(s) = r_i - s * Bd_i reaches 0 at s_i = r_i / Bd_i > 0.
    moving = outside & (Bd.abs() > 0)
    s_cross = torch.where(
        moving, r / torch.where(moving, Bd, torch.ones_like(Bd)), torch.full_like(r, -1.0)
    )
    candidates = torch.nonzero(s_cross > 0).reshape(-1)
    if candidates.numel() == 0:
        return None
    order = candidates[torch.argsort(s_cross[candidates])]
    jumps = torch.cumsum(w[order] * Bd[order].abs(), 0)
    turned = torch.nonzero(slope + jumps >= 0).reshape(-1)
    if turned.numel() == 0:
        return None
    enter = order[int(turned[0])]
    S_new = S.clone()
    S_new[k] = enter
    return float(s_cross[enter]) * d, S_new
