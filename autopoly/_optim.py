"""Finding a ``torch.optim`` optimizer from the ``optimizer`` parameter."""

import functools
import inspect

import numpy as np
import torch

# Optimizers that need sparse gradients: a polynomial's coefficients get dense ones.
SPARSE_ONLY = (torch.optim.SparseAdam,)


def optimizer_names():
    """Lower-case names of every usable optimizer class that ``torch.optim`` exports."""
    return sorted(
        name.lower()
        for name, obj in vars(torch.optim).items()
        if _is_optimizer_class(obj) and _takes_steps(obj) and not issubclass(obj, SPARSE_ONLY)
    )


def resolve_optimizer(optimizer):
    """The optimizer class for a case-insensitive name or a ``torch.optim.Optimizer`` subclass.

    Refused with a ValueError that lists the usable names: an unknown name or object, a class
    that cannot take a step (``torch.optim.Optimizer`` itself, the abstract base) and the
    optimizers that need sparse gradients.
    """
    found = _lookup(optimizer)
    if found is not None and found in _usable_classes():
        return found
    names = ", ".join(optimizer_names())
    if found is not None and not _takes_steps(found):
        what = (
            "torch.optim.Optimizer, the abstract base class of the optimizers, which"
            if found is torch.optim.Optimizer
            else f"{_qualified(found)}, an Optimizer subclass that"
        )
        raise ValueError(
            f"optimizer={_shown(optimizer)} names {what} does not implement step(); use an "
            f"optimizer that does: a torch.optim.Optimizer subclass with a step method, or one "
            f"of these names (case-insensitive): {names}."
        )
    if found is not None and issubclass(found, SPARSE_ONLY):
        raise ValueError(
            f"optimizer={optimizer!r} only works with sparse gradients (embeddings), and a "
            "polynomial's coefficients get dense ones; use 'adam' instead."
        )
    if found is not None:
        return found
    raise ValueError(
        f"optimizer={optimizer!r} is not a torch.optim optimizer; use a torch.optim.Optimizer "
        f"subclass or one of these names (case-insensitive): {names}."
    )


def _is_optimizer_class(obj):
    return inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)


def _takes_steps(optimizer_class):
    # The base class's step only raises NotImplementedError.
    return optimizer_class.step is not torch.optim.Optimizer.step


def _lookup(optimizer):
    if _is_optimizer_class(optimizer):
        return optimizer
    if isinstance(optimizer, str):
        return _by_name().get(optimizer.lower())
    return None


@functools.cache
def _by_name():
    """``torch.optim``'s optimizer classes by lower-case name (looked up once per process)."""
    found = {}
    for name, obj in vars(torch.optim).items():
        if _is_optimizer_class(obj):
            found.setdefault(name.lower(), obj)
    return found


@functools.cache
def _usable_classes():
    """``torch.optim``'s classes that :func:`resolve_optimizer` accepts without a second look."""
    return frozenset(
        obj for obj in _by_name().values() if _takes_steps(obj) and not issubclass(obj, SPARSE_ONLY)
    )


def _shown(optimizer):
    return repr(optimizer) if isinstance(optimizer, str) else _qualified(optimizer)


def _qualified(optimizer_class):
    module = optimizer_class.__module__
    if getattr(torch.optim, optimizer_class.__name__, None) is optimizer_class:
        module = "torch.optim"
    return f"{module}.{optimizer_class.__qualname__}"


def is_lbfgs(optimizer_class):
    """L-BFGS needs a closure that re-evaluates the loss, and steps one iteration at a time here."""
    return issubclass(optimizer_class, torch.optim.LBFGS)


# Set by the estimator itself: the learning rate is the lr parameter, the parameters are the
# polynomial's coefficients.
_RESERVED = {
    "lr": (
        "set the learning rate with the estimator's lr parameter (e.g. lr=0.01), not in "
        "optimizer_kwargs"
    ),
    "params": "the estimator passes its own coefficients as the optimizer's params",
}


def make_optimizer(optimizer_class, params, lr, optimizer_kwargs):
    """Instantiate the optimizer; L-BFGS defaults to one iteration per step with a line search.

    ``optimizer_kwargs`` the optimizer refuses, when it is created or at its first step, give
    a ValueError naming ``optimizer_kwargs``, the optimizer's reason and the defaults of the
    keys given (:func:`check_optimizer_kwargs`).
    """
    kwargs = _with_defaults(optimizer_class, optimizer_kwargs)
    if optimizer_kwargs:
        check_optimizer_kwargs(optimizer_class, lr, optimizer_kwargs, like=params[0])
    try:
        return optimizer_class(params, lr=lr, **kwargs)
    except (TypeError, ValueError) as exc:
        raise _refused(optimizer_class, optimizer_kwargs, exc) from exc


