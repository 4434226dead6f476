"""One fit once the data have been read: setup, whitening, objective and the optimizer loop.

The estimator validates parameters and data and publishes the fitted state; the in-memory
fit, ``partial_fit`` and the Dask fit all meet here. The functions read the estimator's
parameters and never change the estimator.

A *setup* is the dict that every pass over rows needs (see :func:`autopoly._data_pass.design`):
device, dtype, the terms and their expansion, the input and target scalings (as NumPy arrays
and, with a ``_t`` suffix, as tensors on the device) and the basis change back to the raw
monomials.
"""

import math
import warnings

import numpy as np
import torch

from ._conditioning import ChunkedQR, Whitening, basis_change, input_scaling, target_scaling
from ._data_pass import chunk_slices, design, tensor
from ._device import available_memory, prediction_device, resolve_device
from ._features import degree_range, expansion, monomial_powers, n_terms
from ._objective import RowObjective, StatsObjective, _Penalty
from ._optim import is_lbfgs, make_optimizer, resolve_optimizer, state_to_torch
from ._train import train

DTYPES = {"float64": torch.float64, "float32": torch.float32}
# The whitened design is kept on the device for non-quadratic losses up to this size.
CACHE_BYTES = 1 * 2**30


def batch_rows(est, n_rows=None):
    """The mini-batch size, or None for full batches (also when ``batch_size >= n_rows``)."""
    if est.batch_size is None or (n_rows is not None and est.batch_size >= n_rows):
        return None
    return est.batch_size


def stats_mode(est, loss_name, n_rows=None):
    """Whether the fit runs on the sufficient statistics alone (no pass over rows per step)."""
    return (
        loss_name == "squared_error" and batch_rows(est, n_rows) is None and est.conditioning
    )


def is_smooth(est):
    """Whether the objective's gradient must vanish at the end: the squared error without L1.

    Huber is differentiable too, but with residuals much larger than ``epsilon`` it is an
    absolute error in all but name, and optimizers stall on it like on one.
    """
    return est.loss == "squared_error" and not (est.alpha > 0 and est.l1_ratio > 0)


# ------------------------------------------------------------------------------ setup


def identity_scaling(n_features, n_outputs):
    """The scaling of ``conditioning=False``: raw inputs, raw targets."""
    return {
        "x_offset": np.zeros(n_features), "x_scale": np.ones(n_features),
        "y_offset": np.zeros(n_outputs), "y_scale": np.ones(n_outputs),
    }


def centres_inputs(est):
    """Centring keeps the raw basis only when every lower-degree term exists."""
    return est.fit_intercept and degree_range(est.degree, est.fit_intercept)[0] <= 1


def scaling(est, X, y, sample_weight):
    """Input and target offsets/scales from in-memory data (see ``_conditioning``)."""
    if not est.conditioning:
        return identity_scaling(X.shape[1], y.shape[1])
    # Zero-weight rows must not change the basis: they are as good as absent. (Indexing only
    # when there are some: it would copy X, a memory map included.)
    positive = sample_weight > 0
    x_offset, x_scale = input_scaling(X if positive.all() else X[positive], centres_inputs(est))
    y_offset, y_scale = target_scaling(y, sample_weight, est.fit_intercept)
    return {"x_offset": x_offset, "x_scale": x_scale, "y_offset": y_offset, "y_scale": y_scale}


