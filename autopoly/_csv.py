"""Reading the CLI's CSV input: target and input columns as floats, with messages for people."""

import csv
import math

import numpy as np


class InputError(Exception):
    """A problem with the command's input (file, columns, output name), told to the user as is."""


def read_csv(path, target, features=None, sep=","):
    """Read the target and input columns of a CSV file with a header row, as float arrays.

    Returns ``(X, y, features)``. Raises :class:`InputError` with a message for the user when
    the file cannot be read, a column is missing, or a used column holds a non-number.
    """
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}.") from exc
    with handle:
        reader = csv.reader(handle, delimiter=sep)
        try:
            header = [name.strip() for name in next(reader)]
            records = [(reader.line_num, row) for row in reader if row]
        except StopIteration:
            raise InputError(
                f"{path!r} is empty; expected a header row of column names, then one row per "
                "sample."
            ) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path!r} is not a readable CSV file: {exc}.") from exc

    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise InputError(f"{path!r} has duplicated column names: {', '.join(duplicated)}.")
    _check_columns([target], header, path, "--target")
    if features is None:
        features = [name for name in header if name != target]
        if not features:
            raise InputError(
                f"{path!r} has no column besides the target {target!r} to use as an input."
            )
    else:
        _check_columns(features, header, path, "--features")
        if target in features:
            raise InputError(f"the target {target!r} cannot also be one of --features.")
    if not records:
        raise InputError(f"{path!r} has a header row but no data rows.")

    for line, row in records:
        if len(row) != len(header):
            raise InputError(
                f"{path!r} line {line} has {len(row)} fields but the header has "
                f"{len(header)}; check the separator (--sep {sep!r})."
            )
    columns = {}
    for name in [*features, target]:
        index = header.index(name)
        columns[name] = np.array([_number(row[index], name, line, path) for line, row in records])
    X = np.column_stack([columns[name] for name in features])
    return X, columns[target], list(features)


def _check_columns(names, header, path, option):
    missing = [name for name in names if name not in header]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise InputError(
            f"column{'s' if len(missing) > 1 else ''} {listed} ({option}) not found in {path!r}; "
            f"its columns are: {', '.join(header)}."
        )


def _number(cell, column, line, path):
    text = cell.strip()
    if not text:
        raise InputError(
            f"column {column!r} of {path!r} has an empty value on line {line}; fill in or drop "
            "missing values first."
        )
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"column {column!r} of {path!r} is not numeric: line {line} has {text!r}. Convert it "
            "to numbers, or choose numeric input columns with --features."
        ) from None
    if not math.isfinite(value):
        raise InputError(
            f"column {column!r} of {path!r} has the non-finite value {text!r} on line {line}."
        )
    return value
