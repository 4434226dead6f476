"""The estimator's parameters, checked and resolved once into a frozen :class:`FitSpec`.

Everything below the estimator receives a spec and never reads the estimator itself: the
optimizer class is looked up, the loss function built, the degree range checked and the seed
drawn from ``random_state`` here, once per call to ``fit`` or ``partial_fit``.
"""

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._features import degree_range
from ._losses import resolve_loss
from ._optim import resolve_optimizer
from ._state import Terms

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class FitSpec:
    """One fit's resolved parameters (see :class:`~autopoly.TorchPolyRegressor` for each)."""

    terms: Terms
    loss: Any  # the parameter as given: a name or the user's callable (for messages)
    loss_name: str  # 'squared_error', 'huber', 'absolute_error', 'quantile' or 'callable'
    loss_fn: Callable
    quantile: float  # of loss='quantile' (0.5 for the absolute error, which it halves)
    epsilon: float  # Huber's threshold
    huber_joint: bool  # loss='huber' with huber_scale='joint' (epsilon relative to a scale)
    alpha: float
    l1_ratio: float
    optimizer_class: type
    lr: float
    optimizer_kwargs: Optional[dict]
    max_iter: int
    tol: float
    n_iter_no_change: int
    batch_size: Optional[int]
    early_stopping: bool
    validation_fraction: float
    conditioning: bool
    dtype_name: str
    device: Any  # the parameter as given ('cpu', 'cuda:1', 'auto', a torch.device)
    seed: int  # of the local generator for shuffling and the validation split
    verbose: int

    @property
    def dtype(self):
        return DTYPES[self.dtype_name]

    def batch_rows(self, n_rows=None):
        """The mini-batch size, or None for full batches (also when ``batch_size >= n_rows``)."""
        if self.batch_size is None or (n_rows is not None and self.batch_size >= n_rows):
            return None
        return self.batch_size

    def stats_mode(self, n_rows=None):
        """Whether the fit runs on the sufficient statistics alone (no pass over rows per step)."""
        return (
            self.loss_name == "squared_error"
            and self.batch_rows(n_rows) is None
            and self.conditioning
        )

    @property
    def smooth(self):
        """Whether the objective's gradient must vanish at the end: the squared error without L1.

        Huber is differentiable too, but with residuals much larger than ``epsilon`` it is an
        absolute error in all but name, and optimizers stall on it like on one.
        """
        return self.loss_name == "squared_error" and not (self.alpha > 0 and self.l1_ratio > 0)

    @property
    def piecewise_linear(self):
        """The absolute error and the pinball loss: linear programs, solved to a vertex."""
        return self.loss_name in ("absolute_error", "quantile")

    @property
    def centres_inputs(self):
        """Centring keeps the raw basis only when every lower-degree term exists."""
        return self.terms.fit_intercept and self.terms.min_degree <= 1

    def generator(self):
        """A fresh local ``torch.Generator`` (the global torch seed is never touched)."""
        return torch.Generator().manual_seed(self.seed)


def resolve_spec(est):
    """Check the parameters that need no data and resolve them into a :class:`FitSpec`."""
    lo, hi = degree_range(est.degree, est.fit_intercept)
    huber_scale = getattr(est, "huber_scale", "fixed")
    epsilon = est.epsilon
    if epsilon is None:
        epsilon = 1.35 if huber_scale == "joint" else 1.0
    if huber_scale == "joint" and est.loss == "huber" and epsilon < 1:
        raise ValueError(
            f"epsilon={epsilon} is below 1 with huber_scale='joint': the estimated scale would "
            "collapse to 0 and the fit become the absolute error. Use epsilon >= 1 (1.35, "
            "HuberRegressor's default, keeps 95% efficiency on normal noise), or "
            "huber_scale='fixed' for a threshold in the units of y."
        )
    loss_name, loss_fn = resolve_loss(est.loss, epsilon, est.quantile, huber_scale)
    # Only mini-batches and early stopping draw random numbers; other fits leave a shared
    # RandomState untouched (a meta-estimator such as RANSACRegressor passes its own along).
    seed = 0
    if est.batch_size is not None or est.early_stopping:
        seed = int(check_random_state(est.random_state).randint(np.iinfo(np.int32).max))
    return FitSpec(
        terms=Terms(lo, hi, bool(est.interaction_only), bool(est.fit_intercept)),
        loss=est.loss,
        loss_name=loss_name,
        loss_fn=loss_fn,
        quantile=float(est.quantile) if loss_name == "quantile" else 0.5,
        epsilon=float(epsilon),
        huber_joint=loss_name == "huber" and huber_scale == "joint",
        alpha=float(est.alpha),
        l1_ratio=float(est.l1_ratio),
        optimizer_class=resolve_optimizer(est.optimizer),
        lr=float(est.lr),
        optimizer_kwargs=est.optimizer_kwargs,
        max_iter=int(est.max_iter),
        tol=float(est.tol),
        n_iter_no_change=int(est.n_iter_no_change),
        batch_size=est.batch_size,
        early_stopping=bool(est.early_stopping),
        validation_fraction=float(est.validation_fraction),
        conditioning=bool(est.conditioning),
        dtype_name=est.dtype,
        device=est.device,
        seed=seed,
        verbose=int(est.verbose),
    )
