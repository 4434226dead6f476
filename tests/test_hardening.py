"""The estimator's helpers against the inputs that used to break them.

The memory check, the optimizer lookup, the input messages, the progress output and the
loss-curve display.
"""

import collections
import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from autopoly import TorchPolyRegressor
from autopoly._device import available_memory

GiB = 2**30
_rng = np.random.default_rng(0)
X = _rng.standard_normal((30, 2))
Y = X[:, 0] + X[:, 1] ** 2 + 0.1 * _rng.standard_normal(30)


# ------------------------------------------------------------------------ available memory

_SYSCONF = {
    "SC_PAGE_SIZE": 4096,
    "SC_AVPHYS_PAGES": int(3.8 * GiB) // 4096,
    "SC_PHYS_PAGES": 32 * GiB // 4096,
}
_VirtualMemory = collections.namedtuple("svmem", "total available free")


def test_cpu_memory_counts_the_page_cache_as_available(monkeypatch):
    # A full page cache: 3.8 GiB of free pages, 22.7 GiB available. A fit needing 5.3 GiB fits.
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(os, "sysconf", lambda name: _SYSCONF[name])
    monkeypatch.setattr(
        psutil, "virtual_memory", lambda: _VirtualMemory(32 * GiB, int(22.7 * GiB), int(3.8 * GiB))
    )
    assert available_memory(torch.device("cpu")) == int(22.7 * GiB)


def test_without_psutil_memavailable_is_read(monkeypatch, tmp_path):
    from autopoly._device import system_available_memory

    monkeypatch.setitem(sys.modules, "psutil", None)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       32000000 kB\nMemFree:         3900000 kB\n"
        "MemAvailable:   23800000 kB\nBuffers:          100000 kB\n"
    )
    assert system_available_memory(str(meminfo)) == 23800000 * 1024


def test_without_psutil_or_meminfo_total_memory_is_the_bound(monkeypatch, tmp_path):
    # Free pages would refuse fits that the OS can serve; the total refuses only the impossible.
    from autopoly._device import system_available_memory

    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(os, "sysconf", lambda name: _SYSCONF[name])
    assert system_available_memory(str(tmp_path / "absent")) == 32 * GiB


# ------------------------------------------------------------------------- optimizer lookup


class _NoStep(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})


@pytest.mark.parametrize("optimizer", ["Optimizer", "optimizer", torch.optim.Optimizer])
def test_the_abstract_optimizer_base_is_refused(optimizer):
    with pytest.raises(ValueError, match=r"(?s)abstract base class.*step\(\).*\badam\b.*\bsgd\b"):
        TorchPolyRegressor(optimizer=optimizer).fit(X, Y)


def test_an_optimizer_class_without_step_is_refused():
    with pytest.raises(ValueError, match=r"_NoStep, an Optimizer subclass that does not implement"):
        TorchPolyRegressor(optimizer=_NoStep).fit(X, Y)