def check_size(est, n_features, n_outputs, device):
    """Refuse, before allocating, a configuration whose statistics cannot fit in memory."""
    lo, hi = degree_range(est.degree, est.fit_intercept)
    terms = n_terms(n_features, lo, hi, est.interaction_only)
    if terms == 0 and not est.fit_intercept:
        raise ValueError(
            f"degree={est.degree!r} with interaction_only={est.interaction_only} on "
            f"{n_features} feature(s) gives no terms, and fit_intercept=False leaves no term "
            "to fit; use a lower min_degree, interaction_only=False or fit_intercept=True."
        )
    itemsize = torch.empty((), dtype=DTYPES[est.dtype]).element_size()
    cols = terms + 1 + n_outputs
    # The triangular factor, its inverse, the rows stacked for a ridge (twice as tall) and the
    # basis change: about four cols x cols matrices.
    needed = 4 * cols * cols * max(itemsize, 8) + 2 * cols * itemsize * 1024
    available = available_memory(device)
    if needed > available:
        raise MemoryError(
            f"degree={est.degree!r} on {n_features} features gives {terms} terms; fitting "
            f"needs about {needed / 2**30:.1f} GiB for its statistics but {device} has "
            f"{available / 2**30:.1f} GiB available. Lower degree, use interaction_only=True "
            "or select fewer features."
        )
    return terms


def check_target_range(est, y_scale, dtype):
    """Refuse targets whose loss the compute dtype cannot hold.

    The squared error is in units of ``y**2``, so ``y``'s spread must square without
    overflowing or underflowing. Huber is quadratic for small residuals and linear for large
    ones, and the absolute error (like a callable, whose form is unknown) linear: only the
    spread itself must then fit.
    """
    info = torch.finfo(dtype)
    spread = np.asarray(y_scale, dtype=np.float64)
    small_power = 1 if est.loss == "absolute_error" or callable(est.loss) else 2
    large_power = 2 if est.loss == "squared_error" else 1
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
            f"dtype='{est.dtype}': loss={est.loss if isinstance(est.loss, str) else 'callable'!s}"
            f" is computed in units of {units}, which "
            f"{'overflow' if large else 'underflow'}. Rescale y, e.g. with "
            "sklearn.compose.TransformedTargetRegressor"
            + (", or use dtype='float64'." if est.dtype == "float32" else ".")
        )


def make_setup(est, n_features, n_outputs, scaling):
    """Everything fixed before the statistics: terms, device, dtype, scalings as tensors."""
    lo, hi = degree_range(est.degree, est.fit_intercept)
    dtype = DTYPES[est.dtype]
    device = resolve_device(est.device, dtype)
    check_size(est, n_features, n_outputs, device)
    check_target_range(est, scaling["y_scale"], dtype)
    if device.type == "mps" and dtype == torch.float64:
        raise ValueError("device='mps' does not support float64; pass dtype='float32'.")
    setup = {
        "device": device,
        "dtype": dtype,
        "intercept": est.fit_intercept,
        "powers": monomial_powers(n_features, lo, hi, est.interaction_only),
        "expansion": expansion(n_features, lo, hi, est.interaction_only),
        **scaling,
    }
    for key in ("x_offset", "x_scale", "y_offset", "y_scale"):
        setup[key + "_t"] = torch.as_tensor(scaling[key], dtype=dtype, device=device)
    with np.errstate(over="ignore", invalid="ignore"):
        setup["basis_change"] = basis_change(
            setup["powers"], scaling["x_offset"], scaling["x_scale"], est.fit_intercept
        )
    if not np.isfinite(setup["basis_change"]).all():
        raise raw_basis_overflow(scaling, hi)
    return setup


def terms_overflow(est, setup):
    """The error for a design whose terms overflowed the compute dtype."""
    dtype = str(setup["dtype"]).replace("torch.", "")
    hints = ["Rescale X before fitting (e.g. StandardScaler in a Pipeline)"]
    if est.warm_start or hasattr(est, "_partial"):
        hints.append("a warm start or a partial_fit stream keeps the first fit's input "
                     "scaling, so data far outside its range overflow: refit from scratch")
    if not est.conditioning:
        hints.append("conditioning=True maps the inputs into [-1, 1] first")
    if dtype == "float32":
        hints.append("dtype='float64' has a far wider range")
    return ValueError(
        f"The polynomial terms of X (degree up to {degree_range(est.degree, est.fit_intercept)[1]}"
        f") overflowed {dtype}, so the fit cannot use them. " + "; ".join(hints) + "."
    )


