"""Files the CLI reads and writes: output tables, id lists, pair tables.

Output tables are written atomically (a temporary file in the target's folder, then a
rename), with the permissions an ordinary file gets under the user's umask. Id files are
read as text and parsed with the model's id type
(:meth:`~recoforge.data.ids.IdIndex.parse_external`), so that ``"007"`` is never taken
for the integer user ``7``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recoforge.errors import ConfigError, DataError

#: output extension -> format written
OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json"}


# ---------------------------------------------------------------------- writing
def check_output(out: Path, option: str = "--out") -> Path:
    """Validate an output file path before any work is done; returns the path to write.

    A symbolic link is written through (its target is replaced, the link kept), like a
    shell redirection.

    Raises
    ------
    ConfigError
        An extension other than .csv, .tsv, .parquet or .json, or a path that is a folder.
    """
    target = out.resolve() if out.is_symlink() else out
    if target.suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"{option} {out}: unknown output format {target.suffix or '(none)'!r}"
                          f"; use one of {', '.join(OUTPUT_FORMATS)}")
    if target.is_dir():
        raise ConfigError(f"{option} {out}: is a folder; give a file name such as "
                          f"{out / ('recommendations' + target.suffix)}")
    if target.parent.exists() and not target.parent.is_dir():
        raise ConfigError(f"{option} {out}: {target.parent} is a file, not a folder")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` to ``out`` (format by extension): temporary file, then rename.

    The file gets mode ``0o666 & ~umask`` (what ``open`` would give); a failure leaves
    the previous file, if any, untouched and no temporary file behind. Memory: the frame
    plus the format's write buffer.
    """
    out = check_output(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, f"cannot write there ({exc.strerror})", str(out)) from None
    os.close(fd)
    try:
        kind = OUTPUT_FORMATS[out.suffix.lower()]
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        elif kind == "json":
            frame.to_json(tmp, orient="records", force_ascii=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if kind == "tsv" else ",")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------- reading ids
def column_key(name: str | None, header: bool, option: str) -> str | int | None:
    """A column option as pandas names it: a name, or a position without a header."""
    if name is None or header:
        return name
    if not name.isdigit():
        raise ConfigError(f"{option} {name!r}: without a header, columns are named by "
                          f"position (0, 1, ...); e.g. {option} 0")
    return int(name)


def read_ids(path: Path, column: str, *, header: bool | None, encoding: str,
             vocabulary: Any) -> np.ndarray:
    """The ids listed in ``path``, read with the vocabulary's id type.

    ``header=None`` (the default): a table with a ``column`` column, or one bare id per
    line; a one-column file whose first line is neither ``column`` nor a known id is
    refused, naming the columns found (a header such as ``uid`` is never looked up as an
    id). ``header=True`` requires the ``column`` column; ``header=False`` reads a plain
    list of ids. Ids are text until the vocabulary reads them: in an integer vocabulary
    ``"007"`` stays the unknown id ``'007'``, it is never the user 7.
    """
    from recoforge.data.loaders import read_id_list, read_table

    if header is None:
        return read_id_list(path, column, vocabulary, encoding=encoding)
    frame = read_table(path, header=header, encoding=encoding,
                       id_columns=[column if header else 0],
                       columns=[column] if header else None)
    if not header and frame.shape[1] != 1:
        raise DataError(f"{path.name}: a list of ids without a header has one column, "
                        f"found {frame.shape[1]}")
    values = frame[column] if header else frame.iloc[:, 0]
    missing = values.isna().to_numpy()
    if missing.any():
        line = int(np.flatnonzero(missing)[0]) + (2 if header else 1)
        raise DataError(f"{path.name}, line {line}: empty {column} id")
    return vocabulary.parse_external(values)
