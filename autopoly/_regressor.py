"""TorchPolyRegressor: polynomial regression fitted by a torch optimizer, as a sklearn estimator."""

import contextlib
from functools import lru_cache
from numbers import Integral, Real

import numpy as np
import torch
from sklearn import get_config
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from . import _fitting as fitting
from ._dask_inputs import is_dask_collection
from ._features import term_names
from ._inference import InferenceMixin
from ._losses import HUBER_SCALES, LOSSES
from ._persistence import check_state_version, restore_on_error
from ._scoring import r2_score_tensor
from ._sources import ArraySource
from ._spec import DTYPES, resolve_spec
from ._state import fitted_from_plain, stream_from_plain, to_plain
from ._threads import few_cores_for_torch, in_pool_thread, task_threads
from ._validation import fit_data, predict_data, targets_on
from ._version import __version__

# Problems with at most this many design entries run on one torch thread (the thread policy
# only; the Gram-or-QR route of the statistics has its own threshold,
# autopoly._fitting.GRAM_ROUTE_ENTRIES).
ONE_THREAD_ENTRIES = 2**21
# From this many design columns on, a small problem also runs NumPy's BLAS on one thread (the
# switch costs ~20 us, a few percent of such a fit).
BLAS_LIMIT_TERMS = 64
# Fitted attributes that are arrays (the ones array-API dispatch puts on the input's device).
_ARRAY_ATTRIBUTES = ("coef_", "intercept_", "powers_")


def _autograd_on():
    """The optimizer needs autograd, even when the caller runs under ``torch.no_grad()`` or
    ``torch.inference_mode()`` (e.g. a fit inside a model's evaluation code).
    """
    if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        return contextlib.nullcontext()  # the usual case: nothing to switch
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.enable_grad())
    return stack


@lru_cache(maxsize=None)
def _param_names(cls):
    """``BaseEstimator._get_param_names`` once per class: it reads the signature of
    ``__init__`` (tens of microseconds), and every ``fit``, ``get_params`` and ``clone`` asks.
    """
    return tuple(BaseEstimator._get_param_names.__func__(cls))


def _on_device(array, device):
    """A NumPy attribute as a tensor on ``device`` (float32 where the device lacks float64)."""
    tensor = torch.as_tensor(array)
    if device.type == "mps" and tensor.dtype == torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor.to(device)


class TorchPolyRegressor(InferenceMixin, RegressorMixin, BaseEstimator):
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
    loss : {'squared_error', 'huber', 'absolute_error', 'quantile'} or callable, \
            default='squared_error'
        Data-fit loss. A callable receives ``(y_pred, y_true, sample_weight)`` as torch tensors
        of shapes ``(n, n_outputs)``, ``(n, n_outputs)`` and ``(n,)`` and returns a scalar
        tensor; it should be a weighted mean over samples so that chunked evaluation is exact.
    quantile : float, default=0.5
        The quantile that ``loss='quantile'`` (the pinball loss) predicts, in (0, 1).
    epsilon : float, default=None
        Huber threshold: in the units of ``y`` with ``huber_scale='fixed'`` (None means 1.0),
        in units of the estimated scale ``scale_`` with ``huber_scale='joint'`` (None means
        1.35, :class:`~sklearn.linear_model.HuberRegressor`'s default; at least 1, below which
        the scale collapses to 0 and the loss becomes the absolute error).
    huber_scale : {'fixed', 'joint'}, default='fixed'
        ``'fixed'``: the Huber loss ``r**2 / 2`` within ``epsilon`` of the prediction and
        ``epsilon * (|r| - epsilon / 2)`` beyond, ``epsilon`` in the units of ``y``.
        ``'joint'``: :class:`~sklearn.linear_model.HuberRegressor`'s scale-free loss, with
        the scale estimated jointly with the coefficients (``scale_``): for the same
        ``epsilon`` and ``alpha`` the fit is ``HuberRegressor``'s on the same terms.
    alpha : float, default=0.0
        Penalty strength. The objective is ``loss + alpha / sum(sample_weight) * penalty`` so
        that ``alpha`` means what it means in :class:`sklearn.linear_model.Ridge`.
    l1_ratio : float, default=0.0
        Mix of the penalty: ``(1 - l1_ratio) * ||coef||_2^2 + l1_ratio * ||coef||_1``, on the
        raw-basis coefficients (never the intercept), whatever the internal conditioning.
        With the squared error on full batches an L1 part is solved exactly (an active-set
        method on the fit's statistics, exact zeros); the optimizer is then not used.
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
        Where to compute: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (the input tensor's device
        when X is a torch tensor; otherwise the best available that supports ``dtype``: CUDA,
        then MPS for float32 only, then the CPU). A device other than an input tensor's is
        obeyed: the rows are copied there once, chunk by chunk.
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
        Coefficients of the raw monomials listed in ``powers_``. Array attributes are NumPy
        arrays on the CPU, except after a fit on torch tensors under
        ``sklearn.config_context(array_api_dispatch=True)``, where ``coef_``, ``intercept_``
        and ``powers_`` are tensors on the input's device (scikit-learn's array-API
        convention); a pickle holds NumPy either way.
    intercept_ : float or ndarray of shape (n_targets,)
        Constant term (0.0 when ``fit_intercept=False``).
    powers_ : ndarray of shape (n_terms, `n_features_in_`)
        Exponent of each input feature in each term.
    feature_importances_ : ndarray of shape (`n_features_in_`,)
        Per-input-feature importances summing to 1, for feature selectors (pass
        ``importance_getter="feature_importances_"`` to ``SelectFromModel`` or ``RFE``:
        ``coef_`` is per term).
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
    scale_ : float or ndarray of shape (n_targets,)
        Only with ``loss='huber', huber_scale='joint'``: the scale estimated with the
        coefficients, in the units of ``y`` (``HuberRegressor.scale_``).

    See Also
    --------
    sklearn.preprocessing.PolynomialFeatures : The same terms as a transformer.
    sklearn.linear_model.Ridge : Closed-form least squares with an L2 penalty.
    PolynomialModule : The fitted polynomial as a torch module (:meth:`to_torch`).

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
    error without an L1 penalty, a stall whose largest gradient is still above ``sqrt(tol)``
    and 1% of the first one (an optimizer oscillating across the optimum, ``lr`` too large)
    stops the fit unconverged. Stopping unconverged, or reaching ``max_iter`` first, gives a
    ``ConvergenceWarning``. A loss that becomes non-finite raises
    :class:`autopoly.DivergenceError` and leaves any earlier fitted state untouched.

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
        "quantile": [Interval(Real, 0, 1, closed="neither")],
        "epsilon": [Interval(Real, 0, None, closed="neither"), None],
        "huber_scale": [StrOptions(set(HUBER_SCALES))],
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
        "dtype": [StrOptions(set(DTYPES))],
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
        quantile=0.5,
        epsilon=None,
        huber_scale="fixed",
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
        self.quantile = quantile
        self.epsilon = epsilon
        self.huber_scale = huber_scale
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

    @classmethod
    def _get_param_names(cls):
        return list(_param_names(cls))

    def _threads(self, spec, source):
        """One torch thread for small problems (and on thread pools); all of them otherwise.

        Below ~2 million design entries, starting and synchronizing a team of threads costs
        more than it saves, and far more when the cores are shared with other processes. With
        two threads or fewer, torch works on one at any size (see
        :func:`~autopoly._threads.few_cores_for_torch`); the Gram matrix of CPU rows is then
        NumPy's, whose BLAS keeps its own threads. A small problem with many terms limits
        that BLAS too: its factor's linear algebra is small matrices, where NumPy's BLAS
        threads spin against torch's (a 286-term fit on 350 rows: 58 ms with them, 35 ms on
        one thread).
        """
        n_design = spec.terms.n_terms(source.n_features) + 1
        small = in_pool_thread() or source.n_rows * n_design <= ONE_THREAD_ENTRIES
        return task_threads(
            small or few_cores_for_torch(), blas=small and n_design >= BLAS_LIMIT_TERMS
        )

    def _check_continuation(self, spec, how):
        """A warm start or a streamed update continues the fitted terms: they must not change."""
        terms = self._fitted.terms
        fitted = {
            "degree": terms.degree,
            "interaction_only": terms.interaction_only,
            "fit_intercept": terms.fit_intercept,
            "conditioning": self._stream.conditioned,
        }
        now = {
            "degree": spec.terms.degree,
            "interaction_only": spec.terms.interaction_only,
            "fit_intercept": spec.terms.fit_intercept,
            "conditioning": spec.conditioning,
        }
        changed = [name for name in now if now[name] != fitted[name]]
        if changed:
            listed = ", ".join(
                f"{name} (fitted with {fitted[name]!r}, now {now[name]!r})" for name in changed
            )
            fix = (
                "Set warm_start=False, or use a fresh estimator,"
                if how == "warm_start=True"
                else "Start a new stream on a fresh estimator (sklearn.base.clone)"
            )
            raise ValueError(
                f"{how} continues the previous fit, whose terms cannot change, but {listed} "
                f"changed. {fix} to fit the new terms."
            )

    def _check_outputs(self, n_outputs, reset, how="warm_start=True"):
        """On an update (``how``), the number of outputs must match the fitted one."""
        if reset or not hasattr(self, "_fitted"):
            return
        fitted = self._fitted.n_outputs
        if n_outputs != fitted:
            fix = (
                "set warm_start=False"
                if how == "warm_start=True"
                else "start a new stream on a fresh estimator (sklearn.base.clone)"
            )
            raise ValueError(
                f"y has {n_outputs} output(s) but the estimator was fitted with {fitted}, and "
                f"{how} continues that fit; pass y with {fitted} column(s), or {fix} to fit "
                f"{n_outputs} outputs."
            )

    def _source(self, spec, X, y, sample_weight, reset, stream=False):
        """The rows as a source (see ``_sources``), validated; sets ``n_features_in_``.

        A dask collection passed to ``partial_fit`` (``stream``) is one batch: it is read
        into memory, as scikit-learn's validation reads it.
        """
        if is_dask_collection(X) and not stream:
            from . import _dask  # only for dask collections: the module is not small

            source = _dask.DaskSource(X, y, sample_weight, spec)
            _dask.check_input_features(self, source, reset)
            return source
        X, y, sample_weight = fit_data(self, X, y, sample_weight, reset=reset)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        return ArraySource(X, y2, sample_weight, y.ndim)

    def _publish(self, spec, outcome, source_device=None):
        """Publish the fitted state (only after the fit succeeded).

        Attributes are NumPy arrays on the CPU, except after a fit on torch tensors with
        array-API dispatch on, where the array attributes follow the input's device as
        scikit-learn's array-API estimators do; the private state (and so a pickle) is NumPy
        either way.
        """
        raw, fitted = outcome.raw, outcome.fitted
        if spec.terms.fit_intercept:
            intercept, coef = raw[0], raw[1:]
        else:
            intercept, coef = np.zeros(raw.shape[1]), raw
        single = fitted.single_output
        self.coef_ = coef[:, 0].copy() if single else coef.T.copy()
        self.intercept_ = float(intercept[0]) if single else intercept.copy()
        self.powers_ = outcome.powers
        result = outcome.train
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve
        self.best_loss_ = result.best_loss
        self.validation_scores_ = result.validation_scores if outcome.validated else None
        self.best_validation_score_ = result.best_validation_score if outcome.validated else None
        self.device_ = fitted.device
        if outcome.scale is not None:
            self.scale_ = float(outcome.scale[0]) if single else outcome.scale.copy()
        elif hasattr(self, "scale_"):
            del self.scale_
        self._fitted = fitted
        self._stream = outcome.stream
        # What the inference methods must know of the fit itself, whatever set_params says.
        self._fitted_with = {
            "loss": spec.loss_name,
            "alpha": spec.alpha,
            "conditioning": spec.conditioning,
            "early_stopping": spec.early_stopping,
            "batch_size": spec.batch_size,
        }
        self._autopoly_version = __version__
        if source_device is not None and get_config()["array_api_dispatch"]:
            # sklearn's array-API convention: attributes in the input's namespace and device.
            for key in _ARRAY_ATTRIBUTES:
                value = getattr(self, key)
                if isinstance(value, np.ndarray):
                    setattr(self, key, _on_device(value, source_device))

    # ------------------------------------------------------------------------- public API

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the polynomial to X, y with the optimizer loop.

        Parameters
        ----------
        X : array-like, torch.Tensor or dask collection of shape (n_samples, n_features)
            Training inputs. A tensor's rows stay on its device (see ``device``).
        y : array-like or torch.Tensor of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
            Non-negative weights; the loss is their weighted mean.

        Returns
        -------
        self : TorchPolyRegressor
            The fitted estimator.
        """
        with restore_on_error(self):
            spec = resolve_spec(self)
            warm = self.warm_start and hasattr(self, "_fitted")
            if warm:
                self._check_continuation(spec, "warm_start=True")
            with task_threads(few_cores_for_torch()):  # a tensor's checks are torch ops
                source = self._source(spec, X, y, sample_weight, reset=not warm)
            self._check_outputs(source.n_outputs, reset=not warm)
            with self._threads(spec, source), _autograd_on():
                outcome = fitting.fit(
                    spec, source, (self._stream, self._fitted.theta) if warm else None
                )
            fitting.warn_unconverged(spec, outcome, stacklevel=4)
            self._publish(spec, outcome, source.device)
        return self

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
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            A batch of inputs.
        y : array-like or torch.Tensor of shape (n_samples,) or (n_samples, n_targets)
            Its targets.
        sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
            Non-negative weights of the batch's rows.

        Returns
        -------
        self : TorchPolyRegressor
            The updated estimator.
        """
        with restore_on_error(self):
            spec = resolve_spec(self)
            first = not hasattr(self, "_stream")
            if not first:
                self._check_continuation(spec, "partial_fit")
            with task_threads(few_cores_for_torch()):
                source = self._source(spec, X, y, sample_weight, reset=first, stream=True)
            self._check_outputs(source.n_outputs, reset=first, how="partial_fit")
            with self._threads(spec, source), _autograd_on():
                outcome = fitting.partial_fit(
                    spec,
                    source,
                    None if first else self._stream,
                    None if first else self._fitted.theta,
                )
            if spec.stats_mode():
                fitting.warn_unconverged(spec, outcome, stacklevel=4)
            self._publish(spec, outcome, source.device)
        return self

    def predict(self, X):
        """Predict with the fitted polynomial.

        NumPy (and other array-like) inputs are computed on the fitted device when it exists on
        this machine, else on the CPU. A torch tensor is computed on its own device: with
        ``sklearn.config_context(array_api_dispatch=True)`` the predictions are a tensor there,
        otherwise a NumPy array (as every scikit-learn estimator returns).

        Parameters
        ----------
        X : array-like, torch.Tensor or dask collection of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray or torch.Tensor of shape (n_samples,) or (n_samples, n_targets)
            Predictions, float64 (computed in float32 on MPS, which lacks float64).
        """
        check_is_fitted(self)
        if is_dask_collection(X):
            from . import _dask

            return _dask.predict(self, X)
        X = predict_data(self, X)
        size = X.shape[0] * X.shape[1] * self._fitted.theta.shape[0]
        with task_threads(in_pool_thread() or size <= ONE_THREAD_ENTRIES or few_cores_for_torch()):
            # The fitted terms, not the current parameters: a failed refit may have changed those.
            out = fitting.predict(self._fitted, X)
        if isinstance(out, torch.Tensor) and not get_config()["array_api_dispatch"]:
            return out.cpu().numpy()
        return out

    def score(self, X, y, sample_weight=None):
        """R^2 of the predictions, as :meth:`sklearn.base.RegressorMixin.score` computes it.

        For torch tensors the score is computed on their device (only the number comes back).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Inputs.
        y : array-like or torch.Tensor of shape (n_samples,) or (n_samples, n_targets)
            True targets.
        sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        score : float
            The (uniformly averaged over outputs) coefficient of determination.
        """
        if not any(isinstance(a, torch.Tensor) for a in (X, y, sample_weight)):
            return super().score(X, y, sample_weight)
        check_is_fitted(self)
        X = predict_data(self, X)
        device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
        y, sample_weight = targets_on(device, X.shape[0], y, sample_weight, non_negative=False)
        pred = torch.as_tensor(fitting.predict(self._fitted, X, device=device), device=device)
        return r2_score_tensor(y, pred, sample_weight)

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

        return polynomial_module(self._fitted, device=device, dtype=dtype, trainable=trainable)

    @property
    def feature_importances_(self):
        """Importance of each input feature, shape (`n_features_in_`,), summing to 1.

        ``coef_`` has one entry per polynomial term, not per input feature, so selectors
        that read it (:class:`~sklearn.feature_selection.SelectFromModel`,
        :class:`~sklearn.feature_selection.RFE`) need ``importance_getter=
        "feature_importances_"``. Each term's importance is the size of its coefficient on
        the inputs scaled to ``[-1, 1]`` (how far the term moves the prediction over the
        data's range; summed over outputs), shared among the features in it by their
        exponents; the intercept counts for none.
        """
        check_is_fitted(self)
        fitted = self._fitted
        first = int(fitted.terms.fit_intercept)
        size = np.abs(np.asarray(fitted.theta)[first:]).sum(axis=1)  # (n_terms,)
        powers = np.asarray(fitted.terms.powers(fitted.n_features), dtype=float)
        degree = powers.sum(axis=1, keepdims=True)
        share = np.divide(powers, degree, out=np.zeros_like(powers), where=degree > 0)
        importance = size @ share
        total = importance.sum()
        return importance / total if total > 0 else importance

    def get_feature_names_out(self, input_features=None):
        """Get the names of the terms, as `~sklearn.preprocessing.PolynomialFeatures` writes them.

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
        return term_names(self._fitted.terms.powers(self.n_features_in_), names)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the estimator's own dict stays as it is
        # Plain dicts of NumPy arrays: skops loads them without trusting more types.
        for key in ("_fitted", "_stream"):
            if key in state:
                state[key] = to_plain(state[key])
        # Attributes that follow a device under array-API dispatch are saved as NumPy, so
        # that the model loads on any machine.
        for key in _ARRAY_ATTRIBUTES:
            if isinstance(state.get(key), torch.Tensor):
                state[key] = state[key].cpu().numpy()
        return state

    def __setstate__(self, state):
        check_state_version(state)
        state = dict(state)
        if "_fitted" in state:
            state["_fitted"] = fitted_from_plain(state["_fitted"])
        if "_stream" in state:
            state["_stream"] = stream_from_plain(state["_stream"])
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.array_api_support = True
        return tags
