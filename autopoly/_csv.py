"""Reading the CLI's CSV input: the target and input columns as float arrays, in bounded memory.

The numbers are parsed by ``numpy.loadtxt``'s C parser, about :data:`CHUNK_BYTES` of text at a
time, straight into the final arrays: memory is the numbers (8 bytes each) plus one chunk,
whatever the file's size. loadtxt also checks that every row has the header's number of
fields. When it refuses a chunk, or reads a value that is not finite, the file is read again
line by line with Python's ``csv`` module, which knows line numbers: it names the first
problem, its line and column, or reads the file itself when only loadtxt objected (``1_000``,
which Python's ``float`` accepts).
"""

import codecs
import csv
import math
import warnings
from dataclasses import dataclass

import numpy as np

CHUNK_BYTES = 16 * 2**20
FAST_PARSER = "numpy.loadtxt's C parser, 16 MiB of text at a time"
SLOW_PARSER = "Python's csv module, line by line"

# Byte-order marks, longest first: UTF-32-LE's starts with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Cells that mean "no value" in files written by pandas, R, Excel, SAS and databases.
_MISSING = {"", "na", "n/a", "#n/a", "null", "none", "nil", "missing", "?", ".", "-"}
# Separators to suggest when the header has a single column that contains one of them.
_SEPARATORS = {";": "';'", "\t": "'\\t'", "|": "'|'", ",": "','", ":": "':'"}


class InputError(Exception):
    """A problem with the command's input (file, columns, output name), told to the user as is."""


@dataclass(frozen=True)
class Table:
    """The columns of a CSV file that a fit uses, and how they were read."""

    X: np.ndarray  # (n_rows, n_features), float64
    y: np.ndarray  # (n_rows,), float64
    features: tuple  # the input columns' names, in the order of X's columns
    parser: str  # how the numbers were parsed, for the user


@dataclass(frozen=True)
class _Layout:
    """Where the used columns are in each row, and what the messages call things."""

    path: str
    sep: str
    encoding: str
    n_fields: int
    feature_index: tuple
    target_index: int
    names: tuple  # the header's names


def read_csv(path, target, features=None, sep=",", encoding=None):
    """Read the target and input columns of a CSV file with a header row.

    Parameters
    ----------
    path : str
        The file.
    target : str
        The column to predict.
    features : list of str, default=None
        The input columns, in this order; every column except the target when ``None``.
    sep : str, default=','
        The field separator, one character.
    encoding : str, default=None
        The text encoding; UTF-8 when ``None``, unless the file starts with a UTF-16 or
        UTF-32 byte-order mark.

    Returns
    -------
    table : Table
        ``X``, ``y``, the feature names and a description of the parser used.

    Raises
    ------
    InputError
        With a message for the user when the file cannot be read, a column is missing or
        unnamed, or a used cell is not a finite number (with its line and column).
    """
    encoding = _encoding(path, encoding)
    bound = _count_lines(path)
    with _open(path, encoding) as handle:
        names, header_line = _header(handle, path, sep, encoding)
        layout = _layout(path, sep, encoding, names, target, features)
        X = np.empty((bound, len(layout.feature_index)))
        y = np.empty(bound)
        try:
            X, y, n_rows = _read_fast(handle, layout, X, y)
            parser = FAST_PARSER
        except _NotFast as exc:
            reason = exc.reason
        else:
            reason = None
    if reason is not None:
        with _open(path, encoding) as handle:
            X, y, n_rows = _read_slow(handle, layout, header_line, X, y)
        parser = f"{SLOW_PARSER} (numpy.loadtxt could not parse it: {reason})"
    if n_rows == 0:
        raise InputError(f"{path!r} has a header row but no data rows.")
    features = tuple(names[i] for i in layout.feature_index)
    # Views of the first rows: the pages past them were never touched, so never resident.
    return Table(X=X[:n_rows], y=y[:n_rows], features=features, parser=parser)


# ------------------------------------------------------------------------ file and header


def _encoding(path, encoding):
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise InputError(
                f"--encoding {encoding!r} is not an encoding Python knows; use e.g. utf-8, "
                "latin-1, cp1252 or utf-16."
            ) from None
        # A UTF-8 file may start with a byte-order mark, which is not part of the first name.
        return "utf-8-sig" if name == "utf-8" else encoding
    try:
        with open(path, "rb") as raw:
            start = raw.read(4)
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}.") from exc
    return next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8-sig")


