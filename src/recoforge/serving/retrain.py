"""Retrain from the serving store: fit, evaluate on a time-based holdout, register, and
activate only when the new model is not worse than the active one.

The holdout is the project's temporal split (:func:`recoforge.data.split.temporal`): the
last ``holdout`` share of the events by time is the test set. The candidate, and the
active version's model class with its parameters, are both fitted on the events before
the cut and scored by NDCG@k under the full-ranking protocol of
:func:`recoforge.evaluation.evaluate`, so the comparison is on the same data (the active
version itself was trained on events that are now in the test period and cannot be
scored fairly). The candidate is then refitted on every event, registered with its
metrics and activated when its NDCG@k is at least the baseline's (or with ``force``).

Memory: the events table as a DataFrame plus the models' own (see each model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from recoforge.errors import DataError
from recoforge.serving.registry import ModelRegistry
from recoforge.serving.store import Store


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did.

    Attributes
    ----------
    version : int
        The new version's id.
    activated : bool
    metrics : dict
        The candidate's holdout metrics (``ndcg@k``, sizes, the split's name).
    baseline : float or None
        NDCG@k of the active version's model refitted on the same training events (None
        without an active version).
    reason : str
        Why it was or was not activated.
    """

    version: int
    activated: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: float | None = None
    reason: str = ""

    def summary(self) -> str:
        """One line for the CLI."""
        key = next((name for name in self.metrics if name.startswith("ndcg@")), "ndcg@10")
        score = self.metrics.get(key, float("nan"))
        against = "" if self.baseline is None else f" vs active {self.baseline:.4f}"
        state = "activated" if self.activated else "not activated"
        return (f"version {self.version} ({self.metrics.get('model', '?')}): holdout {key} "
                f"{score:.4f}{against}; {state} ({self.reason}); "
                f"{self.metrics.get('n_events', 0):,} events")


def dataset_from_store(store: Store, kind: Literal["auto", "explicit", "implicit"] = "auto",
                       *, item_features: bool = False) -> Any:
    """A :class:`~recoforge.data.dataset.Dataset` of the store's events and items.

    ``kind="auto"``: explicit ratings when every event is of type ``rating`` (as
    ``recoforge load`` stores a ratings file; repeated ratings keep the last), else
    implicit feedback whose repeated (user, item) weights add up. Items' ``title`` (or
    ``name``) attributes become the dataset's titles; with ``item_features`` their
    categories become multi-label item features (for models that need them); the
    catalogue is always the items with events, so both kinds rank the same items.
    """
    from recoforge.data.dataset import Dataset

    frame = store.events_frame()
    if frame.empty:
        raise DataError(f"the store {store.url} has no events to fit on (load some with "
                        f"`recoforge load`, or post feedback)")
    if kind == "auto":
        kind = "explicit" if (frame["type"] == "rating").all() else "implicit"
    data = Dataset.from_frame(frame, name="store", rating_col="weight", timestamp_col="time",
                              kind=kind, duplicates="last" if kind == "explicit" else "sum",
                              source=f"events of {store.url}")
    info = _item_info(store, data)
    if item_features:
        if not info["categories"].str.len().any():
            raise DataError(f"the items of {store.url} have no categories to build item "
                            f"features from")
        known = info[info.index.isin(data.item_index.ids)]  # the catalogue stays the same
        return data.with_item_features(known, title_col="title", multilabel=["categories"])
    return data.with_item_info(info, title_col="title")


def _item_info(store: Store, data: Any) -> Any:
    """Stored items as a table indexed by id (in the dataset's id type): title and
    categories (``a|b``)."""
    import pandas as pd

    from recoforge.serving import schema as db

    with store._read() as conn:
        rows = conn.execute(sa.select(db.items.c.id, db.items.c.attributes,
                                      db.items.c.categories).order_by(db.items.c.id)).all()
    titles = [str((attrs or {}).get("title", (attrs or {}).get("name", ""))) for _, attrs, _
              in rows]
    categories = ["|".join(c.replace("|", "/") for c in (cats or [])) for _, _, cats in rows]
    index = data.item_index.parse_external([row[0] for row in rows]) if rows else []
    return pd.DataFrame({"title": titles, "categories": categories},
                        index=pd.Index(index, name="item"))


