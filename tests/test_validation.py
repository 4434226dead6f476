"""Bad input gets a clear error, and a failed fit leaves no half-fitted state.

``BAD_INPUTS`` is the table of ``docs/reliability.rst``: one row per case id, checked by
``test_reliability_doc_lists_every_case``. Each message must name the argument, the problem
and the fix; the regexes are written as lookaheads so that each requirement is checked
independently of the wording around it.
"""

import pickle
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from autopoly import DivergenceError, TorchPolyRegressor

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.rst"

_rng = np.random.default_rng(0)
X = _rng.standard_normal((30, 2))
Y = X[:, 0] + X[:, 1] ** 2 + 0.1 * _rng.standard_normal(30)


def _all(*parts):
    """A regex that matches when every part occurs somewhere in the message."""
    return "(?s)^" + "".join(f"(?=.*(?:{p}))" for p in parts)


def _with(array, index, value):
    out = np.array(array, dtype=np.result_type(array, type(value)))
    out[index] = value
    return out


def _fitted(**params):
    return TorchPolyRegressor(**params).fit(X, Y)


def _fitted_on_frame():
    return TorchPolyRegressor().fit(pd.DataFrame(X, columns=["a", "b"]), Y)


_DATES = pd.date_range("2024-01-01", periods=30, freq="D")


def _frame_with(name, column):
    """X as a DataFrame with a second column ``name`` holding ``column``."""
    return pd.DataFrame({"a": X[:, 0], name: column})


def _frame_with_missing(dtype, where):
    """X as a DataFrame of ``dtype`` with a missing value (pd.NA or a pyarrow null) at ``where``."""
    frame = pd.DataFrame(X, columns=["a", "b"]).astype(dtype)
    frame.iloc[where] = None
    return frame


def _absent_cuda():
    """A CUDA device name that does not exist on this machine, with or without a GPU."""
    return f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"


def _mps_available():
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


