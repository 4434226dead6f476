"""The pass over the data: design chunks, and the triangular factor they accumulate.

Everything here reads the rows chunk by chunk (``CHUNK_BYTES`` each), so the expanded matrix is
never held whole. Rows come from an in-memory source (:class:`autopoly._sources.ArraySource`:
``n_rows``, ``n_outputs``, ``unit_weights``, ``take(rows, dtype, device)``, which hands out
tensors on the compute device in the compute dtype, and, where ``on_host``,
``take_host(rows)``, which hands out the host rows as float64 NumPy arrays), so NumPy arrays,
tensors on any device and the blocks of a Dask worker share this code.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ._conditioning import ChunkedQR, gram_is_accurate
from ._features import Expansion
from ._threads import task_threads

# Row chunks are sized so one expanded chunk takes about this many bytes on the device (small
# enough that the allocator reuses the buffers instead of mapping fresh pages every chunk).
CHUNK_BYTES = 8 * 2**20


def chunk_slices(n_rows, n_cols, itemsize):
    """Row slices sized so that one chunk of ``n_cols`` columns takes about ``CHUNK_BYTES``."""
    step = max(1, CHUNK_BYTES // max(1, n_cols * itemsize))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


@dataclass(frozen=True)
class DesignMap:
    """Raw rows -> the design ``[1, monomials(z)]`` (or the monomials alone), ``z`` scaled.

    ``x_offset`` and ``x_scale`` are tensors on the compute device in the compute dtype.
    """

    expansion: Expansion
    x_offset: torch.Tensor
    x_scale: torch.Tensor
    intercept: bool

    @property
    def n_design(self):
        return self.expansion.n_terms + int(self.intercept)

    @property
    def itemsize(self):
        return self.x_offset.element_size()

    def __call__(self, X_t, extra_rows=0):
        """The design of the rows ``X_t`` (a tensor on the compute device, compute dtype).

        Returned as a column-major ``(n, n_design)`` view of a ``(n_design + extra_rows, n)``
        buffer; with ``extra_rows`` the whole buffer is returned, for the caller to fill the
        extra rows (e.g. with targets) and use ``.T``.
        """
        ZT = ((X_t - self.x_offset) / self.x_scale).T.contiguous()
        first = int(self.intercept)
        n_terms = self.expansion.n_terms
        buf = ZT.new_empty((first + n_terms + extra_rows, ZT.shape[1]))
        if first:
            buf[0] = 1.0
        self.expansion.fill(ZT, buf[first : first + n_terms])
        return buf[: first + n_terms].T if extra_rows == 0 else buf

    def host(self, X, extra_rows):
        """:meth:`__call__` in NumPy for float64 rows on the host (``extra_rows`` buffer form).

        The same plan and the same operations, each correctly rounded, so the buffer equals
        the torch one bit for bit; NumPy's operations on small arrays cost a fraction of
        torch's.
        """
        # The transposed rows, scaled straight into a row-major buffer (no second copy).
        ZT = np.subtract(X.T, self.x_offset.numpy()[:, None], order="C")
        ZT /= self.x_scale.numpy()[:, None]
        first = int(self.intercept)
        n_terms = self.expansion.n_terms
        buf = np.empty((first + n_terms + extra_rows, ZT.shape[1]))
        if first:
            buf[0] = 1.0
        self.expansion.fill_numpy(ZT, buf[first : first + n_terms])
        return buf


def weighted_chunks(source, setup):
    """``sqrt(w) * [D, t]`` chunk by chunk, transposed: ``(n_design + n_outputs, rows)``.

    Host rows (NumPy arrays, or tensors on the CPU) of a float64 fit on the CPU are expanded by
    NumPy (see :meth:`DesignMap.host`): the chunks equal torch's bit for bit, and a small fit
    does not pay torch's few microseconds per operation. Other rows (on another device, or a
    float32 fit) are expanded by torch where they are.
    """
    n_design = setup.design.n_design
    # Without sample_weight every weight is 1: skip a pass over each chunk.
    unit_weights = source.unit_weights
    slices = chunk_slices(source.n_rows, n_design + source.n_outputs, setup.design.itemsize)
    if setup.device.type == "cpu" and setup.dtype == torch.float64 and source.on_host:
        y_offset, y_scale = setup.scaling.y_offset, setup.scaling.y_scale
        for rows in slices:
            X, y, w = source.take_host(rows, weights=not unit_weights)
            # Overflowing terms become inf silently, as in torch: the solve names them.
            with np.errstate(all="ignore"):
                buf = setup.design.host(X, extra_rows=source.n_outputs)
                buf[n_design:] = ((y - y_offset) / y_scale).T
                if not unit_weights:
                    # torch's square root (not always correctly rounded, unlike NumPy's):
                    # the same weights as the torch route's.
                    buf *= torch.from_numpy(w).sqrt().numpy()
            yield torch.from_numpy(buf)
        return
    for rows in slices:
        # The expansion is streaming element-wise work: one torch thread does it as fast as
        # several, and on a shared machine several wait at every barrier of every product
        # (ten times slower measured on two cores); the caller's matrix products keep them.
        with task_threads(setup.device.type == "cpu"):
            X, y, w = source.take(rows, setup.dtype, setup.device, weights=not unit_weights)
            buf = setup.design(X, extra_rows=source.n_outputs)
            buf[n_design:] = ((y - setup.y_offset) / setup.y_scale).T
            if not unit_weights:
                buf *= w.sqrt()
        yield buf


def accumulate(source, setup, qr=None, gram_first=False):
    """One chunked pass: the triangular factor of ``sqrt(w) * [D, t]`` (rows never all held).

    With ``gram_first`` the pass accumulates the Gram matrix (one matrix product per chunk,
    about twice as fast as a QR) and takes its Cholesky factor, which is as good as the QR
    factor when the terms are well conditioned; otherwise (or for an exact fit, whose
    augmented Gram matrix is singular) a second pass computes the QR factor. Rows added to an
    existing factor ``qr`` (a stream) always take the QR route.
    """
    if gram_first and (qr is None or qr.R is None):
        R = gram_factor(source, setup)
        if R is not None:
            qr = ChunkedQR()
            qr.R = R
            return qr
    qr = qr if qr is not None else ChunkedQR()
    for buf in weighted_chunks(source, setup):
        qr.update(buf.T)
    return qr


def gram_factor(source, setup):
    """Cholesky factor of the accumulated Gram matrix, or None when it is not trustworthy."""
    G = None
    host = setup.device.type == "cpu"
    for buf in weighted_chunks(source, setup):
        if host:
            # NumPy recognizes ``B @ B.T`` and calls BLAS's symmetric rank-k update (syrk):
            # half the arithmetic of the general product torch's addmm does.
            B = buf.numpy()
            G = B @ B.T if G is None else np.add(G, B @ B.T, out=G)
        else:
            G = buf @ buf.T if G is None else G.addmm_(buf, buf.T)
    if G is None:
        return None
    if host:
        G = torch.from_numpy(G)
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) != 0:
        return None
    R = L.T
    n_design = setup.design.n_design
    # The Gram route squares the condition number: keep it only when that stays harmless.
    return R if gram_is_accurate(R[:n_design, :n_design]) else None
