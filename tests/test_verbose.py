"""Progress output: silent at verbose=0, summary lines at 1, a tqdm bar at 2 (tqdm optional)."""

import io
import re
import sys
import warnings

import numpy as np
import pytest

from autopoly import TorchPolyRegressor

LINE = re.compile(r"^Iteration (\d+), loss = (\S+), elapsed = (\d+\.\d\d)s$")
FINAL = re.compile(r"^(converged|stopped at max_iter) after (\d+) iterations, best loss = (\S+)$")


def _data():
    x = np.linspace(-3, 3, 40).reshape(-1, 1)
    return x, x.ravel() ** 2 + 2 * x.ravel() + 3


def _fit(capsys, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is not progress output
        model = TorchPolyRegressor(**params).fit(*_data())
    return model, capsys.readouterr()


@pytest.mark.parametrize("params", [{}, {"optimizer": "adam", "lr": 0.1, "max_iter": 50}])
def test_verbose_0_prints_nothing(capsys, params):
    _, captured = _fit(capsys, verbose=0, **params)
    assert captured.out == "" and captured.err == ""


def test_verbose_1_prints_every_10_iterations_and_a_summary(capsys):
    model, captured = _fit(capsys, verbose=1, optimizer="adam", lr=0.05, max_iter=35, tol=0.0)
    lines = captured.out.splitlines()
    progress = [LINE.match(line) for line in lines[:-1]]
    assert all(progress), lines
    iterations = [int(m.group(1)) for m in progress]
    assert iterations == [1, 10, 20, 30]
    # The printed loss is the loss curve's value at that iteration, in the units of y.
    for m in progress:
        assert float(m.group(2)) == pytest.approx(model.loss_curve_[int(m.group(1)) - 1], rel=1e-7)
    elapsed = [float(m.group(3)) for m in progress]
    assert elapsed == sorted(elapsed)
    final = FINAL.match(lines[-1])
    assert final and final.group(1) == "stopped at max_iter" and int(final.group(2)) == 35
    assert float(final.group(3)) == pytest.approx(model.best_loss_, rel=1e-7)
    assert captured.err == ""  # no bar at verbose=1


def test_verbose_1_reports_convergence(capsys):
    model, captured = _fit(capsys, verbose=1)
    lines = captured.out.splitlines()
    assert LINE.match(lines[0]).group(1) == "1"
    assert lines[-1].startswith(f"converged after {model.n_iter_} iterations")


def test_verbose_2_shows_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    _, captured = _fit(capsys, verbose=2, optimizer="adam", lr=0.05, max_iter=20, tol=0.0)
    assert "autopoly fit" in captured.err  # the bar's description
    assert "20/20" in captured.err
    assert "Iteration 10, loss = " in captured.out  # the lines still print


def test_verbose_2_without_tqdm_still_prints_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TorchPolyRegressor(verbose=2, optimizer="adam", lr=0.05, max_iter=20, tol=0.0).fit(*_data())
    captured = capsys.readouterr()
    hints = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and "tqdm, which is not installed" in str(w.message)
    ]
    assert len(hints) == 1 and "pip install tqdm" in hints[0]
    assert captured.err == ""
    assert "Iteration 20, loss = " in captured.out


def test_verbose_2_lines_are_written_above_the_bar_not_into_it(monkeypatch):
    # The bar (stderr) and the lines (stdout) share one terminal: every line must start on a
    # line of its own, not after the bar's text.
    pytest.importorskip("tqdm")
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TorchPolyRegressor(verbose=2, optimizer="adam", lr=0.05, max_iter=20, tol=0.0).fit(*_data())
    pieces = re.split(r"[\r\n]", terminal.getvalue())
    lines = [piece for piece in pieces if "Iteration" in piece]
    assert len(lines) == 3, pieces  # iterations 1, 10 and 20
    assert all(LINE.match(line) for line in lines), lines
    assert any("autopoly fit" in piece for piece in pieces)  # the bar was drawn
