"""Everything fixed before the statistics of a fit: device, dtype, terms, scalings as tensors.

:func:`make_setup` checks that the statistics fit in memory and that the compute dtype can hold
the loss and the raw coefficients, then returns a frozen :class:`Setup` that every pass over
rows reads.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from ._conditioning import basis_change
from ._data_pass import DesignMap
from ._device import available_memory, resolve_device
from ._sources import to_tensor
from ._state import Scaling, Terms

# Statistics needing at most this many bytes are not checked against the available memory:
# every machine that runs torch has them.
ALWAYS_AVAILABLE = 64 * 2**20


@dataclass(frozen=True)
class Setup:
    """One fit's compute context (see :func:`make_setup`)."""

    device: torch.device
    dtype: torch.dtype
    terms: Terms
    powers: np.ndarray  # (n_terms, n_features)
    scaling: Scaling  # float64 NumPy
    design: DesignMap  # raw rows -> design, on the device
    y_offset: torch.Tensor  # the target scaling as tensors on the device
    y_scale: torch.Tensor
    basis_change: np.ndarray  # design coefficients -> raw coefficients, float64
    continuing: bool  # the scaling was fixed by earlier data (a warm start or a stream)

    @property
    def n_design(self):
        return self.design.n_design

    @property
    def n_outputs(self):
        return self.scaling.y_offset.shape[0]

    def output(self, k):
        """The same setup for output ``k`` alone (its target scaling)."""
        scaling = Scaling(
            self.scaling.x_offset,
            self.scaling.x_scale,
            self.scaling.y_offset[k : k + 1],
            self.scaling.y_scale[k : k + 1],
        )
        return replace(
            self,
            scaling=scaling,
            y_offset=self.y_offset[k : k + 1],
            y_scale=self.y_scale[k : k + 1],
        )

    def on(self, device):
        """The same setup computing on another device (e.g. a Dask worker's CPU)."""
        return make_setup_on(
            torch.device(device),
            self.dtype,
            self.terms,
            self.scaling,
            self.continuing,
            check=False,
        )


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def fit_device(spec, source_device):
    """The compute device: ``device='auto'`` follows a tensor's device, else the parameter."""
    if spec.device == "cpu":  # the default: nothing to look up
        return _CPU
    if isinstance(spec.device, str) and spec.device.lower() == "auto" and source_device is not None:
        return resolve_device(source_device, spec.dtype)
    return resolve_device(spec.device, spec.dtype)


_CPU = torch.device("cpu")


def make_setup(spec, n_features, n_outputs, scaling, source_device=None, continuing=False):
    """Check the configuration against the data's shape and build the :class:`Setup`."""
    device = fit_device(spec, source_device)
    if device.type == "mps" and spec.dtype == torch.float64:
        raise ValueError("device='mps' does not support float64; pass dtype='float32'.")
    check_size(spec, n_features, n_outputs, device)
    check_finite_scaling(scaling)
    check_target_range(spec, scaling.y_scale)
    return make_setup_on(device, spec.dtype, spec.terms, scaling, continuing)


def check_finite_scaling(scaling):
    """Refuse NaN or infinity that reached the fit unchecked.

    Validation refuses them, except under ``sklearn.config_context(assume_finite=True)``,
    where scikit-learn skips the check: they then show up here, in the ranges and moments of
    the first pass, and are named as what they are rather than as an overflow.
    """
    for name, values in (
        ("X", (scaling.x_offset, scaling.x_scale)),
        ("y", (scaling.y_offset, scaling.y_scale)),
    ):
        bad = ~(np.isfinite(values[0]) & np.isfinite(values[1]))
        if bad.any():
            column = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} contains NaN or infinity (first in column {column}). Validation did "
                "not catch it because scikit-learn's assume_finite=True is set (it skips the "
                f"check). Remove or impute the non-finite values of {name}, or leave "
                "assume_finite at False for this fit."
            )


def make_setup_on(device, dtype, terms, scaling, continuing, check=True):
    n_features = scaling.x_offset.shape[0]

    def as_t(a):
        return to_tensor(a, dtype, device)  # float64 on the CPU: wrapped, not copied

    powers = terms.powers(n_features)
    with np.errstate(over="ignore", invalid="ignore"):
        change = basis_change(powers, scaling.x_offset, scaling.x_scale, terms.fit_intercept)
    if check and not np.isfinite(change).all():
        raise raw_basis_overflow(scaling, terms.max_degree)
    return Setup(
        device=device,
        dtype=dtype,
        terms=terms,
        powers=powers,
        scaling=scaling,
        design=DesignMap(
            terms.expansion(n_features),
            as_t(scaling.x_offset),
            as_t(scaling.x_scale),
            terms.fit_intercept,
        ),
        y_offset=as_t(scaling.y_offset),
        y_scale=as_t(scaling.y_scale),
        basis_change=change,
        continuing=continuing,
    )


