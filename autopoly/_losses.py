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

LOSSES = ("squared_error", "huber", "absolute_error", "quantile")


def _weighted_mean(per_element, weight):
    return weight @ per_element


def squared_error(y_pred, y_true, weight):
    """Weighted mean squared error per output."""
    residual = y_pred - y_true
    return _weighted_mean(residual * residual, weight)


def absolute_error(y_pred, y_true, weight):
    """Weighted mean absolute error per output."""
    return _weighted_mean((y_pred - y_true).abs(), weight)


def pinball(y_pred, y_true, weight, quantile):
    """Weighted mean pinball (quantile) loss: ``q * r`` above the prediction, ``(1 - q) * -r`` below.

    ``r = y_true - y_pred``; its minimizer predicts the ``q``-quantile of y given X, as
    :class:`sklearn.linear_model.QuantileRegressor` does.
    """
    r = y_true - y_pred
    return _weighted_mean(torch.maximum(quantile * r, (quantile - 1) * r), weight)


def huber(y_pred, y_true, weight, epsilon):
    """Weighted mean Huber loss: quadratic within ``epsilon`` (in units of y), linear outside.

    Defined as ``r**2 / 2`` for ``|r| <= epsilon`` and ``epsilon * (|r| - epsilon / 2)`` beyond.
    """
    r = (y_pred - y_true).abs()
    quad = torch.clamp(r, max=epsilon)
    return _weighted_mean(quad * (r - 0.5 * quad), weight)


def resolve_loss(loss, epsilon, quantile=0.5):
    """Return ``(name, function)`` for the ``loss`` parameter (a name or a callable).

    The function returns per-output losses, shape ``(n_outputs,)``, or ``(1,)`` for a callable.
    """
    if callable(loss):
        return "callable", _checked(loss)
    if loss == "squared_error":
        return loss, squared_error
    if loss == "absolute_error":
        return loss, absolute_error
    if loss == "huber":
        return loss, lambda y_pred, y_true, sw: huber(y_pred, y_true, sw, epsilon)
    if loss == "quantile":
        return loss, lambda y_pred, y_true, sw: pinball(y_pred, y_true, sw, quantile)
    raise ValueError(
        f"loss={loss!r} is not a known loss; use one of {', '.join(map(repr, LOSSES))} "
        "or a callable (y_pred, y_true, sample_weight) -> scalar tensor."
    )


_CALLABLE_CONTRACT = (
    "A loss callable receives torch tensors y_pred and y_true of shape (n_samples, n_outputs) "
    "and sample_weight of shape (n_samples,), and must return a scalar torch tensor computed "
    "with torch operations, e.g. (sample_weight @ ((y_pred - y_true) ** 2).sum(1)) / "
    "sample_weight.sum()."
)


def _checked(loss):
    """The user's loss, returning shape ``(1,)``, with errors that state its contract."""
    name = getattr(loss, "__name__", type(loss).__name__)

    def call(y_pred, y_true, sample_weight):
        try:
            value = loss(y_pred, y_true, sample_weight)
        except (TypeError, AttributeError) as exc:
            raise TypeError(
                f"loss={name} raised {type(exc).__name__}: {exc}. {_CALLABLE_CONTRACT}"
            ) from exc
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"loss={name} returned a {type(value).__name__}, not a torch tensor. "
                + _CALLABLE_CONTRACT
            )
        if value.numel() != 1:
            raise ValueError(
                f"loss={name} returned a tensor of shape {tuple(value.shape)}, not a scalar: "
                "reduce it to the weighted mean over samples. " + _CALLABLE_CONTRACT
            )
        if y_pred.requires_grad and not value.requires_grad:
            raise TypeError(
                f"loss={name} returned a tensor that autograd cannot trace back to y_pred "
                "(was it computed with NumPy, .item() or .detach()?). " + _CALLABLE_CONTRACT
            )
        return value.reshape(1)

    return call
