"""Fitting and predicting on Dask collections: the rows stay on the workers.

``fit`` on a dask array or dataframe never brings the rows to the client. Row blocks of X, y
and ``sample_weight`` are validated where they live, and only reductions of fixed size travel:

1. one pass computes, per block, the row count, the column min/max over rows of positive weight,
   and the weight sum, weighted mean and weighted sum of squared deviations of y; these merge
   exactly (Chan et al.'s pairwise update) into the input and target scaling (a
   cross-validated search folds this pass into the next: :func:`search_statistics`);
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
from functools import partial

import numpy as np
import torch

from ._dask_inputs import (
    aligned_blocks,
    check_n_features,
    collection_kind,
    is_dask_collection,
    n_rows,
    prepare_block,
    single_column_chunk,
    target_shape,
)
from ._dask_reduce import (
    ClusterObjective,
    block_factor,
    block_moments,
    compute,
    distributed_client,
    merge_factors,
    merge_moments,
    scaling_from_moments,
    tree,
)

__all__ = [
    "DaskSource",
    "check_input_features",
    "is_dask_collection",
    "predict",
    "search_statistics",
]


# ---------------------------------------------------------------------------------- source


class DaskSource:
    """Rows in dask collections, for :func:`autopoly._fitting.fit` (see ``_sources``).

    y and ``sample_weight`` may be dask arrays, dataframes or series, or in-memory arrays
    (then cut to X's row chunks). Building the source reads only metadata; the first pass
    over the blocks (row counts, scaling moments) runs when ``n_rows`` or ``scaling`` is
    first needed, and every pass returns only fixed-size reductions to the client.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        Training inputs.
    y : dask.array.Array, dask.dataframe.Series or DataFrame, or array-like
        Targets, of shape (n_samples,) or (n_samples, n_targets).
    sample_weight : dask.array.Array, dask.dataframe.Series, array-like or None
        Non-negative weights, one per row.
    spec : autopoly._spec.FitSpec
        The fit's resolved parameters.
    """

    device = None  # the rows live on the cluster; the loop runs on the fit device

    def __init__(self, X, y, sample_weight, spec):
        import dask

        if y is None:
            raise ValueError(
                "TorchPolyRegressor requires y to be passed, but the target y is None."
            )
        if spec.early_stopping:
            raise ValueError(
                "early_stopping=True is not supported on dask collections: the validation rows "
                "would have to be drawn across the cluster. Set early_stopping=False, or hold "
                "out validation blocks yourself and score them with predict."
            )
        x_kind = collection_kind(X, "X")
        n_features = len(X.columns) if x_kind == "frame" else (X.shape[1] if X.ndim == 2 else None)
        if n_features is None:
            raise ValueError(
                f"Expected a 2D dask array for X, got ndim={X.ndim}. Reshape it, e.g. "
                "X.reshape(-1, 1) for a single feature."
            )
        self.n_features = n_features
        self.feature_meta = X._meta if x_kind == "frame" else None
        self.y_ndim, self.n_outputs = target_shape(y)
        xs, ys, ws = aligned_blocks(X, y, sample_weight)
        if not xs:
            raise ValueError("X has no blocks; pass a dask collection with at least one row.")
        self.blocks = [
            dask.delayed(prepare_block)(xb, yb, wb, i, n_features, self.n_outputs)
            for i, (xb, yb, wb) in enumerate(zip(xs, ys, ws))
        ]
        # A dask array's row chunks are the blocks' row counts, known without reading them
        # (a dataframe's partition lengths are not).
        chunk_rows = X.chunks[0] if x_kind == "array" else ()
        known = len(chunk_rows) == len(self.blocks) and not np.isnan(chunk_rows).any()
        self._chunk_rows = tuple(int(n) for n in chunk_rows) if known else None
        if not spec.stats_mode() and distributed_client(self.blocks) is not None:
            # Every evaluation reads all blocks: keep them validated in the workers' memory.
            self.blocks = list(dask.persist(*self.blocks))
        self._moments = None

    def _first_pass(self):
        if self._moments is None:
            moments, counts = compute(
                tree(merge_moments, map(dask_delayed(block_moments), self.blocks)),
                [dask_delayed(n_rows)(b) for b in self.blocks],
            )
            self.adopt_moments(moments, counts)
        return self._moments

    def adopt_moments(self, moments, counts):
        """Take the first pass's results from a pass that computed them with something else.

        ``moments`` are the merged :class:`~autopoly._dask_reduce.Moments` of every block and
        ``counts`` the blocks' row counts; the checks are the first pass's.
        """
        if moments.n < 1:
            raise ValueError(
                f"Found array with 0 sample(s) (shape=(0, {self.n_features})) while a "
                "minimum of 1 is required by TorchPolyRegressor."
            )
        if not moments.W > 0:  # the in-memory fit's message (scikit-learn's)
            raise ValueError("Sample weights must contain at least one non-zero number.")
        self._moments, self._counts = moments, list(counts)

    def block_rows(self):
        """The row count of each block.

        From X's chunks when they are known, without reading the blocks; else (dataframes,
        empty arrays) from the first pass.
        """
        if self._moments is None and self._chunk_rows is not None and sum(self._chunk_rows):
            return list(self._chunk_rows)
        self._first_pass()
        return list(self._counts)

    @property
    def n_rows(self):
        return int(self._first_pass().n)

    def scaling(self, spec):
        return scaling_from_moments(spec, self._first_pass())

    def factor(self, setup, qr=None, gram_first=False):
        """The merged QR factor of every block's ``sqrt(w) * [D, t]``, on the fit device."""
        moments = self._first_pass()
        cpu_setup = setup.on("cpu")
        factors = [dask_delayed(block_factor)(b, cpu_setup) for b in self.blocks]
        (R,) = compute(tree(merge_factors, factors))
        return torch.as_tensor(R, dtype=setup.dtype, device=setup.device), moments.W

    def objective(self, spec, setup, whitening, penalty):
        if spec.huber_joint:
            raise ValueError(
                "huber_scale='joint' estimates the scale from all residuals at once, which "
                "the blockwise losses on a cluster do not see. Use huber_scale='fixed' on dask "
                "collections, or fit a sample of the rows in memory."
            )
        self._first_pass()
        return ClusterObjective(
            self.blocks,
            self._counts,
            spec,
            setup.on("cpu"),
            setup,
            whitening,
            penalty,
            self.n_outputs,
        )

    def split(self, fraction, generator):  # pragma: no cover - refused in __init__
        raise ValueError("early_stopping=True is not supported on dask collections.")