# (case id, call that triggers it, exception type, message regex)
BAD_INPUTS = [
    # Non-finite values.
    (
        "nan-in-X",
        lambda: TorchPolyRegressor().fit(_with(X, (3, 1), np.nan), Y),
        ValueError,
        _all(r"\bX\b", "NaN", "impute|drop"),
    ),
    (
        "inf-in-X",
        lambda: TorchPolyRegressor().fit(_with(X, (3, 1), np.inf), Y),
        ValueError,
        _all(r"\bX\b", "infinity|inf\\b", "impute|drop"),
    ),
    (
        "na-in-nullable-column",
        lambda: TorchPolyRegressor().fit(_frame_with_missing("Float64", (3, 1)), Y),
        ValueError,
        _all(r"\bX\b", r"NaN \(first at row 3, column 'b'\)", "impute|drop"),
    ),
    (
        "null-in-pyarrow-column",
        lambda: TorchPolyRegressor().fit(_frame_with_missing("float64[pyarrow]", (5, 0)), Y),
        ValueError,
        _all(r"\bX\b", r"NaN \(first at row 5, column 'a'\)", "impute|drop"),
    ),
    (
        "nan-in-X-at-predict",
        lambda: _fitted().predict(_with(X, (3, 1), np.nan)),
        ValueError,
        _all(r"\bX\b", "NaN", "impute|drop"),
    ),
    (
        "nan-in-y",
        lambda: TorchPolyRegressor().fit(X, _with(Y, 2, np.nan)),
        ValueError,
        _all(r"\by\b", "NaN", "drop"),
    ),
    (
        "inf-in-y",
        lambda: TorchPolyRegressor().fit(X, _with(Y, 2, -np.inf)),
        ValueError,
        _all(r"\by\b", "infinity|inf\\b", "drop"),
    ),
    (
        "nan-in-sample_weight",
        lambda: TorchPolyRegressor().fit(X, Y, sample_weight=_with(np.ones(30), 4, np.nan)),
        ValueError,
        _all("sample_weight", "NaN", "finite weight"),
    ),
    (
        "inf-in-sample_weight",
        lambda: TorchPolyRegressor().fit(X, Y, sample_weight=_with(np.ones(30), 4, np.inf)),
        ValueError,
        _all("sample_weight", "infinity|inf\\b", "finite weight"),
    ),
    # Non-numeric and complex data.
    (
        "string-X",
        lambda: TorchPolyRegressor().fit(np.array([["a", "b"]] * 30), Y),
        ValueError,
        _all(r"\bX\b", "non-numeric", "encode|Encoder"),
    ),
    (
        "object-column",
        lambda: TorchPolyRegressor().fit(pd.DataFrame({"a": X[:, 0], "b": ["x"] * 30}), Y),
        ValueError,
        _all("column 'b'", "non-numeric|dtype object", "encode|Encoder"),
    ),
    (
        "string-y",
        lambda: TorchPolyRegressor().fit(X, np.array(["low", "high"] * 15)),
        ValueError,
        _all(r"\by\b", "non-numeric", "classifier|encode"),
    ),
    # Dates, durations and periods: the column named, a conversion suggested.
    (
        "datetime-column",
        lambda: TorchPolyRegressor().fit(_frame_with("when", _DATES), Y),
        ValueError,
        _all("X column 'when'", "dates and times", r"pd\.Timedelta\(days=1\)"),
    ),
    (
        "tz-aware-column",
        lambda: TorchPolyRegressor().fit(_frame_with("when", _DATES.tz_localize("UTC")), Y),
        ValueError,
        _all("X column 'when'", "dates and times", r"UTC\]"),
    ),
    (
        "period-column",
        lambda: TorchPolyRegressor().fit(_frame_with("month", _DATES.to_period("M")), Y),
        ValueError,
        _all("X column 'month'", "periods", r"astype\('int64'\)"),
    ),
    (
        "duration-column",
        lambda: TorchPolyRegressor().fit(_frame_with("wait", _DATES - _DATES[0]), Y),
        ValueError,
        _all("X column 'wait'", "durations", r"total_seconds\(\)"),
    ),
    (
        "datetime64-X",
        lambda: TorchPolyRegressor().fit(np.arange(30).astype("datetime64[D]").reshape(-1, 1), Y),
        ValueError,
        _all(r"\bX holds dates and times", r"datetime64\[D\]", "np.timedelta64"),
    ),
    (
        "datetime-y",
        lambda: TorchPolyRegressor().fit(X, pd.Series(_DATES)),
        ValueError,
        _all(r"\by holds dates and times", "predicts numbers", "predictions back"),
    ),
    (
        "complex-X",
        lambda: TorchPolyRegressor().fit(X + 1j, Y),
        # "Complex data not supported" is what scikit-learn's check_complex_data matches.
        ValueError,
        _all("Complex data not supported", r"\bX\b", r"\.real"),
    ),
    (
        "complex-y",
        lambda: TorchPolyRegressor().fit(X, Y + 1j),
        ValueError,
        _all("Complex data not supported", r"\by\b", r"\.real"),
    ),
    # Shapes.
    (
        "empty-X",
        lambda: TorchPolyRegressor().fit(np.empty((0, 2)), np.empty(0)),
        ValueError,
        _all(r"0 sample\(s\)", r"minimum of 1 is required"),
    ),
    (
        "zero-features",
        lambda: TorchPolyRegressor().fit(np.empty((30, 0)), Y),
        ValueError,
        _all(r"0 feature\(s\)", r"minimum of 1 is required"),
    ),
    (
        "1d-X",
        lambda: TorchPolyRegressor().fit(X[:, 0], Y),
        ValueError,
        _all("Expected 2D array, got 1D array", r"reshape\(-1, 1\)"),
    ),
    (
        "3d-X",
        lambda: TorchPolyRegressor().fit(X.reshape(30, 2, 1), Y),
        ValueError,
        _all("dim 3", "dim <= 2 is required"),
    ),
    (
        "3d-X-at-predict",
        lambda: _fitted().predict(X.reshape(30, 2, 1)),
        ValueError,
        _all("dim 3", "dim <= 2 is required"),
    ),
    (
        "X-y-length-mismatch",
        lambda: TorchPolyRegressor().fit(X, Y[:-1]),
        ValueError,
        _all(r"\bX\b[^.;]*\b30\b", r"\by\b[^.;]*\b29\b", "same number"),
    ),
    (
        "sample_weight-length-mismatch",
        lambda: TorchPolyRegressor().fit(X, Y, sample_weight=np.ones(29)),
        ValueError,
        _all(r"sample_weight has 29 entries", r"X has 30 samples", "one weight per row"),
    ),
    # Weights.
    (
        "negative-sample_weight",
        lambda: TorchPolyRegressor().fit(X, Y, sample_weight=_with(np.ones(30), 4, -1.0)),
        ValueError,
        _all("sample_weight", "[Nn]egative", "non-negative|>= ?0"),
    ),
    (
        "all-zero-sample_weight",
        lambda: TorchPolyRegressor().fit(X, Y, sample_weight=np.zeros(30)),
        ValueError,
        _all("[Ss]ample.?weights?", "non-zero|positive"),
    ),
    # After fit: outputs, feature count, feature names.
    (
        "partial_fit-n-outputs",
        lambda: TorchPolyRegressor().partial_fit(X, Y).partial_fit(X, np.c_[Y, Y]),
        ValueError,
        _all("y has 2 output", "fitted with 1", "partial_fit continues", "fresh estimator"),
    ),
    (
        "warm-start-n-outputs",
        lambda: _fitted(warm_start=True).fit(X, np.c_[Y, Y]),
        ValueError,
        _all(
            "y has 2 output", "fitted with 1", "warm_start=True continues", "set warm_start=False"
        ),
    ),
    (
        "warm-start-changed-terms",
        lambda: _fitted(degree=3, warm_start=True).set_params(degree=2).fit(X, Y),
        ValueError,
        _all("warm_start=True continues", r"degree \(fitted with 3, now 2\)", "warm_start=False"),
    ),
    (
        "partial_fit-changed-terms",
        lambda: (
            TorchPolyRegressor()
            .partial_fit(X, Y)
            .set_params(interaction_only=True)
            .partial_fit(X, Y)
        ),
        ValueError,
        _all(
            "partial_fit continues",
            r"interaction_only \(fitted with False, now True\)",
            "fresh estimator",
        ),
    ),
    (
        "score-n-outputs",
        lambda: _fitted().score(X, np.c_[Y, Y]),
        ValueError,
        _all("different number of output", r"2!=1"),
    ),
    (
        "predict-n-features",
        lambda: _fitted().predict(X[:, :1]),
        ValueError,
        _all("X has 1 features", "expecting 2 features"),
    ),
    (
        "partial_fit-n-features",
        lambda: TorchPolyRegressor().partial_fit(X, Y).partial_fit(X[:, :1], Y),
        ValueError,
        _all("X has 1 features", "expecting 2 features"),
    ),
    (
        "predict-feature-names",
        lambda: _fitted_on_frame().predict(pd.DataFrame(X, columns=["a", "c"])),
        ValueError,
        _all(
            "feature names should match",
            "unseen at fit time:\n- c",
            "seen at fit time, yet now missing:\n- b",
        ),
    ),
    # Degree.
    (
        "negative-degree",
        lambda: TorchPolyRegressor(degree=-1).fit(X, Y),
        ValueError,
        _all("'degree' parameter", r"range \[0, inf\)", "Got -1"),
    ),
    (
        "min-degree-above-max",
        lambda: TorchPolyRegressor(degree=(3, 1)).fit(X, Y),
        ValueError,
        _all(r"0 <= min_degree <= max_degree", r"degree=\(3, 1\)"),
    ),
    (
        "non-integer-degree",
        lambda: TorchPolyRegressor(degree=2.5).fit(X, Y),
        ValueError,
        _all("'degree' parameter", "must be an int", r"Got 2\.5"),
    ),
    (
        "non-integer-degree-in-tuple",
        lambda: TorchPolyRegressor(degree=(1, 2.5)).fit(X, Y),
        ValueError,
        _all("two integers", r"degree=\(1, 2\.5\)"),
    ),
    (
        "boolean-degree",
        lambda: TorchPolyRegressor(degree=True).fit(X, Y),
        ValueError,
        _all("degree must be an integer", "degree=True"),
    ),
    (
        "degree-0-without-intercept",
        lambda: TorchPolyRegressor(degree=0, fit_intercept=False).fit(X, Y),
        ValueError,
        _all("no term to fit", "degree >= 1 or fit_intercept=True"),
    ),
    # Memory: 3000 features at degree 3 is ~4.5e9 terms, too many on any machine.
    (
        "too-large-for-memory",
        lambda: TorchPolyRegressor(degree=3).fit(_rng.standard_normal((5, 3000)), np.arange(5.0)),
        MemoryError,
        _all(r"\b\d{10} terms", r"\d GiB|bytes", "[Ll]ower degree", "interaction_only=True"),
    ),
    # Optimizer, loss, device, batch_size, lr.
    (
        "unknown-optimizer",
        lambda: TorchPolyRegressor(optimizer="adamm").fit(X, Y),
        ValueError,
        _all("optimizer='adamm'", r"\badam\b", r"\blbfgs\b", r"\bsgd\b"),
    ),
    (
        "abstract-optimizer",
        lambda: TorchPolyRegressor(optimizer="Optimizer").fit(X, Y),
        ValueError,
        _all("optimizer='Optimizer'", "abstract base class", r"step\(\)", r"\badam\b"),
    ),
    (
        "invalid-optimizer_kwargs",
        lambda: TorchPolyRegressor(optimizer="adam", optimizer_kwargs={"betas": (2, 3)}).fit(X, Y),
        ValueError,
        _all(
            r"optimizer_kwargs=\{'betas': \(2, 3\)\}",
            "Invalid beta",
            r"defaults: betas=\(0\.9, 0\.999\)",
        ),
    ),
    (
        "unknown-optimizer_kwargs",
        lambda: TorchPolyRegressor(optimizer="adam", optimizer_kwargs={"beta": 0.5}).fit(X, Y),
        ValueError,
        _all("optimizer_kwargs=", "takes no 'beta'", "keyword arguments are betas"),
    ),
    (
        "lr-in-optimizer_kwargs",
        lambda: TorchPolyRegressor(optimizer="adam", optimizer_kwargs={"lr": 0.1}).fit(X, Y),
        ValueError,
        _all("optimizer_kwargs=", "sets 'lr'", "lr parameter"),
    ),
    (
        "unknown-loss",
        lambda: TorchPolyRegressor(loss="l2").fit(X, Y),
        ValueError,
        _all("'loss' parameter", "'squared_error'", "'huber'", "'absolute_error'", "Got 'l2'"),
    ),
    (
        "unknown-device",
        lambda: TorchPolyRegressor(device="tpu").fit(X, Y),
        ValueError,
        _all("device='tpu'", "'auto'", r"\bcpu\b"),
    ),
    (
        "unsupported-device",
        lambda: TorchPolyRegressor(device="meta").fit(X, Y),
        ValueError,
        _all("device='meta'", "not supported", r"\bcpu\b"),
    ),
    (
        "unavailable-cuda-device",
        lambda: TorchPolyRegressor(device=_absent_cuda()).fit(X, Y),
        ValueError,
        _all(f"device='{_absent_cuda()}'", r"available: [^.]*\bcpu\b"),
    ),
    (
        "zero-batch_size",
        lambda: TorchPolyRegressor(batch_size=0).fit(X, Y),
        ValueError,
        _all("'batch_size' parameter", r"range \[1, inf\) or None", "Got 0"),
    ),
    (
        "negative-batch_size",
        lambda: TorchPolyRegressor(batch_size=-8).fit(X, Y),
        ValueError,
        _all("'batch_size' parameter", r"range \[1, inf\) or None", "Got -8"),
    ),
    (
        "zero-lr",
        lambda: TorchPolyRegressor(lr=0).fit(X, Y),
        ValueError,
        _all("'lr' parameter", r"range \(0\.0, inf\)", "Got 0"),
    ),
    (
        "negative-lr",
        lambda: TorchPolyRegressor(lr=-0.1).fit(X, Y),
        ValueError,
        _all("'lr' parameter", r"range \(0\.0, inf\)", r"Got -0\.1"),
    ),
    (
        "partial_fit-switch-to-exact-statistics",
        lambda: (
            TorchPolyRegressor(loss="huber")
            .partial_fit(X, Y)
            .partial_fit(X, Y)
            .set_params(loss="squared_error")
            .partial_fit(X, Y)
        ),
        ValueError,
        _all(
            "exact statistics",
            "without recording their rows",
            "Keep the stream's loss and batch_size",
            "fresh estimator",
        ),
    ),
    (
        "sparse-only-optimizer",
        lambda: TorchPolyRegressor(optimizer="sparseadam").fit(X, Y),
        ValueError,
        _all("optimizer='sparseadam'", "sparse gradients", "'adam'"),
    ),
    # A callable loss that breaks its contract.
    (
        "loss-not-scalar",
        lambda: TorchPolyRegressor(loss=lambda p, t, w: (p - t) ** 2).fit(X, Y),
        ValueError,
        _all(r"shape \(30, 1\), not a scalar", "weighted mean", "torch tensor"),
    ),
    (
        "loss-uses-numpy",
        lambda: TorchPolyRegressor(loss=lambda p, t, w: np.mean((p - t) ** 2, axis=0)).fit(X, Y),
        TypeError,
        _all("raised TypeError", "torch operations"),
    ),
    (
        "loss-detached",
        lambda: TorchPolyRegressor(loss=lambda p, t, w: ((p - t) ** 2).mean().detach()).fit(X, Y),
        TypeError,
        _all("autograd cannot trace", "torch operations"),
    ),
    # Inputs whose raw-basis coefficients float64 cannot hold.
    (
        "X-too-large-for-raw-coefficients",
        lambda: TorchPolyRegressor().fit(X * 1e160, Y),
        ValueError,
        _all(r"reach [\d.]+e\+160", "too large", "Rescale X", "StandardScaler"),
    ),
    (
        "X-too-small-for-raw-coefficients",
        lambda: TorchPolyRegressor().fit(X * 1e-160, Y),
        ValueError,
        _all(r"reach [\d.]+e-16\d", "too small", "Rescale X"),
    ),
    (
        "terms-overflow",
        lambda: _fitted(warm_start=True).fit(X * 1e160, Y),
        ValueError,
        _all(
            "overflowed float64",
            "Rescale X",
            "keeps the first fit's input scaling",
            "refit from scratch",
        ),
    ),
    (
        "partial_fit-terms-overflow",
        lambda: (
            TorchPolyRegressor(loss="huber", dtype="float32")
            .partial_fit(X, Y)
            .partial_fit(X * 1e20, Y)
        ),
        ValueError,
        _all("overflowed float32", "partial_fit stream", "dtype='float64'"),
    ),
    (
        "y-spread-too-small",
        lambda: TorchPolyRegressor().fit(X, Y * 1e-170),
        ValueError,
        _all(r"y's spread \(\S+e-170\) is too small", "underflow", "TransformedTargetRegressor"),
    ),
    (
        "y-spread-too-large-for-float32",
        lambda: TorchPolyRegressor(dtype="float32").fit(X, Y * 1e25),
        ValueError,
        _all(r"y's spread \(\S+e\+2\d\) is too large", "overflow", "dtype='float64'"),
    ),
    (
        "early-stopping-too-few-rows",
        lambda: TorchPolyRegressor(early_stopping=True).fit(X[:2], Y[:2]),
        ValueError,
        _all("early_stopping=True", "at least 2", "got 2 samples", "early_stopping=False"),
    ),
    # A fit that diverges: the loss grows by ~1e12 per step.
    (
        "diverging-fit",
        lambda: TorchPolyRegressor(optimizer="sgd", lr=1e6).fit(X, Y),
        DivergenceError,
        _all(r"lr=1e\+06", "smaller lr", "previous state kept"),
    ),
]
if not _mps_available():
    BAD_INPUTS.append(
        (
            "unavailable-mps-device",
            lambda: TorchPolyRegressor(device="mps").fit(X, Y),
            ValueError,
            _all("device='mps'", "MPS is not available", r"available: [^.]*\bcpu\b"),
        )
    )


