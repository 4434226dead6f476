"""The statistics of a cross-validated search: one pass over the rows, every candidate from it.

A split ``(train, test)`` of the rows is described by *atoms*: groups of rows that every split
treats alike (in its training set, in its test set, or in neither). K-fold splitters have one
atom per fold; any splitter has at most as many atoms as rows. One pass over the rows
accumulates, per atom, the triangular factor ``R_a`` of ``sqrt(w) * [1, terms(z), t]`` at the
largest degree of the search, in the estimator's own scaled basis (``z`` the inputs mapped to
``[-1, 1]`` by the scaling of all rows, ``t`` the scaled targets), with the estimator's chunked
pass (:func:`autopoly._data_pass.accumulate`; on Dask collections
:func:`autopoly._dask.search_statistics`). Everything else is computed from those factors:

* a split's training factor is the QR factor of its training atoms' factors stacked;
* a lower degree's factor is the leading columns of it (the terms of degree ``<= d`` are a
  prefix of the terms of degree ``D`` in PolynomialFeatures order) with the target columns,
  re-triangularized;
* each candidate ``(degree, alpha, l1_ratio)`` is solved from its training factor by the
  estimator's own whitening (:func:`autopoly._fitting.whiten`, which folds the raw-basis ridge
  penalty in exactly), or by the exact L1 solver warm-started along the path of ``alpha``;
* the held-out weighted squared error of coefficients ``theta`` is ``|R_test @ [theta; -1]|**2``
  and the weighted total sum of squares is the residual of the targets on the constant column,
  so R^2, the MSE and the RMSE on a test fold need no rows;
* the factor of all the rows, for the refit, is the QR factor of every atom's factor stacked.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import _fitting as fitting
from ._conditioning import ChunkedQR
from ._data_pass import accumulate
from ._l1 import solve_generalized_lasso
from ._rank import min_norm_theta
from ._setup import make_setup_on
from ._state import Terms

# Scorers computed exactly from the statistics of each test fold.
EXACT_SCORINGS = ("r2", "neg_mean_squared_error", "neg_root_mean_squared_error")


# ---------------------------------------------------------------------------- the atoms


@dataclass(frozen=True)
class Atoms:
    """Rows grouped by how the splits use them.

    ``ids[i]`` is the atom of row ``i``; ``train[s]`` and ``test[s]`` list the atoms of split
    ``s``'s training and test sets.
    """

    ids: np.ndarray
    n_atoms: int
    train: tuple
    test: tuple


def atoms_of(splits, n_rows):
    """The :class:`Atoms` of a list of ``(train, test)`` index arrays over ``n_rows`` rows."""
    ids = np.zeros(n_rows, dtype=np.int64)
    shift = 0
    for train, test in splits:
        if shift >= 60:
            # Keep the codes small: renumber the distinct ones (an atom per distinct code).
            ids = np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64)
            shift = 0
            ids <<= 2
        code = np.zeros(n_rows, dtype=np.int64)
        code[train] |= 1
        code[test] |= 2
        ids |= code << shift
        shift += 2
    ids = np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_atoms = int(ids.max()) + 1 if n_rows else 0
    train = tuple(np.unique(ids[np.asarray(tr)]) for tr, _ in splits)
    test = tuple(np.unique(ids[np.asarray(te)]) for _, te in splits)
    return Atoms(ids, n_atoms, train, test)


def rows_of_atoms(atoms):
    """Row indices of each atom, as a list of int64 arrays."""
    order = np.argsort(atoms.ids, kind="stable")
    bounds = np.searchsorted(atoms.ids[order], np.arange(atoms.n_atoms + 1))
    return [order[bounds[a] : bounds[a + 1]] for a in range(atoms.n_atoms)]


@dataclass(frozen=True)
class AtomStats:
    """Per atom: the factor (``(rows, n_cols)``, float64 NumPy), weight sum and row count."""

    R: list
    weight: np.ndarray
    count: np.ndarray


def stats_terms(spec):
    """The terms of the statistics: always with the constant column, at the top degree.

    Without an intercept the constant column is still accumulated (the total sum of squares
    of a test fold needs it) and left out of every candidate's design.
    """
    return Terms(0, spec.terms.max_degree, spec.terms.interaction_only, True)


def stats_setup(spec, scaling, device):
    """The setup of the statistics pass (:func:`stats_terms` under ``scaling``)."""
    return make_setup_on(
        device, spec.dtype, stats_terms(spec), scaling, continuing=False, check=False
    )


def _empty(n_cols):
    return np.zeros((0, n_cols))


def atom_factors_of_sources(sources, setup):
    """One pass over each atom's in-memory source: their :class:`AtomStats`."""
    Rs, weight, count = [], [], []
    # ``sources`` may be a generator: one atom's rows are held at a time.
    for part in sources:
        if part.n_rows == 0:
            Rs.append(_empty(setup.n_design + part.n_outputs))
            weight.append(0.0)
            count.append(0)
            continue
        large = part.n_rows * setup.n_design > fitting.GRAM_ROUTE_ENTRIES
        qr = accumulate(part, setup, gram_first=large)
        Rs.append(qr.R.to(torch.float64).cpu().numpy())
        weight.append(part.weight_sum())
        count.append(part.n_rows)
    return AtomStats(Rs, np.array(weight, dtype=np.float64), np.array(count, dtype=np.int64))


