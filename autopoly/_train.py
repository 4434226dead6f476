"""The optimizer step loop: convergence, divergence, early stopping and progress.

The loop is a few named parts, each usable on its own: :class:`LoopSettings` (the resolved
parameters), :func:`full_batch_step` and :func:`minibatch_epoch` (one iteration each),
:class:`Stopper` (the stopping rules and the best parameters), :func:`last_step_converged` and
:func:`keep_last_step_if_no_worse` (what the loop never scored), and :func:`train`, which runs
them in order.
"""

import math
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch

# The normalized objective growing this much above the constant model's counts as divergence.
DIVERGENCE_FACTOR = 1e6
# A smooth objective that stalls with a gradient above this share of its first one is stuck
# (or oscillating) far from the optimum.
STALL_GRADIENT_SHARE = 1e-2


class DivergenceError(FloatingPointError):
    """The loss or the parameters became non-finite (or grew a millionfold) during a fit.

    The estimator's previous fitted state (if any) is left untouched.

    Examples
    --------
    >>> import numpy as np
    >>> from autopoly import DivergenceError, TorchPolyRegressor
    >>> x = np.linspace(1.5e5, 3e6, 30).reshape(-1, 1)
    >>> y = 1e-12 * x.ravel() ** 2 + 3e-6 * x.ravel() + 2
    >>> raw = TorchPolyRegressor(conditioning=False, optimizer="adam", lr=0.01)
    >>> try:
    ...     raw.fit(x, y)
    ... except DivergenceError:
    ...     print("diverged; the default conditioning=True converges")
    diverged; the default conditioning=True converges
    """


@dataclass
class TrainResult:
    V: torch.Tensor
    n_iter: int
    converged: bool
    loss_curve: list = field(default_factory=list)
    best_loss: float = math.inf
    validation_scores: list = field(default_factory=list)
    best_validation_score: float = -math.inf
    # Set when a smooth objective stopped improving far from a stationary point, with this
    # largest gradient: the optimizer oscillates or is stuck, it has not converged.
    stalled_gradient: Optional[float] = None
    # Piecewise-linear losses: how far the optimality certificate of the final vertex fails
    # (0.0 when it holds, None when no vertex was sought).
    certificate_violation: Optional[float] = None


@dataclass(frozen=True)
class LoopSettings:
    """The loop's parameters, resolved once (see :func:`train` for their meaning)."""

    max_iter: int
    tol: float
    n_iter_no_change: int
    lr: float
    batch_size: Optional[int] = None
    n_rows: Optional[int] = None
    keep_best: bool = True
    smooth: bool = False
    verbose: int = 0


def _progress(verbose, max_iter):
    if verbose < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; verbose=1 lines still print
        warnings.warn(
            "verbose=2 shows a progress bar with tqdm, which is not installed; printing "
            "progress lines only. Install it with `pip install tqdm` (autopoly's `progress` "
            "extra).",
            UserWarning,
            stacklevel=2,
        )
        return None
    return tqdm(total=max_iter, desc="autopoly fit", unit="it", leave=False)


