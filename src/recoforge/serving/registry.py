"""Model versions on disk, recorded in the serving store.

A :class:`ModelRegistry` keeps every registered model under ``root/v<id>/`` (the
project's checksummed model directory, never a pickle), where ``<id>`` is the version's
row in the store's ``model_versions`` table. Registering writes the model to a staging
folder first and renames it into place inside the transaction that records the version,
so a version row always points at a complete model and a failed registration leaves no
row (at worst an unreferenced ``v<id>`` folder, never a half-written one).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recoforge.errors import ArtifactError, ConfigError, UnknownIdError
from recoforge.serving import schema as db
from recoforge.serving.store import Store


def _json_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metrics as JSON values: numbers (NaN and infinities refused), strings, dicts."""
    clean: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy scalars
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"metrics[{key!r}]: {value} is not a finite number")
        clean[str(key)] = _json_metrics(value) if isinstance(value, Mapping) else value
    return clean


class ModelRegistry:
    """Model versions: directories under ``root``, rows in ``store``.

    Parameters
    ----------
    root : str or Path
        Folder of the versions (created when missing).
    store : Store
        Where versions are recorded and activated.
    """

    def __init__(self, root: str | os.PathLike[str], store: Store) -> None:
        self.root = Path(root).expanduser().absolute()
        self.store = store

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r}, {self.store!r})"

    def register(self, model: Any, metrics: Mapping[str, Any] | None = None, *,
                 note: str = "", include_history: bool = True) -> int:
        """Save a fitted model (or copy a model directory) as a new, inactive version.

        Parameters
        ----------
        model : Recommender or path
            A fitted model, or the directory of one (loaded and verified first).
        metrics : mapping, optional
            JSON-able evaluation results recorded with the version.
        note : str
        include_history : bool
            Save the model's training history with it when it has one (the serving
            predictor then recognises known users' unchanged histories).

        Returns
        -------
        int
            The version id; the model is in :meth:`path` of it.
        """
        from recoforge.models.base import Recommender
        from recoforge.models.registry import load_model

        if isinstance(model, (str, os.PathLike)):
            model = load_model(str(model))
        if not isinstance(model, Recommender):
            raise ConfigError(f"register needs a fitted Recommender or a model directory, "
                              f"got {type(model).__name__}")
        record = _json_metrics(metrics)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"  # holds the save's lock file
        try:
            model.save(str(staging / "model"), include_titles=True,
                       include_history=include_history and model.history_source is not None)
            return self._record(model.name, staging / "model", record, note)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _record(self, name: str, staging: Path, metrics: dict[str, Any], note: str) -> int:
        """Insert the version row and move ``staging`` to ``v<id>`` in one transaction."""
        table = db.model_versions
        with self.store._write() as conn:
            version = int(conn.execute(table.insert().values(
                name=name, path="", metrics=metrics, created=time.time(), active=False,
                note=str(note)).returning(table.c.id)).scalar_one())
            final = self.root / f"v{version}"
            if os.path.lexists(final):
                raise ArtifactError(f"{final} exists but the store has no version {version} "
                                    f"(a registry folder shared by another database?); "
                                    f"refusing to overwrite it")
            conn.execute(table.update().where(table.c.id == version)
                         .values(path=str(final)))
            os.rename(staging, final)
        return version

    def versions(self) -> list[dict[str, Any]]:
        """Every version's row (id, name, path, metrics, created, active, note)."""
        return self.store.model_versions()

    def path(self, version: int) -> Path:
        """The model directory of ``version``."""
        row = self.store.model_version(version)
        if row is None:
            raise UnknownIdError(f"model version {version} does not exist")
        return Path(row["path"])

    def load(self, version: int) -> Any:
        """The model of ``version``, loaded and verified (``recoforge.artifacts``)."""
        from recoforge.models.registry import load_model

        return load_model(str(self.path(version)))

    def active(self) -> dict[str, Any] | None:
        """The active version's row, or None."""
        return self.store.active_version()

    def activate(self, version: int) -> None:
        """Make ``version`` the active one (its model directory must be there)."""
        path = self.path(version)
        if not (path / "manifest.json").is_file():
            raise ArtifactError(f"model version {version}: {path} holds no model "
                                f"(manifest.json is missing)")
        self.store.activate_version(version)
