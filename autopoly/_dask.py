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

from ._conditioning import ChunkedQR, input_scaling
from ._data_pass import accumulate, chunk_slices, design
from ._losses import resolve_loss
from ._objective import _Objective
from ._threads import off_main_thread, task_threads

# Fan-in of the reduction trees: enough to keep the tree shallow, small enough that a merge
# task stacks only a few factors.
SPLIT_EVERY = 8


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


# --------------------------------------------------------------------------------- the inputs


def _kind(obj, name):
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


def _single_column_chunk(arr):
    return arr.rechunk({1: -1}) if arr.ndim == 2 and len(arr.chunks[1]) > 1 else arr


def _row_blocks(v, name, X):
    """Delayed row blocks of ``v`` aligned with the row chunks of the dask array ``X``."""
    import dask.array as da

    kind = _kind(v, name)
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
    v = _single_column_chunk(v)
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


def _aligned_blocks(X, y, sample_weight):
    """Lists of delayed row blocks of X, y and sample_weight (``None`` entries: unit weights).

    Dataframe partitions are used as they are when X, y and sample_weight are all dataframes
    or series with the same number of partitions; otherwise everything becomes dask arrays
    whose row chunks follow X's (lengths are checked again on the workers, block by block).
    """
    kinds = [_kind(v, n) for v, n in ((X, "X"), (y, "y"), (sample_weight, "sample_weight"))]
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
    Xa = _single_column_chunk(Xa)
    xs = list(Xa.to_delayed().ravel())
    ys = _row_blocks(y, "y", Xa)
    ws = (
        [None] * len(xs) if sample_weight is None
        else _row_blocks(sample_weight, "sample_weight", Xa)
    )
    return xs, ys, ws


def _target_shape(y):
    """``(ndim, n_outputs)`` of y from its metadata, without computing it."""
    kind = _kind(y, "y")
    if kind == "series":
        return 1, 1
    if kind == "frame":
        return 2, len(y.columns)
    shape = y.shape if kind == "array" else np.shape(y)
    if len(shape) not in (1, 2):
        raise ValueError(f"y must be 1D or 2D; got an array of shape {shape}.")
    return len(shape), 1 if len(shape) == 1 else int(shape[1])


def _prepare_block(X, y, w, index, n_features, n_outputs):
    """One validated row block on the worker: (X float, y of shape (n, n_outputs), weights).

    The checks and messages are the in-memory fit's, prefixed with the block, whose rows are
    counted from its start.
    """
    from sklearn.utils.validation import check_array, check_non_negative

    from ._validation import explain

    raw = {"X": X, "y": y, "sample_weight": w}
    try:
        X = check_array(X, dtype=[np.float64, np.float32], input_name="X", ensure_min_samples=0)
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y",
                        ensure_min_samples=0)
        if w is not None:
            w = check_array(w, ensure_2d=False, dtype=np.float64, input_name="sample_weight",
                            ensure_min_samples=0)
            if w.size:
                check_non_negative(w, "`sample_weight`")
    except ValueError as exc:
        reason = explain(exc, raw["X"], raw["y"], raw["sample_weight"])
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


def _n_rows(block):
    return block[0].shape[0]


# --------------------------------------------------------------------- reductions on workers


def _block_moments(block):
    """Mergeable statistics of one block: counts, x range over positive weights, y moments."""
    X, y, w = block
    positive = X[w > 0]
    if positive.shape[0]:
        lo, hi = positive.min(axis=0).astype(np.float64), positive.max(axis=0).astype(np.float64)
    else:
        lo, hi = np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)
    W = float(w.sum())
    mean = (w @ y) / W if W > 0 else np.zeros(y.shape[1])
    m2 = w @ (y - mean) ** 2
    return {"n": X.shape[0], "lo": lo, "hi": hi, "W": W, "mean": mean, "m2": m2}


def _merge_moments(*parts):
    out = dict(parts[0])
    for p in parts[1:]:
        W = out["W"] + p["W"]
        if p["W"] > 0:
            delta = p["mean"] - out["mean"]
            out["mean"] = out["mean"] + delta * (p["W"] / W)
            out["m2"] = out["m2"] + p["m2"] + delta**2 * (out["W"] * p["W"] / W)
        out["W"] = W
        out["n"] += p["n"]
        out["lo"] = np.minimum(out["lo"], p["lo"])
        out["hi"] = np.maximum(out["hi"], p["hi"])
    return out


