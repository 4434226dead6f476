"""One fit: a :class:`~autopoly._spec.FitSpec` and a source in, a :class:`FitOutcome` out.

The data flow is one-way. :func:`fit` (and :func:`partial_fit`, one call of a stream) read the
scaling and the triangular factor of the weighted design from the source, :func:`solve`
whitens it, builds the objective (from the statistics alone for the squared error, from the
rows otherwise) and runs the optimizer loop, and the outcome carries the fitted polynomial,
the raw coefficients, the loop's record and the state a later warm start or ``partial_fit``
continues from. Nothing here reads or changes the estimator.
"""

import math
import warnings
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._conditioning import ChunkedQR, Whitening, host64
from ._data_pass import DesignMap, chunk_slices
from ._device import prediction_device
from ._l1 import solve_generalized_lasso
from ._losses import huber_scale
from ._objective import RowObjective, StatsObjective, _Penalty
from ._optim import (
    WhitenedLBFGSStep,
    closed_form_lbfgs,
    is_lbfgs,
    make_optimizer,
    state_to_numpy,
    state_to_torch,
)
from ._rank import min_norm_theta, warn_rank_deficiency
from ._refine import MIN_CANCELLATION, cancellation, worth_refining
from ._refine import refine as refine_raw
from ._setup import make_setup, raw_basis_overflow, terms_overflow
from ._sources import to_tensor, validation_scorer
from ._state import FittedPolynomial, StreamState
from ._train import LoopSettings, TrainResult, train
from ._vertex import refine

# Problems with more design entries than this take the faster Gram route for their
# statistics (when it is accurate); smaller ones keep every digit of the QR route. The thread
# policy uses its own threshold, in the estimator.
GRAM_ROUTE_ENTRIES = 2**21


@dataclass(frozen=True)
class FitOutcome:
    """What a fit produced, for the estimator to publish."""

    fitted: FittedPolynomial
    raw: np.ndarray  # (n_design, n_outputs) coefficients of [1, raw monomials], float64
    powers: np.ndarray
    train: TrainResult
    stream: StreamState
    validated: bool  # early stopping scored held-out rows
    optimizer_name: str
    scale: Optional[np.ndarray] = None  # the scale-free Huber's scale per output, units of y
    full_rank: bool = True  # the rows determined every coefficient


# ------------------------------------------------------------------------ entry points


def fit(spec, source, warm=None):
    """Fit on all rows of ``source``; ``warm`` (a previous ``(StreamState, theta)``) continues.

    A warm start keeps the previous input scaling and starts from the previous coefficients.
    """
    stream, previous_theta = warm if warm is not None else (None, None)
    scaling = stream.scaling if stream is not None else source.scaling(spec)
    setup = make_setup(
        spec,
        source.n_features,
        source.n_outputs,
        scaling,
        source.device,
        continuing=stream is not None,
    )
    # Only mini-batches and the validation split draw random numbers.
    draws = spec.early_stopping or spec.batch_size is not None
    generator = spec.generator() if draws else None
    validation = None
    if spec.early_stopping:
        source, held_out = source.split(spec.validation_fraction, generator)
        training = source

        def validation(whitening):
            return validation_scorer(held_out, training, setup, whitening)

    large = source.n_rows * setup.n_design > GRAM_ROUTE_ENTRIES
    R, weight_sum = source.factor(setup, gram_first=large)
    rows = None if spec.stats_mode(source.n_rows) else source
    outcome = solve(
        spec,
        setup,
        R,
        weight_sum,
        source.y_ndim,
        rows=rows,
        validation=validation,
        previous_theta=previous_theta,
        generator=generator,
        n_rows=source.n_rows,
    )
    if not worth_refining(spec, source, setup, outcome.full_rank):
        return outcome
    if cancellation(setup.basis_change, outcome.fitted.theta, outcome.raw) < MIN_CANCELLATION:
        return outcome
    qr = ChunkedQR()
    qr.R = R
    R_design = qr.square(setup.n_design + setup.n_outputs)[: setup.n_design, : setup.n_design]
    raw, theta = refine_raw(source, setup, R_design, outcome.raw, outcome.fitted.theta)
    return replace(outcome, raw=raw, fitted=replace(outcome.fitted, theta=theta))