@pytest.mark.parametrize(
    "trigger, error, message", [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_error(trigger, error, message):
    with pytest.raises(error, match=message):
        trigger()


def _bad_input_section():
    """The estimator's table: the command line's follows it (``tests/test_cli.py``)."""
    text = DOC.read_text(encoding="utf-8")
    return text[: text.index("\nThe command line\n")]


def test_reliability_doc_lists_every_case():
    text = _bad_input_section()
    documented = re.findall(r"^\s*\* - ``([\w-]+)``", text, flags=re.MULTILINE)
    assert len(documented) == len(set(documented)), "a case is listed twice"
    # The MPS row is documented everywhere but only tested where MPS is absent.
    expected = {case[0] for case in BAD_INPUTS} | {"unavailable-mps-device"}
    assert set(documented) == expected


# The message depends on the machine's devices.
MACHINE_DEPENDENT_MESSAGES = {"unavailable-cuda-device", "unavailable-mps-device"}


def _documented_messages():
    """Case id -> the first literal of its message column (rows that quote a message)."""
    text = _bad_input_section()
    messages = {}
    for row in re.split(r"\n   \* - ``", text)[1:]:
        case = row.split("``", 1)[0]
        fields = re.split(r"\n     - ", row.split("\n\n", 1)[0])
        literal = re.match(r"``(.*?)``", " ".join(fields[3].split())) if len(fields) > 3 else None
        if literal:
            messages[case] = literal.group(1)
    return messages


@pytest.mark.parametrize(
    "trigger, case",
    [
        pytest.param(c[1], c[0], id=c[0])
        for c in BAD_INPUTS
        if c[0] in _documented_messages() and c[0] not in MACHINE_DEPENDENT_MESSAGES
    ],
)
def test_reliability_doc_quotes_the_current_message(trigger, case):
    """Every quoted message is the one raised today; "…" stands for a part left out."""
    with pytest.raises(Exception) as caught:
        trigger()
    actual = " ".join(str(caught.value).split())
    for part in _documented_messages()[case].split("…"):
        assert part.strip(" .") in actual


def test_memory_check_refuses_before_allocating():
    X_wide = _rng.standard_normal((5, 3000))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(MemoryError, match="terms"):
            TorchPolyRegressor(degree=3).fit(X_wide, np.arange(5.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5.0
    assert peak < 50 * 2**20


# --------------------------------------------------------------- failed fits keep no state


def _fitted_attributes(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") or k.startswith("_")}


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    # Pickle compares nested arrays, lists and dicts bit for bit.
    for key in before:
        assert pickle.dumps(before[key]) == pickle.dumps(after[key]), key


FAILING_REFITS = {
    "nan-in-X": lambda est: est.fit(_with(X, (3, 1), np.nan), Y),
    "y-length-mismatch": lambda est: est.fit(X, Y[:-1]),
    "negative-sample_weight": lambda est: est.fit(X, Y, sample_weight=-np.ones(30)),
    "unknown-optimizer": lambda est: est.set_params(optimizer="adamm").fit(X, Y),
    "absent-device": lambda est: est.set_params(device=_absent_cuda()).fit(X, Y),
    "too-large-for-memory": lambda est: est.set_params(degree=3).fit(
        _rng.standard_normal((5, 3000)), np.arange(5.0)
    ),
    "negative-degree": lambda est: est.set_params(degree=-1).fit(X, Y),
    "no-term-to-fit": lambda est: est.set_params(degree=0, fit_intercept=False).fit(X, Y),
    # Other targets, so that a warm start is not already at the optimum.
    "diverging-sgd": lambda est: est.set_params(optimizer="sgd", lr=1e6, n_iter_no_change=1000).fit(
        X, -Y
    ),
    "X-overflows-raw-coefficients": lambda est: est.fit(X * 1e160, Y),
    "loss-not-scalar": lambda est: est.set_params(loss=lambda p, t, w: (p - t) ** 2).fit(X, Y),
    "partial_fit-n-outputs": lambda est: est.partial_fit(X, np.c_[Y, Y]),
    "partial_fit-changed-terms": lambda est: est.set_params(degree=3).partial_fit(X, Y),
    "partial_fit-nan": lambda est: est.partial_fit(_with(X, (0, 0), np.inf), Y),
    "partial_fit-diverging": lambda est: est.set_params(
        optimizer="sgd", lr=1e6, n_iter_no_change=1000
    ).partial_fit(X, -Y),
}


@pytest.mark.parametrize("warm_start", [False, True], ids=["cold", "warm_start"])
@pytest.mark.parametrize("refit", FAILING_REFITS.values(), ids=FAILING_REFITS.keys())
def test_failed_refit_keeps_the_previous_model(refit, warm_start):
    est = TorchPolyRegressor(warm_start=warm_start).fit(X, Y)
    before = _fitted_attributes(est)
    prediction = est.predict(X)
    with pytest.raises((ValueError, TypeError, MemoryError, DivergenceError)):
        refit(est)
    _assert_same_state(before, _fitted_attributes(est))
    # Predictions come from the fitted state, whatever the parameters now say.
    assert_array_equal(est.predict(X), prediction)


# On a fresh estimator a second output is no error: it is the first fit.
FAILING_FIRST_FITS = {
    k: v
    for k, v in FAILING_REFITS.items()
    if k not in ("partial_fit-n-outputs", "partial_fit-changed-terms")
}


@pytest.mark.parametrize("refit", FAILING_FIRST_FITS.values(), ids=FAILING_FIRST_FITS.keys())
def test_failed_first_fit_leaves_the_estimator_unfitted(refit):
    est = TorchPolyRegressor()
    params = dict(vars(est))
    with pytest.raises((ValueError, TypeError, MemoryError, DivergenceError)):
        refit(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert set(vars(est)) == set(params)


DIVERGING = {
    "sgd": dict(optimizer="sgd", lr=1e6),
    "sgd-raw-parametrization": dict(optimizer="sgd", lr=1e6, conditioning=False),
    "adam-mini-batches": dict(optimizer="adam", lr=1e6, batch_size=8, random_state=0),
    "sgd-no-stall-stop": dict(optimizer="sgd", lr=1e6, n_iter_no_change=1000),
}


@pytest.mark.parametrize("params", DIVERGING.values(), ids=DIVERGING.keys())
def test_diverging_fit_raises_and_keeps_previous_model(params):
    est = _fitted()
    prediction = est.predict(X)
    with pytest.raises(DivergenceError, match=_all("lr=1e\\+06", "smaller lr")):
        est.set_params(**params).fit(X, Y)
    assert np.isfinite(est.coef_).all() and np.isfinite(est.intercept_)
    assert_array_equal(est.predict(X), prediction)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("lr", [1e2, 1e4])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_fit_never_returns_non_finite_coefficients(optimizer, lr):
    est = TorchPolyRegressor(degree=3, optimizer=optimizer, lr=lr, max_iter=50, random_state=0)
    try:
        est.fit(X, Y)
    except DivergenceError:
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
        return
    assert np.isfinite(est.coef_).all() and np.isfinite(est.intercept_)
    assert np.isfinite(est.loss_curve_).all()
    assert np.isfinite(est.predict(X)).all()


def test_divergence_error_is_a_floating_point_error():
    # Callers that already catch FloatingPointError (numpy's errstate style) see it too.
    assert issubclass(DivergenceError, FloatingPointError)
