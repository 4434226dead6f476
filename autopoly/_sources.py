"""Where the rows of a fit come from: the protocol one fit consumes, and its in-memory source.

A *source* is what :func:`autopoly._fitting.fit` and :func:`autopoly._fitting.partial_fit`
read the rows through. It has a shape (``n_rows``, ``n_features``, ``n_outputs``, ``y_ndim``),
the ``device`` its rows live on (None for host memory or a cluster), and these operations:

* ``scaling(spec)`` -> :class:`~autopoly._state.Scaling`, from one pass (min/max of X over rows
  of positive weight, weighted moments of y);
* ``factor(setup, qr=None, gram_first=False)`` -> ``(R, weight_sum)``: the triangular factor of
  ``sqrt(w) * [D, t]`` over the rows, on the compute device (an in-memory source adds its rows
  to ``qr``'s factor when given: a ``partial_fit`` stream);
* ``objective(spec, setup, whitening, penalty)`` -> a row-wise objective (other losses,
  mini-batches);
* ``split(fraction, generator)`` -> ``(training, held_out)`` sources, for early stopping;
* for ``partial_fit`` streams (in-memory sources only), ``check_terms_range(spec, setup)``:
  refuse rows whose terms overflow under a scaling fixed by earlier data.

:class:`ArraySource` serves NumPy arrays and torch tensors alike: its rows are handed out as
tensors on the compute device, chunk by chunk, so a tensor that already lives there is never
copied to the host. The Dask source lives in :mod:`autopoly._dask`.
"""

import numpy as np
import torch

from ._conditioning import host64, input_scaling, target_scaling
from ._data_pass import accumulate, chunk_slices
from ._objective import RowObjective
from ._state import Scaling

# The whitened design is kept on the device for non-quadratic losses up to this size.
CACHE_BYTES = 1 * 2**30


def to_tensor(array, dtype, device):
    """``array`` (NumPy or torch) as a tensor on ``device`` in ``dtype``.

    A tensor already there is returned as it is (callers never write into it), and so is a
    writable C-contiguous NumPy array of that dtype bound for the CPU (wrapped, not copied);
    other arrays are copied (read-only memory maps, which torch refuses to wrap, views with
    negative strides, which it refuses too, other dtypes and devices).
    """
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    if (
        (device is None or torch.device(device).type == "cpu")
        and isinstance(array, np.ndarray)
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.dtype == _NUMPY_DTYPES.get(dtype)
    ):
        return torch.from_numpy(array)
    return torch.tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


_NUMPY_DTYPES = {torch.float64: np.dtype(np.float64), torch.float32: np.dtype(np.float32)}