def partial_fit(spec, source, stream=None, previous_theta=None):
    """One call of a ``partial_fit`` stream (``stream`` is None on the first call).

    For the squared error on full batches the rows are added to the exact statistics of the
    stream and the optimizer runs to convergence; otherwise one epoch of steps runs on this
    batch's rows, resuming the optimizer's state. Either way every row is added to the
    stream's triangular factor, and the whitening comes from all the rows seen so far: a
    stream that starts with a batch too small to determine the terms (one row, say) is
    re-whitened as rows arrive, instead of optimizing forever in the ill-conditioned
    parametrization of its first batch. While the whitening still moves (more than 25% in
    the parameters' coordinates), the optimizer's state restarts with it; once the rows
    determine it, the state carries over from call to call. The input and target scalings
    stay those of the first batch (they only centre and scale; the whitening does the rest).
    """
    first = stream is None
    scaling = source.scaling(spec) if first else stream.scaling
    setup = make_setup(
        spec, source.n_features, source.n_outputs, scaling, source.device, continuing=not first
    )
    stats = spec.stats_mode()
    complete = first or stream.complete
    if stats and not complete:
        raise ValueError(
            "partial_fit with the squared error on full batches updates exact statistics of "
            "every row seen, but earlier calls in this stream took optimizer epochs (another "
            "loss, or batch_size) without recording their rows. Keep the stream's loss and "
            "batch_size, or start a new stream on a fresh estimator (sklearn.base.clone)."
        )
    qr = ChunkedQR()
    weight_sum = 0.0
    if not first:
        qr.R = torch.as_tensor(stream.R, dtype=setup.dtype, device=setup.device)
        weight_sum = stream.weight_sum
    if first and not stats and source.n_rows <= setup.n_design:
        warnings.warn(
            f"The first partial_fit batch has {source.n_rows} row(s) for {setup.n_design} "
            "coefficients: the input and target scalings of the whole stream are taken from "
            "it, so they may be far from the data's (the whitening is refined as rows "
            "arrive). Start the stream with a batch of at least "
            f"{setup.n_design + 1} representative rows.",
            UserWarning,
            stacklevel=4,
        )
    if not first and not stats:
        # The scaling is the first batch's: refuse rows whose terms overflow under it.
        source.check_terms_range(spec, setup)
    R_before, weight_before = qr.R, weight_sum
    R, added = source.factor(setup, qr)
    R = _positive_diagonal(R)
    weight_sum += added
    if stats:
        return solve(
            spec,
            setup,
            R,
            weight_sum,
            source.y_ndim,
            previous_theta=previous_theta,
            n_rows=source.n_rows,
        )
    state = None
    if (
        not first
        and stream.optimizer_state is not None
        and not _whitening_moved(spec, setup, R_before, weight_before, R, weight_sum)
    ):
        state = stream.optimizer_state
    return solve(
        spec,
        setup,
        R,
        weight_sum,
        source.y_ndim,
        rows=source,
        previous_theta=previous_theta,
        generator=spec.generator(),
        n_rows=source.n_rows,
        epoch=True,
        # The factor holds every row now, but a stream that took optimizer epochs is still
        # not offered to the exact squared-error path or to inference (kept as before).
        optimizer_state=state,
        complete=first,
    )


def _positive_diagonal(R):
    """The triangular factor with each row's sign chosen so its diagonal is non-negative.

    A QR factor is unique only up to the signs of its rows; updating it with new rows may
    flip some. The whitening's coordinates follow those signs, so a stream keeps them
    canonical for its optimizer state to mean the same thing from call to call.
    """
    n = min(R.shape)
    sign = torch.sign(torch.diagonal(R[:n, :n]))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return torch.cat([R[:n] * sign[:, None], R[n:]])


def _whitening_moved(spec, setup, R_before, weight_before, R_after, weight_after, tol=0.25):
    """Whether the whitening of the rows seen changed by more than ``tol`` with this batch.

    Measured in the parameters' coordinates: ``V_after = T @ V_before`` for the same
    coefficients, and the change is ``||T - I||`` (spectral norm).
    """
    before = whiten(spec, setup, R_before, weight_before, stream_epoch=True)
    after = whiten(spec, setup, R_after, weight_after, stream_epoch=True)
    if before.M.shape != after.M.shape:
        return True
    T = after.to_params(before.M)
    eye = torch.eye(T.shape[0], dtype=T.dtype, device=T.device)
    change = float(torch.linalg.matrix_norm(T - eye, ord=2))
    return not change <= tol


# ------------------------------------------------------------------------ the solve


def whiten(spec, setup, R_aug, weight_sum, *, n_rows=None, stream_epoch=False):
    """The whitening of the design from its triangular factor (L2 penalty folded in).

    Without a penalty, the directions the rows do not determine are left out of the
    parametrization (see :class:`~autopoly._conditioning.Whitening`), except in a row-wise
    stream (``stream_epoch``), whose whitening comes from its first batch only.
    """
    qr = ChunkedQR()
    qr.R = R_aug
    n_design = setup.n_design
    R = qr.square(n_design + setup.n_outputs) / math.sqrt(weight_sum)
    if not spec.conditioning:
        return Whitening.identity(R, n_design)
    penalty_root = None
    if spec.alpha > 0 and spec.l1_ratio < 1:
        # The L2 penalty as extra least-squares rows in the design coefficients (targets in
        # units of t): its Hessian is penalty_root.T @ penalty_root.
        penalty_root = math.sqrt(spec.alpha * (1 - spec.l1_ratio) / weight_sum) * _terms_map(setup)
    # A stream re-whitens from all its rows at every call, so its epochs too keep only the
    # directions the rows seen so far determine: a step never moves what no row has fixed.
    truncate = spec.alpha == 0
    return Whitening(R, n_design, penalty_root, truncate=truncate, n_rows=n_rows)


def _terms_map(setup):
    """Design coefficients -> raw coefficients of the terms (intercept row dropped)."""
    return torch.as_tensor(
        setup.basis_change[int(setup.terms.fit_intercept) :],
        dtype=setup.dtype,
        device=setup.device,
    )


