"""Reading X, y and sample_weight with sklearn's validation, and explaining what it refuses.

sklearn's ``validate_data`` does the checking; when it refuses the data, :func:`explain`
rewrites its message to say where the problem is (row, column) and how to fix it. Messages it
does not recognize pass through unchanged.
"""

import datetime
import re

import numpy as np
import torch
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    validate_data,
)

_FLOATS = [np.float64, np.float32]
_NUMERIC_FIX = (
    "TorchPolyRegressor needs numeric features: encode categorical columns first, e.g. with "
    "sklearn.preprocessing.OneHotEncoder in a sklearn.compose.ColumnTransformer."
)


# sklearn's messages for arrays of different lengths, and ours with the two lengths.
_LENGTH_MISMATCHES = [
    (
        r"Found input variables with inconsistent numbers of samples: \[(\d+), (\d+)\]",
        "X has {} samples but y has {}; X and y need the same number of samples (one target row "
        "per row of X).",
    ),
    (
        r"sample_weight\.shape == \((\d+),\), expected \((\d+),\)",
        "sample_weight has {} entries but X has {} samples; pass one weight per row of X (or a "
        "single number for equal weights).",
    ),
]


def fit_data(estimator, X, y, sample_weight, reset):
    """Validated ``(X, y, sample_weight)`` for fit and partial_fit, or a clear ValueError.

    A torch tensor X gives tensors on its device (y and sample_weight follow it there); any
    other X gives NumPy arrays (tensors passed as y or sample_weight come to the host).
    """
    if isinstance(X, torch.Tensor):
        return tensor_fit_data(estimator, X, y, sample_weight, reset)
    y = _host(y, "y")
    sample_weight = _host(sample_weight, "sample_weight")
    refuse_times(X, "X")
    refuse_times(y, "y")
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
    except (TypeError, ValueError) as exc:
        _raise_explained(exc, X, y)
    if sample_weight is None:
        # What _check_sample_weight returns for None, without its checks of the ones.
        return X_valid, y_valid, np.ones(X_valid.shape[0])
    try:
        weights = _check_sample_weight(
            sample_weight, X_valid, dtype=np.float64, ensure_non_negative=True
        )
    except ValueError as exc:
        raise explain(exc, sample_weight=sample_weight) from exc
    return X_valid, y_valid, weights


def predict_data(estimator, X):
    """Validated X for predict, or a clear ValueError (a tensor stays on its device)."""
    if isinstance(X, torch.Tensor):
        X = check_tensor(X, "X", two_d=True)
        _check_n_features(estimator, X, reset=False)
        _check_feature_names(estimator, X, reset=False)
        return X
    refuse_times(X, "X")
    try:
        return validate_data(estimator, X, reset=False, dtype=_FLOATS)
    except (TypeError, ValueError) as exc:
        _raise_explained(exc, X)


def _raise_explained(exc, X=None, y=None):
    """Raise :func:`explain`'s clearer error for ``exc``, or ``exc`` itself unchanged."""
    clear = explain(exc, X, y)
    if clear is exc:
        raise exc
    raise clear from exc


def explain(exc, X=None, y=None, sample_weight=None):
    """A ValueError saying where the problem is and how to fix it (or ``exc`` itself)."""
    msg = str(exc)
    if msg.startswith("Complex data not supported"):
        which = "X" if X is not None and np.iscomplexobj(np.asarray(X)) else "y"
        return _complex_error(which, "np")
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
    if "could not convert" in msg or "float() argument" in msg:
        times = _time_values(X, "X") or _time_values(y, "y")
        if times is not None:
            return times
        # NumPy raises TypeError for objects that are no number at all (a dict) and
        # ValueError for strings; keep the kind (sklearn's check_dtype_object expects it).
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        column = _non_numeric_column(X)
        if column is not None:
            return kind(
                f"X column {column[0]!r} has non-numeric values (dtype {column[1]}; {msg}). "
                + _NUMERIC_FIX
            )
        if _is_numeric(X):
            return kind(
                f"y has non-numeric values ({msg}). TorchPolyRegressor is a regressor and needs "
                "numeric targets: use a classifier for class labels, or encode them as numbers."
            )
        return kind(f"X has non-numeric values ({msg}). " + _NUMERIC_FIX)
    return exc


def _complex_error(name, module):
    """The message for complex ``X``, ``y`` or ``sample_weight`` (``module``: np or torch)."""
    if name == "sample_weight":
        return ValueError(
            "Complex data not supported: sample_weight has complex values. Weights are real "
            "and non-negative: pass sample_weight.real or sample_weight.abs()."
        )
    what = "features" if name == "X" else "targets"
    both = "use both parts as features" if name == "X" else "fit both parts as two outputs"
    return ValueError(
        f"Complex data not supported: {name} has complex values. TorchPolyRegressor fits "
        f"real {what}: pass {name}.real, or {module}.column_stack([{name}.real, {name}.imag]) "
        f"to {both}."
    )


