"""Fitting and predicting on Dask collections: the rows stay on the workers.

``fit`` on a dask array or dataframe never brings the rows to the client. Row blocks of X, y
and ``sample_weight`` are validated where they live, and only reductions of fixed size travel:

1. one pass computes, per block, the row count, the column min/max over rows of positive weight,
   and the weight sum, weighted mean and weighted sum of squared deviations of y; these merge
   exactly (Chan et al.'s pairwise update) into the input and target scaling;
2. for the squared error, a second pass computes per block the triangular factor ``R`` of
   ``sqrt(w) * [D, t]`` (the estimator's own chunked QR, run on the worker's CPU) and a tree of
   stack-and-QR merges reduces them to one ``R``: the exact sufficient statistics, of size
   ``(n_terms + 1 + n_outputs)**2``, whatever the number of rows;
3. for other losses, mini-batches or ``conditioning=False``, each evaluation of the objective
   sends the current coefficients to the workers, every block returns its weighted loss and
   gradient, and a tree sums them (one round trip per evaluation). On a ``distributed`` cluster
   the validated blocks are persisted in the workers' memory first; on a local scheduler they
   are re-read from the source at each evaluation, which keeps memory bounded (out-of-core).

The optimizer loop itself runs on the client, on the estimator's ``device``. Any scheduler
works: whatever ``dask.compute`` would use (a ``distributed.Client``, threads, processes,
synchronous). ``predict`` on a dask collection returns a lazy dask array computed block by
block.

dask is an optional dependency: nothing here imports it until a dask collection is seen.
"""

import copy

import numpy as np
import torch

from . import _fitting as fitting
from ._dask_inputs import (
    aligned_blocks, check_n_features, collection_kind, is_dask_collection, n_rows, prepare_block,
    single_column_chunk, target_shape,
)
from ._dask_reduce import (
    ClusterObjective, block_factor, block_moments, compute, distributed_client, merge_factors,
    merge_moments, scaling_from_moments, tree,
)
from ._losses import resolve_loss

__all__ = ["fit", "is_dask_collection", "predict"]


# ------------------------------------------------------------------------------------- fit


def fit(estimator, X, y, sample_weight):
    """Fit ``estimator`` on dask collections; the optimizer loop runs here, the rows stay put.

    Called by :meth:`TorchPolyRegressor.fit` when X is a dask array or dataframe. y and
    ``sample_weight`` may be dask arrays, dataframes or series, or in-memory arrays (then cut
    to X's row chunks).

    Parameters
    ----------
    estimator : TorchPolyRegressor
        The estimator to fit in place.
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        Training inputs.
    y : dask.array.Array, dask.dataframe.Series or DataFrame, or array-like
        Targets, of shape (n_samples,) or (n_samples, n_targets).
    sample_weight : dask.array.Array, dask.dataframe.Series, array-like or None
        Non-negative weights, one per row.
    """
    import dask
    from sklearn.base import clone
    from sklearn.utils.validation import _check_feature_names

    estimator._check_params()  # the checks that need no data, before reading any
    if y is None:
        raise ValueError("TorchPolyRegressor requires y to be passed, but the target y is None.")
    if estimator.early_stopping:
        raise ValueError(
            "early_stopping=True is not supported on dask collections: the validation rows "
            "would have to be drawn across the cluster. Set early_stopping=False, or hold out "
            "validation blocks yourself and score them with predict."
        )
    warm = estimator.warm_start and hasattr(estimator, "_theta")
    if warm:
        estimator._check_continuation("warm_start=True")
    x_kind = collection_kind(X, "X")
    n_features = len(X.columns) if x_kind == "frame" else (X.shape[1] if X.ndim == 2 else None)
    if n_features is None:
        raise ValueError(
            f"Expected a 2D dask array for X, got ndim={X.ndim}. Reshape it, e.g. "
            "X.reshape(-1, 1) for a single feature."
        )
    check_n_features(estimator, n_features, reset=not warm)
    _check_feature_names(estimator, X._meta if x_kind == "frame" else None, reset=not warm)
    y_ndim, n_outputs = target_shape(y)
    # A zero-row stand-in: _check_outputs only reads the shape (and records y's ndim).
    estimator._check_outputs(np.empty((0, n_outputs)[:y_ndim]), reset=not warm)

    xs, ys, ws = aligned_blocks(X, y, sample_weight)
    if not xs:
        raise ValueError("X has no blocks; pass a dask collection with at least one row.")
    blocks = [
        dask.delayed(prepare_block)(xb, yb, wb, i, n_features, n_outputs)
        for i, (xb, yb, wb) in enumerate(zip(xs, ys, ws))
    ]
    loss_name, _ = resolve_loss(estimator.loss, estimator.epsilon)
    stats_mode = fitting.stats_mode(estimator, loss_name)
    client = distributed_client(blocks)
    if not stats_mode and client is not None:
        # Every evaluation reads all blocks: keep them validated in the workers' memory.
        blocks = list(dask.persist(*blocks))

    moments, counts = compute(tree(merge_moments, map(dask.delayed(block_moments), blocks)),
                              [dask.delayed(n_rows)(b) for b in blocks])
    if moments["n"] < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape=(0, {n_features})) while a minimum of 1 is "
            "required by TorchPolyRegressor."
        )
    if not moments["W"] > 0:  # the in-memory fit's message (scikit-learn's)
        raise ValueError("Sample weights must contain at least one non-zero number.")
    scaling = estimator._partial["scaling"] if warm else scaling_from_moments(estimator, moments)
    # Now that the rows are counted: a batch_size covering them all means full batches.
    stats_mode = fitting.stats_mode(estimator, loss_name, int(moments["n"]))

    worker_est = clone(estimator).set_params(device="cpu", warm_start=False, verbose=0)
    setup = fitting.make_setup(estimator, n_features, n_outputs, scaling)
    cpu_setup = fitting.make_setup(worker_est, n_features, n_outputs, scaling)
    factors = [dask.delayed(block_factor)(b, worker_est, cpu_setup) for b in blocks]
    (R,) = compute(tree(merge_factors, factors))
    R = torch.as_tensor(R, dtype=setup["dtype"], device=setup["device"])

    make_rows = None
    if not stats_mode:

        def make_rows(whitening, penalty):
            return ClusterObjective(
                blocks, counts, worker_est, cpu_setup, setup, whitening, penalty, n_outputs,
            )

    estimator._solve(
        R, moments["W"], setup, make_rows=make_rows, n_rows=int(moments["n"]),
        generator=estimator._generator(),
    )