def penalty_weight(spec, setup, whitening, objective):
    """How much heavier the L2 penalty weighs against ``objective``'s loss than whitened.

    The whitening folds the L2 penalty in at the weight it has against the squared error of
    the scaled targets. Another loss near its constant model is like a squared error of weight
    ``J0 / y_scale**2`` (``J0``: its value there, in the units of ``y``): an absolute error is
    linear in the units of ``y`` where the penalty is quadratic, so on ``y * 1e6`` the penalty
    is a million times stiffer against it than the whitening assumed, and a first-order
    optimizer diverges at a learning rate that fits ``y``. Returns ``y_scale**2 / J0`` (the
    largest over the outputs that share the parameters), rounded to a power of two so that a
    stream's batches agree, or 1 where the whitening is already right.
    """
    if (
        not spec.conditioning
        or spec.alpha == 0
        or spec.l1_ratio == 1
        or spec.loss_name == "squared_error"
        or whitening.rank == 0
    ):
        return 1
    j0 = objective.J0.detach().to(torch.float64).cpu()
    y_var = (setup.y_scale.detach().to(torch.float64).cpu() ** 2).reshape(-1)
    if j0.numel() != y_var.numel():  # a callable loss: one value for every output
        y_var = y_var.mean().reshape(1)
    ratio = float((y_var / j0).max())
    if not math.isfinite(ratio) or ratio <= 0:
        return 1
    factor = 2.0 ** round(math.log2(ratio))
    # Within a factor of 2 the whitened problem is conditioned well enough as it is.
    return factor if not 0.5 <= factor <= 2 else 1


def penalty(spec, setup, whitening, weight_sum, l2=True):
    """The penalty on the optimizer's parameters, in the raw basis of the terms."""
    coef_map = _terms_map(setup) @ whitening.M if spec.alpha > 0 else None
    return _Penalty(spec.alpha, spec.l1_ratio, coef_map, setup.y_scale, weight_sum, l2=l2)


def _intercept_row(y_offset, fit_intercept, n_rows):
    shift = np.zeros((n_rows, len(y_offset)))
    if fit_intercept:
        shift[0] = y_offset
    return shift


def initial_params(setup, whitening, previous_theta=None):
    """Zeros, or the parameters of ``previous_theta`` (a warm start) when its shape fits."""
    n_outputs = setup.n_outputs
    if previous_theta is not None and previous_theta.shape[1] == n_outputs:
        shift = _intercept_row(
            setup.scaling.y_offset, setup.terms.fit_intercept, previous_theta.shape[0]
        )
        theta_scaled = (previous_theta - shift) / setup.scaling.y_scale
        V = whitening.to_params(
            torch.as_tensor(theta_scaled, dtype=setup.dtype, device=setup.device)
        )
    else:
        V = torch.zeros((whitening.rank, n_outputs), dtype=setup.dtype, device=setup.device)
    return V.requires_grad_(True)


def saved_optimizer(optimizer):
    """The optimizer's state for the next call of a stream, with the optimizer's class name."""
    return {**state_to_numpy(optimizer.state_dict()), "optimizer": type(optimizer).__name__}