def stack_factor(parts, n_cols):
    """The QR factor of the stacked factors ``parts`` (float64 NumPy), at most square."""
    parts = [p for p in parts if p.shape[0]]
    if not parts:
        return _empty(n_cols)
    if len(parts) == 1 and parts[0].shape[0] <= n_cols:
        return parts[0]
    qr = ChunkedQR()
    qr.update(torch.from_numpy(np.concatenate(parts)))
    return qr.R.numpy()


def combine(stats, chosen, n_cols):
    """``(R, weight sum, rows)`` of the atoms ``chosen``."""
    return (
        stack_factor([stats.R[a] for a in chosen], n_cols),
        float(stats.weight[chosen].sum()),
        int(stats.count[chosen].sum()),
    )


# ------------------------------------------------------------------- one degree's factor


@dataclass(frozen=True)
class Layout:
    """Where each candidate's columns sit among the statistics' columns."""

    n_stats_design: int  # columns [1, terms of the top degree]
    n_outputs: int
    fit_intercept: bool

    @property
    def n_cols(self):
        return self.n_stats_design + self.n_outputs

    def design_columns(self, n_design):
        """Statistics columns of a candidate's design of ``n_design`` columns."""
        first = 0 if self.fit_intercept else 1
        return np.arange(first, first + n_design)

    def target_columns(self):
        return np.arange(self.n_stats_design, self.n_cols)


def degree_factor(R, layout, n_design):
    """The factor of ``sqrt(w) * [D_d, t]`` from that of ``sqrt(w) * [1, terms_D, t]``.

    With an intercept the design's columns are a leading block of the triangular factor, so
    only the target columns below it are re-triangularized.
    """
    R = torch.from_numpy(R)
    ycols = torch.as_tensor(layout.target_columns())
    if layout.fit_intercept:
        top = torch.cat([R[:n_design, :n_design], R[:n_design][:, ycols]], 1)
        below = R[n_design:][:, ycols]
        if below.shape[0] == 0:
            return top
        tail = torch.linalg.qr(below, mode="r").R
        pad = tail.new_zeros((tail.shape[0], n_design))
        return torch.cat([top, torch.cat([pad, tail], 1)])
    cols = torch.as_tensor(np.concatenate([layout.design_columns(n_design), ycols.numpy()]))
    sub = R[:, cols]
    if sub.shape[0] == 0:
        return sub
    return torch.linalg.qr(sub, mode="r").R


