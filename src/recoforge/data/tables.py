"""Reading tables from files: CSV/TSV, Parquet and JSON lines, with errors naming file and line.

Every delimited-text line must have as many fields as the header (or as the first line of
a header-less file): pandas would otherwise take an extra first field as the row index and
shift every column, or fill a short row with NaN. Id columns are read as text (never
inferred as numbers, so "007" stays "007") and converted later by the id rule of
:func:`~recoforge.data.ids.parse_id_column`. Memory is O(file size); the field-count pass
streams the file in blocks of :data:`BLOCK_BYTES`.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from recoforge.errors import ConfigError, DataError, require

TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".dat": "\t"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
SUPPORTED_FORMATS = ("CSV (.csv), TSV (.tsv, .txt, .dat), Parquet (.parquet) and JSON lines "
                     "(.jsonl, .json: one object per line); text may be compressed "
                     "(.gz, .bz2, .xz)")
BLOCK_BYTES = 1 << 24
_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open,
                                                 ".xz": lzma.open}
_UNSUPPORTED = {".xlsx": "an Excel workbook", ".xls": "an Excel workbook",
                ".zip": "a ZIP archive", ".feather": "a Feather file", ".h5": "an HDF5 file",
                ".hdf5": "an HDF5 file", ".pkl": "a pickle", ".pickle": "a pickle",
                ".npy": "a NumPy array", ".npz": "a NumPy archive", ".db": "a database",
                ".sqlite": "a SQLite database", ".zst": "a Zstandard archive"}
_MAGIC = ((b"PAR1", "a Parquet file (name it .parquet)"), (b"PK\x03\x04", "a ZIP archive or "
          "Excel workbook"), (b"\xd0\xcf\x11\xe0", "an Excel/Office file"),
          (b"\x1f\x8b", "gzip-compressed (name it .gz)"), (b"\x89HDF", "an HDF5 file"),
          (b"SQLite format 3", "a SQLite database"), (b"%PDF", "a PDF document"),
          (b"\x80", "a pickle or other binary file"))
_PARSER_LINE = re.compile(r"line (\d+)")
# pandas' default missing-value markers; id columns treat only an empty field as missing
_NA_MARKERS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
               "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
               "null"]


def _unsupported(path: Path, what: str) -> DataError:
    return DataError(f"{path.name}: {what} is not a supported format; supported: "
                     f"{SUPPORTED_FORMATS}")


def file_format(path: Path) -> tuple[str, str, Callable[..., IO[bytes]]]:
    """(format, suffix without compression, opener) for a file name.

    Format is "parquet", "json" or "text" (any other suffix is delimited text).
    """
    suffixes = [s.lower() for s in path.suffixes]
    opener: Callable[..., Any] = open
    if suffixes and suffixes[-1] in _OPENERS:
        opener = _OPENERS[suffixes[-1]]
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _UNSUPPORTED:
        raise _unsupported(path, _UNSUPPORTED[suffix])
    if suffix == ".parquet":
        if opener is not open:
            raise _unsupported(path, "a compressed Parquet file")
        return "parquet", suffix, opener
    return ("json" if suffix in JSON_SUFFIXES else "text"), suffix, opener


def check_file(path: Path) -> None:
    """A readable, non-empty regular file, or a DataError saying what it is instead."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"{path}: is not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def check_encoding(encoding: str) -> bool:
    """Whether ``encoding`` is ASCII-compatible; DataError for an unknown encoding."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(f"unknown encoding {encoding!r} (e.g. 'utf-8', 'latin-1', "
                        f"'cp1252', 'utf-16')") from None
    try:
        return 'a,;\t|:"\r\n'.encode(encoding) == b'a,;\t|:"\r\n'
    except UnicodeError:
        return False


def check_text(path: Path, opener: Callable[..., IO[bytes]], ascii_like: bool) -> None:
    """DataError for a binary file (known magic bytes, or NUL bytes in the first block)."""
    try:
        with opener(path, "rb") as handle:
            head = handle.read(1 << 13)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path.name}: cannot read the file ({exc})") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _unsupported(path, f"{what}")
    if ascii_like and b"\x00" in head:
        raise _unsupported(path, f"a binary file (NUL byte at position {head.index(0)})")


def check_separator(sep: str) -> None:
    if not isinstance(sep, str) or not sep or sep in ('"', "\n", "\r"):
        raise ConfigError(f"sep must be a non-empty string other than a quote or a line "
                          f"break, got {sep!r}")


# --------------------------------------------------------------------------- field counts
def _field_error(path: Path, line: int, found: int, expected: int, n_bad: int,
                 header: bool) -> DataError:
    origin = "the header" if header else "line 1"
    more = f"; {n_bad - 1} more such lines" if n_bad > 1 else ""
    hint = (" (a value containing the separator must be quoted)" if found > expected
            else " (a field is missing)")
    fields = f"{found} field{'s' if found != 1 else ''}"
    return DataError(f"{path.name}, line {line}: malformed line: {fields}, expected "
                     f"{expected} as in {origin}{hint}{more}")


def _blocks(path: Path, opener: Callable[..., IO[bytes]]) -> Iterator[bytes]:
    with opener(path, "rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            yield block


def _count_fields_fast(path: Path, opener: Callable[..., IO[bytes]],
                       sep: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block: (line numbers, field counts, is-blank) of its complete lines.

    Raises _NeedsCsv on quotes or bare carriage returns (then the csv module counts).
    """
    sep_byte = ord(sep)

    def counts() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        carry_seps = carry_len = line_no = 0
        for block in _blocks(path, opener):
            if b'"' in block or block.count(b"\r") != block.count(b"\r\n"):
                raise _NeedsCsv
            buf = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(buf == 10)
            seps = np.flatnonzero(buf == sep_byte)
            before = np.searchsorted(seps, ends)
            per_line = np.diff(np.concatenate(([0], before)))
            starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else ends
            lengths = ends - starts
            if len(ends):
                per_line[0] += carry_seps
                lengths[0] += carry_len
                cr = buf[np.maximum(ends - 1, 0)] == 13
                lengths = lengths - cr
                yield (np.arange(line_no + 1, line_no + 1 + len(ends)), per_line + 1,
                       lengths <= 0)
                line_no += len(ends)
                carry_seps = len(seps) - int(before[-1])
                carry_len = len(buf) - int(ends[-1]) - 1
            else:
                carry_seps += len(seps)
                carry_len += len(buf)
        if carry_len:
            yield (np.array([line_no + 1]), np.array([carry_seps + 1]), np.array([False]))

    return counts()


