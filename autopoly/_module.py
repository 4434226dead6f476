"""The fitted polynomial as a ``torch.nn.Module``: what ``predict`` computes, differentiably.

The module evaluates ``[1, monomials(z)] @ theta`` with ``z = (x - x_offset) / x_scale``, as
:func:`autopoly._fitting.predict` does, and builds each monomial the way
:class:`~autopoly._features.Expansion` does: a term of degree ``k`` is a term of degree ``k - 1``
times one column of ``z``. Only multiplications, concatenations and index gathers are used, so
the module is differentiable everywhere (``z ** 0`` never appears, whose gradient is NaN at
``z = 0``), and ``torch.export``, ``torch.compile`` and ``torch.func`` transforms accept it.
"""

import numpy as np
import torch
from torch import nn

from ._device import resolve_device

_DTYPE_NAMES = {"float64": torch.float64, "float32": torch.float32}


def _plan(powers, fit_intercept):
    """How to build every term from a lower one, and which columns form the design.

    The table of products starts as ``[1, z_0, ..., z_{n-1}]``; each level appends the products
    of one degree, ``table[parent] * z[feature]``. A term is named by its sorted tuple of
    feature indices (``x0^2 x1`` is ``(0, 0, 1)``), and its parent is that tuple without its
    last entry: the parents :class:`~autopoly._features.Expansion` uses, so the monomials are
    rounded exactly as ``predict`` rounds them. Returns ``(levels, design_index)`` with
    ``levels`` a list of ``(parents, features)`` int64 arrays.
    """
    n_features = powers.shape[1]
    chains = [tuple(np.repeat(np.arange(n_features), row).tolist()) for row in powers]
    column = {(): 0, **{(j,): 1 + j for j in range(n_features)}}
    levels = []
    for degree in range(2, max((len(c) for c in chains), default=0) + 1):
        new = sorted({c[:degree] for c in chains if len(c) >= degree})
        parents = np.array([column[c[:-1]] for c in new], dtype=np.int64)
        features = np.array([c[-1] for c in new], dtype=np.int64)
        start = len(column)
        column.update((c, start + k) for k, c in enumerate(new))
        levels.append((parents, features))
    design_index = [0] * int(fit_intercept) + [column[c] for c in chains]
    return levels, np.array(design_index, dtype=np.int64)


