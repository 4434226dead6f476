"""Streams, shared random states and row weights: defects found by a user's-eye review.

Each test fails on the code before its fix: a row-wise ``partial_fit`` stream that starts with
a tiny batch, a shared ``RandomState`` advanced by fits that draw nothing, an optimizer changed
inside a stream, zero-weight rows that should be as good as absent.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import RANSACRegressor

from autopoly import TorchPolyRegressor


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (n, 2))
    y = 1 + X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.1 * rng.standard_normal(n)
    return X, y


# ---------------------------------------------------------------- random states


def test_a_full_batch_fit_draws_nothing_from_a_shared_random_state():
    X, y = _data()
    state = np.random.RandomState(0)
    before = state.get_state()[1].copy(), state.get_state()[2]
    TorchPolyRegressor(random_state=state).fit(X, y)
    TorchPolyRegressor(loss="huber", random_state=state).fit(X, y)
    after = state.get_state()
    assert np.array_equal(before[0], after[1]) and before[1] == after[2]


def test_minibatches_and_early_stopping_do_draw():
    X, y = _data()
    for params in (
        {"batch_size": 50, "optimizer": "adam", "lr": 0.05, "max_iter": 3},
        {"early_stopping": True},
    ):
        state = np.random.RandomState(0)
        first = state.get_state()[2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TorchPolyRegressor(random_state=state, **params).fit(X, y)
        assert state.get_state()[2] != first or not np.array_equal(
            state.get_state()[1], np.random.RandomState(0).get_state()[1]
        )


def test_ransac_draws_the_same_subsets_as_with_a_deterministic_estimator():
    """RANSACRegressor hands its RandomState to the base estimator: a fit that draws nothing
    must leave RANSAC's subset sequence as it is with sklearn's LinearRegression.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, (300, 1))
    y = 1 + 2 * X[:, 0] - X[:, 0] ** 2 + 0.2 * rng.standard_normal(300)
    y[:30] += 15
    ours = RANSACRegressor(TorchPolyRegressor(degree=2), min_samples=10, random_state=0).fit(X, y)
    ref = RANSACRegressor(
        make_pipeline(PolynomialFeatures(2), LinearRegression()), min_samples=10, random_state=0
    ).fit(X, y)
    assert ours.n_trials_ == ref.n_trials_
    assert np.array_equal(ours.inlier_mask_, ref.inlier_mask_)


# ------------------------------------------------------- the optimizer inside a stream


def _stream(model, X, y, calls=4):
    for rows in np.array_split(np.arange(len(y)), calls):
        model.partial_fit(X[rows], y[rows])
    return model


def test_changing_the_optimizer_inside_a_stream_restarts_its_state_with_a_warning():
    X, y = _data()
    model = _stream(TorchPolyRegressor(loss="huber", optimizer="adam", lr=0.05), X, y, 2)
    model.set_params(optimizer="sgd", optimizer_kwargs={"momentum": 0.9}, lr=0.01)
    with pytest.warns(
        UserWarning,
        match="optimizer changed within a partial_fit stream "
        r"\(from Adam to SGD\)",
    ):
        model.partial_fit(X, y)
    assert np.isfinite(model.coef_).all()
    # And back: the same class again resumes without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.partial_fit(X, y)


def test_changed_lr_and_kwargs_take_effect_inside_a_stream():
    """The saved state keeps moments and step counts; the current lr and kwargs apply."""
    X, y = _data()
    base = _stream(TorchPolyRegressor(loss="huber", optimizer="sgd", lr=0.01), X, y, 2)
    frozen = _stream(TorchPolyRegressor(loss="huber", optimizer="sgd", lr=0.01), X, y, 2)
    coef = frozen.coef_.copy()
    frozen.set_params(lr=1e-12)
    frozen.partial_fit(X, y)
    # A learning rate of 1e-12 barely moves the coefficients; the old 0.01 would.
    assert_allclose(frozen.coef_, coef, rtol=0, atol=1e-8)
    base.partial_fit(X, y)
    assert np.abs(base.coef_ - coef).max() > 1e-4