def _block_factor(block, worker_est, setup):
    """The QR factor of ``sqrt(w) * [D, t]`` over one block, as NumPy (the estimator's code).

    ``setup`` is the estimator's CPU setup (terms, scalings as tensors), built once on the
    client and shipped with the task.
    """
    X, y, w = block
    with task_threads(off_main_thread()):
        qr = accumulate(X, y, w, setup)
    cols = setup["powers"].shape[0] + int(worker_est.fit_intercept) + y.shape[1]
    if qr.R is None:
        return np.zeros((0, cols), dtype=_numpy_dtype(setup["dtype"]))
    return qr.R.numpy()


def _merge_factors(*parts):
    stacked = np.concatenate(parts)
    if stacked.shape[0] == 0:
        return stacked
    qr = ChunkedQR()
    with task_threads(off_main_thread()):
        qr.update(torch.from_numpy(stacked))
    return qr.R.numpy()


def _block_loss(block, rows, theta, worker_est, setup, need_grad):
    """``(W, W * loss, W * gradient)`` of one block's weighted-mean loss, ``W`` its weight sum.

    The loss of each row chunk is the estimator's loss function given weights normalized
    within the chunk, so it is a weighted mean whatever the function's weight convention, and
    chunks combine by their weight shares. It may be one number per output or one in all;
    the gradient is that of its sum (outputs are independent problems).
    """
    X, y, w = block
    if rows is not None:
        X, y, w = X[rows], y[rows], w[rows]
    weight = float(w.sum())
    if not weight > 0:  # no rows, or only rows that weigh nothing: adds nothing
        return 0.0, None, None
    _, loss_fn = resolve_loss(worker_est.loss, worker_est.epsilon)
    # enable_grad: the synchronous scheduler runs this inside the client's autograd forward.
    with task_threads(off_main_thread()), torch.enable_grad():
        dtype = setup["dtype"]
        th = torch.tensor(theta, dtype=dtype).requires_grad_(need_grad)
        itemsize = torch.empty((), dtype=dtype).element_size()
        total = 0.0
        for c in chunk_slices(X.shape[0], theta.shape[0] + y.shape[1], itemsize):
            w_c = torch.tensor(w[c], dtype=dtype)
            chunk_weight = w_c.sum()
            if not chunk_weight > 0:
                continue
            D = design(X[c], setup)
            y_hat = setup["y_offset_t"] + setup["y_scale_t"] * (D @ th)
            y_c = torch.tensor(y[c], dtype=dtype)
            part = chunk_weight * loss_fn(y_hat, y_c, w_c / chunk_weight)
            if need_grad:
                part.sum().backward()
            total = total + part.detach()
    grad = th.grad.numpy() if need_grad and th.grad is not None else None
    return weight, np.asarray(total.numpy()), grad


def _merge_losses(*parts):
    parts = [p for p in parts if p[1] is not None]
    if not parts:
        return 0.0, None, None
    grads = [p[2] for p in parts if p[2] is not None]
    return (
        sum(p[0] for p in parts),
        np.sum([p[1] for p in parts], axis=0),
        np.sum(grads, axis=0) if grads else None,
    )


def _tree(merge, parts):
    """Reduce delayed ``parts`` with ``merge`` in a tree of fan-in :data:`SPLIT_EVERY`."""
    import dask

    parts = list(parts)
    while len(parts) > 1:
        parts = [
            dask.delayed(merge)(*parts[i : i + SPLIT_EVERY])
            for i in range(0, len(parts), SPLIT_EVERY)
        ]
    return parts[0]


def _numpy_dtype(torch_dtype):
    return torch.empty((), dtype=torch_dtype).numpy().dtype


