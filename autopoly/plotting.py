"""Plots of fitted estimators, following scikit-learn's Display conventions.

matplotlib is an optional dependency (``pip install matplotlib``, autopoly's ``plot`` extra);
this module imports without it and only the plotting calls need it.
"""

import numpy as np

__all__ = ["LossCurveDisplay"]


def _import_pyplot(caller):
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (autopoly's `plot` extra)."
        ) from exc
    return plt


# Where a fitted meta-estimator keeps the fitted estimator it predicts with.
_INNER = (
    ("best_estimator_", "the best candidate of a search refitted on all the data"),
    ("regressor_", "TransformedTargetRegressor's regressor, fitted on the transformed target"),
    ("estimator_", "the fitted estimator of a wrapper (RANSACRegressor, SelectFromModel, RFE)"),
)


def _loss_curve_of(estimator):
    """The fitted estimator whose ``loss_curve_`` ``estimator`` plots, and that curve.

    Follows, as often as they nest, a Pipeline's last step and the fitted estimator a
    meta-estimator predicts with (:data:`_INNER`): a Pipeline inside a GridSearchCV, a
    TransformedTargetRegressor around a Pipeline. Raises a ValueError that says what to pass
    when there is no curve to plot.
    """
    final = estimator
    for _ in range(32):  # meta-estimators nest a few levels deep, never this many
        if getattr(final, "loss_curve_", None) is not None:
            return final, final.loss_curve_
        inner = _inner(final)
        if inner is None:
            break
        final = inner
    raise ValueError(_no_curve(estimator, final))


def _inner(estimator):
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        last = steps[-1][1]
        return None if last is None or isinstance(last, str) else last  # 'passthrough'
    if getattr(estimator, "estimators_", None) is not None:
        # An ensemble (Bagging, MultiOutputRegressor): several fitted estimators, and its
        # estimator_ is only the unfitted template.
        return None
    for attribute, _ in _INNER:
        inner = getattr(estimator, attribute, None)
        if inner is not None and not isinstance(inner, (list, tuple)):
            return inner
    return None