def resume_optimizer(optimizer, saved, device):
    """Continue a stream's optimizer: its state (moments, step counts) and the user's settings.

    The current ``lr`` and ``optimizer_kwargs`` apply (a ``set_params`` between calls takes
    effect); another optimizer class starts from a fresh state, with a warning, since the
    state of one optimizer means nothing to another.
    """
    saved = dict(saved)
    name = saved.pop("optimizer", None)
    settings = [
        {k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups
    ]
    old_keys = set(saved["param_groups"][0]) - {"params"}
    same = name == type(optimizer).__name__ if name is not None else old_keys == set(settings[0])
    if not same:
        warnings.warn(
            f"optimizer changed within a partial_fit stream (from {name or 'another optimizer'}"
            f" to {type(optimizer).__name__}): the new optimizer starts from a fresh state "
            "(its moments and step counts are not the old one's); the coefficients continue.",
            UserWarning,
            stacklevel=6,
        )
        return
    optimizer.load_state_dict(state_to_torch(saved, device))
    for group, current in zip(optimizer.param_groups, settings):
        group.update(current)


def _warn_lbfgs_minibatches(spec, batch_size):
    if batch_size is not None and is_lbfgs(spec.optimizer_class):
        warnings.warn(
            f"optimizer='lbfgs' is a full-batch method: on mini-batches (batch_size="
            f"{batch_size}) its line search sees another objective at every step and stops "
            "short of the optimum. Use batch_size=None, or a first-order optimizer such as "
            "'adam' for mini-batches.",
            UserWarning,
            stacklevel=6,
        )


def solve(
    spec,
    setup,
    R_aug,
    weight_sum,
    y_ndim,
    *,
    rows=None,
    validation=None,
    previous_theta=None,
    generator=None,
    n_rows=None,
    epoch=False,
    optimizer_state=None,
    complete=True,
):
    """Whiten, build the objective, run the optimizer loop and assemble the outcome.

    ``R_aug`` is the triangular factor of ``sqrt(w) * [D, t]`` over all rows. Without ``rows``
    the squared error is minimized from it directly; ``rows`` (a source) supplies a row-wise
    objective for other losses and mini-batches. ``epoch`` runs one epoch of a stream (one
    iteration, the step kept whatever its loss, no convergence judgement).

    The outputs of a multi-output fit are independent problems: each gets its own optimizer and
    stopping rule (:func:`_independent_outputs`), so that it stops where its own fit would.
    """
    R_host = host64(R_aug) if R_aug.dtype == torch.float64 else R_aug.detach().cpu().numpy()
    if not np.isfinite(R_host).all():
        raise terms_overflow(spec, setup)
    whitening = whiten(spec, setup, R_aug, weight_sum, n_rows=n_rows, stream_epoch=epoch)
    if whitening.determined is not None and not epoch:
        # (A stream's epoch does not warn: later rows may determine the rest.)
        # solve <- fit or partial_fit <- the estimator's method <- sklearn's _fit_context.
        warn_rank_deficiency(setup, whitening, stacklevel=5)
    scorer = validation(whitening) if validation is not None else None
    loop = dict(generator=generator, n_rows=n_rows, epoch=epoch)
    if _independent_outputs(spec, setup, rows, scorer, epoch):
        parts = [
            _optimize(
                spec,
                setup.output(k),
                whitening.output(k),
                weight_sum,
                None if rows is None else rows.output(k),
                None if previous_theta is None else previous_theta[:, k : k + 1],
                None,
                None,
                **{**loop, "generator": spec.generator()},
            )
            for k in range(setup.n_outputs)
        ]
        result = merge_results([p.train for p in parts])
        theta_scaled = np.hstack([p.theta_scaled for p in parts])
        method, state = parts[0].method, None
        zeros = [p.zero for p in parts]
        scales = [p.scale for p in parts]
    else:
        solved = _optimize(
            spec,
            setup,
            whitening,
            weight_sum,
            rows,
            previous_theta,
            optimizer_state,
            scorer,
            **loop,
        )
        result, theta_scaled, method, zeros = (
            solved.train,
            solved.theta_scaled,
            solved.method,
            [solved.zero],
        )
        scales = [solved.scale]
        # Only a row-wise partial_fit resumes the optimizer; the quadratic restarts it.
        state = None if rows is None else saved_optimizer(solved.optimizer)
    theta = theta_scaled * setup.scaling.y_scale + _intercept_row(
        setup.scaling.y_offset, setup.terms.fit_intercept, theta_scaled.shape[0]
    )
    if whitening.determined is not None:
        # Every solution fits the rows equally well: report the one of least raw norm, and
        # keep theta (which predict uses) the same polynomial as the raw coefficients.
        with np.errstate(over="ignore", invalid="ignore"):
            theta = min_norm_theta(
                theta,
                whitening.determined,
                setup.basis_change,
                setup.terms.fit_intercept,
                undetermined=whitening.undetermined,
            )
    with np.errstate(over="ignore", invalid="ignore"):
        raw = setup.basis_change @ theta
    if not np.isfinite(raw).all():
        raise raw_basis_overflow(setup.scaling, setup.terms.max_degree)
    first_term = int(setup.terms.fit_intercept)
    for k, zero in enumerate(zeros):
        if zero is not None:
            # The L1 optimum's exact zeros (the basis change leaves rounding-level values).
            raw[first_term:, k][zero] = 0.0
    stream = StreamState(
        R=R_host,
        weight_sum=weight_sum,
        scaling=setup.scaling,
        optimizer_state=state,
        complete=complete,
        conditioned=spec.conditioning,
    )
    fitted = FittedPolynomial(
        terms=setup.terms,
        theta=theta,
        x_offset=setup.scaling.x_offset,
        x_scale=setup.scaling.x_scale,
        single_output=y_ndim == 1,
        device=str(setup.device),
    )
    return FitOutcome(
        fitted=fitted,
        raw=raw,
        powers=setup.powers,
        train=result,
        stream=stream,
        validated=scorer is not None,
        optimizer_name=method,
        scale=None if scales[0] is None else np.array(scales, dtype=float),
        full_rank=whitening.determined is None,
    )


def _independent_outputs(spec, setup, rows, scorer, epoch):
    """Whether to fit the outputs one by one: several outputs of a built-in loss.

    Not for a callable loss (one number for all outputs), early stopping (one validation
    score for all), one epoch of a stream (no convergence judged) or rows on a cluster (each
    evaluation is a round trip for all outputs at once).
    """
    return (
        setup.n_outputs > 1
        and spec.loss_name != "callable"
        and scorer is None
        and not epoch
        and (rows is None or hasattr(rows, "output"))
    )


def merge_results(parts):
    """One :class:`TrainResult` for outputs fitted one by one (curves: mean over outputs)."""
    longest = max(len(p.loss_curve) for p in parts)
    # An output that stopped early keeps its last value for the rest of the curve.
    curves = np.array(
        [p.loss_curve + p.loss_curve[-1:] * (longest - len(p.loss_curve)) for p in parts]
    )
    stalled = [p.stalled_gradient for p in parts if p.stalled_gradient is not None]
    return TrainResult(
        V=None,
        n_iter=max(p.n_iter for p in parts),
        converged=all(p.converged for p in parts),
        loss_curve=[float(v) for v in curves.mean(0)],
        best_loss=float(np.mean([p.best_loss for p in parts])),
        stalled_gradient=max(stalled) if stalled else None,
    )


@dataclass(frozen=True)
class _Solved:
    """One optimizer loop's result (or the exact L1 solver's)."""

    train: TrainResult
    theta_scaled: (
        np.ndarray
    )  # design coefficients in scaled units (y / y_scale), float64 (n_design, n_outputs)
    method: str  # the optimizer's class name, or the exact solver's name
    optimizer: Optional[torch.optim.Optimizer] = None
    zero: Optional[np.ndarray] = None  # exact zeros of the terms' raw coefficients (L1)
    scale: Optional[float] = None  # the scale-free Huber's scale (one output), units of y


# What the outcome names as the method of an L1 fit solved exactly.
L1_SOLVER = "active-set L1 solver"


def exact_l1(spec, rows, scorer, epoch):
    """Whether the L1 penalty of this solve is handled by the exact active-set solver.

    That is the squared error from the statistics (full batches), with an L1 part, one output
    at a time, unless early stopping watches the optimizer's iterations.
    """
    return (
        rows is None
        and spec.alpha > 0
        and spec.l1_ratio > 0
        and scorer is None
        and not epoch
        and spec.conditioning
    )


def _optimize(
    spec,
    setup,
    whitening,
    weight_sum,
    rows,
    previous_theta,
    optimizer_state,
    scorer,
    *,
    generator,
    n_rows,
    epoch,
):
    """One optimizer loop (or the exact L1 solve) for the whitening's outputs: a `_Solved`."""
    if exact_l1(spec, rows, scorer, epoch) and setup.n_outputs == 1:
        return _solve_l1(spec, setup, whitening, weight_sum)
    closed_form = (
        rows is None
        and scorer is None
        and spec.max_iter >= 2
        and not (spec.alpha > 0 and spec.l1_ratio > 0)
        and closed_form_lbfgs(spec.optimizer_class, spec.optimizer_kwargs)
    )
    if closed_form and spec.tol > 0 and not spec.verbose:
        # (No gradient is taken on this route: plain values.)
        V = initial_params(setup, whitening, previous_theta).detach()
        result = _closed_form_train(V, whitening, setup.scaling.y_scale, spec.tol)
        if result is not None:
            theta_scaled = host64(whitening.M) @ host64(result.V)
            return _Solved(result, theta_scaled, "LBFGS")
    if rows is None:
        # The whitened quadratic already holds the L2 part of the penalty.
        objective = StatsObjective(
            whitening, setup.y_scale, penalty(spec, setup, whitening, weight_sum, l2=False)
        )
    else:
        objective = rows.objective(
            spec, setup, whitening, penalty(spec, setup, whitening, weight_sum)
        )
        factor = penalty_weight(spec, setup, whitening, objective)
        if factor != 1:
            whitening = whitening.with_penalty_weight(factor)
            objective = rows.objective(
                spec, setup, whitening, penalty(spec, setup, whitening, weight_sum)
            )
    batch_size = None if rows is None else spec.batch_rows(n_rows)
    _warn_lbfgs_minibatches(spec, batch_size)
    zero = None
    V = initial_params(setup, whitening, previous_theta)
    if closed_form:
        # The quadratic's minimizer is C, where L-BFGS's second iteration lands: step there.
        optimizer = WhitenedLBFGSStep([V], objective.C)
        method = "LBFGS"
    else:
        optimizer = make_optimizer(spec.optimizer_class, [V], spec.lr, spec.optimizer_kwargs)
        method = type(optimizer).__name__
    if optimizer_state is not None:
        resume_optimizer(optimizer, optimizer_state, setup.device)
    settings = LoopSettings(
        max_iter=1 if epoch else spec.max_iter,
        tol=spec.tol,
        n_iter_no_change=spec.n_iter_no_change,
        lr=spec.lr,
        batch_size=batch_size,
        n_rows=n_rows,
        keep_best=not epoch,
        smooth=spec.smooth,
        verbose=spec.verbose,
    )
    result = train(V, objective, optimizer, settings, generator=generator, validation=scorer)
    if (
        spec.piecewise_linear
        and (spec.alpha == 0 or spec.l1_ratio == 1)
        and not epoch
        and scorer is None
        and isinstance(objective, RowObjective)
        and objective.chunks is None
        and setup.n_outputs == 1
    ):
        zero = _to_vertex(spec, objective, result, _l1_rows(spec, setup, whitening, weight_sum))
    if (
        spec.loss_name == "huber"
        and spec.l1_ratio == 0
        and not epoch
        and scorer is None
        and isinstance(objective, RowObjective)
        and objective.chunks is None
        and setup.n_outputs == 1
    ):
        _polish_huber(spec, setup, whitening, weight_sum, objective, result)
    theta_scaled = (whitening.M @ result.V.detach()).cpu().to(torch.float64).numpy()
    scale = None
    if spec.huber_joint and isinstance(objective, RowObjective) and setup.n_outputs == 1:
        with torch.no_grad():
            residual = objective.predictions(result.V.detach()) - objective.y
            scale = float(huber_scale(residual, objective.w / objective.w.sum(), spec.epsilon)[0])
    return _Solved(result, theta_scaled, method, optimizer, zero=zero, scale=scale)


def _closed_form_train(V, whitening, y_scale, tol):
    """What :func:`~autopoly._train.train` records for :class:`WhitenedLBFGSStep`, directly.

    The loop scores the start (its loss and largest gradient) and steps to the minimizer
    ``C``; it stops there when the start's gradient was within ``tol`` (a warm start at the
    optimum), else after scoring ``C``, where the gradient test holds exactly; it then keeps
    the step unless it raised the loss (rounding, next to the optimum). This does the same
    arithmetic on the statistics, in NumPy float64, without building the objective or the
    loop: on small problems their bookkeeping costs more than the whole quadratic. The
    objective is :class:`~autopoly._objective.StatsObjective`'s without a penalty term (the L2
    part is in the whitening): per output ``y_scale**2 * (||V - C||**2 + resid)``, normalized
    by its value at ``V = 0``. Needs ``tol > 0`` (the loop's gradient test is off at 0).
    ``None`` when a loss is not finite: the loop then runs, and raises its divergence error.
    """
    C, resid, start = host64(whitening.C), host64(whitening.resid), host64(V)
    s2 = np.asarray(y_scale, dtype=np.float64) ** 2
    with np.errstate(all="ignore"):
        j0 = s2 * ((C * C).sum(0) + resid)
        J0 = np.where(np.isfinite(j0) & (j0 > 0), j0, 1.0)
        diff = start - C
        per_output = s2 * ((diff * diff).sum(0) + resid)
        final_per_output = s2 * resid
        loss = float((per_output / J0).sum())
        final = float((final_per_output / J0).sum())
        grad_max = float(np.abs(2 * s2 / J0 * diff).max()) if diff.size else math.inf
    if not (math.isfinite(loss) and math.isfinite(final)):
        return None
    user, final_user = float(per_output.mean()), float(final_per_output.mean())
    kept = final <= loss
    if kept:
        with torch.no_grad():
            V.copy_(whitening.C)
    if grad_max <= tol:
        curve = [user]
        best = min(user, final_user) if kept else user
    else:
        curve = [user, final_user]
        best = min(curve)
    return TrainResult(V=V, n_iter=len(curve), converged=True, loss_curve=curve, best_loss=best)


def _solve_l1(spec, setup, whitening, weight_sum):
    """The squared error plus an L1 part, one output, solved exactly (:mod:`~autopoly._l1`).

    Per output the objective is ``s**2 * (||V - C||**2 + resid) + alpha * l1_ratio / sum(w) *
    ||s * A @ V||_1`` with ``s`` the target scale and ``A = T @ M`` (whitened parameters to
    the terms' raw coefficients in target units); divided by ``s**2`` it is the generalized
    Lasso with ``lam = alpha * l1_ratio / (sum(w) * s)``. Its optimum comes with exact zeros.
    """
    M = whitening.M.to(torch.float64).cpu()
    A = _terms_map(setup).to(torch.float64).cpu() @ M
    s = float(setup.y_scale.reshape(-1)[0])
    lam = spec.alpha * spec.l1_ratio / (weight_sum * s)
    l1 = solve_generalized_lasso(whitening.C.to(torch.float64).cpu(), A, lam)
    resid = float(whitening.resid.reshape(-1)[0])
    curve = [s * s * (h + resid) for h in l1.objective] or [s * s * resid]
    V = l1.V.to(dtype=whitening.C.dtype, device=whitening.C.device)
    result = TrainResult(
        V=V,
        n_iter=l1.n_iter,
        converged=l1.converged,
        loss_curve=curve,
        best_loss=curve[-1],
        certificate_violation=l1.kkt_violation,
    )
    theta_scaled = (M @ l1.V).numpy()
    return _Solved(result, theta_scaled, L1_SOLVER, zero=l1.zero.cpu().numpy())


def _polish_huber(spec, setup, whitening, weight_sum, objective, result, max_rounds=8):
    """Finish a Huber fit (fixed ``epsilon``) by Newton steps on its partition of the rows.

    Where the optimizer stopped, each row is inside ``epsilon`` (quadratic) or outside
    (linear, with a sign). On a fixed partition the objective is a quadratic whose minimizer
    solves ``(s**2 B_in.T W_in B_in + 2 alpha / sum(w) s**2 A.T A) V = s B_in.T W_in (y -
    y_offset) + s epsilon B.T W sign``; when the partition at the new point is the same, that
    point is the optimum exactly. A few rounds settle a partition the optimizer left almost
    right; a step is kept only when it does not raise the objective, so the polish can only
    help. Gradient methods stall near Huber's optimum when ``epsilon`` is small next to the
    residuals (the loss is then nearly the absolute error); this ends the fit there.

    The scale-free loss (``huber_scale='joint'``) is handled alike: on a fixed partition (the
    threshold ``epsilon * sigma``) its minimizer is linear in ``V`` for each ``sigma``, and
    ``sigma`` solves one equation (:func:`_partition_scale`).
    """
    B = objective.design(None).detach()
    y = objective.y[:, :1] - objective.y_offset[0]
    s = float(objective.y_scale[0])
    w = (objective.w / objective.w.sum())[:, None]
    eps = spec.epsilon
    joint = spec.huber_joint
    hessian_pen = None
    if spec.alpha > 0:
        A = _terms_map(setup) @ whitening.M
        # The penalty's Hessian, halved for the scale-free loss (whose equations are halved).
        hessian_pen = (1 if joint else 2) * spec.alpha / weight_sum * s * s * (A.T @ A)

    def minimizer(inside, sign, sigma):
        """The partition's minimizer in ``V``: with ``sigma = 1`` the fixed loss's equations,
        ``s**2 B_in.T W_in B_in V + H_pen V = s B_in.T W_in y + s epsilon B.T W sign``; the
        scale-free loss's (halved) have ``1 / sigma`` on the quadratic rows.
        """
        W_in = w * inside
        lhs = s * s / sigma * (B.T @ (W_in * B))
        if hessian_pen is not None:
            lhs = lhs + hessian_pen
        rhs = s / sigma * (B.T @ (W_in * y)) + s * eps * (B.T @ (w * sign))
        return torch.linalg.solve(lhs, rhs)

    V = result.V.detach()
    with torch.no_grad():
        best = float(objective.value(V)[0])
        sigma = _huber_sigma(spec, objective, V) if joint else 1.0
        for _ in range(max_rounds):
            r = y - s * (B @ V)
            inside = r.abs() <= eps * sigma
            sign = torch.where(inside, torch.zeros_like(r), torch.sign(r))
            try:
                if joint:
                    sigma = _partition_scale(minimizer, inside, sign, sigma, y, B, s, w, eps)
                V_new = minimizer(inside, sign, sigma)
            except (RuntimeError, ValueError):  # too few rows inside, or no bracket
                return
            value = float(objective.value(V_new)[0])
            # (Equal to the rounding of an evaluation counts as no worse: near the optimum
            # the objective is flat to it while the step still moves the coefficients.)
            if not value <= best * (1 + 1e-13):
                return
            r_new = y - s * (B @ V_new)
            settled = bool((r_new.abs() <= eps * sigma).eq(inside).all())
            V, best = V_new, value
            result.V.copy_(V)
            result.best_loss = value
            if settled:
                return


def _huber_sigma(spec, objective, V):
    residual = objective.predictions(V) - objective.y
    return float(huber_scale(residual, objective.w / objective.w.sum(), spec.epsilon)[0])


def _partition_scale(minimizer, inside, sign, sigma, y, B, s, w, eps):
    """The scale solving the scale-free Huber's stationarity on a fixed partition.

    ``sigma**2 * (1 - epsilon**2 * W_out) = sum_in w r(sigma)**2`` (weights summing to 1),
    where ``r(sigma)`` are the residuals of the partition's minimizer at that scale: a 1-D
    root, bracketed around the current scale.
    """
    from scipy.optimize import brentq

    w_out = float((w * ~inside).sum())

    def stationarity(scale):
        r = y - s * (B @ minimizer(inside, sign, scale))
        return scale * scale * (1 - eps * eps * w_out) - float((w * inside * r * r).sum())

    lo, hi = sigma / 2, sigma * 2
    return brentq(stationarity, lo, hi, xtol=1e-16 * sigma, rtol=4 * 2.0**-52)


def _l1_rows(spec, setup, whitening, weight_sum):
    """An L1 penalty as pseudo-rows of the linear program (None without a penalty).

    ``|b_j| = 2 * pinball_0.5(b_j)``, so the penalty ``alpha / sum(w) * ||s * A @ V||_1``
    (divided by the target scale ``s``, as the loss is) is one row per term with design
    ``-A_j``, target 0, quantile 0.5 and weight ``2 * alpha / sum(w)`` (halved for the absolute
    error, which is twice the pinball loss). A vertex that fits a pseudo-row exactly has that
    coefficient exactly zero.
    """
    if spec.alpha == 0:
        return None
    A = _terms_map(setup) @ whitening.M
    weight = 2 * spec.alpha * spec.l1_ratio / weight_sum
    if spec.loss_name == "absolute_error":
        weight /= 2
    return -A, weight


def _to_vertex(spec, objective, result, penalty_rows=None):
    """Move a piecewise-linear fit to its linear program's certified optimum (``_vertex``)."""
    B = objective.design(None).detach()
    t = (objective.y[:, 0] - objective.y_offset[0]) / objective.y_scale[0]
    w = objective.w / objective.w.sum()
    total, q = 1.0, spec.quantile
    if penalty_rows is not None:
        rows, weight = penalty_rows
        n_pen = rows.shape[0]
        B = torch.cat([B, rows.to(B.dtype)])
        t = torch.cat([t, t.new_zeros(n_pen)])
        w = torch.cat([w, w.new_full((n_pen,), weight)])
        q = torch.cat([t.new_full((B.shape[0] - n_pen,), q), t.new_full((n_pen,), 0.5)])
        total += weight * n_pen
    vertex = refine(B, t, w, q, result.V.detach()[:, 0])
    with torch.no_grad():
        result.V.copy_(vertex.V[:, None])
    result.converged = vertex.certified
    result.stalled_gradient = None
    result.certificate_violation = vertex.violation
    # The absolute error is twice the pinball loss at q=0.5; both scale with y.
    factor = 2.0 if spec.loss_name == "absolute_error" else 1.0
    result.best_loss = vertex.objective * total * factor * float(objective.y_scale[0])
    if result.loss_curve:
        result.loss_curve.append(result.best_loss)
    if penalty_rows is None:
        return None
    # The pseudo-rows the vertex fits exactly are the exact zeros (rounding aside).
    coef = rows @ vertex.V.to(rows.dtype)
    size = rows.norm(dim=1) * vertex.V.norm()
    return (coef.abs() <= 1e3 * torch.finfo(rows.dtype).eps * size).cpu().numpy()


def convergence_warning(spec, outcome) -> Optional[str]:
    """The ``ConvergenceWarning`` message for an outcome that did not converge, or None."""
    result, name = outcome.train, outcome.optimizer_name
    lbfgs = is_lbfgs(spec.optimizer_class)
    if outcome.optimizer_name == L1_SOLVER and not result.converged:
        return (
            "TorchPolyRegressor could not certify the optimum of the L1 penalty: the "
            "active-set solver stopped with its optimality (KKT) conditions violated by "
            f"{result.certificate_violation:.2g} (nearly collinear or duplicated terms). The "
            "best point found is kept. Remove duplicated features, lower the degree, or add "
            "an L2 part (l1_ratio < 1)."
        )
    if result.certificate_violation is not None and not result.converged:
        return (
            f"TorchPolyRegressor could not certify the optimum of loss={spec.loss_name}: "
            "the simplex walk from where the optimizer stopped ended at a vertex whose "
            "subgradient condition fails (degenerate or ill-conditioned rows); the best point "
            "found is kept. Rescale X, or try another optimizer or more max_iter."
        )
    if result.stalled_gradient is not None:
        return (
            f"TorchPolyRegressor stopped after {result.n_iter} iterations without "
            f"converging: the loss stopped improving while its largest gradient was still "
            f"{result.stalled_gradient:.2g} (tol={spec.tol:g}), so "
            f"optimizer={name} with lr={spec.lr:g} oscillates across "
            f"the optimum or is stuck. Use a smaller lr (e.g. lr={spec.lr / 2:g})"
            + ("." if lbfgs else " or the default optimizer='lbfgs'.")
        )
    if not result.converged:
        return (
            f"TorchPolyRegressor stopped at max_iter={spec.max_iter} before converging "
            f"(tol={spec.tol:g}, optimizer={name}, lr={spec.lr:g}). "
            + (
                "Increase max_iter."
                if lbfgs
                else "Increase max_iter, tune lr, or use the default optimizer='lbfgs'."
            )
        )
    return None


def warn_unconverged(spec, outcome, stacklevel=3):
    message = convergence_warning(spec, outcome)
    if message is not None:
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)


