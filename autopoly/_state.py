"""The typed state that travels between the parts of a fit and is pickled with the estimator.

Every value here is a frozen dataclass of plain NumPy arrays and Python scalars: it pickles
without device tricks, and a function that receives one cannot change what another sees.
"""

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from ._features import expansion, monomial_powers, n_terms


@dataclass(frozen=True)
class Terms:
    """Which monomials the polynomial has: a degree range, interactions only or not, intercept."""

    min_degree: int
    max_degree: int
    interaction_only: bool
    fit_intercept: bool

    def n_terms(self, n_features):
        """Number of monomials (the intercept not counted)."""
        return n_terms(n_features, self.min_degree, self.max_degree, self.interaction_only)

    def n_design(self, n_features):
        """Columns of the design ``[1, monomials]`` (no constant column without an intercept)."""
        return self.n_terms(n_features) + int(self.fit_intercept)

    def powers(self, n_features):
        """Exponents of each monomial, shape ``(n_terms, n_features)``."""
        return monomial_powers(n_features, self.min_degree, self.max_degree, self.interaction_only)

    def expansion(self, n_features):
        """The shared :class:`~autopoly._features.Expansion` computing these monomials."""
        return expansion(n_features, self.min_degree, self.max_degree, self.interaction_only)

    @property
    def degree(self):
        """The ``degree`` parameter that gives these terms (an int or a ``(min, max)`` tuple)."""
        return self.max_degree if self.min_degree == 0 else (self.min_degree, self.max_degree)


@dataclass(frozen=True)
class Scaling:
    """``z = (x - x_offset) / x_scale`` and ``t = (y - y_offset) / y_scale``, float64."""

    x_offset: np.ndarray
    x_scale: np.ndarray
    y_offset: np.ndarray
    y_scale: np.ndarray

    @classmethod
    def identity(cls, n_features, n_outputs):
        """The scaling of ``conditioning=False``: raw inputs, raw targets."""
        return cls(
            np.zeros(n_features), np.ones(n_features), np.zeros(n_outputs), np.ones(n_outputs)
        )


@dataclass(frozen=True)
class FittedPolynomial:
    """What ``predict`` (and :meth:`~autopoly.TorchPolyRegressor.to_torch`) needs.

    The prediction for raw rows ``X`` is ``[1, monomials(z)] @ theta`` (no constant column
    without an intercept) with ``z = (X - x_offset) / x_scale``, in float64.
    """

    terms: Terms
    theta: np.ndarray  # (n_design, n_outputs), coefficients of the z-design in units of y
    x_offset: np.ndarray  # (n_features,)
    x_scale: np.ndarray  # (n_features,)
    single_output: bool  # predictions of shape (n,) rather than (n, n_outputs)
    device: str  # where the fit ran (predictions run there when this machine has it)

    @property
    def n_features(self):
        return self.x_offset.shape[0]

    @property
    def n_outputs(self):
        return self.theta.shape[1]


@dataclass(frozen=True)
class StreamState:
    """What a later ``partial_fit`` (or warm start) continues from.

    ``R`` is the triangular factor of ``sqrt(w) * [D, t]`` over the rows recorded so far and
    ``weight_sum`` their weight; ``complete`` is False once a row-wise epoch ran without
    recording its rows (exact statistics of the whole stream can no longer be had).
    """

    R: np.ndarray
    weight_sum: float
    scaling: Scaling
    optimizer_state: Optional[Any] = None
    complete: bool = True
    conditioned: bool = True  # fitted with conditioning=True (a continuation must keep it)


def to_plain(state):
    """A dataclass as nested dicts of NumPy arrays and Python scalars (for pickle and skops)."""
    return asdict(state)


def fitted_from_plain(d):
    return FittedPolynomial(**{**d, "terms": Terms(**d["terms"])})


def stream_from_plain(d):
    return StreamState(**{**d, "scaling": Scaling(**d["scaling"])})
