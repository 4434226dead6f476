"""Inference for least-squares fits: covariance, standard errors, tables, intervals, summary.

References: statsmodels' ``OLS`` (and ``GLM`` with ``freq_weights`` for weighted fits) on the
same raw polynomial design; exact rational arithmetic for ill-conditioned data.
"""

import pickle
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import PolynomialFeatures

from autopoly import RankDeficiencyWarning, TorchPolyRegressor, _data_pass
from autopoly._inference import least_squares

sm = pytest.importorskip("statsmodels.api")
pd = pytest.importorskip("pandas")

RTOL = 1e-8
LEVEL = 0.9


def _problem(seed, n=80, n_features=2, n_targets=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 3.0, size=(n, n_features))
    Y = np.column_stack(
        [
            1.0
            + (k + 1) * X[:, 0]
            - 0.5 * X[:, 0] * X[:, -1]
            + 0.3 * (k + 1) * rng.standard_normal(n)
            for k in range(n_targets)
        ]
    )
    return X, Y


def _raw_design(X, degree, fit_intercept):
    terms = PolynomialFeatures(degree, include_bias=False).fit_transform(X)
    return np.hstack([np.ones((X.shape[0], 1)), terms]) if fit_intercept else terms


def _stacked(model):
    """``[intercept, *coef_]`` as (n_targets, p)."""
    coef = np.atleast_2d(model.coef_)
    if not model.fit_intercept:
        return coef
    return np.column_stack([np.atleast_1d(model.intercept_), coef])


def _per_target(value, k, single):
    return value if single else value[k]


def _check_against(model, reference, k, single, X_new, D_new, *, goodness=True):
    """One target of ``model`` against a statsmodels results object for it."""
    cov = _per_target(model.covariance_matrix(), k, single)
    assert_allclose(cov, reference.cov_params(), rtol=RTOL, atol=RTOL * np.abs(cov).max())
    assert_allclose(_per_target(model.std_errors(), k, single), reference.bse, rtol=RTOL)
    table = model.coef_table(level=LEVEL)
    if not single:
        table = table.xs(k, level="target")
    assert_allclose(table["coef"], reference.params, rtol=1e-10)
    assert_allclose(table["std_err"], reference.bse, rtol=RTOL)
    assert_allclose(table["t"], reference.tvalues, rtol=RTOL)
    assert_allclose(table["p_value"], reference.pvalues, rtol=RTOL, atol=1e-300)
    ci = reference.conf_int(alpha=1 - LEVEL)
    assert_allclose(table[["ci_lower", "ci_upper"]], ci, rtol=RTOL)
    ls = least_squares(model._stream, model._fitted)
    fit = model._fit_statistics(ls)
    assert_allclose(fit["llf"][k], reference.llf, rtol=RTOL)
    assert_allclose(fit["aic"][k], reference.aic, rtol=RTOL)
    bic = reference.bic_llf if hasattr(reference, "bic_llf") else reference.bic
    assert_allclose(fit["bic"][k], bic, rtol=RTOL)
    if goodness:
        assert_allclose(fit["r2"][k], reference.rsquared, rtol=RTOL)
        assert_allclose(fit["adj_r2"][k], reference.rsquared_adj, rtol=RTOL)
        assert_allclose(fit["f"][k], reference.fvalue, rtol=RTOL)
        assert_allclose(fit["f_p"][k], reference.f_pvalue, rtol=RTOL, atol=1e-300)
        # statsmodels takes the square root of an eigenvalue ratio of X.T @ X.
        assert_allclose(ls.condition_number(), reference.condition_number, rtol=1e-6)
        frame = reference.get_prediction(D_new).summary_frame(alpha=1 - LEVEL)
        for kind, prefix in (("prediction", "obs"), ("confidence", "mean")):
            got = model.predict_interval(X_new, level=LEVEL, kind=kind)
            got = got if single else got[:, k]
            assert_allclose(got, frame[[f"{prefix}_ci_lower", f"{prefix}_ci_upper"]], rtol=RTOL)