class _Reporter:
    """Progress lines (``verbose >= 1``), the optional tqdm ``bar`` and the closing summary."""

    def __init__(self, verbose, bar):
        self.verbose = verbose
        self.bar = bar
        self.start = time.perf_counter()

    def step(self, it, user):
        if self.verbose >= 1 and (it == 1 or it % 10 == 0):
            self.line(
                f"Iteration {it}, loss = {user:.8g}, "
                f"elapsed = {time.perf_counter() - self.start:.2f}s"
            )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{user:.4g}")

    def line(self, text):
        """Print ``text`` on its own line, above the bar while one is open."""
        if self.bar is None:
            print(text)
        else:
            # A plain print would land inside the bar's line; tqdm.write clears the bar,
            # prints the line to stdout and draws the bar again below it.
            self.bar.write(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def summary(self, result):
        if self.verbose < 1:
            return
        if result.converged:
            state = "converged"
        elif result.stalled_gradient is not None:
            state = "stopped unconverged (the loss stalled, its gradient did not vanish)"
        else:
            state = "stopped at max_iter"
        print(f"{state} after {result.n_iter} iterations, best loss = {result.best_loss:.8g}")


def _diverged(what, n_iter, optimizer, lr):
    fix = f"Use a smaller lr (e.g. lr={lr / 10:g})"
    fix += (
        ", and check that the loss stays finite for the data"
        if isinstance(optimizer, torch.optim.LBFGS)
        else " or the default optimizer='lbfgs'"
    )
    return DivergenceError(
        f"The {what} became non-finite or grew a millionfold at iteration {n_iter} with "
        f"optimizer={type(optimizer).__name__} and lr={lr:g}; the fit was abandoned and the "
        f"estimator's previous state kept. {fix}."
    )


def _start_loss(objective, V):
    """The normalized objective at the starting parameters (zeros: the constant model's)."""
    if not bool(V.detach().any()):
        return objective.constant_model
    with torch.no_grad():
        return float(objective.evaluate_value(V)[0])


def _divergence_ceiling(objective, start):
    """A million times worse than the constant model, or than the start (a warm start on new
    data may begin worse than the constant model), is divergence, not a slow start.
    """
    return DIVERGENCE_FACTOR * max(objective.constant_model, start)


# --------------------------------------------------------------------------- one iteration


def full_batch_step(V, objective, optimizer, tol):
    """One optimizer step on all rows.

    Returns ``(loss, user, grad_max)`` at the parameters the step started from: the normalized
    objective, the same in the user's units, and the largest absolute gradient (``inf`` when
    ``tol <= 0``, where no gradient test needs it). A line search evaluates the closure
    several times; only its first evaluation, at the starting point, is recorded.
    """
    first = []

    def closure():
        optimizer.zero_grad()
        value, per_output = objective.evaluate(V)
        if not first:
            # The gradient test needs a positive tol; skip the reduction otherwise.
            grad_max = float(V.grad.abs().max()) if tol > 0 and V.numel() else math.inf
            loss = float(value)
            first.append((loss, objective.user_units(loss, per_output), grad_max))
        return value

    optimizer.step(closure)
    return first[0]


def minibatch_epoch(V, objective, optimizer, batch_size, n_rows, generator):
    """One pass over the ``n_rows`` rows in shuffled mini-batches, one step per batch.

    Returns ``(loss, user, inf)``: the row-weighted mean of the batches' losses (each measured
    before its step), normalized and in the user's units; no full gradient is measured.
    """
    order = torch.randperm(n_rows, generator=generator).to(V.device)
    total = total_user = 0.0
    for batch in torch.split(order, batch_size):
        seen = []

        def closure(batch=batch, seen=seen):
            optimizer.zero_grad()
            value, per_output = objective.evaluate(V, batch)
            loss = float(value)
            seen.append((loss, objective.user_units(loss, per_output)))
            return value

        optimizer.step(closure)
        total += seen[0][0] * len(batch)
        total_user += seen[0][1] * len(batch)
    return total / n_rows, total_user / n_rows, math.inf


# ---------------------------------------------------------------------------- the rules


class Stopper:
    """The stopping rules of the loop and the bookkeeping of the best parameters.

    Feed it each iteration's ``(loss, user, grad_max)`` through :meth:`update`, which raises
    :class:`DivergenceError` when the loss is non-finite or above the ceiling and returns
    whether to stop. The rules:

    - converged: on full batches without ``validation``, ``grad_max <= tol``;
    - stall: the loss (or, with ``validation``, the score ``validation(V)``) has not improved
      by ``tol`` for ``n_iter_no_change`` iterations. On full batches without validation it
      only counts once the last ``n_iter_no_change`` losses lie within
      ``tol * max(1, |best|)`` (momentum methods overshoot and climb back for a while); it is
      convergence, except for a ``smooth`` objective whose gradient is still above both
      ``sqrt(tol)`` and ``STALL_GRADIENT_SHARE`` of the first one: then the loop stops
      unconverged and ``stalled_gradient`` records that gradient;
    - divergence: ``DIVERGENCE_FACTOR`` times the constant model's objective or the start's
      (full batches with ``keep_best``: the first loss, which is the start's; otherwise
      measured before the first step, and for one ``partial_fit`` call (``keep_best=False``)
      from the constant model alone).

    ``best_V`` holds the best parameters: on full batches without validation those the
    best-scoring step started from (its loss belongs to its starting point), else those after
    the best-scoring iteration.
    ``optimizer`` only names the optimizer in the divergence message.
    """

    def __init__(self, settings, objective, V, optimizer=None, validation=None):
        self.settings = settings
        self.objective = objective
        self.optimizer = optimizer
        self.validation = validation
        self._V = V.detach()  # an alias of V's storage, made once
        # The full gradient is measured only on full batches; validation replaces it.
        self.gradient_rule = settings.batch_size is None and validation is None
        self.n_iter = 0
        self.converged = False
        self.stalled_gradient = None
        self.first_grad = math.inf
        self.loss_curve = []
        self.best = math.inf
        self.best_user = math.inf
        self.validation_scores = []
        self.best_validation_score = -math.inf
        self.stall = 0
        self._recent = deque(maxlen=settings.n_iter_no_change)
        if not settings.keep_best:
            # One call of a stream: measured from the constant model, so that a loss growing a
            # little at every call still trips the guard before it overflows.
            self.ceiling = _divergence_ceiling(objective, objective.constant_model)
        elif settings.batch_size is not None:
            # An epoch's loss is measured during its steps: take the start's before any.
            self.ceiling = _divergence_ceiling(objective, _start_loss(objective, V))
        else:
            self.ceiling = None  # set from the first loss, which is the start's
        self.best_V = self._V.clone()
        # The parameters the next full-batch step starts from; swapped with best_V rather
        # than copied when that step scores best.
        self._before = self._V.clone() if self.gradient_rule else None

    def update(self, it, loss, user, grad_max):
        """Record iteration ``it``; raise on divergence; return whether to stop."""
        self.n_iter = it
        if it == 1:
            self.first_grad = grad_max
            if self.ceiling is None:
                self.ceiling = _divergence_ceiling(self.objective, loss)
        if not math.isfinite(loss) or loss > self.ceiling:
            raise _diverged("loss", it, self.optimizer, self.settings.lr)
        self.loss_curve.append(user)
        self.best_user = min(self.best_user, user)
        if self.validation is None:
            self._track_loss(loss)
        else:
            self._track_score(loss)
        stop = self._should_stop(loss, grad_max)
        if self._before is not None and not stop:
            self._before.copy_(self._V)
        return stop

    def _track_loss(self, loss):
        tol = self.settings.tol
        self.stall = 0 if loss < self.best - tol else self.stall + 1
        if loss < self.best:
            self.best = loss
            if self._before is not None:
                # The old best buffer is overwritten with the next starting point.
                self.best_V, self._before = self._before, self.best_V
            else:
                self.best_V = self._V.clone()

    def _track_score(self, loss):
        self.best = min(self.best, loss)
        score = self.validation(self._V.detach())
        self.validation_scores.append(score)
        tol = self.settings.tol
        self.stall = 0 if score > self.best_validation_score + tol else self.stall + 1
        if score > self.best_validation_score:
            self.best_validation_score = score
            self.best_V = self._V.clone()

    def _should_stop(self, loss, grad_max):
        s = self.settings
        if self.gradient_rule and grad_max <= s.tol:
            self.converged = True
            return True
        self._recent.append(loss)
        if self.stall < s.n_iter_no_change or not self._flat():
            return False
        far = grad_max > max(math.sqrt(s.tol), STALL_GRADIENT_SHARE * self.first_grad)
        if self.gradient_rule and s.smooth and far:
            self.stalled_gradient = grad_max
        else:
            self.converged = True
        return True

    def _flat(self):
        """Whether the recent losses lie within ``tol`` (only asked on full batches)."""
        if not self.gradient_rule:
            return True
        recent = self._recent
        return max(recent) - min(recent) <= self.settings.tol * max(1.0, abs(self.best))

    @property
    def undecided(self):
        """Whether the last full-batch step may have converged unseen: the loop tests each
        point before stepping from it (e.g. ``max_iter=1`` with an inner L-BFGS loop).
        """
        s = self.settings
        return (
            not self.converged
            and self.stalled_gradient is None
            and self.gradient_rule
            and s.tol > 0
            and s.keep_best
        )


# ----------------------------------------------------------------------- after the loop


def last_step_converged(V, objective, optimizer, tol):
    """Whether the largest gradient at ``V`` is within ``tol``, and that evaluation."""
    optimizer.zero_grad()
    evaluation = objective.evaluate(V)
    return V.grad is not None and float(V.grad.abs().max()) <= tol, evaluation


def keep_last_step_if_no_worse(stopper, objective, V, evaluation=None):
    """The parameters to return, checked finite; updates ``stopper.best`` and ``best_user``.

    Without ``keep_best``, the last step's. On full batches without validation the last
    step's result has not been scored: it is kept if its loss is at least as good as the best
    (``evaluation``, from :func:`last_step_converged`, saves evaluating it again). Otherwise
    the best scored parameters. Call it under ``torch.no_grad()``.
    """
    s = stopper.settings
    best_V = stopper.best_V
    if not s.keep_best:
        best_V = V.detach().clone()
    elif stopper.gradient_rule:
        value, per_output = evaluation or objective.evaluate_value(V)
        final = float(value)
        if math.isfinite(final) and final <= stopper.best:
            stopper.best, best_V = final, V.detach().clone()
            stopper.best_user = min(stopper.best_user, objective.user_units(final, per_output))
    if not torch.isfinite(best_V).all():
        raise _diverged("parameters", stopper.n_iter, stopper.optimizer, s.lr)
    return best_V


# ------------------------------------------------------------------------------ the loop


def train(V, objective, optimizer, settings, *, generator=None, validation=None):
    """Run up to ``settings.max_iter`` iterations (full-batch steps, or epochs of mini-batches).

    The names below (``tol``, ``batch_size``, ``keep_best``, ...) are the fields of ``settings``.

    Converged means: on full batches, the largest absolute gradient of the normalized objective
    is below ``tol``, or the objective improved by less than ``tol`` for ``n_iter_no_change``
    iterations in a row while staying within ``tol`` (flat: a non-smooth loss or a line search
    that can no longer progress); on mini-batches only the improvement test applies, on the
    epoch's mean loss. For a ``smooth`` objective a flat stall does not count as convergence
    while the largest gradient is still above both ``sqrt(tol)`` and 1% of the first
    iteration's: the steps oscillate across the optimum (``lr`` too large) or are stuck far
    from it, so the loop stops unconverged and records the gradient in ``stalled_gradient``.
    With ``validation`` (a callable ``V -> R^2``), the fit stops when the validation score has
    not improved by ``tol`` for ``n_iter_no_change`` epochs and the best parameters are restored.

    With ``keep_best`` the parameters that scored best are returned (full batches: the last
    step is kept only if it did not raise the loss); a ``partial_fit`` step on one batch of a
    stream passes ``False`` and keeps its step whatever that batch's loss did.

    Convergence is judged on the normalized objective (see ``_objective``); the loss curve and
    the best loss are recorded in the user's units. The rules live in :class:`Stopper`.
    """
    s = settings
    reporter = _Reporter(s.verbose, _progress(s.verbose, s.max_iter))
    stopper = Stopper(s, objective, V, optimizer, validation)
    for it in range(1, s.max_iter + 1):
        if s.batch_size is None:
            loss, user, grad_max = full_batch_step(V, objective, optimizer, s.tol)
        else:
            loss, user, grad_max = minibatch_epoch(
                V, objective, optimizer, s.batch_size, s.n_rows, generator
            )
        stop = stopper.update(it, loss, user, grad_max)
        if s.verbose:
            reporter.step(it, user)
        if stop:
            break
    reporter.close()
    evaluation = None
    if stopper.undecided:
        stopper.converged, evaluation = last_step_converged(V, objective, optimizer, s.tol)
    with torch.no_grad():
        V.copy_(keep_last_step_if_no_worse(stopper, objective, V, evaluation))
    result = TrainResult(
        V=V,
        n_iter=stopper.n_iter,
        converged=stopper.converged,
        loss_curve=stopper.loss_curve,
        best_loss=stopper.best_user,
        validation_scores=stopper.validation_scores,
        best_validation_score=stopper.best_validation_score,
        stalled_gradient=stopper.stalled_gradient,
    )
    reporter.summary(result)
    return result
