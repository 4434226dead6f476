"""The estimator's contract: terms, fitting, sklearn integration, devices."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from autopoly import TorchPolyRegressor
from autopoly._device import available_devices, resolve_device

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()),
            reason="no MPS",
        ),
    ),
]


def _tutorial(seed):
    gen = np.random.default_rng(seed)
    x = 5 * gen.standard_normal((20, 1))
    return x, x[:, 0] ** 2 + 2 * x[:, 0] + 3


@pytest.mark.parametrize("seed", range(10))
def test_tutorial_task_recovers_true_coefficients(seed):
    x, y = _tutorial(seed)
    model = TorchPolyRegressor(degree=2).fit(x, y)
    assert_allclose(model.coef_, [2.0, 1.0], atol=1e-6, rtol=0)
    assert abs(model.intercept_ - 3.0) < 1e-6
    assert model.n_iter_ < model.max_iter


@pytest.mark.parametrize(
    "degree, interaction_only",
    [
        (1, False),
        (2, False),
        (3, False),
        ((2, 3), False),
        (3, True),
        ((0, 2), False),
        ((2, 2), True),
    ],
)
def test_terms_match_polynomial_features(rng, degree, interaction_only):
    X = rng.standard_normal((30, 3))
    y = rng.standard_normal(30)
    model = TorchPolyRegressor(degree=degree, interaction_only=interaction_only).fit(X, y)
    ref = PolynomialFeatures(degree, interaction_only=interaction_only, include_bias=False).fit(X)
    assert_array_equal(model.powers_, ref.powers_)
    assert_array_equal(model.get_feature_names_out(), ref.get_feature_names_out())
    assert_array_equal(
        model.get_feature_names_out(["a", "b", "c"]), ref.get_feature_names_out(["a", "b", "c"])
    )


def test_feature_names_from_dataframe(rng):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(rng.standard_normal((25, 2)), columns=["speed", "load"])
    model = TorchPolyRegressor(degree=2).fit(X, rng.standard_normal(25))
    assert_array_equal(model.feature_names_in_, ["speed", "load"])
    assert list(model.get_feature_names_out()) == [
        "speed",
        "load",
        "speed^2",
        "speed load",
        "load^2",
    ]


@pytest.mark.parametrize("degree", [1, 2, 3, (2, 3)])
@pytest.mark.parametrize("interaction_only", [False, True])
def test_coefficients_are_least_squares_in_raw_basis(rng, degree, interaction_only):
    X = 3 + 2 * rng.standard_normal((200, 3))
    y = rng.standard_normal(200) + X[:, 0] * X[:, 1]
    model = TorchPolyRegressor(degree=degree, interaction_only=interaction_only).fit(X, y)
    P = PolynomialFeatures(degree, interaction_only=interaction_only, include_bias=False)
    A = np.c_[np.ones(len(X)), P.fit_transform(X)]
    ref, *_ = np.linalg.lstsq(A, y, rcond=None)
    assert_allclose(model.intercept_, ref[0], rtol=1e-7, atol=1e-9)
    assert_allclose(model.coef_, ref[1:], rtol=1e-7, atol=1e-9)
    assert_allclose(model.predict(X), A @ ref, rtol=1e-9, atol=1e-9)


def test_no_intercept(rng):
    X = rng.uniform(1, 2, (100, 2))
    y = X[:, 0] ** 2 - X[:, 1]
    model = TorchPolyRegressor(degree=2, fit_intercept=False).fit(X, y)
    assert model.intercept_ == 0.0
    assert_allclose(model.coef_, [0, -1, 1, 0, 0], atol=1e-9)


def test_multi_output_equals_separate_fits(rng):
    X = rng.standard_normal((80, 2))
    Y = np.c_[X[:, 0] ** 2, X[:, 1] - X[:, 0] * X[:, 1], 1 + X[:, 0]]
    Y = Y + 0.1 * rng.standard_normal(Y.shape)
    joint = TorchPolyRegressor(degree=2).fit(X, Y)
    assert joint.coef_.shape == (3, 5) and joint.intercept_.shape == (3,)
    assert joint.predict(X).shape == (80, 3)
    for k in range(3):
        single = TorchPolyRegressor(degree=2).fit(X, Y[:, k])
        assert_allclose(joint.coef_[k], single.coef_, rtol=1e-9, atol=1e-10)
        assert_allclose(joint.intercept_[k], single.intercept_, rtol=1e-9, atol=1e-10)


def test_prediction_shape_follows_y(rng):
    X = rng.standard_normal((40, 2))
    y = X[:, 0]
    assert TorchPolyRegressor().fit(X, y).predict(X).shape == (40,)
    assert TorchPolyRegressor().fit(X, y.reshape(-1, 1)).predict(X).shape == (40, 1)


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_integer_weights_equal_repeated_rows(rng, loss):
    X = rng.standard_normal((30, 2))
    y = X[:, 0] ** 2 + rng.standard_normal(30)
    w = rng.integers(0, 4, 30)
    weighted = TorchPolyRegressor(degree=2, loss=loss).fit(X, y, sample_weight=w)
    repeated = TorchPolyRegressor(degree=2, loss=loss).fit(np.repeat(X, w, 0), np.repeat(y, w))
    assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-6, atol=1e-7)
    assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-6, atol=1e-7)


def test_clone_get_set_params():
    model = TorchPolyRegressor(degree=3, lr=0.1, optimizer="adam")
    params = model.get_params()
    assert params["degree"] == 3 and params["lr"] == 0.1 and params["device"] == "cpu"
    twin = clone(model).set_params(degree=2, lr=0.5)
    assert twin.degree == 2 and twin.lr == 0.5 and model.degree == 3
    pipe = make_pipeline(StandardScaler(), TorchPolyRegressor())
    pipe.set_params(torchpolyregressor__degree=4)
    assert pipe[-1].degree == 4


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error"])
def test_pickle_round_trip(rng, loss):
    X = rng.standard_normal((50, 3))
    y = X @ [1.0, -2.0, 0.5] + X[:, 0] ** 2
    model = TorchPolyRegressor(degree=2, loss=loss).fit(X, y)
    loaded = pickle.loads(pickle.dumps(model))
    assert_array_equal(loaded.predict(X), model.predict(X))
    assert_array_equal(loaded.coef_, model.coef_)


@pytest.mark.parametrize(
    "optimizer, lr",
    [
        ("lbfgs", 1.0),
        ("LBFGS", 0.1),
        ("sgd", 0.5),
        ("Adam", 0.05),
        ("adamw", 0.05),
        ("rmsprop", 0.01),
        ("nadam", 0.05),
        (torch.optim.Adagrad, 0.5),
    ],
)
def test_any_torch_optimizer(rng, optimizer, lr):
    X = rng.standard_normal((200, 2))
    y = 1 + X[:, 0] - 0.5 * X[:, 1] ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TorchPolyRegressor(degree=2, optimizer=optimizer, lr=lr, max_iter=3000).fit(X, y)
    assert model.score(X, y) > 0.999


def test_optimizer_kwargs_are_passed(rng):
    X = rng.standard_normal((100, 1))
    y = X[:, 0] ** 2
    model = TorchPolyRegressor(
        optimizer="sgd", lr=0.1, optimizer_kwargs={"momentum": 0.9}, max_iter=500
    )
    model.fit(X, y)
    assert model.score(X, y) > 0.9999
    with pytest.raises(ValueError, match="rejected optimizer_kwargs"):
        TorchPolyRegressor(optimizer="sgd", optimizer_kwargs={"no_such": 1}).fit(X, y)


def test_minibatch_fit_reaches_optimum(rng):
    X = rng.standard_normal((2000, 2))
    y = X[:, 0] * X[:, 1] + 0.01 * rng.standard_normal(2000)
    exact = TorchPolyRegressor(degree=2).fit(X, y)
    mb = TorchPolyRegressor(
        degree=2, batch_size=64, optimizer="adam", lr=0.01, max_iter=60, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mb.fit(X, y)
    assert_allclose(mb.coef_, exact.coef_, atol=2e-2)
    assert len(mb.loss_curve_) == mb.n_iter_


def test_random_state_gives_bit_identical_refits(rng):
    X = rng.standard_normal((300, 2))
    y = X[:, 0] ** 2 + rng.standard_normal(300)
    params = dict(degree=2, batch_size=32, optimizer="adam", lr=0.01, max_iter=20, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = TorchPolyRegressor(**params).fit(X, y)
        torch.manual_seed(123)
        TorchPolyRegressor(**{**params, "random_state": 1}).fit(X, y)
        b = TorchPolyRegressor(**params).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("update", ["warm_start", "partial_fit"])
def test_prediction_shape_follows_the_last_y(rng, update):
    X = rng.standard_normal((60, 2))
    y = X[:, 0] ** 2
    model = TorchPolyRegressor(warm_start=update == "warm_start")
    step = model.fit if update == "warm_start" else model.partial_fit
    step(X, y)
    assert model.predict(X).shape == (60,)
    step(X, y.reshape(-1, 1))
    assert model.predict(X).shape == (60, 1) and model.coef_.shape == (1, 5)
    step(X, y)
    assert model.predict(X).shape == (60,) and model.coef_.shape == (5,)


def test_partial_fit_reports_no_validation_scores(rng):
    X = rng.standard_normal((60, 2))
    model = TorchPolyRegressor(early_stopping=True).partial_fit(X, X[:, 0])
    assert model.validation_scores_ is None and model.best_validation_score_ is None


def test_warm_start_continues_from_previous_solution(rng):
    X = rng.standard_normal((300, 2))
    y = X[:, 0] ** 2 - X[:, 1]
    model = TorchPolyRegressor(degree=2, warm_start=True).fit(X, y)
    first = model.coef_.copy()
    model.fit(X, y)
    assert model.n_iter_ <= 2
    assert_allclose(model.coef_, first, atol=1e-10)


@pytest.mark.slow  # 135 fits of a pipeline: the slowest test of the module
def test_grid_search_over_lr_and_degree_matches_or_beats_linear_regression():
    X, y = load_diabetes(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("poly", TorchPolyRegressor())])
    grid = {"poly__degree": [1, 2, 3], "poly__lr": [1e-3, 1e-2, 1e-1]}
    results = []
    for n_jobs in (1, 2):
        search = GridSearchCV(pipe, grid, cv=5, n_jobs=n_jobs).fit(X, y)
        results.append((search.best_params_, search.best_score_))
    assert results[0][0] == results[1][0]
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-12)
    reference = max(
        cross_val_score(
            make_pipeline(StandardScaler(), PolynomialFeatures(d), LinearRegression()), X, y, cv=5
        ).mean()
        for d in (1, 2, 3)
    )
    assert results[0][1] >= reference - 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_fit_on_device(rng, device):
    X = rng.standard_normal((100, 2))
    y = X[:, 0] ** 2 + X[:, 1]
    dtype = "float32" if device == "mps" else "float64"
    model = TorchPolyRegressor(degree=2, device=device, dtype=dtype).fit(X, y)
    assert model.device_.startswith(device)
    assert isinstance(model.coef_, np.ndarray) and isinstance(model.loss_curve_[0], float)
    assert model.score(X, y) > 0.9999


def test_auto_device_picks_best_available():
    assert str(resolve_device("auto")) == available_devices()[0]


def test_auto_device_skips_mps_for_float64(monkeypatch):
    """Simulated Apple silicon: MPS has no float64, so 'auto' must not pick it for a float64 fit."""
    import autopoly._device as device_module

    monkeypatch.setattr(device_module, "available_devices", lambda: ["mps", "cpu"])
    assert str(resolve_device("auto", torch.float64)) == "cpu"
    assert str(resolve_device("auto", torch.float32)) == "mps"
    X, y = np.linspace(-1, 1, 20).reshape(-1, 1), np.linspace(-1, 1, 20) ** 2
    model = TorchPolyRegressor(device="auto").fit(X, y)  # the default dtype, float64
    assert model.device_ == "cpu"


def test_lbfgs_on_mini_batches_warns(rng):
    X = rng.standard_normal((200, 2))
    y = X[:, 0] - 2 * X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(UserWarning, match=r"'lbfgs' is a full-batch method.*batch_size=None"):
            TorchPolyRegressor(batch_size=32, max_iter=5, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        TorchPolyRegressor(batch_size=1000).fit(X, y)  # covers every row: a full batch


def test_memory_mapped_input_is_not_copied_for_the_scaling(rng, tmp_path, monkeypatch):
    import autopoly._sources as sources

    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", shape=(500, 2))
    X[:] = rng.standard_normal((500, 2))
    X.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = np.asarray(X[:, 0] ** 2)
    seen = []
    original = sources.column_range
    monkeypatch.setattr(sources, "column_range", lambda data: seen.append(data) or original(data))
    TorchPolyRegressor().fit(X, y)
    assert np.shares_memory(seen[0], X)  # a view of the file's pages, not a copy


def test_unavailable_device_error_lists_available():
    X, y = np.ones((5, 1)), np.arange(5.0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available.*available: .*cpu"):
            TorchPolyRegressor(device="cuda").fit(X, y)
    with pytest.raises(ValueError, match="cuda:99.*available"):
        TorchPolyRegressor(device="cuda:99").fit(X, y)
    with pytest.raises(ValueError, match="not a device name"):
        TorchPolyRegressor(device="tpu-ish").fit(X, y)


def test_model_fitted_on_gpu_predicts_on_cpu_only_machine(rng, monkeypatch):
    """Simulated: the fitted state names a CUDA device that this machine lacks."""
    X = rng.standard_normal((50, 2))
    y = X[:, 0] ** 2
    model = TorchPolyRegressor(degree=2).fit(X, y)
    expected = model.predict(X)
    state = pickle.dumps(model).replace(b"\x8c\x03cpu", b"\x8c\x06cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(state)
        assert loaded.device_ == "cuda:0"
        assert_array_equal(loaded.predict(X), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_and_cpu_fits_agree(rng):
    X = rng.standard_normal((5000, 3))
    y = X[:, 0] * X[:, 1] - X[:, 2] ** 3 + 0.1 * rng.standard_normal(5000)
    cpu = TorchPolyRegressor(degree=3).fit(X, y)
    gpu = TorchPolyRegressor(degree=3, device="cuda").fit(X, y)
    assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-8, atol=1e-10)
    gpu32 = TorchPolyRegressor(degree=3, device="cuda", dtype="float32").fit(X, y)
    assert_allclose(gpu32.coef_, cpu.coef_, atol=1e-3)
