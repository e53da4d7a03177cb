"""Fitted encoders of one feature field each: text, categories, label lists, numbers.

Each encoder reads its source column(s) of a DataFrame and writes a sparse float32 block of
``width`` columns. ``fit`` learns the state from training rows (vocabulary and idf, category
list, label list, scaling statistics); ``transform`` encodes any rows with that state, so a
new item or user is encoded exactly as the training rows were. The state is plain arrays
and JSON scalars (``state`` / ``load_state``), never pickle. Hashed ids are in
:mod:`recoforge.data.hashing`.
:class:`~recoforge.data.features.FeatureEncoder` puts fields side by side.

Bad input raises :class:`~recoforge.errors.DataError` naming the field, column and row
label; a bad option raises :class:`~recoforge.errors.ConfigError`; a bad saved state raises
:class:`~recoforge.errors.ArtifactError`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.errors import ArtifactError, ConfigError, DataError

DEFAULT_LABEL_SEPARATORS = r"[|,;]"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more characters


# ----------------------------------------------------------------------------- helpers
def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA (not an empty string)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def category_key(value: Any) -> str | None:
    """The string a category value is matched by; None for a missing value.

    Integral floats read as integers (``1995.0`` -> ``"1995"``), so a column that pandas
    read as float because of a gap matches the same column read as integers.
    """
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def factorize_keys(values: pd.Series, what: str) -> tuple[np.ndarray, list[str | None]]:
    """Per row the position of its value among the distinct values, and their
    :func:`category_key` (None for missing). DataError for unhashable values (lists)."""
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
    except TypeError:
        pos = next(i for i, v in enumerate(values) if not isinstance(v, Hashable))
        raise DataError(f"{what}: column {values.name!r} {_row_label(values, pos)} holds "
                        f"{shown(values.iloc[pos])}, not a single value") from None
    return codes, [category_key(u) for u in uniques]


def shown(value: Any) -> str:
    """repr of a cell value, numpy scalars as plain Python (``inf``, not ``np.float64(inf)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _row_label(values: pd.Series, position: int) -> str:
    return f"row {values.index[position]!r}"


def text_values(values: pd.Series, what: str) -> list[str]:
    """A text column's values as strings (missing values: ""); DataError naming ``what``,
    the column and the row for anything else."""
    out = []
    for pos, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
        elif is_missing(value):
            out.append("")
        else:
            raise DataError(f"{what}: column {values.name!r} {_row_label(values, pos)} holds "
                            f"{shown(value)} ({type(value).__name__}), not text")
    return out


def one_hot(rows: np.ndarray, cols: np.ndarray, n_rows: int, width: int) -> sp.csr_matrix:
    mat = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                        shape=(n_rows, width))
    mat.sum_duplicates()
    return mat


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _strings(arrays: Mapping[str, np.ndarray], key: str, what: str) -> np.ndarray:
    """A saved 1-d array of distinct non-empty strings (ArtifactError otherwise)."""
    arr = arrays.get(key)
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind != "U" \
            or len(arr) == 0:
        raise ArtifactError(f"feature encoder part {key!r} ({what}) must be a non-empty "
                            f"1-d string array")
    if len(np.unique(arr)) != len(arr) or (np.char.str_len(arr) == 0).any():
        raise ArtifactError(f"feature encoder part {key!r} ({what}) has repeated or empty "
                            f"entries")
    return arr


