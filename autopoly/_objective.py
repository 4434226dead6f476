"""The objective the optimizer minimizes, as a function of the whitened parameters ``V``.

``J(V) = loss(y_hat, y, w) + alpha / sum(w) * mean_k((1 - l1_ratio) * ||b_k||**2
+ l1_ratio * ||b_k||_1)`` where ``b_k`` are the raw-basis coefficients of output ``k`` (the
intercept is never penalized). The optimizer sees ``J / J0``, with ``J0`` the objective of the
constant model, so that learning rates mean the same thing whatever the units of ``y``.

Two forms exist. :class:`StatsObjective` is for the squared error on full batches: the loss is
the exact quadratic ``mean_k y_scale_k**2 * (||V_k - C_k||**2 + resid_k)`` built from the
sufficient statistics, so a step costs ``O(rank**2)`` whatever the number of rows.
:class:`RowObjective` evaluates any loss on the rows, from a cached whitened design or chunk by
chunk, and also serves mini-batches.
"""

import torch


class _Penalty:
    def __init__(self, alpha, l1_ratio, coef_map, y_scale, weight_sum):
        self.active = alpha > 0
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.coef_map = coef_map  # (n_terms, rank): V -> raw coefficients of the terms
        self.y_scale = y_scale
        self.weight_sum = weight_sum

    def __call__(self, V):
        if not self.active:
            return V.new_zeros(())
        beta = (self.coef_map @ V) * self.y_scale
        per_output = (1 - self.l1_ratio) * (beta * beta).sum(0) + self.l1_ratio * beta.abs().sum(0)
        return self.alpha / self.weight_sum * per_output.mean()


class _Objective:
    """Shared part: normalization by ``J0`` and the evaluate-and-backward call."""

    def _finish_init(self, V_shape, device, dtype):
        with torch.no_grad():
            j0 = float(self.value(torch.zeros(V_shape, device=device, dtype=dtype)))
        self.J0 = j0 if j0 > 0 and j0 == j0 and j0 != float("inf") else 1.0

    def evaluate(self, V, rows=None):
        """Normalized objective at ``V`` (on all rows or the given row indices); fills ``V.grad``."""
        value = self.value(V, rows) / self.J0
        value.backward()
        return value.detach()


class StatsObjective(_Objective):
    """Squared error from sufficient statistics: cost per evaluation independent of n_samples."""

    def __init__(self, whitening, y_scale, penalty):
        self.C = whitening.C
        self.resid = whitening.resid
        self.y_scale2 = y_scale * y_scale
        self.penalty = penalty
        self._finish_init(self.C.shape, self.C.device, self.C.dtype)

    def value(self, V, rows=None):
        diff = V - self.C
        loss = (self.y_scale2 * ((diff * diff).sum(0) + self.resid)).mean()
        return loss + self.penalty(V)


class RowObjective(_Objective):
    """Any loss, evaluated on rows of the whitened design ``B = D @ M``.

    ``design(rows)`` returns ``B`` for the given row indices (``None``: all rows) on the device;
    it either slices a cached matrix or recomputes the rows from the input chunk by chunk.
    """

    def __init__(self, loss_fn, design, y, sample_weight, y_offset, y_scale, penalty, V_shape, chunks):
        self.loss_fn = loss_fn
        self.design = design
        self.y = y
        self.w = sample_weight
        self.y_offset = y_offset
        self.y_scale = y_scale
        self.penalty = penalty
        self.chunks = chunks  # list of row-index tensors covering all rows, or None (one block)
        self._finish_init(V_shape, y.device, y.dtype)

    def _loss(self, V, rows):
        B = self.design(rows)
        y_hat = self.y_offset + self.y_scale * (B @ V)
        if rows is None:
            return self.loss_fn(y_hat, self.y, self.w)
        return self.loss_fn(y_hat, self.y[rows], self.w[rows])

    def value(self, V, rows=None):
        if rows is None and self.chunks is not None:
            total = self.w.sum()
            loss = sum(self.w[c].sum() / total * self._loss(V, c) for c in self.chunks)
        else:
            loss = self._loss(V, rows)
        return loss + self.penalty(V)

    def evaluate(self, V, rows=None):
        if rows is not None or self.chunks is None:
            return super().evaluate(V, rows)
        # Backward chunk by chunk so that only one chunk's graph is alive at a time.
        total = self.w.sum()
        value = 0.0
        for c in self.chunks:
            part = self.w[c].sum() / total * self._loss(V, c) / self.J0
            part.backward()
            value += part.detach()
        pen = self.penalty(V) / self.J0
        if pen.requires_grad:
            pen.backward()
        return value + pen.detach()