# ----------------------------------------------------------------------- prediction


def predict(fitted, X, device=None):
    """``design(X) @ theta`` chunk by chunk, float64, as ``(n_samples, n_outputs)``.

    NumPy rows are computed on the fitted device when this machine has it (else on the CPU)
    and returned as NumPy; a tensor's rows are computed on ``device`` (its own by default) and
    returned as a tensor there, so they never visit the host.
    """
    tensor_in = isinstance(X, torch.Tensor)
    if device is None:
        device = X.device if tensor_in else prediction_device(fitted.device)
    if not tensor_in and device.type == "cpu":
        return _predict_numpy(fitted, X)
    # Predictions are cheap: compute them in float64 unless the device lacks it.
    dtype = torch.float32 if device.type == "mps" else torch.float64
    design = DesignMap(
        fitted.terms.expansion(fitted.n_features),
        torch.as_tensor(fitted.x_offset, dtype=dtype, device=device),
        torch.as_tensor(fitted.x_scale, dtype=dtype, device=device),
        fitted.terms.fit_intercept,
    )
    theta = torch.as_tensor(fitted.theta, dtype=dtype, device=device)
    n = X.shape[0]
    if tensor_in:
        out = torch.empty((n, fitted.n_outputs), dtype=dtype, device=device)
    else:
        out = np.empty((n, fitted.n_outputs))
    with torch.no_grad():
        for rows in chunk_slices(n, theta.shape[0], design.itemsize):
            block = design(to_tensor(X[rows], dtype, device)) @ theta
            out[rows] = block if tensor_in else block.cpu().to(torch.float64).numpy()
    return out[:, 0] if fitted.single_output else out


