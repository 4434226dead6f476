"""Finding a ``torch.optim`` optimizer from the ``optimizer`` parameter."""

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
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer and not issubclass(obj, SPARSE_ONLY)
    )


def resolve_optimizer(optimizer):
    """Return the optimizer class for a case-insensitive name or a ``torch.optim.Optimizer`` subclass."""
    found = _lookup(optimizer)
    if found is not None and issubclass(found, SPARSE_ONLY):
        raise ValueError(
            f"optimizer={optimizer!r} only works with sparse gradients (embeddings), and a "
            "polynomial's coefficients get dense ones; use 'adam' instead."
        )
    if found is not None:
        return found
    raise ValueError(
        f"optimizer={optimizer!r} is not a torch.optim optimizer; use a torch.optim.Optimizer "
        f"subclass or one of these names (case-insensitive): {', '.join(optimizer_names())}."
    )


def _lookup(optimizer):
    if inspect.isclass(optimizer) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        for name, obj in vars(torch.optim).items():
            if (
                name.lower() == optimizer.lower()
                and inspect.isclass(obj)
                and issubclass(obj, torch.optim.Optimizer)
            ):
                return obj
    return None


def is_lbfgs(optimizer_class):
    """L-BFGS needs a closure that re-evaluates the loss, and steps one iteration at a time here."""
    return issubclass(optimizer_class, torch.optim.LBFGS)


def make_optimizer(optimizer_class, params, lr, optimizer_kwargs):
    """Instantiate the optimizer; L-BFGS defaults to one iteration per step with a line search."""
    kwargs = dict(optimizer_kwargs or {})
    if is_lbfgs(optimizer_class):
        kwargs.setdefault("max_iter", 1)
        # torch's default max_eval (max_iter * 5 // 4) would leave the line search no budget.
        kwargs.setdefault("max_eval", kwargs["max_iter"] + 25)
        kwargs.setdefault("line_search_fn", "strong_wolfe")
        # The problem is whitened, so the gradient scale is meaningful; stop on it ourselves.
        kwargs.setdefault("tolerance_grad", 0.0)
        kwargs.setdefault("tolerance_change", 0.0)
    try:
        return optimizer_class(params, lr=lr, **kwargs)
    except TypeError as exc:
        raise ValueError(
            f"optimizer {optimizer_class.__name__} rejected optimizer_kwargs={optimizer_kwargs!r}: {exc}"
        ) from exc


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
