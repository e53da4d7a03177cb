"""Operations endpoints: health, Prometheus metrics, model versions, A/B experiments.

Activating a version (or rolling back to an older one) and starting or stopping an
experiment need a key of scope ``admin``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from recoforge.serving.experiments import daily_ctr, variant_report
from recoforge.serving.metrics import CONTENT_TYPE
from recoforge.serving.schemas import ExperimentIn, ExperimentOut, Health, ModelVersionOut
from recoforge.serving.security import ApiError, read_access, require

router = APIRouter()
VersionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


# ---------------------------------------------------------------------- health
@router.get("/health/live", response_model=Health, tags=["operations"],
            summary="The process answers")
def live() -> Any:
    return {"status": "ok"}


@router.get("/health/ready", response_model=Health, tags=["operations"],
            summary="The database answers and a model is loaded (503 otherwise)",
            responses={503: {"description": "not ready"}})
def ready(request: Request) -> Any:
    store, service = request.app.state.store, request.app.state.service
    if not store.ping():
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    predictor = service.active
    if predictor is None:
        return JSONResponse({"status": "no model loaded"}, status_code=503)
    return {"status": "ok", "version": predictor.version, "model": predictor.name}


@router.get("/metrics", response_class=PlainTextResponse, tags=["operations"],
            summary="Prometheus metrics (text exposition format)")
def metrics(request: Request) -> PlainTextResponse:
    state = request.app.state
    predictor = state.service.active
    gauges = {
        "recoforge_model_version": (
            "The active model version (0: a model directory served without version).",
            [] if predictor is None else [({"model": predictor.name},
                                           float(predictor.version or 0))]),
        "recoforge_models_loaded": ("Model versions held in memory.",
                                    [({}, float(len(state.service.loaded_versions())))]),
        "recoforge_impressions_dropped": ("Impressions not logged (queue full).",
                                          [({}, float(state.impressions.dropped))]),
    }
    return PlainTextResponse(state.metrics.render(gauges), media_type=CONTENT_TYPE)


# ---------------------------------------------------------------------- versions
def _version_out(row: dict[str, Any], loaded: set[int]) -> dict[str, Any]:
    return {key: row.get(key) for key in ("id", "name", "metrics", "created", "active")} | {
        "note": row.get("note") or "", "loaded": row["id"] in loaded}


@router.get("/models", response_model=list[ModelVersionOut], tags=["models"],
            dependencies=[read_access()], summary="Registered model versions")
def versions(request: Request) -> Any:
    loaded = request.app.state.service.loaded_versions()
    return [_version_out(row, loaded) for row in request.app.state.store.model_versions()]


@router.post("/models/{version}/activate", response_model=ModelVersionOut, tags=["models"],
             dependencies=[require("admin")],
             summary="Serve a version (rollback: activate an older one); in-flight "
                     "requests finish on the previous one")
def activate(request: Request, version: VersionId) -> Any:
    service = request.app.state.service
    service.activate(version)
    row = request.app.state.store.model_version(version)
    return _version_out(row, service.loaded_versions())


# ---------------------------------------------------------------------- experiments
@router.post("/experiments", response_model=ExperimentOut, tags=["experiments"],
             dependencies=[require("admin")],
             summary="Start an A/B experiment: variants are model versions with traffic "
                     "shares summing to 1")
def start_experiment(request: Request, body: ExperimentIn) -> Any:
    store = request.app.state.store
    variants = {label: v.model_dump() for label, v in body.variants.items()}
    total = sum(v["share"] for v in variants.values())
    if abs(total - 1.0) > 1e-6:
        raise ApiError(422, f"variant shares sum to {total:g}, not 1", "body.variants")
    experiment = store.create_experiment(body.name, variants)
    request.app.state.service.invalidate()
    return _experiment(request, experiment)


@router.get("/experiments", response_model=list[ExperimentOut], tags=["experiments"],
            dependencies=[read_access()], summary="Every experiment, oldest first")
def experiments(request: Request) -> Any:
    return request.app.state.store.experiments()


def _experiment(request: Request, experiment: int) -> dict[str, Any]:
    found = [row for row in request.app.state.store.experiments()
             if row["id"] == experiment]
    if not found:
        raise ApiError(404, f"experiment {experiment} does not exist", "experiment")
    return found[0]


@router.post("/experiments/{experiment}/stop", response_model=ExperimentOut,
             tags=["experiments"], dependencies=[require("admin")],
             summary="Stop an experiment (everyone gets the active version again)")
def stop_experiment(request: Request, experiment: VersionId) -> Any:
    _experiment(request, experiment)
    request.app.state.store.stop_experiment(experiment)
    request.app.state.service.invalidate()
    return _experiment(request, experiment)


@router.get("/experiments/{experiment}/report", tags=["experiments"],
            dependencies=[read_access()],
            summary="Per-variant impressions, CTR with a Wilson interval, conversions and "
                    "tests against the first variant; daily CTR")
def report(request: Request, experiment: VersionId) -> dict[str, Any]:
    row = _experiment(request, experiment)
    outcomes = request.app.state.store.experiment_outcomes(experiment)
    table = variant_report(outcomes, variants=list(row["variants"]))
    daily = daily_ctr(outcomes)
    return {"experiment": row, "variants": _records(table), "daily": _records(daily)}


def _records(frame: Any) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts (NaN -> null, numpy scalars -> Python)."""
    out = []
    for record in frame.to_dict("records"):
        clean = {}
        for key, value in record.items():
            value = value.item() if hasattr(value, "item") else value
            clean[str(key)] = None if isinstance(value, float) and not math.isfinite(value) \
                else value
        out.append(clean)
    return out