# ------------------------------------------------- a row-wise stream's first batch


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
@pytest.mark.parametrize("first", [1, 5])
def test_a_tiny_first_batch_no_longer_spoils_a_row_wise_stream(loss, first):
    """400 rows: a first call on 1 or 5 rows, then 10 epochs over the rest in 4 batches with
    Adam (lr=0.05). The whitening is refined from all rows seen, so the stream ends within
    0.01 of fit's R^2 (it ended at R^2 = -847 and -601).
    """
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (400, 2))
    y = 1 + X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.3 * X[:, 0] * X[:, 1] + 0.1 * rng.standard_normal(400)
    full = TorchPolyRegressor(loss=loss).fit(X, y).score(X, y)
    model = TorchPolyRegressor(loss=loss, optimizer="adam", lr=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.partial_fit(X[:first], y[:first])
    assert any("first partial_fit batch has" in str(w.message) for w in caught)
    rest = np.arange(first, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no rank-deficiency or other warning per epoch
        for _ in range(10):
            for rows in np.array_split(rest, 4):
                model.partial_fit(X[rows], y[rows])
    assert model.score(X, y) >= full - 0.01


def test_a_row_wise_stream_keeps_its_optimizer_state_once_the_whitening_settles():
    """Adam's moments carry over between calls once the rows determine the whitening."""
    import autopoly._fitting as fitting

    X, y = _data()
    model = TorchPolyRegressor(loss="huber", optimizer="adam", lr=0.05)
    model.partial_fit(X[:200], y[:200])
    resumed = []
    original = fitting.resume_optimizer

    def spy(*args):
        resumed.append(1)
        return original(*args)

    fitting.resume_optimizer = spy
    try:
        for rows in np.array_split(np.arange(200, 400), 4):
            model.partial_fit(X[rows], y[rows])
    finally:
        fitting.resume_optimizer = original
    assert len(resumed) == 4


# ------------------------------------------------ zero weights and assume_finite


def test_zero_weight_rows_are_as_good_as_absent():
    X, y = _data(60)
    w = np.ones(60)
    w[3] = 0.0
    X_far, y_far = X.copy(), y.copy()
    X_far[3, 0], y_far[3] = 1e200, 1e300
    absent = TorchPolyRegressor().fit(np.delete(X, 3, 0), np.delete(y, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow error, no RuntimeWarning
        for loss in ("squared_error", "huber"):
            for Xi, yi in ((X_far, y), (X, y_far)):
                model = TorchPolyRegressor(loss=loss).fit(Xi, yi, sample_weight=w)
                ref = (
                    absent
                    if loss == "squared_error"
                    else TorchPolyRegressor(loss=loss).fit(np.delete(X, 3, 0), np.delete(y, 3))
                )
                assert_allclose(model.coef_, ref.coef_, rtol=0, atol=1e-12)


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_under_assume_finite_are_named(where, value):
    import sklearn

    X, y = _data(60)
    if where == "X":
        X[5, 1] = value
    else:
        y[5] = value
    column = 1 if where == "X" else 0
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(
            ValueError,
            match=rf"{where} contains NaN or infinity \(first in "
            rf"column {column}\).*assume_finite=True",
        ):
            TorchPolyRegressor().fit(X, y)


# ------------------------------------------- feature selection on the input features


def test_feature_selectors_work_with_per_input_importances():
    from sklearn.feature_selection import RFE, SelectFromModel

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 4))
    y = 3 * X[:, 0] ** 2 + 2 * X[:, 0] * X[:, 2] + X[:, 2] + 0.01 * rng.standard_normal(300)
    model = TorchPolyRegressor().fit(X, y)
    importances = model.feature_importances_
    assert importances.shape == (4,) and importances.sum() == pytest.approx(1.0)
    assert importances[[0, 2]].min() > 10 * importances[[1, 3]].max()
    selector = SelectFromModel(TorchPolyRegressor(), importance_getter="feature_importances_")
    assert selector.fit(X, y).get_support().tolist() == [True, False, True, False]
    rfe = RFE(
        TorchPolyRegressor(), n_features_to_select=2, importance_getter="feature_importances_"
    ).fit(X, y)
    assert rfe.support_.tolist() == [True, False, True, False]
    assert rfe.transform(X).shape == (300, 2)