def _first_bad(data, kind):
    if isinstance(data, _Located):
        first = data.index
        if data.ndim == 2:
            return f" (first at row {first[0]}, column {first[1]})"
        return f" (first at {'row' if data.ndim == 1 else 'index'} {first[0]})"
    values = _float_values(data)
    if values is None:
        return ""
    bad = np.isnan(values) if kind == "NaN" else np.isinf(values)
    hits = np.argwhere(bad)
    if hits.size == 0:
        return ""
    first = tuple(int(i) for i in hits[0])
    if values.ndim == 2:
        return f" (first at row {first[0]}, column {_column_label(data, first[1])})"
    return f" (first at {'row' if values.ndim == 1 else 'index'} {first[0]})"


def _float_values(data):
    """``data`` as a float array with NaN for missing values, or None if it holds non-numbers.

    pandas' nullable dtypes (``Float64``, ``Int64``) and pyarrow-backed columns mark missing
    values with ``pd.NA``, which ``np.asarray(..., dtype=float)`` refuses; their ``to_numpy``
    turns them into NaN.
    """
    to_numpy = getattr(data, "to_numpy", None)
    if callable(to_numpy):
        try:
            return np.asarray(to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        except (TypeError, ValueError):  # non-numbers, or a to_numpy without these arguments
            pass
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _column_label(data, index):
    """A DataFrame's column by name (``'b'``), any other's by position (``1``)."""
    columns = getattr(data, "columns", None)
    if columns is not None and index < len(columns) and isinstance(columns[index], str):
        return repr(columns[index])
    return index


def _non_numeric_column(X):
    """``(name, dtype)`` of the first DataFrame column that is not numeric, if any."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return None
    for name in X.columns:
        if _float_values(X[name]) is None:
            return name, X[name].dtype
    return None


def _is_numeric(data):
    return _float_values(data) is not None


# ------------------------------------------------------------- dates, times and periods

_DATETIMES, _DURATIONS, _PERIODS = "dates and times", "durations", "periods"


def refuse_times(data, name):
    """Raise a ValueError naming the column when ``X`` or ``y`` holds dates, durations or periods.

    By dtype only (no pass over the values): NumPy ``datetime64`` and ``timedelta64``, pandas'
    datetime (tz-aware too), timedelta and period columns, and pyarrow temporal columns. Some
    of these would otherwise fail with a low-level dtype error, others silently become
    nanoseconds since 1970 in units the user never chose. Object columns holding such values
    are named by :func:`explain` when the conversion to float fails.
    """
    columns = getattr(data, "columns", None)
    dtypes = getattr(data, "dtypes", None)
    if columns is not None and dtypes is not None and len(columns) == len(dtypes):
        for column, dtype in zip(columns, dtypes, strict=True):
            what = _time_kind(dtype)
            if what is not None:
                raise _time_error(name, what, f"dtype {dtype}", column, pandas=True)
        return
    dtype = getattr(data, "dtype", None)
    what = None if dtype is None or isinstance(data, torch.Tensor) else _time_kind(dtype)
    if what is not None:
        raise _time_error(name, what, f"dtype {dtype}", None, pandas=hasattr(data, "dt"))


def _time_kind(dtype):
    kind = getattr(dtype, "kind", None)
    if kind == "M":
        return _DATETIMES
    if kind == "m":
        return _DURATIONS
    if isinstance(dtype, np.dtype):  # NumPy's own: no periods, no pyarrow (str() is slow)
        return None
    if str(dtype).startswith("period"):
        return _PERIODS
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is not None:
        import pyarrow.types as pat  # installed: the dtype is pyarrow's

        if pat.is_duration(arrow):
            return _DURATIONS
        if pat.is_temporal(arrow):
            return _DATETIMES
    return None


def _time_value_kind(value):
    if isinstance(value, (datetime.date, datetime.time, np.datetime64)):
        return _DATETIMES
    if isinstance(value, (datetime.timedelta, np.timedelta64)):
        return _DURATIONS
    if type(value).__name__ == "Period" and type(value).__module__.startswith("pandas"):
        return _PERIODS
    return None


def _time_values(data, name):
    """The error for the first date, duration or period among ``data``'s object values."""
    if data is None or isinstance(data, torch.Tensor):
        return None
    columns = getattr(data, "columns", None)
    if columns is not None:
        for column in columns:
            found = _first_time_value(data[column])
            if found is not None:
                (row,), value, what = found
                where = f"a {type(value).__name__} on row {row}"
                return _time_error(name, what, where, column, objects=True)
        return None
    found = _first_time_value(data)
    if found is None:
        return None
    index, value, what = found
    if len(index) == 2:
        where = f"a {type(value).__name__} on row {index[0]}, column {index[1]}"
    else:
        where = f"a {type(value).__name__} at index {index[0]}"
    return _time_error(name, what, where, None, objects=True)


def _first_time_value(values):
    """``(index, value, kind)`` of the first date, duration or period in ``values``."""
    try:
        array = np.asarray(values, dtype=object)
    except (TypeError, ValueError):
        return None
    for flat, value in enumerate(array.reshape(-1)):
        what = _time_value_kind(value)
        if what is not None:
            index = np.unravel_index(flat, array.shape) if array.ndim else (0,)
            return tuple(int(i) for i in index), value, what
    return None


def _time_error(name, what, found, column, pandas=False, objects=False):
    """The ValueError for dates, durations or periods in ``X`` or ``y``, with a conversion.

    ``pandas``: the data has pandas' ``.dt`` accessor; ``objects``: Python or pandas objects
    (``datetime.date``, ``pd.Period``) in an object column, which ``pd.to_datetime`` or a
    ``map`` converts.
    """
    if column is not None:
        subject, ref = f"{name} column {column!r}", f"{name}[{column!r}]"
    else:
        subject, ref = name, name
    if objects and what == _DATETIMES:
        fix = (
            f"e.g. days since the first with d = pd.to_datetime({ref}); "
            "(d - d.min()) / pd.Timedelta(days=1)"
        )
    elif objects and what == _DURATIONS:
        fix = f"e.g. seconds with pd.to_timedelta({ref}).dt.total_seconds()"
    elif objects:
        fix = f"e.g. the period number with {ref}.map(lambda p: p.ordinal)"
    elif pandas and what == _DATETIMES:
        fix = (
            f"e.g. days since the first with ({ref} - {ref}.min()) / pd.Timedelta(days=1), or "
            f"parts such as {ref}.dt.year and {ref}.dt.dayofyear"
        )
    elif pandas and what == _DURATIONS:
        fix = f"e.g. seconds with {ref}.dt.total_seconds()"
    elif what == _PERIODS:
        fix = f"e.g. the period number with {ref}.astype('int64'), or {ref}.dt.year"
    elif what == _DATETIMES:
        fix = (
            f"e.g. days since 1970-01-01 with ({ref} - np.datetime64('1970-01-01')) / "
            "np.timedelta64(1, 'D')"
        )
    else:
        fix = f"e.g. seconds with {ref} / np.timedelta64(1, 's')"
    if name == "y":
        return ValueError(
            f"{subject} holds {what} ({found}), but TorchPolyRegressor predicts numbers: "
            f"convert the target to numbers first, {fix}, and the predictions back."
        )
    return ValueError(
        f"{subject} holds {what} ({found}); TorchPolyRegressor needs numeric features: "
        f"convert {'it' if column is not None else 'them'} to numbers first, {fix}."
    )


# --------------------------------------------------------------------------- tensors

_TENSOR_FLOATS = (torch.float32, torch.float64)


def _host(value, name):
    """A tensor as NumPy (``y`` or ``sample_weight`` next to a NumPy X), else as it is."""
    if isinstance(value, torch.Tensor):
        value = check_tensor(value, name, two_d=None, finite=False, keep_float=True)
        return value.item() if value.ndim == 0 else value.cpu().numpy()
    return value


def _numeric_array(values, name):
    """Array-like ``y`` or ``sample_weight`` as a float NumPy array (a copy), or a clear error."""
    values = np.asarray(values)
    if values.dtype.kind in "USa" or (values.dtype.kind == "O" and not _is_numeric(values)):
        if name == "y":
            raise ValueError(
                f"y has non-numeric values (dtype {values.dtype}). TorchPolyRegressor is a "
                "regressor and needs numeric targets: use a classifier for class labels, or "
                "encode them as numbers."
            )
        raise ValueError(f"{name} has non-numeric values (dtype {values.dtype}); pass numbers.")
    if values.dtype.kind in "fiub" and values.dtype != np.float16:
        return np.array(values)  # a writable, contiguous copy that torch can wrap
    return np.array(values, dtype=np.float64)


def _all_finite(t):
    """Whether every value of the float tensor ``t`` is finite.

    A finite sum proves it in one pass without a boolean copy (NaN and infinity propagate
    through a sum), as scikit-learn's own check does; a sum that overflowed is settled value
    by value.
    """
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_tensor(t, name, two_d, finite=True, keep_float=True):
    """A validated tensor on its own device: dense, real, detached, float, finite.

    ``requires_grad`` tensors are detached without a warning: a fit reads values, it does
    not differentiate through them. Integer, bool and half-precision tensors become float64
    (as NumPy arrays of those dtypes do); float32 and float64 are kept (``keep_float``).
    ``two_d`` True requires 2-D, False 1-D or 2-D, None any.
    """
    if t.layout != torch.strided:
        raise ValueError(
            f"{name} is a sparse torch tensor (layout {t.layout}); TorchPolyRegressor needs "
            f"dense rows: pass {name}.to_dense()."
        )
    if t.is_complex():
        raise _complex_error(name, "torch")
    t = t.detach()
    if not (keep_float and t.dtype in _TENSOR_FLOATS):
        t = t.to(torch.float64)
    if two_d is True and t.ndim != 2:
        raise ValueError(
            f"Expected a 2D tensor for {name}, got a {t.ndim}D tensor of shape "
            f"{tuple(t.shape)}. Reshape it with {name}.reshape(-1, 1) if it has a single "
            f"feature, or {name}.reshape(1, -1) if it is a single sample."
        )
    if two_d is False and t.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1D or 2D; got a tensor of shape {tuple(t.shape)}.")
    if two_d is False and t.ndim == 2 and t.shape[1] < 1:
        raise ValueError(
            f"{name} has no columns (shape {tuple(t.shape)}); pass at least one target column."
        )
    if name == "X" and t.shape[0] < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={tuple(t.shape)}) while a minimum of 1 is "
            "required by TorchPolyRegressor."
        )
    if name == "X" and t.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={tuple(t.shape)}) while a minimum of 1 is "
            "required by TorchPolyRegressor."
        )
    if finite and not _all_finite(t):
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinity"
        bad = torch.isnan(t) if kind == "NaN" else torch.isinf(t)
        # Only the position of the first bad value comes to the host.
        first = tuple(int(i) for i in torch.nonzero(bad)[0].cpu())
        raise explain(
            ValueError(f"Input {name} contains {kind}."), **{name: _Located(first, t.ndim)}
        )
    return t