# ------------------------------------------------------------- a search's statistics


def search_statistics(source, atoms, spec):
    """A cross-validated search's per-atom factors (:class:`~autopoly._cv_stats.AtomStats`).

    One pass over the blocks when their row counts are known (:meth:`DaskSource.block_rows`):
    each block is read once, on its worker, for its scaling moments and, per atom of its rows,
    the factor of ``sqrt(w) * [1, terms(z), t]`` at the top degree of ``spec``, with ``z`` and
    ``t`` scaled by the block's own moments (the scaling of all rows is known only when every
    block has been read). A tree of merges on the workers then brings each part's factors into
    the scaling of the rows merged so far, exactly (:func:`_rescaling`), and stacks and
    re-factors each atom's; at the root that is the scaling of all rows, the in-memory
    search's. The merged moments are handed to ``source`` (:meth:`DaskSource.adopt_moments`),
    so its scaling needs no further pass.
    """
    from ._cv_stats import AtomStats, stats_terms

    counts = source.block_rows()
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    parts = [
        dask_delayed(block_search_statistics)(block, atoms.ids[starts[i] : starts[i + 1]], spec)
        for i, block in enumerate(source.blocks)
    ]
    powers = stats_terms(spec).powers(source.n_features)
    (root,) = compute(tree(partial(merge_search_statistics, spec, powers), parts))
    moments, merged = root
    source.adopt_moments(moments, counts)
    n_cols = powers.shape[0] + 1 + source.n_outputs
    empty = (np.zeros((0, n_cols)), 0.0, 0)
    found = [merged.get(a, empty) for a in range(atoms.n_atoms)]
    return AtomStats(
        [f[0] for f in found],
        np.array([f[1] for f in found], dtype=np.float64),
        np.array([f[2] for f in found], dtype=np.int64),
    )


