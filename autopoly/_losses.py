"""The data-fit losses, written with torch so that autograd differentiates them.

The built-in losses take ``(y_pred, y_true, weight)`` with predictions and targets of shape
``(n_samples, n_outputs)`` and weights of shape ``(n_samples,)`` already divided by their total
over the whole data set (so the per-step loss needs no extra reduction, and chunks simply add
up), and return the weighted mean over samples of each output, shape ``(n_outputs,)``: outputs
are fitted independently, and the reported loss is their mean (sklearn's multi-output
convention). A user's callable receives the raw ``sample_weight`` and returns one scalar for all
outputs.
"""

import torch

LOSSES = ("squared_error", "huber", "absolute_error")


def _weighted_mean(per_element, weight):
    return weight @ per_element


def squared_error(y_pred, y_true, weight):
    """Weighted mean squared error per output."""
    residual = y_pred - y_true
    return _weighted_mean(residual * residual, weight)


def absolute_error(y_pred, y_true, weight):
    """Weighted mean absolute error per output."""
    return _weighted_mean((y_pred - y_true).abs(), weight)


def huber(y_pred, y_true, weight, epsilon):
    """Weighted mean Huber loss: quadratic within ``epsilon`` (in units of y), linear outside.

    Defined as ``r**2 / 2`` for ``|r| <= epsilon`` and ``epsilon * (|r| - epsilon / 2)`` beyond.
    """
    r = (y_pred - y_true).abs()
    quad = torch.clamp(r, max=epsilon)
    return _weighted_mean(quad * (r - 0.5 * quad), weight)


def resolve_loss(loss, epsilon):
    """Return ``(name, function)`` for the ``loss`` parameter (a name or a callable).

    The function returns per-output losses, shape ``(n_outputs,)``, or ``(1,)`` for a callable.
    """
    if callable(loss):
        return "callable", lambda y_pred, y_true, sw: loss(y_pred, y_true, sw).reshape(1)
    if loss == "squared_error":
        return loss, squared_error
    if loss == "absolute_error":
        return loss, absolute_error
    if loss == "huber":
        return loss, lambda y_pred, y_true, sw: huber(y_pred, y_true, sw, epsilon)
    raise ValueError(
        f"loss={loss!r} is not a known loss; use one of {', '.join(map(repr, LOSSES))} "
        "or a callable (y_pred, y_true, sample_weight) -> scalar tensor."
    )
