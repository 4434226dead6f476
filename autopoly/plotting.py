"""Plots of fitted estimators, following scikit-learn's Display conventions.

matplotlib is an optional dependency (``pip install matplotlib``, autopoly's ``plot`` extra); this module imports
without it and only the plotting calls need it.
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


def _loss_curve_of(estimator):
    """The ``loss_curve_`` of a fitted estimator, or of the last step of a fitted Pipeline."""
    final = estimator
    if not hasattr(final, "loss_curve_") and hasattr(final, "steps"):
        final = final.steps[-1][1]
    curve = getattr(final, "loss_curve_", None)
    if curve is None:
        raise ValueError(
            "LossCurveDisplay.from_estimator needs a fitted estimator with a `loss_curve_` "
            "attribute (a fitted TorchPolyRegressor, or a Pipeline ending in one); got "
            f"{type(estimator).__name__}, which has none. Call fit first."
        )
    return final, curve


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
            :class:`~autopoly.TorchPolyRegressor`, or a fitted
            :class:`~sklearn.pipeline.Pipeline` whose last step has one.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        name : str, default=None
            Legend label; the estimator's class name when ``None``.
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
        """
        final, curve = _loss_curve_of(estimator)
        name = type(final).__name__ if name is None else name
        display = cls(curve, estimator_name=name)
        return display.plot(ax=ax, log_scale=log_scale, **kwargs)
