"""The optimizer step loop: convergence, divergence, early stopping and progress."""

import math
import time
from dataclasses import dataclass, field

import torch


class DivergenceError(FloatingPointError):
    """The loss or the parameters became non-finite during a fit.

    The estimator's previous fitted state (if any) is left untouched.
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


def _progress(verbose, max_iter):
    if verbose < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; verbose=1 lines still print
        return None
    return tqdm(total=max_iter, desc="autopoly fit", unit="it", leave=False)


def _diverged(what, n_iter, optimizer, lr):
    return DivergenceError(
        f"The {what} became non-finite at iteration {n_iter} with "
        f"optimizer={type(optimizer).__name__} and lr={lr:g}; the fit was abandoned and the "
        f"estimator's previous state kept. Use a smaller lr (e.g. lr={lr / 10:g}) or the default "
        "optimizer='lbfgs'."
    )


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
    loss_scale=1.0,
):
    """Run up to ``max_iter`` iterations (full-batch steps, or epochs of mini-batches).

    Converged means: on full batches, the largest absolute gradient of the normalized objective
    is below ``tol``, or the objective improved by less than ``tol`` for ``n_iter_no_change``
    iterations in a row; on mini-batches only the second test applies, on the epoch's mean loss.
    With ``validation`` (a callable ``V -> R^2``), the fit stops when the validation score has
    not improved by ``tol`` for ``n_iter_no_change`` epochs and the best parameters are restored.

    ``loss_scale`` converts the normalized objective back to the user's units for the curves.
    """
    result = TrainResult(V=V, n_iter=0, converged=False)
    best_V = V.detach().clone()
    best = math.inf
    stall = 0
    bar = _progress(verbose, max_iter)
    start = time.perf_counter()
    for it in range(1, max_iter + 1):
        V_before = V.detach().clone()
        if batch_size is None:
            first = []

            def closure():
                optimizer.zero_grad()
                value = objective.evaluate(V)
                if not first:
                    first.append((float(value), float(V.grad.abs().max()) if V.numel() else 0.0))
                return value

            optimizer.step(closure)
            loss, grad_max = first[0]
        else:
            order = torch.randperm(n_rows, generator=generator).to(V.device)
            total = 0.0
            for batch in torch.split(order, batch_size):

                def closure(batch=batch):
                    optimizer.zero_grad()
                    return objective.evaluate(V, batch)

                total += float(optimizer.step(closure)) * len(batch)
            loss, grad_max = total / n_rows, math.inf
        result.n_iter = it
        if not math.isfinite(loss):
            raise _diverged("loss", it, optimizer, lr)
        if not torch.isfinite(V).all():
            raise _diverged("parameters", it, optimizer, lr)
        result.loss_curve.append(loss * loss_scale)
        if validation is None:
            stall = 0 if loss < best - tol else stall + 1
            if loss < best:
                best = loss
                # On full batches the loss belongs to the parameters before the step.
                best_V = V_before if batch_size is None else V.detach().clone()
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
                f"Iteration {it}, loss = {loss * loss_scale:.8g}, "
                f"elapsed = {time.perf_counter() - start:.2f}s"
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss * loss_scale:.4g}")
        if batch_size is None and grad_max <= tol and validation is None:
            result.converged = True
            break
        if stall >= n_iter_no_change:
            result.converged = True
            break
    if bar is not None:
        bar.close()
    with torch.no_grad():
        if validation is None and batch_size is None:
            # The last step has not been scored yet; keep it only if it is at least as good.
            final = _evaluate_no_grad(objective, V)
            if math.isfinite(final) and final <= best:
                best, best_V = final, V.detach().clone()
        V.copy_(best_V)
    result.best_loss = best * loss_scale
    if verbose >= 1:
        state = "converged" if result.converged else "stopped at max_iter"
        print(f"{state} after {result.n_iter} iterations, best loss = {result.best_loss:.8g}")
    return result


def _evaluate_no_grad(objective, V):
    return float(objective.value(V) / objective.J0)