# ------------------------------------------------------------------------ the candidates


@dataclass(frozen=True)
class Candidate:
    """One point of the grid, with its resolved spec and setup."""

    degree: int
    alpha: float
    l1_ratio: float
    spec: object
    setup: object

    @property
    def exact_l1(self):
        return self.alpha > 0 and self.l1_ratio > 0


def setup_for(spec, scaling, device):
    """A candidate's setup: its terms under the shared scaling (no further checks)."""
    return make_setup_on(device, spec.dtype, spec.terms, scaling, continuing=False, check=False)


def _ridge_by_rows(cand, R_aug, weight_sum):
    """A ridge candidate's scaled design coefficients, or None to take the general route.

    The whitening's computation for an L2 penalty (:class:`~autopoly._conditioning.Whitening`:
    the penalty's root appended to the column-scaled factor as rows, re-triangularized by QR,
    then a triangular solve), with the structure used: the factor and the root are both upper
    triangular (the basis change to the raw monomials is), so LAPACK's triangular-pentagonal
    QR (``dtpqrt``) re-triangularizes them in a fifth of a dense QR's work. float64 on the
    CPU only; a result whose factor is close to singular goes the general way (which adds the
    whitening's ridge where needed).
    """
    from scipy.linalg import solve_triangular
    from scipy.linalg.lapack import dtpqrt

    spec, setup = cand.spec, cand.setup
    if setup.dtype != torch.float64 or setup.device.type != "cpu":
        return None
    n, k = setup.n_design, setup.n_outputs
    R = R_aug.numpy()
    if R.shape[0] < n + k:
        R = np.vstack([R, np.zeros((n + k - R.shape[0], R.shape[1]))])
    R = R[: n + k] / np.sqrt(weight_sum)
    col = np.linalg.norm(R[:n, :n], axis=0)
    col = np.where(col > 0, col, 1.0)
    A = np.array(R, order="F")
    A[:, :n] /= col
    A[n:, :n] = 0.0
    root = fitting._terms_map(setup).numpy()
    root = np.sqrt(spec.alpha * (1 - spec.l1_ratio) / weight_sum) * root / col
    B = np.zeros((root.shape[0], n + k), order="F")
    B[:, :n] = root
    A, _, _, info = dtpqrt(root.shape[0], min(16, n + k), A, B)
    if info != 0:
        return None
    F = np.triu(A)
    diag = np.abs(np.diag(F[:n, :n]))
    if not diag.min(initial=np.inf) > 1e-10 * diag.max(initial=0.0):
        return None
    return solve_triangular(F[:n, :n], F[:n, n:]) / col[:, None]


def solve_candidate(cand, R_aug, weight_sum, n_rows, l1_start=None):
    """Design coefficients (``(n_design, n_outputs)``, units of y) of a candidate on a factor.

    The same computation as a plain fit's from its statistics: the whitening with the L2 part
    folded in, ``V = C`` (the optimum of ``||V - C||**2``), the minimum-norm solution where
    the rows leave directions undetermined, the exact L1 solver for an L1 part, warm-started
    per output at ``l1_start[k]`` (the terms' coefficients of a neighbouring penalty's
    optimum; see :func:`~autopoly._l1.solve_generalized_lasso`). Returns ``(theta, l1
    starts)``: the starts for the next penalty along the path.
    """
    spec, setup = cand.spec, cand.setup
    theta_scaled = None
    if spec.alpha > 0 and spec.l1_ratio == 0:
        theta_scaled = _ridge_by_rows(cand, R_aug, weight_sum)
    if theta_scaled is not None:
        theta = theta_scaled * setup.scaling.y_scale
        if setup.terms.fit_intercept:
            theta[0] += setup.scaling.y_offset
        return theta, []
    R_aug = R_aug.to(device=setup.device, dtype=setup.dtype)
    whitening = fitting.whiten(spec, setup, R_aug, weight_sum, n_rows=n_rows)
    starts = []
    if cand.exact_l1:
        M = whitening.M.to(torch.float64).cpu()
        A = fitting._terms_map(setup).to(torch.float64).cpu() @ M
        columns = []
        for k in range(setup.n_outputs):
            s = float(setup.scaling.y_scale[k])
            lam = spec.alpha * spec.l1_ratio / (weight_sum * s)
            c = whitening.C[:, k].to(torch.float64).cpu()
            start = None if l1_start is None else l1_start[k]
            result = solve_generalized_lasso(c, A, lam, start=start)
            starts.append(result.coef)
            columns.append(M @ result.V)
        theta_scaled = torch.stack(columns, 1).numpy()
    else:
        theta_scaled = (whitening.M @ whitening.C).to(torch.float64).cpu().numpy()
    y_offset, y_scale = setup.scaling.y_offset, setup.scaling.y_scale
    theta = theta_scaled * y_scale
    if setup.terms.fit_intercept:
        theta[0] += y_offset
    if whitening.determined is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            theta = min_norm_theta(
                theta,
                whitening.determined,
                setup.basis_change,
                setup.terms.fit_intercept,
                undetermined=whitening.undetermined,
            )
    return theta, starts