@pytest.mark.parametrize("name", ["lr_scheduler", "swa_utils", "Adam ", "nn"])
def test_names_in_torch_optim_that_are_not_optimizers_are_refused(name):
    with pytest.raises(ValueError, match=f"optimizer={name!r} is not a torch.optim optimizer"):
        TorchPolyRegressor(optimizer=name).fit(X, Y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_listed_optimizer_name_fits():
    from autopoly._optim import optimizer_names

    assert "optimizer" not in optimizer_names() and "sparseadam" not in optimizer_names()
    for name in optimizer_names():
        TorchPolyRegressor(optimizer=name, lr=0.01, max_iter=2, tol=0).fit(X, Y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "optimizer, kwargs, message",
    [
        # A value the optimizer refuses when it is created: torch's reason and the default.
        (
            "adam",
            {"betas": (2, 3)},
            r"Adam rejected optimizer_kwargs=\{'betas': \(2, 3\)\}: Invalid beta parameter"
            r".*its defaults: betas=\(0\.9, 0\.999\)",
        ),
        ("sgd", {"momentum": -1}, r"SGD rejected .*: Invalid momentum.*momentum=0"),
        # A value refused only at the first step.
        (
            "lbfgs",
            {"line_search_fn": "foo"},
            r"LBFGS rejected .*: only 'strong_wolfe' is supported.*line_search_fn='strong_wolfe'",
        ),
        ("sgd", {"weight_decay": "x"}, r"SGD rejected .*weight_decay=0"),
        # A name the optimizer does not take: the names it does take.
        ("adam", {"beta": 0.5}, r"Adam takes no 'beta'; its keyword arguments are betas, eps"),
        # What the estimator sets itself.
        ("adam", {"lr": 0.1}, r"optimizer_kwargs=.*sets 'lr'.*estimator's lr parameter"),
    ],
)
def test_invalid_optimizer_kwargs_name_the_parameter_and_the_fix(optimizer, kwargs, message):
    est = TorchPolyRegressor(optimizer=optimizer, lr=0.01, optimizer_kwargs=kwargs, max_iter=3)
    with pytest.raises(ValueError, match="(?s)" + message):
        est.fit(X, Y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_valid_optimizer_kwargs_are_used():
    plain = TorchPolyRegressor(optimizer="sgd", lr=0.01, max_iter=5, tol=0).fit(X, Y)
    momentum = TorchPolyRegressor(
        optimizer="sgd", lr=0.01, max_iter=5, tol=0, optimizer_kwargs={"momentum": 0.9}
    ).fit(X, Y)
    assert not np.allclose(plain.coef_, momentum.coef_)


# ------------------------------------------------------------ dates, times and missing values

_DATES = pd.date_range("2024-01-01", periods=30, freq="D")


def test_predict_names_a_date_column_as_fit_does():
    model = TorchPolyRegressor().fit(pd.DataFrame({"a": X[:, 0], "when": X[:, 1]}), Y)
    with pytest.raises(ValueError, match="X column 'when' holds dates and times"):
        model.predict(pd.DataFrame({"a": X[:, 0], "when": _DATES}))


@pytest.mark.parametrize(
    "column, what",
    [
        (pd.Series(_DATES).astype("timestamp[ns][pyarrow]"), "dates and times"),
        (pd.Series(_DATES.date, dtype=object), r"dates and times \(a date on row 0\)"),
        (pd.Series(list(_DATES.to_period("D")), dtype=object), "periods"),
        (pd.Series(list(_DATES - _DATES[0]), dtype=object), "durations"),
    ],
    ids=["pyarrow-timestamp", "date-objects", "period-objects", "timedelta-objects"],
)
def test_other_date_columns_are_named(column, what):
    pytest.importorskip("pyarrow")
    with pytest.raises(ValueError, match=f"X column 'when' holds {what}"):
        TorchPolyRegressor().fit(pd.DataFrame({"a": X[:, 0], "when": column}), Y)


def test_dates_in_a_list_give_their_row_and_column():
    import datetime

    rows = [[1.0, datetime.datetime(2024, 1, 1)]] + [[1.0, 2.0]] * 29
    with pytest.raises(
        ValueError, match=r"X holds dates and times \(a datetime on row 0, column 1\)"
    ):
        TorchPolyRegressor().fit(rows, Y)


def test_a_column_of_other_objects_is_named():
    frame = pd.DataFrame({"a": X[:, 0], "meta": [{}] * 30})
    # A TypeError, as NumPy raises for objects that are no number (sklearn's
    # check_dtype_object expects that kind).
    with pytest.raises(TypeError, match="X column 'meta' has non-numeric values"):
        TorchPolyRegressor().fit(frame, Y)


@pytest.mark.parametrize("dtype", ["Float64", "Int64", "float64[pyarrow]"])
def test_missing_values_are_located_in_y_and_weights_of_every_dtype(dtype):
    if "pyarrow" in dtype:
        pytest.importorskip("pyarrow")
    y = pd.Series(np.round(Y), dtype=dtype)
    y.iloc[7] = None
    with pytest.raises(ValueError, match=r"Input y contains NaN \(first at row 7\)"):
        TorchPolyRegressor().fit(X, y)
    weights = pd.Series(np.ones(30), dtype=dtype)
    weights.iloc[4] = None
    with pytest.raises(ValueError, match=r"sample_weight contains NaN \(first at row 4\)"):
        TorchPolyRegressor().fit(X, Y, sample_weight=weights)
    frame = pd.DataFrame(np.round(X * 10), columns=["a", "b"]).astype(dtype)
    frame.iloc[2, 1] = None
    with pytest.raises(ValueError, match=r"Input X contains NaN \(first at row 2, column 'b'\)"):
        TorchPolyRegressor().fit(frame, Y)


@pytest.mark.parametrize(
    "y", [pd.Series(_DATES), np.arange(30).astype("datetime64[D]")], ids=["series", "numpy"]
)
def test_dates_as_y_beside_a_tensor_X_are_refused(y):
    # Converted as scikit-learn converts them, they became nanoseconds (or days) since 1970.
    with pytest.raises(ValueError, match="y holds dates and times"):
        TorchPolyRegressor().fit(torch.from_numpy(X), y)


# ------------------------------------------------ a first-order optimizer with a penalty


@pytest.mark.parametrize(
    "params",
    [
        dict(loss="absolute_error", alpha=1.0),
        dict(loss="quantile", quantile=0.8, alpha=1.0),
        dict(loss="huber", alpha=10.0),
        dict(loss="huber", alpha=1.0, l1_ratio=0.5),
    ],
    ids=["absolute", "quantile", "huber", "huber-elastic-net"],
)
@pytest.mark.parametrize("units", [1e-6, 1.0, 1e6])
def test_sgd_with_a_penalty_fits_whatever_the_units_of_y(params, units):
    # The L2 penalty is quadratic in the coefficients where these losses are linear in y, so
    # its weight against the loss grows with the units of y; the optimizer's coordinates take
    # that into account, and SGD at lr=0.1 reaches the optimum the default solver finds.
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (200, 1))
    y = (X[:, 0] ** 2 + 2 * X[:, 0] + 3 + rng.normal(0, 0.5, 200)) * units
    sgd = TorchPolyRegressor(degree=2, optimizer="SGD", lr=0.1, max_iter=3000, tol=1e-9, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # non-smooth: a flat stop
        sgd.fit(X, y)
    reference = TorchPolyRegressor(degree=2, max_iter=3000, **params).fit(X, y)
    assert np.isfinite(sgd.coef_).all()
    gap = np.abs(sgd.predict(X) - reference.predict(X)).max()
    assert gap <= 2e-2 * y.std(), gap / y.std()