# ------------------------------------------------------------ agreement with statsmodels


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("degree, n_features", [(1, 1), (3, 1), (2, 2), (3, 3)])
def test_single_target_matches_statsmodels_ols(degree, n_features, fit_intercept):
    X, Y = _problem(degree + 10 * n_features, n_features=n_features)
    y = Y[:, 0]
    model = TorchPolyRegressor(degree=degree, fit_intercept=fit_intercept, tol=1e-12).fit(X, y)
    reference = sm.OLS(y, _raw_design(X, degree, fit_intercept)).fit()
    assert reference.k_constant == int(fit_intercept)  # R^2 uncentred without an intercept
    X_new = np.random.default_rng(1).uniform(-3.0, 4.0, size=(7, n_features))
    _check_against(model, reference, 0, True, X_new, _raw_design(X_new, degree, fit_intercept))


@pytest.mark.parametrize(
    "params",
    [
        {"degree": 2, "interaction_only": True},
        {"degree": (2, 3)},
        {"degree": (2, 2), "fit_intercept": False},
    ],
)
def test_term_selections_match_statsmodels_ols(params):
    X, Y = _problem(29, n_features=3)
    model = TorchPolyRegressor(tol=1e-12, **params).fit(X, Y[:, 0])
    features = PolynomialFeatures(
        params["degree"],
        interaction_only=params.get("interaction_only", False),
        include_bias=False,
    ).fit_transform(X)
    fit_intercept = params.get("fit_intercept", True)
    D = np.column_stack([np.ones(X.shape[0]), features]) if fit_intercept else features
    reference = sm.OLS(Y[:, 0], D).fit()
    assert_allclose(model.std_errors(), reference.bse, rtol=RTOL)
    assert_allclose(model.coef_table()["p_value"], reference.pvalues, rtol=RTOL)


def test_float32_fit_carries_float32_precision():
    X, Y = _problem(30)
    model = TorchPolyRegressor(degree=3, dtype="float32").fit(X, Y[:, 0])
    reference = sm.OLS(Y[:, 0], _raw_design(X, 3, True)).fit()
    assert_allclose(model.std_errors(), reference.bse, rtol=1e-5)


def test_zero_weights_count_for_nothing():
    X, Y = _problem(31)
    w = np.ones(X.shape[0])
    w[:10] = 0.0
    model = TorchPolyRegressor(degree=2, tol=1e-12).fit(X, Y[:, 0], sample_weight=w)
    reference = sm.OLS(Y[10:, 0], _raw_design(X[10:], 2, True)).fit()
    assert_allclose(model.std_errors(), reference.bse, rtol=RTOL)
    frame = reference.get_prediction(_raw_design(X[:3], 2, True)).summary_frame(alpha=0.05)
    assert_allclose(
        model.predict_interval(X[:3]), frame[["obs_ci_lower", "obs_ci_upper"]], rtol=RTOL
    )


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_each_target_matches_its_own_statsmodels_fit(fit_intercept):
    X, Y = _problem(3, n_targets=3)
    Y[:, 2] *= 1e3  # outputs on other scales
    model = TorchPolyRegressor(degree=2, fit_intercept=fit_intercept, tol=1e-12).fit(X, Y)
    X_new = np.random.default_rng(2).uniform(-2.0, 3.0, size=(5, 2))
    D_new = _raw_design(X_new, 2, fit_intercept)
    for k in range(3):
        reference = sm.OLS(Y[:, k], _raw_design(X, 2, fit_intercept)).fit()
        _check_against(model, reference, k, False, X_new, D_new)