def _finite(value: Any, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not np.isfinite(value) or (positive and value <= 0):
        raise ArtifactError(f"feature encoder {what} must be a finite "
                            f"{'positive ' if positive else ''}number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- base
class FieldEncoder:
    """One field: a name, a kind, source column(s) and a fitted block of ``width`` columns."""

    kind: ClassVar[str] = ""

    def __init__(self, columns: str | Sequence[str], name: str | None = None) -> None:
        cols = (columns,) if isinstance(columns, str) else tuple(columns)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise ConfigError(f"{self.kind} field needs source column names, got {columns!r}")
        if len(cols) > 1 and not self.multi_column:
            raise ConfigError(f"a {self.kind} field reads one column, got {list(cols)}")
        self.columns = cols
        self.name = cols[0] if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"field name must be a non-empty string, got {name!r}")
        self.fitted = False

    multi_column: ClassVar[bool] = False

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({list(self.columns)!r}, name={self.name!r}, {opts})"

    # subclasses implement these
    def options(self) -> dict[str, Any]:
        """Constructor options (JSON-able), besides columns and name."""
        return {}

    @property
    def width(self) -> int:
        raise NotImplementedError

    def fit(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        raise NotImplementedError

    def column_names(self) -> list[str]:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fitted state as (JSON scalars, arrays)."""
        return {}, {}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        """Set the fitted state from saved parts, validating it (ArtifactError)."""
        self.fitted = True


# ----------------------------------------------------------------------------- text
class TextField(FieldEncoder):
    """Words of a text column: TF-IDF (``"tfidf"``) or raw counts (``"count"``).

    x_tw = count(t, doc) * idf_t, rows L2-normalised, with the smooth idf
    ``idf_t = ln((1 + n) / (1 + df_t)) + 1`` of the training rows (scikit-learn's
    TfidfVectorizer). Words are lower-cased tokens of two or more word characters; words
    not in the training vocabulary are ignored. Values must be strings (missing = empty).
    """

    kind = "text"

    def __init__(self, column: str, name: str | None = None, *, method: str = "tfidf",
                 stop_words: str | None = "english", max_features: int | None = None,
                 min_df: int | float = 1) -> None:
        super().__init__(column, name)
        self.method = _choice(method, "text method", ("tfidf", "count"))
        if stop_words not in ("english", None):
            raise ConfigError(f"stop_words must be 'english' or None, got {stop_words!r}")
        if max_features is not None and (isinstance(max_features, bool)
                                         or not isinstance(max_features, int)
                                         or max_features < 1):
            raise ConfigError(f"max_features must be a positive integer, got {max_features!r}")
        if isinstance(min_df, bool) or not isinstance(min_df, (int, float)) or min_df <= 0 \
                or (isinstance(min_df, float) and min_df > 1):
            raise ConfigError(f"min_df must be a count >= 1 or a fraction in (0, 1], "
                              f"got {min_df!r}")
        self.stop_words, self.max_features, self.min_df = stop_words, max_features, min_df
        self.terms_ = np.empty(0, dtype=str)
        self.idf_ = np.empty(0)
        self._vectorizer: Any = None

    def options(self) -> dict[str, Any]:
        return {"method": self.method, "stop_words": self.stop_words,
                "max_features": self.max_features, "min_df": self.min_df}

    @property
    def width(self) -> int:
        return len(self.terms_)

    def _texts(self, frame: pd.DataFrame) -> list[str]:
        return text_values(frame[self.columns[0]], f"text field {self.name!r}")

    def fit(self, frame: pd.DataFrame) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        texts = self._texts(frame)
        vec = CountVectorizer(stop_words=self.stop_words, max_features=self.max_features,
                              min_df=self.min_df, token_pattern=TOKEN_PATTERN)
        try:
            counts = sp.csr_matrix(vec.fit_transform(texts))
        except ValueError as exc:  # empty vocabulary (all stop words / empty strings)
            raise DataError(f"text column {self.columns[0]!r}: {exc}") from None
        self.terms_ = np.asarray(vec.get_feature_names_out()).astype(str)
        counts.sum_duplicates()
        doc_freq = np.bincount(counts.indices, minlength=len(self.terms_))
        self.idf_ = np.log((1.0 + len(texts)) / (1.0 + doc_freq)) + 1.0
        self._ready()

    def _ready(self) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self._vectorizer = CountVectorizer(vocabulary=list(self.terms_),
                                           token_pattern=TOKEN_PATTERN)
        self._vectorizer.transform([""])  # builds its lookup now, not in a concurrent call
        self.fitted = True

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        counts = sp.csr_matrix(self._vectorizer.transform(self._texts(frame)),
                               dtype=np.float64)
        if self.method == "tfidf":
            counts = counts @ sp.diags(self.idf_)
            norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            counts = sp.diags(1.0 / norms) @ counts
        return sp.csr_matrix(counts, dtype=np.float32)

    def column_names(self) -> list[str]:
        return [f"{self.name}:{t}" for t in self.terms_]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"terms": self.terms_, "idf": self.idf_}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        terms = _strings(arrays, f"{prefix}terms", "text vocabulary")
        idf = arrays.get(f"{prefix}idf")
        if not isinstance(idf, np.ndarray) or idf.dtype.kind != "f" or idf.shape != terms.shape \
                or not np.all(np.isfinite(idf)) or (idf < 1.0).any():
            raise ArtifactError(f"feature encoder part {prefix}idf must hold one finite idf "
                                f">= 1 per vocabulary term ({len(terms)})")
        self.terms_, self.idf_ = terms, idf.astype(np.float64)
        self._ready()


# ----------------------------------------------------------------------------- categories
class CategoricalField(FieldEncoder):
    """One-hot of a category column; missing values give an all-zero row.

    ``unknown="ignore"`` encodes a category not seen in training as an all-zero row,
    ``"error"`` raises a DataError naming it.
    """

    kind = "categorical"

    def __init__(self, column: str, name: str | None = None, *,
                 unknown: str = "ignore") -> None:
        super().__init__(column, name)
        self.unknown = _choice(unknown, "unknown (category policy)", ("ignore", "error"))
        self.categories_ = np.empty(0, dtype=str)
        self._lookup: dict[str, int] = {}

    def options(self) -> dict[str, Any]:
        return {"unknown": self.unknown}

    @property
    def width(self) -> int:
        return len(self.categories_)

    def _keys(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        """Per row the position in ``uniques``, and the distinct keys (None = missing)."""
        return factorize_keys(frame[self.columns[0]], f"categorical field {self.name!r}")

    def fit(self, frame: pd.DataFrame) -> None:
        _, keys = self._keys(frame)
        present = sorted({k for k in keys if k is not None})
        if not present:
            raise DataError(f"categorical field {self.name!r}: column {self.columns[0]!r} "
                            f"has no values")
        self.categories_ = np.array(present, dtype=str)
        self._ready()

    def _ready(self) -> None:
        self._lookup = {c: j for j, c in enumerate(self.categories_.tolist())}
        self.fitted = True

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        codes, keys = self._keys(frame)
        cols = np.array([-1 if k is None else self._lookup.get(k, -2) for k in keys],
                        dtype=np.int64)
        per_row = cols[codes] if len(codes) else np.empty(0, dtype=np.int64)
        if self.unknown == "error" and (per_row == -2).any():
            pos = int(np.flatnonzero(per_row == -2)[0])
            values = frame[self.columns[0]]
            raise DataError(f"categorical field {self.name!r}: column {self.columns[0]!r} "
                            f"{_row_label(values, pos)} has category {shown(values.iloc[pos])} "
                            f"not seen in training (unknown='error')")
        rows = np.flatnonzero(per_row >= 0)
        return one_hot(rows, per_row[rows], len(frame), self.width)

    def column_names(self) -> list[str]:
        return [f"{self.name}={c}" for c in self.categories_]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"categories": self.categories_}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        self.categories_ = _strings(arrays, f"{prefix}categories", "categories")
        self._ready()


# ----------------------------------------------------------------------------- label lists
class MultiLabelField(FieldEncoder):
    """Several labels per row: ``"Action|Comedy"`` (split by the ``separator`` regex) or a
    list of strings; one column per training label, 1 where the row has it.

    Labels are stripped (and lower-cased unless ``lowercase=False``). Labels not seen in
    training follow ``unknown`` (``"ignore"`` or ``"error"``).
    """

    kind = "multilabel"

    def __init__(self, column: str, name: str | None = None, *,
                 separator: str = DEFAULT_LABEL_SEPARATORS, lowercase: bool = True,
                 unknown: str = "ignore") -> None:
        super().__init__(column, name)
        if not isinstance(separator, str) or not separator:
            raise ConfigError(f"label separator must be a non-empty regex, got {separator!r}")
        try:
            self._splitter = re.compile(separator)
        except re.error as exc:
            raise ConfigError(f"label separator {separator!r} is not a valid regex: "
                              f"{exc}") from None
        if not isinstance(lowercase, bool):
            raise ConfigError(f"lowercase must be true or false, got {lowercase!r}")
        self.separator, self.lowercase = separator, lowercase
        self.unknown = _choice(unknown, "unknown (label policy)", ("ignore", "error"))
        self.labels_ = np.empty(0, dtype=str)
        self._lookup: dict[str, int] = {}

    def options(self) -> dict[str, Any]:
        return {"separator": self.separator, "lowercase": self.lowercase,
                "unknown": self.unknown}

    @property
    def width(self) -> int:
        return len(self.labels_)

    def _clean(self, labels: Iterable[str]) -> list[str]:
        out = (t.strip() for t in labels)
        return list(dict.fromkeys(t.lower() if self.lowercase else t for t in out if t))

    def _rows(self, frame: pd.DataFrame) -> list[list[str]]:
        values = frame[self.columns[0]]
        rows = []
        for pos, value in enumerate(values):
            if isinstance(value, str):
                rows.append(self._clean(self._splitter.split(value)))
            elif isinstance(value, (list, tuple, np.ndarray)) \
                    and all(isinstance(v, str) for v in value):
                rows.append(self._clean(value))
            elif is_missing(value):
                rows.append([])
            else:
                raise DataError(f"multi-label field {self.name!r}: column "
                                f"{self.columns[0]!r} {_row_label(values, pos)} holds "
                                f"{shown(value)}; expected a string or a list of strings")
        return rows

    def fit(self, frame: pd.DataFrame) -> None:
        labels = sorted({t for row in self._rows(frame) for t in row})
        if not labels:
            raise DataError(f"multi-label field {self.name!r}: column {self.columns[0]!r} "
                            f"has no labels")
        self.labels_ = np.array(labels, dtype=str)
        self._ready()

    def _ready(self) -> None:
        self._lookup = {t: j for j, t in enumerate(self.labels_.tolist())}
        self.fitted = True

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        rows, cols = [], []
        for pos, labels in enumerate(self._rows(frame)):
            for label in labels:
                col = self._lookup.get(label, -1)
                if col >= 0:
                    rows.append(pos)
                    cols.append(col)
                elif self.unknown == "error":
                    values = frame[self.columns[0]]
                    raise DataError(f"multi-label field {self.name!r}: column "
                                    f"{self.columns[0]!r} {_row_label(values, pos)} has "
                                    f"label {label!r} not seen in training (unknown='error')")
        return one_hot(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
                        len(frame), self.width)

    def column_names(self) -> list[str]:
        return [f"{self.name}:{t}" for t in self.labels_]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"labels": self.labels_}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        self.labels_ = _strings(arrays, f"{prefix}labels", "labels")
        self._ready()


# ----------------------------------------------------------------------------- numbers
class NumericField(FieldEncoder):
    """One scaled number per row, with statistics of the training rows.

    ``scaling``: ``"standard"`` x' = (x - mean) / std, ``"minmax"`` x' = (x - min) /
    (max - min), ``"none"``; a constant column divides by 1. ``missing`` (None / NaN):
    ``"error"``, ``"mean"`` (the training mean) or ``"zero"`` (a raw value of 0), imputed
    before scaling. Infinite and non-numeric values are always a DataError.
    """

    kind = "numeric"

    def __init__(self, column: str, name: str | None = None, *, scaling: str = "standard",
                 missing: str = "error") -> None:
        super().__init__(column, name)
        self.scaling = _choice(scaling, "numeric scaling", ("standard", "minmax", "none"))
        self.missing = _choice(missing, "numeric missing-value policy",
                               ("error", "mean", "zero"))
        self.center_, self.scale_, self.fill_ = 0.0, 1.0, 0.0

    def options(self) -> dict[str, Any]:
        return {"scaling": self.scaling, "missing": self.missing}

    @property
    def width(self) -> int:
        return 1

    def _numbers(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 values, NaN where missing; non-numbers and infinities raise."""
        values = frame[self.columns[0]]
        raw = values.to_numpy()
        num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        gap = np.isnan(num)
        bad = np.flatnonzero((gap & ~pd.isna(raw)) | np.isinf(num))
        if len(bad):
            pos = int(bad[0])
            raise DataError(f"numeric field {self.name!r}: column {self.columns[0]!r} "
                            f"{_row_label(values, pos)} holds {shown(raw[pos])}, not a finite "
                            f"number")
        if self.missing == "error" and gap.any():
            pos = int(np.flatnonzero(gap)[0])
            raise DataError(f"numeric field {self.name!r}: column {self.columns[0]!r} "
                            f"{_row_label(values, pos)} is missing; impute with "
                            f"missing='mean' or 'zero' (numeric_missing= in build_features)")
        return num

    def fit(self, frame: pd.DataFrame) -> None:
        num = self._numbers(frame)
        seen = num[~np.isnan(num)]
        if len(seen) == 0:
            raise DataError(f"numeric field {self.name!r}: column {self.columns[0]!r} has no "
                            f"values to learn a scaling from")
        self.fill_ = float(seen.mean()) if self.missing == "mean" else 0.0
        if self.scaling == "standard":
            self.center_, spread = float(seen.mean()), float(seen.std())
        elif self.scaling == "minmax":
            self.center_, spread = float(seen.min()), float(seen.max() - seen.min())
        else:
            self.center_, spread = 0.0, 1.0
        self.scale_ = spread if spread > 0 and np.isfinite(spread) else 1.0
        self.fitted = True

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        num = self._numbers(frame)
        num[np.isnan(num)] = self.fill_
        scaled = ((num - self.center_) / self.scale_).astype(np.float32)
        if not np.all(np.isfinite(scaled)):
            pos = int(np.flatnonzero(~np.isfinite(scaled))[0])
            raise DataError(f"numeric field {self.name!r}: column {self.columns[0]!r} "
                            f"{_row_label(frame[self.columns[0]], pos)} overflows float32 "
                            f"after scaling")
        return sp.csr_matrix(scaled.reshape(-1, 1))

    def column_names(self) -> list[str]:
        return [f"num:{self.name}"]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"center": self.center_, "scale": self.scale_, "fill": self.fill_}, {}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        self.center_ = _finite(scalars.get("center"), f"{self.name!r} centre")
        self.scale_ = _finite(scalars.get("scale"), f"{self.name!r} scale", positive=True)
        self.fill_ = _finite(scalars.get("fill"), f"{self.name!r} fill value")
        self.fitted = True
