"""R^2 on torch tensors, computed on their device (only the number comes back)."""

import numpy as np
import torch


def _as_float64(value, device):
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)


def r2_score_tensor(y_true, y_pred, sample_weight=None):
    """:func:`sklearn.metrics.r2_score` (uniform average over outputs) for tensors.

    As in scikit-learn, an output whose true values are constant scores 1.0 when it is
    predicted exactly and 0.0 otherwise.
    """
    device = y_pred.device
    y = _as_float64(y_true, device)
    if y.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"y has {y.shape[0]} samples but X has {y_pred.shape[0]}; pass one target row per "
            "row of X."
        )
    y = y.reshape(y.shape[0], -1)
    pred = y_pred.reshape(y.shape[0], -1)
    if sample_weight is None:
        w = torch.ones(y.shape[0], dtype=torch.float64, device=device)
    else:
        w = _as_float64(sample_weight, device).reshape(-1)
    mean = (w @ y) / w.sum()
    numerator = w @ (y - pred) ** 2
    denominator = w @ (y - mean) ** 2
    exact = numerator == 0
    ratio = torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0),
                        torch.zeros_like(numerator))
    score = torch.where(denominator > 0, 1 - ratio, torch.where(exact, 1.0, 0.0).to(y.dtype))
    return float(score.mean())