def check_terms_range(est, X, setup):
    """Refuse rows whose terms overflow under a scaling fixed by earlier data (a stream)."""
    z = np.abs((X - setup["x_offset"]) / setup["x_scale"])
    max_degree = degree_range(est.degree, est.fit_intercept)[1]
    with np.errstate(over="ignore"):
        if est.interaction_only:
            # The largest term multiplies the largest |z| of distinct features.
            k = min(max_degree, z.shape[1])
            top = float(np.max(np.prod(-np.sort(-z, axis=1)[:, :k], axis=1), initial=0.0))
        else:
            top = float(z.max(initial=0.0)) ** max_degree
    if not top < torch.finfo(setup["dtype"]).max:
        raise terms_overflow(est, setup)


def raw_basis_overflow(scaling, max_degree):
    """The error for inputs whose raw monomials float64 cannot represent."""
    reach = np.abs(scaling["x_offset"]) + scaling["x_scale"]
    large = reach.max() >= 1
    extreme = float(reach.max() if large else reach.min())
    return ValueError(
        f"X's values reach {extreme:.3g} in magnitude: too {'large' if large else 'small'} "
        f"for float64 to hold the coefficients of their raw monomials up to degree "
        f"{max_degree}. Rescale X before fitting, e.g. with StandardScaler or MinMaxScaler in "
        "a Pipeline."
    )


# -------------------------------------------------------------------- the objective


def _terms_map(est, setup):
    """Design coefficients -> raw coefficients of the terms (intercept row dropped)."""
    return torch.as_tensor(
        setup["basis_change"][int(est.fit_intercept) :],
        dtype=setup["dtype"], device=setup["device"],
    )


def whiten(est, R_aug, weight_sum, setup):
    """The whitening of the design from its triangular factor (L2 penalty folded in)."""
    qr = ChunkedQR()
    qr.R = R_aug
    n_design = setup["powers"].shape[0] + int(est.fit_intercept)
    R = qr.square(n_design + setup["y_offset"].shape[0]) / math.sqrt(weight_sum)
    if not est.conditioning:
        return Whitening.identity(R, n_design)
    penalty_root = None
    if est.alpha > 0 and est.l1_ratio < 1:
        # The L2 penalty as extra least-squares rows in the design coefficients (targets in
        # units of t): its Hessian is penalty_root.T @ penalty_root.
        penalty_root = math.sqrt(est.alpha * (1 - est.l1_ratio) / weight_sum) * _terms_map(
            est, setup
        )
    return Whitening(R, n_design, penalty_root)


def penalty(est, whitening, setup, weight_sum, l2=True):
    """The penalty on the optimizer's parameters, in the raw basis of the terms."""
    coef_map = None
    if est.alpha > 0:
        coef_map = _terms_map(est, setup) @ whitening.M
    return _Penalty(est.alpha, est.l1_ratio, coef_map, setup["y_scale_t"], weight_sum, l2=l2)


def row_objective(est, loss_fn, X, y, sample_weight, setup, whitening, penalty):
    """A loss evaluated on rows: the whitened design cached on the device when it fits."""
    device, dtype = setup["device"], setup["dtype"]
    n, rank = X.shape[0], whitening.rank
    itemsize = torch.empty((), dtype=dtype).element_size()
    M = whitening.M
    if n * max(rank, 1) * itemsize <= CACHE_BYTES:
        B = torch.cat([design(X[c], setup) @ M for c in chunk_slices(n, M.shape[0], itemsize)])

        def whitened_rows(rows):
            return B if rows is None else B[rows]

        chunks = None
    else:

        def whitened_rows(rows):
            idx = rows.cpu().numpy() if rows is not None else slice(None)
            return design(X[idx], setup) @ M

        chunks = [
            torch.arange(c.start, c.stop, device=device)
            for c in chunk_slices(n, M.shape[0], itemsize)
        ]
    return RowObjective(
        loss_fn, whitened_rows, tensor(y, setup), tensor(sample_weight, setup),
        setup["y_offset_t"], setup["y_scale_t"], penalty, (rank, y.shape[1]), chunks,
        builtin=not callable(est.loss), squared=est.loss == "squared_error",
    )