def block_search_statistics(block, ids, spec):
    """``(moments, {atom: (R, weight sum, rows)})`` of one block, in its own scaling."""
    from ._cv_stats import stats_setup
    from ._data_pass import accumulate
    from ._sources import ArraySource
    from ._threads import off_main_thread, task_threads

    X, y, w = block
    moments = block_moments(block)
    setup = stats_setup(spec, _part_scaling(spec, moments), torch.device("cpu"))
    n_cols = setup.n_design + y.shape[1]
    factors = {}
    with task_threads(off_main_thread()):
        for a in np.unique(ids):
            keep = ids == a
            part = ArraySource(X[keep], y[keep], w[keep], 2)
            qr = accumulate(part, setup)
            # No factor where every row weighs 0.
            R = np.zeros((0, n_cols)) if qr.R is None else qr.R.to(torch.float64).numpy()
            factors[int(a)] = (R, part.weight_sum(), part.n_rows)
    return moments, factors


def merge_search_statistics(spec, powers, *parts):
    """Merge :func:`block_search_statistics` parts into the scaling of their rows together."""
    from ._cv_stats import stack_factor
    from ._threads import off_main_thread, task_threads

    moments = merge_moments(*(p[0] for p in parts))
    target = _part_scaling(spec, moments)
    gathered = {}
    with task_threads(off_main_thread()):
        for part_moments, factors in parts:
            T = _rescaling(powers, _part_scaling(spec, part_moments), target)
            for a, (R, weight, count) in factors.items():
                gathered.setdefault(a, []).append((R if T is None else R @ T, weight, count))
        merged = {
            a: (
                stack_factor([v[0] for v in values], values[0][0].shape[1]),
                sum(v[1] for v in values),
                sum(v[2] for v in values),
            )
            for a, values in gathered.items()
        }
    return moments, merged


def _part_scaling(spec, moments):
    """The scaling of some of the rows (any: rows that all weigh 0 get an arbitrary one)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return scaling_from_moments(spec, moments)


def _rescaling(powers, source, target):
    """``T`` with ``[1, terms(z_t), t_t] = [1, terms(z_s), t_s] @ T`` (None: the identity).

    ``z_s = (x - o_s) / s_s`` and ``z_t = (x - o_t) / s_t``, so ``z_t = (z_s - (o_t - o_s) /
    s_s) / (s_t / s_s)``: the terms of ``z_t`` are the binomial expansion of that affine map
    in the terms of ``z_s`` (:func:`~autopoly._features.binomial_basis_change`), and each
    target column is one scale and one shift of its own. A part's rows lie in the target's
    range (it merges them), so ``|z_t| <= 1`` there and every term's column of ``T`` has
    absolute sum at most 1: the product loses nothing to cancellation. (A block whose inputs
    are constant in a column scales it by 1, not by its zero range, but its ``z_s`` is then
    exactly 0.)
    """
    from ._features import binomial_basis_change

    if all(
        np.array_equal(getattr(source, name), getattr(target, name))
        for name in ("x_offset", "x_scale", "y_offset", "y_scale")
    ):
        return None
    offset = (target.x_offset - source.x_offset) / source.x_scale
    design = binomial_basis_change(powers, offset, target.x_scale / source.x_scale)
    n_design, n_outputs = design.shape[0], source.y_offset.shape[0]
    T = np.zeros((n_design + n_outputs, n_design + n_outputs))
    T[:n_design, :n_design] = design
    outputs = np.arange(n_design, n_design + n_outputs)
    T[outputs, outputs] = source.y_scale / target.y_scale
    T[0, outputs] = (source.y_offset - target.y_offset) / target.y_scale
    return T


def dask_delayed(function):
    import dask

    return dask.delayed(function)


def check_input_features(estimator, source, reset):
    """``n_features_in_`` and ``feature_names_in_`` from the collection's metadata."""
    from sklearn.utils.validation import _check_feature_names

    check_n_features(estimator, source.n_features, reset=reset)
    _check_feature_names(estimator, source.feature_meta, reset=reset)


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
    single = estimator._fitted.single_output
    n_outputs = estimator._fitted.n_outputs
    kind = collection_kind(X, "X")
    if kind == "frame":
        import pandas as pd

        n_features = len(X.columns)
        columns = pd.RangeIndex(n_outputs)
        check_n_features(estimator, n_features, reset=False)
        meta = (
            pd.Series([], dtype=np.float64)
            if single
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
            _predict_block,
            snapshot,
            n_outputs,
            single,
            drop_axis=1,
            dtype=np.float64,
            meta=np.empty((0,), dtype=np.float64),
        )
    return X.map_blocks(
        _predict_block,
        snapshot,
        n_outputs,
        single,
        chunks=(X.chunks[0], (n_outputs,)),
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )
