"""TorchPolyRegressor: polynomial regression fitted by a torch optimizer, as a sklearn estimator."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from . import _dask
from . import _fitting as fitting
from ._conditioning import ChunkedQR
from ._data_pass import accumulate
from ._features import degree_range, n_terms, term_names
from ._losses import LOSSES, resolve_loss
from ._optim import is_lbfgs, resolve_optimizer, state_to_numpy
from ._persistence import check_state_version, restore_on_error
from ._threads import in_pool_thread, task_threads
from ._validation import fit_data, predict_data
from ._version import __version__

# Problems with fewer design entries than this run on one torch thread.
SMALL_PROBLEM = 2**21


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
        Learning rate given to the optimizer. The default suits L-BFGS, whose line search
        scales its steps. In the whitened parametrization the squared error's Hessian is twice
        the identity (per output, relative to the constant model), so 'sgd' converges for
        ``lr < 1`` (``lr=0.5`` is a Newton step) and oscillates at 1; Adam-type optimizers
        take steps of about ``lr`` per coefficient, so 0.01 to 0.1 is a good start.
    optimizer_kwargs : dict, default=None
        Further keyword arguments for the optimizer (e.g. ``{'momentum': 0.9}``).
    max_iter : int, default=200
        Most optimizer iterations (full-batch steps, or epochs when ``batch_size`` is set).
    tol : float, default=1e-6
        Convergence tolerance, see Notes.
    n_iter_no_change : int, default=10
        Iterations without an improvement of ``tol`` after which the fit stops.
    batch_size : int, default=None
        ``None`` for full-batch steps; an int for shuffled mini-batches of that many rows
        (``fit`` takes full batches when it is at least the number of training rows).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when their R^2 stops improving and
        keep the best parameters. Applies to ``fit`` only (``partial_fit`` ignores it, and a
        later ``partial_fit`` continues from statistics that leave the held-out rows out).
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
        Where to compute: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (the best available that
        supports ``dtype``: CUDA, then MPS for float32 only, then the CPU).
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
        Objective (loss plus penalty, in the loss's units: ``y**2`` for the squared error) at
        each iteration of the last call to ``fit`` or ``partial_fit``, evaluated at the start of
        the iteration's step; not accumulated across calls, unlike
        :class:`~sklearn.neural_network.MLPRegressor`'s.
    best_loss_ : float
        Smallest objective reached by the last call.
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
    with Hessian ``2 * I``, evaluated from those sufficient statistics without touching the rows
    again, so each step costs ``O(n_terms**2)``.

    The fit has converged when the largest absolute gradient of the normalized objective (each
    output's objective divided by that of its constant model) falls below ``tol``, or when the
    objective improves by less than ``tol`` for ``n_iter_no_change`` iterations while staying
    flat within ``tol`` (non-smooth losses); with mini-batches or early stopping only the
    improvement test applies (on the epoch loss or the validation score). For the squared
    error without an L1 penalty, a stall whose largest gradient is still above ``sqrt(tol)`` and 1% of the first
    one (an optimizer oscillating across the optimum, ``lr`` too large) stops the fit unconverged.
    Stopping unconverged, or reaching ``max_iter`` first, gives a ``ConvergenceWarning``. A loss that becomes non-finite
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
        "dtype": [StrOptions(set(fitting.DTYPES))],
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

    # ----------------------------------------------------------------------------- helpers

    def _degree_range(self):
        return degree_range(self.degree, self.fit_intercept)

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

    def _check_continuation(self, how):
        """A warm start or a streamed update continues the fitted terms: they must not change."""
        def degree(lo, hi):
            return hi if lo == 0 else (lo, hi)

        fitted = {"degree": degree(*self._terms[:2]), "interaction_only": self._terms[2],
                  "fit_intercept": self._terms[3],
                  # Models saved before this attribute existed were all conditioned alike.
                  "conditioning": getattr(self, "_conditioned", self.conditioning)}
        now = {"degree": degree(*self._degree_range()), "interaction_only": self.interaction_only,
               "fit_intercept": self.fit_intercept, "conditioning": self.conditioning}
        changed = [name for name in now if now[name] != fitted[name]]
        if changed:
            listed = ", ".join(f"{name} (fitted with {fitted[name]!r}, now {now[name]!r})"
                               for name in changed)
            fix = (
                "Set warm_start=False, or use a fresh estimator," if how == "warm_start=True"
                else "Start a new stream on a fresh estimator (sklearn.base.clone)"
            )
            raise ValueError(
                f"{how} continues the previous fit, whose terms cannot change, but {listed} "
                f"changed. {fix} to fit the new terms."
            )

    def _check_outputs(self, y, reset, how="warm_start=True"):
        """2-D targets; on an update (``how``), the number of outputs must match the fitted one."""
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if not reset and hasattr(self, "_theta") and y2.shape[1] != self._theta.shape[1]:
            fix = (
                "set warm_start=False" if how == "warm_start=True"
                else "start a new stream on a fresh estimator (sklearn.base.clone)"
            )
            raise ValueError(
                f"y has {y2.shape[1]} output(s) but the estimator was fitted with "
                f"{self._theta.shape[1]}, and {how} continues that fit; pass y with "
                f"{self._theta.shape[1]} column(s), or {fix} to fit {y2.shape[1]} outputs."
            )
        # Predictions take the shape of the last y fitted (1-D or 2-D).
        self._y_ndim = y.ndim
        return y2

    def _generator(self):
        rng = check_random_state(self.random_state)
        return torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))

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
            if warm:
                self._check_continuation("warm_start=True")
            X, y, sample_weight = fit_data(self, X, y, sample_weight, reset=not warm)
            y2 = self._check_outputs(y, reset=not warm)
            scaling = (
                self._partial["scaling"] if warm else fitting.scaling(self, X, y2, sample_weight)
            )
            with self._threads(X.shape):
                self._fit_arrays(X, y2, sample_weight, scaling)
        return self

    def _fit_arrays(self, X, y, sample_weight, scaling):
        """The in-memory (NumPy) fit: one chunked pass for the statistics, then the loop."""
        loss_name, loss_fn = resolve_loss(self.loss, self.epsilon)
        setup = fitting.make_setup(self, X.shape[1], y.shape[1], scaling)
        generator = self._generator()
        make_validation = make_rows = None
        if self.early_stopping:
            (X, y, sample_weight), held_out = fitting.validation_split(
                X, y, sample_weight, self.validation_fraction, generator
            )
            training = (X, y, sample_weight)

            def make_validation(whitening):
                return fitting.validation_scorer(held_out, training, setup, whitening)

        if not fitting.stats_mode(self, loss_name, X.shape[0]):

            def make_rows(whitening, penalty):
                return fitting.row_objective(
                    self, loss_fn, X, y, sample_weight, setup, whitening, penalty
                )

        # Large problems take the faster Gram route when it is accurate; small ones need no
        # speed-up and keep every digit of the QR route.
        n_design = setup["powers"].shape[0] + int(self.fit_intercept)
        large = X.shape[0] * n_design > SMALL_PROBLEM
        qr = accumulate(X, y, sample_weight, setup, gram_first=large)
        self._solve(
            qr.R, float(sample_weight.sum()), setup, make_rows=make_rows,
            make_validation=make_validation, n_rows=X.shape[0], generator=generator,
        )

    def _solve(self, R_aug, weight_sum, setup, *, make_rows=None, warn=True, warm=None,
               **loop):
        """Run :func:`autopoly._fitting.solve` and publish its result.

        ``loop`` holds the further arguments of the loop (validation, rows, generator, ...).
        """
        warm = self.warm_start if warm is None else warm
        previous = self._theta if warm and hasattr(self, "_theta") else None
        result, theta, optimizer = fitting.solve(
            self, R_aug, weight_sum, setup, make_rows=make_rows, previous_theta=previous, **loop
        )
        self._store(result, theta, setup, validated=loop.get("make_validation") is not None)
        self._partial = {
            "R": R_aug.detach().cpu().numpy(),
            "weight_sum": weight_sum,
            "scaling": {k: setup[k] for k in ("x_offset", "x_scale", "y_offset", "y_scale")},
            # Only a row-wise partial_fit resumes the optimizer; the quadratic restarts it.
            "optimizer_state": None if make_rows is None else state_to_numpy(optimizer.state_dict()),
        }
        if warn and result.stalled_gradient is not None:
            warnings.warn(
                f"TorchPolyRegressor stopped after {result.n_iter} iterations without "
                f"converging: the loss stopped improving while its largest gradient was still "
                f"{result.stalled_gradient:.2g} (tol={self.tol:g}), so "
                f"optimizer={type(optimizer).__name__} with lr={self.lr:g} oscillates across "
                f"the optimum or is stuck. Use a smaller lr (e.g. lr={self.lr / 2:g})"
                + ("." if is_lbfgs(type(optimizer)) else " or the default optimizer='lbfgs'."),
                ConvergenceWarning,
            )
        elif warn and not result.converged:
            warnings.warn(
                f"TorchPolyRegressor stopped at max_iter={self.max_iter} before converging "
                f"(tol={self.tol:g}, optimizer={type(optimizer).__name__}, lr={self.lr:g}). "
                + ("Increase max_iter." if is_lbfgs(type(optimizer))
                   else "Increase max_iter, tune lr, or use the default optimizer='lbfgs'."),
                ConvergenceWarning,
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one more batch of rows.

        For the squared error on full batches with ``conditioning=True`` (the defaults), the
        batch is added to the exact sufficient statistics of every row seen so far and the
        optimizer is run to convergence from the current coefficients: after ``partial_fit``
        over all chunks of a dataset the model equals ``fit`` on the whole of it. For other
        losses, with ``batch_size`` or with ``conditioning=False``, it takes one epoch of
        optimizer steps over the batch (mini-batches of ``batch_size`` rows, or one full-batch
        step), keeping the optimizer's state between calls. The input scaling and, for those
        epochs, the whitening are fixed by the first call; the terms and the kind of update
        cannot change within a stream (a ``ValueError`` says so).

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
            if not first:
                self._check_continuation("partial_fit")
            X, y, sample_weight = fit_data(self, X, y, sample_weight, reset=first)
            y2 = self._check_outputs(y, reset=first, how="partial_fit")
            with self._threads(X.shape):
                self._partial_fit_arrays(X, y2, sample_weight, first)
        return self

    def _partial_fit_arrays(self, X, y2, sample_weight, first):
        """partial_fit on validated arrays (see :meth:`partial_fit` for the two behaviours)."""
        state = None if first else self._partial
        if first:
            state = {
                "R": None, "weight_sum": 0.0,
                "scaling": fitting.scaling(self, X, y2, sample_weight),
            }
        loss_name, loss_fn = resolve_loss(self.loss, self.epsilon)
        setup = fitting.make_setup(self, X.shape[1], y2.shape[1], state["scaling"])
        stats = fitting.stats_mode(self, loss_name)
        # Row-wise calls after the first do not add their rows to R: exact statistics of the
        # whole stream can no longer be had.
        complete = state.get("complete", True)
        if stats and not complete:
            raise ValueError(
                "partial_fit with the squared error on full batches updates exact statistics of "
                "every row seen, but earlier calls in this stream took optimizer epochs (another "
                "loss, or batch_size) without recording their rows. Keep the stream's loss and "
                "batch_size, or start a new stream on a fresh estimator (sklearn.base.clone)."
            )
        qr = ChunkedQR()
        if state["R"] is not None:
            qr.R = torch.as_tensor(state["R"], dtype=setup["dtype"], device=setup["device"])
        weight_sum = state["weight_sum"]
        # Row-wise losses fix the whitening with the first batch's statistics.
        if stats or first:
            qr = accumulate(X, y2, sample_weight, setup, qr)
            weight_sum += float(sample_weight.sum())
        if stats:
            self._solve(qr.R, weight_sum, setup, warm=True)
            return

        # This batch's rows are not in R: check their terms against the fixed scaling here.
        fitting.check_terms_range(self, X, setup)

        def make_rows(whitening, penalty):
            return fitting.row_objective(
                self, loss_fn, X, y2, sample_weight, setup, whitening, penalty
            )

        self._solve(
            qr.R, weight_sum, setup, make_rows=make_rows, n_rows=X.shape[0],
            generator=self._generator(), max_iter=1, warn=False, warm=True, keep_best=False,
            optimizer_state=None if first else state.get("optimizer_state"),
        )
        self._partial["complete"] = complete and first

    def _store(self, result, theta, setup, validated=False):
        """Publish the fitted state as CPU NumPy arrays (only after the fit succeeded)."""
        with np.errstate(over="ignore", invalid="ignore"):
            raw = setup["basis_change"] @ theta
        if not np.isfinite(raw).all():
            raise fitting.raw_basis_overflow(setup, self._degree_range()[1])
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
        self.validation_scores_ = result.validation_scores if validated else None
        self.best_validation_score_ = result.best_validation_score if validated else None
        self.device_ = str(setup["device"])
        self._terms = (*self._degree_range(), self.interaction_only, self.fit_intercept)
        self._conditioned = self.conditioning
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
            Predictions, float64 (computed in float32 on MPS, which lacks float64).
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.predict(self, X)
        X = predict_data(self, X)
        with task_threads(in_pool_thread() or X.size * self._theta.shape[0] <= SMALL_PROBLEM):
            return self._predict_arrays(X)

    def _predict_arrays(self, X):
        # The fitted terms, not the current parameters: a failed refit may have changed those.
        out = fitting.predict(
            X, self._theta, self._terms, self._x_offset, self._x_scale, self.device_
        )
        return out[:, 0] if self._y_ndim == 1 else out

    def to_torch(self, device=None, dtype=None, trainable=False):
        """The fitted polynomial as a ``torch.nn.Module`` that computes what ``predict`` computes.

        Parameters
        ----------
        device : str or torch.device, default=None
            Where the module's buffers live; the CPU when omitted.
        dtype : torch.dtype, default=None
            Its compute dtype; ``torch.float64`` (what ``predict`` uses) when omitted.
        trainable : bool, default=False
            Register the coefficients as parameters (for fine-tuning) instead of buffers.

        Returns
        -------
        module : torch.nn.Module
            Maps a tensor of shape ``(n, n_features_in_)`` to ``(n,)`` or ``(n, n_targets)``.
        """
        check_is_fitted(self)
        from ._module import polynomial_module

        return polynomial_module(
            self._fitted_polynomial(), device=device, dtype=dtype, trainable=trainable
        )

    def _fitted_polynomial(self):
        from ._state import FittedPolynomial, Terms

        return FittedPolynomial(
            terms=Terms(*self._terms), theta=self._theta, x_offset=self._x_offset,
            x_scale=self._x_scale, single_output=self._y_ndim == 1, device=self.device_,
        )

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

