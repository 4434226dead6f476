"""The command line: the demo, ``fit DATA.csv`` end to end, and its messages for bad input."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose

from autopoly import TorchPolyRegressor
from autopoly.__main__ import main
from autopoly._cli import build_parser, demo_data

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    """``python -m autopoly ARGS`` in a fresh interpreter, as a user would run it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "autopoly", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )


@pytest.fixture
def data_csv(tmp_path):
    """y = 1 + 2a - ab + 0.5b^2 (exact) with a text column that is not an input."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-2, 2, 60), rng.uniform(-1, 1, 60)
    y = 1 + 2 * a - a * b + 0.5 * b**2
    path = tmp_path / "data.csv"
    lines = ["a,b,city,y"] + [
        f"{a[i]:.17g},{b[i]:.17g},{'Oslo' if i % 2 else 'Paris'},{y[i]:.17g}" for i in range(60)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_demo_by_default_prints_true_and_fitted_coefficients_and_time():
    result = _run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "20 samples of y = x^2 + 2x + 3" in out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:2] in ("1 ", "x ", "x^")}
    assert {k: float(v[0]) for k, v in table.items()} == {"1": 3.0, "x": 2.0, "x^2": 1.0}
    assert_allclose([float(table[k][1]) for k in ("1", "x", "x^2")], [3, 2, 1], atol=1e-6)
    assert "Fit time:" in out and " s for the first fit" in out
    assert result.stderr == ""


def test_demo_data_is_the_tutorials_problem():
    X, y = demo_data(seed=0)
    assert X.shape == (20, 1) and y.shape == (20,)
    assert_allclose(y, X[:, 0] ** 2 + 2 * X[:, 0] + 3)
    # x ~ 5 N(0, 1): the spread is that of a standard normal times five.
    assert 2 < X.std() < 8
    assert_allclose(demo_data(seed=0)[0], X)  # fixed seed


def test_fit_end_to_end_with_cv_and_skops(data_csv, tmp_path):
    pytest.importorskip("skops")
    import skops.io

    out = tmp_path / "model.skops"
    result = _run(
        "fit", str(data_csv), "--target", "y", "--features", "a,b", "--degree", "2",
        "--cv", "3", "--out", str(out),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    coef = {
        line.rsplit(None, 1)[0].strip(): float(line.rsplit(None, 1)[1])
        for line in lines[lines.index(next(l for l in lines if l.startswith("term"))) + 1:]
        if line and not line.startswith(("R^2", "3-fold", "Saved"))
    }
    assert_allclose(
        [coef[k] for k in ["1 (intercept)", "a", "b", "a^2", "a b", "b^2"]],
        [1, 2, 0, 0, -1, 0.5], atol=1e-6,
    )
    assert "3-fold cross-validated R^2: 1.0000" in result.stdout
    model = skops.io.load(out, trusted=["autopoly._regressor.TorchPolyRegressor"])
    assert isinstance(model, TorchPolyRegressor) and model.degree == 2
    X = np.array([[0.5, -0.5], [1.0, 1.0]])
    assert_allclose(model.predict(X), 1 + 2 * X[:, 0] - X[:, 0] * X[:, 1] + 0.5 * X[:, 1] ** 2, atol=1e-6)


def test_fit_saves_with_joblib_for_other_names(data_csv, tmp_path, capsys):
    out = tmp_path / "model.joblib"
    assert main(["fit", str(data_csv), "--target", "y", "--features", "b,a", "--out", str(out)]) == 0
    model = joblib.load(out)
    # Columns are used in the order given.
    assert list(model.get_feature_names_out(["b", "a"]))[:2] == ["b", "a"]
    assert "joblib format" in capsys.readouterr().out


def test_wrong_column_name_lists_the_columns(data_csv, capsys):
    assert main(["fit", str(data_csv), "--target", "price"]) == 2
    err = capsys.readouterr().err
    assert "column 'price' (--target) not found" in err
    assert "its columns are: a, b, city, y" in err
    assert main(["fit", str(data_csv), "--target", "y", "--features", "a,height"]) == 2
    assert "'height' (--features) not found" in capsys.readouterr().err


def test_non_numeric_column_names_column_line_and_value(data_csv, capsys):
    assert main(["fit", str(data_csv), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "column 'city'" in err and "is not numeric: line 2 has 'Paris'" in err
    assert "--features" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("a,y\n", "no data rows"),
        ("a,y\n1,2\n3\n", "line 3 has 1 fields but the header has 2"),
        ("a,y\n1,2\n,4\n", "column 'a' of .* has an empty value on line 3"),
        ("a,y\n1,2\n2,nan\n", "non-finite value 'nan' on line 3"),
        ("a,a,y\n1,2,3\n", "duplicated column names: a"),
        ("y\n1\n2\n", "no column besides the target 'y'"),
    ],
)
def test_bad_files_give_clear_messages(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["fit", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m autopoly fit: error: ")
    assert re.search(message, err), err


def test_missing_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.csv"), "--target", "y"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_out_folder_missing_fails_before_fitting(data_csv, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "model.joblib"
    assert main(["fit", str(data_csv), "--target", "y", "--features", "a,b", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.err
    assert "Fitted" not in captured.out


def test_skops_missing_gives_install_hint(data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    out = tmp_path / "model.skops"
    assert main(["fit", str(data_csv), "--target", "y", "--features", "a,b", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install skops" in err and ".joblib" in err
    assert not out.exists()


def test_fit_failure_is_reported_without_traceback(data_csv, capsys):
    status = main(["fit", str(data_csv), "--target", "y", "--features", "a",
                   "--optimizer", "sgd", "--lr", "1e6"])
    assert status == 1
    err = capsys.readouterr().err
    assert "the fit failed: The loss became non-finite" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--optimizer", "nope"], "optimizer='nope' is not a torch.optim optimizer"),
        (["--device", "tpu"], "device='tpu'"),
        (["--cv", "1000"], "--cv 1000 needs at least 1000 rows"),
        (["--features", "a,a"], "--features lists 'a' more than once"),
    ],
)
def test_options_the_fit_cannot_take_exit_2_before_fitting(data_csv, capsys, options, message):
    features = [] if options[0] == "--features" else ["--features", "a,b"]
    status = main(["fit", str(data_csv), "--target", "y", *features, *options])
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert "Fitted" not in captured.out  # refused before fitting


def test_convergence_warning_is_printed_as_a_line(data_csv, capsys):
    args = ["fit", str(data_csv), "--target", "y", "--features", "a,b",
            "--optimizer", "sgd", "--lr", "0.001", "--max-iter", "3"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning: TorchPolyRegressor stopped at max_iter=3" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "x.csv"], "the following arguments are required: --target"),
        (["fit", "x.csv", "--target", "y", "--cv", "1"], "--cv: expected an integer >= 2, got 1"),
        (["fit", "x.csv", "--target", "y", "--lr", "-1"], "--lr: expected a number > 0"),
        (["fit", "x.csv", "--target", "y", "--degree", "two"], "expected an integer, got 'two'"),
        (["fit", "x.csv", "--target", "y", "--loss", "l3"], "invalid choice: 'l3'"),
    ],
)
def test_bad_arguments_exit_2_with_usage(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_each_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in commands.choices["fit"]._actions:
        assert action.help, action
        for option in action.option_strings:
            assert option in out
    assert "skops" in out and "joblib" in out and "Exit status" in out


def test_verbose_flag_prints_progress(data_csv, capsys):
    assert main(["fit", str(data_csv), "--target", "y", "--features", "a,b", "-v"]) == 0
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out
