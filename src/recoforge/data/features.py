"""Item and user features: a fitted :class:`FeatureEncoder` and the matrices it writes.

A :class:`FeatureEncoder` holds typed fields (text, categorical, multi-label, numeric,
hashed; see :mod:`recoforge.data.encoders` and :mod:`recoforge.data.hashing`), each with a
name, a kind, its source column(s) and its column range ``[start, stop)`` in the output.
``fit`` learns the vocabularies and scaling statistics from training rows; ``transform``
encodes new items or users at scoring time exactly as the training rows were encoded. It is
saved with a model through ``to_parts`` / ``from_parts`` (JSON metadata + plain arrays,
never pickle).

A :class:`FeatureMatrix` is a sparse (rows x features) float32 matrix whose rows follow an
:class:`~recoforge.data.ids.IdIndex` and whose columns carry readable names such as
``"description:leather"``, ``"genres:comedy"``, ``"brand=Apple"``, ``"num:price"`` or
``"seller#812"``, so that explanations can name the features behind a score; when built
by :func:`build_features` it also carries its encoder. Memory is O(nnz).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.encoders import (
    DEFAULT_LABEL_SEPARATORS,
    CategoricalField,
    FieldEncoder,
    MultiLabelField,
    NumericField,
    TextField,
)
from recoforge.data.hashing import HashedField
from recoforge.data.ids import IdIndex
from recoforge.data.sentence import DEFAULT_MODEL as DEFAULT_SENTENCE_MODEL
from recoforge.data.sentence import SentenceField
from recoforge.errors import ArtifactError, ConfigError, DataError, NotFittedError

PARTS_FORMAT = "recoforge.feature_encoder"
PARTS_VERSION = 1

#: the fixed set of field kinds (all a saved encoder may contain)
FIELD_TYPES: dict[str, type[FieldEncoder]] = {
    cls.kind: cls for cls in (TextField, CategoricalField, MultiLabelField, NumericField,
                              HashedField, SentenceField)
}

__all__ = ["DEFAULT_LABEL_SEPARATORS", "CategoricalField", "FeatureEncoder", "FeatureMatrix",
           "FieldSlice", "HashedField", "MultiLabelField", "NumericField", "SentenceField",
           "TextField",
           "build_features", "encode_rows"]


@dataclass(frozen=True)
class FieldSlice:
    """Where a field lives in the encoded matrix: columns ``start`` to ``stop - 1``."""

    name: str
    kind: str
    columns: tuple[str, ...]
    start: int
    stop: int

    @property
    def width(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class FeatureEncoder:
    """Fitted field encoders side by side: DataFrame rows -> sparse float32 feature rows.

    Parameters
    ----------
    fields : sequence of FieldEncoder
        ``TextField``, ``CategoricalField``, ``MultiLabelField``, ``NumericField`` or
        ``HashedField``, with distinct names; the output has their blocks in this order.
        The encoder keeps copies, so one field list can configure several encoders.

    Examples
    --------
    >>> enc = FeatureEncoder([TextField("title"), CategoricalField("genre")])
    >>> train = enc.fit_transform(items)      # doctest: +SKIP
    >>> new_rows = enc.transform(new_items)   # same columns, training vocabulary
    """

    def __init__(self, fields: Sequence[FieldEncoder]) -> None:
        import copy

        fields = list(fields)
        if not fields:
            raise ConfigError("a FeatureEncoder needs at least one field")
        for field in fields:
            if not isinstance(field, FieldEncoder):
                raise ConfigError(f"fields must be field encoders (TextField, ...), got "
                                  f"{field!r}")
        names = [f.name for f in fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"field names must be distinct; repeated: {repeated}")
        self.fields: list[FieldEncoder] = copy.deepcopy(fields)
        self._slices: tuple[FieldSlice, ...] = ()

    def __repr__(self) -> str:
        state = f"{self.n_features} features" if self.fitted else "unfitted"
        return f"FeatureEncoder({[f.name for f in self.fields]}, {state})"

    # ------------------------------------------------------------------ structure
    @property
    def fitted(self) -> bool:
        return bool(self._slices)

    @property
    def n_features(self) -> int:
        self._require_fitted()
        return self._slices[-1].stop

    @property
    def columns(self) -> list[str]:
        """Source columns the encoder reads, in field order, each once."""
        return list(dict.fromkeys(c for f in self.fields for c in f.columns))

    def field_slices(self) -> tuple[FieldSlice, ...]:
        """Name, kind, source columns and column range of every field, in order."""
        self._require_fitted()
        return self._slices

    def field(self, name: str) -> FieldSlice:
        """The slice of the field called ``name`` (ConfigError if there is none)."""
        for fs in self.field_slices():
            if fs.name == name:
                return fs
        raise ConfigError(f"no feature field {name!r}; fields: {[f.name for f in self.fields]}")

    def column_fields(self) -> np.ndarray:
        """Field number (position in ``fields``) of every output column, int64 array of
        length n_features: the field map of field-aware models (FFM)."""
        widths = [fs.width for fs in self.field_slices()]
        return np.repeat(np.arange(len(widths), dtype=np.int64), widths)

    def feature_names(self) -> np.ndarray:
        """Readable name of every output column (str array, length n_features)."""
        self._require_fitted()
        return np.array([n for f in self.fields for n in f.column_names()], dtype=str)

    def _require_fitted(self) -> None:
        if not self._slices:
            raise NotFittedError("the FeatureEncoder is not fitted; call fit(frame) first")

    def _index_fields(self) -> None:
        slices, start = [], 0
        for f in self.fields:
            slices.append(FieldSlice(f.name, f.kind, f.columns, start, start + f.width))
            start += f.width
        self._slices = tuple(slices)

    # ------------------------------------------------------------------ fit / transform
    def _check_frame(self, frame: pd.DataFrame, fitting: bool) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"features are encoded from a DataFrame, got "
                            f"{type(frame).__name__}")
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"feature column(s) {missing} not in table columns "
                            f"{list(frame.columns)}")
        repeated = [c for c in self.columns if list(frame.columns).count(c) > 1]
        if repeated:
            raise DataError(f"feature column(s) {repeated} appear more than once in the table")
        if fitting and len(frame) == 0:
            raise DataError("cannot fit a FeatureEncoder on an empty table (no rows)")

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn every field's vocabulary / statistics from the rows of ``frame``."""
        self._check_frame(frame, fitting=True)
        self._slices = ()
        for field in self.fields:
            field.fit(frame)
        self._index_fields()
        return self

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """Encode rows (training or new) with the fitted state.

        Returns
        -------
        csr_matrix, float32, shape (len(frame), n_features)
            Memory O(nnz); explicit zeros removed.
        """
        self._require_fitted()
        self._check_frame(frame, fitting=False)
        blocks = [field.transform(frame) for field in self.fields]
        out = sp.hstack(blocks, format="csr", dtype=np.float32)
        out.eliminate_zeros()
        out.sort_indices()
        return sp.csr_matrix(out)

    def fit_transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """``fit(frame).transform(frame)``."""
        return self.fit(frame).transform(frame)

    # ------------------------------------------------------------------ persistence
    def to_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        """(JSON-able metadata, arrays, blobs) describing the fitted encoder; no pickle."""
        meta_fields, arrays = [], {}
        for i, (field, fs) in enumerate(zip(self.fields, self.field_slices(), strict=True)):
            scalars, field_arrays = field.state()
            meta_fields.append({"name": fs.name, "kind": fs.kind, "columns": list(fs.columns),
                                "start": fs.start, "stop": fs.stop,
                                "options": field.options(), "state": scalars})
            arrays.update({f"field{i}_{k}": v for k, v in field_arrays.items()})
        meta = {"format": PARTS_FORMAT, "version": PARTS_VERSION,
                "n_features": self.n_features, "fields": meta_fields}
        return meta, arrays, {}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   blobs: Mapping[str, bytes]) -> FeatureEncoder:
        """Rebuild a fitted encoder from :meth:`to_parts` output, validating everything.

        Raises ArtifactError for an unknown format or field kind, bad options, column
        ranges that are not contiguous from 0 to ``n_features``, vocabularies whose length
        does not match their range, non-finite statistics, and missing or extra parts.
        """
        if not isinstance(meta, Mapping) or meta.get("format") != PARTS_FORMAT:
            raise ArtifactError(f"not a saved feature encoder (format {PARTS_FORMAT!r} "
                                f"expected)")
        if meta.get("version") != PARTS_VERSION:
            raise ArtifactError(f"feature encoder format version {meta.get('version')!r} is "
                                f"not supported (this library reads {PARTS_VERSION})")
        n_features = meta.get("n_features")
        records = meta.get("fields")
        if not _is_int(n_features) or not isinstance(records, list) or not records:
            raise ArtifactError("feature encoder metadata needs n_features and a non-empty "
                                "list of fields")
        if blobs:
            raise ArtifactError(f"feature encoder has unexpected blobs {sorted(blobs)}")
        fields = [_field_from_record(i, rec, arrays) for i, rec in enumerate(records)]
        expected = {f"field{i}_{k}" for i, f in enumerate(fields) for k in f.state()[1]}
        if set(arrays) != expected:
            raise ArtifactError(f"feature encoder arrays {sorted(arrays)} do not match its "
                                f"fields (expected {sorted(expected)})")
        try:
            encoder = cls(fields)
        except ConfigError as exc:
            raise ArtifactError(f"feature encoder: {exc}") from None
        encoder._index_fields()
        for fs, rec in zip(encoder._slices, records, strict=True):
            if (fs.start, fs.stop) != (rec["start"], rec["stop"]):
                raise ArtifactError(f"feature field {fs.name!r}: saved column range "
                                    f"[{rec['start']}, {rec['stop']}) does not match its "
                                    f"state [{fs.start}, {fs.stop}) (ranges must be "
                                    f"contiguous from 0)")
        if encoder.n_features != n_features:
            raise ArtifactError(f"feature encoder: fields cover {encoder.n_features} columns, "
                                f"n_features says {n_features}")
        return encoder


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field_from_record(i: int, rec: Any, arrays: Mapping[str, np.ndarray]) -> FieldEncoder:
    """One saved field, validated (ArtifactError)."""
    keys = {"name", "kind", "columns", "start", "stop", "options", "state"}
    if not isinstance(rec, Mapping) or set(rec) != keys:
        raise ArtifactError(f"feature field #{i}: record must have exactly {sorted(keys)}")
    kind, columns = rec["kind"], rec["columns"]
    if kind not in FIELD_TYPES:
        raise ArtifactError(f"feature field #{i}: unknown kind {kind!r} "
                            f"(known: {sorted(FIELD_TYPES)})")
    if not isinstance(columns, list) or not _is_int(rec["start"]) or not _is_int(rec["stop"]) \
            or not isinstance(rec["options"], Mapping) or not isinstance(rec["state"], Mapping):
        raise ArtifactError(f"feature field #{i}: malformed columns, range, options or state")
    cls = FIELD_TYPES[kind]
    try:
        field = cls(columns if cls.multi_column else (columns[0] if len(columns) == 1
                                                      else columns),
                    rec["name"], **rec["options"])
    except (ConfigError, TypeError) as exc:
        raise ArtifactError(f"feature field #{i} ({kind}): {exc}") from None
    field.load_state(rec["state"], arrays, f"field{i}_")
    return field


