"""The command line: ``python -m autopoly`` runs the demo, ``python -m autopoly fit`` fits a CSV."""

import argparse
import os
import sys
import time
import warnings

import numpy as np

from ._csv import InputError, read_csv
from ._losses import LOSSES
from ._version import __version__

PROG = "python -m autopoly"

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
    rows = [(name, f"{DEMO_COEF[name]:g}", f"{value:.8f}") for name, value in zip(names, fitted)]
    print("\nFitted TorchPolyRegressor(degree=2):\n")
    _print_table(("term", "true", "fitted"), rows)
    print(
        f"\nFit time: {first:.3f} s for the first fit in this process (it includes torch's "
        f"one-off start-up), {second:.3f} s for a second identical fit; "
        f"{model.n_iter_} iterations on {model.device_}."
    )
    return 0


# ------------------------------------------------------------------------------ fit DATA.csv


def _check_out(out):
    """Fail before fitting when the model could not be saved where asked."""
    if out is None:
        return None
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise InputError(f"cannot save to {out!r}: the folder {folder!r} does not exist.")
    if out.endswith(".skops"):
        try:
            import skops.io  # noqa: F401
        except ImportError:
            raise InputError(
                f"saving to {out!r} uses the skops format, which needs skops: install it with "
                "`pip install skops` (autopoly's `skops` extra), or give --out a name ending in .joblib or "
                ".pkl to save with joblib."
            ) from None
        return "skops"
    return "joblib"


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


