"""The data-fit losses, written with torch so that autograd differentiates them.

The built-in losses take ``(y_pred, y_true, sample_weight)`` with predictions and targets of
shape ``(n_samples, n_outputs)`` and weights of shape ``(n_samples,)``, and return the weighted
mean over samples of each output, shape ``(n_outputs,)``: outputs are fitted independently, and
the reported loss is their mean (sklearn's multi-output convention). A user's callable returns
one scalar for all outputs.
"""

import torch

LOSSES = ("squared_error", "huber", "absolute_error")


def _weighted_mean(per_element, sample_weight):
    return (sample_weight @ per_element) / sample_weight.sum()


def squared_error(y_pred, y_true, sample_weight):
    """Weighted mean squared error."""
    return _weighted_mean((y_pred - y_true) ** 2, sample_weight)


def absolute_error(y_pred, y_true, sample_weight):
    """Weighted mean absolute error."""
    return _weighted_mean((y_pred - y_true).abs(), sample_weight)


def huber(y_pred, y_true, sample_weight, epsilon):
    """Weighted mean Huber loss: quadratic within ``epsilon`` (in units of y), linear outside.

    Defined as ``r**2 / 2`` for ``|r| <= epsilon`` and ``epsilon * (|r| - epsilon / 2)`` beyond.
    """
    r = (y_pred - y_true).abs()
    quad = torch.clamp(r, max=epsilon)
    return _weighted_mean(quad * (r - 0.5 * quad), sample_weight)


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
