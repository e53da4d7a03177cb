"""Item and user feature matrices from text, multi-label, categorical and numeric columns.

A :class:`FeatureMatrix` is a sparse (rows x features) float32 matrix whose rows follow an
:class:`~recoforge.data.ids.IdIndex` and whose columns carry readable names such as
``"text:leather"``, ``"genre:comedy"``, ``"category=Books"`` or ``"num:price"``, so that
explanations can name the features behind a score. Memory is O(nnz).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.ids import IdIndex
from recoforge.errors import DataError

DEFAULT_LABEL_SEPARATORS = r"[|,;]"


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """Sparse features, one row per id of a vocabulary.

    Attributes
    ----------
    matrix : csr_matrix, float32, shape (n_rows, n_features)
    names : ndarray of str, shape (n_features,)
    """

    matrix: sp.csr_matrix
    names: np.ndarray

    def __post_init__(self) -> None:
        if self.matrix.shape[1] != len(self.names):
            raise DataError("feature names must match the matrix columns")

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.matrix.shape[1])

    def take_rows(self, rows: np.ndarray) -> FeatureMatrix:
        """Rows by index; ``-1`` gives an all-zero row."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = rows >= 0
        picker = sp.csr_matrix((np.ones(valid.sum(), dtype=np.float32),
                                (np.flatnonzero(valid), rows[valid])),
                               shape=(len(rows), self.n_rows))
        return FeatureMatrix((picker @ self.matrix).tocsr(), self.names)

    def hstack(self, other: FeatureMatrix) -> FeatureMatrix:
        return FeatureMatrix(sp.hstack([self.matrix, other.matrix], format="csr",
                                       dtype=np.float32),
                             np.concatenate([self.names, other.names]))


def _text_block(texts: pd.Series, prefix: str, method: str, stop_words: str | None,
                max_features: int | None, min_df: int | float) -> FeatureMatrix:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    cls = TfidfVectorizer if method == "tfidf" else CountVectorizer
    vec = cls(stop_words=stop_words, max_features=max_features, min_df=min_df)
    try:
        mat = vec.fit_transform(texts.fillna("").astype(str))
    except ValueError as exc:  # empty vocabulary (all stop words / empty strings)
        raise DataError(f"text column {prefix!r}: {exc}") from None
    names = np.array([f"{prefix}:{t}" for t in vec.get_feature_names_out()])
    return FeatureMatrix(sp.csr_matrix(mat, dtype=np.float32), names)


def _multilabel_block(values: pd.Series, prefix: str, separators: str) -> FeatureMatrix:
    splitter = re.compile(separators)
    rows = [[t.strip().lower() for t in splitter.split(v) if t.strip()]
            if isinstance(v, str) else [] for v in values]
    labels = sorted({t for r in rows for t in r})
    col = {t: j for j, t in enumerate(labels)}
    indptr = np.cumsum([0] + [len(set(r)) for r in rows])
    indices = np.array([col[t] for r in rows for t in dict.fromkeys(r)], dtype=np.int32)
    mat = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                        shape=(len(rows), len(labels)))
    return FeatureMatrix(mat, np.array([f"{prefix}:{t}" for t in labels]))


def _categorical_block(values: pd.Series, prefix: str) -> FeatureMatrix:
    codes, cats = pd.factorize(values, sort=True)
    valid = codes >= 0
    mat = sp.csr_matrix((np.ones(valid.sum(), np.float32),
                         (np.flatnonzero(valid), codes[valid])),
                        shape=(len(values), len(cats)))
    return FeatureMatrix(mat, np.array([f"{prefix}={c}" for c in cats]))