def column_range(X):
    """Per-column ``(min, max)`` of X as float64 NumPy vectors (+inf/-inf without rows)."""
    if X.shape[0] == 0:
        return np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)
    if isinstance(X, torch.Tensor) and X.device.type == "cpu":
        X = X.detach().numpy()  # (shared memory) the blocked NumPy reduction below is faster
    if isinstance(X, torch.Tensor):
        lo, hi = torch.aminmax(X, dim=0)
        return lo.to(torch.float64).cpu().numpy(), hi.to(torch.float64).cpu().numpy()
    # NumPy reduces a few columns of C-ordered rows along axis 0 in many tiny inner loops
    # (1000 x 5: 60 us, 1e6 x 5: 56 ms); the rows of a transposed, cache-sized block reduce
    # at full speed (7 us, 7 ms). Minima and maxima are exact either way.
    step = max(1, MINMAX_BLOCK // X.shape[1])
    lo = hi = None
    for start in range(0, X.shape[0], step):
        block = np.ascontiguousarray(X[start : start + step].T)
        b_lo, b_hi = block.min(axis=1), block.max(axis=1)
        lo = b_lo if lo is None else np.minimum(lo, b_lo)
        hi = b_hi if hi is None else np.maximum(hi, b_hi)
    return lo.astype(np.float64), hi.astype(np.float64)


# Entries of one transposed block of column_range (half a MiB of float64).
MINMAX_BLOCK = 2**16


class ArraySource:
    """Rows held in memory, as NumPy arrays or as torch tensors on one device.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_rows, n_features)
        Validated inputs (float32 or float64).
    y : ndarray or torch.Tensor of shape (n_rows, n_outputs)
        Validated targets, 2-D.
    w : ndarray or torch.Tensor of shape (n_rows,)
        Non-negative sample weights.
    y_ndim : int
        Whether the user's y was 1-D or 2-D (predictions take that shape).
    """

    def __init__(self, X, y, w, y_ndim):
        positive = w > 0
        if not bool(positive.all()):
            # Zero-weight rows are as good as absent: they must not reach the scaling, the
            # statistics or the loss (1e200 in x or 1e300 in y on such a row would overflow).
            X, y, w = X[positive], y[positive], w[positive]
        self.X, self.y, self.w = X, y, w
        self.y_ndim = y_ndim
        self.n_rows, self.n_features = X.shape
        self.n_outputs = y.shape[1]
        self.device = X.device if isinstance(X, torch.Tensor) else None
        self.unit_weights = bool((w == 1).all())

    def take(self, rows, dtype, device, weights=True):
        """``(X, y, w)`` of ``rows`` (a slice, or an index tensor) on ``device`` in ``dtype``.

        ``w`` is None when ``weights`` is false (unit weights need no copy).
        """
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy() if self.device is None else rows.to(self.device)
        w = to_tensor(self.w[rows], dtype, device) if weights else None
        return to_tensor(self.X[rows], dtype, device), to_tensor(self.y[rows], dtype, device), w

    @property
    def on_host(self):
        """Whether the rows are in host memory: NumPy arrays, or tensors on the CPU."""
        return self.device is None or self.device.type == "cpu"

    def take_host(self, rows, weights=True):
        """``(X, y, w)`` of the slice ``rows`` of host rows (:attr:`on_host`), as float64 NumPy.

        Views where the rows are float64 already (a CPU tensor's memory is shared, not
        copied); ``w`` is None when ``weights`` is false.
        """
        w = host64(self.w[rows]) if weights else None
        return host64(self.X[rows]), host64(self.y[rows]), w

    def weight_sum(self):
        return float(self.w.sum())

    # -------------------------------------------------------------------- the protocol

    def scaling(self, spec):
        """Input and target offsets/scales (see ``_conditioning``), float64 NumPy."""
        if not spec.conditioning:
            return Scaling.identity(self.n_features, self.n_outputs)
        X = self.X  # (zero-weight rows were dropped when the source was made)
        x_offset, x_scale = input_scaling(*column_range(X), spec.centres_inputs)
        # Host rows (NumPy, or CPU tensors: shared memory) are reduced by NumPy, a device's
        # tensors where they are.
        host = self.on_host
        y = host64(self.y) if host else self.y.to(torch.float64)
        w = host64(self.w) if host else self.w.to(torch.float64)
        y_offset, y_scale = target_scaling(y, w, spec.terms.fit_intercept)
        return Scaling(x_offset, x_scale, y_offset, y_scale)

    def factor(self, setup, qr=None, gram_first=False):
        qr = accumulate(self, setup, qr, gram_first=gram_first)
        return qr.R, self.weight_sum()

    def objective(self, spec, setup, whitening, penalty):
        """A loss evaluated on rows: the whitened design cached on the device when it fits."""
        device, dtype = setup.device, setup.dtype
        n, rank = self.n_rows, whitening.rank
        M = whitening.M
        itemsize = setup.design.itemsize
        chunks = None
        if n * max(rank, 1) * itemsize <= CACHE_BYTES:
            B = torch.cat(
                [
                    setup.design(self.take(c, dtype, device)[0]) @ M
                    for c in chunk_slices(n, M.shape[0], itemsize)
                ]
            )

            def whitened_rows(rows):
                return B if rows is None else B[rows]

        else:
            if spec.huber_joint:
                raise ValueError(
                    "huber_scale='joint' estimates the scale from all residuals at once and "
                    f"needs the whitened rows in memory ({n} rows x {rank} terms exceed the "
                    f"cache of {CACHE_BYTES / 2**20:.0f} MiB). Use batch_size (a scale per "
                    "mini-batch), fewer rows or terms, or huber_scale='fixed'."
                )

            def whitened_rows(rows):
                index = rows if rows is not None else slice(None)
                return setup.design(self.take(index, dtype, device)[0]) @ M

            chunks = [
                torch.arange(c.start, c.stop, device=device)
                for c in chunk_slices(n, M.shape[0], itemsize)
            ]
        _, y, w = self.take(slice(None), dtype, device)
        return RowObjective(
            spec.loss_fn,
            whitened_rows,
            y,
            w,
            setup.y_offset,
            setup.y_scale,
            penalty,
            (rank, self.n_outputs),
            chunks,
            builtin=spec.loss_name != "callable",
            squared=spec.loss_name == "squared_error",
        )

    def check_terms_range(self, spec, setup):
        """Refuse rows whose terms overflow under a scaling fixed by earlier data (a stream)."""
        from ._setup import terms_overflow

        X = to_tensor(self.X, torch.float64, self.device)
        offset = torch.as_tensor(setup.scaling.x_offset, device=X.device)
        scale = torch.as_tensor(setup.scaling.x_scale, device=X.device)
        z = ((X - offset) / scale).abs()
        max_degree = spec.terms.max_degree
        if z.numel() == 0:
            return
        if spec.terms.interaction_only:
            # The largest term multiplies the largest |z| of distinct features.
            k = min(max_degree, z.shape[1])
            top = float(torch.sort(z, dim=1, descending=True).values[:, :k].prod(1).max())
        else:
            top = float(z.max() ** max_degree)
        if not top < torch.finfo(setup.dtype).max:
            raise terms_overflow(spec, setup)

    def split(self, fraction, generator):
        """Draw the held-out rows of early stopping: ``(training, held_out)`` sources."""
        # An R^2 needs two rows at least.
        n_val = max(2, int(round(fraction * self.n_rows)))
        if self.n_rows - n_val < 1:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction={fraction:g} of the rows, "
                f"and at least 2 to score them, plus 1 row to train on; got {self.n_rows} "
                f"sample{'s' if self.n_rows != 1 else ''}. Pass more rows or set "
                "early_stopping=False."
            )
        perm = torch.randperm(self.n_rows, generator=generator).numpy()
        val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return self._subset(tr), self._subset(val)

    def output(self, k):
        """The same rows with output ``k`` alone as the target."""
        return ArraySource(self.X, self.y[:, k : k + 1], self.w, 2)

    def _subset(self, index):
        if self.device is not None:
            index = torch.as_tensor(index, device=self.device)
        return ArraySource(self.X[index], self.y[index], self.w[index], self.y_ndim)


def _weighted_variance(y, w):
    w = w / w.sum()
    return w @ (y - w @ y) ** 2


def validation_scorer(held_out, training, setup, whitening):
    """The weighted R^2 (mean over outputs) of parameters ``V`` on the held-out rows.

    ``held_out`` and ``training`` are sources. Where the held-out target is constant its
    variance is 0 and R^2 undefined; the training target's variance (or 1) takes its place,
    so that the score still ranks parameters by their held-out error.
    """
    X, y_t, w_t = held_out.take(slice(None), setup.dtype, setup.device)
    B = setup.design(X) @ whitening.M
    w_t = w_t / w_t.sum()
    tiny = torch.finfo(setup.dtype).tiny
    var = _weighted_variance(y_t, w_t)
    _, y_train, w_train = training.take(slice(None), setup.dtype, setup.device)
    train_var = _weighted_variance(y_train, w_train)
    fallback = torch.where(train_var > tiny, train_var, torch.ones_like(train_var))
    var = torch.where(var > tiny, var, fallback)

    def score(V):
        with torch.no_grad():
            pred = setup.y_offset + setup.y_scale * (B @ V)
            return float((1 - (w_t @ (y_t - pred) ** 2) / var).mean())

    return score