def _no_curve(estimator, final):
    """What to pass instead of ``estimator``, whose plotted estimator ``final`` has no curve."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    outer, name = type(estimator).__name__, type(final).__name__
    intro = (
        "LossCurveDisplay.from_estimator needs a fitted estimator with a `loss_curve_` "
        "attribute (a fitted TorchPolyRegressor, or a fitted Pipeline, search or "
        f"TransformedTargetRegressor around one); got {outer}"
    )
    try:
        check_is_fitted(final)
        fitted = True
    except NotFittedError:
        fitted = False
    except TypeError:
        return f"{intro}, which is not an estimator."
    if hasattr(final, "cv_results_") and getattr(final, "refit", True) is False:
        return (
            f"{intro}, fitted with refit=False, so it keeps no fitted estimator. Set "
            f"refit=True, or fit an estimator with {name}.best_params_ and pass that."
        )
    many = getattr(final, "estimators_", None)
    if fitted and isinstance(many, (list, tuple)) and many:
        return (
            f"{intro}, which holds {len(many)} fitted estimators in estimators_: pass one "
            "of them, e.g. LossCurveDisplay.from_estimator(model.estimators_[0])."
        )
    if not fitted:
        inside = "" if final is estimator else f", whose {name} is not fitted"
        return f"{intro}{inside}. Call fit first."
    inside = "" if final is estimator else f", whose final estimator {name} has none"
    return (
        f"{intro}{inside}: {name} is not fitted by an optimizer loop that records its loss. "
        "Pass an estimator that is, e.g. a fitted TorchPolyRegressor."
    )


class LossCurveDisplay:
    """Plot of the training loss against the iteration of an optimizer loop.

    Build it with :meth:`from_estimator` from a fitted estimator, or directly from a list of
    losses followed by :meth:`plot`. All attributes are stored on the display.

    Parameters
    ----------
    loss_curve : array-like of shape (n_iter,)
        Loss at each iteration, e.g. the ``loss_curve_`` of a fitted
        :class:`~autopoly.TorchPolyRegressor`.
    estimator_name : str, default=None
        Name used in the legend; no legend when ``None``.

    Attributes
    ----------
    loss_curve : ndarray of shape (n_iter,)
        The losses that are plotted.
    estimator_name : str or None
        Name used in the legend.
    line_ : matplotlib.lines.Line2D
        The loss curve.
    ax_ : matplotlib.axes.Axes
        Axes holding the curve.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    See Also
    --------
    LossCurveDisplay.from_estimator : Plot the loss curve of a fitted estimator.
    sklearn.model_selection.ValidationCurveDisplay : Scores against a parameter value.

    Examples
    --------
    >>> from autopoly.plotting import LossCurveDisplay
    >>> display = LossCurveDisplay([4.0, 1.0, 0.25], estimator_name="demo").plot()
    >>> display.ax_.get_xlabel(), display.ax_.get_ylabel()
    ('Iteration', 'Training loss')
    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    """

    def __init__(self, loss_curve, *, estimator_name=None):
        self.loss_curve = np.asarray(loss_curve, dtype=np.float64).reshape(-1)
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None, log_scale=False, **kwargs):
        """Draw the loss curve.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        name : str, default=None
            Legend label; ``estimator_name`` when ``None``. No legend when both are ``None``.
        log_scale : bool, default=False
            Use a logarithmic loss axis, useful when the loss falls by orders of magnitude.
            Losses of exactly zero are not drawn on a logarithmic axis.
        **kwargs : dict
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : LossCurveDisplay
            The display, with ``line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from autopoly.plotting import LossCurveDisplay
        >>> fig, ax = plt.subplots()
        >>> display = LossCurveDisplay([4.0, 1.0, 0.25]).plot(ax=ax, log_scale=True)
        >>> display.ax_ is ax, ax.get_yscale()
        (True, 'log')
        >>> plt.close(fig)
        """
        plt = _import_pyplot("LossCurveDisplay.plot")
        if ax is None:
            _, ax = plt.subplots()
        name = self.estimator_name if name is None else name
        iterations = np.arange(1, self.loss_curve.shape[0] + 1)
        if name is not None:
            kwargs.setdefault("label", name)
        (self.line_,) = ax.plot(iterations, self.loss_curve, **kwargs)
        if log_scale:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Training loss")
        if name is not None:
            ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, log_scale=False, **kwargs):
        """Plot the loss curve of a fitted estimator.

        Parameters
        ----------
        estimator : estimator instance
            A fitted estimator with a ``loss_curve_`` attribute, such as
            :class:`~autopoly.TorchPolyRegressor`, or a fitted meta-estimator around one,
            followed to the estimator it predicts with, as deep as they nest: a
            :class:`~sklearn.pipeline.Pipeline`'s last step, the ``best_estimator_`` of a
            search such as :class:`~sklearn.model_selection.GridSearchCV` (fitted with
            ``refit=True``), the ``regressor_`` of a
            :class:`~sklearn.compose.TransformedTargetRegressor` (its loss is in the units of
            the transformed target), or the ``estimator_`` of a wrapper such as
            :class:`~sklearn.linear_model.RANSACRegressor`.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        name : str, default=None
            Legend label; when ``None``, the class name of the estimator whose curve is
            plotted (``'TorchPolyRegressor'`` for a search around one).
        log_scale : bool, default=False
            Use a logarithmic loss axis. Losses of exactly zero are not drawn on it.
        **kwargs : dict
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : LossCurveDisplay
            The display, with ``line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import numpy as np
        >>> import matplotlib.pyplot as plt
        >>> from autopoly import TorchPolyRegressor
        >>> from autopoly.plotting import LossCurveDisplay
        >>> x = np.linspace(-3, 3, 20).reshape(-1, 1)
        >>> model = TorchPolyRegressor(degree=2).fit(x, x.ravel() ** 2)
        >>> display = LossCurveDisplay.from_estimator(model)
        >>> len(display.line_.get_xdata()) == model.n_iter_
        True
        >>> display.ax_.get_legend().get_texts()[0].get_text()
        'TorchPolyRegressor'
        >>> plt.close(display.figure_)

        A fitted search plots its best estimator:

        >>> from sklearn.model_selection import GridSearchCV
        >>> search = GridSearchCV(TorchPolyRegressor(), {"degree": [1, 2]}, cv=2)
        >>> search = search.fit(x, x.ravel() ** 2)
        >>> display = LossCurveDisplay.from_estimator(search)
        >>> len(display.loss_curve) == search.best_estimator_.n_iter_
        True
        >>> plt.close(display.figure_)
        """
        final, curve = _loss_curve_of(estimator)
        name = type(final).__name__ if name is None else name
        display = cls(curve, estimator_name=name)
        return display.plot(ax=ax, log_scale=log_scale, **kwargs)