# ----------------------------------------------------------------------------------- predict


def _predict_block(block, estimator, n_outputs, single):
    if block.shape[0] == 0:
        return np.empty((0,) if single else (0, n_outputs))
    return estimator.predict(block)


def _predict_frame(frame, estimator, single, columns):
    import pandas as pd

    if len(frame) == 0:
        values = np.empty((0,) if single else (0, len(columns)))
    else:
        values = estimator.predict(frame)
    if single:
        return pd.Series(values, index=frame.index, dtype=np.float64)
    return pd.DataFrame(values, index=frame.index, columns=columns)


def predict(estimator, X):
    """Lazy predictions on a dask collection: a dask array computed block by block.

    Parameters
    ----------
    estimator : TorchPolyRegressor
        A fitted estimator (a snapshot of it is put in the graph, so refitting it later does
        not change these predictions).
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        Inputs.

    Returns
    -------
    y_pred : dask.array.Array of shape (n_samples,) or (n_samples, n_targets)
        Predictions, float64. The row chunks are X's (unknown sizes for a dataframe).
    """
    snapshot = copy.deepcopy(estimator)
    single = estimator._y_ndim == 1
    n_outputs = estimator._theta.shape[1]
    kind = collection_kind(X, "X")
    if kind == "frame":
        import pandas as pd

        n_features = len(X.columns)
        columns = pd.RangeIndex(n_outputs)
        check_n_features(estimator, n_features, reset=False)
        meta = (
            pd.Series([], dtype=np.float64) if single
            else pd.DataFrame(np.empty((0, n_outputs)), columns=columns)
        )
        out = X.map_partitions(_predict_frame, snapshot, single, columns, meta=meta)
        return out.to_dask_array()
    if kind != "array" or X.ndim != 2:
        raise ValueError(
            f"Expected a 2D dask array or a dask dataframe for X, got {type(X).__name__} with "
            f"ndim={getattr(X, 'ndim', None)}. Reshape it, e.g. X.reshape(-1, 1)."
        )
    check_n_features(estimator, X.shape[1], reset=False)
    X = single_column_chunk(X)
    if single:
        return X.map_blocks(
            _predict_block, snapshot, n_outputs, single, drop_axis=1, dtype=np.float64,
            meta=np.empty((0,), dtype=np.float64),
        )
    return X.map_blocks(
        _predict_block, snapshot, n_outputs, single, chunks=(X.chunks[0], (n_outputs,)),
        dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64),
    )
