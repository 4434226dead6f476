"""Dask inputs: what kind of collection each argument is, and validated row blocks.

Nothing here imports dask until a dask collection is seen (dask is an optional dependency).
"""

import numpy as np


def is_dask_collection(obj):
    """Whether ``obj`` is a dask collection, without importing dask when it is not in use.

    Parameters
    ----------
    obj : object
        Anything passed as X.

    Returns
    -------
    is_dask : bool
        True for dask arrays, dataframes and other dask collections.
    """
    module = type(obj).__module__ or ""
    if not module.startswith("dask"):
        return False
    from dask.base import is_dask_collection as _is

    return _is(obj)


def collection_kind(obj, name):
    """'array', 'frame', 'series' for dask collections, None for in-memory data."""
    if obj is None or not is_dask_collection(obj):
        return None
    import dask.array as da

    if isinstance(obj, da.Array):
        return "array"
    try:
        import dask.dataframe as dd
    except ImportError:  # dask[array] alone: no dataframes can exist
        dd = None
    if dd is not None and isinstance(obj, dd.DataFrame):
        return "frame"
    if dd is not None and isinstance(obj, dd.Series):
        return "series"
    raise TypeError(
        f"{name} is a {type(obj).__name__}; TorchPolyRegressor accepts dask arrays, dask "
        "dataframes and dask series (or in-memory arrays). Convert it, e.g. with "
        "dask.array.from_delayed or .to_dask_array()."
    )


def single_column_chunk(arr):
    return arr.rechunk({1: -1}) if arr.ndim == 2 and len(arr.chunks[1]) > 1 else arr


def row_blocks(v, name, X):
    """Delayed row blocks of ``v`` aligned with the row chunks of the dask array ``X``."""
    import dask.array as da

    kind = collection_kind(v, name)
    if kind in ("frame", "series"):
        v = v.to_dask_array(lengths=True)
    elif kind is None:
        v = np.asarray(v)
        if v.shape[0] != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} rows but {name} has {v.shape[0]}; pass {name} with one "
                "entry per row of X."
            )
        v = da.from_array(v, chunks=(X.chunks[0],) + v.shape[1:])
    v = single_column_chunk(v)
    rows, x_rows = v.chunks[0], X.chunks[0]
    known = not (np.isnan(v.shape[0]) or np.isnan(X.shape[0]))
    if rows != x_rows:
        if known and v.shape[0] != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} rows but {name} has {v.shape[0]}; pass {name} with one "
                "entry per row of X."
            )
        if known:
            v = v.rechunk({0: x_rows})
        elif len(rows) != len(x_rows):
            raise ValueError(
                f"X and {name} have unknown row chunk sizes and different numbers of blocks "
                f"({len(x_rows)} and {len(rows)}); call .compute_chunk_sizes() on both, or "
                "give them the same row chunks."
            )
    return list(v.to_delayed().ravel())


def aligned_blocks(X, y, sample_weight):
    """Lists of delayed row blocks of X, y and sample_weight (``None`` entries: unit weights).

    Dataframe partitions are used as they are when X, y and sample_weight are all dataframes
    or series with the same number of partitions; otherwise everything becomes dask arrays
    whose row chunks follow X's (lengths are checked again on the workers, block by block).
    """
    kinds = [
        collection_kind(v, n) for v, n in ((X, "X"), (y, "y"), (sample_weight, "sample_weight"))
    ]
    others = [(v, k) for v, k in zip((y, sample_weight), kinds[1:]) if v is not None]
    if kinds[0] == "frame" and all(
        k in ("frame", "series") and v.npartitions == X.npartitions for v, k in others
    ):
        xs = list(X.to_delayed())
        ys = list(y.to_delayed())
        ws = list(sample_weight.to_delayed()) if sample_weight is not None else [None] * len(xs)
        return xs, ys, ws
    Xa = X.to_dask_array(lengths=True) if kinds[0] == "frame" else X
    if Xa.ndim != 2:
        raise ValueError(
            f"Expected a 2D dask array for X, got ndim={Xa.ndim}. Reshape it, e.g. "
            "X.reshape(-1, 1) for a single feature."
        )
    if np.isnan(Xa.shape[0]) and any(k is None for v, k in others):
        Xa = Xa.compute_chunk_sizes()  # in-memory y or weights must be cut like X
    Xa = single_column_chunk(Xa)
    xs = list(Xa.to_delayed().ravel())
    ys = row_blocks(y, "y", Xa)
    ws = (
        [None] * len(xs)
        if sample_weight is None
        else row_blocks(sample_weight, "sample_weight", Xa)
    )
    return xs, ys, ws


def target_shape(y):
    """``(ndim, n_outputs)`` of y from its metadata, without computing it."""
    kind = collection_kind(y, "y")
    if kind == "series":
        return 1, 1
    if kind == "frame":
        return 2, len(y.columns)
    shape = y.shape if kind == "array" else np.shape(y)
    if len(shape) not in (1, 2):
        raise ValueError(f"y must be 1D or 2D; got an array of shape {shape}.")
    return len(shape), 1 if len(shape) == 1 else int(shape[1])


def check_n_features(estimator, n_features, reset):
    if reset:
        estimator.n_features_in_ = n_features
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )


def prepare_block(X, y, w, index, n_features, n_outputs):
    """One validated row block on the worker: (X float, y of shape (n, n_outputs), weights).

    The checks and messages are the in-memory fit's, prefixed with the block, whose rows are
    counted from its start.
    """
    from sklearn.utils.validation import check_array, check_non_negative

    from ._validation import explain

    raw_X, raw_y, raw_w = X, y, w
    try:
        X = check_array(X, dtype=[np.float64, np.float32], input_name="X", ensure_min_samples=0)
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", ensure_min_samples=0)
        if w is not None:
            w = check_array(
                w,
                ensure_2d=False,
                dtype=np.float64,
                input_name="sample_weight",
                ensure_min_samples=0,
            )
            if w.size:
                check_non_negative(w, "`sample_weight`")
    except ValueError as exc:
        reason = explain(exc, raw_X, raw_y, raw_w)
        raise ValueError(f"In block {index} of the dask collections: {reason}") from exc
    if X.shape[1] != n_features:
        raise ValueError(f"Block {index} of X has {X.shape[1]} columns, expected {n_features}.")
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.shape[0] != X.shape[0] or y.shape[1] != n_outputs:
        raise ValueError(
            f"Block {index} of X has {X.shape[0]} rows but the same block of y has shape "
            f"{y.shape}; give X, y and sample_weight the same row chunks (dask arrays) or "
            "partitions (dask dataframes)."
        )
    if w is None:
        return X, y, np.ones(X.shape[0])
    if w.ndim != 1 or w.shape[0] != X.shape[0]:
        raise ValueError(
            f"Block {index} of X has {X.shape[0]} rows but the same block of sample_weight has "
            f"shape {w.shape}; give sample_weight one entry per row of X, with the same row "
            "chunks (dask arrays) or partitions (dask dataframes)."
        )
    return X, y, w


def n_rows(block):
    return block[0].shape[0]
