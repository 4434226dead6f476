"""Reductions on the workers: per-block statistics and losses, merged in a tree.

Every function here runs on a worker (or in a merge task) and returns a small, fixed-size
result; :func:`tree` builds the reduction and :func:`compute` runs it with the active
scheduler. :class:`ClusterObjective` evaluates a row-wise objective through such a reduction
at each optimizer step.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ._conditioning import ChunkedQR, input_scaling
from ._data_pass import accumulate, chunk_slices
from ._objective import _Objective
from ._sources import ArraySource
from ._state import Scaling
from ._threads import off_main_thread, task_threads

# Fan-in of the reduction trees: enough to keep the tree shallow, small enough that a merge
# task stacks only a few factors.
SPLIT_EVERY = 8


def tree(merge, parts):
    """Reduce delayed ``parts`` with ``merge`` in a tree of fan-in :data:`SPLIT_EVERY`."""
    import dask

    parts = list(parts)
    while len(parts) > 1:
        parts = [
            dask.delayed(merge)(*parts[i : i + SPLIT_EVERY])
            for i in range(0, len(parts), SPLIT_EVERY)
        ]
    return parts[0]


def compute(*args):
    """``dask.compute`` with the active scheduler; everything returned here is small."""
    import dask

    return dask.compute(*args)


def distributed_client(collections):
    """The ``distributed.Client`` that ``dask.compute`` would use now, or None."""
    from dask.base import get_scheduler

    scheduler = get_scheduler(collections=collections)
    owner = getattr(scheduler, "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return owner if isinstance(owner, Client) else None


def numpy_dtype(torch_dtype):
    return torch.empty((), dtype=torch_dtype).numpy().dtype


@dataclass(frozen=True)
class Moments:
    """Mergeable statistics of rows: count, x range over positive weights, y's weighted moments.

    ``W`` is the weight sum, ``mean`` the weighted mean of y and ``m2`` the weighted sum of
    squared deviations from it; ``lo``/``hi`` are +inf/-inf where no row weighs anything.
    """

    n: int
    lo: np.ndarray
    hi: np.ndarray
    W: float
    mean: np.ndarray
    m2: np.ndarray


def block_moments(block):
    """The :class:`Moments` of one block."""
    X, y, w = block
    positive = X[w > 0]
    if positive.shape[0]:
        lo, hi = positive.min(axis=0).astype(np.float64), positive.max(axis=0).astype(np.float64)
    else:
        lo, hi = np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)
    W = float(w.sum())
    mean = (w @ y) / W if W > 0 else np.zeros(y.shape[1])
    m2 = w @ (y - mean) ** 2
    return Moments(X.shape[0], lo, hi, W, mean, m2)


def merge_moments(*parts):
    """Merge :class:`Moments` exactly (Chan et al.'s pairwise update of the mean and m2)."""
    out = parts[0]
    for p in parts[1:]:
        W = out.W + p.W
        mean, m2 = out.mean, out.m2
        if p.W > 0:
            delta = p.mean - out.mean
            mean = out.mean + delta * (p.W / W)
            m2 = out.m2 + p.m2 + delta**2 * (out.W * p.W / W)
        out = Moments(out.n + p.n, np.minimum(out.lo, p.lo), np.maximum(out.hi, p.hi), W, mean, m2)
    return out


def scaling_from_moments(spec, moments):
    """The in-memory source's scaling from merged block statistics (same formulas and results)."""
    n_features, n_outputs = moments.lo.shape[0], moments.mean.shape[0]
    if not spec.conditioning:
        return Scaling.identity(n_features, n_outputs)
    # The min and max over rows of positive weight give the in-memory input scaling exactly.
    x_offset, x_scale = input_scaling(moments.lo, moments.hi, spec.centres_inputs)
    W, mean, m2 = moments.W, moments.mean, moments.m2
    if spec.terms.fit_intercept:
        y_offset, y_scale = mean, np.sqrt(m2 / W)
    else:
        y_offset, y_scale = np.zeros(n_outputs), np.sqrt((m2 + W * mean**2) / W)
    y_scale[~(y_scale > 0)] = 1.0
    return Scaling(x_offset, x_scale, y_offset, y_scale)


def block_factor(block, setup):
    """The QR factor of ``sqrt(w) * [D, t]`` over one block, as NumPy (the in-memory code).

    ``setup`` is the fit's setup on the CPU, built once on the client and shipped with the task.
    """
    X, y, w = block
    with task_threads(off_main_thread()):
        qr = accumulate(ArraySource(X, y, w, 2), setup)
    cols = setup.n_design + y.shape[1]
    if qr.R is None:
        return np.zeros((0, cols), dtype=numpy_dtype(setup.dtype))
    return qr.R.numpy()


def merge_factors(*parts):
    stacked = np.concatenate(parts)
    if stacked.shape[0] == 0:
        return stacked
    qr = ChunkedQR()
    with task_threads(off_main_thread()):
        qr.update(torch.from_numpy(stacked))
    return qr.R.numpy()


def block_loss(block, rows, theta, spec, setup, need_grad):
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
    loss_fn = spec.loss_fn
    # enable_grad: the synchronous scheduler runs this inside the client's autograd forward.
    with task_threads(off_main_thread()), torch.enable_grad():
        dtype = setup.dtype
        th = torch.tensor(theta, dtype=dtype).requires_grad_(need_grad)
        itemsize = torch.empty((), dtype=dtype).element_size()
        total = 0.0
        for c in chunk_slices(X.shape[0], theta.shape[0] + y.shape[1], itemsize):
            w_c = torch.tensor(w[c], dtype=dtype)
            chunk_weight = w_c.sum()
            if not chunk_weight > 0:
                continue
            D = setup.design(torch.tensor(X[c], dtype=dtype))
            y_hat = setup.y_offset + setup.y_scale * (D @ th)
            y_c = torch.tensor(y[c], dtype=dtype)
            part = chunk_weight * loss_fn(y_hat, y_c, w_c / chunk_weight)
            if need_grad:
                part.sum().backward()
            total = total + part.detach()
    grad = th.grad.numpy() if need_grad and th.grad is not None else None
    return weight, np.asarray(total.numpy()), grad


def merge_losses(*parts):
    parts = [p for p in parts if p[1] is not None]
    if not parts:
        return 0.0, None, None
    grads = [p[2] for p in parts if p[2] is not None]
    return (
        sum(p[0] for p in parts),
        np.sum([p[1] for p in parts], axis=0),
        np.sum(grads, axis=0) if grads else None,
    )


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
    spec : autopoly._spec.FitSpec
        The fit's parameters (the workers need the loss).
    cpu_setup : autopoly._setup.Setup
        The fit's setup on the CPU (terms, scalings as tensors), for the workers.
    setup : autopoly._setup.Setup
        The client's setup (device, dtype).
    whitening : Whitening
        The whitening of the design (``M`` maps ``V`` to design coefficients).
    penalty : callable
        The penalty on ``V``, evaluated on the client.
    n_outputs : int
        Number of targets.
    """

    def __init__(self, blocks, counts, spec, cpu_setup, setup, whitening, penalty, n_outputs):
        self.blocks = blocks
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.spec = spec
        self.cpu_setup = cpu_setup
        self.M = whitening.M
        self.penalty = penalty
        self.n_evaluations = 0
        self.loss_shape = ()
        self._finish_init((whitening.rank, n_outputs), setup.device, setup.dtype)

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
                dask.delayed(block_loss)(
                    block,
                    local,
                    theta_np,
                    self.spec,
                    self.cpu_setup,
                    need_grad,
                )
            )
        if not parts:
            raise ValueError("The requested rows are outside the data; this is a bug in autopoly.")
        ((weight, total, grad),) = compute(tree(merge_losses, parts))
        self.n_evaluations += 1
        if total is None:  # every selected row weighs nothing: a zero loss, flat
            return theta.new_zeros(self.loss_shape), torch.zeros_like(theta)
        value = torch.as_tensor(total / weight, dtype=theta.dtype, device=theta.device)
        self.loss_shape = value.shape
        if grad is None:
            return value, torch.zeros_like(theta)
        return value, torch.as_tensor(grad / weight, dtype=theta.dtype, device=theta.device)
