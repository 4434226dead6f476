"""TorchPolyRegressorCV: the degree and the penalty chosen by cross-validation, in one pass."""

import time
import warnings
from itertools import product
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import StrOptions
from threadpoolctl import threadpool_limits

from . import _cv_stats as cvs
from . import _fitting as fitting
from ._dask_inputs import is_dask_collection
from ._data_pass import DesignMap
from ._persistence import restore_on_error
from ._regressor import TorchPolyRegressor, _autograd_on
from ._setup import check_size, fit_device, make_setup
from ._sources import ArraySource
from ._spec import DTYPES, resolve_spec
from ._threads import task_threads
from ._validation import fit_data

# Fitted attributes of the search itself (the refit adds TorchPolyRegressor's).
_SEARCH_ATTRIBUTES = (
    "cv_results_",
    "best_index_",
    "best_params_",
    "best_score_",
    "degree_",
    "alpha_",
    "l1_ratio_",
    "n_splits_",
    "refit_time_",
    "scorer_",
    "multimetric_",
)


def _no_partial_fit(estimator):
    raise AttributeError(
        "TorchPolyRegressorCV has no partial_fit: the search needs every row at once. Stream "
        "into a TorchPolyRegressor with the chosen degree_ and alpha_ instead."
    )


class _Fixed(RegressorMixin, BaseEstimator):
    """Hands a scorer predictions computed beforehand (one candidate's, on one test set)."""

    def __init__(self, y_pred=None):
        self.y_pred = y_pred

    def predict(self, X):
        return self.y_pred

    def __sklearn_is_fitted__(self):
        return True


class _CollectedRows:
    """A source whose scaling and factor were collected by the search (no pass over rows).

    Everything else (the rows themselves, for the last-digit refinement of small problems)
    is the original source's.
    """

    def __init__(self, source, scaling, R, weight_sum):
        self._source = source
        self._scaling = scaling
        self._R = R
        self._weight_sum = weight_sum

    def scaling(self, spec):
        return self._scaling

    def factor(self, setup, qr=None, gram_first=False):
        R = torch.as_tensor(self._R, dtype=setup.dtype, device=setup.device)
        return R, self._weight_sum

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._source, name)


