"""The objective the optimizer minimizes, as a function of the whitened parameters ``V``.

For output ``k``, ``J_k(V) = loss_k(y_hat, y, w) + alpha / sum(w) * ((1 - l1_ratio) *
||b_k||**2 + l1_ratio * ||b_k||_1)`` where ``b_k`` are the raw-basis coefficients of output
``k`` (the intercept is never penalized); the reported objective is ``mean_k J_k``. The outputs
are independent problems, so the optimizer sees ``sum_k J_k / J_k(0)``, each output divided by
the objective of its constant model: learning rates then mean the same thing whatever the units
of ``y``, and for the squared error on well-conditioned terms the Hessian is exactly twice the
identity. (A user's loss
callable returns one number for all outputs, which is divided by its value at the start.)

Two forms exist. :class:`StatsObjective` is for the squared error on full batches: the loss is
the exact quadratic ``mean_k y_scale_k**2 * (||V_k - C_k||**2 + resid_k)`` built from the
sufficient statistics, so a step costs ``O(rank**2)`` whatever the number of rows.
:class:`RowObjective` evaluates any loss on the rows, from a cached whitened design or chunk by
chunk, and also serves mini-batches.
"""

import torch


class _Penalty:
    """``alpha / sum(w) * ((1 - l1_ratio) * ||b||**2 + l1_ratio * ||b||_1)`` per output.

    ``l2=False`` leaves out the L2 part, for objectives whose quadratic already holds it.
    """

    def __init__(self, alpha, l1_ratio, coef_map, y_scale, weight_sum, l2=True):
        self.l2 = (1 - l1_ratio) if l2 else 0.0
        self.l1 = l1_ratio
        self.active = alpha > 0 and coef_map is not None and (self.l1 > 0 or self.l2 > 0)
        self.alpha = alpha
        self.coef_map = coef_map  # (n_terms, rank): V -> raw coefficients of the terms
        self.y_scale = y_scale
        self.weight_sum = weight_sum

    def __call__(self, V):
        """Per-output penalty, shape ``(n_outputs,)``, or None when there is none."""
        if not self.active:
            return None
        beta = (self.coef_map @ V) * self.y_scale
        per_output = self.l2 * (beta * beta).sum(0) + self.l1 * beta.abs().sum(0)
        return self.alpha / self.weight_sum * per_output


class _Objective:
    """Shared part: per-output normalization and the evaluate-and-backward call.

    ``value(V, rows)`` returns the per-output objective in the user's units, shape
    ``(n_outputs,)`` (or ``(1,)`` for a callable loss).
    """

    def _finish_init(self, V_shape, device, dtype):
        with torch.no_grad():
            j0 = self.value(torch.zeros(V_shape, device=device, dtype=dtype))
        ok = torch.isfinite(j0) & (j0 > 0)
        self.J0 = torch.where(ok, j0, torch.ones_like(j0))
        self._inv_J0 = 1.0 / self.J0
        self._J0_float = float(self.J0[0])
        # The normalized objective of the constant model (V = 0): one per output.
        self.constant_model = float(self.J0.numel())

    def normalized(self, per_output):
        return per_output @ self._inv_J0

    def user_units(self, value, per_output):
        """The reported objective (mean over outputs) as a float, from the normalized value.

        With one output it is the normalized value times ``J0``: no second read of the device.
        """
        if per_output is None or per_output.numel() == 1:
            return value * self._J0_float
        return float(per_output.detach().mean())

    def evaluate_value(self, V):
        """``evaluate`` without the gradient: ``(normalized value, per-output objective)``."""
        per_output = self.value(V)
        return self.normalized(per_output), per_output

    def evaluate(self, V, rows=None):
        """Normalized objective at ``V`` (all rows or the given row indices); fills ``V.grad``.

        Returns ``(normalized value, per-output objective in the user's units)``, detached.
        """
        per_output = self.value(V, rows)
        value = self.normalized(per_output)
        value.backward()
        return value.detach(), per_output.detach()


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
        loss = self.y_scale2 * ((diff * diff).sum(0) + self.resid)
        pen = self.penalty(V)
        return loss if pen is None else loss + pen


