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
    """Weighted mean pinball loss: ``q * r`` above the prediction, ``(1 - q) * -r`` below.

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


def huber_scale(residual, weight, epsilon):
    """The scale ``sigma`` (per output) of the scale-free Huber loss at these residuals.

    ``sigma`` minimizes ``f(sigma) = sum(w) * sigma + sum_i w_i * sigma * H(r_i / sigma)`` with
    ``H(z) = z**2`` for ``|z| <= epsilon`` and ``2 * epsilon * |z| - epsilon**2`` beyond
    (:class:`sklearn.linear_model.HuberRegressor`'s objective without the penalty). ``f`` is
    convex in ``sigma``; between consecutive breakpoints ``|r_i| / epsilon`` the set of rows
    inside the threshold is fixed and ``f(sigma) = sigma * (W - epsilon**2 * W_out) + S_in /
    sigma + 2 * epsilon * L_out``, whose minimizer is closed-form. Every piece's minimizer,
    clipped to its piece, is evaluated and the best kept: exact, ``O(n log n)``.
    """
    r = residual.detach().abs()
    w = weight.detach()
    order = torch.argsort(r, dim=0)
    a = torch.gather(r, 0, order) / epsilon  # breakpoints, ascending, (n, k)
    ws = w[order]  # weights in the same order, (n, k)
    zero = a.new_zeros((1, a.shape[1]))
    total = w.sum()
    # Piece j (0..n): the j smallest residuals are inside; sigma in [a_(j-1), a_(j)).
    cum_w = torch.cat([zero, torch.cumsum(ws, 0)])
    s_in = torch.cat([zero, torch.cumsum(ws * (a * epsilon) ** 2, 0)])
    l_abs = ws * a * epsilon
    l_out = torch.cat([torch.flip(torch.cumsum(torch.flip(l_abs, [0]), 0), [0]), zero])
    w_out = total - cum_w
    lo = torch.cat([zero, a])
    hi = torch.cat([a, torch.full_like(zero, float("inf"))])
    slope = total - epsilon**2 * w_out
    tiny = torch.finfo(a.dtype).tiny
    with torch.no_grad():
        stationary = torch.where(
            (slope > 0) & (s_in > 0),
            torch.sqrt(s_in / slope.clamp(min=tiny)),
            torch.where(slope > 0, lo, hi),
        )
        sigma = torch.minimum(torch.maximum(stationary, lo), hi)
        finite = torch.isfinite(sigma)
        sigma = torch.where(finite, sigma, lo)
        sigma = sigma.clamp(min=tiny)
        f = sigma * slope + s_in / sigma + 2 * epsilon * l_out
        best = torch.argmin(torch.where(finite, f, torch.full_like(f, float("inf"))), dim=0)
    return torch.gather(sigma, 0, best[None, :])[0]


def huber_joint(y_pred, y_true, weight, epsilon):
    """Weighted mean of the scale-free Huber loss per output (``HuberRegressor``'s, divided by
    ``sum(w)``): ``sigma + sum_i w_i * sigma * H(r_i / sigma)`` at the best ``sigma``.

    ``sigma`` is profiled out (:func:`huber_scale`, held fixed for autograd): as it minimizes
    the loss, the gradient of the profiled loss with respect to the predictions is the partial
    gradient at that ``sigma`` (the envelope theorem), so any optimizer sees the exact
    gradient of the joint problem in the coefficients alone.
    """
    r = y_pred - y_true
    total = weight.sum()
    sigma = huber_scale(r, weight / total, epsilon)
    z = r.abs()
    inside = z <= epsilon * sigma
    per = torch.where(inside, r * r / sigma, 2 * epsilon * z - epsilon**2 * sigma)
    return weight @ per + total * sigma


HUBER_SCALES = ("fixed", "joint")


def resolve_loss(loss, epsilon, quantile=0.5, scale="fixed"):
    """Return ``(name, function)`` for the ``loss`` parameter (a name or a callable).

    The function returns per-output losses, shape ``(n_outputs,)``, or ``(1,)`` for a callable.
    """
    if callable(loss):
        return "callable", _checked(loss)
    if loss == "squared_error":
        return loss, squared_error
    if loss == "absolute_error":
        return loss, absolute_error
    if loss == "huber" and scale == "joint":
        return loss, lambda y_pred, y_true, sw: huber_joint(y_pred, y_true, sw, epsilon)
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