class _Located:
    """Stands in for data in :func:`explain`: only where the first bad value is."""

    def __init__(self, index, ndim):
        self.index, self.ndim = index, ndim


def tensor_fit_data(estimator, X, y, sample_weight, reset):
    """:func:`fit_data` for a tensor X: everything validated and kept on X's device."""
    X = check_tensor(X, "X", two_d=True)
    _check_n_features(estimator, X, reset=reset)
    _check_feature_names(estimator, X, reset=reset)
    y, w = targets_on(X.device, X.shape[0], y, sample_weight)
    if not bool(w.sum() > 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return X, y, w


def targets_on(device, n_rows, y, sample_weight, non_negative=True):
    """``(y, sample_weight)`` validated as tensors on ``device`` for ``n_rows`` rows.

    Array-likes are converted as scikit-learn converts them; every message is the one the
    NumPy path gives (see :func:`explain`).
    """
    if y is None:
        raise ValueError("TorchPolyRegressor requires y to be passed, but the target y is None.")
    if not isinstance(y, torch.Tensor):
        refuse_times(y, "y")
        y = torch.from_numpy(_numeric_array(y, "y"))
    y = check_tensor(y.to(device), "y", two_d=False)
    if y.shape[0] != n_rows:
        raise explain(
            ValueError(
                f"Found input variables with inconsistent numbers of samples: [{n_rows}, "
                f"{y.shape[0]}]"
            )
        )
    if sample_weight is None:
        return y, torch.ones(n_rows, dtype=torch.float64, device=device)
    if not isinstance(sample_weight, torch.Tensor):
        sample_weight = torch.from_numpy(_numeric_array(sample_weight, "sample_weight"))
    w = check_tensor(sample_weight.to(device), "sample_weight", two_d=None, keep_float=False)
    if w.ndim == 0:
        w = w.reshape(1).expand(n_rows)
    if w.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {w.ndim}D array (shape "
            f"{tuple(w.shape)}); pass one weight per row of X, e.g. sample_weight.reshape(-1)."
        )
    if w.shape[0] != n_rows:
        raise explain(ValueError(f"sample_weight.shape == ({w.shape[0]},), expected ({n_rows},)!"))
    if non_negative and bool((w < 0).any()):
        first = int(torch.nonzero(w < 0)[0, 0])
        raise ValueError(
            f"sample_weight has negative values (first at index {first}: {float(w[first])}). "
            "Weights must be non-negative: use 0 to ignore a sample."
        )
    return y, w