# Row chunks of a NumPy prediction: an expanded chunk of about this many bytes stays in a
# core's cache between its expansion and its product with the coefficients.
PREDICT_CHUNK_BYTES = 2**20


def _predict_numpy(fitted, X):
    """:func:`predict` for NumPy rows on the CPU, in NumPy (no tensor made).

    The same expansion plan and arithmetic as the torch path, in float64; NumPy's small
    operations cost a fraction of torch's, and its large ones as much.
    """
    expansion = fitted.terms.expansion(fitted.n_features)
    theta = np.asarray(fitted.theta, dtype=np.float64)
    first = int(fitted.terms.fit_intercept)
    n = X.shape[0]
    out = np.empty((n, fitted.n_outputs))
    step = max(1, PREDICT_CHUNK_BYTES // (8 * theta.shape[0]))
    buf = np.empty((theta.shape[0], min(step, n)))
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        m = rows.stop - rows.start
        ZT = np.ascontiguousarray(((X[rows] - fitted.x_offset) / fitted.x_scale).T)
        chunk = buf[:, :m]
        if first:
            chunk[0] = 1.0
        expansion.fill_numpy(ZT, chunk[first:])
        np.matmul(chunk.T, theta, out=out[rows])
    return out[:, 0] if fitted.single_output else out