def _distributed_client(collections):
    """The ``distributed.Client`` that ``dask.compute`` would use now, or None."""
    from dask.base import get_scheduler

    scheduler = get_scheduler(collections=collections)
    owner = getattr(scheduler, "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return owner if isinstance(owner, Client) else None


def _compute(*args):
    """``dask.compute`` with the active scheduler; everything returned here is small."""
    import dask

    return dask.compute(*args)


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
    x_kind = _kind(X, "X")
    n_features = len(X.columns) if x_kind == "frame" else (X.shape[1] if X.ndim == 2 else None)
    if n_features is None:
        raise ValueError(
            f"Expected a 2D dask array for X, got ndim={X.ndim}. Reshape it, e.g. "
            "X.reshape(-1, 1) for a single feature."
        )
    _check_n_features(estimator, n_features, reset=not warm)
    _check_feature_names(estimator, X._meta if x_kind == "frame" else None, reset=not warm)
    y_ndim, n_outputs = _target_shape(y)
    # A zero-row stand-in: _check_outputs only reads the shape (and records y's ndim).
    estimator._check_outputs(np.empty((0, n_outputs)[:y_ndim]), reset=not warm)

    xs, ys, ws = _aligned_blocks(X, y, sample_weight)
    if not xs:
        raise ValueError("X has no blocks; pass a dask collection with at least one row.")
    blocks = [
        dask.delayed(_prepare_block)(xb, yb, wb, i, n_features, n_outputs)
        for i, (xb, yb, wb) in enumerate(zip(xs, ys, ws))
    ]
    loss_name, _ = resolve_loss(estimator.loss, estimator.epsilon)
    stats_mode = estimator._stats_mode(loss_name)
    client = _distributed_client(blocks)
    if not stats_mode and client is not None:
        # Every evaluation reads all blocks: keep them validated in the workers' memory.
        blocks = list(dask.persist(*blocks))

    moments, counts = _compute(_tree(_merge_moments, map(dask.delayed(_block_moments), blocks)),
                               [dask.delayed(_n_rows)(b) for b in blocks])
    if moments["n"] < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape=(0, {n_features})) while a minimum of 1 is "
            "required by TorchPolyRegressor."
        )
    if not moments["W"] > 0:  # the in-memory fit's message (scikit-learn's)
        raise ValueError("Sample weights must contain at least one non-zero number.")
    scaling = estimator._partial["scaling"] if warm else _scaling(estimator, moments)

    worker_est = clone(estimator).set_params(device="cpu", warm_start=False, verbose=0)
    setup = estimator._setup(n_features, n_outputs, scaling)
    cpu_setup = worker_est._setup(n_features, n_outputs, scaling)
    factors = [dask.delayed(_block_factor)(b, worker_est, cpu_setup) for b in blocks]
    (R,) = _compute(_tree(_merge_factors, factors))
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


def _check_n_features(estimator, n_features, reset):
    if reset:
        estimator.n_features_in_ = n_features
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )


def _scaling(estimator, moments):
    """The in-memory ``_scaling`` from merged block statistics (same formulas, same results)."""
    n_features, n_outputs = moments["lo"].shape[0], moments["mean"].shape[0]
    if not estimator.conditioning:
        return {
            "x_offset": np.zeros(n_features), "x_scale": np.ones(n_features),
            "y_offset": np.zeros(n_outputs), "y_scale": np.ones(n_outputs),
        }
    centre = estimator.fit_intercept and estimator._degree_range()[0] <= 1
    # The min and max rows reproduce input_scaling over all rows of positive weight exactly.
    x_offset, x_scale = input_scaling(np.vstack([moments["lo"], moments["hi"]]), centre)
    W, mean, m2 = moments["W"], moments["mean"], moments["m2"]
    if estimator.fit_intercept:
        y_offset, y_scale = mean, np.sqrt(m2 / W)
    else:
        y_offset, y_scale = np.zeros(n_outputs), np.sqrt((m2 + W * mean**2) / W)
    y_scale[~(y_scale > 0)] = 1.0
    return {"x_offset": x_offset, "x_scale": x_scale, "y_offset": y_offset, "y_scale": y_scale}


class _ClusterLoss(torch.autograd.Function):
    """The data-fit loss as a function of design coefficients, evaluated by the workers.

    The forward pass gets the value and (when needed) the gradient in one round trip;
    the backward pass only scales the stored gradient.
    """

    @staticmethod
    def forward(ctx, theta, objective, rows, need_grad):
        value, grad = objective._evaluate_blocks(theta.detach(), rows, need_grad)
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        # Output k's loss depends on column k of theta only: scale the columns (a loss with
        # one value for all outputs broadcasts).
        return grad * grad_output, None, None, None