class TorchPolyRegressorCV(TorchPolyRegressor):
    """Polynomial regression with the degree and penalty chosen by cross-validation.

    Searches the grid ``degrees x alphas x l1_ratios`` of :class:`TorchPolyRegressor`'s
    ``degree``, ``alpha`` and ``l1_ratio`` (squared error) over the splits of ``cv``, like
    :class:`~sklearn.model_selection.GridSearchCV` over :class:`TorchPolyRegressor`, but
    without fitting each candidate on the rows: one pass collects, per fold, the triangular
    factor of the weighted design at the largest degree, and every candidate is solved,
    scored and refitted from those statistics (see Notes). After the search it is a fitted
    :class:`TorchPolyRegressor` with the best parameters: ``predict``, the inference methods,
    ``to_torch`` and persistence work as after ``TorchPolyRegressor(degree=degree_,
    alpha=alpha_, l1_ratio=l1_ratio_).fit(X, y)``.

    Parameters
    ----------
    degrees : array-like of int, default=(1, 2, 3)
        Degrees to try (each at least 0; at least 1 without an intercept).
    alphas : array-like of float, default=(0.0,)
        Penalty strengths to try (each at least 0), as :class:`TorchPolyRegressor`'s
        ``alpha`` (:class:`~sklearn.linear_model.Ridge`'s on the raw monomials).
    l1_ratios : array-like of float, default=(0.0,)
        Mixes of the penalty to try, in ``[0, 1]``; an L1 part is solved exactly (exact zeros).
    cv : int, cross-validation generator or iterable, default=5
        As in :class:`~sklearn.model_selection.GridSearchCV`: an int is ``KFold(cv)``; any
        splitter (``groups`` is passed to its ``split``) or iterable of ``(train, test)``.
    scoring : str, callable or None, default=None
        None is R^2 (``score``). ``'r2'``, ``'neg_mean_squared_error'`` and
        ``'neg_root_mean_squared_error'`` are computed exactly from the statistics of each
        test fold; any other scorer predicts on each test set once, for all candidates at
        once (in-memory data only). With ``sample_weight`` the test scores are weighted by it,
        as scikit-learn's scorers weight them.
    refit : bool or callable, default=True
        Fit the best candidate on all rows (from the collected statistics; no further pass).
        A callable takes ``cv_results_`` and returns the index of the candidate to refit.
        ``refit=False`` keeps the search's results only (no coefficients, no ``predict``).
    n_jobs : int, default=None
        Threads solving the splits' candidates in parallel (None means 1, -1 all cores).
    interaction_only : bool, default=False
        Only products of distinct features (no powers above one).
    fit_intercept : bool, default=True
        Fit a constant term, never penalized.
    dtype : {'float64', 'float32'}, default='float64'
        Precision of the statistics and the solves.
    device : str, default='cpu'
        Where the statistics are computed, as :class:`TorchPolyRegressor`'s ``device``.
    verbose : int, default=0
        0 is silent; 1 prints the size of the search and its best candidate.

    Attributes
    ----------
    degree_ : int
        The chosen degree.
    alpha_ : float
        The chosen penalty strength.
    l1_ratio_ : float
        The chosen mix of the penalty.
    best_params_ : dict
        ``{'alpha': alpha_, 'degree': degree_, 'l1_ratio': l1_ratio_}``.
    best_score_ : float
        Mean test score of the chosen candidate.
    best_index_ : int
        Its index in ``cv_results_``.
    cv_results_ : dict of ndarray
        As :attr:`sklearn.model_selection.GridSearchCV.cv_results_`: ``params``,
        ``param_alpha``, ``param_degree``, ``param_l1_ratio``, ``split{k}_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``, ``mean_fit_time``,
        ``std_fit_time``, ``mean_score_time``, ``std_score_time``. Candidates are in
        ``ParameterGrid`` order (``alpha``, then ``degree``, then ``l1_ratio``). The one pass
        over the rows is shared by every candidate: its time is divided among them.
    n_splits_ : int
        Number of splits.
    refit_time_ : float
        Seconds spent refitting the chosen candidate.
    scorer_ : callable
        The scorer of ``scoring``.
    coef_, intercept_, powers_, n_features_in_, feature_names_in_, n_iter_, loss_curve_, \
best_loss_, device_ : see TorchPolyRegressor
        The refitted model's (when ``refit`` is set).

    See Also
    --------
    TorchPolyRegressor : One fit with given parameters.
    sklearn.model_selection.GridSearchCV : The same search, fitting every candidate.
    sklearn.linear_model.RidgeCV : The penalty chosen by cross-validation, for given features.

    Notes
    -----
    The statistics are those a :class:`TorchPolyRegressor` fit collects: the triangular
    factor ``R_k`` of ``sqrt(w) * [1, terms(z), t]`` over each fold's rows, ``z`` the inputs
    mapped to ``[-1, 1]`` by the scaling of all rows and ``t`` the standardized targets. A
    split's training factor is the QR factor of its training folds' factors stacked; the
    terms of a lower degree are a leading block of the terms of the largest one
    (PolynomialFeatures order), so every degree's factor comes from the same ones; each
    candidate is then solved as a plain fit solves it from its factor (the ridge penalty on
    the raw coefficients folded into the whitening, exactly); its squared error on the test
    fold is ``|R_test @ [theta; -1]|**2``. Since the optimum does not depend on the basis it
    is computed in, the scores equal those of
    ``GridSearchCV(TorchPolyRegressor(), {'degree': ..., 'alpha': ...}, cv=cv)`` to rounding
    (with ``sample_weight`` routed to the scorer as well as to ``fit``).

    Splitters whose test sets partition the rows (``KFold``, ``GroupKFold``,
    ``StratifiedKFold``...) need one factor per fold; any other (``ShuffleSplit``,
    ``TimeSeriesSplit``, ...) gets one factor per group of rows that every split treats alike,
    at most one per row (``LeaveOneOut`` is then as slow as one fit per row).

    Examples
    --------
    >>> import numpy as np
    >>> from autopoly import TorchPolyRegressorCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1))
    >>> y = X[:, 0] ** 3 - X[:, 0] + 0.1 * rng.normal(size=200)
    >>> search = TorchPolyRegressorCV(degrees=[1, 2, 3], alphas=[0.0, 1.0]).fit(X, y)
    >>> search.best_params_
    {'alpha': 0.0, 'degree': 3, 'l1_ratio': 0.0}
    >>> np.abs(search.coef_).round(1)
    array([1., 0., 1.])
    >>> search.cv_results_["mean_test_score"].shape
    (6,)
    """

    # The inference methods fall back on these plain-fit parameters when the fit did not
    # record its own (a refit always does: ``_fitted_with``); they must exist to be read.
    loss = "squared_error"
    alpha = 0.0
    conditioning = True
    early_stopping = False
    batch_size = None

    _parameter_constraints = {
        "degrees": ["array-like"],
        "alphas": ["array-like"],
        "l1_ratios": ["array-like"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "refit": ["boolean", callable],
        "n_jobs": [Integral, None],
        "interaction_only": ["boolean"],
        "fit_intercept": ["boolean"],
        "dtype": [StrOptions(set(DTYPES))],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        degrees=(1, 2, 3),
        alphas=(0.0,),
        l1_ratios=(0.0,),
        cv=5,
        scoring=None,
        refit=True,
        n_jobs=None,
        *,
        interaction_only=False,
        fit_intercept=True,
        dtype="float64",
        device="cpu",
        verbose=0,
    ):
        self.degrees = degrees
        self.alphas = alphas
        self.l1_ratios = l1_ratios
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.n_jobs = n_jobs
        self.interaction_only = interaction_only
        self.fit_intercept = fit_intercept
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    # ----------------------------------------------------------------------------- helpers

    def _grid(self):
        """The checked grid: ``(degrees, alphas, l1_ratios)`` as lists of Python numbers."""

        def values(name, kind, ok, expected):
            raw = getattr(self, name)
            items = list(np.asarray(raw, dtype=object).reshape(-1))
            if not items:
                raise ValueError(f"{name} must list at least one value; got {name}={raw!r}.")
            bad = [v for v in items if not (isinstance(v, kind) and not isinstance(v, bool))]
            bad = bad or [v for v in items if not ok(v)]
            if bad:
                raise ValueError(
                    f"{name} must hold {expected}; got {bad[0]!r} in {name}={raw!r}. Pass "
                    f"e.g. {name}={list(getattr(type(self)(), name))!r}."
                )
            return [int(v) if kind is Integral else float(v) for v in items]

        low = 0 if self.fit_intercept else 1
        degrees = values(
            "degrees",
            Integral,
            lambda d: d >= low,
            f"integers >= {low}" + ("" if self.fit_intercept else " (fit_intercept=False)"),
        )
        alphas = values("alphas", Real, lambda a: 0 <= a < np.inf, "finite numbers >= 0")
        ratios = values("l1_ratios", Real, lambda r: 0 <= r <= 1, "numbers in [0, 1]")
        return degrees, alphas, ratios

    def _plain(self, degree, alpha=0.0, l1_ratio=0.0):
        """The plain estimator of one candidate (what the refit is equal to)."""
        return TorchPolyRegressor(
            degree=degree,
            alpha=alpha,
            l1_ratio=l1_ratio,
            interaction_only=self.interaction_only,
            fit_intercept=self.fit_intercept,
            dtype=self.dtype,
            device=self.device,
        )

    def _clear(self):
        """Forget an earlier search (a failed one puts it back: ``restore_on_error``)."""
        for key in list(vars(self)):
            if key.endswith("_") and not key.startswith("__") or key.startswith("_fitted"):
                delattr(self, key)
        for key in ("_stream", "_autopoly_version"):
            if key in vars(self):
                delattr(self, key)

    def _splits(self, X, y, groups, n_rows):
        cv = check_cv(self.cv, y, classifier=False)
        splits = [
            (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
            for tr, te in cv.split(X, y, groups)
        ]
        if not splits:
            raise ValueError(f"cv={self.cv!r} gave no splits; pass a splitter with at least one.")
        for tr, te in splits:
            if len(te) == 0 or len(tr) == 0:
                raise ValueError(
                    f"cv={self.cv!r} gave a split with an empty training or test set "
                    f"({len(tr)} and {len(te)} of {n_rows} rows); use fewer folds."
                )
        return splits

    def _results(self, candidates, split_results, pass_time):
        """``cv_results_`` with GridSearchCV's keys (the shared pass's time split evenly)."""
        n_cand, n_splits = len(candidates), len(split_results)
        scores = np.array([r.scores for r in split_results]).T  # (n_cand, n_splits)
        fit_times = np.array([r.fit_times for r in split_results]).T + pass_time / (
            n_cand * n_splits
        )
        score_times = np.array([r.score_times for r in split_results]).T
        results = {
            "mean_fit_time": fit_times.mean(1),
            "std_fit_time": fit_times.std(1),
            "mean_score_time": score_times.mean(1),
            "std_score_time": score_times.std(1),
        }
        for name in ("alpha", "degree", "l1_ratio"):
            results[f"param_{name}"] = np.ma.MaskedArray(
                np.array([getattr(c, name) for c in candidates]), mask=False
            )
        results["params"] = [
            {"alpha": c.alpha, "degree": c.degree, "l1_ratio": c.l1_ratio} for c in candidates
        ]
        for k in range(n_splits):
            results[f"split{k}_test_score"] = scores[:, k]
        mean = scores.mean(1)
        results["mean_test_score"] = mean
        results["std_test_score"] = scores.std(1)
        if np.isnan(mean).all():
            rank = np.ones(n_cand, dtype=np.int32)
        else:
            filled = np.nan_to_num(mean, nan=np.nanmin(mean) - 1)
            rank = rankdata(-filled, method="min").astype(np.int32)
        results["rank_test_score"] = rank
        return results

    def _refit_outcome(self, source, scaling, layout, stats, cand):
        """The best candidate fitted on all rows, from the collected statistics."""
        all_atoms = np.arange(len(stats.R))
        R_all, weight, _ = cvs.combine(stats, all_atoms, layout.n_cols)
        R_d = cvs.degree_factor(R_all, layout, cand.setup.n_design)
        spec = resolve_spec(self._plain(cand.degree, cand.alpha, cand.l1_ratio))
        collected = _CollectedRows(source, scaling, R_d, weight)
        with self._threads(spec, source), _autograd_on():
            outcome = fitting.fit(spec, collected)
        return spec, outcome

    # ------------------------------------------------------------------------- public API

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, groups=None):
        """Search the grid by cross-validation, then refit the best candidate on all rows.

        Parameters
        ----------
        X : array-like, torch.Tensor or dask collection of shape (n_samples, n_features)
            Training inputs. A tensor's rows stay on its device.
        y : array-like or torch.Tensor of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
            Non-negative weights of the rows, for the fits and the test scores.
        groups : array-like of shape (n_samples,), default=None
            Group labels for the splitter (``GroupKFold`` and the like).

        Returns
        -------
        self : TorchPolyRegressorCV
            The fitted search.
        """
        with restore_on_error(self):
            self._clear()
            degrees, alphas, ratios = self._grid()
            scoring = "r2" if self.scoring is None else self.scoring
            exact = isinstance(scoring, str) and scoring in cvs.EXACT_SCORINGS
            scorer = check_scoring(self, scoring=scoring)
            top = resolve_spec(self._plain(max(degrees)))
            if is_dask_collection(X):
                from . import _dask  # only for dask collections: keeps ``import autopoly`` light

                if not exact:
                    raise ValueError(
                        f"scoring={scoring!r} needs predictions on the test rows, which stay "
                        "on the cluster for dask collections; use scoring='r2', "
                        "'neg_mean_squared_error' or 'neg_root_mean_squared_error' "
                        "(computed from the statistics), or pass in-memory arrays."
                    )
                source = _dask.DaskSource(X, y, sample_weight, top)
                _dask.check_input_features(self, source, reset=True)
                n_rows = int(sum(source.block_rows()))
                X_split, y_split = np.zeros((n_rows, 1)), y
                rows = None
            else:
                Xv, yv, wv = fit_data(self, X, y, sample_weight, reset=True)
                y2 = yv.reshape(-1, 1) if yv.ndim == 1 else yv
                source = ArraySource(Xv, y2, wv, yv.ndim)
                n_rows = Xv.shape[0]
                X_split, y_split = Xv, yv
                rows = (Xv, y2, wv, yv.ndim)
            if isinstance(y_split, torch.Tensor):
                y_split = y_split.cpu().numpy()
            start = time.perf_counter()
            splits = self._splits(X_split, y_split, groups, n_rows)
            atoms = cvs.atoms_of(splits, n_rows)
            if rows is None:
                # One pass over the blocks: the scaling and every atom's factor together.
                check_size(top, source.n_features, source.n_outputs, fit_device(top, None))
                stats = _dask.search_statistics(source, atoms, top)
            scaling = source.scaling(top)
            setup_top = make_setup(top, source.n_features, source.n_outputs, scaling, source.device)
            device = setup_top.device
            stats_setup = cvs.stats_setup(top, scaling, device)
            if rows is not None:
                with self._threads(top, source):
                    stats = self._atom_factors(rows, atoms, stats_setup)
            layout = cvs.Layout(stats_setup.n_design, source.n_outputs, self.fit_intercept)
            setups = {}
            candidates = []
            for alpha, degree, ratio in product(alphas, degrees, ratios):
                spec = resolve_spec(self._plain(degree, alpha, ratio))
                if degree not in setups:
                    setups[degree] = cvs.setup_for(spec, scaling, device)
                candidates.append(cvs.Candidate(degree, alpha, ratio, spec, setups[degree]))
            pass_time = time.perf_counter() - start
            if self.verbose:
                print(
                    f"Fitting {len(splits)} folds for each of {len(candidates)} candidates, "
                    f"totalling {len(splits) * len(candidates)} fits, from one pass over "
                    f"{n_rows} rows."
                )
            jobs = (
                delayed(cvs.search_split)(
                    candidates,
                    stats,
                    atoms.train[s],
                    atoms.test[s],
                    layout,
                    scoring if exact else None,
                    scaling,
                )
                for s in range(len(splits))
            )
            # The candidates' matrices are small: one torch thread each (threads of a team
            # cost more than they save there, far more on a loaded machine), BLAS's too.
            with task_threads(), threadpool_limits(1):
                split_results = Parallel(n_jobs=self.n_jobs, prefer="threads")(jobs)
            if not exact:
                self._score_rows(scorer, rows, splits, split_results, stats_setup, scaling)
            self._warn_failures(candidates, split_results)
            results = self._results(candidates, split_results, pass_time)
            best = (
                self.refit(results)
                if callable(self.refit)
                else int(np.argmin(results["rank_test_score"]))
            )
            self.cv_results_ = results
            self.best_index_ = int(best)
            self.best_params_ = results["params"][best]
            self.best_score_ = float(results["mean_test_score"][best])
            self.degree_ = candidates[best].degree
            self.alpha_ = candidates[best].alpha
            self.l1_ratio_ = candidates[best].l1_ratio
            self.n_splits_ = len(splits)
            self.scorer_ = scorer
            self.multimetric_ = False
            if self.verbose:
                print(f"Best: {self.best_params_} (mean test score {self.best_score_:.6g}).")
            if self.refit:
                start = time.perf_counter()
                spec, outcome = self._refit_outcome(
                    source, scaling, layout, stats, candidates[best]
                )
                fitting.warn_unconverged(spec, outcome, stacklevel=4)
                self._publish(spec, outcome, source.device)
                self.refit_time_ = time.perf_counter() - start
        return self

    def _atom_factors(self, rows, atoms, setup):
        """In memory: each atom's rows as a source of their own, one chunked pass each."""
        X, y2, w, y_ndim = rows

        def sources():
            for index in cvs.rows_of_atoms(atoms):
                if isinstance(X, torch.Tensor):
                    index = torch.as_tensor(index, device=X.device)
                yield ArraySource(X[index], y2[index], w[index], y_ndim)

        return cvs.atom_factors_of_sources(sources(), setup)

    def _score_rows(self, scorer, rows, splits, split_results, setup, scaling):
        """Other scorers: each test set predicted once, for every candidate at once."""
        X, y2, w, y_ndim = rows
        weighted = not bool((w == 1).all())
        expansion = setup.design.expansion
        device = setup.device if setup.device.type != "mps" else torch.device("cpu")
        design = DesignMap(
            expansion,
            torch.as_tensor(scaling.x_offset, dtype=torch.float64, device=device),
            torch.as_tensor(scaling.x_scale, dtype=torch.float64, device=device),
            True,
        )
        for (_, test), result in zip(splits, split_results):
            ok = [c for c, coef in enumerate(result.coef) if coef is not None]
            if not ok:
                continue
            index = torch.as_tensor(test, device=X.device) if isinstance(X, torch.Tensor) else test
            X_test, y_test, w_test = X[index], y2[index], w[index]
            start = time.perf_counter()
            pred = cvs.predictions(
                design, X_test, [result.coef[c] for c in ok], scaling, torch.float64, device
            )
            shared = (time.perf_counter() - start) / len(ok)
            y_true = y_test[:, 0] if y_ndim == 1 else y_test
            if isinstance(y_true, torch.Tensor):
                y_true = y_true.cpu().numpy()
            kwargs = {}
            if weighted:
                kwargs["sample_weight"] = (
                    w_test.cpu().numpy() if isinstance(w_test, torch.Tensor) else w_test
                )
            for j, c in enumerate(ok):
                start = time.perf_counter()
                y_pred = pred[:, j, 0] if y_ndim == 1 else pred[:, j, :]
                try:
                    result.scores[c] = scorer(_Fixed(y_pred), X_test, y_true, **kwargs)
                except (ValueError, ZeroDivisionError) as exc:
                    result.errors.append((c, f"scoring failed: {exc}"))
                result.score_times[c] = shared + time.perf_counter() - start

    @staticmethod
    def _warn_failures(candidates, split_results):
        failed = [(c, msg) for r in split_results for c, msg in r.errors]
        if not failed:
            return
        c, message = failed[0]
        cand = candidates[c]
        warnings.warn(
            f"{len(failed)} candidate fit(s) out of {len(candidates) * len(split_results)} "
            f"failed and score NaN; the first, degree={cand.degree}, alpha={cand.alpha}, "
            f"l1_ratio={cand.l1_ratio}: {message}",
            FitFailedWarning,
            stacklevel=3,
        )

    @available_if(_no_partial_fit)
    def partial_fit(self, X, y, sample_weight=None):
        """Not available: a search needs every row at once (raises AttributeError).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Ignored.
        y : array-like of shape (n_samples,)
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Ignored.

        Returns
        -------
        self : TorchPolyRegressorCV
            Never returned.
        """
        raise AttributeError("TorchPolyRegressorCV has no partial_fit.")  # pragma: no cover

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_fitted")