# ------------------------------------------------------------------- early stopping


def validation_split(X, y, sample_weight, fraction, generator):
    """Draw the held-out rows of early stopping: ``(train, validation)``, each ``(X, y, w)``."""
    # An R^2 needs two rows at least.
    n_val = max(2, int(round(fraction * X.shape[0])))
    if X.shape[0] - n_val < 1:
        raise ValueError(
            f"early_stopping=True holds out validation_fraction={fraction:g} of the rows, and "
            f"at least 2 to score them, plus 1 row to train on; got {X.shape[0]} "
            f"sample{'s' if X.shape[0] != 1 else ''}. Pass more rows or set "
            "early_stopping=False."
        )
    perm = torch.randperm(X.shape[0], generator=generator).numpy()
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (X[tr], y[tr], sample_weight[tr]), (X[val], y[val], sample_weight[val])


def _weighted_variance(y, w):
    w = w / w.sum()
    return w @ (y - w @ y) ** 2


def validation_scorer(held_out, training, setup, whitening):
    """The weighted R^2 (mean over outputs) of parameters ``V`` on the held-out rows.

    ``held_out`` and ``training`` are ``(X, y, sample_weight)``. Where the held-out target is
    constant its variance is 0 and R^2 undefined; the training target's variance (or 1) takes
    its place, so that the score still ranks parameters by their held-out error.
    """
    X, y, w = held_out
    B = design(X, setup) @ whitening.M
    y_t = tensor(y, setup)
    w_t = tensor(w, setup)
    w_t = w_t / w_t.sum()
    tiny = torch.finfo(setup["dtype"]).tiny
    var = _weighted_variance(y_t, w_t)
    train_var = _weighted_variance(tensor(training[1], setup), tensor(training[2], setup))
    fallback = torch.where(train_var > tiny, train_var, torch.ones_like(train_var))
    var = torch.where(var > tiny, var, fallback)

    def score(V):
        with torch.no_grad():
            pred = setup["y_offset_t"] + setup["y_scale_t"] * (B @ V)
            return float((1 - (w_t @ (y_t - pred) ** 2) / var).mean())

    return score


# ------------------------------------------------------------------------ the loop


def _intercept_row(y_offset, fit_intercept, n_rows):
    shift = np.zeros((n_rows, len(y_offset)))
    if fit_intercept:
        shift[0] = y_offset
    return shift


def initial_params(est, whitening, setup, n_outputs, previous_theta=None):
    """Zeros, or the parameters of ``previous_theta`` (a warm start) when its shape fits."""
    dtype, device = setup["dtype"], setup["device"]
    if previous_theta is not None and previous_theta.shape[1] == n_outputs:
        shift = _intercept_row(setup["y_offset"], est.fit_intercept, previous_theta.shape[0])
        theta_t = (previous_theta - shift) / setup["y_scale"]
        V = whitening.to_params(torch.as_tensor(theta_t, dtype=dtype, device=device))
    else:
        V = torch.zeros((whitening.rank, n_outputs), dtype=dtype, device=device)
    return V.requires_grad_(True)