@pytest.mark.parametrize("integer", [True, False])
def test_weighted_fit_matches_statsmodels_glm_freq_weights(integer):
    X, Y = _problem(4, n_targets=2)
    rng = np.random.default_rng(5)
    w = rng.integers(1, 4, size=X.shape[0]).astype(float) if integer else rng.uniform(0.5, 3, 80)
    model = TorchPolyRegressor(degree=2, tol=1e-12).fit(X, Y, sample_weight=w)
    D = _raw_design(X, 2, True)
    for k in range(2):
        glm = sm.GLM(Y[:, k], D, family=sm.families.Gaussian(), freq_weights=w).fit(use_t=True)
        # GLM's R^2 are pseudo R^2 and it has no F or observation intervals: see below.
        _check_against(model, glm, k, False, None, None, goodness=False)
        if integer:
            # Integer weights are repeated rows: OLS on them gives the rest.
            repeat = np.repeat(np.arange(X.shape[0]), w.astype(int))
            ols = sm.OLS(Y[repeat, k], D[repeat]).fit()
            X_new = rng.uniform(-2.0, 3.0, size=(5, 2))
            _check_against(model, ols, k, False, X_new, _raw_design(X_new, 2, True))


def test_analytic_weights_of_wls_differ_by_the_documented_factor():
    X, Y = _problem(27)
    w = np.random.default_rng(28).uniform(0.5, 4.0, X.shape[0])
    model = TorchPolyRegressor(degree=2, tol=1e-12).fit(X, Y[:, 0], sample_weight=w)
    wls = sm.WLS(Y[:, 0], _raw_design(X, 2, True), weights=w).fit()
    n, p = X.shape[0], 6
    assert_allclose(
        model.covariance_matrix() * (w.sum() - p) / (n - p), wls.cov_params(), rtol=RTOL
    )


def test_weights_of_two_equal_duplicated_rows():
    X, Y = _problem(6, n=40, n_targets=2)
    w = np.ones(40)
    w[::3] = 2.0
    repeat = np.repeat(np.arange(40), w.astype(int))
    weighted = TorchPolyRegressor(degree=3, tol=1e-12).fit(X, Y, sample_weight=w)
    duplicated = TorchPolyRegressor(degree=3, tol=1e-12).fit(X[repeat], Y[repeat])
    X_new = np.random.default_rng(7).uniform(-2.0, 3.0, size=(9, 2))
    for method in ("covariance_matrix", "std_errors"):
        assert_allclose(getattr(weighted, method)(), getattr(duplicated, method)(), rtol=1e-12)
    for kind in ("prediction", "confidence"):
        assert_allclose(
            weighted.predict_interval(X_new, kind=kind),
            duplicated.predict_interval(X_new, kind=kind),
            rtol=1e-12,
        )
    assert_allclose(weighted.coef_table(), duplicated.coef_table(), rtol=1e-10)
    # The reports agree too (same numbers at the printed precision).
    assert weighted.summary() == duplicated.summary()


def test_multi_output_equals_single_output_fits_and_shapes():
    X, Y = _problem(8, n_targets=2)
    joint = TorchPolyRegressor(degree=2, tol=1e-12).fit(X, Y)
    p = 6
    assert joint.covariance_matrix().shape == (2, p, p)
    assert joint.std_errors().shape == (2, p)
    assert joint.predict_interval(X[:4]).shape == (4, 2, 2)
    table = joint.coef_table()
    assert table.index.names == ["target", "term"] and table.shape == (2 * p, 6)
    for k in range(2):
        alone = TorchPolyRegressor(degree=2, tol=1e-12).fit(X, Y[:, k])
        assert alone.covariance_matrix().shape == (p, p)
        assert alone.std_errors().shape == (p,)
        assert alone.predict_interval(X[:4]).shape == (4, 2)
        assert_allclose(joint.std_errors()[k], alone.std_errors(), rtol=1e-10)
        assert_allclose(
            joint.predict_interval(X[:4])[:, k], alone.predict_interval(X[:4]), rtol=1e-10
        )


def test_single_target_in_a_column_keeps_the_target_axis():
    X, Y = _problem(9)
    model = TorchPolyRegressor(degree=2).fit(X, Y)  # y of shape (n, 1)
    assert model.std_errors().shape == (1, 6)
    assert model.predict_interval(X[:3]).shape == (3, 1, 2)
    assert list(model.coef_table().index.get_level_values("target").unique()) == [0]


