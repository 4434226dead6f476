"""Finding a ``torch.optim`` optimizer from the ``optimizer`` parameter."""

import inspect

import torch


def optimizer_names():
    """Lower-case names of every optimizer class that ``torch.optim`` exports."""
    return sorted(
        name.lower()
        for name, obj in vars(torch.optim).items()
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    )


def resolve_optimizer(optimizer):
    """Return the optimizer class for a case-insensitive name or a ``torch.optim.Optimizer`` subclass."""
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
    raise ValueError(
        f"optimizer={optimizer!r} is not a torch.optim optimizer; use a torch.optim.Optimizer "
        f"subclass or one of these names (case-insensitive): {', '.join(optimizer_names())}."
    )


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
