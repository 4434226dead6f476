"""The optimizer step loop: convergence, divergence, early stopping and progress."""

import math
import time
import warnings
from collections import deque
from dataclasses import dataclass, field

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
    stalled_gradient: float = None


def _progress(verbose, max_iter):
    if verbose < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; verbose=1 lines still print
        warnings.warn(
            "verbose=2 shows a progress bar with tqdm, which is not installed; printing "
            "progress lines only. Install it with `pip install tqdm` (autopoly's `progress` extra).",
            UserWarning,
            stacklevel=2,
        )
        return None
    return tqdm(total=max_iter, desc="autopoly fit", unit="it", leave=False)


def _diverged(what, n_iter, optimizer, lr):
    fix = f"Use a smaller lr (e.g. lr={lr / 10:g})"
    fix += (
        ", and check that the loss stays finite for the data"
        if isinstance(optimizer, torch.optim.LBFGS) else " or the default optimizer='lbfgs'"
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
    data may begin worse than the constant model), is divergence, not a slow start."""
    return DIVERGENCE_FACTOR * max(objective.constant_model, start)


def train(
    V,
    objective,
    optimizer,
    *,
    lr,
    max_iter,
    tol,
    n_iter_no_change,
    batch_size=None,
    n_rows=None,
    generator=None,
    validation=None,
    verbose=0,
    keep_best=True,
    smooth=False,
):
    """Run up to ``max_iter`` iterations (full-batch steps, or epochs of mini-batches).

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
    the best loss are recorded in the user's units.
    """
    result = TrainResult(V=V, n_iter=0, converged=False)
    best_V = V.detach().clone()
    best = math.inf
    best_user = math.inf
    stall = 0
    recent = deque(maxlen=n_iter_no_change)
    bar = _progress(verbose, max_iter)
    start = time.perf_counter()
    V_data = V.detach()  # an alias of V's storage, made once
    if not keep_best:
        # One call of a stream: measured from the constant model, so that a loss growing a
        # little at every call still trips the guard before it overflows.
        ceiling = _divergence_ceiling(objective, objective.constant_model)
    elif batch_size is not None:
        # An epoch's loss is measured during its steps: take the start's before any.
        ceiling = _divergence_ceiling(objective, _start_loss(objective, V))
    V_before = V_data.clone()
    for it in range(1, max_iter + 1):
        V_before.copy_(V_data)
        if batch_size is None:
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
            loss, user, grad_max = first[0]
        else:
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
            loss, user, grad_max = total / n_rows, total_user / n_rows, math.inf
        result.n_iter = it
        if it == 1:
            first_grad = grad_max
        if it == 1 and batch_size is None and keep_best:
            ceiling = _divergence_ceiling(objective, loss)  # this loss is the start's
        if not math.isfinite(loss) or loss > ceiling:
            raise _diverged("loss", it, optimizer, lr)
        result.loss_curve.append(user)
        best_user = min(best_user, user)
        if validation is None:
            stall = 0 if loss < best - tol else stall + 1
            if loss < best:
                best = loss
                # On full batches the loss belongs to the parameters before the step.
                if batch_size is None:
                    # Swap buffers rather than copy: the old best is overwritten next step.
                    best_V, V_before = V_before, best_V
                else:
                    best_V = V.detach().clone()
        else:
            best = min(best, loss)
            score = validation(V.detach())
            result.validation_scores.append(score)
            stall = 0 if score > result.best_validation_score + tol else stall + 1
            if score > result.best_validation_score:
                result.best_validation_score = score
                best_V = V.detach().clone()
        if verbose >= 1 and (it == 1 or it % 10 == 0):
            print(
                f"Iteration {it}, loss = {user:.8g}, "
                f"elapsed = {time.perf_counter() - start:.2f}s"
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{user:.4g}")
        if batch_size is None and grad_max <= tol and validation is None:
            result.converged = True
            break
        recent.append(loss)
        # On full batches a stall only counts once the loss has flattened: momentum methods
        # overshoot and climb back for a while, which is not convergence.
        if stall >= n_iter_no_change and (
            batch_size is not None
            or validation is not None
            or max(recent) - min(recent) <= tol * max(1.0, abs(best))
        ):
            full_batch = batch_size is None and validation is None
            far = grad_max > max(math.sqrt(tol), STALL_GRADIENT_SHARE * first_grad)
            if full_batch and smooth and far:
                result.stalled_gradient = grad_max
            else:
                result.converged = True
            break
    if bar is not None:
        bar.close()
    if (not result.converged and result.stalled_gradient is None and batch_size is None
            and validation is None and tol > 0 and keep_best):
        # The loop tests each point before stepping from it: the last step's result may
        # already be the optimum (e.g. max_iter=1 with an inner L-BFGS loop).
        optimizer.zero_grad()
        final_eval = objective.evaluate(V)
        result.converged = V.grad is not None and float(V.grad.abs().max()) <= tol
    else:
        final_eval = None
    with torch.no_grad():
        if not keep_best:
            best_V = V.detach().clone()
        elif validation is None and batch_size is None:
            # The last step has not been scored yet; keep it only if it is at least as good.
            value, per_output = final_eval or objective.evaluate_value(V)
            final = float(value)
            if math.isfinite(final) and final <= best:
                best, best_V = final, V.detach().clone()
                best_user = min(best_user, objective.user_units(final, per_output))
        if not torch.isfinite(best_V).all():
            raise _diverged("parameters", result.n_iter, optimizer, lr)
        V.copy_(best_V)
    result.best_loss = best_user
    if verbose >= 1:
        if result.converged:
            state = "converged"
        elif result.stalled_gradient is not None:
            state = "stopped unconverged (the loss stalled, its gradient did not vanish)"
        else:
            state = "stopped at max_iter"
        print(f"{state} after {result.n_iter} iterations, best loss = {result.best_loss:.8g}")
    return result