def test_table_rows_are_named_like_the_terms():
    X, y = _problem(10)
    frame = pd.DataFrame(X, columns=["dose", "time"])
    model = TorchPolyRegressor(degree=2).fit(frame, y[:, 0])
    table = model.coef_table()
    assert list(table.index) == ["intercept", "dose", "time", "dose^2", "dose time", "time^2"]
    assert list(table.columns) == ["coef", "std_err", "t", "p_value", "ci_lower", "ci_upper"]
    assert_allclose(table["coef"], _stacked(model)[0], rtol=0)
    no_intercept = TorchPolyRegressor(degree=2, fit_intercept=False).fit(frame, y[:, 0])
    assert list(no_intercept.coef_table().index)[0] == "dose"


def test_summary_reports_the_fit():
    X, Y = _problem(11)
    model = TorchPolyRegressor(degree=2).fit(X, Y[:, 0])
    text = model.summary()
    reference = sm.OLS(Y[:, 0], _raw_design(X, 2, True)).fit()
    for label in (
        "Observations:",
        "Df residuals:",
        "Df model:",
        "Residual std. error:",
        "R-squared:",
        "Adj. R-squared:",
        "F-statistic:",
        "Prob (F-statistic):",
        "Log-likelihood:",
        "AIC:",
        "BIC:",
        "Cond. no. (raw design):",
        "intercept",
        "x0 x1",
    ):
        assert label in text
    assert f"{reference.rsquared:.4f}" in text
    assert f"{reference.llf:.4f}" in text
    assert f"{reference.bse[0]:.4f}" in text
    multi = TorchPolyRegressor(degree=2).fit(X, np.column_stack([Y[:, 0], -Y[:, 0]]))
    assert "(target 0)" in multi.summary() and "(target 1)" in multi.summary()
    assert "[0.05" in model.summary(level=0.9)


# ------------------------------------------------------------------- ill-conditioned data


def _exact_unscaled_and_rss(x, y, degree):
    """Exact ``inv(V.T V)`` of the raw Vandermonde ``V`` and the exact residual sum."""
    xs = [Fraction(float(v)) for v in x]
    ys = [Fraction(float(v)) for v in y]
    p = degree + 1
    sums = [sum(v**k for v in xs) for k in range(2 * degree + 1)]
    rhs = [sum(v**k * t for v, t in zip(xs, ys, strict=True)) for k in range(p)]
    A = [
        [sums[i + j] for j in range(p)] + [Fraction(int(i == j)) for j in range(p)] + [rhs[i]]
        for i in range(p)
    ]
    for c in range(p):  # Gauss-Jordan, exact
        pivot = next(r for r in range(c, p) if A[r][c] != 0)
        A[c], A[pivot] = A[pivot], A[c]
        A[c] = [v / A[c][c] for v in A[c]]
        for r in range(p):
            if r != c and A[r][c] != 0:
                f = A[r][c]
                A[r] = [a - f * b for a, b in zip(A[r], A[c], strict=True)]
    inverse = np.array([[float(A[i][p + j]) for j in range(p)] for i in range(p)])
    coef = [A[i][2 * p] for i in range(p)]
    rss = sum(
        (t - sum(c * v**k for k, c in enumerate(coef))) ** 2 for v, t in zip(xs, ys, strict=True)
    )
    return inverse, float(rss)


def _correct_digits(value, exact):
    error = np.max(np.abs(value / exact - 1))
    return -np.log10(max(error, 1e-17))