def scaled_coefficients(theta, scaling, fit_intercept):
    """Design coefficients in units of ``t`` (the statistics' target scaling)."""
    out = np.array(theta, dtype=np.float64)
    if fit_intercept:
        out[0] -= scaling.y_offset
    return out / scaling.y_scale


# ---------------------------------------------------------------------------- the scores


@dataclass(frozen=True)
class TestFold:
    """What exact scoring needs of a test set: its factor and weight sum, and its TSS."""

    R: np.ndarray
    weight: float
    tss: np.ndarray  # per output, units of t**2


def test_fold(R, weight, layout):
    """The :class:`TestFold` of a factor (the TSS is the targets' residual on the constant)."""
    tss = np.zeros(layout.n_outputs)
    for k, col in enumerate(layout.target_columns()):
        two = R[:, [0, col]]
        if two.shape[0] == 0:
            continue
        r = np.linalg.qr(two, mode="r")
        tss[k] = r[1, 1] ** 2 if r.shape[0] > 1 else 0.0
    return TestFold(R, weight, tss)


def exact_score(scoring, fold, layout, theta_scaled, y_scale):
    """A test fold's score from its statistics alone (see :data:`EXACT_SCORINGS`)."""
    if not fold.weight > 0:
        return float("nan")  # no row of the test set weighs anything
    n_design = theta_scaled.shape[0]
    v = np.zeros((layout.n_cols, layout.n_outputs))
    v[layout.design_columns(n_design)] = theta_scaled
    v[layout.target_columns(), np.arange(layout.n_outputs)] = -1.0
    r = fold.R @ v
    sse_scaled = (r * r).sum(0)
    if scoring == "r2":
        tss_scaled = fold.tss
        # sklearn.metrics.r2_score: a constant target scores 1 when fitted exactly, else 0.
        tiny = 1e-28 * np.maximum(fold.weight, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(
                tss_scaled > tiny,
                1 - sse_scaled / np.where(tss_scaled > tiny, tss_scaled, 1.0),
                0.0,
            )
        r2 = np.where((tss_scaled <= tiny) & (sse_scaled <= tiny), 1.0, r2)
        return float(np.mean(r2))
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = sse_scaled * np.asarray(y_scale, dtype=np.float64) ** 2 / fold.weight
    if scoring == "neg_mean_squared_error":
        return -float(np.mean(mse))
    return -float(np.mean(np.sqrt(mse)))


# ---------------------------------------------------------------------------- the search


@dataclass
class SplitResult:
    """One split's scores and times for every candidate (grid order), and their coefficients.

    ``coef[c]`` is candidate ``c``'s coefficient vector over the statistics' columns in units
    of ``t`` (``(n_stats_design, n_outputs)``; None when its solve failed), for scorers that
    need predictions on the test rows.
    """

    scores: np.ndarray
    fit_times: np.ndarray
    score_times: np.ndarray
    coef: list
    errors: list


def search_split(candidates, stats, train, test, layout, scoring, scaling):
    """Solve and score every candidate on one split (the training and test atoms given).

    Candidates that share a degree share the training factor; those with an L1 part are
    solved from the largest ``alpha`` down, each warm-started at the previous optimum's
    active set.
    """
    n_cand = len(candidates)
    scores = np.full(n_cand, np.nan)
    fit_times, score_times = np.zeros(n_cand), np.zeros(n_cand)
    coef, errors = [None] * n_cand, []
    start = time.perf_counter()
    R_train, w_train, n_train = combine(stats, train, layout.n_cols)
    R_test, w_test, _ = combine(stats, test, layout.n_cols)
    fold = test_fold(R_test, w_test, layout) if scoring in EXACT_SCORINGS else None
    shared = time.perf_counter() - start
    by_degree = {}
    for c, cand in enumerate(candidates):
        by_degree.setdefault(cand.degree, []).append(c)
    for members in by_degree.values():
        start = time.perf_counter()
        n_design = candidates[members[0]].setup.n_design
        R_d = degree_factor(R_train, layout, n_design) if w_train > 0 else None
        per_degree = (time.perf_counter() - start) / len(members)
        # An L1 path per l1_ratio, from the largest penalty down.
        order = sorted(members, key=lambda c: (candidates[c].l1_ratio, -candidates[c].alpha))
        l1_start = {}
        for c in order:
            cand = candidates[c]
            start = time.perf_counter()
            if R_d is None:
                errors.append((c, "the training set has no rows of positive weight"))
                fit_times[c] = shared + per_degree
                continue
            try:
                theta, starts = solve_candidate(
                    cand, R_d, w_train, n_train, l1_start.get(cand.l1_ratio)
                )
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                errors.append((c, str(exc)))
                fit_times[c] = shared + per_degree + time.perf_counter() - start
                continue
            if starts:
                l1_start[cand.l1_ratio] = starts
            theta_scaled = scaled_coefficients(theta, scaling, layout.fit_intercept)
            full = np.zeros((layout.n_stats_design, layout.n_outputs))
            full[layout.design_columns(n_design)] = theta_scaled
            coef[c] = full
            fit_times[c] = shared + per_degree + time.perf_counter() - start
            if fold is not None:
                start = time.perf_counter()
                scores[c] = exact_score(scoring, fold, layout, theta_scaled, scaling.y_scale)
                score_times[c] = time.perf_counter() - start
    return SplitResult(scores, fit_times, score_times, coef, errors)


def predictions(design, X, coef, scaling, dtype, device):
    """Predictions of every candidate on rows ``X``: ``(n_rows, n_candidates, n_outputs)``.

    One pass over the rows (chunk by chunk) for all candidates at once: the design at the top
    degree times the candidates' coefficients side by side (zeros beyond each one's terms).
    """
    from ._data_pass import chunk_slices
    from ._sources import to_tensor

    n_cand = len(coef)
    n_outputs = scaling.y_offset.shape[0]
    stacked = np.concatenate([c for c in coef], axis=1)  # (n_stats_design, n_cand * n_outputs)
    theta = torch.as_tensor(stacked, dtype=torch.float64, device=device)
    out = np.empty((X.shape[0], n_cand * n_outputs))
    with torch.no_grad():
        for rows in chunk_slices(X.shape[0], theta.shape[0] + theta.shape[1], 8):
            block = design(to_tensor(X[rows], torch.float64, device)) @ theta
            out[rows] = block.cpu().numpy()
    out = out.reshape(X.shape[0], n_cand, n_outputs)
    return scaling.y_offset + scaling.y_scale * out
