"""The command line: ``python -m autopoly`` runs the demo, ``python -m autopoly fit`` fits a CSV.

The ``autopoly`` console script runs the same :func:`main`; messages name the command the way
it was started (:func:`program_name`).
"""

import argparse
import codecs
import contextlib
import io
import math
import os
import re
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._csv import FAST_PARSER, SLOW_PARSER, InputError, read_csv
from ._losses import LOSSES
from ._version import __version__

PROG = "python -m autopoly"
SCRIPT = "autopoly"

# The tutorial's problem: y = x^2 + 2x + 3 sampled at 20 points x ~ 5 N(0, 1).
DEMO_COEF = {"1": 3.0, "x": 2.0, "x^2": 1.0}
DEMO_SAMPLES = 20
DEMO_SCALE = 5.0


# --------------------------------------------------------------------------------- the demo


def demo_data(seed=0):
    """The tutorial's 20 samples of ``y = x**2 + 2*x + 3`` with ``x ~ 5 N(0, 1)``."""
    x = DEMO_SCALE * np.random.default_rng(seed).standard_normal(DEMO_SAMPLES)
    y = DEMO_COEF["x^2"] * x**2 + DEMO_COEF["x"] * x + DEMO_COEF["1"]
    return x.reshape(-1, 1), y


def run_demo(seed=0):
    """Fit the tutorial's problem and print the true and fitted coefficients and the fit time."""
    from ._regressor import TorchPolyRegressor

    X, y = demo_data(seed)
    print(
        f"autopoly demo: {DEMO_SAMPLES} samples of y = x^2 + 2x + 3 with "
        f"x ~ {DEMO_SCALE:g} N(0, 1) (seed {seed})."
    )
    model = TorchPolyRegressor(degree=2)
    start = time.perf_counter()
    model.fit(X, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(X, y)
    second = time.perf_counter() - start

    names = ["1", *model.get_feature_names_out(["x"])]
    fitted = [model.intercept_, *model.coef_]
    rows = [
        (name, f"{DEMO_COEF[name]:g}", f"{value:.8f}")
        for name, value in zip(names, fitted, strict=True)
    ]
    print("\nFitted TorchPolyRegressor(degree=2):\n")
    _print_table(("term", "true", "fitted"), rows)
    print(
        f"\nFit time: {first:.3f} s for the first fit in this process (it includes torch's "
        f"one-off start-up), {second:.3f} s for a second identical fit; "
        f"{model.n_iter_} iterations on {model.device_}."
    )
    return 0


# ------------------------------------------------------------------------------ fit DATA.csv


def _check_out(out, data):
    """Fail before reading and fitting when the model could not be saved where asked.

    Returns the format, ``'skops'`` or ``'joblib'``. The check creates (and removes) the file
    when it does not exist yet: only writing proves that a folder is writable.
    """
    if out is None:
        return None
    if not out.strip():
        raise InputError(
            "--out is empty; give the file to save the model to, e.g. --out model.joblib."
        )
    if os.path.isdir(out):
        raise InputError(
            f"--out {out!r} is a folder; name a file in it, e.g. "
            f"--out {os.path.join(out, 'model.joblib')}."
        )
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"cannot save to {out!r}: {folder!r} is a file, not a folder.")
    if not os.path.isdir(folder):
        raise InputError(f"cannot save to {out!r}: the folder {folder!r} does not exist.")
    if os.path.exists(out) and os.path.exists(data) and os.path.samefile(out, data):
        raise InputError(f"--out {out!r} is the data file; saving there would overwrite it.")
    try:
        if os.path.exists(out):
            with open(out, "ab"):  # writable, and left as it is until the save
                pass
        else:
            with open(out, "xb"):
                pass
            os.remove(out)
    except OSError as exc:
        raise InputError(
            f"cannot save to {out!r}: {exc.strerror or exc}; choose a file in a folder you "
            "can write to."
        ) from exc
    if not out.lower().endswith(".skops"):
        return "joblib"
    try:
        import skops.io  # noqa: F401
    except ImportError:
        raise InputError(
            f"saving to {out!r} uses the skops format, which needs skops: install it with "
            "`pip install skops` (autopoly's `skops` extra), or give --out a name ending in "
            ".joblib or .pkl to save with joblib."
        ) from None
    return "skops"


def _save(model, out, fmt):
    if fmt == "skops":
        import skops.io

        skops.io.dump(model, out)
        return (
            "skops format; load it with skops.io.load(path, "
            "trusted=['autopoly._regressor.TorchPolyRegressor'])"
        )
    import joblib

    joblib.dump(model, out)
    return "joblib format; load it with joblib.load(path), only from a source you trust"