@pytest.mark.parametrize("offset, width", [(1e3, 10.0), (0.0, 2.0), (-50.0, 1.0)])
@pytest.mark.parametrize("degree", [2, 5, 8, 10])
def test_std_errors_on_raw_ill_conditioned_data_beat_polyfit(offset, width, degree):
    rng = np.random.default_rng(degree)
    n = 40
    x = np.sort(rng.uniform(offset, offset + width, n))
    y = np.sin(3 * (x - offset) / width) + 0.01 * rng.standard_normal(n)
    exact, exact_rss = _exact_unscaled_and_rss(x, y, degree)
    exact_diag = np.diag(exact)
    s2 = exact_rss / (n - degree - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polyfit's RankWarning on the raw Vandermonde
        _, unscaled = np.polyfit(x, y, degree, cov="unscaled")
    polyfit_diag = np.diag(unscaled)[::-1]  # polyfit orders the highest power first
    model = TorchPolyRegressor(degree=degree, tol=1e-12).fit(x.reshape(-1, 1), y)
    ls = least_squares(model._stream, model._fitted)
    digits = _correct_digits(ls.unscaled_var, exact_diag)
    assert digits >= _correct_digits(polyfit_diag, exact_diag)
    assert digits >= 12, digits
    # Off the diagonal, relative to sqrt(c_ii * c_jj) (the correlations' scale).
    scale = np.sqrt(np.outer(exact_diag, exact_diag))
    assert_allclose(ls.unscaled_cov() / scale, exact / scale, rtol=0, atol=1e-12)
    # The standard errors themselves (s from the factor's residual) against the exact ones.
    se_digits = _correct_digits(model.std_errors(), np.sqrt(s2 * exact_diag))
    assert se_digits >= _correct_digits(
        np.sqrt(s2 * np.abs(polyfit_diag)), np.sqrt(s2 * exact_diag)
    )
    assert se_digits >= 12, se_digits


@pytest.mark.parametrize("offset, width, degree", [(1e3, 10.0, 6), (0.0, 2.0, 10)])
def test_condition_number_of_the_raw_design_is_exact_far_beyond_1e16(offset, width, degree):
    mp = pytest.importorskip("mpmath")
    x = np.linspace(offset, offset + width, 25)
    model = TorchPolyRegressor(degree=degree).fit(x.reshape(-1, 1), np.cos(x - offset))
    with mp.workdps(100):
        V = mp.matrix([[mp.mpf(float(v)) ** k for k in range(degree + 1)] for v in x])
        s = mp.svd_r(V, compute_uv=False)
        exact = float(max(s) / min(s))
    got = least_squares(model._stream, model._fitted).condition_number()
    assert_allclose(got, exact, rtol=1e-11)
    assert f"{exact:.3g}" in model.summary()


# ------------------------------------------------------------- streams and Dask fits


def _close_covariances(a, b, rtol=1e-10):
    assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_stream_gives_the_covariance_of_fit(weighted):
    X, Y = _problem(12, n=300, n_targets=2)
    w = np.random.default_rng(13).uniform(0.5, 2.0, 300) if weighted else np.ones(300)
    full = TorchPolyRegressor(degree=3, tol=1e-12).fit(X, Y, sample_weight=w)
    stream = TorchPolyRegressor(degree=3, tol=1e-12)
    for rows in np.array_split(np.arange(300), 5):
        stream.partial_fit(X[rows], Y[rows], sample_weight=w[rows])
    _close_covariances(stream.covariance_matrix(), full.covariance_matrix())
    assert_allclose(stream.predict_interval(X[:5]), full.predict_interval(X[:5]), rtol=1e-10)
    assert stream.summary().splitlines()[2:9] == full.summary().splitlines()[2:9]


def test_dask_fit_gives_the_covariance_of_fit():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    X_np, Y_np = _problem(14, n=2_000, n_targets=2)
    w_np = np.random.default_rng(15).uniform(0.5, 2.0, 2_000)
    X, Y, w = (da.from_array(a, chunks=300) for a in (X_np, Y_np, w_np))
    with dask.config.set(scheduler="sync"):
        model = TorchPolyRegressor(degree=3, tol=1e-12).fit(X, Y, sample_weight=w)
    full = TorchPolyRegressor(degree=3, tol=1e-12).fit(X_np, Y_np, sample_weight=w_np)
    _close_covariances(model.covariance_matrix(), full.covariance_matrix())
    assert_allclose(model.std_errors(), full.std_errors(), rtol=1e-10)


def test_gram_route_of_large_fits_gives_the_covariance_of_the_qr_route(monkeypatch):
    from autopoly import _fitting

    X, Y = _problem(16, n=3_000)
    qr = TorchPolyRegressor(degree=3, tol=1e-12).fit(X, Y[:, 0])
    monkeypatch.setattr(_fitting, "GRAM_ROUTE_ENTRIES", 0)
    gram = TorchPolyRegressor(degree=3, tol=1e-12).fit(X, Y[:, 0])
    _close_covariances(gram.covariance_matrix(), qr.covariance_matrix(), rtol=1e-9)


# ------------------------------------------------------------- no pass over the rows


def test_methods_never_read_the_training_rows(monkeypatch):
    X, Y = _problem(17, n=5_000, n_targets=2)
    model = TorchPolyRegressor(degree=2).fit(X, Y)
    X_new = X[:10].copy()
    before = (
        model.covariance_matrix(),
        model.coef_table(),
        model.summary(),
        model.predict_interval(X_new),
    )
    # Nothing of the training rows is kept: every stored array is far smaller than them.
    arrays = [v for v in vars(model).values() if isinstance(v, np.ndarray)]
    arrays += [model._stream.R, model._fitted.theta]
    assert max(a.size for a in arrays) < X.shape[0]
    # Overwriting the training arrays changes nothing, and no pass over rows is made.
    X[:] = np.nan
    Y[:] = np.nan

    def no_pass(*args, **kwargs):
        raise AssertionError("a pass over training rows")

    monkeypatch.setattr(_data_pass, "weighted_chunks", no_pass)
    after = (
        model.covariance_matrix(),
        model.coef_table(),
        model.summary(),
        model.predict_interval(X_new),
    )
    assert_allclose(after[0], before[0], rtol=0)
    pd.testing.assert_frame_equal(after[1], before[1])
    assert after[2] == before[2]
    assert_allclose(after[3], before[3], rtol=0)


def test_pickled_model_keeps_its_statistics():
    X, Y = _problem(18)
    model = TorchPolyRegressor(degree=2).fit(X, Y[:, 0])
    loaded = pickle.loads(pickle.dumps(model))
    assert_allclose(loaded.covariance_matrix(), model.covariance_matrix(), rtol=0)
    assert_allclose(loaded.predict_interval(X[:5]), model.predict_interval(X[:5]), rtol=0)
    assert loaded.summary() == model.summary()


def test_predict_interval_on_a_tensor_equals_numpy():
    X, Y = _problem(19)
    model = TorchPolyRegressor(degree=2).fit(X, Y[:, 0])
    got = model.predict_interval(torch.from_numpy(X[:6]), kind="confidence")
    assert isinstance(got, np.ndarray)
    assert_allclose(got, model.predict_interval(X[:6], kind="confidence"), rtol=1e-14)


def test_intervals_are_centred_on_predict_and_nested():
    X, Y = _problem(20)
    model = TorchPolyRegressor(degree=2).fit(X, Y[:, 0])
    X_new = np.random.default_rng(0).uniform(-5, 6, size=(20, 2))
    pred = model.predict(X_new)
    confidence = model.predict_interval(X_new, kind="confidence")
    prediction = model.predict_interval(X_new, level=0.95)
    wider = model.predict_interval(X_new, level=0.99)
    assert_allclose(prediction.mean(axis=1), pred, rtol=1e-12)
    assert_allclose(confidence.mean(axis=1), pred, rtol=1e-12)
    assert np.all(prediction[:, 0] < confidence[:, 0])
    assert np.all(wider[:, 0] < prediction[:, 0]) and np.all(wider[:, 1] > prediction[:, 1])


# ------------------------------------------------------------------------------ errors


METHODS = [
    ("covariance_matrix", ()),
    ("std_errors", ()),
    ("coef_table", ()),
    ("summary", ()),
    ("predict_interval", (np.zeros((2, 2)),)),
]


@pytest.mark.parametrize("name, args", METHODS)
def test_unfitted_model_raises_not_fitted(name, args):
    with pytest.raises(NotFittedError):
        getattr(TorchPolyRegressor(), name)(*args)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"loss": "huber"}, "loss='huber'"),
        ({"loss": "absolute_error"}, "loss='absolute_error'"),
        ({"alpha": 0.1}, "alpha=0.1 penalizes"),
        ({"alpha": 0.1, "l1_ratio": 1.0}, "alpha=0.1 penalizes"),
        ({"conditioning": False}, "conditioning=False"),
        ({"early_stopping": True}, "early_stopping=True"),
        ({"batch_size": 16, "optimizer": "adam", "lr": 0.05}, "batch_size=16"),
    ],
)
@pytest.mark.parametrize("name, args", METHODS)
def test_fits_other_than_least_squares_are_refused_with_the_reason(params, match, name, args):
    X, Y = _problem(21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TorchPolyRegressor(degree=2, max_iter=20, **params).fit(X, Y[:, 0])
    with pytest.raises(
        ValueError, match=f"{name}\\(\\) gives the statistics of ordinary least squares.*{match}"
    ):
        getattr(model, name)(*args)


def test_incomplete_stream_is_refused():
    X, Y = _problem(22)
    model = TorchPolyRegressor(degree=2, loss="huber")
    model.partial_fit(X[:40], Y[:40, 0]).partial_fit(X[40:], Y[40:, 0])
    model.set_params(loss="squared_error")  # the coefficients are still the epochs'
    # Refused by what the fit was (its loss), whatever set_params says now.
    with pytest.raises(ValueError, match="fitted with loss='huber'"):
        model.std_errors()


def test_rank_deficient_fit_is_refused():
    x = np.repeat([0.0, 1.0, 2.0], 4).reshape(-1, 1)
    with pytest.warns(RankDeficiencyWarning):
        model = TorchPolyRegressor(degree=3).fit(x, x[:, 0] ** 2 + np.arange(12) * 1e-3)
    with pytest.raises(ValueError, match="rank-deficient"):
        model.covariance_matrix()


def test_no_residual_degrees_of_freedom_is_refused():
    X, Y = _problem(23, n=30)
    normalized = np.full(30, 1 / 30)  # probabilities, not counts
    model = TorchPolyRegressor(degree=2).fit(X, Y[:, 0], sample_weight=normalized)
    with pytest.raises(ValueError, match=r"1 - 6 = -5.*frequency weights"):
        model.std_errors()


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "0.9", None])
def test_bad_level_is_refused(level):
    X, Y = _problem(24)
    model = TorchPolyRegressor(degree=1).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        model.coef_table(level=level)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        model.predict_interval(X, level=level)