def _count_lines(path):
    """The rows to allocate: the line ends (newlines, or carriage returns alone), plus one.

    A bound for UTF-8 and the other ASCII-compatible encodings; UTF-16 and UTF-32 line ends
    hold those bytes too, so it bounds them as well. The readers grow the arrays past it all
    the same, should a file have more rows.
    """
    newlines = returns = 0
    try:
        with open(path, "rb") as raw:
            for block in iter(lambda: raw.read(2**20), b""):
                newlines += block.count(b"\n")
                returns += block.count(b"\r")
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}.") from exc
    return max(newlines, returns) + 1


def _open(path, encoding):
    try:
        return open(path, newline="", encoding=encoding)
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}.") from exc


def _header(handle, path, sep, encoding):
    """The header's names (stripped) and its line number; blank lines before it are skipped."""
    reader = csv.reader(handle, delimiter=sep)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                return tuple(name.strip() for name in row), reader.line_num
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, exc) from exc
    except csv.Error as exc:
        raise InputError(f"{path!r} is not a readable CSV file: {exc}.") from exc
    raise InputError(
        f"{path!r} is empty; expected a header row of column names, then one row per sample."
    )


def _layout(path, sep, encoding, names, target, features):
    named = [name for name in names if name]
    duplicated = sorted({name for name in named if named.count(name) > 1})
    if duplicated:
        raise InputError(
            f"{path!r} has duplicated column names: {', '.join(duplicated)}; name each column "
            "once in the header."
        )
    _check_columns([target], names, path, sep, "--target")
    if features is None:
        unnamed = [i + 1 for i, name in enumerate(names) if not name]
        if unnamed:
            raise InputError(
                f"column {', '.join(map(str, unnamed))} of {path!r} has no name in the header "
                "(an index written by pandas' to_csv, or separators at the end of the line?), "
                "so it cannot be an input: name it in the header, or list the input columns "
                "with --features."
            )
        features = [name for name in names if name != target]
        if not features:
            raise InputError(
                f"{path!r} has no column besides the target {target!r} to use as an input."
            )
    else:
        _check_columns(features, names, path, sep, "--features")
        if target in features:
            raise InputError(f"the target {target!r} cannot also be one of --features.")
    return _Layout(
        path=path,
        sep=sep,
        encoding=encoding,
        n_fields=len(names),
        feature_index=tuple(names.index(name) for name in features),
        target_index=names.index(target),
        names=names,
    )


def _check_columns(wanted, names, path, sep, option):
    missing = [name for name in wanted if name not in names]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise InputError(
            f"column{'s' if len(missing) > 1 else ''} {listed} ({option}) not found in "
            f"{path!r}; its columns are: {', '.join(names)}.{_separator_hint(names, sep)}"
        )


def _separator_hint(fields, sep):
    """A hint to pass --sep when a single field holds another common separator."""
    if len(fields) != 1:
        return ""
    counts = {s: fields[0].count(s) for s in _SEPARATORS if s != sep}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return ""
    return (
        f" The line has a single field that contains {_SEPARATORS[best]}: if that separates "
        f"the columns, pass --sep {_SEPARATORS[best]}."
    )


# ------------------------------------------------------------------------- the fast path