class PolynomialModule(nn.Module):
    """A fitted polynomial as a ``torch.nn.Module``, computing what ``predict`` computes.

    Usually built by :meth:`~autopoly.TorchPolyRegressor.to_torch`. The output for rows ``x``
    is ``[1, monomials(z)] @ theta`` with ``z = (x - x_offset) / x_scale``: the conditioned
    basis the estimator fitted in, so no accuracy is lost to the raw monomials' scale.

    Parameters
    ----------
    powers : array-like of int of shape (n_terms, n_features)
        Exponents of each monomial, as the estimator's ``powers_``.
    theta : array-like of shape (n_design, n_outputs)
        Coefficients of the design ``[1, monomials(z)]`` (``n_design = n_terms + 1``), or of
        the monomials alone (``n_design = n_terms``) when ``fit_intercept`` is False.
    x_offset : array-like of shape (n_features,)
        Subtracted from the input.
    x_scale : array-like of shape (n_features,)
        Divides the input once the offset is subtracted.
    fit_intercept : bool, default=True
        Whether the first row of ``theta`` is the coefficient of a constant column.
    single_output : bool, default=False
        Return ``(n,)`` rather than ``(n, 1)``; needs ``n_outputs == 1``.
    trainable : bool, default=False
        Register ``theta`` as an ``nn.Parameter`` (for fine-tuning) rather than a buffer.

    Attributes
    ----------
    theta : torch.Tensor or torch.nn.Parameter of shape (n_design, n_outputs)
        The coefficients; a parameter only when ``trainable`` is True.
    x_offset : torch.Tensor of shape (n_features,)
        Buffer.
    x_scale : torch.Tensor of shape (n_features,)
        Buffer.
    powers : torch.Tensor of int64 of shape (n_terms, n_features)
        Buffer. Which products are computed is derived from it, also when a ``state_dict``
        is loaded.
    n_features : int
        Width of the input rows.
    n_terms : int
        Number of monomials (the intercept not counted).
    n_outputs : int
        Number of targets.

    See Also
    --------
    autopoly.TorchPolyRegressor.to_torch : Builds this module from a fitted estimator.

    Notes
    -----
    ``forward`` takes a tensor of shape ``(n, n_features)`` and returns ``(n,)`` (single
    output) or ``(n, n_outputs)``. A 1-D tensor of length ``n_features`` is one unbatched row
    and gives a scalar or ``(n_outputs,)``, as ``nn.Linear`` treats unbatched input: this is
    what ``torch.func.vmap(torch.func.jacrev(module))(X)`` hands the module, giving the
    gradient of every row. Inputs of another dtype are cast to the module's; they must be on
    its device.

    The state (``theta``, ``x_offset``, ``x_scale``, ``powers``) is in ``state_dict()``; the
    index tensors derived from ``powers`` are non-persistent buffers, so ``.to(device)`` moves
    everything.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from autopoly import TorchPolyRegressor
    >>> X = np.linspace(-2, 2, 20).reshape(-1, 1)
    >>> y = 3 + 2 * X[:, 0] - X[:, 0] ** 2
    >>> module = TorchPolyRegressor(degree=2).fit(X, y).to_torch()
    >>> module
    PolynomialModule(n_features=1, n_terms=2, n_outputs=1, fit_intercept=True)
    >>> x = torch.tensor([[0.0], [0.5], [2.0]], dtype=torch.float64)
    >>> module(x).detach().numpy().round(6)
    array([3.  , 3.75, 3.  ])
    >>> torch.func.vmap(torch.func.grad(module))(x).numpy().round(6)
    array([[ 2.],
           [ 1.],
           [-2.]])
    """

    def __init__(
        self,
        powers,
        theta,
        x_offset,
        x_scale,
        *,
        fit_intercept=True,
        single_output=False,
        trainable=False,
    ):
        super().__init__()
        powers = np.asarray(powers)
        theta = np.asarray(theta, dtype=np.float64)
        x_offset = np.asarray(x_offset, dtype=np.float64)
        x_scale = np.asarray(x_scale, dtype=np.float64)
        if powers.ndim != 2 or powers.dtype.kind not in "iu" or (powers.size and powers.min() < 0):
            raise ValueError(
                "powers must be a 2-D array of non-negative integers (n_terms, n_features); "
                f"got shape {powers.shape} and dtype {powers.dtype}."
            )
        n_terms, n_features = powers.shape
        n_design = n_terms + int(fit_intercept)
        if theta.ndim != 2 or theta.shape[0] != n_design:
            raise ValueError(
                f"theta must have shape (n_design, n_outputs) with n_design={n_design} "
                f"({n_terms} terms{' and an intercept' if fit_intercept else ''}); "
                f"got shape {theta.shape}."
            )
        for name, value in (("x_offset", x_offset), ("x_scale", x_scale)):
            if value.shape != (n_features,):
                raise ValueError(
                    f"{name} must have shape ({n_features},), one value per feature; "
                    f"got shape {value.shape}."
                )
        if single_output and theta.shape[1] != 1:
            raise ValueError(
                f"single_output=True needs one output, but theta has {theta.shape[1]} columns."
            )
        self.n_features, self.n_terms, self.n_outputs = n_features, n_terms, theta.shape[1]
        self.fit_intercept, self.single_output = bool(fit_intercept), bool(single_output)
        theta_t = torch.as_tensor(theta)
        if trainable:
            self.theta = nn.Parameter(theta_t)
        else:
            self.register_buffer("theta", theta_t)
        self.register_buffer("x_offset", torch.as_tensor(x_offset))
        self.register_buffer("x_scale", torch.as_tensor(x_scale))
        self.register_buffer("powers", torch.as_tensor(powers, dtype=torch.int64))
        self._level_names = []
        self._build_plan()
        # load_state_dict copies new powers into the buffer: rebuild what is derived from them.
        # (A module-level function, not a lambda: the module must pickle, for torch.save.)
        self.register_load_state_dict_post_hook(_rebuild_plan)

    def _build_plan(self):
        # Advanced indexing rather than index_select: under torch.compile's inductor backend
        # (torch 2.13) the gradient of index_select inside torch.func.jacrev comes out wrong
        # (cf. pytorch/pytorch#188084); indexing gives the eager result.
        for parents_name, features_name in self._level_names:
            del self._buffers[parents_name], self._buffers[features_name]
        levels, design_index = _plan(self.powers.cpu().numpy(), self.fit_intercept)
        device = self.powers.device
        as_t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        self._level_names = []
        for degree, (parents, features) in enumerate(levels, start=2):
            names = (f"level{degree}_parents", f"level{degree}_features")
            self.register_buffer(names[0], as_t(parents), persistent=False)
            self.register_buffer(names[1], as_t(features), persistent=False)
            self._level_names.append(names)
        self.register_buffer("design_index", as_t(design_index), persistent=False)

    def forward(self, x):
        """Evaluate the polynomial on rows ``x``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, n_features) or (n_features,)
            Raw inputs (not scaled), on the module's device; cast to its dtype.

        Returns
        -------
        y : torch.Tensor
            Of shape ``(n,)`` or ``(n, n_outputs)``; a scalar or ``(n_outputs,)`` for a 1-D
            row.
        """
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, device=self.x_offset.device)
        if x.dim() not in (1, 2) or x.shape[-1] != self.n_features:
            raise ValueError(
                f"{type(self).__name__} expects a tensor of shape (n_samples, "
                f"{self.n_features}) or one row of shape ({self.n_features},); "
                f"got shape {tuple(x.shape)}."
            )
        x = x.to(self.x_offset.dtype)
        z = (x - self.x_offset) / self.x_scale
        table = torch.cat([torch.ones_like(z[..., :1]), z], dim=-1)
        # Advanced indexing rather than index_select: under torch.compile's inductor backend
        # (torch 2.13) the gradient of index_select inside torch.func.jacrev comes out wrong
        # (cf. pytorch/pytorch#188084); indexing gives the eager result.
        for parents_name, features_name in self._level_names:
            parents, features = getattr(self, parents_name), getattr(self, features_name)
            table = torch.cat([table, table[..., parents] * z[..., features]], dim=-1)
        out = table[..., self.design_index] @ self.theta
        return out[..., 0] if self.single_output else out

    def extra_repr(self):
        """The sizes shown in the module's ``repr``.

        Returns
        -------
        text : str
            ``n_features``, ``n_terms``, ``n_outputs`` and ``fit_intercept``.
        """
        return (
            f"n_features={self.n_features}, n_terms={self.n_terms}, "
            f"n_outputs={self.n_outputs}, fit_intercept={self.fit_intercept}"
        )


