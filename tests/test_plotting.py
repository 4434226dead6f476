"""LossCurveDisplay: sklearn's Display conventions, and a clear error without matplotlib."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import BaggingRegressor
from sklearn.linear_model import RANSACRegressor, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autopoly import TorchPolyRegressor
from autopoly.plotting import LossCurveDisplay

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model():
    x = np.linspace(-3, 3, 30).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 40 Adam steps do not converge; the curve is the point
        return TorchPolyRegressor(optimizer="adam", lr=0.1, max_iter=40, tol=0.0).fit(
            x, x.ravel() ** 2 - x.ravel()
        )


def test_from_estimator_produces_a_labelled_figure(model):
    display = LossCurveDisplay.from_estimator(model)
    assert isinstance(display.figure_, matplotlib.figure.Figure)
    assert display.ax_.figure is display.figure_
    assert display.ax_.get_xlabel() == "Iteration"
    assert display.ax_.get_ylabel() == "Training loss"
    assert_allclose(display.line_.get_xdata(), np.arange(1, model.n_iter_ + 1))
    assert_allclose(display.line_.get_ydata(), model.loss_curve_)
    assert [t.get_text() for t in display.ax_.get_legend().get_texts()] == ["TorchPolyRegressor"]
    # The figure renders.
    display.figure_.canvas.draw()


def test_works_with_a_given_ax_and_plot_kwargs(model):
    fig, (left, right) = plt.subplots(1, 2)
    display = LossCurveDisplay.from_estimator(
        model, ax=right, name="adam", log_scale=True, color="red", linestyle="--"
    )
    assert display.ax_ is right and display.figure_ is fig
    assert left.get_lines() == [] and right.get_lines() == [display.line_]
    assert right.get_yscale() == "log"
    assert display.line_.get_color() == "red" and display.line_.get_linestyle() == "--"
    assert right.get_legend().get_texts()[0].get_text() == "adam"


def test_two_curves_share_one_ax(model):
    first = LossCurveDisplay.from_estimator(model, name="first")
    second = LossCurveDisplay([3.0, 2.0, 1.0], estimator_name="second").plot(ax=first.ax_)
    assert second.ax_ is first.ax_ and len(first.ax_.get_lines()) == 2
    assert [t.get_text() for t in first.ax_.get_legend().get_texts()] == ["first", "second"]


def test_plot_without_name_has_no_legend():
    display = LossCurveDisplay([2.0, 1.0]).plot()
    assert display.ax_.get_legend() is None


def test_log_scale_with_a_zero_loss_draws_without_warning():
    # The squared error of an exact fit reaches 0.0, which a log axis cannot show.
    display = LossCurveDisplay([10.0, 1.0, 0.0]).plot(log_scale=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        display.figure_.canvas.draw()
    assert display.ax_.get_yscale() == "log"


def test_pipeline_uses_its_last_step(model):
    x = np.linspace(-3, 3, 30).reshape(-1, 1)
    pipe = make_pipeline(StandardScaler(), TorchPolyRegressor()).fit(x, x.ravel() ** 2)
    display = LossCurveDisplay.from_estimator(pipe)
    assert_allclose(display.line_.get_ydata(), pipe[-1].loss_curve_)
    assert display.estimator_name == "TorchPolyRegressor"


def test_unfitted_estimator_is_refused():
    with pytest.raises(ValueError, match="needs a fitted estimator with a `loss_curve_`.*Call fit"):
        LossCurveDisplay.from_estimator(TorchPolyRegressor())
    with pytest.raises(ValueError, match="got StandardScaler: StandardScaler is not fitted by"):
        LossCurveDisplay.from_estimator(StandardScaler().fit([[0.0], [1.0]]))


X_LINE = np.linspace(-3, 3, 30).reshape(-1, 1)
Y_LINE = X_LINE.ravel() ** 2


def _search(**params):
    search = GridSearchCV(TorchPolyRegressor(), {"degree": [1, 2]}, cv=3, **params)
    return search.fit(X_LINE, Y_LINE)


@pytest.mark.parametrize(
    "make, inner",
    [
        (lambda: _search(), lambda m: m.best_estimator_),
        (
            lambda: TransformedTargetRegressor(
                TorchPolyRegressor(), func=np.log1p, inverse_func=np.expm1
            ).fit(X_LINE, Y_LINE),
            lambda m: m.regressor_,
        ),
        # Nested: a search over a pipeline, and a target transform around a pipeline.
        (
            lambda: GridSearchCV(
                make_pipeline(StandardScaler(), TorchPolyRegressor()),
                {"torchpolyregressor__degree": [1, 2]},
                cv=3,
            ).fit(X_LINE, Y_LINE),
            lambda m: m.best_estimator_[-1],
        ),
        (
            lambda: TransformedTargetRegressor(
                make_pipeline(StandardScaler(), TorchPolyRegressor()),
                transformer=StandardScaler(),
            ).fit(X_LINE, Y_LINE),
            lambda m: m.regressor_[-1],
        ),
        (
            lambda: RANSACRegressor(TorchPolyRegressor(), min_samples=10, random_state=0).fit(
                X_LINE, Y_LINE
            ),
            lambda m: m.estimator_,
        ),
    ],
    ids=[
        "grid-search",
        "transformed-target",
        "search-over-pipeline",
        "target-around-pipeline",
        "ransac",
    ],
)
def test_meta_estimators_plot_the_estimator_they_predict_with(make, inner):
    fitted = make()
    display = LossCurveDisplay.from_estimator(fitted)
    assert_allclose(display.line_.get_ydata(), inner(fitted).loss_curve_)
    assert display.estimator_name == "TorchPolyRegressor"


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: GridSearchCV(TorchPolyRegressor(), {"degree": [1, 2]}),
            r"got GridSearchCV, whose TorchPolyRegressor is not fitted|got GridSearchCV\. Call fit",
        ),
        (lambda: TransformedTargetRegressor(TorchPolyRegressor()), r"got Transformed.*Call fit"),
        (lambda: _search(refit=False), r"fitted with refit=False.*Set refit=True.*best_params_"),
        (
            lambda: MultiOutputRegressor(TorchPolyRegressor()).fit(X_LINE, np.c_[Y_LINE, Y_LINE]),
            r"holds 2 fitted estimators in estimators_: pass one.*estimators_\[0\]",
        ),
        (
            lambda: BaggingRegressor(TorchPolyRegressor(), n_estimators=2).fit(X_LINE, Y_LINE),
            r"holds 2 fitted estimators in estimators_",
        ),
        (
            lambda: make_pipeline(StandardScaler(), Ridge()).fit(X_LINE, Y_LINE),
            r"got Pipeline, whose final estimator Ridge has none",
        ),
        (lambda: [1.0, 0.5], r"got list, which is not an estimator"),
    ],
    ids=[
        "unfitted-search",
        "unfitted-transformed-target",
        "refit-false",
        "multi-output",
        "bagging",
        "pipeline-without-curve",
        "not-an-estimator",
    ],
)
def test_meta_estimators_without_a_curve_say_what_to_pass(make, message):
    with pytest.raises(ValueError, match=message):
        LossCurveDisplay.from_estimator(make())


def test_missing_matplotlib_gives_install_hint(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"needs matplotlib.*pip install matplotlib"):
        LossCurveDisplay.from_estimator(model)


@pytest.mark.slow  # a fresh interpreter: seconds of importing torch
def test_module_imports_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from autopoly.plotting import LossCurveDisplay; LossCurveDisplay([1.0])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
