"""Torch tensors in and out: fits on tensors equal the NumPy fits, rows stay on their device,
bad tensors get the arrays' messages, and array-API dispatch returns tensors.
"""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal

from autopoly import TorchPolyRegressor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")


def _problem(n=200, n_features=2, n_outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = 3 * rng.standard_normal((n, n_features)) + 5
    Y = np.column_stack(
        [X[:, 0] ** 2 - (k + 1) * X[:, -1] + 0.1 * rng.standard_normal(n) for k in range(n_outputs)]
    )
    w = rng.uniform(0.5, 2.0, n)
    return X, (Y[:, 0] if n_outputs == 1 else Y), w


def _same_fit(model, ref, rtol):
    assert_allclose(model.coef_, ref.coef_, rtol=rtol, atol=rtol * np.abs(ref.coef_).max())
    assert_allclose(model.intercept_, ref.intercept_, rtol=rtol)
    assert model.n_iter_ == ref.n_iter_


PARAMS = {
    "default": {},
    "ridge": {"alpha": 3.0},
    "huber": {"loss": "huber", "epsilon": 0.5},
    "adam-minibatch": {
        "optimizer": "adam",
        "lr": 0.05,
        "batch_size": 32,
        "max_iter": 30,
        "random_state": 0,
    },
    "early-stopping": {"early_stopping": True, "random_state": 0},
    "raw": {"conditioning": False, "max_iter": 30},
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("params", PARAMS.values(), ids=PARAMS.keys())
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_fit_on_float64_tensors_equals_the_numpy_fit(params, n_outputs):
    X, y, w = _problem(n_outputs=n_outputs)
    ref = TorchPolyRegressor(**params).fit(X, y, sample_weight=w)
    model = TorchPolyRegressor(**params).fit(
        torch.from_numpy(X), torch.from_numpy(y), sample_weight=torch.from_numpy(w)
    )
    _same_fit(model, ref, rtol=1e-12)
    assert model.coef_.shape == ref.coef_.shape
    assert isinstance(model.coef_, np.ndarray)  # NumPy attributes with dispatch off
    pred = model.predict(torch.from_numpy(X))
    assert isinstance(pred, np.ndarray) and pred.dtype == np.float64
    assert_allclose(pred, ref.predict(X), rtol=1e-12, atol=1e-12 * np.abs(y).max())


def test_fit_on_float32_tensors_equals_the_numpy_float32_fit():
    X, y, _ = _problem()
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    for dtype in ("float64", "float32"):
        ref = TorchPolyRegressor(dtype=dtype).fit(X32, y32)
        model = TorchPolyRegressor(dtype=dtype).fit(torch.from_numpy(X32), torch.from_numpy(y32))
        _same_fit(model, ref, rtol=1e-12)


@pytest.mark.parametrize(
    "dtype", [torch.int32, torch.int64, torch.bool, torch.float16, torch.bfloat16]
)
def test_other_dtypes_fit_as_their_float64_values(dtype):
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.integers(0, 2 if dtype == torch.bool else 6, (60, 2))).to(dtype)
    y = torch.arange(60, dtype=dtype if dtype != torch.bool else torch.int64) % 5
    values = X.to(torch.float64).numpy()
    ref = TorchPolyRegressor(degree=1).fit(values, y.to(torch.float64).numpy())
    model = TorchPolyRegressor(degree=1).fit(X, y)
    _same_fit(model, ref, rtol=1e-12)


def test_non_contiguous_and_sliced_tensors():
    X, y, _ = _problem()
    wide = torch.from_numpy(np.ascontiguousarray(X.T))  # (2, n): .T is a non-contiguous view
    reversed_rows = torch.flip(torch.from_numpy(X), [0])
    ref = TorchPolyRegressor().fit(X, y)
    _same_fit(TorchPolyRegressor().fit(wide.T, torch.from_numpy(y)), ref, rtol=1e-12)
    flipped = TorchPolyRegressor().fit(reversed_rows, torch.flip(torch.from_numpy(y), [0]))
    _same_fit(flipped, TorchPolyRegressor().fit(X[::-1], y[::-1]), rtol=1e-12)
    every_other = torch.from_numpy(X)[::2]
    assert_allclose(
        TorchPolyRegressor().fit(every_other, torch.from_numpy(y)[::2]).coef_,
        TorchPolyRegressor().fit(X[::2], y[::2]).coef_,
        rtol=1e-12,
    )


def test_mixed_inputs_follow_x():
    X, y, w = _problem()
    ref = TorchPolyRegressor().fit(X, y, sample_weight=w)
    tensor_x = TorchPolyRegressor().fit(torch.from_numpy(X), y, sample_weight=list(w))
    numpy_x = TorchPolyRegressor().fit(X, torch.from_numpy(y), sample_weight=torch.from_numpy(w))
    _same_fit(tensor_x, ref, rtol=1e-12)
    _same_fit(numpy_x, ref, rtol=1e-12)
    scalar_weight = TorchPolyRegressor().fit(torch.from_numpy(X), y, sample_weight=2.0)
    _same_fit(scalar_weight, TorchPolyRegressor().fit(X, y), rtol=1e-12)


def test_partial_fit_and_warm_start_on_tensors_equal_numpy():
    X, y, _ = _problem(n=300)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    stream, ref = TorchPolyRegressor(), TorchPolyRegressor()
    for rows in (slice(0, 100), slice(100, 300)):
        stream.partial_fit(Xt[rows], yt[rows])
        ref.partial_fit(X[rows], y[rows])
    _same_fit(stream, ref, rtol=1e-12)
    assert_allclose(stream.coef_, TorchPolyRegressor().fit(X, y).coef_, rtol=1e-9)
    warm = TorchPolyRegressor(warm_start=True).fit(Xt[:150], yt[:150]).fit(Xt, yt)
    _same_fit(warm, TorchPolyRegressor(warm_start=True).fit(X[:150], y[:150]).fit(X, y), rtol=1e-12)


def test_partial_fit_epochs_on_tensors_equal_numpy():
    X, y, _ = _problem(n=300)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    params = {"loss": "huber", "optimizer": "adam", "lr": 0.05, "batch_size": 50, "random_state": 0}
    stream, ref = TorchPolyRegressor(**params), TorchPolyRegressor(**params)
    for rows in (slice(0, 100), slice(100, 200), slice(200, 300)):
        stream.partial_fit(Xt[rows], yt[rows])
        ref.partial_fit(X[rows], y[rows])
    assert_allclose(stream.coef_, ref.coef_, rtol=1e-12)


def test_score_on_tensors_equals_numpy_score():
    X, y, w = _problem(n_outputs=2)
    model = TorchPolyRegressor().fit(X, y)
    for weights in (None, w):
        expected = model.score(X, y, sample_weight=weights)
        got = model.score(
            torch.from_numpy(X),
            torch.from_numpy(y),
            sample_weight=None if weights is None else torch.from_numpy(weights),
        )
        assert isinstance(got, float)
        assert got == pytest.approx(expected, rel=1e-12)
    constant = np.full(len(X), 2.0)
    exact = TorchPolyRegressor(degree=1).fit(X, constant)
    assert exact.score(torch.from_numpy(X), torch.from_numpy(constant)) == exact.score(X, constant)


def test_requires_grad_inputs_are_detached_silently():
    X, y, _ = _problem()
    Xt = torch.from_numpy(X).clone().requires_grad_(True)
    yt = torch.from_numpy(y).clone().requires_grad_(True)
    before = Xt.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = TorchPolyRegressor().fit(Xt, yt)
        pred = model.predict(Xt)
    _same_fit(model, TorchPolyRegressor().fit(X, y), rtol=1e-12)
    assert isinstance(pred, np.ndarray)
    assert Xt.grad is None and yt.grad is None
    assert_array_equal(Xt.detach().numpy(), before.numpy())  # the user's tensor untouched


def test_array_api_dispatch_returns_tensors_on_the_input_device():
    X, y, _ = _problem(n_outputs=2)
    ref = TorchPolyRegressor().fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        model = TorchPolyRegressor().fit(torch.from_numpy(X), torch.from_numpy(y))
        pred = model.predict(torch.from_numpy(X))
        numpy_pred = model.predict(X)
    assert isinstance(pred, torch.Tensor) and pred.dtype == torch.float64
    assert pred.device.type == "cpu"
    assert isinstance(numpy_pred, np.ndarray)
    assert_allclose(pred.numpy(), ref.predict(X), rtol=1e-12, atol=1e-10)
    # sklearn's array-API convention for the attributes; the pickled state is NumPy.
    assert isinstance(model.coef_, torch.Tensor) and isinstance(model.powers_, torch.Tensor)
    assert_allclose(model.coef_.numpy(), ref.coef_, rtol=1e-12)
    state = model.__getstate__()
    assert isinstance(state["coef_"], np.ndarray) and isinstance(state["intercept_"], np.ndarray)
    # With dispatch off again, a tensor in gives NumPy out.
    assert isinstance(model.predict(torch.from_numpy(X)), np.ndarray)
    assert list(model.get_feature_names_out()) == list(ref.get_feature_names_out())


def test_device_auto_follows_the_tensor():
    X, y, _ = _problem()
    model = TorchPolyRegressor(device="auto").fit(torch.from_numpy(X), torch.from_numpy(y))
    assert model.device_ == "cpu"


# ------------------------------------------------------------------------- bad tensors

BAD = {
    "nan": (
        lambda X, y: (
            X.index_put(
                (torch.tensor([3]), torch.tensor([1])), torch.tensor(float("nan"), dtype=X.dtype)
            ),
            y,
        ),
        ValueError,
        r"Input X contains NaN \(first at row 3, column 1\).*drop those rows",
    ),
    "inf-y": (
        lambda X, y: (
            X,
            y.index_put((torch.tensor([5]),), torch.tensor(float("inf"), dtype=y.dtype)),
        ),
        ValueError,
        r"Input y contains infinity \(first at row 5\)",
    ),
    "1d-X": (
        lambda X, y: (X[:, 0], y),
        ValueError,
        r"Expected a 2D tensor for X.*reshape\(-1, 1\)",
    ),
    "3d-X": (lambda X, y: (X[:, :, None], y), ValueError, r"Expected a 2D tensor for X"),
    "complex": (
        lambda X, y: (X.to(torch.complex128), y),
        ValueError,
        r"Complex data not supported: X has complex values.*X\.real",
    ),
    "sparse": (lambda X, y: (X.to_sparse(), y), ValueError, r"sparse torch tensor.*to_dense\(\)"),
    "no-rows": (lambda X, y: (X[:0], y[:0]), ValueError, r"0 sample\(s\).*minimum of 1"),
    "length": (lambda X, y: (X, y[:-2]), ValueError, r"X has 40 samples but y has 38"),
    "y-3d": (lambda X, y: (X, y[:, None, None]), ValueError, r"y must be 1D or 2D"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_tensors_get_clear_errors_and_keep_the_fitted_state(case):
    make, error, message = case
    X, y, _ = _problem(n=40)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    model = TorchPolyRegressor().fit(X, y)
    coef = model.coef_.copy()
    bad_X, bad_y = make(Xt, yt)
    with pytest.raises(error, match=message):
        model.fit(bad_X, bad_y)
    assert_array_equal(model.coef_, coef)


def test_bad_sample_weights_on_tensors():
    X, y, _ = _problem(n=40)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w = torch.ones(40, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"negative values \(first at index 7"):
        TorchPolyRegressor().fit(
            Xt,
            yt,
            sample_weight=w.index_put((torch.tensor([7]),), torch.tensor(-1.0, dtype=w.dtype)),
        )
    with pytest.raises(ValueError, match=r"sample_weight has 39 entries but X has 40 samples"):
        TorchPolyRegressor().fit(Xt, yt, sample_weight=w[:39])
    with pytest.raises(ValueError, match=r"Input sample_weight contains NaN \(first at row 2\)"):
        TorchPolyRegressor().fit(
            Xt,
            yt,
            sample_weight=w.index_put(
                (torch.tensor([2]),), torch.tensor(float("nan"), dtype=w.dtype)
            ),
        )
    with pytest.raises(ValueError, match="at least one non-zero"):
        TorchPolyRegressor().fit(Xt, yt, sample_weight=torch.zeros(40))


def test_predict_checks_tensors_like_arrays():
    X, y, _ = _problem(n=40)
    model = TorchPolyRegressor().fit(torch.from_numpy(X), torch.from_numpy(y))
    with pytest.raises(ValueError, match="X has 3 features, but TorchPolyRegressor is expecting 2"):
        model.predict(torch.ones((5, 3)))
    with pytest.raises(ValueError, match=r"Input X contains NaN \(first at row 0, column 0\)"):
        model.predict(torch.full((2, 2), float("nan")))


# ------------------------------------------------------- rows never copied to the host


@pytest.fixture
def host_copies(monkeypatch):
    """Records the element count of every float tensor taken off a device or copied into
    NumPy (a CPU tensor's ``.numpy()`` view shares its memory: not a copy).
    """
    seen = []
    for name in ("cpu", "numpy", "tolist", "__array__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            out = _original(self, *args, **kwargs)
            view = _name == "numpy" and out.ctypes.data == self.data_ptr()
            if self.is_floating_point() and not view:
                seen.append(self.numel())
            return out

        monkeypatch.setattr(torch.Tensor, name, spy)
    original_to = torch.Tensor.to

    def to_spy(self, *args, **kwargs):
        out = original_to(self, *args, **kwargs)
        if self.is_floating_point() and self.device.type != "cpu" and out.device.type == "cpu":
            seen.append(self.numel())
        return out

    monkeypatch.setattr(torch.Tensor, "to", to_spy)
    return seen


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "params",
    [{}, {"loss": "huber"}, {"early_stopping": True, "random_state": 0}],
    ids=["squared", "huber", "early-stopping"],
)
def test_tensor_rows_never_leave_their_device(device, params, host_copies):
    n = 5_000
    X, y, w = _problem(n=n)
    Xt, yt, wt = (torch.from_numpy(a).to(device) for a in (X, y, w))
    with sklearn.config_context(array_api_dispatch=True):
        model = TorchPolyRegressor(device="auto", **params).fit(Xt, yt, sample_weight=wt)
        pred = model.predict(Xt)
        model.score(Xt, yt)
    assert model.device_.startswith(device)
    assert pred.device.type == device
    # Only small things came to the host: coefficients, scalings, factors, scalars (on the
    # CPU not even those need a copy).
    assert all(size < n // 10 for size in host_copies), max(host_copies)
    host_copies.clear()
    Xt.cpu()  # the spy sees a copy of the rows
    assert host_copies == [Xt.numel()]


@cuda_only
def test_cuda_tensors_fit_on_cuda_and_equal_the_cpu_fit():
    X, y, _ = _problem(n=2_000)
    ref = TorchPolyRegressor().fit(X, y)
    model = TorchPolyRegressor(device="auto").fit(
        torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
    )
    assert model.device_.startswith("cuda")
    assert_allclose(model.coef_, ref.coef_, rtol=1e-9, atol=1e-9)
    pred = model.predict(torch.from_numpy(X).cuda())
    assert isinstance(pred, np.ndarray)
    # An explicit device="cpu" takes one documented copy of the rows and fits on the CPU.
    on_cpu = TorchPolyRegressor(device="cpu").fit(
        torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
    )
    assert on_cpu.device_ == "cpu"
    assert_allclose(on_cpu.coef_, ref.coef_, rtol=1e-12)


# ------------------------------------------ score, mixed inputs and contexts (review)


def test_score_on_tensors_validates_like_the_numpy_score():
    X, y, w = _problem(n=50)
    Xt, yt, wt = (torch.from_numpy(a) for a in (X, y, w))
    model = TorchPolyRegressor().fit(X, y)
    two = TorchPolyRegressor().fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match=r"different number of output \(1!=2\)"):
        two.score(Xt, yt)
    with pytest.raises(ValueError, match=r"different number of output \(2!=1\)"):
        model.score(Xt, torch.stack([yt, yt], 1))
    with pytest.raises(ValueError, match=r"Input y contains NaN \(first at row 0\)"):
        model.score(Xt, torch.full((50,), float("nan")))
    with pytest.raises(ValueError, match="sample_weight has 10 entries but X has 50 samples"):
        model.score(Xt, yt, wt[:10])
    with pytest.raises(ValueError, match="X has 1 features, but TorchPolyRegressor is expecting 2"):
        model.score(X[:, :1], yt)  # a NumPy X beside a tensor y is validated too
    with pytest.raises(ValueError, match="y must be 1D or 2D"):
        model.score(Xt, torch.tensor(1.0))
    # Values: what r2_score gives, negative weights included (scoring does not refuse them).
    assert model.score(Xt, yt, -wt) == pytest.approx(model.score(X, y, -w), rel=1e-12)
    assert model.score(X.tolist(), yt) == pytest.approx(model.score(X, y), rel=1e-12)
    with pytest.warns(sklearn.exceptions.UndefinedMetricWarning):
        assert np.isnan(model.score(Xt[:1], yt[:1]))


def test_numpy_targets_beside_a_tensor_x_convert_as_sklearn_converts_them():
    import pandas as pd

    X, y, w = _problem(n=50)
    Xt = torch.from_numpy(X)
    ref = TorchPolyRegressor().fit(X[::-1], y[::-1], sample_weight=w[::-1])
    _same_fit(
        TorchPolyRegressor().fit(torch.flip(Xt, [0]), y[::-1], sample_weight=w[::-1]),
        ref,
        rtol=1e-12,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable NumPy array" warning from torch
        series = TorchPolyRegressor().fit(Xt, pd.Series(y))
        read_only = y.copy()
        read_only.flags.writeable = False
        TorchPolyRegressor().fit(Xt, read_only)
    _same_fit(series, TorchPolyRegressor().fit(X, y), rtol=1e-12)
    as_objects = TorchPolyRegressor().fit(Xt, y.astype(object))
    _same_fit(as_objects, TorchPolyRegressor().fit(X, y.astype(object)), rtol=1e-12)
    zero_d = TorchPolyRegressor().fit(X, y, sample_weight=torch.tensor(2.0))
    _same_fit(zero_d, TorchPolyRegressor().fit(X, y), rtol=1e-12)


def test_bad_targets_and_weights_name_themselves():
    X, y, w = _problem(n=50)
    Xt, yt, wt = (torch.from_numpy(a) for a in (X, y, w))
    with pytest.raises(ValueError, match=r"y has no columns \(shape \(50, 0\)\)"):
        TorchPolyRegressor().fit(Xt, torch.empty(50, 0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"Sample weights must be 1D array or scalar, got 2D"):
        TorchPolyRegressor().fit(Xt, yt, sample_weight=wt[:, None])
    for X_in in (X, Xt):
        with pytest.raises(ValueError, match=r"sample_weight is a sparse torch tensor"):
            TorchPolyRegressor().fit(X_in, y, sample_weight=wt.to_sparse())
        with pytest.raises(ValueError, match=r"sample_weight has complex values.*\.real"):
            TorchPolyRegressor().fit(X_in, y, sample_weight=wt.to(torch.complex128))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_fit_inside_no_grad_and_inference_mode(context):
    X, y, _ = _problem(n=60)
    ref = TorchPolyRegressor(loss="huber").fit(X, y)
    with context():
        Xt, yt = torch.from_numpy(X).clone(), torch.from_numpy(y).clone()
        model = TorchPolyRegressor(loss="huber").fit(Xt, yt)
        model.partial_fit(Xt, yt)
    assert_allclose(TorchPolyRegressor(loss="huber").fit(Xt, yt).coef_, ref.coef_, rtol=1e-12)
    assert np.isfinite(model.coef_).all()