def _rebuild_plan(module, incompatible_keys):
    module._build_plan()


def _resolve_dtype(dtype):
    if dtype is None:
        return torch.float64
    resolved = _DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(
            f"dtype={dtype!r} is not a floating-point torch dtype; use torch.float64 (the "
            "default, what predict computes in) or torch.float32."
        )
    return resolved


def polynomial_module(fitted, device=None, dtype=None, trainable=False):
    """Build a :class:`PolynomialModule` from a :class:`~autopoly._state.FittedPolynomial`.

    Parameters
    ----------
    fitted : FittedPolynomial
        The estimator's fitted state.
    device : str or torch.device, default=None
        Where the module's buffers live; the CPU when omitted.
    dtype : torch.dtype or {'float64', 'float32'}, default=None
        Its compute dtype; ``torch.float64`` (what ``predict`` uses) when omitted.
    trainable : bool, default=False
        Register the coefficients as parameters instead of buffers.

    Returns
    -------
    module : PolynomialModule
        The module, on ``device`` in ``dtype``.
    """
    dtype = _resolve_dtype(dtype)
    resolved = resolve_device("cpu" if device is None else device, dtype)
    if resolved.type == "mps" and dtype == torch.float64:
        raise ValueError("device='mps' does not support float64; pass dtype=torch.float32.")
    module = PolynomialModule(
        fitted.terms.powers(fitted.n_features),
        fitted.theta,
        fitted.x_offset,
        fitted.x_scale,
        fit_intercept=fitted.terms.fit_intercept,
        single_output=fitted.single_output,
        trainable=trainable,
    )
    return module.to(device=resolved, dtype=dtype)