class _NeedsCsv(Exception):
    """Raised inside the fast field counter when the file needs the csv module."""


def _count_fields_csv(path: Path, opener: Callable[..., IO[bytes]], sep: str,
                      encoding: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Field counts with quoting (single-character sep) or pandas' regex split (longer)."""
    splitter = re.compile(sep) if len(sep) > 1 else None
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding=encoding,
                                                     newline="" if splitter is None else None) \
            as text:
        if splitter is not None:
            for number, line in enumerate(text, start=1):
                line = line.rstrip("\r\n")
                parts = line.split() if sep == r"\s+" else splitter.split(line)
                yield np.array([number]), np.array([len(parts)]), np.array([not line])
            return
        reader = csv.reader(text, delimiter=sep)
        previous = 0
        for row in reader:
            yield np.array([previous + 1]), np.array([len(row)]), np.array([not row])
            previous = reader.line_num


def check_field_counts(path: Path, opener: Callable[..., IO[bytes]], sep: str, encoding: str,
                       ascii_like: bool, expected: int | None, header: bool) -> int:
    """Check that every non-blank line has ``expected`` fields (default: as the first line).

    Returns the expected count. Raises DataError naming the first line that differs.
    """
    use_fast = ascii_like and len(sep) == 1 and ord(sep) < 128
    sources = [_count_fields_fast(path, opener, sep)] if use_fast else []
    sources.append(_count_fields_csv(path, opener, sep, encoding))
    for source in sources:
        try:
            return _check_counts(path, source, expected, header)
        except _NeedsCsv:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _check_counts(path: Path, counts: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  expected: int | None, header: bool) -> int:
    first_bad: tuple[int, int] | None = None
    n_bad = 0
    for lines, fields, blank in counts:
        keep = ~blank
        if expected is None and keep.any():
            expected = int(fields[keep][0])
        bad = keep & (fields != expected)
        if bad.any():
            if first_bad is None:
                pos = int(np.flatnonzero(bad)[0])
                first_bad = (int(lines[pos]), int(fields[pos]))
            n_bad += int(bad.sum())
    if first_bad is not None:
        assert expected is not None
        raise _field_error(path, first_bad[0], first_bad[1], expected, n_bad, header)
    return expected or 0