class ClusterObjective(_Objective):
    """:class:`~autopoly._objective.RowObjective`'s interface with the rows on a cluster.

    The optimizer's parameters ``V`` stay on the client; each evaluation sends the design
    coefficients ``theta = M @ V`` (``n_design x n_outputs`` numbers) to the blocks and gets
    back their weighted losses and gradients, summed by a reduction tree; the penalty is added
    here. ``rows`` (global row indices of a mini-batch) are mapped to the blocks that hold
    them, and the batch's loss is its weighted mean, as in memory.

    Parameters
    ----------
    blocks : list of dask.delayed.Delayed
        Validated ``(X, y, w)`` row blocks (persisted on a distributed cluster).
    counts : list of int
        Rows per block.
    worker_est : TorchPolyRegressor
        An unfitted CPU clone carrying the parameters the workers need.
    cpu_setup : dict
        The estimator's setup on the CPU (terms, scalings as tensors), for the workers.
    setup : dict
        The client's setup (device, dtype).
    whitening : Whitening
        The whitening of the design (``M`` maps ``V`` to design coefficients).
    penalty : callable
        The penalty on ``V``, evaluated on the client.
    n_outputs : int
        Number of targets.
    """

    def __init__(self, blocks, counts, worker_est, cpu_setup, setup, whitening, penalty,
                 n_outputs):
        self.blocks = blocks
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.worker_est = worker_est
        self.cpu_setup = cpu_setup
        self.M = whitening.M
        self.penalty = penalty
        self.n_evaluations = 0
        self.loss_shape = ()
        self._finish_init((whitening.rank, n_outputs), setup["device"], setup["dtype"])

    def value(self, V, rows=None):
        theta = self.M @ V
        need_grad = torch.is_grad_enabled() and theta.requires_grad
        loss = _ClusterLoss.apply(theta, self, rows, need_grad)
        penalty = self.penalty(V)
        if penalty is None:
            return loss
        # As in memory: a loss with one value for all outputs gets the outputs' mean penalty.
        return loss + (penalty if penalty.numel() == loss.numel() else penalty.mean())

    def _evaluate_blocks(self, theta, rows, need_grad):
        import dask

        theta_np = theta.cpu().numpy()
        parts = []
        if rows is None:
            selected = [(b, None) for b in self.blocks]
        else:
            rows = np.sort(rows.cpu().numpy())
            bounds = np.searchsorted(rows, self.starts)
            selected = [
                (b, rows[bounds[i] : bounds[i + 1]] - self.starts[i])
                for i, b in enumerate(self.blocks)
                if bounds[i + 1] > bounds[i]
            ]
        for block, local in selected:
            parts.append(
                dask.delayed(_block_loss)(
                    block, local, theta_np, self.worker_est, self.cpu_setup, need_grad,
                )
            )
        if not parts:
            raise ValueError("The requested rows are outside the data; this is a bug in autopoly.")
        (weight, total, grad), = _compute(_tree(_merge_losses, parts))
        self.n_evaluations += 1
        if total is None:  # every selected row weighs nothing: a zero loss, flat
            return theta.new_zeros(self.loss_shape), torch.zeros_like(theta)
        value = torch.as_tensor(total / weight, dtype=theta.dtype, device=theta.device)
        self.loss_shape = value.shape
        if grad is None:
            return value, torch.zeros_like(theta)
        return value, torch.as_tensor(grad / weight, dtype=theta.dtype, device=theta.device)


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
    import dask.array as da

    snapshot = copy.deepcopy(estimator)
    single = estimator._y_ndim == 1
    n_outputs = estimator._theta.shape[1]
    kind = _kind(X, "X")
    if kind == "frame":
        import pandas as pd

        n_features = len(X.columns)
        columns = pd.RangeIndex(n_outputs)
        _check_n_features(estimator, n_features, reset=False)
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
    _check_n_features(estimator, X.shape[1], reset=False)
    X = _single_column_chunk(X)
    if single:
        return X.map_blocks(
            _predict_block, snapshot, n_outputs, single, drop_axis=1, dtype=np.float64,
            meta=np.empty((0,), dtype=np.float64),
        )
    return X.map_blocks(
        _predict_block, snapshot, n_outputs, single, chunks=(X.chunks[0], (n_outputs,)),
        dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64),
    )