def run_fit(args, prog):
    """The ``fit`` command: read, fit, print the coefficients (and CV score), save."""
    fmt = _check_out(args.out, args.data)
    table = read_csv(args.data, args.target, args.features, args.sep, args.encoding)
    X, y, features = table.X, table.y, list(table.features)
    n_rows = X.shape[0]

    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_score

    from ._regressor import TorchPolyRegressor

    model = TorchPolyRegressor(
        degree=args.degree,
        loss=args.loss,
        quantile=args.quantile,
        alpha=args.alpha,
        optimizer=args.optimizer,
        lr=args.lr,
        max_iter=args.max_iter,
        device=args.device,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    _check_options(model, args, X.shape)
    print(
        f"Read {_count(n_rows, 'row')} from {args.data} with {table.parser}: target "
        f"{args.target!r}, features {', '.join(repr(name) for name in features)}."
    )
    with _warnings_as_lines(prog):
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
        print(
            f"Fitted {model!r} in {elapsed:.3f} s on {model.device_} "
            f"({_count(model.n_iter_, 'iteration')})."
        )
        names = ["1 (intercept)", *model.get_feature_names_out(features)]
        values = [model.intercept_, *model.coef_]
        print()
        _print_table(
            ("term", "coefficient"), [(n, f"{v:.10g}") for n, v in zip(names, values, strict=True)]
        )
        if n_rows >= 2:
            print(f"\nR^2 on the training data: {model.score(X, y):.6f}")
        else:
            print("\nR^2 on the training data: not defined for a single row.")
        if args.cv is not None:
            folds = KFold(n_splits=args.cv, shuffle=True, random_state=args.random_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # said once, for the fit
                scores = cross_val_score(
                    clone(model).set_params(verbose=0), X, y, cv=folds, error_score="raise"
                )
            print(
                f"{args.cv}-fold cross-validated R^2: {scores.mean():.6f} "
                f"(std {scores.std():.6f}; folds: {', '.join(f'{s:.4f}' for s in scores)})"
            )
    if args.out is not None:
        # What validate_data records from a DataFrame: the CLI fits arrays, which have no
        # column names, so the saved model checks the names a DataFrame passed to predict has.
        model.feature_names_in_ = np.asarray(features, dtype=object)
        try:
            how = _save(model, args.out, fmt)
        except (OSError, ValueError, TypeError) as exc:
            raise _SaveError(
                f"the model was fitted but could not be saved to {args.out!r}: {exc}"
            ) from exc
        print(f"Saved the model to {args.out} ({how}).")
    return 0


class _SaveError(Exception):
    """Saving failed after the fit (a full disk, say): exit status 1, not 2."""


@contextlib.contextmanager
def _warnings_as_lines(prog):
    """Print each warning as one ``PROG fit: warning: ...`` line on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog} fit: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each warning once per place in the code
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.showwarning = show
        yield


def _check_options(model, args, shape):
    """Refuse, before fitting, options the estimator or the data cannot take (exit status 2)."""
    from ._device import resolve_device
    from ._setup import check_size
    from ._spec import resolve_spec

    n_rows, n_features = shape
    try:
        model._validate_params()
        spec = resolve_spec(model)
        device = resolve_device(model.device)
    except (ValueError, TypeError) as exc:
        raise InputError(_as_options(str(exc))) from exc
    try:
        check_size(spec, n_features, 1, device)
    except (ValueError, MemoryError) as exc:
        raise InputError(
            f"{_as_options(str(exc))} On the command line: use a lower --degree, or fewer "
            "--features."
        ) from exc
    if args.cv is not None and 2 * args.cv > n_rows:
        # A fold of one row has no R^2 (sklearn would score it nan, with a warning).
        fix = f"use --cv {min(5, n_rows // 2)} or fewer" if n_rows >= 4 else "leave out --cv"
        raise InputError(
            f"--cv {args.cv} needs at least {2 * args.cv} rows, two per fold for its R^2, but "
            f"the data have {n_rows}; {fix}."
        )


def _as_options(message):
    """An estimator's message with its parameters named as this command's options."""
    message = re.sub(
        r"The '(\w+)' parameter of TorchPolyRegressor",
        lambda m: f"--{m.group(1).replace('_', '-')}",
        message,
    )
    return re.sub(
        r"\b(degree|device|optimizer|alpha|quantile|max_iter|lr)=",
        lambda m: f"--{m.group(1).replace('_', '-')} ",
        message,
    )


def _silence_stdout():
    """Point stdout at devnull, so that the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


# ----------------------------------------------------------------------------------- parsing


def program_name(argv0=None):
    """``'autopoly'`` when started as the console script, else ``'python -m autopoly'``."""
    argv0 = sys.argv[0] if argv0 is None and sys.argv else (argv0 or "")
    stem = os.path.splitext(os.path.basename(argv0))[0]  # autopoly.exe, autopoly-script.py
    return SCRIPT if stem in (SCRIPT, f"{SCRIPT}-script") else PROG


def _bounded(kind, minimum, strict=False, maximum=None):
    """An argparse type: ``kind`` ('integer' or 'number') at least (or above) ``minimum``.

    Numbers must be finite; with ``maximum``, at most (``strict``: below) it.
    """
    cast = int if kind == "integer" else float
    low = ">" if strict else ">="
    expected = f"{_article(kind)} {low} {minimum}"
    if maximum is not None:
        expected = f"{_article(kind)} in {'(' if strict else '['}{minimum}, {maximum}" + (
            ")" if strict else "]"
        )

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_article(kind)}, got {text!r}") from None
        above = value > minimum if strict else value >= minimum  # False for NaN
        below = maximum is None or (value < maximum if strict else value <= maximum)
        if not (above and below and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


def _article(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _column(text):
    """An argparse type: a column name, not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected a column name of the CSV file's header, got an empty name"
        )
    return text.strip()


def _columns(text):
    """An argparse type: comma-separated column names, each named once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated column names, e.g. --features a,b, got {text!r}; leave "
            "out --features to use every column except the target"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"lists {', '.join(map(repr, repeated))} more than once; name each input column once"
        )
    return names


def _separator(text):
    r"""An argparse type: one character; ``\t`` (typed literally) or ``tab`` for a tab."""
    if text in ("\\t", "tab", "TAB"):
        return "\t"
    if len(text) != 1:
        raise argparse.ArgumentTypeError(
            f"expected one character (e.g. ';'), or \\t for a tab; got {text!r}"
        )
    if text in ('"', "\n", "\r"):
        raise argparse.ArgumentTypeError(
            f"the separator cannot be the quote character or a line break; got {text!r}"
        )
    return text


def _encoding_name(text):
    """An argparse type: an encoding Python knows."""
    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"unknown encoding {text!r}; use e.g. utf-8, latin-1, cp1252 or utf-16"
        ) from None
    return text


def build_parser(prog=PROG):
    """The ``argparse`` parser of ``python -m autopoly`` and its ``demo`` and ``fit`` commands."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Polynomial regression fitted with PyTorch optimizers. Without a command, runs the "
            "demo: fits y = x^2 + 2x + 3 from 20 samples and prints the coefficients."
        ),
        epilog=f"Run '{prog} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"autopoly {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="fit the tutorial's example and print true and fitted coefficients (the default)",
        description=(
            "Draw 20 samples of y = x^2 + 2x + 3 with x ~ 5 N(0, 1), fit "
            "TorchPolyRegressor(degree=2), and print the true and fitted coefficients and the "
            "fit time."
        ),
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the random samples (default: %(default)s)"
    )

    fit = commands.add_parser(
        "fit",
        help="fit a polynomial to a CSV file and print its coefficients",
        description=(
            "Fit TorchPolyRegressor to a CSV file with a header row, print the coefficient of "
            "each term (named after the columns), the training R^2 and, with --cv, the "
            f"cross-validated R^2, and optionally save the model. The numbers are read by "
            f"{FAST_PARSER}, so memory stays near the numbers' own size (8 bytes each); a file "
            f"it cannot parse is read again with {SLOW_PARSER}, which names the first problem "
            "and its line."
        ),
        epilog=(
            f"Example: {prog} fit data.csv --target y --degree 3 --cv 5 --out model.skops. "
            "Exit status: 0 on success, 2 for bad arguments or data, 1 when the fit fails."
        ),
    )
    fit.add_argument("data", metavar="DATA.csv", help="CSV file with a header row of column names")
    fit.add_argument(
        "--target", required=True, type=_column, metavar="COLUMN", help="the column to predict"
    )
    fit.add_argument(
        "--features",
        type=_columns,
        metavar="COL,COL",
        help="comma-separated input columns (default: every column except the target)",
    )
    fit.add_argument(
        "--degree",
        type=_bounded("integer", 0),
        default=2,
        help="largest degree of the polynomial terms (default: %(default)s)",
    )
    fit.add_argument(
        "--cv",
        type=_bounded("integer", 2),
        metavar="K",
        help="also print the K-fold cross-validated R^2 (rows shuffled with --random-state)",
    )
    fit.add_argument(
        "--device",
        default="cpu",
        help="where to compute: cpu, cuda, cuda:N, mps, or auto for the best available "
        "(default: %(default)s)",
    )
    fit.add_argument(
        "--loss",
        choices=LOSSES,
        default="squared_error",
        help="data-fit loss (default: %(default)s)",
    )
    fit.add_argument(
        "--quantile",
        type=_bounded("number", 0, strict=True, maximum=1),
        default=0.5,
        help="the quantile that --loss quantile predicts, in (0, 1) (default: %(default)s)",
    )
    fit.add_argument(
        "--alpha",
        type=_bounded("number", 0),
        default=0.0,
        help="strength of the L2 penalty on the coefficients (default: %(default)s)",
    )
    fit.add_argument(
        "--optimizer",
        default="lbfgs",
        help="a torch.optim optimizer by name, e.g. lbfgs, adam, sgd (default: %(default)s)",
    )
    fit.add_argument(
        "--lr",
        type=_bounded("number", 0, strict=True),
        default=1.0,
        help="learning rate of the optimizer (default: %(default)s)",
    )
    fit.add_argument(
        "--max-iter",
        type=_bounded("integer", 1),
        default=200,
        help="most optimizer iterations (default: %(default)s)",
    )
    fit.add_argument(
        "--random-state",
        type=_bounded("integer", 0, maximum=2**32 - 1),
        default=0,
        help="seed for the cross-validation folds and any shuffling, in [0, 2**32 - 1] "
        "(default: %(default)s)",
    )
    fit.add_argument(
        "--sep",
        type=_separator,
        default=",",
        help="field separator of the CSV file: one character, or \\t for a tab "
        "(default: %(default)r)",
    )
    fit.add_argument(
        "--encoding",
        type=_encoding_name,
        help="text encoding of the CSV file, e.g. latin-1, cp1252, utf-16 (default: UTF-8, "
        "or UTF-16/32 when the file starts with their byte-order mark)",
    )
    fit.add_argument(
        "--out",
        metavar="MODEL",
        help="save the fitted model here: skops format for a name ending in .skops (needs the "
        "skops package), joblib otherwise (e.g. model.joblib); checked before the fit",
    )
    fit.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="print optimizer progress; -vv also shows a progress bar (needs tqdm)",
    )
    return parser


def main(argv=None):
    """Run the ``autopoly`` command line and return its exit status.

    Without a command it runs the demo: 20 samples of ``y = x**2 + 2*x + 3`` with
    ``x ~ 5 N(0, 1)`` are fitted by ``TorchPolyRegressor(degree=2)``, and the true and fitted
    coefficients and the fit time are printed. ``fit DATA.csv --target COLUMN`` fits a CSV file;
    ``--help`` lists the options.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments, without the program name; ``sys.argv[1:]`` when ``None``.

    Returns
    -------
    status : int
        0 on success, 2 for bad arguments or data, 1 when the fit fails.

    Examples
    --------
    >>> from autopoly.__main__ import main
    >>> main(["demo"])  # doctest: +ELLIPSIS
    autopoly demo: 20 samples of y = x^2 + 2x + 3 with x ~ 5 N(0, 1) (seed 0).
    <BLANKLINE>
    Fitted TorchPolyRegressor(degree=2):
    <BLANKLINE>
    term  true  fitted
    1     3     3.00000000
    x     2     2.00000000
    x^2   1     1.00000000
    <BLANKLINE>
    Fit time: ... s for the first fit in this process (...), ... s for a second identical fit; ...
    0
    """
    prog = program_name()
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        return run_demo(getattr(args, "seed", 0))
    try:
        return run_fit(args, prog)
    except InputError as exc:
        print(f"{prog} fit: error: {exc}", file=sys.stderr)
        return 2
    except _SaveError as exc:
        print(f"{prog} fit: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FloatingPointError, MemoryError) as exc:
        print(f"{prog} fit: error: the fit failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog} fit: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output left (| head): stop quietly
        _silence_stdout()
        return 1
    except Exception as exc:  # noqa: BLE001 - the last resort: a line, not a traceback
        print(
            f"{prog} fit: error: the fit failed with {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