def _holdout_ndcg(name: str, params: Mapping[str, Any], split: Any, k: int) -> float:
    from recoforge.evaluation import evaluate
    from recoforge.models.registry import create

    model = create(name, **dict(params)).fit(split.train)
    result = evaluate(model, split, k=[k], metrics=["ndcg"])
    return float(result.summary[f"ndcg@{k}"])


class _Holdout:
    """The store's data with and without item features, and the same temporal split of
    each (item features never change the catalogue, so both rank the same items)."""

    def __init__(self, store: Store, kind: Literal["auto", "explicit", "implicit"],
                 holdout: float) -> None:
        self.store, self.kind, self.holdout = store, kind, holdout
        self._data: dict[bool, Any] = {}
        self._splits: dict[bool, Any] = {}

    def data(self, item_features: bool) -> Any:
        if item_features not in self._data:
            self._data[item_features] = dataset_from_store(self.store, self.kind,
                                                           item_features=item_features)
        return self._data[item_features]

    def split(self, item_features: bool) -> Any:
        from recoforge.data.split import temporal

        if item_features not in self._splits:
            data = self.data(item_features)
            stamps = data.interactions.timestamps
            if stamps is not None and len(stamps) and stamps.min() == stamps.max():
                raise DataError(f"every event in {self.store.url} has the same time (loaded "
                                f"without timestamps?); the time-based holdout needs events "
                                f"spread over time")
            self._splits[item_features] = temporal(data, quantile=1.0 - self.holdout)
        return self._splits[item_features]


def _baseline(registry: ModelRegistry, holdout: _Holdout, k: int
              ) -> tuple[float | None, str]:
    """NDCG@k of the active version's model class and parameters, refitted on the
    holdout's training events (with item features when that version had them)."""
    active = registry.active()
    if active is None:
        return None, ""
    loaded = registry.load(active["id"])
    features = bool((active["metrics"] or {}).get("item_features",
                                                  loaded.needs_item_features))
    score = _holdout_ndcg(active["name"], loaded.get_params(), holdout.split(features), k)
    return score, f"v{active['id']}"


def retrain(store: Store, registry: ModelRegistry, model: str,
            params: Mapping[str, Any] | None = None, *, force: bool = False,
            holdout: float = 0.1, k: int = 10, note: str = "",
            kind: Literal["auto", "explicit", "implicit"] = "auto",
            item_features: bool | None = None) -> RetrainResult:
    """Fit ``model`` on the store's events, evaluate, register, maybe activate.

    Parameters
    ----------
    store, registry
        The database and the versions folder.
    model : str
        Registered model name; ``params`` its hyperparameters.
    force : bool
        Activate even when the holdout NDCG@k is below the active version's.
    holdout : float
        Share of the latest events held out (0 < holdout < 1).
    k : int
        Cut-off of NDCG.
    kind
        See :func:`dataset_from_store`.
    item_features : bool, optional
        Build item features from the stored items' categories (default: when the model
        class declares ``needs_item_features``).

    Returns
    -------
    RetrainResult
    """
    from recoforge.models.registry import create

    if not 0.0 < float(holdout) < 1.0:
        raise DataError(f"holdout must be between 0 and 1 (exclusive), got {holdout}")
    params = dict(params or {})
    candidate = create(model, **params)  # an unknown name or bad parameter fails now
    features = candidate.needs_item_features if item_features is None else item_features
    data = _Holdout(store, kind, float(holdout))
    split = data.split(features)
    score = _holdout_ndcg(model, params, split, k)
    baseline, active_name = _baseline(registry, data, k)
    metrics = {f"ndcg@{k}": score, "model": model, "params": params, "split": split.name,
               "n_train": len(split.train.interactions), "n_test": len(split.test),
               "n_events": len(data.data(features).interactions),
               "item_features": features}
    if baseline is not None:
        metrics[f"baseline_ndcg@{k}"] = baseline
    version = registry.register(candidate.fit(data.data(features)), metrics, note=note)
    better = baseline is None or score >= baseline
    if baseline is None:
        reason = "no active version"
    elif better:
        reason = f"not worse than active {active_name}"
    else:
        reason = f"worse than active {active_name}" + ("; forced" if force else "")
    if better or force:
        registry.activate(version)
    return RetrainResult(version=version, activated=better or force, metrics=metrics,
                         baseline=baseline, reason=reason)