# ----------------------------------------------------------------------------- matrices
@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """Sparse features, one row per id of a vocabulary.

    Attributes
    ----------
    matrix : csr_matrix, float32, shape (n_rows, n_features)
    names : ndarray of str, shape (n_features,)
    encoder : FeatureEncoder or None
        The fitted encoder that wrote the columns (encodes new rows the same way);
        None for a matrix built by hand.
    """

    matrix: sp.csr_matrix
    names: np.ndarray
    encoder: FeatureEncoder | None = None

    def __post_init__(self) -> None:
        if self.matrix.shape[1] != len(self.names):
            raise DataError("feature names must match the matrix columns")
        if self.encoder is not None and self.encoder.n_features != self.matrix.shape[1]:
            raise DataError(f"the encoder writes {self.encoder.n_features} features, the "
                            f"matrix has {self.matrix.shape[1]}")

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.matrix.shape[1])

    def take_rows(self, rows: np.ndarray) -> FeatureMatrix:
        """Rows by index; ``-1`` gives an all-zero row. Keeps the encoder."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = rows >= 0
        picker = sp.csr_matrix((np.ones(valid.sum(), dtype=np.float32),
                                (np.flatnonzero(valid), rows[valid])),
                               shape=(len(rows), self.n_rows))
        return FeatureMatrix((picker @ self.matrix).tocsr(), self.names, self.encoder)

    def hstack(self, other: FeatureMatrix) -> FeatureMatrix:
        """Columns of both side by side (the result has no single encoder)."""
        return FeatureMatrix(sp.hstack([self.matrix, other.matrix], format="csr",
                                       dtype=np.float32),
                             np.concatenate([self.names, other.names]))


def encode_rows(encoder: FeatureEncoder, info: pd.DataFrame, index: IdIndex) -> FeatureMatrix:
    """Rows of ``info`` aligned with ``index`` through a fitted encoder.

    Ids of ``index`` that ``info`` lacks get all-zero rows; rows of ``info`` whose id is
    not in ``index`` are ignored. Memory O(nnz).
    """
    if not info.index.is_unique:
        raise DataError(f"feature table has duplicate ids, e.g. "
                        f"{info.index[info.index.duplicated()][0]!r}")
    rows = pd.Index(info.index).get_indexer(pd.Index(index.ids))
    present = np.flatnonzero(rows >= 0)
    encoded = encoder.transform(info.iloc[rows[present]])
    picker = sp.csr_matrix((np.ones(len(present), dtype=np.float32),
                            (present, np.arange(len(present)))),
                           shape=(len(index), len(present)))
    return FeatureMatrix(sp.csr_matrix(picker @ encoded), encoder.feature_names(), encoder)


def fields_from_spec(
    *,
    text: Sequence[str] = (),
    multilabel: Mapping[str, str] | Sequence[str] = (),
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    hashed: Sequence[str] = (),
    text_method: Literal["tfidf", "count"] = "tfidf",
    stop_words: str | None = "english",
    max_features: int | None = None,
    min_df: int | float = 1,
    numeric_scaling: Literal["standard", "minmax", "none"] = "standard",
    numeric_missing: Literal["error", "mean", "zero"] = "error",
    unknown: Literal["ignore", "error"] = "ignore",
    hash_buckets: int = 1 << 16,
    sentence: Sequence[str] = (),
    sentence_model: str = DEFAULT_SENTENCE_MODEL,
) -> list[FieldEncoder]:
    """Field encoders for :func:`build_features`' column lists (one field per column)."""
    separators = (dict(multilabel) if isinstance(multilabel, Mapping)
                  else dict.fromkeys(multilabel, DEFAULT_LABEL_SEPARATORS))
    fields: list[FieldEncoder] = [
        TextField(c, method=text_method, stop_words=stop_words, max_features=max_features,
                  min_df=min_df) for c in text]
    fields += [SentenceField(c, model=sentence_model) for c in sentence]
    fields += [MultiLabelField(c, separator=sep, unknown=unknown)
               for c, sep in separators.items()]
    fields += [CategoricalField(c, unknown=unknown) for c in categorical]
    fields += [NumericField(c, scaling=numeric_scaling, missing=numeric_missing)
               for c in numeric]
    fields += [HashedField(c, n_buckets=hash_buckets) for c in hashed]
    return fields