def test_bad_kind_is_refused():
    X, Y = _problem(25)
    model = TorchPolyRegressor(degree=1).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="kind must be 'prediction'.*got 'mean'"):
        model.predict_interval(X, kind="mean")


def test_coef_table_without_pandas_names_the_extra(monkeypatch):
    X, Y = _problem(26)
    model = TorchPolyRegressor(degree=1).fit(X, Y[:, 0])
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pandas is not installed.*autopoly\[stats\]"):
        model.coef_table()
    assert "intercept" in model.summary()  # the text report needs no pandas


def test_exact_fit_has_zero_errors_and_unit_r2():
    x = np.linspace(-1, 1, 12).reshape(-1, 1)
    model = TorchPolyRegressor(degree=2).fit(x, 1 + x[:, 0] ** 2)
    ls = least_squares(model._stream, model._fitted)
    assert np.all(model.std_errors() < 1e-12)
    assert_allclose(model._fit_statistics(ls)["r2"], 1.0, rtol=1e-12)
    assert "intercept" in model.summary()


def test_refusals_follow_the_fit_not_later_set_params():
    """A model fitted with early stopping stays refused after set_params(early_stopping=False),
    and a least-squares fit stays accepted after set_params(loss='huber').
    """
    rng = np.random.default_rng(11)
    X = rng.standard_normal((80, 2))
    y = 1 + X[:, 0] + 0.1 * rng.standard_normal(80)
    stopped = TorchPolyRegressor(early_stopping=True, random_state=0).fit(X, y)
    stopped.set_params(early_stopping=False)
    with pytest.raises(ValueError, match="early_stopping=True"):
        stopped.std_errors()
    exact = TorchPolyRegressor().fit(X, y)
    before = exact.std_errors()
    exact.set_params(loss="huber")
    np.testing.assert_array_equal(exact.std_errors(), before)
