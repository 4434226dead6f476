"""Saving and loading: pickle, joblib, skops, models fitted on another device, versions."""

import pickle
import re
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

import autopoly
from autopoly import TorchPolyRegressor

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.rst"

# The exact ``trusted=`` list that docs/reliability.rst tells users to pass.
DOCUMENTED_TRUSTED = ["autopoly._regressor.TorchPolyRegressor"]

_rng = np.random.default_rng(1)
X = _rng.uniform(-2, 2, (40, 3))
Y = np.c_[1 + X[:, 0] - X[:, 1] * X[:, 2], X[:, 2] ** 2] + 0.05 * _rng.standard_normal((40, 2))
X_MORE = _rng.uniform(-2, 2, (10, 3))
Y_MORE = np.c_[1 + X_MORE[:, 0] - X_MORE[:, 1] * X_MORE[:, 2], X_MORE[:, 2] ** 2]


def _default():
    return TorchPolyRegressor().fit(X, Y[:, 0])


def _frame_multi_output():
    frame = pd.DataFrame(X, columns=["speed", "load", "temp"])
    return TorchPolyRegressor(degree=(1, 3), interaction_only=True).fit(frame, Y)


def _mini_batches():
    return TorchPolyRegressor(
        optimizer="adam", lr=0.05, batch_size=8, max_iter=20, random_state=0
    ).fit(X, Y[:, 0])


def _huber_partial_fit():
    est = TorchPolyRegressor(loss="huber", optimizer="adam", lr=0.1)
    return est.partial_fit(X[:20], Y[:20, 0]).partial_fit(X[20:], Y[20:, 0])


def _early_stopping():
    return TorchPolyRegressor(degree=3, early_stopping=True, random_state=0).fit(X, Y[:, 1])


def _float32():
    return TorchPolyRegressor(dtype="float32", alpha=0.1, l1_ratio=0.5).fit(X, Y)


MODELS = {
    "default": _default,
    "frame-multi-output": _frame_multi_output,
    "mini-batches": _mini_batches,
    "huber-partial_fit": _huber_partial_fit,
    "early-stopping": _early_stopping,
    "float32-penalty": _float32,
}


def _fit(name):
    with warnings.catch_warnings():
        # Short runs on purpose: the state, not the optimum, is under test.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MODELS[name]()


def _X_for(est):
    return (
        pd.DataFrame(X, columns=est.feature_names_in_) if hasattr(est, "feature_names_in_") else X
    )


def _Y_more_for(est):
    return Y_MORE[:, 0] if np.ndim(est.coef_) == 1 else Y_MORE


def _X_more_for(est):
    if hasattr(est, "feature_names_in_"):
        return pd.DataFrame(X_MORE, columns=est.feature_names_in_)
    return X_MORE


def _via_pickle(est, tmp_path):
    return pickle.loads(pickle.dumps(est))


