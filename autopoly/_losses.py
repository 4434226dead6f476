"""The data-fit losses, written with torch so that autograd differentiates them.

Every loss takes ``(y_pred, y_true, sample_weight)`` with predictions and targets of shape
``(n_samples, n_outputs)`` and weights of shape ``(n_samples,)``, and returns the weighted mean
over samples, averaged over outputs, as a scalar tensor.
"""

import torch

LOSSES = ("squared_error", "huber", "absolute_error")


def _weighted_mean(per_element, sample_weight):
    # Weighted over rows, plain mean over outputs: sklearn's multi-output convention.
    return (sample_weight @ per_element).mean() / sample_weight.sum()


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
    """Return ``(name, function)`` for the ``loss`` parameter (a name or a callable)."""
    if callable(loss):
        return "callable", loss
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
