"""Reading X, y and sample_weight with sklearn's validation, and explaining what it refuses.

sklearn's ``validate_data`` does the checking; when it refuses the data, :func:`explain`
rewrites its message to say where the problem is (row, column) and how to fix it. Messages it
does not recognize pass through unchanged.
"""

import re

import numpy as np
from sklearn.utils.validation import _check_sample_weight, validate_data

_FLOATS = [np.float64, np.float32]
_NUMERIC_FIX = (
    "TorchPolyRegressor needs numeric features: encode categorical columns first, e.g. with "
    "sklearn.preprocessing.OneHotEncoder in a sklearn.compose.ColumnTransformer."
)


# sklearn's messages for arrays of different lengths, and ours with the two lengths.
_LENGTH_MISMATCHES = [
    (r"Found input variables with inconsistent numbers of samples: \[(\d+), (\d+)\]",
     "X has {} samples but y has {}; X and y need the same number of samples (one target row "
     "per row of X)."),
    (r"sample_weight\.shape == \((\d+),\), expected \((\d+),\)",
     "sample_weight has {} entries but X has {} samples; pass one weight per row of X (or a "
     "single number for equal weights)."),
]


def fit_data(estimator, X, y, sample_weight, reset):
    """Validated ``(X, y, sample_weight)`` for fit and partial_fit, or a clear ValueError."""
    y_kind = getattr(np.asarray(y) if not hasattr(y, "dtype") else y, "dtype", None)
    if y_kind is not None and y_kind.kind in "USa":
        raise ValueError(
            f"y has non-numeric values (dtype {y_kind}). TorchPolyRegressor is a regressor and "
            "needs numeric targets: use a classifier for class labels, or encode them as numbers."
        )
    try:
        X_valid, y_valid = validate_data(
            estimator, X, y, multi_output=True, y_numeric=True, dtype=_FLOATS, reset=reset
        )
    except ValueError as exc:
        raise explain(exc, X, y) from exc
    try:
        weights = _check_sample_weight(
            sample_weight, X_valid, dtype=np.float64, ensure_non_negative=True
        )
    except ValueError as exc:
        raise explain(exc, sample_weight=sample_weight) from exc
    return X_valid, y_valid, weights


def predict_data(estimator, X):
    """Validated X for predict, or a clear ValueError."""
    try:
        return validate_data(estimator, X, reset=False, dtype=_FLOATS)
    except ValueError as exc:
        raise explain(exc, X) from exc


def explain(exc, X=None, y=None, sample_weight=None):
    """A ValueError saying where the problem is and how to fix it (or ``exc`` itself)."""
    msg = str(exc)
    if msg.startswith("Complex data not supported"):
        which = "X" if X is not None and np.iscomplexobj(np.asarray(X)) else "y"
        what = "features" if which == "X" else "targets"
        both = "use both parts as features" if which == "X" else "fit both parts as two outputs"
        return ValueError(
            f"Complex data not supported: {which} has complex values. TorchPolyRegressor fits "
            f"real {what}: pass {which}.real, or np.column_stack([{which}.real, {which}.imag]) "
            f"to {both}."
        )
    found = re.match(r"Input (X|y|sample_weight) contains (NaN|infinity)", msg)
    if found:
        name, kind = found.groups()
        data = {"X": X, "y": y, "sample_weight": sample_weight}[name]
        where = _first_bad(data, kind)
        if name == "X":
            return ValueError(
                f"Input X contains {kind}{where}. TorchPolyRegressor needs finite values: drop "
                "those rows, or clip or impute them (e.g. sklearn.impute.SimpleImputer after "
                "replacing inf with NaN)."
            )
        if name == "y":
            return ValueError(
                f"Input y contains {kind}{where}. Targets must be finite: drop those rows from "
                "X, y and sample_weight before fitting."
            )
        return ValueError(
            f"Input sample_weight contains {kind}{where}. Pass a finite weight for every sample "
            "(0 ignores a sample)."
        )
    if msg.startswith("Negative values in data passed to") and sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=float).reshape(-1)
        first = int(np.flatnonzero(sw < 0)[0])
        return ValueError(
            f"sample_weight has negative values (first at index {first}: {sw[first]}). Weights "
            "must be non-negative: use 0 to ignore a sample."
        )
    for pattern, template in _LENGTH_MISMATCHES:
        found = re.match(pattern, msg)
        if found:
            return ValueError(template.format(*found.groups()))
    if "could not convert" in msg:
        column = _non_numeric_column(X)
        if column is not None:
            return ValueError(
                f"X column {column[0]!r} has non-numeric values (dtype {column[1]}; {msg}). "
                + _NUMERIC_FIX
            )
        if _is_numeric(X):
            return ValueError(
                f"y has non-numeric values ({msg}). TorchPolyRegressor is a regressor and needs "
                "numeric targets: use a classifier for class labels, or encode them as numbers."
            )
        return ValueError(f"X has non-numeric values ({msg}). " + _NUMERIC_FIX)
    return exc


def _first_bad(data, kind):
    try:
        values = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return ""
    bad = np.isnan(values) if kind == "NaN" else np.isinf(values)
    hits = np.argwhere(bad)
    if hits.size == 0:
        return ""
    first = tuple(int(i) for i in hits[0])
    if values.ndim == 2:
        return f" (first at row {first[0]}, column {first[1]})"
    return f" (first at {'row' if values.ndim == 1 else 'index'} {first[0]})"


def _non_numeric_column(X):
    """``(name, dtype)`` of the first DataFrame column that is not numeric, if any."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return None
    for name in X.columns:
        try:
            np.asarray(X[name], dtype=float)
        except (TypeError, ValueError):
            return name, X[name].dtype
    return None


def _is_numeric(data):
    try:
        np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return False
    return True