def build_features(
    info: pd.DataFrame,
    index: IdIndex,
    *,
    fields: Sequence[FieldEncoder] | None = None,
    **spec: Any,
) -> FeatureMatrix:
    """Fit a :class:`FeatureEncoder` on the rows of ``info`` for the ids of ``index``.

    Parameters
    ----------
    info : DataFrame
        Indexed by external id. Ids of ``index`` that ``info`` lacks get all-zero rows and
        take no part in fitting; rows whose id is not in ``index`` are ignored.
    index : IdIndex
        The rows of the result.
    fields : sequence of FieldEncoder, optional
        The fields to fit; or describe them by column lists (``**spec``):
    **spec
        ``text`` (TF-IDF with ``text_method="tfidf"`` or counts, English stop words
        removed by default; ``stop_words``, ``max_features``, ``min_df``), ``multilabel``
        (label lists such as ``"Action|Comedy"``; a mapping gives a separator regex per
        column), ``categorical`` (one-hot), ``numeric`` (``numeric_scaling`` "standard",
        "minmax" or "none"; ``numeric_missing`` "error", "mean" or "zero"), ``hashed``
        (``hash_buckets`` columns), ``unknown`` ("ignore" or "error": the policy for
        categories and labels unseen in training when new rows are encoded), ``sentence``
        (pretrained sentence embeddings of a text column, ``sentence_model``; extra
        ``text``, see :mod:`recoforge.data.sentence`). See :func:`fields_from_spec`.

    Returns
    -------
    FeatureMatrix
        Blocks in field order (from ``spec``: text, sentence, multi-label, categorical,
        numeric, hashed), with ``.encoder`` the fitted encoder: ``encoder.transform(new_rows)``
        encodes new items or users the same way.
    """
    if fields is not None and spec:
        raise ConfigError(f"build_features takes fields= or column lists, not both "
                          f"(got fields and {sorted(spec)})")
    if fields is None:
        try:
            fields = fields_from_spec(**spec)
        except TypeError as exc:
            raise ConfigError(f"build_features: {exc}") from None
        if not fields:
            raise DataError("build_features needs at least one feature column")
    if not info.index.is_unique:
        raise DataError(f"feature table has duplicate ids, e.g. "
                        f"{info.index[info.index.duplicated()][0]!r}")
    encoder = FeatureEncoder(fields)
    rows = pd.Index(info.index).get_indexer(pd.Index(index.ids))
    missing = [c for c in encoder.columns if c not in info.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} not in table columns {list(info.columns)}")
    if (rows < 0).all():
        raise DataError(f"the feature table has no row for any of the {len(index)} ids "
                        f"(e.g. {index.ids[0] if len(index) else None!r})")
    encoder.fit(info.iloc[rows[rows >= 0]])
    return encode_rows(encoder, info, index)


def _register_part() -> None:
    """Let models hold a FeatureEncoder as learned state (saved as part "feature_encoder")."""
    try:
        from recoforge.artifacts.parts import register_part
    except ImportError:  # pragma: no cover - artifacts.parts is mid-import (it imports us)
        return
    register_part("feature_encoder", FeatureEncoder)


_register_part()
