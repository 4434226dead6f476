"""Statistical inference for squared-error fits, from the stored triangular factor.

Every squared-error fit keeps the triangular factor ``R`` of ``sqrt(w) * [D, t]`` over all its
training rows (``D`` the design ``[1, monomials(z)]`` in the scaled inputs, ``t`` the scaled
targets), for in-memory, streamed and Dask fits alike. With ``p`` design columns, its blocks
are::

    R = [[R_d, z],      R_d (p x p): the design's factor, R_d.T @ R_d = D.T @ W @ D
         [0,   r]]      r: the residual of t after projecting it on D (|r|**2 = RSS in t units)

so the ordinary-least-squares statistics follow without another pass over the rows:

* ``s**2 = RSS / (sum(w) - p)``, the residual variance (frequency weights: residual degrees of
  freedom ``sum(w) - p``, so weights of 2 are duplicated rows);
* ``cov = s**2 * U @ U.T`` with ``U = B @ inv(R_d)``, where ``B`` is the exact basis change from
  the design coefficients to the raw coefficients (the one that gives ``coef_``). ``U`` is
  computed row by row by a triangular solve (``U @ R_d = B``), which is backward stable in
  each row, so the variances keep their digits even where the raw monomials are
  ill-conditioned; no Gram matrix is formed or inverted;
* the total sum of squares is that of ``t``'s column of ``R`` (about the weighted mean with an
  intercept: the first row, the projection on the constant column, left out);
* a new point's leverage ``h = |d(z) @ inv(R_d)|**2`` for the intervals, from its design row
  in the scaled inputs (well-conditioned whatever the raw inputs).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from scipy.linalg import solve_triangular
from sklearn import get_config
from sklearn.utils.validation import check_is_fitted

from ._conditioning import basis_change, inverse_upper
from ._data_pass import DesignMap, chunk_slices
from ._device import prediction_device
from ._rank import rank_tolerance, reveal_rank, surely_full_rank
from ._sources import to_tensor
from ._validation import predict_data

_COLUMNS = ("coef", "std_err", "t", "p_value", "ci_lower", "ci_upper")


@dataclass(frozen=True)
class LeastSquares:
    """The statistics of a least-squares fit, per output; arrays are float64.

    ``coef`` is ``(n_outputs, p)`` in the order ``[intercept, *coef_]``; ``U`` is
    ``B @ inv(R_d)``, so that ``U @ U.T`` is ``inv(X.T W X)`` of the raw design; ``rss`` and
    ``tss`` are the residual and total sums of squares (``tss`` uncentred without an
    intercept). What costs ``O(p**3)`` beyond ``U`` (the full covariance, the condition
    number) is computed when asked for.
    """

    coef: np.ndarray
    U: np.ndarray
    rss: np.ndarray
    tss: np.ndarray
    n_obs: float  # sum(w)
    k_constant: int
    design_factor: np.ndarray  # R_d, for leverages of new points
    basis: np.ndarray  # B, the design coefficients -> raw coefficients

    @property
    def n_params(self):
        return self.coef.shape[1]

    @property
    def df_resid(self):
        return self.n_obs - self.n_params

    @property
    def df_model(self):
        return self.n_params - self.k_constant

    @property
    def scale(self):
        """The residual variance ``s**2`` of each output."""
        return self.rss / self.df_resid

    @property
    def unscaled_var(self):
        """The diagonal of ``inv(X.T W X)``, as row sums of squares of ``U`` (every digit kept)."""
        return (self.U * self.U).sum(1)

    def unscaled_cov(self):
        """``inv(X.T W X)`` of the raw design, ``(p, p)``."""
        return self.U @ self.U.T

    def condition_number(self):
        """2-norm condition number of the weighted raw design ``V = Q @ R_d @ inv(B)``.

        ``|V| * |inv(V)|`` with both norms the largest singular value of a matrix computed
        accurately (``R_d @ inv(B)`` and ``U = B @ inv(R_d)``), so that a condition number far
        beyond 1e16 is still told, unlike the square root of an eigenvalue ratio of ``V.T @ V``.
        """
        B, R_d = self.basis, self.design_factor
        if np.array_equal(np.tril(B, -1), np.zeros_like(B)):
            V_R = solve_triangular(B, R_d.T, trans="T", lower=False).T
        else:  # pragma: no cover - graded term orders make B upper triangular
            V_R = np.linalg.solve(B.T, R_d.T).T
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.linalg.norm(V_R, 2) * np.linalg.norm(self.U, 2))


def least_squares(stream, fitted):
    """The :class:`LeastSquares` statistics of a fit, from its state alone (no rows are read).

    ``stream`` is the fit's :class:`~autopoly._state.StreamState` (the factor, the weight sum,
    the scaling) and ``fitted`` its :class:`~autopoly._state.FittedPolynomial`.
    """
    terms, scaling = fitted.terms, stream.scaling
    p, k = fitted.theta.shape
    R = _square(np.asarray(stream.R, dtype=np.float64), p + k)
    R_d, targets = R[:p, :p], R[:, p:]
    residual = R[p:, p:]
    y_scale2 = np.asarray(scaling.y_scale, dtype=np.float64) ** 2
    rss = (residual * residual).sum(0) * y_scale2
    # t's squared norm is its column's; the first row is its projection on the constant.
    kept = targets[int(terms.fit_intercept) :]
    tss = (kept * kept).sum(0) * y_scale2
    B = basis_change(
        terms.powers(fitted.n_features), scaling.x_offset, scaling.x_scale, terms.fit_intercept
    )
    # U = B @ inv(R_d), one backward-stable triangular solve per row of B.
    U = solve_triangular(R_d, B.T, trans="T", lower=False).T
    return LeastSquares(
        coef=(B @ fitted.theta).T,
        U=U,
        rss=rss,
        tss=tss,
        n_obs=float(stream.weight_sum),
        k_constant=int(terms.fit_intercept),
        design_factor=R_d,
        basis=B,
    )


def _square(R, n_cols):
    """The factor padded with zero rows to ``(n_cols, n_cols)`` (fewer rows than columns)."""
    if R.shape[0] < n_cols:
        R = np.vstack([R, np.zeros((n_cols - R.shape[0], n_cols))])
    return R[:n_cols]


def _t_quantile(level, df):
    return float(stats.t.ppf(0.5 + level / 2, df))


def _check_level(level):
    if not (isinstance(level, (int, float, np.floating)) and 0 < level < 1):
        raise ValueError(
            f"level is the coverage of the intervals, a number strictly between 0 and 1 (e.g. "
            f"0.95); got {level!r}."
        )
    return float(level)


class InferenceMixin:
    """Coefficient covariance, standard errors, intervals and a summary (squared error only).

    The methods here are those of :class:`~autopoly.TorchPolyRegressor`; they apply to
    least-squares fits (``loss='squared_error'``, ``alpha=0``, ``conditioning=True``, full
    batches, no early stopping, a full-rank design) and read only the statistics every such
    fit keeps, never the training rows: their cost does not grow with the number of rows.
    See the user guide's page on inference for the formulas and conventions.

    See Also
    --------
    statsmodels.regression.linear_model.OLS : The same statistics from the raw design.

    Examples
    --------
    >>> import numpy as np
    >>> from autopoly import TorchPolyRegressor
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 10, size=(30, 1))
    >>> y = 2 + 0.5 * x[:, 0] - 0.1 * x[:, 0] ** 2 + 0.1 * rng.standard_normal(30)
    >>> model = TorchPolyRegressor(degree=2).fit(x, y)
    >>> model.std_errors().shape  # [intercept, x0, x0^2]
    (3,)
    >>> table = model.coef_table()
    >>> list(table.index), list(table.columns)
    (['intercept', 'x0', 'x0^2'], ['coef', 'std_err', 't', 'p_value', 'ci_lower', 'ci_upper'])
    >>> true = [2, 0.5, -0.1]
    >>> bool(((table["ci_lower"] < true) & (true < table["ci_upper"])).all())
    True
    >>> model.predict_interval([[5.0]], kind="confidence").shape
    (1, 2)
    """

    # ------------------------------------------------------------------------- helpers

    def _least_squares(self, method):
        """The fit's :class:`LeastSquares`, or a clear error where the formulas do not apply."""
        check_is_fitted(self)
        reason = self._inference_refusal()
        if reason is not None:
            raise ValueError(
                f"{method} gives the statistics of ordinary least squares, which do not apply "
                f"to this model: {reason}"
            )
        ls = least_squares(self._stream, self._fitted)
        if not ls.df_resid > 0:
            raise ValueError(
                f"{method} needs residual degrees of freedom, sum(sample_weight) - "
                f"n_params = {ls.n_obs:g} - {ls.n_params} = {ls.df_resid:g}, to be positive. "
                "sample_weight counts repeated rows (frequency weights, as statsmodels' "
                "freq_weights): fit more rows than coefficients, lower the degree, or do not "
                "normalize the weights to sum to 1."
            )
        return ls

    def _inference_refusal(self):
        """Why the least-squares formulas do not apply to this fit (None when they do)."""
        stream = self._stream
        refit = "Refit with the defaults for these statistics"
        # The settings of the fit itself (a set_params since then changes nothing here).
        fitted_with = getattr(self, "_fitted_with", {})
        loss, alpha, conditioning, early_stopping, batch_size = (
            fitted_with.get(name, getattr(self, name))
            for name in ("loss", "alpha", "conditioning", "early_stopping", "batch_size")
        )
        if not (isinstance(loss, str) and loss == "squared_error"):
            return (
                f"it was fitted with loss={loss!r}, whose coefficients are not the "
                "least-squares solution, so their covariance is not s**2 * inv(X.T W X). "
                f"{refit} (loss='squared_error')."
            )
        if alpha != 0:
            return (
                f"alpha={alpha!r} penalizes the coefficients, which shrinks them towards "
                "zero (a biased estimate whose covariance is not s**2 * inv(X.T W X)). "
                f"{refit} (alpha=0)."
            )
        if not stream.conditioned or not conditioning:
            return (
                "conditioning=False fits the raw coefficients by optimizer steps on the rows, "
                "which stop short of the least-squares optimum on polynomial terms. Refit with "
                "conditioning=True (the default)."
            )
        if early_stopping:
            return (
                "early_stopping=True stops on held-out rows before the least-squares optimum "
                f"and leaves those rows out of the statistics. {refit} (early_stopping=False)."
            )
        if batch_size is not None:
            return (
                f"batch_size={batch_size!r} takes mini-batch steps, which stop short of "
                f"the least-squares optimum. {refit} (batch_size=None)."
            )
        if not stream.complete:
            return (
                "its partial_fit stream took optimizer epochs (another loss, or batch_size), "
                "which stop short of the least-squares optimum of the rows seen. Stream with "
                "loss='squared_error' and batch_size=None from the first call."
            )
        if not _full_rank(stream, self._fitted.theta.shape[0]):
            return (
                "the design is rank-deficient (a RankDeficiencyWarning was raised by the fit): "
                "the rows do not determine every coefficient, so some have no finite standard "
                "error. Lower the degree, drop duplicated or constant features, or fit more "
                "distinct rows."
            )
        return None

    def _target_shape(self, array):
        """Drop the outputs axis (first) of a single-output fit."""
        return array[0] if self._fitted.single_output else array

    def _term_names(self):
        names = [str(n) for n in self.get_feature_names_out()]
        return (["intercept"] if self._fitted.terms.fit_intercept else []) + names

    def _coef_arrays(self, ls, level):
        """``{column: (n_outputs, p) array}`` of the coefficient table."""
        se = np.sqrt(ls.scale[:, None] * ls.unscaled_var[None, :])
        q = _t_quantile(level, ls.df_resid)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ls.coef / se
        p_value = 2 * stats.t.sf(np.abs(t), ls.df_resid)
        return {
            "coef": ls.coef,
            "std_err": se,
            "t": t,
            "p_value": p_value,
            "ci_lower": ls.coef - q * se,
            "ci_upper": ls.coef + q * se,
        }

    def _fit_statistics(self, ls):
        """``{name: (n_outputs,) array}`` of the goodness-of-fit statistics."""
        n, p = ls.n_obs, ls.n_params
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1 - ls.rss / ls.tss
            adj = 1 - (n - ls.k_constant) / ls.df_resid * (1 - r2)
            if ls.df_model > 0:
                f = ((ls.tss - ls.rss) / ls.df_model) / (ls.rss / ls.df_resid)
                f_p = stats.f.sf(f, ls.df_model, ls.df_resid)
            else:
                f = f_p = np.full_like(ls.rss, np.nan)
            llf = -n / 2 * (math.log(2 * math.pi) + np.log(ls.rss / n) + 1)
        return {
            "r2": r2,
            "adj_r2": adj,
            "f": f,
            "f_p": f_p,
            "llf": llf,
            "aic": -2 * llf + 2 * p,
            "bic": -2 * llf + math.log(n) * p,
            "s": np.sqrt(ls.scale),
        }

    # ---------------------------------------------------------------------- public API

    def covariance_matrix(self):
        """The covariance matrix of the coefficients of a least-squares fit.

        ``s**2 * inv(X.T @ W @ X)`` for the raw design ``X = [1, monomials(x)]`` and the weights
        ``W``, with ``s**2 = RSS / (sum(w) - p)``; computed from the fit's triangular factor
        (never a Gram inverse) and mapped to the raw basis through the exact basis change that
        gives ``coef_``.

        Returns
        -------
        cov : ndarray of shape (p, p) or (n_targets, p, p)
            Ordered ``[intercept, *coef_]`` (``coef_`` alone when ``fit_intercept=False``),
            ``p`` coefficients in all; one matrix per target for multi-output fits.

        Raises
        ------
        ValueError
            When the fit is not an ordinary least-squares fit (another loss, ``alpha > 0``,
            ``conditioning=False``, mini-batches, early stopping, an incomplete ``partial_fit``
            stream, a rank-deficient design) or has no residual degrees of freedom.
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        """
        ls = self._least_squares("covariance_matrix()")
        return self._target_shape(ls.scale[:, None, None] * ls.unscaled_cov()[None])

    def std_errors(self):
        """The standard errors of the coefficients of a least-squares fit.

        The square roots of the diagonal of :meth:`covariance_matrix`, computed as row sums of
        squares so that they keep their digits on ill-conditioned raw monomials.

        Returns
        -------
        std_errors : ndarray of shape (p,) or (n_targets, p)
            Ordered ``[intercept, *coef_]`` (``coef_`` alone without an intercept).
        """
        ls = self._least_squares("std_errors()")
        return self._target_shape(np.sqrt(ls.scale[:, None] * ls.unscaled_var[None, :]))

    def coef_table(self, level=0.95):
        """The coefficients with their standard errors, t statistics, p values and intervals.

        Parameters
        ----------
        level : float, default=0.95
            Coverage of the confidence intervals, in (0, 1).

        Returns
        -------
        table : pandas.DataFrame
            One row per term, indexed by ``term`` (``'intercept'`` and the names of
            :meth:`get_feature_names_out`); columns ``coef``, ``std_err``, ``t``, ``p_value``
            (two-sided, Student's t with ``sum(w) - p`` degrees of freedom), ``ci_lower`` and
            ``ci_upper``. Multi-output fits have a ``(target, term)`` index, ``target`` the
            column number of ``y``.

        Raises
        ------
        ImportError
            When pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "coef_table() returns a pandas DataFrame, but pandas is not installed. Install "
                "it with `pip install autopoly[stats]` (or `pip install pandas`); summary(), "
                "std_errors() and covariance_matrix() need no pandas."
            ) from exc
        level = _check_level(level)
        ls = self._least_squares("coef_table()")
        columns = self._coef_arrays(ls, level)
        names = self._term_names()
        if self._fitted.single_output:
            index = pd.Index(names, name="term")
            return pd.DataFrame({c: columns[c][0] for c in _COLUMNS}, index=index)
        n_out = ls.coef.shape[0]
        index = pd.MultiIndex.from_product([range(n_out), names], names=["target", "term"])
        return pd.DataFrame({c: columns[c].reshape(-1) for c in _COLUMNS}, index=index)

    def predict_interval(self, X, level=0.95, kind="prediction"):
        """Prediction or confidence intervals of a least-squares fit at new points.

        With ``h = x0 @ inv(X.T W X) @ x0`` the leverage of a point's design row ``x0`` and
        ``q`` the two-sided Student's t quantile with ``sum(w) - p`` degrees of freedom, the
        interval is ``prediction ± q * s * sqrt(h)`` for the mean response
        (``kind='confidence'``) and ``prediction ± q * s * sqrt(1 + h)`` for a new observation
        of unit weight (``kind='prediction'``). Only ``X`` is expanded, chunk by chunk; the
        training rows are not read.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            The points. A tensor is computed on its device.
        level : float, default=0.95
            Coverage, in (0, 1).
        kind : {'prediction', 'confidence'}, default='prediction'
            An interval for a new observation, or for the mean response.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, n_targets, 2)
            Lower and upper bounds (a tensor on the input's device for a tensor ``X`` under
            ``sklearn.config_context(array_api_dispatch=True)``, as :meth:`predict` does).
        """
        if kind not in ("prediction", "confidence"):
            raise ValueError(
                f"kind must be 'prediction' (an interval for a new observation) or "
                f"'confidence' (for the mean response); got {kind!r}."
            )
        level = _check_level(level)
        ls = self._least_squares("predict_interval()")
        X = predict_data(self, X)
        tensor_in = isinstance(X, torch.Tensor)
        device = X.device if tensor_in else prediction_device(self._fitted.device)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        mean, h = _mean_and_leverage(self._fitted, ls.design_factor, X, device, dtype)
        s = torch.as_tensor(np.sqrt(ls.scale), dtype=dtype, device=device)
        spread = torch.sqrt(h + 1.0 if kind == "prediction" else h)[:, None] * s
        half = _t_quantile(level, ls.df_resid) * spread
        out = torch.stack([mean - half, mean + half], dim=-1)
        if self._fitted.single_output:
            out = out[:, 0]
        if tensor_in and get_config()["array_api_dispatch"]:
            return out
        return out.cpu().to(torch.float64).numpy()

    def summary(self, level=0.95):
        """A text report of a least-squares fit, in the spirit of statsmodels' OLS summary.

        Parameters
        ----------
        level : float, default=0.95
            Coverage of the coefficients' confidence intervals, in (0, 1).

        Returns
        -------
        report : str
            Per target: the number of observations (the sum of the weights), the residual
            and model degrees of freedom, the residual standard deviation, R² and adjusted R²
            (uncentred without an intercept), the F statistic and its p value, the
            log-likelihood, AIC and BIC (statsmodels' conventions), the condition number of
            the weighted raw design, and the coefficient table.
        """
        level = _check_level(level)
        ls = self._least_squares("summary()")
        columns = self._coef_arrays(ls, level)
        fit = self._fit_statistics(ls)
        names = self._term_names()
        blocks = [
            _summary_block(
                None if self._fitted.single_output else k,
                ls,
                {c: v[k] for c, v in fit.items()},
                {c: v[k] for c, v in columns.items()},
                names,
                level,
            )
            for k in range(ls.coef.shape[0])
        ]
        return "\n\n".join(blocks)


def _mean_and_leverage(fitted, R_d, X, device, dtype):
    """Predictions ``(n, n_outputs)`` and leverages ``(n,)`` of new rows, chunk by chunk."""
    design = DesignMap(
        fitted.terms.expansion(fitted.n_features),
        torch.as_tensor(fitted.x_offset, dtype=dtype, device=device),
        torch.as_tensor(fitted.x_scale, dtype=dtype, device=device),
        fitted.terms.fit_intercept,
    )
    theta = torch.as_tensor(fitted.theta, dtype=dtype, device=device)
    R_t = torch.as_tensor(R_d, dtype=dtype, device=device)
    n = X.shape[0]
    mean = torch.empty((n, theta.shape[1]), dtype=dtype, device=device)
    h = torch.empty(n, dtype=dtype, device=device)
    with torch.no_grad():
        for rows in chunk_slices(n, theta.shape[0], design.itemsize):
            D = design(to_tensor(X[rows], dtype, device))
            mean[rows] = D @ theta
            # Solve R_d.T @ u = d for each row d: h = |u|**2.
            u = torch.linalg.solve_triangular(R_t.T, D.T, upper=False)
            h[rows] = (u * u).sum(0)
    return mean, h


def _full_rank(stream, n_design):
    """Whether the fit's design has full numerical rank (the fit's own test, from ``R``)."""
    R = _square(np.asarray(stream.R), n_design)[:, :n_design]
    # The tolerance is that of the dtype the factor was computed in.
    dtype = torch.float32 if R.dtype == np.float32 else torch.float64
    R = R.astype(np.float64)
    col = np.sqrt((R * R).sum(0))
    if not bool((col > 0).all()):
        return False
    Rs = R / col
    # The rows behind the factor: the weight sum equals their count without sample_weight.
    tol = rank_tolerance(dtype, n_design, max(stream.weight_sum, 1.0))
    return surely_full_rank(Rs, inverse_upper(Rs), tol) or reveal_rank(Rs, tol) is None


def _format(value, width=10):
    """A number in ``width`` characters, with four significant digits or more.

    Fixed point when it reads well (magnitudes from 1e-3 to 1e5), else scientific.
    """
    if not np.isfinite(value):
        return f"{value:>{width}}"
    magnitude = abs(value)
    if magnitude == 0 or 1e-3 <= magnitude < 1e5:
        decimals = 4 if magnitude == 0 else max(4, 3 - math.floor(math.log10(magnitude)))
        return f"{value:>{width}.{decimals}f}"
    return f"{value:>{width}.3e}"


def _summary_block(target, ls, fit, columns, names, level, width=78):
    title = "Least-squares polynomial fit" + ("" if target is None else f" (target {target})")
    pairs = [
        ("Observations:", f"{ls.n_obs:g}", "R-squared:", _format(fit["r2"], 0)),
        ("Df residuals:", f"{ls.df_resid:g}", "Adj. R-squared:", _format(fit["adj_r2"], 0)),
        ("Df model:", f"{ls.df_model:g}", "F-statistic:", _format(fit["f"], 0)),
        ("Residual std. error:", _format(fit["s"], 0), "Prob (F-statistic):", f"{fit['f_p']:.3g}"),
        ("Log-likelihood:", _format(fit["llf"], 0), "AIC:", _format(fit["aic"], 0)),
        ("Cond. no. (raw design):", f"{ls.condition_number():.3g}", "BIC:", _format(fit["bic"], 0)),
    ]
    half = (width - 2) // 2
    lines = [title.center(width).rstrip(), "=" * width]
    for left, lv, right, rv in pairs:
        lines.append(f"{left}{lv:>{half - len(left)}}  {right}{rv:>{half - len(right)}}")
    if ls.k_constant == 0:
        lines.append("R-squared is uncentred: the model has no intercept.")
    lines.append("=" * width)
    term_width = max(12, *(len(n) for n in names)) + 2
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    heads = ["coef", "std err", "t", "P>|t|", f"[{lo:.3g}", f"{hi:.3g}]"]
    lines.append(" " * term_width + "".join(f"{h:>11}" for h in heads))
    lines.append("-" * width)
    for i, name in enumerate(names):
        row = [columns[c][i] for c in _COLUMNS]
        lines.append(f"{name:<{term_width}}" + "".join(" " + _format(v) for v in row))
    lines.append("=" * width)
    return "\n".join(lines)
