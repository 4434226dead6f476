"""TorchPolyRegressor: polynomial regression fitted by a torch optimizer, as a sklearn estimator."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ._conditioning import ChunkedQR, Whitening, basis_change, input_scaling, target_scaling
from ._data_pass import accumulate, chunk_slices, design, tensor
from . import _dask
from ._device import available_memory, prediction_device, resolve_device
from ._features import expansion, monomial_powers, n_terms, term_names
from ._losses import LOSSES, resolve_loss
from ._objective import RowObjective, StatsObjective, _Penalty
from ._optim import make_optimizer, resolve_optimizer, state_to_numpy, state_to_torch
from ._threads import in_pool_thread, task_threads
from ._train import train
from ._validation import fit_data, predict_data
from ._persistence import check_state_version, restore_on_error
from ._version import __version__

# Problems with fewer design entries than this run on one torch thread.
SMALL_PROBLEM = 2**21
# The whitened design is kept on the device for non-quadratic losses up to this size.
CACHE_BYTES = 1 * 2**30

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class TorchPolyRegressor(RegressorMixin, BaseEstimator):
    """Polynomial regression whose coefficients are fitted by a ``torch.optim`` optimizer.

    The input is expanded into all monomials up to ``degree`` (same terms, order and names as
    :class:`sklearn.preprocessing.PolynomialFeatures` with ``include_bias=False``), the loss is
    written with torch autograd, and the coefficients are fitted by an optimizer step loop on
    ``device``. Internally the optimizer works in a whitened, well-conditioned parametrization
    (see Notes), so raw, unscaled inputs converge to the least-squares optimum; ``coef_`` and
    ``intercept_`` are reported in the basis of the raw monomials of the raw input.

    Parameters
    ----------
    degree : int or tuple (min_degree, max_degree), default=2
        Largest degree of the terms, or the range of degrees to include.
    interaction_only : bool, default=False
        Only products of distinct features (no powers above one).
    fit_intercept : bool, default=True
        Fit a constant term, reported as ``intercept_`` and never penalized.
    loss : {'squared_error', 'huber', 'absolute_error'} or callable, default='squared_error'
        Data-fit loss. A callable receives ``(y_pred, y_true, sample_weight)`` as torch tensors
        of shapes ``(n, n_outputs)``, ``(n, n_outputs)`` and ``(n,)`` and returns a scalar
        tensor; it should be a weighted mean over samples so that chunked evaluation is exact.
    epsilon : float, default=1.0
        Huber threshold, in the units of ``y``.
    alpha : float, default=0.0
        Penalty strength. The objective is ``loss + alpha / sum(sample_weight) * penalty`` so
        that ``alpha`` means what it means in :class:`sklearn.linear_model.Ridge`.
    l1_ratio : float, default=0.0
        Mix of the penalty: ``(1 - l1_ratio) * ||coef||_2^2 + l1_ratio * ||coef||_1``, on the
        raw-basis coefficients (never the intercept), whatever the internal conditioning.
    optimizer : str or torch.optim.Optimizer subclass, default='lbfgs'
        Any ``torch.optim`` optimizer, by case-insensitive name ('sgd', 'adam', 'adamw',
        'nadam', 'rmsprop', 'lbfgs', ...) or class.
    lr : float, default=1.0
        Learning rate given to the optimizer.
    optimizer_kwargs : dict, default=None
        Further keyword arguments for the optimizer (e.g. ``{'momentum': 0.9}``).
    max_iter : int, default=200
        Most optimizer iterations (full-batch steps, or epochs when ``batch_size`` is set).
    tol : float, default=1e-6
        Convergence tolerance, see Notes.
    n_iter_no_change : int, default=10
        Iterations without an improvement of ``tol`` after which the fit stops.
    batch_size : int, default=None
        ``None`` for full-batch steps; an int for shuffled mini-batches of that many rows.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when their R^2 stops improving and
        keep the best parameters.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping.
    conditioning : bool, default=True
        Optimize in the whitened parametrization. ``False`` optimizes the raw coefficients of
        the raw monomials directly, as a hand-written torch loop would (for comparison).
    dtype : {'float64', 'float32'}, default='float64'
        Precision of the fit's computation (predictions are always computed in float64).
        float64 reaches the least-squares optimum to about 1e-12 relative. float32 is faster
        on GPUs; with centred terms (the default: ``fit_intercept=True`` and a lowest degree of
        at most 1) coefficients agree with float64 to about 1e-5, without centring the terms
        are far more collinear in float32 and can lose several more digits.
    device : str, default='cpu'
        Where to compute: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (the best available).
    warm_start : bool, default=False
        Start from the previous solution (and keep the previous input scaling) when refitting.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of mini-batches and the validation split (a local generator; the
        global torch seed is never touched).
    verbose : int, default=0
        0 is silent, 1 prints progress every 10 iterations, 2 also shows a tqdm bar.

    Attributes
    ----------
    coef_ : ndarray of shape (n_terms,) or (n_targets, n_terms)
        Coefficients of the raw monomials listed in ``powers_``.
    intercept_ : float or ndarray of shape (n_targets,)
        Constant term (0.0 when ``fit_intercept=False``).
    powers_ : ndarray of shape (n_terms, `n_features_in_`)
        Exponent of each input feature in each term.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X had string column names.
    n_iter_ : int
        Iterations run by the last call to ``fit`` or ``partial_fit``.
    loss_curve_ : list of float
        Objective (loss plus penalty, in the units of ``y``) at each iteration.
    best_loss_ : float
        Smallest objective reached.
    validation_scores_ : list of float or None
        Validation R^2 per iteration when ``early_stopping=True``.
    best_validation_score_ : float or None
        Best validation R^2 when ``early_stopping=True``.
    device_ : str
        The device the fit ran on.

    See Also
    --------
    sklearn.preprocessing.PolynomialFeatures : The same terms as a transformer.
    sklearn.linear_model.Ridge : Closed-form least squares with an L2 penalty.

    Notes
    -----
    The optimizer sees parameters ``V`` with ``y_hat = y_offset + y_scale * D(z) @ M @ V``:
    the inputs are mapped into ``[-1, 1]``, ``D`` holds the monomials of the mapped inputs and a
    constant column, and ``M`` whitens ``D`` using the triangular factor of a QR decomposition
    accumulated over row chunks. For the squared error the objective is then an exact quadratic
    with identity Hessian, evaluated from those sufficient statistics without touching the rows
    again, so each step costs ``O(n_terms**2)``.

    The fit has converged when the largest absolute gradient of the normalized objective (each
    output's objective divided by that of its constant model) falls below ``tol``, or when the
    objective improves by less than ``tol`` for ``n_iter_no_change`` iterations while staying
    flat within ``tol`` (non-smooth losses); with mini-batches or early stopping only the
    improvement test applies (on the epoch loss or the validation score).
    Reaching ``max_iter`` first gives a ``ConvergenceWarning``. A loss that becomes non-finite
    raises :class:`autopoly.DivergenceError` and leaves any earlier fitted state untouched.

    Examples
    --------
    >>> import numpy as np
    >>> from autopoly import TorchPolyRegressor
    >>> x = np.linspace(-3, 3, 20).reshape(-1, 1)
    >>> y = x.ravel() ** 2 + 2 * x.ravel() + 3
    >>> model = TorchPolyRegressor(degree=2).fit(x, y)
    >>> np.round(model.coef_, 6), round(float(model.intercept_), 6)
    (array([2., 1.]), 3.0)
    """

    _parameter_constraints = {
        "degree": [Interval(Integral, 0, None, closed="left"), tuple],
        "interaction_only": ["boolean"],
        "fit_intercept": ["boolean"],
        "loss": [StrOptions(set(LOSSES)), callable],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "optimizer": [str, type],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer_kwargs": [dict, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "conditioning": ["boolean"],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str, torch.device],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        degree=2,
        *,
        interaction_only=False,
        fit_intercept=True,
        loss="squared_error",
        epsilon=1.0,
        alpha=0.0,
        l1_ratio=0.0,
        optimizer="lbfgs",
        lr=1.0,
        optimizer_kwargs=None,
        max_iter=200,
        tol=1e-6,
        n_iter_no_change=10,
        batch_size=None,
        early_stopping=False,
        validation_fraction=0.1,
        conditioning=True,
        dtype="float64",
        device="cpu",
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.degree = degree
        self.interaction_only = interaction_only
        self.fit_intercept = fit_intercept
        self.loss = loss
        self.epsilon = epsilon
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.optimizer = optimizer
        self.lr = lr
        self.optimizer_kwargs = optimizer_kwargs
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.conditioning = conditioning
        self.dtype = dtype
        self.device = device
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- validation helpers

    def _degree_range(self):
        degree = self.degree
        if isinstance(degree, tuple):
            if (
                len(degree) != 2
                or not all(isinstance(d, Integral) and not isinstance(d, bool) for d in degree)
                or not 0 <= degree[0] <= degree[1]
            ):
                raise ValueError(
                    "degree=(min_degree, max_degree) must be two integers with "
                    f"0 <= min_degree <= max_degree; got degree={degree!r}."
                )
            lo, hi = int(degree[0]), int(degree[1])
        else:
            lo, hi = 0, int(degree)
        if hi == 0 and not self.fit_intercept:
            raise ValueError(
                f"degree={degree!r} with fit_intercept=False leaves no term to fit; "
                "use degree >= 1 or fit_intercept=True."
            )
        return lo, hi

    def _threads(self, shape):
        """One torch thread for small problems (and on thread pools); all of them otherwise.

        Below ~2 million design entries, starting and synchronizing a team of threads costs
        more than it saves, and far more when the cores are shared with other processes.
        """
        lo, hi = self._degree_range()
        size = shape[0] * (n_terms(shape[1], lo, hi, self.interaction_only) + 1)
        return task_threads(in_pool_thread() or size <= SMALL_PROBLEM)

    def _check_params(self):
        """Checks that need no data, done before the data are read."""
        self._degree_range()
        resolve_optimizer(self.optimizer)
        resolve_loss(self.loss, self.epsilon)

    def _check_size(self, n_features, n_outputs, device):
        """Refuse, before allocating, a configuration whose statistics cannot fit in memory."""
        lo, hi = self._degree_range()
        terms = n_terms(n_features, lo, hi, self.interaction_only)
        if terms == 0 and not self.fit_intercept:
            raise ValueError(
                f"degree={self.degree!r} with interaction_only={self.interaction_only} on "
                f"{n_features} feature(s) gives no terms, and fit_intercept=False leaves no term "
                "to fit; use a lower min_degree, interaction_only=False or fit_intercept=True."
            )
        itemsize = torch.empty((), dtype=_DTYPES[self.dtype]).element_size()
        cols = terms + 1 + n_outputs
        # The triangular factor, its SVD and the basis change each hold a cols x cols matrix.
        needed = 4 * cols * cols * max(itemsize, 8) + 2 * cols * itemsize * 1024
        available = available_memory(device)
        if needed > available:
            raise MemoryError(
                f"degree={self.degree!r} on {n_features} features gives {terms} terms; fitting "
                f"needs about {needed / 2**30:.1f} GiB for its statistics but {device} has "
                f"{available / 2**30:.1f} GiB available. Lower degree, use interaction_only=True "
                "or select fewer features."
            )
        return terms

    # ------------------------------------------------------------------ fitting machinery

    def _scaling(self, X, y, sample_weight):
        """Input and target offsets/scales from in-memory data (see ``_conditioning``)."""
        if not self.conditioning:
            return {
                "x_offset": np.zeros(X.shape[1]), "x_scale": np.ones(X.shape[1]),
                "y_offset": np.zeros(y.shape[1]), "y_scale": np.ones(y.shape[1]),
            }
        # Centring keeps the raw basis only when every lower-degree term exists.
        centre = self.fit_intercept and self._degree_range()[0] <= 1
        # Zero-weight rows must not change the basis: they are as good as absent.
        x_offset, x_scale = input_scaling(X[sample_weight > 0], centre)
        y_offset, y_scale = target_scaling(y, sample_weight, self.fit_intercept)
        return {"x_offset": x_offset, "x_scale": x_scale, "y_offset": y_offset, "y_scale": y_scale}

    def _setup(self, n_features, n_outputs, scaling):
        """Everything fixed before the statistics: terms, device, dtype, scalings as tensors."""
        lo, hi = self._degree_range()
        device = resolve_device(self.device)
        self._check_size(n_features, n_outputs, device)
        dtype = _DTYPES[self.dtype]
        if device.type == "mps" and dtype == torch.float64:
            raise ValueError("device='mps' does not support float64; pass dtype='float32'.")
        setup = {
            "device": device,
            "dtype": dtype,
            "intercept": self.fit_intercept,
            "powers": monomial_powers(n_features, lo, hi, self.interaction_only),
            "expansion": expansion(n_features, lo, hi, self.interaction_only),
            **scaling,
        }
        for key in ("x_offset", "x_scale", "y_offset", "y_scale"):
            setup[key + "_t"] = torch.as_tensor(scaling[key], dtype=dtype, device=device)
        setup["basis_change"] = basis_change(
            setup["powers"], scaling["x_offset"], scaling["x_scale"], self.fit_intercept
        )
        return setup

    def _whitening(self, qr, weight_sum, setup):
        n_design = setup["powers"].shape[0] + int(self.fit_intercept)
        R = qr.square(n_design + setup["y_offset"].shape[0]) / math.sqrt(weight_sum)
        if not self.conditioning:
            return Whitening.identity(R, n_design)
        penalty_gram = None
        if self.alpha > 0 and self.l1_ratio < 1:
            # The L2 penalty's Hessian in the design coefficients (targets in units of t).
            T = self._terms_map(setup)
            penalty_gram = self.alpha * (1 - self.l1_ratio) / weight_sum * (T.T @ T)
        return Whitening(R, n_design, penalty_gram)

    def _terms_map(self, setup):
        """Design coefficients -> raw coefficients of the terms (intercept row dropped)."""
        return torch.as_tensor(
            setup["basis_change"][int(self.fit_intercept) :],
            dtype=setup["dtype"], device=setup["device"],
        )

    def _penalty(self, whitening, setup, weight_sum, l2=True):
        coef_map = None
        if self.alpha > 0:
            coef_map = self._terms_map(setup) @ whitening.M
        return _Penalty(
            self.alpha, self.l1_ratio, coef_map, setup["y_scale_t"], weight_sum, l2=l2
        )

    def _row_objective(self, loss_fn, X, y, sample_weight, setup, whitening, penalty):
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
        y_t = tensor(y, setup)
        w_t = tensor(sample_weight, setup)
        return RowObjective(
            loss_fn, whitened_rows, y_t, w_t, setup["y_offset_t"], setup["y_scale_t"], penalty,
            (rank, y.shape[1]), chunks, builtin=not callable(self.loss),
            squared=self.loss == "squared_error",
        )

    def _initial_params(self, whitening, setup, n_outputs, warm):
        V = torch.zeros((whitening.rank, n_outputs), dtype=setup["dtype"], device=setup["device"])
        if warm and hasattr(self, "_theta") and self._theta.shape[1] == n_outputs:
            theta_t = (self._theta - _intercept_row(setup["y_offset"], self.fit_intercept, self._theta.shape[0])) / setup["y_scale"]
            V = whitening.to_params(torch.as_tensor(theta_t, dtype=setup["dtype"], device=setup["device"]))
        return V.requires_grad_(True)

    # ------------------------------------------------------------------------- public API

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the polynomial to X, y with the optimizer loop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; the loss is their weighted mean.

        Returns
        -------
        self : TorchPolyRegressor
            The fitted estimator.
        """
        with restore_on_error(self):
            if _dask.is_dask_collection(X):
                _dask.fit(self, X, y, sample_weight)
                return self
            self._check_params()
            warm = self.warm_start and hasattr(self, "_theta")
            X, y, sample_weight = fit_data(self, X, y, sample_weight, reset=not warm)
            y2 = self._check_outputs(y, reset=not warm)
            scaling = self._partial["scaling"] if warm else self._scaling(X, y2, sample_weight)
            with self._threads(X.shape):
                self._fit_arrays(X, y2, sample_weight, scaling)
        return self

    def _fit_arrays(self, X, y, sample_weight, scaling):
        """The in-memory (NumPy) fit: one chunked pass for the statistics, then the loop."""
        loss_name, loss_fn = resolve_loss(self.loss, self.epsilon)
        setup = self._setup(X.shape[1], y.shape[1], scaling)
        generator = self._generator()
        make_validation = None
        if self.early_stopping:
            n_val = max(1, int(round(self.validation_fraction * X.shape[0])))
            if X.shape[0] - n_val < 1:
                raise ValueError(
                    f"early_stopping=True needs at least 2 samples to hold out validation rows; "
                    f"got {X.shape[0]} sample{'s' if X.shape[0] != 1 else ''}. Pass more rows or "
                    "set early_stopping=False."
                )
            perm = torch.randperm(X.shape[0], generator=generator).numpy()
            val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            X_val, y_val, w_val = X[val], y[val], sample_weight[val]
            X, y, sample_weight = X[tr], y[tr], sample_weight[tr]

            def make_validation(whitening):
                return self._validation_scorer(X_val, y_val, w_val, setup, whitening)

        make_rows = None
        if not self._stats_mode(loss_name):

            def make_rows(whitening, penalty):
                return self._row_objective(loss_fn, X, y, sample_weight, setup, whitening, penalty)

        # Large problems take the faster Gram route when it is accurate; small ones need no
        # speed-up and keep every digit of the QR route.
        n_design = setup["powers"].shape[0] + int(self.fit_intercept)
        large = X.shape[0] * n_design > SMALL_PROBLEM
        qr = accumulate(X, y, sample_weight, setup, gram_first=large)
        self._solve(
            qr.R, float(sample_weight.sum()), setup, make_rows=make_rows,
            make_validation=make_validation, n_rows=X.shape[0], generator=generator,
        )

    def _stats_mode(self, loss_name):
        return loss_name == "squared_error" and self.batch_size is None and self.conditioning

    def _generator(self):
        rng = check_random_state(self.random_state)
        return torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))

    def _solve(
        self, R_aug, weight_sum, setup, *, make_rows=None, make_validation=None, n_rows=None,
        generator=None, max_iter=None, optimizer_state=None, warn=True, warm=None,
        keep_best=True,
    ):
        """Whiten, run the optimizer loop and publish the result.

        ``R_aug`` is the triangular factor of ``sqrt(w) * [D, t]`` summed over all rows (from
        :meth:`_accumulate`, a Dask reduction, or earlier ``partial_fit`` calls). The squared
        error is minimized from it directly; ``make_rows(whitening, penalty)`` supplies a
        row-wise objective for other losses and mini-batches.
        """
        qr = ChunkedQR()
        qr.R = R_aug
        whitening = self._whitening(qr, weight_sum, setup)
        if make_rows is None:
            # The whitened quadratic already holds the L2 part of the penalty.
            penalty = self._penalty(whitening, setup, weight_sum, l2=False)
            objective = StatsObjective(whitening, setup["y_scale_t"], penalty)
        else:
            objective = make_rows(whitening, self._penalty(whitening, setup, weight_sum))
        validation = make_validation(whitening) if make_validation is not None else None
        warm = self.warm_start if warm is None else warm
        V = self._initial_params(whitening, setup, setup["y_offset"].shape[0], warm)
        optimizer_class = resolve_optimizer(self.optimizer)
        optimizer = make_optimizer(optimizer_class, [V], self.lr, self.optimizer_kwargs)
        if optimizer_state is not None:
            optimizer.load_state_dict(state_to_torch(optimizer_state, setup["device"]))
        result = train(
            V, objective, optimizer, lr=self.lr, max_iter=max_iter or self.max_iter,
            tol=self.tol, n_iter_no_change=self.n_iter_no_change,
            batch_size=None if make_rows is None else self.batch_size, n_rows=n_rows,
            generator=generator, validation=validation, verbose=self.verbose,
            keep_best=keep_best,
        )
        self._store(result, whitening, setup)
        self._partial = {
            "R": R_aug.detach().cpu().numpy(),
            "weight_sum": weight_sum,
            "scaling": {k: setup[k] for k in ("x_offset", "x_scale", "y_offset", "y_scale")},
            # Only a row-wise partial_fit resumes the optimizer; the quadratic restarts it.
            "optimizer_state": None if make_rows is None else state_to_numpy(optimizer.state_dict()),
        }
        if warn and not result.converged:
            warnings.warn(
                f"TorchPolyRegressor stopped at max_iter={self.max_iter} before converging "
                f"(tol={self.tol:g}, optimizer={optimizer_class.__name__}, lr={self.lr:g}). "
                "Increase max_iter, tune lr, or use the default optimizer='lbfgs'.",
                ConvergenceWarning,
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one more batch of rows.

        For the squared error on full batches (the default), the batch is added to the exact
        sufficient statistics of every row seen so far and the optimizer is run to convergence
        from the current coefficients: after ``partial_fit`` over all chunks of a dataset the
        model equals ``fit`` on the whole of it. For other losses or with ``batch_size``, it
        takes one epoch of optimizer steps over the batch (mini-batches of ``batch_size`` rows,
        or one full-batch step), keeping the optimizer's state between calls. The input scaling
        and, for those losses, the whitening are fixed by the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's rows.

        Returns
        -------
        self : TorchPolyRegressor
            The updated estimator.
        """
        with restore_on_error(self):
            self._check_params()
            first = not hasattr(self, "_partial")
            X, y, sample_weight = fit_data(self, X, y, sample_weight, reset=first)
            y2 = self._check_outputs(y, reset=first)
            with self._threads(X.shape):
                self._partial_fit_arrays(X, y2, sample_weight, first)
        return self

    def _partial_fit_arrays(self, X, y2, sample_weight, first):
        """partial_fit on validated arrays (see :meth:`partial_fit` for the two behaviours)."""
        state = None if first else self._partial
        if first:
            state = {"R": None, "weight_sum": 0.0, "scaling": self._scaling(X, y2, sample_weight)}
        loss_name, loss_fn = resolve_loss(self.loss, self.epsilon)
        setup = self._setup(X.shape[1], y2.shape[1], state["scaling"])
        qr = ChunkedQR()
        if self._stats_mode(loss_name) or first:
            if state["R"] is not None:
                qr.R = torch.as_tensor(state["R"], dtype=setup["dtype"], device=setup["device"])
            qr = accumulate(X, y2, sample_weight, setup, qr)
            weight_sum = state["weight_sum"] + float(sample_weight.sum())
        else:
            qr.R = torch.as_tensor(state["R"], dtype=setup["dtype"], device=setup["device"])
            weight_sum = state["weight_sum"]
        if self._stats_mode(loss_name):
            self._solve(qr.R, weight_sum, setup, warm=True)
            return

        def make_rows(whitening, penalty):
            return self._row_objective(loss_fn, X, y2, sample_weight, setup, whitening, penalty)

        self._solve(
            qr.R, weight_sum, setup, make_rows=make_rows, n_rows=X.shape[0],
            generator=self._generator(), max_iter=1, warn=False, warm=True, keep_best=False,
            optimizer_state=None if first else state.get("optimizer_state"),
        )

    def _check_outputs(self, y, reset):
        """2-D targets; on an update, the number of outputs must match the fitted one."""
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if not reset and hasattr(self, "_theta") and y2.shape[1] != self._theta.shape[1]:
            raise ValueError(
                f"y has {y2.shape[1]} output(s) but the estimator was fitted with "
                f"{self._theta.shape[1]}; pass y with {self._theta.shape[1]} column(s) or refit."
            )
        if reset:
            self._y_ndim = y.ndim
        return y2

    def _validation_scorer(self, X, y, w, setup, whitening):
        B = design(X, setup) @ whitening.M
        y_t = tensor(y, setup)
        w_t = tensor(w, setup)
        w_t = w_t / w_t.sum()
        var = (w_t @ (y_t - w_t @ y_t) ** 2).clamp_min(torch.finfo(setup["dtype"]).tiny)

        def score(V):
            with torch.no_grad():
                pred = setup["y_offset_t"] + setup["y_scale_t"] * (B @ V)
                return float((1 - (w_t @ (y_t - pred) ** 2) / var).mean())

        return score

    def _store(self, result, whitening, setup):
        """Publish the fitted state as CPU NumPy arrays (only after the fit succeeded)."""
        V = result.V.detach()
        theta_t = (whitening.M @ V).cpu().to(torch.float64).numpy()
        theta = theta_t * setup["y_scale"] + _intercept_row(
            setup["y_offset"], self.fit_intercept, theta_t.shape[0]
        )
        raw = setup["basis_change"] @ theta
        single = self._y_ndim == 1
        if self.fit_intercept:
            intercept, coef = raw[0], raw[1:]
        else:
            intercept, coef = np.zeros(raw.shape[1]), raw
        self.coef_ = coef[:, 0].copy() if single else coef.T.copy()
        self.intercept_ = float(intercept[0]) if single else intercept.copy()
        self.powers_ = setup["powers"]
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve
        self.best_loss_ = result.best_loss
        self.validation_scores_ = result.validation_scores if self.early_stopping else None
        self.best_validation_score_ = (
            result.best_validation_score if self.early_stopping else None
        )
        self.device_ = str(setup["device"])
        self._terms = (*self._degree_range(), self.interaction_only, self.fit_intercept)
        self._theta = theta
        self._x_offset, self._x_scale = setup["x_offset"], setup["x_scale"]
        self._y_offset, self._y_scale = setup["y_offset"], setup["y_scale"]
        self._autopoly_version = __version__

    def predict(self, X):
        """Predict with the fitted polynomial.

        Computes on the fitted device when it exists on this machine, else on the CPU.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions, float64.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.predict(self, X)
        X = predict_data(self, X)
        with task_threads(in_pool_thread() or X.size * self._theta.shape[0] <= SMALL_PROBLEM):
            return self._predict_arrays(X)

    def _predict_arrays(self, X):
        device = prediction_device(self.device_)
        # Predictions are cheap: compute them in float64 unless the device lacks it.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        # The fitted terms, not the current parameters: a failed refit may have changed those.
        lo, hi, interaction_only, intercept = self._terms
        setup = {
            "device": device,
            "dtype": dtype,
            "intercept": intercept,
            "expansion": expansion(X.shape[1], lo, hi, interaction_only),
            "x_offset_t": torch.as_tensor(self._x_offset, dtype=dtype, device=device),
            "x_scale_t": torch.as_tensor(self._x_scale, dtype=dtype, device=device),
        }
        theta = torch.as_tensor(self._theta, dtype=dtype, device=device)
        itemsize = torch.empty((), dtype=dtype).element_size()
        out = np.empty((X.shape[0], theta.shape[1]))
        with torch.no_grad():
            for rows in chunk_slices(X.shape[0], theta.shape[0], itemsize):
                out[rows] = (design(X[rows], setup) @ theta).cpu().to(torch.float64).numpy()
        return out[:, 0] if self._y_ndim == 1 else out

    def get_feature_names_out(self, input_features=None):
        """Get the names of the terms, as :class:`~sklearn.preprocessing.PolynomialFeatures` writes them.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input names; ``feature_names_in_`` or ``x0, x1, ...`` when omitted.

        Returns
        -------
        feature_names_out : ndarray of str
            One name per term, e.g. ``'x0^2 x1'``.
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return term_names(self.powers_, names)

    def __setstate__(self, state):
        check_state_version(state)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _intercept_row(y_offset, fit_intercept, n_rows):
    shift = np.zeros((n_rows, len(y_offset)))
    if fit_intercept:
        shift[0] = y_offset
    return shift