def run_fit(args):
    """The ``fit`` command: read, fit, print the coefficients (and CV score), save."""
    X, y, features = read_csv(args.data, args.target, _split(args.features), args.sep)
    fmt = _check_out(args.out)

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, cross_val_score

    from ._regressor import TorchPolyRegressor

    model = TorchPolyRegressor(
        degree=args.degree, loss=args.loss, quantile=args.quantile, alpha=args.alpha,
        optimizer=args.optimizer,
        lr=args.lr, max_iter=args.max_iter, device=args.device, random_state=args.random_state,
        verbose=args.verbose,
    )
    _check_options(model, args, n_rows=X.shape[0])
    print(
        f"Read {X.shape[0]} rows from {args.data}: target {args.target!r}, "
        f"features {', '.join(repr(name) for name in features)}."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
    for warning in caught:
        print(f"{PROG} fit: warning: {warning.message}", file=sys.stderr)
    print(
        f"Fitted {model!r} in {elapsed:.3f} s on {model.device_} ({model.n_iter_} iterations)."
    )

    names = ["1 (intercept)", *model.get_feature_names_out(features)]
    values = [model.intercept_, *model.coef_]
    print()
    _print_table(("term", "coefficient"), [(n, f"{v:.10g}") for n, v in zip(names, values)])
    print(f"\nR^2 on the training data: {model.score(X, y):.6f}")

    if args.cv is not None:
        folds = KFold(n_splits=args.cv, shuffle=True, random_state=args.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_val_score(clone(model).set_params(verbose=0), X, y, cv=folds)
        print(
            f"{args.cv}-fold cross-validated R^2: {scores.mean():.6f} "
            f"(std {scores.std():.6f}; folds: {', '.join(f'{s:.4f}' for s in scores)})"
        )
    if args.out is not None:
        how = _save(model, args.out, fmt)
        print(f"Saved the model to {args.out} ({how}).")
    return 0


def _check_options(model, args, n_rows):
    """Refuse, before fitting, options the estimator or the data cannot take (exit status 2)."""
    from ._device import resolve_device
    from ._spec import resolve_spec

    try:
        model._validate_params()
        resolve_spec(model)
        resolve_device(model.device)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    if args.cv is not None and args.cv > n_rows:
        fix = f"use --cv {min(5, n_rows)} or fewer" if n_rows >= 2 else "leave out --cv"
        raise InputError(
            f"--cv {args.cv} needs at least {args.cv} rows, one per fold, but the data have "
            f"{n_rows}; {fix}."
        )


def _split(features):
    if features is None:
        return None
    names = [name.strip() for name in features.split(",") if name.strip()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(
            f"--features lists {', '.join(map(repr, repeated))} more than once; name each "
            "input column once."
        )
    return names


def _print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# ----------------------------------------------------------------------------------- parsing


def _bounded(kind, minimum, strict=False):
    """An argparse type: ``kind`` ('integer' or 'number') at least (or above) ``minimum``."""
    cast = int if kind == "integer" else float
    op = ">" if strict else ">="

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_article(kind)}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected {_article(kind)} {op} {minimum}, got {text}")
        return value

    return parse


def _article(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def build_parser():
    """The ``argparse`` parser of ``python -m autopoly`` and its ``demo`` and ``fit`` commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Polynomial regression fitted with PyTorch optimizers. Without a command, runs the "
            "demo: fits y = x^2 + 2x + 3 from 20 samples and prints the coefficients."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
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
            "cross-validated R^2, and optionally save the model."
        ),
        epilog=(
            f"Example: {PROG} fit data.csv --target y --degree 3 --cv 5 --out model.skops. "
            "Exit status: 0 on success, 2 for bad arguments or data, 1 when the fit fails."
        ),
    )
    fit.add_argument("data", metavar="DATA.csv", help="CSV file with a header row of column names")
    fit.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    fit.add_argument(
        "--features",
        metavar="COL,COL",
        help="comma-separated input columns (default: every column except the target)",
    )
    fit.add_argument(
        "--degree", type=_bounded("integer", 0), default=2,
        help="largest degree of the polynomial terms (default: %(default)s)",
    )
    fit.add_argument(
        "--cv", type=_bounded("integer", 2), metavar="K",
        help="also print the K-fold cross-validated R^2 (rows shuffled with --random-state)",
    )
    fit.add_argument(
        "--device", default="cpu",
        help="where to compute: cpu, cuda, cuda:N, mps, or auto for the best available "
        "(default: %(default)s)",
    )
    fit.add_argument(
        "--loss", choices=LOSSES, default="squared_error",
        help="data-fit loss (default: %(default)s)",
    )
    fit.add_argument(
        "--quantile", type=_bounded("number", 0, strict=True), default=0.5,
        help="the quantile that --loss quantile predicts, in (0, 1) (default: %(default)s)",
    )
    fit.add_argument(
        "--alpha", type=_bounded("number", 0), default=0.0,
        help="strength of the L2 penalty on the coefficients (default: %(default)s)",
    )
    fit.add_argument(
        "--optimizer", default="lbfgs",
        help="a torch.optim optimizer by name, e.g. lbfgs, adam, sgd (default: %(default)s)",
    )
    fit.add_argument(
        "--lr", type=_bounded("number", 0, strict=True), default=1.0,
        help="learning rate of the optimizer (default: %(default)s)",
    )
    fit.add_argument(
        "--max-iter", type=_bounded("integer", 1), default=200,
        help="most optimizer iterations (default: %(default)s)",
    )
    fit.add_argument(
        "--random-state", type=int, default=0,
        help="seed for the cross-validation folds and any shuffling (default: %(default)s)",
    )
    fit.add_argument(
        "--sep", default=",", help="field separator of the CSV file (default: %(default)r)"
    )
    fit.add_argument(
        "--out", metavar="MODEL",
        help="save the fitted model here: skops format for a name ending in .skops (needs the "
        "skops package), joblib otherwise (e.g. model.joblib)",
    )
    fit.add_argument(
        "-v", "--verbose", action="count", default=0,
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        return run_demo(getattr(args, "seed", 0))
    try:
        return run_fit(args)
    except InputError as exc:
        print(f"{PROG} fit: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FloatingPointError, MemoryError) as exc:
        print(f"{PROG} fit: error: the fit failed: {exc}", file=sys.stderr)
        return 1