class RowObjective(_Objective):
    """Any loss, evaluated on rows of the whitened design ``B = D @ M``.

    ``design(rows)`` returns ``B`` for the given row indices (``None``: all rows) on the device;
    it either slices a cached matrix or recomputes the rows from the input chunk by chunk.
    """

    def __init__(
        self,
        loss_fn,
        design,
        y,
        sample_weight,
        y_offset,
        y_scale,
        penalty,
        V_shape,
        chunks,
        builtin=True,
        squared=False,
    ):
        self.loss_fn = loss_fn
        self.design = design
        self.y = y
        # Built-in losses take weights normalized over all rows; a callable gets them raw.
        self.builtin = builtin
        self.w = sample_weight / sample_weight.sum() if builtin else sample_weight
        self.y_offset = y_offset
        self.y_scale = y_scale
        self.penalty = penalty
        self.chunks = chunks  # list of row-index tensors covering all rows, or None (one block)
        # Without conditioning the targets are used as they are: skip two ops per step.
        self._plain = bool((y_offset == 0).all() and (y_scale == 1).all())
        self._finish_init(V_shape, y.device, y.dtype)
        # One output of a built-in loss on cached rows: fold 1 / J0 into the weights, so that
        # a full-batch evaluation is the loss itself, with no normalizing op per step.
        self._fast_w = None
        if builtin and y.shape[1] == 1 and chunks is None:
            self._fast_w = self.w * self._inv_J0[0]
        # The squared error goes further: sqrt(weight / J0) and the target scaling folded into
        # the rows make a full-batch step the plain sum((B @ V - y)**2) (built on first use).
        self._squared = squared
        self._folded = None

    def _folded_rows(self):
        if self._folded is None:
            root = self._fast_w.sqrt()[:, None]
            B = self.design(None)
            if self._plain:
                self._folded = (B * root, self.y * root)
            else:
                self._folded = (B * (root * self.y_scale), (self.y - self.y_offset) * root)
        return self._folded

    def _predict(self, V, rows):
        B = self.design(rows)
        return B @ V if self._plain else self.y_offset + self.y_scale * (B @ V)

    def predictions(self, V):
        """Predictions for all rows, in the units of y (chunk by chunk when not cached)."""
        if self.chunks is None:
            return self._predict(V, None)
        return torch.cat([self._predict(V, c) for c in self.chunks])

    def _loss(self, V, rows):
        y_hat = self._predict(V, rows)
        if rows is None:
            return self.loss_fn(y_hat, self.y, self.w)
        return self.loss_fn(y_hat, self.y[rows], self.w[rows])

    def _with_penalty(self, loss, V):
        pen = self.penalty(V)
        if pen is None:
            return loss
        # A callable loss gives one number for all outputs: add the outputs' mean penalty.
        return loss + (pen if loss.numel() == pen.numel() else pen.mean())

    def _chunk_share(self, rows):
        """A chunk's part of the whole loss: built-ins already weigh rows over all the data."""
        if self.builtin:
            return 1.0
        return self.w[rows].sum() / self.w.sum()

    def _loss_rows(self, V, rows):
        loss = self._loss(V, rows)
        if rows is not None and self.builtin:
            # A mini-batch is a sample of the data: renormalize its weights to a mean.
            loss = loss / self.w[rows].sum()
        return loss

    def value(self, V, rows=None):
        if rows is None and self.chunks is not None:
            loss = sum(self._chunk_share(c) * self._loss(V, c) for c in self.chunks)
        else:
            loss = self._loss_rows(V, rows)
        return self._with_penalty(loss, V)

    def evaluate(self, V, rows=None):
        if rows is None and self._fast_w is not None:
            if self._squared:
                B, y = self._folded_rows()
                r = B @ V - y
                value = (r * r).sum()
            else:
                value = self.loss_fn(self._predict(V, None), self.y, self._fast_w)[0]
            pen = self.penalty(V)
            if pen is not None:
                value = value + pen[0] * self._inv_J0[0]
            value.backward()
            # With one output the reported loss is value * J0 (see user_units).
            return value.detach(), None
        if rows is not None or self.chunks is None:
            return super().evaluate(V, rows)
        # Backward chunk by chunk so that only one chunk's graph is alive at a time.
        loss = 0.0
        for c in self.chunks:
            part = self._chunk_share(c) * self._loss(V, c)
            self.normalized(part).backward()
            loss = loss + part.detach()
        if self.penalty(V) is not None:
            self.normalized(self._with_penalty(torch.zeros_like(loss), V)).backward()
        per_output = self._with_penalty(loss, V.detach())
        return self.normalized(per_output), per_output
