"""The pass over the data: design chunks, and the triangular factor they accumulate.

Everything here reads the rows chunk by chunk (``CHUNK_BYTES`` each), so the expanded matrix is
never held whole; ``setup`` (see :func:`autopoly._fitting.make_setup`) carries the terms, scalings,
device and dtype.
"""

import numpy as np
import torch

from ._conditioning import ChunkedQR, gram_is_accurate

# Row chunks are sized so one expanded chunk takes about this many bytes on the device (small
# enough that the allocator reuses the buffers instead of mapping fresh pages every chunk).
CHUNK_BYTES = 8 * 2**20


def tensor(array, setup):
    """A copy of ``array`` on the fit device in the fit dtype."""
    # A copy: inputs may be read-only memory maps, which torch refuses to wrap.
    # ascontiguousarray: torch refuses views with negative strides (X[::-1]).
    return torch.tensor(np.ascontiguousarray(array), dtype=setup["dtype"], device=setup["device"])


def chunk_slices(n_rows, n_cols, itemsize):
    """Row slices sized so that one chunk of ``n_cols`` columns takes about ``CHUNK_BYTES``."""
    step = max(1, CHUNK_BYTES // max(1, n_cols * itemsize))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]

def design(X_rows, setup, extra_rows=0):
    """``[1, monomials(z)]`` (or the monomials alone) for raw rows, on the fit device.

    Returned as a column-major ``(n, n_design)`` view of a ``(n_design + extra_rows, n)``
    buffer; the caller may fill the ``extra_rows`` (e.g. with targets) and use ``.T``.
    """
    X_t = tensor(X_rows, setup)
    ZT = ((X_t - setup["x_offset_t"]) / setup["x_scale_t"]).T.contiguous()
    first = int(setup["intercept"])
    n_terms = setup["expansion"].n_terms
    buf = ZT.new_empty((first + n_terms + extra_rows, ZT.shape[1]))
    if first:
        buf[0] = 1.0
    setup["expansion"].fill(ZT, buf[first : first + n_terms])
    return buf[: first + n_terms].T if extra_rows == 0 else buf

def accumulate(X, y, sample_weight, setup, qr=None, gram_first=False):
    """One chunked pass: the triangular factor of ``sqrt(w) * [D, t]`` (rows never all held).

    With ``gram_first`` the pass accumulates the Gram matrix (one matrix product per chunk,
    about twice as fast as a QR) and takes its Cholesky factor, which is as good as the QR
    factor when the terms are well conditioned; otherwise (or for an exact fit, whose
    augmented Gram matrix is singular) a second pass computes the QR factor.
    """
    if gram_first:
        R = gram_factor(X, y, sample_weight, setup)
        if R is not None:
            qr = ChunkedQR()
            qr.R = R
            return qr
    qr = qr if qr is not None else ChunkedQR()
    for buf in weighted_chunks(X, y, sample_weight, setup):
        qr.update(buf.T)
    return qr

def weighted_chunks(X, y, sample_weight, setup):
    """``sqrt(w) * [D, t]`` chunk by chunk, transposed: ``(n_design + n_outputs, rows)``."""
    n_design = setup["powers"].shape[0] + int(setup["intercept"])
    itemsize = torch.empty((), dtype=setup["dtype"]).element_size()
    # Without sample_weight every weight is 1: skip a pass over each chunk.
    unit_weights = bool((sample_weight == 1).all())
    for rows in chunk_slices(X.shape[0], n_design + y.shape[1], itemsize):
        buf = design(X[rows], setup, extra_rows=y.shape[1])
        buf[n_design:] = ((tensor(y[rows], setup) - setup["y_offset_t"]) / setup["y_scale_t"]).T
        if not unit_weights:
            buf *= tensor(sample_weight[rows], setup).sqrt()
        yield buf

def gram_factor(X, y, sample_weight, setup):
    """Cholesky factor of the accumulated Gram matrix, or None when it is not trustworthy."""
    G = None
    for buf in weighted_chunks(X, y, sample_weight, setup):
        G = buf @ buf.T if G is None else G.addmm_(buf, buf.T)
    if G is None:
        return None
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) != 0:
        return None
    R = L.T
    n_design = setup["powers"].shape[0] + int(setup["intercept"])
    # The Gram route squares the condition number: keep it only when that stays harmless.
    return R if gram_is_accurate(R[:n_design, :n_design]) else None
