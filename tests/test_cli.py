"""The command line: the demo, ``fit DATA.csv`` end to end, and its messages for bad input."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from autopoly import TorchPolyRegressor
from autopoly import _cli as cli
from autopoly.__main__ import main
from autopoly._cli import build_parser, demo_data

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    """``python -m autopoly ARGS`` in a fresh interpreter, as a user would run it."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "autopoly", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def data_csv(tmp_path):
    """The exact y = 1 + 2a - ab + 0.5b^2, with a text column that is not an input."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-2, 2, 60), rng.uniform(-1, 1, 60)
    y = 1 + 2 * a - a * b + 0.5 * b**2
    path = tmp_path / "data.csv"
    lines = ["a,b,city,y"] + [
        f"{a[i]:.17g},{b[i]:.17g},{'Oslo' if i % 2 else 'Paris'},{y[i]:.17g}" for i in range(60)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow  # a fresh interpreter: seconds of importing torch
def test_demo_by_default_prints_true_and_fitted_coefficients_and_time():
    result = _run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "20 samples of y = x^2 + 2x + 3" in out
    table = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line[:2] in ("1 ", "x ", "x^")
    }
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


@pytest.mark.slow  # a fresh interpreter: seconds of importing torch
def test_fit_end_to_end_with_cv_and_skops(data_csv, tmp_path):
    pytest.importorskip("skops")
    import skops.io

    out = tmp_path / "model.skops"
    result = _run(
        "fit",
        str(data_csv),
        "--target",
        "y",
        "--features",
        "a,b",
        "--degree",
        "2",
        "--cv",
        "3",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    coef = {
        line.rsplit(None, 1)[0].strip(): float(line.rsplit(None, 1)[1])
        for line in lines[lines.index(next(row for row in lines if row.startswith("term"))) + 1 :]
        if line and not line.startswith(("R^2", "3-fold", "Saved"))
    }
    assert_allclose(
        [coef[k] for k in ["1 (intercept)", "a", "b", "a^2", "a b", "b^2"]],
        [1, 2, 0, 0, -1, 0.5],
        atol=1e-6,
    )
    assert "3-fold cross-validated R^2: 1.0000" in result.stdout
    model = skops.io.load(out, trusted=["autopoly._regressor.TorchPolyRegressor"])
    assert isinstance(model, TorchPolyRegressor) and model.degree == 2
    X = np.array([[0.5, -0.5], [1.0, 1.0]])
    # The model knows the CSV's column names.
    assert list(model.feature_names_in_) == ["a", "b"]
    pred = model.predict(pd.DataFrame(X, columns=["a", "b"]))
    assert_allclose(pred, 1 + 2 * X[:, 0] - X[:, 0] * X[:, 1] + 0.5 * X[:, 1] ** 2, atol=1e-6)


def test_fit_saves_with_joblib_for_other_names(data_csv, tmp_path, capsys):
    out = tmp_path / "model.joblib"
    assert (
        main(["fit", str(data_csv), "--target", "y", "--features", "b,a", "--out", str(out)]) == 0
    )
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
    assert (
        main(["fit", str(data_csv), "--target", "y", "--features", "a,b", "--out", str(out)]) == 2
    )
    captured = capsys.readouterr()
    assert "does not exist" in captured.err
    assert "Fitted" not in captured.out


def test_skops_missing_gives_install_hint(data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    out = tmp_path / "model.skops"
    assert (
        main(["fit", str(data_csv), "--target", "y", "--features", "a,b", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "pip install skops" in err and ".joblib" in err
    assert not out.exists()


def test_fit_failure_is_reported_without_traceback(data_csv, capsys):
    status = main(
        [
            "fit",
            str(data_csv),
            "--target",
            "y",
            "--features",
            "a",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "the fit failed: The loss became non-finite" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--optimizer", "nope"], "--optimizer 'nope' is not a torch.optim optimizer"),
        (["--optimizer", "Optimizer"], "--optimizer 'Optimizer' names torch.optim.Optimizer"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--cv", "1000"], "--cv 1000 needs at least 2000 rows, two per fold"),
        (
            ["--cv", "31"],
            "--cv 31 needs at least 62 rows, two per fold for its R^2, but the data "
            "have 60; use --cv 5 or fewer.",
        ),
        (["--degree", "1000"], "--degree 1000 on 2 features gives 501500 terms"),
    ],
)
def test_options_the_fit_cannot_take_exit_2_before_fitting(data_csv, capsys, options, message):
    status = main(["fit", str(data_csv), "--target", "y", "--features", "a,b", *options])
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert "Fitted" not in captured.out  # refused before fitting


def test_convergence_warning_is_printed_as_a_line(data_csv, capsys):
    args = [
        "fit",
        str(data_csv),
        "--target",
        "y",
        "--features",
        "a,b",
        "--optimizer",
        "sgd",
        "--lr",
        "0.001",
        "--max-iter",
        "3",
    ]
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
        (["fit", "x.csv", "--target", "y", "--alpha", "inf"], "--alpha: expected a number >= 0"),
        (["fit", "x.csv", "--target", "y", "--lr", "nan"], "--lr: expected a number > 0"),
        (
            ["fit", "x.csv", "--target", "y", "--quantile", "1"],
            "--quantile: expected a number in (0, 1), got 1",
        ),
        (
            ["fit", "x.csv", "--target", "y", "--random-state", "-1"],
            "--random-state: expected an integer in [0, 4294967295], got -1",
        ),
        (
            ["fit", "x.csv", "--target", "y", "--features", "a,a"],
            "--features: lists 'a' more than once",
        ),
        (["fit", "x.csv", "--target", ""], "--target: expected a column name"),
        (["fit", "x.csv", "--target", "y", "--encoding", "klingon"], "unknown encoding 'klingon'"),
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


# ------------------------------------------------------------------------ hardening: --out


def _fit(data, *options):
    return main(["fit", str(data), "--target", "y", "--features", "a,b", *options])


@pytest.mark.parametrize(
    "out, message",
    [
        ("{tmp}", "is a folder; name a file in it, e.g. --out {tmp}/model.joblib"),
        ("", "--out is empty"),
        ("   ", "--out is empty"),
        ("{data}/model.joblib", "'{data}' is a file, not a folder"),
        ("{data}", "is the data file; saving there would overwrite it"),
    ],
    ids=["folder", "empty", "blank", "inside-a-file", "the-data-file"],
)
def test_out_that_cannot_be_saved_to_fails_before_reading(data_csv, tmp_path, capsys, out, message):
    fields = {"tmp": str(tmp_path), "data": str(data_csv)}
    before = data_csv.read_bytes()
    assert _fit(data_csv, "--out", out.format(**fields)) == 2
    captured = capsys.readouterr()
    assert message.format(**fields) in captured.err
    assert "Read" not in captured.out and "Traceback" not in captured.err
    assert data_csv.read_bytes() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_out_in_a_folder_nobody_can_write_fails_before_fitting(data_csv, capsys):
    # /proc refuses new files even to root, for whom chmod would not.
    assert _fit(data_csv, "--out", "/proc/autopoly-model.joblib") == 2
    captured = capsys.readouterr()
    assert "cannot save to '/proc/autopoly-model.joblib'" in captured.err
    assert "Fitted" not in captured.out


def test_a_writable_out_is_not_left_behind_when_the_fit_fails(data_csv, tmp_path, capsys):
    out = tmp_path / "model.joblib"
    assert _fit(data_csv, "--optimizer", "sgd", "--lr", "1e6", "--out", str(out)) == 1
    assert not out.exists()  # the check's probe file is removed


def test_save_failure_after_the_fit_is_one_line(data_csv, tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(joblib, "dump", full_disk)
    assert _fit(data_csv, "--out", str(tmp_path / "model.joblib")) == 1
    err = capsys.readouterr().err
    assert "the model was fitted but could not be saved" in err and "No space left" in err
    assert "Traceback" not in err


def test_skops_extension_is_case_insensitive(data_csv, tmp_path, capsys):
    skops_io = pytest.importorskip("skops.io")
    out = tmp_path / "model.SKOPS"
    assert _fit(data_csv, "--out", str(out)) == 0
    assert "skops format" in capsys.readouterr().out
    model = skops_io.load(out, trusted=["autopoly._regressor.TorchPolyRegressor"])
    assert list(model.feature_names_in_) == ["a", "b"]


def test_saved_model_checks_column_names(data_csv, tmp_path):
    out = tmp_path / "model.joblib"
    assert _fit(data_csv, "--out", str(out)) == 0
    model = joblib.load(out)
    assert list(model.feature_names_in_) == ["a", "b"]
    frame = pd.DataFrame({"a": [0.5], "b": [1.0]})
    assert_allclose(model.predict(frame), [1 + 1 - 0.5 + 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame.rename(columns={"b": "c"}))


def test_unexpected_errors_are_one_line(data_csv, capsys, monkeypatch):
    def crash(self, X, y):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(TorchPolyRegressor, "fit", crash)
    assert _fit(data_csv) == 1
    err = capsys.readouterr().err
    assert "the fit failed with RuntimeError: CUDA out of memory" in err
    assert "Traceback" not in err


# ------------------------------------------------------------- hardening: separators, columns


def test_tab_separator_can_be_typed_as_backslash_t(tmp_path, capsys):
    path = tmp_path / "tabs.tsv"
    path.write_text("a\tb\ty\n" + "".join(f"{i}\t{i % 3}\t{2 * i + 1}\n" for i in range(12)))
    assert main(["fit", str(path), "--target", "y", "--degree", "1", "--sep", "\\t"]) == 0
    assert "'a', 'b'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "sep, message",
    [
        (";;", "expected one character (e.g. ';'), or \\t for a tab; got ';;'"),
        ("", "expected one character (e.g. ';'), or \\t for a tab; got ''"),
        ('"', "the separator cannot be the quote character"),
    ],
)
def test_bad_separators_exit_2(capsys, sep, message):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "x.csv", "--target", "y", "--sep", sep])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --sep: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize("features", ["", ",", " , "])
def test_features_naming_no_column_exit_2(capsys, features):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "x.csv", "--target", "y", "--features", features])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--features: expected comma-separated column names" in err
    assert "leave out --features" in err


def test_semicolon_file_without_sep_gets_a_hint(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;y\n1;2;3\n2;3;4\n")
    assert main(["fit", str(path), "--target", "y"]) == 2
    assert "pass --sep ';'" in capsys.readouterr().err


def test_unnamed_column_is_refused_as_an_input_but_allowed_unused(tmp_path, capsys):
    path = tmp_path / "index.csv"  # what pandas' to_csv writes with its index
    path.write_text(",a,y\n" + "".join(f"{i},{i / 2},{i + 1}\n" for i in range(10)))
    assert main(["fit", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "column 1 of" in err and "has no name in the header" in err and "--features" in err
    assert main(["fit", str(path), "--target", "y", "--features", "a", "--degree", "1"]) == 0
    assert "^" not in capsys.readouterr().out.split("term")[1].split("R^2")[0]


@pytest.mark.parametrize("marker", ["NA", "N/A", "null", "#N/A", ""])
def test_missing_value_markers_are_called_missing(tmp_path, capsys, marker):
    path = tmp_path / "na.csv"
    path.write_text(f"a,b,y\n1,2,3\n{marker},2,4\n")
    assert main(["fit", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "column 'a' of" in err and "on line 3" in err
    assert "missing value" in err or "empty value" in err
    assert "fill in or drop" in err and "--features" not in err


def test_non_numeric_target_is_not_told_to_choose_input_columns(tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text("a,y\n1,low\n2,high\n")
    assert main(["fit", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "column 'y'" in err and "Choose another --target" in err and "--features" not in err


# ---------------------------------------------------------------- hardening: encodings


def test_latin1_file_gets_an_encoding_hint_and_reads_with_encoding(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes("café,y\n1,2\n2,3\n3,5\n".encode("latin-1"))
    assert main(["fit", str(path), "--target", "y", "--degree", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "on line 1" in err and "--encoding latin-1" in err
    assert main(["fit", str(path), "--target", "y", "--degree", "1", "--encoding", "latin-1"]) == 0
    assert "'café'" in capsys.readouterr().out


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_byte_order_marks_are_recognized(tmp_path, capsys, encoding):
    path = tmp_path / "bom.csv"
    path.write_text("a,y\n1,2\n2,3\n3,5\n", encoding=encoding)
    assert main(["fit", str(path), "--target", "y", "--degree", "1"]) == 0
    assert "features 'a'" in capsys.readouterr().out


# ---------------------------------------------------------- hardening: small files, wording


def test_single_row_says_r2_is_undefined_without_warnings(tmp_path, capsys):
    path = tmp_path / "one.csv"
    path.write_text("a,y\n1,2\n")
    assert main(["fit", str(path), "--target", "y", "--degree", "1"]) == 0
    captured = capsys.readouterr()
    assert "Read 1 row from" in captured.out
    assert "R^2 on the training data: not defined for a single row" in captured.out
    assert "nan" not in captured.out
    assert "UndefinedMetricWarning" not in captured.err and "Traceback" not in captured.err


def test_counts_are_singular_for_one():
    from autopoly._cli import _count

    assert [_count(1, "row"), _count(2, "row"), _count(1, "iteration")] == [
        "1 row",
        "2 rows",
        "1 iteration",
    ]


def test_console_script_names_itself(data_csv, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/autopoly"])
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: autopoly fit") and "python -m" not in out
    assert main(["fit", str(data_csv), "--target", "price"]) == 2
    assert capsys.readouterr().err.startswith("autopoly fit: error: column 'price'")


def test_module_run_names_itself(data_csv, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(ROOT / "autopoly" / "__main__.py")])
    assert main(["fit", str(data_csv), "--target", "price"]) == 2
    assert capsys.readouterr().err.startswith("python -m autopoly fit: error:")


# ------------------------------------------------------------- hardening: the CSV reader


def _write(path, rows, header="a,b,city,y"):
    path.write_text(header + "\n" + "".join(rows))
    return path


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, 3)) * 10.0 ** rng.integers(-5, 6, (n, 3))
    return values, [
        f"{a!r},{b!r},{'Oslo' if i % 2 else 'Paris'},{y!r}\n"
        for i, (a, b, y) in enumerate(values.tolist())
    ]


def test_reader_parses_in_chunks_exactly(tmp_path, monkeypatch):
    from autopoly import _csv

    monkeypatch.setattr(_csv, "CHUNK_BYTES", 1000)  # dozens of chunks
    values, rows = _rows(500)
    rows.insert(250, "\n")  # a blank line is skipped
    table = _csv.read_csv(str(_write(tmp_path / "d.csv", rows)), "y", ["b", "a"])
    assert table.parser == _csv.FAST_PARSER
    assert table.features == ("b", "a")
    np.testing.assert_array_equal(table.X, values[:, [1, 0]])  # repr round-trips exactly
    np.testing.assert_array_equal(table.y, values[:, 2])
    assert table.X.flags.c_contiguous


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1.5,2,Oslo\n", "line 403 has 3 fields but the header has 4"),
        ("1.5,2,Oslo,3,4\n", "line 403 has 5 fields but the header has 4"),
        ("1.5,x,Oslo,3\n", "column 'b' of .* is not numeric: line 403 has 'x'"),
        ("1.5,2,Oslo,inf\n", "column 'y' of .* non-finite value 'inf' on line 403"),
        ("   \n", "line 403 holds only spaces"),
    ],
)
def test_reader_finds_a_problem_in_a_late_chunk_with_its_line(tmp_path, monkeypatch, bad, message):
    from autopoly import _csv

    monkeypatch.setattr(_csv, "CHUNK_BYTES", 1000)
    _, rows = _rows(500)
    rows[401] = bad  # line 403: the header is line 1
    with pytest.raises(_csv.InputError, match=message):
        _csv.read_csv(str(_write(tmp_path / "d.csv", rows)), "y", ["a", "b"])


def test_reader_falls_back_to_the_csv_module_and_says_so(tmp_path):
    from autopoly import _csv

    path = _write(tmp_path / "d.csv", ['1_000,"2",Oslo,3\n', "4,5,Paris,6\n"])
    table = _csv.read_csv(str(path), "y", ["a", "b"])
    np.testing.assert_array_equal(table.X, [[1000.0, 2.0], [4.0, 5.0]])
    assert table.parser.startswith(_csv.SLOW_PARSER) and "numpy.loadtxt could not" in table.parser


def test_reader_memory_stays_near_the_numbers(tmp_path, monkeypatch):
    # The old reader held every row as Python strings: ~19x the numbers' 8 bytes each.
    import tracemalloc

    from autopoly import _csv

    monkeypatch.setattr(_csv, "CHUNK_BYTES", 2**18)
    n = 20_000
    path = tmp_path / "big.csv"
    rng = np.random.default_rng(1)
    with open(path, "w") as f:
        f.write(",".join(f"x{i}" for i in range(10)) + ",y\n")
        np.savetxt(f, rng.standard_normal((n, 11)), delimiter=",", fmt="%.17g")
    numbers = n * 11 * 8
    tracemalloc.start()
    try:
        table = _csv.read_csv(str(path), "y")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.X.shape == (n, 10)
    assert peak < 3 * numbers, peak / numbers


def test_help_and_output_name_the_parser(data_csv, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "numpy.loadtxt's C parser" in help_text and "Python's csv module" in help_text
    assert _fit(data_csv) == 0
    assert "with numpy.loadtxt's C parser" in capsys.readouterr().out


# ------------------------------------------------------- the reliability page's CLI table

DOC = ROOT / "docs" / "reliability.rst"
_NUMBERS = "a,b,y\n1,2,3\n2,3,5\n3,1,4\n4,4,8\n"

# (case id, data.csv's content, arguments after "fit data.csv", exit status, message part):
# the rows of the command-line table in docs/reliability.rst, run from data.csv's folder.
CLI_CASES = [
    (
        "cli-unknown-column",
        _NUMBERS,
        ["--target", "price"],
        2,
        "column 'price' (--target) not found in 'data.csv'; its columns are: a, b, y.",
    ),
    ("cli-semicolon-file", _NUMBERS.replace(",", ";"), ["--target", "y"], 2, "pass --sep ';'."),
    (
        "cli-non-numeric-value",
        "a,y\n1,2\nx,3\n",
        ["--target", "y"],
        2,
        "column 'a' of 'data.csv' is not numeric: line 3 has 'x'.",
    ),
    (
        "cli-missing-value",
        "a,y\n1,2\nNA,3\n",
        ["--target", "y"],
        2,
        "column 'a' of 'data.csv' has a missing value ('NA') on line 3",
    ),
    (
        "cli-short-row",
        "a,y\n1,2\n3\n",
        ["--target", "y"],
        2,
        "'data.csv' line 3 has 1 fields but the header has 2",
    ),
    (
        "cli-unnamed-column",
        ",a,y\n0,1,2\n1,2,3\n",
        ["--target", "y"],
        2,
        "column 1 of 'data.csv' has no name in the header",
    ),
    (
        "cli-not-utf8",
        "café,y\n1,2\n".encode("latin-1"),
        ["--target", "y"],
        2,
        "'data.csv' is not UTF-8 text",
    ),
    (
        "cli-bad-separator",
        _NUMBERS,
        ["--target", "y", "--sep", ";;"],
        2,
        "argument --sep: expected one character (e.g. ';'), or \\t for a tab; got ';;'",
    ),
    (
        "cli-no-features",
        _NUMBERS,
        ["--target", "y", "--features", ","],
        2,
        "argument --features: expected comma-separated column names",
    ),
    (
        "cli-bad-option-value",
        _NUMBERS,
        ["--target", "y", "--alpha", "inf"],
        2,
        "argument --alpha: expected a number >= 0, got inf",
    ),
    (
        "cli-degree-too-large",
        _NUMBERS,
        ["--target", "y", "--degree", "1000"],
        2,
        "--degree 1000 on 2 features gives 501500 terms",
    ),
    (
        "cli-out-folder",
        _NUMBERS,
        ["--target", "y", "--out", "."],
        2,
        "--out '.' is a folder; name a file in it, e.g. --out ./model.joblib.",
    ),
    (
        "cli-out-empty",
        _NUMBERS,
        ["--target", "y", "--out", ""],
        2,
        "--out is empty; give the file to save the model to, e.g. --out model.joblib.",
    ),
    (
        "cli-out-data-file",
        _NUMBERS,
        ["--target", "y", "--out", "data.csv"],
        2,
        "--out 'data.csv' is the data file; saving there would overwrite it.",
    ),
    (
        "cli-fit-fails",
        _NUMBERS,
        ["--target", "y", "--optimizer", "sgd", "--lr", "1e6"],
        1,
        "the fit failed: The loss became non-finite",
    ),
]


def _run_case(tmp_path, monkeypatch, capsys, content, args):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        status = main(["fit", "data.csv", *args])
    except SystemExit as exc:
        status = exc.code
    return status, " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    "content, args, status, message",
    [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES],
)
def test_cli_bad_input_exits_with_one_clear_line(
    tmp_path, monkeypatch, capsys, content, args, status, message
):
    code, err = _run_case(tmp_path, monkeypatch, capsys, content, args)
    assert code == status
    assert message in err and "Traceback" not in err


def _cli_section():
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("\nThe command line\n") : text.index("\nWhen a fit fails\n")]


def test_reliability_doc_lists_every_cli_case():
    documented = re.findall(r"^\s*\* - ``([\w-]+)``", _cli_section(), flags=re.MULTILINE)
    assert sorted(documented) == sorted(case[0] for case in CLI_CASES)


@pytest.mark.parametrize(
    "content, args, case",
    [pytest.param(c[1], c[2], c[0], id=c[0]) for c in CLI_CASES],
)
def test_reliability_doc_quotes_the_current_cli_message(
    tmp_path, monkeypatch, capsys, content, args, case
):
    """The table's message is what the command prints today; "…" stands for a part left out."""
    rows = {row.split("``", 1)[0]: row for row in re.split(r"\n   \* - ``", _cli_section())[1:]}
    fields = re.split(r"\n     - ", rows[case].split("\n\n", 1)[0])
    quoted = re.match(r"``(.*?)``", " ".join(fields[3].split())).group(1)
    _, err = _run_case(tmp_path, monkeypatch, capsys, content, args)
    for part in quoted.split("…"):
        assert part.strip(" .") in err, (part, err)


def test_a_closed_output_pipe_ends_quietly(monkeypatch, capsys):
    # `autopoly fit data.csv | head -1`: the reader leaves, the next print fails.
    def closed(args, prog):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "run_fit", closed)
    assert main(["fit", "data.csv", "--target", "y"]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("bound", [None, 1], ids=["counted", "too-small"])
def test_reader_handles_every_line_ending_and_grows_past_its_bound(
    tmp_path, monkeypatch, ending, bound
):
    from autopoly import _csv

    if bound is not None:  # the arrays must grow, on both paths
        monkeypatch.setattr(_csv, "_count_lines", lambda path: bound)
    path = tmp_path / "d.csv"
    path.write_bytes(ending.join(["a,b,y", "1,2,3", "2,3,5", "3,1,4"]).encode())
    table = _csv.read_csv(str(path), "y")
    np.testing.assert_array_equal(table.X, [[1, 2], [2, 3], [3, 1]])
    np.testing.assert_array_equal(table.y, [3, 5, 4])
    path.write_bytes(ending.join(["a,b,y", "1_0,2,3", "2,3,5", "3,1,4"]).encode())
    np.testing.assert_array_equal(_csv.read_csv(str(path), "y").X[:, 0], [10, 2, 3])