def check_optimizer_kwargs(optimizer_class, lr, optimizer_kwargs, like=None):
    """Raise a ValueError when ``optimizer_class`` refuses ``optimizer_kwargs``.

    Some values pass the optimizer's constructor and fail only at its first step (L-BFGS's
    ``line_search_fn``, a ``weight_decay`` that is not a number), so the check creates the
    optimizer for a throwaway two-element parameter shaped like ``like`` (its dtype and
    device; float64 on the CPU by default) and takes one step. No state is kept.
    """
    if not optimizer_kwargs:
        return
    for key, why in _RESERVED.items():
        if key in optimizer_kwargs:
            raise ValueError(
                f"optimizer_kwargs={optimizer_kwargs!r} sets {key!r}, which the estimator "
                f"sets itself: {why}."
            )
    kwargs = _with_defaults(optimizer_class, optimizer_kwargs)
    dtype = torch.float64 if like is None else like.dtype
    device = None if like is None else like.device
    # A fit may run inside inference_mode or no_grad; the probe needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        probe = torch.zeros(2, dtype=dtype, device=device, requires_grad=True)
        try:
            optimizer = optimizer_class([probe], lr=lr, **kwargs)

            def closure():
                optimizer.zero_grad()
                loss = ((probe - 1) ** 2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise _refused(optimizer_class, optimizer_kwargs, exc) from exc


def _with_defaults(optimizer_class, optimizer_kwargs):
    kwargs = dict(optimizer_kwargs or {})
    if is_lbfgs(optimizer_class):
        kwargs.setdefault("max_iter", 1)
        # torch's default max_eval (max_iter * 5 // 4) would leave the line search no budget.
        kwargs.setdefault("max_eval", kwargs["max_iter"] + 25)
        kwargs.setdefault("line_search_fn", "strong_wolfe")
        # The problem is whitened, so the gradient scale is meaningful; stop on it ourselves.
        kwargs.setdefault("tolerance_grad", 0.0)
        kwargs.setdefault("tolerance_change", 0.0)
    return kwargs


def _refused(optimizer_class, optimizer_kwargs, exc):
    """The ValueError for ``optimizer_kwargs`` that ``optimizer_class`` refused with ``exc``."""
    name = optimizer_class.__name__
    accepted = _keyword_defaults(optimizer_class)
    given = list(optimizer_kwargs or {})
    unknown = [key for key in given if accepted is not None and key not in accepted]
    if unknown:
        fix = (
            f"{name} takes no {', '.join(map(repr, unknown))}; its keyword arguments are "
            f"{', '.join(accepted)} (see torch.optim.{name}). Fix the name or drop it."
        )
    elif accepted is not None and given:
        defaults = ", ".join(f"{key}={accepted[key]!r}" for key in given)
        fix = (
            f"Pass values {name} accepts (its defaults: {defaults}), or leave them out of "
            "optimizer_kwargs."
        )
    else:
        fix = f"Pass values {name} accepts (see torch.optim.{name}) in optimizer_kwargs."
    reason = str(exc).rstrip(".") or type(exc).__name__
    return ValueError(
        f"optimizer {name} rejected optimizer_kwargs={optimizer_kwargs!r}: {reason}. {fix}"
    )


def _keyword_defaults(optimizer_class):
    """``{name: default}`` of the optimizer's keyword arguments besides params and lr.

    The defaults the estimator sets (L-BFGS's line search) replace torch's.
    """
    try:
        parameters = inspect.signature(optimizer_class.__init__).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None  # takes any keyword: the names cannot be checked
    defaults = {
        key: p.default
        for key, p in parameters.items()
        if key not in ("self", "params", "lr") and p.kind is not inspect.Parameter.VAR_POSITIONAL
    }
    return {**defaults, **_with_defaults(optimizer_class, {})}


def state_to_numpy(obj):
    """An optimizer state with NumPy arrays for tensors: it pickles, and skops can load it."""
    if torch.is_tensor(obj):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: state_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [state_to_numpy(v) for v in obj]
    return obj


def state_to_torch(obj, device):
    """Inverse of :func:`state_to_numpy`, onto ``device``."""
    if isinstance(obj, np.ndarray):
        return torch.as_tensor(obj, device=device)
    if isinstance(obj, dict):
        return {k: state_to_torch(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [state_to_torch(v, device) for v in obj]
    return obj


class WhitenedLBFGSStep:
    """L-BFGS on the whitened squared error, its step taken in closed form.

    From the statistics, the squared error of each output is ``y_scale**2 * (||V - C||**2 +
    resid)`` in the whitened parameters: a quadratic whose Hessian is a multiple of the
    identity, so its gradient at any ``V`` points straight at the minimizer ``C``. L-BFGS's
    first iteration (a strong-Wolfe line search along the gradient) stops somewhere on that
    line; its first curvature pair then gives the Hessian's scale exactly, and its second
    iteration lands on ``C`` (to rounding), where the third finds a vanishing gradient. This
    stand-in takes the step to ``C`` at once: ``step(closure)`` evaluates the closure at the
    current point (the loop records its loss and gradient) and moves to ``C``. The loop
    around it (:func:`autopoly._train.train`) runs as with the optimizer and stops on the
    gradient test at ``C``, one iteration sooner; the fit reports ``LBFGS`` as its method.
    It stands in only where L-BFGS gets at least two iterations (``max_iter >= 2``).

    It exists because constructing any ``torch.optim.Optimizer`` imports torch's compiler
    stack (``torch._dynamo``: sympy, ``torch.distributed``, about a second on two cores) the
    first time in a process; the default fit does not need it.

    Parameters
    ----------
    params : list of one torch.Tensor
        The parameters ``V`` (a leaf with ``requires_grad``).
    minimizer : torch.Tensor
        ``C``, the same shape.
    """

    def __init__(self, params, minimizer):
        (self.V,) = params
        self.minimizer = minimizer
        self.param_groups = [{"params": [self.V]}]

    def zero_grad(self, set_to_none=True):
        """Clear the gradient of ``V`` (as ``torch.optim.Optimizer.zero_grad``)."""
        self.V.grad = None

    def step(self, closure):
        """Evaluate ``closure`` at the current point, then move to the minimizer."""
        loss = closure()
        with torch.no_grad():
            self.V.copy_(self.minimizer)
        return loss


def closed_form_lbfgs(optimizer_class, optimizer_kwargs):
    """Whether the optimizer is plain L-BFGS with the estimator's settings (no kwargs).

    L-BFGS given its own settings (another line search, a step budget) keeps the real
    ``torch.optim.LBFGS``, whose path those settings change.
    """
    return optimizer_class is torch.optim.LBFGS and not optimizer_kwargs