def solve(
    est, R_aug, weight_sum, setup, *, make_rows=None, make_validation=None, n_rows=None,
    generator=None, max_iter=None, optimizer_state=None, previous_theta=None, keep_best=True,
):
    """Whiten, build the objective and run the optimizer loop.

    ``R_aug`` is the triangular factor of ``sqrt(w) * [D, t]`` summed over all rows (from
    :func:`autopoly._data_pass.accumulate`, a Dask reduction, or earlier ``partial_fit``
    calls). The squared error is minimized from it directly; ``make_rows(whitening, penalty)``
    supplies a row-wise objective for other losses and mini-batches.

    Returns
    -------
    result : autopoly._train.TrainResult
        The loop's outcome (parameters ``V``, curves, convergence).
    theta : ndarray of shape (n_design, n_outputs)
        Design coefficients in the units of y, float64.
    optimizer : torch.optim.Optimizer
        The optimizer, for its state.
    """
    if not bool(torch.isfinite(R_aug).all()):
        raise terms_overflow(est, setup)
    whitening = whiten(est, R_aug, weight_sum, setup)
    if make_rows is None:
        # The whitened quadratic already holds the L2 part of the penalty.
        objective = StatsObjective(
            whitening, setup["y_scale_t"], penalty(est, whitening, setup, weight_sum, l2=False)
        )
    else:
        objective = make_rows(whitening, penalty(est, whitening, setup, weight_sum))
    validation = make_validation(whitening) if make_validation is not None else None
    batch_size = None if make_rows is None else batch_rows(est, n_rows)
    optimizer_class = resolve_optimizer(est.optimizer)
    if batch_size is not None and is_lbfgs(optimizer_class):
        warnings.warn(
            f"optimizer='lbfgs' is a full-batch method: on mini-batches (batch_size="
            f"{batch_size}) its line search sees another objective at every step and stops "
            "short of the optimum. Use batch_size=None, or a first-order optimizer such as "
            "'adam' for mini-batches.",
            UserWarning,
            stacklevel=4,
        )
    V = initial_params(est, whitening, setup, setup["y_offset"].shape[0], previous_theta)
    optimizer = make_optimizer(optimizer_class, [V], est.lr, est.optimizer_kwargs)
    if optimizer_state is not None:
        optimizer.load_state_dict(state_to_torch(optimizer_state, setup["device"]))
    result = train(
        V, objective, optimizer, lr=est.lr, max_iter=max_iter or est.max_iter,
        tol=est.tol, n_iter_no_change=est.n_iter_no_change,
        batch_size=batch_size, n_rows=n_rows,
        generator=generator, validation=validation, verbose=est.verbose,
        keep_best=keep_best, smooth=is_smooth(est),
    )
    theta_t = (whitening.M @ result.V.detach()).cpu().to(torch.float64).numpy()
    theta = theta_t * setup["y_scale"] + _intercept_row(
        setup["y_offset"], est.fit_intercept, theta_t.shape[0]
    )
    return result, theta, optimizer


# ----------------------------------------------------------------------- prediction


def predict(X, theta, terms, x_offset, x_scale, fitted_device):
    """``design(X) @ theta`` chunk by chunk, float64, as ``(n_samples, n_outputs)``.

    ``terms`` is ``(min_degree, max_degree, interaction_only, fit_intercept)`` of the fit;
    the computation runs on ``fitted_device`` when this machine has it, else on the CPU.
    """
    device = prediction_device(fitted_device)
    # Predictions are cheap: compute them in float64 unless the device lacks it.
    dtype = torch.float32 if device.type == "mps" else torch.float64
    lo, hi, interaction_only, intercept = terms
    setup = {
        "device": device,
        "dtype": dtype,
        "intercept": intercept,
        "expansion": expansion(X.shape[1], lo, hi, interaction_only),
        "x_offset_t": torch.as_tensor(x_offset, dtype=dtype, device=device),
        "x_scale_t": torch.as_tensor(x_scale, dtype=dtype, device=device),
    }
    theta = torch.as_tensor(theta, dtype=dtype, device=device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    out = np.empty((X.shape[0], theta.shape[1]))
    with torch.no_grad():
        for rows in chunk_slices(X.shape[0], theta.shape[0], itemsize):
            out[rows] = (design(X[rows], setup) @ theta).cpu().to(torch.float64).numpy()
    return out
