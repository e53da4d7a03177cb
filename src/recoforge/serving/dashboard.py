"""The dashboard: one web page served by the app, and the JSON it reads.

``dashboard_router(get_store, get_predictor)`` returns a FastAPI router with

- ``GET /dashboard``: the page (static HTML, CSS and plain JavaScript under
  ``serving/static/``; no CDN, no build step), which shows the active model and the
  versions, traffic and CTR per variant of an experiment over time (an inline SVG chart),
  a user's history beside their recommendations with explanations, and item search;
- ``GET /dashboard/api/models``, ``/dashboard/api/experiments``,
  ``/dashboard/api/experiments/{id}`` (report and daily series, see
  :mod:`recoforge.serving.experiments`), ``/dashboard/api/users/{user}`` and
  ``/dashboard/api/items?q=``.

The router holds no state: ``get_store()`` and ``get_predictor()`` are called on every
request, so a model activation shows at once. Recommendations shown here are not logged
as impressions (looking at the dashboard is not traffic). Protect the JSON routes by
passing the app's key dependency in ``dependencies``: the page carries no data itself and
sends the key the user types in as ``X-API-Key``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from recoforge.errors import RecoforgeError, UnknownIdError
from recoforge.serving.experiments import daily_ctr, variant_report

if TYPE_CHECKING:
    from recoforge.serving.predictor import Predictor
    from recoforge.serving.store import Store

__all__ = ["dashboard_router"]

STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8",
                "dashboard.css": "text/css; charset=utf-8"}
#: attribute names tried, in order, for an item's display label
LABEL_ATTRIBUTES = ("title", "name", "label")
MAX_HISTORY = 200
MAX_RECOMMENDATIONS = 50


def _static(name: str) -> str:
    return resources.files("recoforge.serving").joinpath("static", name).read_text("utf-8")


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, dates -> ISO strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _label(item: Mapping[str, Any] | None, item_id: str) -> str:
    attributes = (item or {}).get("attributes") or {}
    for name in LABEL_ATTRIBUTES:
        if attributes.get(name):
            return str(attributes[name])
    return item_id


def _item_view(store: Store, item_id: str) -> dict[str, Any]:
    row = store.get_item(item_id)
    return {"item": item_id, "label": _label(row, item_id),
            "categories": list((row or {}).get("categories") or []),
            "hidden": bool((row or {}).get("hidden", False))}


def _version_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A model version without its server path."""
    return {key: row.get(key) for key in ("id", "name", "metrics", "created", "active", "note")}


def _experiment_view(store: Store, experiment: Mapping[str, Any]) -> dict[str, Any]:
    outcomes = store.experiment_outcomes(int(experiment["id"]))
    labels = list((experiment.get("variants") or {}).keys()) or None
    return {"experiment": dict(experiment),
            "report": variant_report(outcomes, variants=labels).to_dict("records"),
            "daily": daily_ctr(outcomes).to_dict("records")}


def _explanation(store: Store, predictor: Predictor, user: str, item: str,
                 labels: dict[str, str]) -> dict[str, Any]:
    """The predictor's explanation, each contributing item with its display label."""
    try:
        explanation = predictor.explain(user, item, n=3)
    except RecoforgeError as exc:  # not explainable (model kind, cold user): say why
        return {"explanation": None, "explanation_error": str(exc)}
    for part in explanation.get("contributions", []):
        if part.get("source") == "item":
            source_item = str(part.get("id"))
            if source_item not in labels:
                labels[source_item] = _label(store.get_item(source_item), source_item)
            part["label"] = labels[source_item]
    return {"explanation": explanation, "explanation_error": None}


def _history(store: Store, user: str, limit: int) -> list[dict[str, Any]]:
    events = store.user_events(user, 0, limit)
    labels: dict[str, str] = {}
    rows = []
    for event in events:
        item = str(event["item"])
        if item not in labels:
            labels[item] = _label(store.get_item(item), item)
        rows.append({"item": item, "label": labels[item], "type": event.get("type"),
                     "weight": event.get("weight"), "time": event.get("time")})
    return rows


def _recommendations(store: Store, predictor: Predictor | None, user: str, n: int
                     ) -> dict[str, Any]:
    if predictor is None:
        return {"source": None, "version": None, "items": [],
                "error": "no model is loaded"}
    served = predictor.recommend(user, n, use_lists=False)
    items: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    for item, score in zip(served.items, served.scores, strict=True):
        entry = _item_view(store, item) | {"score": score}
        entry |= _explanation(store, predictor, user, item, labels)
        items.append(entry)
    return {"source": served.source, "version": served.version, "items": items, "error": None}


def dashboard_router(get_store: Callable[[], Store],
                     get_predictor: Callable[[], Predictor | None], *,
                     prefix: str = "/dashboard",
                     dependencies: Sequence[Any] = ()) -> APIRouter:
    """The dashboard's page and JSON routes.

    Parameters
    ----------
    get_store : callable
        ``get_store() -> Store``, called per request.
    get_predictor : callable
        ``get_predictor() -> Predictor or None`` (the active version), called per request.
    prefix : str
        Path of the page; the JSON lives under ``prefix + "/api"``.
    dependencies : sequence
        FastAPI dependencies of the JSON routes (e.g. the app's API-key check).

    Returns
    -------
    APIRouter
        Include it with ``app.include_router(router)`` (the prefix is already set).
    """
    router = APIRouter(prefix=prefix)
    api = APIRouter(prefix="/api", tags=["dashboard"], dependencies=list(dependencies))

    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("dashboard.html").replace("{{prefix}}", prefix))

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "no-cache"})

    @api.get("/models", summary="Active model and versions")
    def models() -> dict[str, Any]:
        store, predictor = get_store(), get_predictor()
        serving = None if predictor is None else {
            "name": predictor.name, "version": predictor.version, "n_items": predictor.n_items}
        active = store.active_version()
        return _plain({"serving": serving,
                       "active": None if active is None else _version_view(active),
                       "versions": [_version_view(v) for v in store.model_versions()]})

    @api.get("/experiments", summary="Experiments, newest first")
    def experiments() -> dict[str, Any]:
        rows = sorted(get_store().experiments(), key=lambda e: e["id"], reverse=True)
        return _plain({"experiments": rows})

    @api.get("/experiments/{experiment}", summary="An experiment's report and daily CTR")
    def experiment(experiment: int) -> dict[str, Any]:
        store = get_store()
        found = next((e for e in store.experiments() if e["id"] == experiment), None)
        if found is None:
            raise UnknownIdError(f"experiment {experiment} does not exist")
        return _plain(_experiment_view(store, found))

    @api.get("/users/{user}", summary="A user's history and recommendations")
    def user(user: str,
             n: int = Query(10, ge=1, le=MAX_RECOMMENDATIONS),
             history: int = Query(50, ge=1, le=MAX_HISTORY)) -> dict[str, Any]:
        store = get_store()
        record = store.get_user(user)
        return _plain({"user": user, "known": record is not None,
                       "attributes": (record or {}).get("attributes") or {},
                       "history": _history(store, user, history),
                       "recommendations": _recommendations(store, get_predictor(), user, n)})

    @api.get("/items", summary="Search items by id or attribute")
    def items(q: str = Query(..., min_length=1, max_length=200),
              limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        found = get_store().search_items(q, limit)
        return _plain({"query": q, "items": [
            {"item": row["id"], "label": _label(row, row["id"]),
             "categories": row.get("categories") or [], "hidden": bool(row.get("hidden")),
             "attributes": row.get("attributes") or {}} for row in found]})

    router.include_router(api)
    return router