def header_fields(path: Path, opener: Callable[..., IO[bytes]], sep: str,
                  encoding: str) -> list[str]:
    """The first line's fields, split as pandas splits them."""
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") \
            as text:
        first = text.readline().rstrip("\r\n")
    if len(sep) > 1:
        return first.split() if sep == r"\s+" else re.split(sep, first)
    return next(csv.reader([first], delimiter=sep), [])


# --------------------------------------------------------------------------- readers
def parser_error(path: Path, exc: Exception) -> DataError:
    """A DataError naming the file and line of a pandas tokenizer error."""
    text = str(exc).replace("Error tokenizing data. C error: ", "")
    match = _PARSER_LINE.search(text)
    where = f"{path.name}, line {match.group(1)}" if match else path.name
    detail = text.split(". Error could possibly")[0].strip()
    return DataError(f"{where}: malformed line ({detail})")


def decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path.name}: cannot decode byte at position {exc.start} as {encoding}; "
                     f"pass encoding= (e.g. 'latin-1'; CLI: --encoding)")


def na_values_for(columns: Sequence[Any], id_columns: Sequence[Any]) -> dict[Any, list[str]]:
    """Missing-value markers per column: only an empty field for ids ("NA" is an id)."""
    return {col: ([""] if col in id_columns else _NA_MARKERS) for col in columns}


def read_json_lines(path: Path, opener: Callable[..., IO[bytes]], encoding: str,
                    id_columns: Sequence[Any]) -> pd.DataFrame:
    """One JSON object per line, all with the same fields (blank lines are empty rows).

    A file holding a single JSON array of objects is read too. Id columns keep their
    JSON types (strings stay strings); other columns get inferred dtypes.
    """
    try:
        with opener(path, "rb") as raw:
            text = raw.read().decode(encoding)
    except UnicodeDecodeError as exc:
        raise decode_error(path, encoding, exc) from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path.name}: not valid JSON ({exc})") from None
        lines = [(i + 1, rec) for i, rec in enumerate(records)]
        where = "record"
    else:
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                lines.append((number, {}))
                continue
            try:
                lines.append((number, json.loads(line)))
            except ValueError as exc:
                raise DataError(f"{path.name}, line {number}: not valid JSON ({exc})") \
                    from None
        where = "line"
    return _records_frame(path, lines, where, id_columns)


def _records_frame(path: Path, lines: list[tuple[int, Any]], where: str,
                   id_columns: Sequence[Any]) -> pd.DataFrame:
    fields: list[str] | None = None
    for number, record in lines:
        if not isinstance(record, dict):
            raise DataError(f"{path.name}, {where} {number}: expected a JSON object, got "
                            f"{type(record).__name__}")
        if not record:
            continue
        if fields is None:
            fields = list(record)
        elif set(record) != set(fields):
            missing = [f for f in fields if f not in record]
            extra = [f for f in record if f not in fields]
            raise DataError(f"{path.name}, {where} {number}: fields differ from the first "
                            f"object (missing {missing}, extra {extra})")
    if fields is None:
        raise DataError(f"{path}: no data rows")
    frame = pd.DataFrame([rec for _, rec in lines], columns=fields, dtype=object)
    for col in fields:
        if col not in id_columns:
            frame[col] = frame[col].infer_objects()
    return drop_trailing_blank_rows(frame)


def read_parquet(path: Path, usecols: Sequence[Any] | None) -> pd.DataFrame:
    require("pyarrow", "parquet")
    try:
        return pd.read_parquet(path, columns=list(usecols) if usecols else None)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path.name}: cannot read parquet file ({exc})") from None
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ...) # noqa: BLE001
        raise DataError(f"{path.name}: cannot read parquet file ({exc})") from None


def drop_trailing_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank lines are kept while parsing (so line numbers stay true); drop those at the end."""
    if frame.empty:
        return frame
    blank = frame.isna().all(axis=1).to_numpy()
    if not blank[-1]:
        return frame
    last = len(blank) - 1
    while last >= 0 and blank[last]:
        last -= 1
    return frame.iloc[: last + 1]