def check_size(spec, n_features, n_outputs, device):
    """Refuse, before allocating, a configuration whose statistics cannot fit in memory."""
    terms = spec.terms.n_terms(n_features)
    degree = spec.terms.degree
    if terms == 0 and not spec.terms.fit_intercept:
        raise ValueError(
            f"degree={degree!r} with interaction_only={spec.terms.interaction_only} on "
            f"{n_features} feature(s) gives no terms, and fit_intercept=False leaves no term "
            "to fit; use a lower min_degree, interaction_only=False or fit_intercept=True."
        )
    itemsize = spec.dtype.itemsize
    cols = terms + 1 + n_outputs
    # The triangular factor, its inverse, the rows stacked for a ridge (twice as tall) and the
    # basis change: about four cols x cols matrices.
    needed = 4 * cols * cols * max(itemsize, 8) + 2 * cols * itemsize * 1024
    if needed <= ALWAYS_AVAILABLE:
        # Asking the system costs more than a small fit's arithmetic.
        return terms
    available = available_memory(device)
    if needed > available:
        raise MemoryError(
            f"degree={degree!r} on {n_features} features gives {terms} terms; fitting "
            f"needs about {needed / 2**30:.1f} GiB for its statistics but {device} has "
            f"{available / 2**30:.1f} GiB available. Lower degree, use interaction_only=True "
            "or select fewer features."
        )
    return terms


def check_target_range(spec, y_scale):
    """Refuse targets whose loss the compute dtype cannot hold.

    The squared error is in units of ``y**2``, so ``y``'s spread must square without
    overflowing or underflowing. Huber is quadratic for small residuals and linear for large
    ones, and the absolute error (like a callable, whose form is unknown) linear: only the
    spread itself must then fit.
    """
    info = torch.finfo(spec.dtype)
    spread = np.asarray(y_scale, dtype=np.float64)
    small_power = 1 if spec.loss_name in ("absolute_error", "quantile", "callable") else 2
    large_power = 2 if spec.loss_name == "squared_error" else 1
    with np.errstate(over="ignore", under="ignore"):
        too_small = ~(spread**small_power > info.tiny)
        too_large = ~(spread**large_power < info.max)
    if too_small.any() or too_large.any():
        large = bool(too_large.any())
        power = large_power if large else small_power
        value = float(spread[too_large if large else too_small][0])
        units = "y**2" if power == 2 else "y"
        raise ValueError(
            f"y's spread ({value:.3g}) is too {'large' if large else 'small'} for "
            f"dtype='{spec.dtype_name}': loss={spec.loss_name} is computed in units of {units}, "
            f"which {'overflow' if large else 'underflow'}. Rescale y, e.g. with "
            "sklearn.compose.TransformedTargetRegressor"
            + (", or use dtype='float64'." if spec.dtype_name == "float32" else ".")
        )


def terms_overflow(spec, setup):
    """The error for a design whose terms overflowed the compute dtype."""
    dtype = dtype_name(setup.dtype)
    hints = ["Rescale X before fitting (e.g. StandardScaler in a Pipeline)"]
    if setup.continuing:
        hints.append(
            "a warm start or a partial_fit stream keeps the first fit's input "
            "scaling, so data far outside its range overflow: refit from scratch"
        )
    if not spec.conditioning:
        hints.append("conditioning=True maps the inputs into [-1, 1] first")
    if dtype == "float32":
        hints.append("dtype='float64' has a far wider range")
    return ValueError(
        f"The polynomial terms of X (degree up to {spec.terms.max_degree}) overflowed {dtype}, "
        "so the fit cannot use them. " + "; ".join(hints) + "."
    )


def raw_basis_overflow(scaling, max_degree):
    """The error for inputs whose raw monomials float64 cannot represent."""
    reach = np.abs(scaling.x_offset) + scaling.x_scale
    large = reach.max() >= 1
    extreme = float(reach.max() if large else reach.min())
    return ValueError(
        f"X's values reach {extreme:.3g} in magnitude: too {'large' if large else 'small'} "
        f"for float64 to hold the coefficients of their raw monomials up to degree "
        f"{max_degree}. Rescale X before fitting, e.g. with StandardScaler or MinMaxScaler in "
        "a Pipeline."
    )
