"""TorchPolyRegressorCV: the search's scores equal GridSearchCV's, and the refit a plain fit."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    ShuffleSplit,
    TimeSeriesSplit,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from autopoly import TorchPolyRegressor, TorchPolyRegressorCV

CV = KFold(5, shuffle=True, random_state=0)
GRID = {"degree": [1, 2, 3, 4], "alpha": [0.0, 1e-2, 1.0, 100.0]}
# Most comparisons run GridSearchCV over the plain estimator: a small grid keeps them fast.
SMALL = {"degree": [1, 3], "alpha": [0.0, 1.0]}


def _data(n=300, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, n_features))
    y = X[:, 0] ** 3 - X[:, 1] * X[:, -1] + 0.1 * rng.normal(size=n)
    return X, y


def _search(grid=SMALL, **params):
    return TorchPolyRegressorCV(
        degrees=grid["degree"],
        alphas=grid["alpha"],
        l1_ratios=grid.get("l1_ratio", [0.0]),
        **{"cv": CV, **params},
    )


def _grid_search(grid=SMALL, cv=CV, scoring=None, weighted=False, **params):
    """GridSearchCV over the plain estimator; with ``weighted`` the weights reach the scorer."""
    if not weighted:
        return GridSearchCV(TorchPolyRegressor(**params), grid, cv=cv, scoring=scoring)
    scorer = get_scorer(scoring or "r2").set_score_request(sample_weight=True)
    estimator = TorchPolyRegressor(**params).set_fit_request(sample_weight=True)
    return GridSearchCV(estimator, grid, cv=cv, scoring=scorer)


def _assert_same_search(search, reference, atol=1e-10):
    assert_allclose(
        search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"], atol=atol
    )
    for k in range(reference.n_splits_):
        key = f"split{k}_test_score"
        assert_allclose(search.cv_results_[key], reference.cv_results_[key], atol=atol)
    assert {k: search.best_params_[k] for k in reference.best_params_} == reference.best_params_


@pytest.mark.parametrize(
    "params",
    [{}, {"fit_intercept": False}, {"interaction_only": True}],
    ids=["default", "no_intercept", "interaction_only"],
)
def test_scores_equal_gridsearch_over_the_plain_estimator(params):
    X, y = _data()
    search = _search(GRID, **params).fit(X, y)
    reference = _grid_search(GRID, **params).fit(X, y)
    _assert_same_search(search, reference)
    assert_allclose(search.coef_, reference.best_estimator_.coef_, atol=1e-12)


def test_multi_output_scores_and_refit():
    X, y = _data()
    Y = np.c_[y, X[:, 0] ** 2 - X[:, 2]]
    search = _search().fit(X, Y)
    reference = _grid_search().fit(X, Y)
    _assert_same_search(search, reference)
    assert search.predict(X).shape == (X.shape[0], 2)
    assert_allclose(search.predict(X), reference.predict(X), atol=1e-12)


@pytest.mark.parametrize("scoring", ["r2", "neg_mean_squared_error", "neg_root_mean_squared_error"])
def test_weighted_exact_scores_equal_routed_gridsearch(scoring):
    # The test scores are weighted by sample_weight as a scorer that requests it weights them.
    X, y = _data()
    w = np.random.default_rng(1).uniform(0, 2, X.shape[0])
    w[:15] = 0.0
    search = _search(scoring=scoring).fit(X, y, sample_weight=w)
    with sklearn.config_context(enable_metadata_routing=True):
        reference = _grid_search(scoring=scoring, weighted=True).fit(X, y, sample_weight=w)
    _assert_same_search(search, reference)


@pytest.mark.parametrize("scoring", ["neg_mean_absolute_error", "explained_variance"])
def test_other_scorers_predict_each_test_set_once(scoring):
    X, y = _data()
    search = _search(scoring=scoring).fit(X, y)
    reference = _grid_search(scoring=scoring).fit(X, y)
    _assert_same_search(search, reference)


def test_callable_scorer_with_weights():
    X, y = _data()
    w = np.random.default_rng(2).uniform(0.5, 2, X.shape[0])
    scorer = get_scorer("neg_median_absolute_error")
    search = _search(scoring=scorer).fit(X, y, sample_weight=w)
    with sklearn.config_context(enable_metadata_routing=True):
        reference = _grid_search(scoring="neg_median_absolute_error", weighted=True)
        reference.fit(X, y, sample_weight=w)
    _assert_same_search(search, reference)


@pytest.mark.parametrize(
    "cv",
    [ShuffleSplit(4, test_size=0.3, random_state=0), TimeSeriesSplit(4), 3],
    ids=["shuffle_split", "time_series_split", "int"],
)
def test_splitters_whose_test_sets_do_not_partition_the_rows(cv):
    X, y = _data()
    search = _search(cv=cv).fit(X, y)
    reference = _grid_search(cv=cv).fit(X, y)
    _assert_same_search(search, reference)


def test_groups_reach_the_splitter():
    X, y = _data()
    groups = np.random.default_rng(3).integers(0, 12, X.shape[0])
    search = _search(cv=GroupKFold(4)).fit(X, y, groups=groups)
    reference = _grid_search(cv=GroupKFold(4)).fit(X, y, groups=groups)
    _assert_same_search(search, reference)


def test_l1_candidates_are_exact_and_warm_starts_change_nothing():
    X, y = _data()
    grid = {"degree": [3], "alpha": [1e-3, 1e-2, 1e-1], "l1_ratio": [0.5, 1.0]}
    search = _search(grid).fit(X, y)
    reference = _grid_search(grid).fit(X, y)
    _assert_same_search(search, reference)
    # One alpha at a time: every L1 solve then starts cold.
    for k, params in enumerate(search.cv_results_["params"]):
        single = {"degree": [params["degree"]], "alpha": [params["alpha"]]}
        single["l1_ratio"] = [params["l1_ratio"]]
        cold = _search(single, refit=False).fit(X, y)
        assert_allclose(
            cold.cv_results_["mean_test_score"][0],
            search.cv_results_["mean_test_score"][k],
            atol=1e-12,
        )
    plain = TorchPolyRegressor(**{k: v for k, v in search.best_params_.items()}).fit(X, y)
    assert_allclose(search.coef_, plain.coef_, atol=1e-12)
    assert np.array_equal(search.coef_ == 0, plain.coef_ == 0)


def test_degree_zero_with_an_l1_part_is_the_plain_fit():
    # The intercept alone: no term for the L1 solver to penalize; the weighted mean.
    X, y = _data()
    w = np.random.default_rng(7).uniform(0.5, 2, X.shape[0])
    grid = {"degree": [0, 1, 2], "alpha": [1.0, 1e3], "l1_ratio": [0.5, 1.0]}
    search = _search(grid).fit(X, y)
    _assert_same_search(search, _grid_search(grid).fit(X, y))
    only = _search({"degree": [0], "alpha": [1.0], "l1_ratio": [1.0]}).fit(X, y, sample_weight=w)
    assert only.coef_.shape == (0,)
    assert only.intercept_ == pytest.approx(np.average(y, weights=w), rel=1e-13)


@pytest.mark.parametrize("alphas", [[0.0], [0.0, 1e-2, 1.0]], ids=["least_squares", "ridge"])
def test_raw_unscaled_inputs_at_high_degree(alphas):
    rng = np.random.default_rng(4)
    X = rng.uniform(1000, 1010, (300, 1))
    y = np.sin(X[:, 0]) + 0.05 * rng.normal(size=300)
    grid = {"degree": [4, 5, 6], "alpha": alphas}
    search = _search(grid).fit(X, y)
    reference = _grid_search(grid).fit(X, y)
    _assert_same_search(search, reference, atol=1e-8)
    assert_allclose(search.predict(X), reference.predict(X), rtol=1e-9, atol=1e-9)


def test_refit_is_the_plain_fit():
    X, y = _data()
    search = _search().fit(X, y)
    best = search.best_params_
    assert (search.degree_, search.alpha_, search.l1_ratio_) == (
        best["degree"],
        best["alpha"],
        best["l1_ratio"],
    )
    plain = TorchPolyRegressor(degree=search.degree_, alpha=search.alpha_).fit(X, y)
    for name in ("coef_", "intercept_", "powers_", "n_features_in_", "best_loss_"):
        assert_allclose(getattr(search, name), getattr(plain, name), rtol=1e-12, atol=1e-13)
    assert search.device_ == plain.device_
    assert_allclose(search.predict(X), plain.predict(X), atol=1e-12)
    assert search.score(X, y) == pytest.approx(plain.score(X, y), abs=1e-12)
    assert_allclose(search.feature_importances_, plain.feature_importances_, atol=1e-12)
    assert list(search.get_feature_names_out()) == list(plain.get_feature_names_out())
    module = search.to_torch()
    assert_allclose(module(torch.as_tensor(X)).numpy(), plain.predict(X), atol=1e-12)
    restored = pickle.loads(pickle.dumps(search))
    assert_allclose(restored.predict(X), plain.predict(X), atol=1e-12)
    assert restored.cv_results_["params"] == search.cv_results_["params"]


def test_inference_after_refit_is_the_plain_fits():
    X, y = _data()
    search = _search({"degree": [1, 2, 3], "alpha": [0.0]}).fit(X, y)
    plain = TorchPolyRegressor(degree=search.degree_).fit(X, y)
    assert_allclose(search.covariance_matrix(), plain.covariance_matrix(), rtol=1e-9)
    assert_allclose(search.std_errors(), plain.std_errors(), rtol=1e-9)
    assert_allclose(search.predict_interval(X[:5]), plain.predict_interval(X[:5]), rtol=1e-9)
    pytest.importorskip("pandas")
    table, reference = search.coef_table(), plain.coef_table()
    assert list(table.index) == list(reference.index)
    assert_allclose(table.to_numpy(), reference.to_numpy(), rtol=1e-9)


def test_inference_refuses_a_penalized_refit_as_the_plain_fit_does():
    X, y = _data()
    search = _search({"degree": [2], "alpha": [1.0]}).fit(X, y)
    with pytest.raises(ValueError, match="alpha=1.0 penalizes the coefficients"):
        search.covariance_matrix()


def test_skops_round_trip():
    skops_io = pytest.importorskip("skops.io")
    X, y = _data()
    search = _search({"degree": [1, 2], "alpha": [0.0, 1.0]}).fit(X, y)
    data = skops_io.dumps(search)
    loaded = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
    assert_allclose(loaded.predict(X), search.predict(X), atol=1e-15)


def test_cv_results_have_gridsearch_keys_and_order():
    X, y = _data()
    search = _search().fit(X, y)
    reference = GridSearchCV(TorchPolyRegressor(), {**SMALL, "l1_ratio": [0.0]}, cv=CV).fit(X, y)
    assert set(search.cv_results_) == set(reference.cv_results_)
    assert search.cv_results_["params"] == reference.cv_results_["params"]
    for key in ("param_degree", "param_alpha", "rank_test_score"):
        assert list(search.cv_results_[key]) == list(reference.cv_results_[key])
    assert search.best_index_ == reference.best_index_
    assert search.best_score_ == pytest.approx(reference.best_score_, abs=1e-12)
    assert search.n_splits_ == 5
    times = search.cv_results_["mean_fit_time"]
    assert times.shape == (4,) and (times > 0).all()


def test_refit_callable_and_refit_false():
    X, y = _data()
    search = _search(refit=lambda results: 0).fit(X, y)
    assert search.best_index_ == 0
    assert search.best_params_ == {"alpha": 0.0, "degree": 1, "l1_ratio": 0.0}
    assert search.degree_ == 1 and search.coef_.shape == (3,)
    kept = _search(refit=False).fit(X, y)
    assert kept.degree_ == 3 and not hasattr(kept, "coef_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        kept.predict(X)


def test_a_pipeline_and_nested_cross_validation():
    X, y = _data(200)
    X = 50 + 10 * X
    inner = _search({"degree": [1, 2, 3], "alpha": [0.0, 1.0]}, cv=3)
    pipe = make_pipeline(StandardScaler(), inner)
    scores = cross_validate(pipe, X, y, cv=KFold(3), return_estimator=True)
    assert scores["test_score"].shape == (3,) and (scores["test_score"] > 0.5).all()
    assert all(e[-1].degree_ == 3 for e in scores["estimator"])
    # The pipeline's search equals a search on the standardized rows.
    pipe.fit(X, y)
    direct = clone(inner).fit(StandardScaler().fit_transform(X), y)
    assert_allclose(
        pipe[-1].cv_results_["mean_test_score"], direct.cv_results_["mean_test_score"], atol=1e-12
    )


def test_torch_tensors_stay_tensors():
    X, y = _data()
    search = _search({"degree": [1, 2, 3], "alpha": [0.0, 1.0]}).fit(
        torch.as_tensor(X), torch.as_tensor(y)
    )
    reference = _search({"degree": [1, 2, 3], "alpha": [0.0, 1.0]}).fit(X, y)
    assert_allclose(
        search.cv_results_["mean_test_score"],
        reference.cv_results_["mean_test_score"],
        atol=1e-12,
    )
    assert_allclose(search.coef_, reference.coef_, atol=1e-12)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"degrees": []}, r"degrees must list at least one value; got degrees=\[\]"),
        ({"degrees": [1, 2.5]}, r"degrees must hold integers >= 0; got 2.5"),
        (
            {"degrees": [0, 1], "fit_intercept": False},
            r"integers >= 1 \(fit_intercept=False\); got 0",
        ),
        ({"alphas": [1.0, -1.0]}, r"alphas must hold finite numbers >= 0; got -1.0"),
        ({"l1_ratios": [2.0]}, r"l1_ratios must hold numbers in \[0, 1\]; got 2.0"),
        ({"cv": 400}, r"Cannot have number of splits n_splits=400"),
    ],
)
def test_invalid_grids_are_refused_with_the_fix(params, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        TorchPolyRegressorCV(**params).fit(X, y)


def test_a_failed_search_leaves_no_trace():
    X, y = _data()
    search = _search({"degree": [1, 2], "alpha": [0.0]}).fit(X, y)
    before = {k: v for k, v in vars(search).items()}
    search.set_params(alphas=[-1.0])
    with pytest.raises(ValueError, match="alphas"):
        search.fit(X, y)
    assert set(vars(search)) == set(before)
    assert search.best_params_ == before["best_params_"]
    assert_allclose(search.coef_, before["coef_"])


def test_dask_scorers_other_than_the_exact_ones_are_refused():
    da = pytest.importorskip("dask.array")
    X, y = _data()
    search = _search(scoring="neg_mean_absolute_error")
    with pytest.raises(ValueError, match="needs predictions on the test rows"):
        search.fit(da.from_array(X, chunks=100), da.from_array(y, chunks=100))


def test_no_partial_fit():
    assert not hasattr(TorchPolyRegressorCV(), "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        TorchPolyRegressorCV().partial_fit  # noqa: B018
    assert "the search needs every row at once" in str(info.value.__cause__)


def test_a_test_fold_without_weight_scores_nan():
    X, y = _data(40)
    w = np.ones(40)
    w[:8] = 0.0  # KFold(5) unshuffled: the first test fold's rows weigh nothing
    search = _search({"degree": [1, 2], "alpha": [0.0]}, cv=KFold(5)).fit(X, y, sample_weight=w)
    assert np.isnan(search.cv_results_["split0_test_score"]).all()
    assert np.isfinite(search.cv_results_["split1_test_score"]).all()


def test_failed_candidates_score_nan_with_a_warning(monkeypatch):
    from autopoly import _cv_stats

    solve = _cv_stats.solve_candidate

    def failing(cand, *args, **kwargs):
        if cand.degree == 2:
            raise ValueError("no solution here")
        return solve(cand, *args, **kwargs)

    monkeypatch.setattr(_cv_stats, "solve_candidate", failing)
    X, y = _data()
    search = _search({"degree": [1, 2], "alpha": [0.0]})
    with pytest.warns(sklearn.exceptions.FitFailedWarning, match="5 candidate fit.*no solution"):
        search.fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_score"][1])
    assert search.degree_ == 1


@parametrize_with_checks(
    [
        # The checks' data have up to 30 features: degree 3 would be 5456 terms.
        TorchPolyRegressorCV(degrees=(1, 2)),
        TorchPolyRegressorCV(degrees=[0, 1, 2], alphas=[0.0, 1.0], l1_ratios=[0.0, 0.5], cv=3),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _dask_problem():
    da = pytest.importorskip("dask.array")
    X, y = _data(6000, seed=5)
    w = np.random.default_rng(6).uniform(0.5, 2.0, X.shape[0])
    lazy = (da.from_array(X, chunks=1000), da.from_array(y, chunks=1000))
    return X, y, w, lazy + (da.from_array(w, chunks=1000),)


def test_dask_collections_on_the_local_scheduler_equal_in_memory():
    dask = pytest.importorskip("dask")
    X, y, w, (X_d, y_d, w_d) = _dask_problem()
    grid = {"degree": [1, 2, 3], "alpha": [0.0, 1e-2, 1.0], "l1_ratio": [0.0, 0.5]}
    reference = _search(grid).fit(X, y, sample_weight=w)
    with dask.config.set(scheduler="synchronous"):
        search = _search(grid).fit(X_d, y_d, sample_weight=w_d)
    assert_allclose(
        search.cv_results_["mean_test_score"],
        reference.cv_results_["mean_test_score"],
        atol=1e-10,
    )
    assert search.best_params_ == reference.best_params_
    assert_allclose(search.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


def _count_block_reads(monkeypatch):
    """The blocks read from the collections, by index (each read validates its block once)."""
    import autopoly._dask as dask_module

    reads = []
    original = dask_module.prepare_block

    def counting(*args):
        reads.append(args[3])
        return original(*args)

    monkeypatch.setattr(dask_module, "prepare_block", counting)
    return reads


def test_dask_search_reads_each_block_once(monkeypatch):
    dask = pytest.importorskip("dask")
    X, y, w, (X_d, y_d, w_d) = _dask_problem()
    reads = _count_block_reads(monkeypatch)
    with dask.config.set(scheduler="synchronous"):
        search = _search().fit(X_d, y_d, sample_weight=w_d)
        search.predict(X)
    assert sorted(reads) == list(range(6))
    reference = _search().fit(X, y, sample_weight=w)
    assert_allclose(search.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


def test_dask_blocks_of_unlike_ranges_merge_into_the_in_memory_statistics():
    # Each block's factors are taken in the block's own scaling and rescaled as they merge:
    # sorted raw inputs far from 0 (every block a narrow slice of the range), a one-row block,
    # a block whose rows all weigh 0 and a block with a constant column.
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(8)
    X = np.sort(rng.uniform(1000, 1010, (900, 2)), axis=0)
    X[300:400, 1] = 1004.0
    y = np.sin(X[:, 0]) + 1e-3 * X[:, 1] ** 2 + 0.05 * rng.normal(size=900)
    w = rng.uniform(0.5, 2, 900)
    w[600:700] = 0.0
    chunks = ((1, 299, 100, 200, 100, 200),)
    lazy = [da.from_array(a, chunks=chunks + a.shape[1:]) for a in (X, y, w)]
    grid = {"degree": [1, 2, 3, 4], "alpha": [0.0, 1e-2], "l1_ratio": [0.0, 0.5]}
    reference = _search(grid).fit(X, y, sample_weight=w)
    with dask.config.set(scheduler="synchronous"):
        search = _search(grid).fit(*lazy[:2], sample_weight=lazy[2])
    assert_allclose(
        search.cv_results_["mean_test_score"],
        reference.cv_results_["mean_test_score"],
        atol=1e-8,
    )
    assert search.best_params_ == reference.best_params_
    assert_allclose(search.predict(X), reference.predict(X), rtol=1e-8, atol=1e-8)


def test_dask_dataframes_of_unknown_lengths_take_a_first_pass(monkeypatch):
    # Their partitions' lengths are known only once read: a pass for them, one for the factors.
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    X, y, w, _ = _dask_problem()
    frames = [
        dd.from_pandas(v, npartitions=3) for v in (pd.DataFrame(X), pd.Series(y), pd.Series(w))
    ]
    reads = _count_block_reads(monkeypatch)
    with dask.config.set(scheduler="synchronous"):
        search = _search().fit(frames[0], frames[1], sample_weight=frames[2])
    assert sorted(reads) == sorted(2 * list(range(3)))
    reference = _search().fit(X, y, sample_weight=w)
    assert_allclose(search.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_dask_search_on_a_two_process_cluster_equals_in_memory():
    distributed = pytest.importorskip("distributed")
    X, y, w, (X_d, y_d, w_d) = _dask_problem()
    grid = {"degree": [1, 2, 3, 4], "alpha": [0.0, 1e-2, 1.0, 100.0]}
    reference = _search(grid).fit(X, y, sample_weight=w)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        with distributed.Client(cluster) as client:
            with distributed.get_task_stream(client) as stream:
                search = _search(grid).fit(X_d, y_d, sample_weight=w_d)
    finally:
        cluster.close()
    assert_allclose(
        search.cv_results_["mean_test_score"],
        reference.cv_results_["mean_test_score"],
        atol=1e-8,
    )
    assert search.best_params_ == reference.best_params_
    assert_allclose(search.predict(X), reference.predict(X), atol=1e-9)
    # The per-fold statistics were reduced on both workers, one task per block.
    blocks = [t for t in stream.data if "block_search_statistics" in str(t["key"])]
    assert len(blocks) == 6 and len({t["worker"] for t in blocks}) == 2


def test_parallel_splits_and_float32():
    X, y = _data()
    grid = {"degree": [1, 2, 3], "alpha": [0.0, 1e-2, 1.0], "l1_ratio": [0.0, 0.5]}
    serial = _search(grid).fit(X, y)
    parallel = _search(grid, n_jobs=2).fit(X, y)
    assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], atol=0
    )
    single = _search(grid, dtype="float32").fit(X, y)
    assert_allclose(
        single.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], atol=1e-4
    )
    assert single.best_params_ == serial.best_params_
