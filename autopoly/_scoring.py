"""R^2 on torch tensors, computed on their device (only the number comes back)."""

import warnings

import torch
from sklearn.exceptions import UndefinedMetricWarning


def r2_score_tensor(y_true, y_pred, sample_weight):
    """:func:`sklearn.metrics.r2_score` (uniform average over outputs) on validated tensors.

    ``y_true`` and ``y_pred`` have the same rows; ``sample_weight`` is 1-D. As in
    scikit-learn, an output whose true values are constant scores 1.0 when it is predicted
    exactly and 0.0 otherwise, and fewer than two rows give NaN with a warning.
    """
    y = y_true.to(torch.float64).reshape(y_true.shape[0], -1)
    pred = y_pred.to(torch.float64).reshape(y_pred.shape[0], -1)
    if y.shape[1] != pred.shape[1]:
        raise ValueError(
            f"y_true and y_pred have different number of output ({y.shape[1]}!={pred.shape[1]}): "
            f"y has {y.shape[1]} column(s) but the model predicts {pred.shape[1]} output(s)."
        )
    if y.shape[0] < 2:
        warnings.warn(
            "R^2 score is not well-defined with less than two samples.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return float("nan")
    w = sample_weight.to(torch.float64)
    mean = (w @ y) / w.sum()
    numerator = w @ (y - pred) ** 2
    denominator = w @ (y - mean) ** 2
    positive = denominator != 0
    safe = torch.where(positive, denominator, torch.ones_like(denominator))
    exact = torch.where(numerator == 0, 1.0, 0.0).to(y.dtype)
    score = torch.where(positive, 1 - numerator / safe, exact)
    return float(score.mean())
