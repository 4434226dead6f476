"""Fitting on Dask collections (filled in by the Dask integration)."""


def is_dask_collection(obj):
    """True for dask arrays and dataframes, without importing dask when it is not in use."""
    module = type(obj).__module__ or ""
    if not module.startswith("dask"):
        return False
    from dask.base import is_dask_collection as _is

    return _is(obj)


def fit(estimator, X, y, sample_weight):
    raise NotImplementedError("fitting on dask collections is not implemented yet")