class _NotFast(Exception):
    """loadtxt refused a chunk, or read a value that is not finite: read line by line."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _read_fast(handle, layout, X, y):
    """Fill ``X`` and ``y`` chunk by chunk with loadtxt.

    Returns ``X`` and ``y`` (new arrays if they had to grow) and the number of rows read.
    """
    used = set(layout.feature_index) | {layout.target_index}
    # Unused columns (text, say) are parsed as a constant, but still counted per row.
    skip = {i: _zero for i in range(layout.n_fields) if i not in used}
    n_rows = 0
    while True:
        try:
            lines = handle.readlines(CHUNK_BYTES)
        except UnicodeDecodeError as exc:
            raise _NotFast(f"{exc.reason} in {exc.encoding}") from exc
        if not lines:
            return X, y, n_rows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a chunk of blank lines: no data
            try:
                block = np.loadtxt(
                    lines,
                    delimiter=layout.sep,
                    comments=None,
                    quotechar='"',
                    dtype=np.float64,
                    converters=skip or None,
                    ndmin=2,
                )
            except ValueError as exc:
                raise _NotFast(str(exc).rstrip(".")) from exc
        if block.shape[0] == 0:
            continue
        if block.shape[1] != layout.n_fields:
            raise _NotFast(f"rows of {block.shape[1]} fields, not {layout.n_fields}")
        features = block[:, layout.feature_index]
        target = block[:, layout.target_index]
        if not (np.isfinite(features).all() and np.isfinite(target).all()):
            raise _NotFast("a value that is not finite")
        end = n_rows + block.shape[0]
        if end > X.shape[0]:  # not with these encodings (see _count_lines), but be safe
            X, y = _grown(X, y, end)
        X[n_rows:end] = features
        y[n_rows:end] = target
        n_rows = end


def _zero(_):
    return 0.0


def _grown(X, y, rows):
    size = max(rows, 2 * X.shape[0])
    X_new, y_new = np.empty((size, X.shape[1])), np.empty(size)
    X_new[: X.shape[0]], y_new[: y.shape[0]] = X, y
    return X_new, y_new


# ------------------------------------------------------------------------- the slow path


def _read_slow(handle, layout, header_line, X, y):
    """Read every row with Python's csv module, raising at the first problem with its line."""
    reader = csv.reader(handle, delimiter=layout.sep)
    columns = [(i, layout.names[i]) for i in layout.feature_index]
    target = (layout.target_index, layout.names[layout.target_index])
    n_rows = 0
    try:
        for row in reader:
            line = reader.line_num
            if line <= header_line or not row:
                continue
            _check_fields(row, line, layout)
            if n_rows == X.shape[0]:
                X, y = _grown(X, y, n_rows + 1)
            X[n_rows] = [_number(row[i], name, line, layout.path, False) for i, name in columns]
            y[n_rows] = _number(row[target[0]], target[1], line, layout.path, True)
            n_rows += 1
    except UnicodeDecodeError as exc:
        raise _encoding_error(layout.path, layout.encoding, exc) from exc
    except csv.Error as exc:
        raise InputError(
            f"{layout.path!r} is not a readable CSV file: {exc} (line {reader.line_num})."
        ) from exc
    return X, y, n_rows


def _check_fields(row, line, layout):
    if len(row) == layout.n_fields:
        return
    path = layout.path
    if len(row) == 1 and not row[0].strip():
        raise InputError(
            f"{path!r} line {line} holds only spaces; delete it (empty lines are skipped)."
        )
    raise InputError(
        f"{path!r} line {line} has {len(row)} fields but the header has "
        f"{layout.n_fields}; check the separator (--sep {_shown(layout.sep)}) and the "
        f"quoting of that line.{_separator_hint(row, layout.sep)}"
    )


def _shown(sep):
    return _SEPARATORS.get(sep, repr(sep))


def _number(cell, column, line, path, is_target):
    text = cell.strip()
    if text.lower() in _MISSING:
        what = "an empty value" if not text else f"a missing value ({text!r})"
        raise InputError(
            f"column {column!r} of {path!r} has {what} on line {line}; fill in or drop the "
            "rows with missing values first (e.g. pandas.read_csv(path).dropna())."
        )
    try:
        value = float(text)
    except ValueError:
        fix = (
            "choose another --target, or convert it to numbers"
            if is_target
            else "convert it to numbers, or choose numeric input columns with --features"
        )
        if "," in text and _is_float(text.replace(",", "")):
            fix = "write numbers without thousands separators or decimal commas (1234.5), or " + fix
        raise InputError(
            f"column {column!r} of {path!r} is not numeric: line {line} has {text!r}. "
            f"{fix[0].upper()}{fix[1:]}."
        ) from None
    if not math.isfinite(value):
        raise InputError(
            f"column {column!r} of {path!r} has the non-finite value {text!r} on line {line}; "
            "drop or replace the rows with non-finite values first."
        )
    return value


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encoding_error(path, encoding, exc):
    """The InputError for a file that is not text in ``encoding``, with the line if it can."""
    where = _undecodable_line(path, encoding)
    name = "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding
    return InputError(
        f"{path!r} is not {name} text ({exc.reason}{where}). Pass the file's encoding with "
        "--encoding, e.g. --encoding latin-1 (or cp1252, common for files saved on Windows; "
        "utf-16 for Excel's 'Unicode text')."
    )


def _undecodable_line(path, encoding):
    """``", line N: b'...'"`` for the first line that does not decode (ASCII-compatible)."""
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return ""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as raw:
            for number, line in enumerate(raw, start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError as exc:
                    return f" on line {number}: {line[exc.start : exc.end + 3]!r}"
    except OSError:
        pass
    return ""
