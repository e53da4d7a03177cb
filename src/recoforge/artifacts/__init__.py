"""Save and load models as directories of typed, checksummed parts; never pickle.

Layout of a model directory::

    manifest.json        format, library version, model name, params, capabilities,
                         vocabulary sizes, scalar state, the parts, the SHA-256 of every
                         file, and a checksum of itself
    arrays.npz           every array of every part, keyed "<state name>.<key>"
                         (read with allow_pickle=False)
    <state>.<blob>       binary blobs of registered parts (a FAISS index, ...), one file each
    <state>/             a nested model (fallback_, hybrid parts), same layout
    history.npz          known users' histories (CSR), only with include_history=True

The learned state of a model is every public attribute ending in ``_``. Each must be
declared (see :mod:`recoforge.artifacts.state`: ``state_spec`` rules on the model class,
over conventional names such as ``user_factors_``), and each is saved by its kind:

- scalars (bool, int, float, str, None) in the manifest;
- ``array``: ndarray of numeric or fixed-width text dtype;
- ``csr``: any scipy sparse matrix, saved as canonical CSR;
- ``ids``: :class:`~recoforge.data.ids.IdIndex`; ``features``:
  :class:`~recoforge.data.features.FeatureMatrix`;
- ``model``: a nested :class:`~recoforge.models.base.Recommender`, saved without history;
- any class registered with :func:`register_part` (the part protocol): it implements
  ``to_parts(self) -> (meta: JSON-able dict, arrays: dict[str, ndarray],
  blobs: dict[str, bytes])`` and ``@classmethod from_parts(cls, meta, arrays, blobs)``,
  which must validate its input; keys are short plain names. Torch state dicts go in as
  arrays (an npz of tensors), index files as blobs.

Loading treats the directory as untrusted: every file path is a plain relative name
opened without following symlinks; every checksum is verified on the handle that is then
read; the model class is resolved only through the model registry; state names must be
declared for that class (never dunders, methods or properties); vocabularies must match
the manifest; every array and CSR part is checked against its rule (shapes against the
vocabularies, index bounds, sorted CSR indices, monotone indptr, dtypes, finiteness);
then the model's own ``_check_state()`` runs. A manifest saved by a newer major version of
recoforge is refused, naming both versions. Every failure is an :class:`ArtifactError`.

Writing is atomic and never deletes what is not a model (see
:mod:`recoforge.artifacts.storage`); a reader that catches a model mid-replacement
retries briefly and sees the old or the new model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from recoforge.artifacts.model_dir import (
    FORMAT_VERSION,
    check_history_shape,
    read_model,
    write_model,
)
from recoforge.artifacts.parts import register_part
from recoforge.artifacts.state import CONVENTIONAL_STATE
from recoforge.artifacts.storage import DirReader, replace_directory, swap_in_progress
from recoforge.data.history import InMemoryHistory
from recoforge.errors import ArtifactError

__all__ = ["CONVENTIONAL_STATE", "FORMAT_VERSION", "InMemoryHistory", "load_model",
           "register_part", "save_model"]

READ_ATTEMPTS = 40
READ_RETRY_SECONDS = 0.05


def save_model(model: Any, path: str | os.PathLike, overwrite: bool = False,
               include_history: bool = False, skip: frozenset[str] = frozenset()) -> None:
    """Write a fitted ``model`` to directory ``path`` atomically.

    Parameters
    ----------
    model : Recommender
    path : directory to create (its parent is created when missing).
    overwrite : bool
        Replace an existing *model* directory; anything else at ``path`` is refused.
    include_history : bool
        Also save known users' histories (the model's history source), so the loaded
        model can recommend for them without ``load_model(..., history=)``.
    skip : set of str
        Optional state left out of the directory (e.g. ``item_titles_``).
    """
    history = _history_matrix(model) if include_history else None
    if include_history and history is None:
        raise ArtifactError(f"{model.name} has no history source to save; attach one first")
    replace_directory(path, lambda tmp: write_model(model, tmp, history, skip), overwrite)


def load_model(path: str | os.PathLike, history: Any = None) -> Any:
    """Load a model saved by :func:`save_model`, validating every part.

    Parameters
    ----------
    path : model directory.
    history : sparse matrix (n_users, n_items) or InMemoryHistory, optional
        Known users' histories when the directory holds none (a saved history wins).

    Returns
    -------
    Recommender
        With ``_history`` set to an :class:`InMemoryHistory` (saved or given), else None.
    """
    target = Path(path)
    for attempt in range(READ_ATTEMPTS):
        reader = None
        try:
            reader = DirReader.open(target)
            with reader:
                model, saved = read_model(reader)
                if reader.was_replaced(target):
                    raise ArtifactError(f"{target} was replaced while it was read")
            break
        except ArtifactError:
            mid_swap = (reader.was_replaced(target) if reader is not None
                        else swap_in_progress(target))
            if not mid_swap or attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(READ_RETRY_SECONDS)
    _attach_history(model, saved, history, str(target))
    return model


def _history_matrix(model: Any) -> sp.csr_matrix | None:
    source = getattr(model, "_history", None)
    if source is not None:
        return source.matrix
    legacy = vars(model).get("train_matrix_")
    return legacy if sp.issparse(legacy) else None


def _attach_history(model: Any, saved: Any, given: Any, where: str) -> None:
    sizes = [len(model.user_index_), len(model.item_index_)]
    if isinstance(given, InMemoryHistory):
        given = given.matrix
    matrix = saved if saved is not None else given
    source = None if matrix is None else check_history_shape(matrix, sizes, where)
    model._history = source
    fallback = getattr(model, "fallback_", None)
    if source is not None and fallback is not None \
            and fallback.user_index_ == model.user_index_ \
            and fallback.item_index_ == model.item_index_:
        fallback._history = source  # fitted on the same data: share the source