def _numeric_block(values: pd.Series, prefix: str, scaling: str,
                   missing: Literal["error", "mean"], present: np.ndarray) -> FeatureMatrix:
    """One scaled column; statistics use only ``present`` rows (ids with a feature row)."""
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    bad = ~np.isfinite(num) & present
    if bad.any():
        if missing == "error":
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"numeric feature {prefix!r}: value {values.iloc[row]!r} at row "
                            f"{row} is not a finite number (use numeric_missing='mean')")
        good = present & ~bad
        num[bad] = num[good].mean() if good.any() else 0.0
    ref = num[present] if present.any() else np.zeros(1)
    if scaling == "standard":
        std = ref.std()
        num = (num - ref.mean()) / (std if std > 0 else 1.0)
    elif scaling == "minmax":
        span = ref.max() - ref.min()
        num = (num - ref.min()) / (span if span > 0 else 1.0)
    return FeatureMatrix(sp.csr_matrix(num.reshape(-1, 1).astype(np.float32)),
                         np.array([f"num:{prefix}"]))


def build_features(
    info: pd.DataFrame,
    index: IdIndex,
    *,
    text: Sequence[str] = (),
    multilabel: Mapping[str, str] | Sequence[str] = (),
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    text_method: Literal["tfidf", "count"] = "tfidf",
    stop_words: str | None = "english",
    max_features: int | None = None,
    min_df: int | float = 1,
    numeric_scaling: Literal["standard", "minmax", "none"] = "standard",
    numeric_missing: Literal["error", "mean"] = "error",
) -> FeatureMatrix:
    """Feature matrix aligned with ``index`` from columns of ``info``.

    Parameters
    ----------
    info : DataFrame
        Indexed by external id (or with the id in the index after ``set_index``).
        Ids of ``index`` that ``info`` lacks get all-zero rows; extra rows are ignored.
    text : columns embedded with TF-IDF (``text_method="tfidf"``) or raw counts, English
        stop words removed by default.
    multilabel : columns of label lists such as ``"Action|Comedy"`` or
        ``"Electronics, Tablet"``; a mapping gives a separator regex per column.
    categorical : columns one-hot encoded (``"col=value"``).
    numeric : columns scaled to zero mean and unit variance (or min-max, or unscaled).

    Returns
    -------
    FeatureMatrix
        Blocks in the order text, multi-label, categorical, numeric.
    """
    if not info.index.is_unique:
        raise DataError(f"feature table has duplicate ids, e.g. "
                        f"{info.index[info.index.duplicated()][0]!r}")
    all_cols = list(text) + list(multilabel) + list(categorical) + list(numeric)
    if not all_cols:
        raise DataError("build_features needs at least one feature column")
    missing = [c for c in all_cols if c not in info.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} not in table columns {list(info.columns)}")
    rows = pd.Index(info.index).get_indexer(pd.Index(index.ids))
    aligned = info.iloc[np.maximum(rows, 0)].reset_index(drop=True)
    absent = rows < 0
    if absent.any():  # blank rows for ids without features; zeroed again at the end
        for c in list(text) + list(multilabel):
            aligned.loc[absent, c] = ""
        for c in categorical:
            aligned.loc[absent, c] = None
        for c in numeric:
            aligned.loc[absent, c] = 0
    separators = (dict(multilabel) if isinstance(multilabel, Mapping)
                  else dict.fromkeys(multilabel, DEFAULT_LABEL_SEPARATORS))
    blocks = [_text_block(aligned[c], c, text_method, stop_words, max_features, min_df)
              for c in text]
    blocks += [_multilabel_block(aligned[c], c, sep) for c, sep in separators.items()]
    blocks += [_categorical_block(aligned[c], c) for c in categorical]
    blocks += [_numeric_block(aligned[c], c, numeric_scaling, numeric_missing, ~absent)
               for c in numeric]
    out = blocks[0]
    for block in blocks[1:]:
        out = out.hstack(block)
    if absent.any():  # ids without a feature row: exact zeros (undo numeric scaling)
        keep = sp.diags((~absent).astype(np.float32))
        out = FeatureMatrix((keep @ out.matrix).tocsr(), out.names)
    out.matrix.eliminate_zeros()
    return out