def _via_joblib(est, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    return joblib.load(path)


def _via_skops(est, tmp_path):
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted and all(name.startswith("autopoly.") for name in untrusted), untrusted
    return sio.load(path, trusted=untrusted)


ROUND_TRIPS = {"pickle": _via_pickle, "joblib": _via_joblib, "skops": _via_skops}


def _load_quietly(round_trip, est, tmp_path):
    """Load with every warning turned into an error: loading must be silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return round_trip(est, tmp_path)


def _assert_same_model(loaded, est):
    assert type(loaded) is TorchPolyRegressor
    assert loaded.get_params() == est.get_params()
    for name in (
        "coef_",
        "intercept_",
        "powers_",
        "n_iter_",
        "loss_curve_",
        "best_loss_",
        "n_features_in_",
        "device_",
        "validation_scores_",
        "best_validation_score_",
    ):
        assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(est, name)), name)
    assert_array_equal(loaded.get_feature_names_out(), est.get_feature_names_out())
    if hasattr(est, "feature_names_in_"):
        assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(loaded.predict(_X_for(est)), est.predict(_X_for(est)))


@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
@pytest.mark.parametrize("model", MODELS)
def test_round_trip_gives_the_same_model(model, round_trip, tmp_path):
    est = _fit(model)
    loaded = _load_quietly(round_trip, est, tmp_path)
    _assert_same_model(loaded, est)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
@pytest.mark.parametrize("model", ["default", "mini-batches", "huber-partial_fit"])
def test_loaded_model_continues_partial_fit_exactly(model, round_trip, tmp_path):
    # The hidden state (sufficient statistics, optimizer state) must survive the round trip.
    est = _fit(model)
    loaded = _load_quietly(round_trip, est, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.partial_fit(_X_more_for(est), _Y_more_for(est))
        loaded.partial_fit(_X_more_for(est), _Y_more_for(est))
    assert_array_equal(loaded.coef_, est.coef_)
    assert_array_equal(loaded.intercept_, est.intercept_)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_unfitted_estimator_round_trips(round_trip, tmp_path):
    est = TorchPolyRegressor(
        degree=(2, 4), optimizer="adamw", optimizer_kwargs={"weight_decay": 0.0}
    )
    loaded = _load_quietly(round_trip, est, tmp_path)
    assert loaded.get_params() == est.get_params()
    assert not hasattr(loaded, "coef_")


# ----------------------------------------------------------------------------------- skops


@pytest.mark.parametrize("model", MODELS)
def test_skops_needs_only_autopoly_types_trusted(model, tmp_path):
    path = tmp_path / "model.skops"
    sio.dump(_fit(model), path)
    assert sio.get_untrusted_types(file=path) == DOCUMENTED_TRUSTED


def test_skops_refuses_to_load_without_trusting_autopoly(tmp_path):
    path = tmp_path / "model.skops"
    sio.dump(_default(), path)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="TorchPolyRegressor"):
        sio.load(path)


def test_skops_documented_load_call(tmp_path):
    est = _frame_multi_output()
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = sio.load(path, trusted=DOCUMENTED_TRUSTED)
    _assert_same_model(loaded, est)
    text = DOC.read_text(encoding="utf-8")
    assert f"trusted={DOCUMENTED_TRUSTED!r}" in re.sub(r"\s+", " ", text).replace('"', "'")


# ------------------------------------------------------------------------ other devices


def _absent_devices():
    """Device names that cannot be used on this machine (what a model from elsewhere has)."""
    names = [f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"]
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        names.append("mps")
    return names


def _contains_torch(obj):
    if isinstance(obj, (torch.Tensor, torch.device, torch.dtype, torch.Generator)):
        return True
    if isinstance(obj, dict):
        return any(_contains_torch(k) or _contains_torch(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set)):
        return any(_contains_torch(v) for v in obj)
    return False


@pytest.mark.parametrize("model", MODELS)
def test_fitted_state_holds_no_torch_objects(model):
    # Tensors or devices in the state would tie a saved model to the device it was fitted on.
    state = _fit(model).__getstate__()
    assert not [key for key, value in state.items() if _contains_torch(value)]


@pytest.mark.parametrize("device", _absent_devices())
@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
@pytest.mark.parametrize("model", ["default", "frame-multi-output", "huber-partial_fit"])
def test_model_fitted_on_another_device_loads_and_predicts_here(
    model, round_trip, device, tmp_path
):
    reference = _fit(model)
    # What a GPU fit leaves: the same arrays, with the device it ran on recorded.
    est = _fit(model).set_params(device=device.split(":")[0])
    est.device_ = device
    loaded = _load_quietly(round_trip, est, tmp_path)
    assert loaded.device_ == device
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(loaded.predict(_X_for(est)), reference.predict(_X_for(est)))
        assert loaded.score(_X_for(est), Y[:, 0] if np.ndim(est.coef_) == 1 else Y) == (
            reference.score(_X_for(est), Y[:, 0] if np.ndim(est.coef_) == 1 else Y)
        )
    # Training goes on here once the device parameter names one that exists.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded.set_params(device="cpu").partial_fit(_X_more_for(est), _Y_more_for(est))
        reference.partial_fit(_X_more_for(est), _Y_more_for(est))
    assert_array_equal(loaded.coef_, reference.coef_)
    assert loaded.device_ == "cpu"


# ------------------------------------------------------------------------------ versions


def test_saved_state_records_the_autopoly_version(tmp_path):
    est = _default()
    assert est.__getstate__()["_autopoly_version"] == autopoly.__version__
    assert _via_skops(est, tmp_path)._autopoly_version == autopoly.__version__


def _other_version(major_minor_change):
    major, minor, *rest = autopoly.__version__.split(".")
    if major_minor_change:
        return f"{int(major) + 1}.{minor}.0"
    return f"{major}.{minor}.{999}"


@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_loading_a_state_from_an_incompatible_version_fails_clearly(round_trip, tmp_path):
    est = _default()
    saved = _other_version(major_minor_change=True)
    est._autopoly_version = saved
    message = (
        f"(?s)saved by autopoly {re.escape(saved)}.*cannot be loaded by autopoly "
        f"{re.escape(autopoly.__version__)}.*autopoly=={re.escape(saved)}.*refit"
    )
    with pytest.raises(ValueError, match=message):
        round_trip(est, tmp_path)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_loading_a_state_from_a_patch_release_works(round_trip, tmp_path):
    est = _default()
    est._autopoly_version = _other_version(major_minor_change=False)
    loaded = _load_quietly(round_trip, est, tmp_path)
    assert_array_equal(loaded.predict(X), est.predict(X))


def test_a_0_1_state_is_refused_with_the_version_error():
    # 0.1 kept its fitted state in dicts and tuples (_theta, _partial, _terms); 0.2 in typed
    # records: such a state must be refused clearly, never half-loaded.
    state = {
        "degree": 2,
        "_theta": np.zeros((3, 1)),
        "_partial": {"R": np.eye(4)},
        "_autopoly_version": "0.1.0",
    }
    est = TorchPolyRegressor.__new__(TorchPolyRegressor)
    with pytest.raises(ValueError, match=r"saved by autopoly 0\.1\.0.*Install autopoly==0\.1\.0"):
        est.__setstate__(state)


def test_pickled_state_is_plain_numpy_and_python(tmp_path):
    est = TorchPolyRegressor(
        loss="huber", batch_size=10, optimizer="adam", lr=0.05, random_state=0
    ).partial_fit(X, Y)
    state = est.__getstate__()

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (np.ndarray, np.generic, str, int, float, bool))

    assert plain({k: v for k, v in state.items() if k.startswith("_")})
    assert type(est._fitted).__name__ == "FittedPolynomial"  # the live object stays typed
