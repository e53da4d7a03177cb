"""Recommendation endpoints: per-user lists, anonymous sessions, similar items and users,
explanations, popular and latest items.

Every list served to a user is logged as impressions (with the model version and, during
an experiment, the variant the user's stable hash picked), which is what experiment
reports join clicks and conversions to.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Collection
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from recoforge.ranking.rerank import exploration_slots
from recoforge.serving.predictor import Predictor, Recommendation, popular_list
from recoforge.serving.routes_data import PathId
from recoforge.serving.schemas import (
    MAX_ID_LENGTH,
    MAX_N,
    ExplanationOut,
    ItemOut,
    NeighbourOut,
    RecommendationOut,
    ScoredItem,
    SessionIn,
)
from recoforge.serving.security import ApiError, read_access

router = APIRouter(tags=["recommend"])

N = Annotated[int, Query(ge=1, le=MAX_N, description="list length")]
Offset = Annotated[int, Query(ge=0, le=MAX_N)]
Category = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)]
Fraction = Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)]
#: candidates scored per list item when re-ranking for diversity or exploration
POOL_FACTOR = 3


def _check_page(request: Request, n: int, offset: int) -> None:
    limit = request.app.state.settings.max_n
    if n + offset > limit:
        raise ApiError(422, f"n + offset is {n + offset}; at most {limit}", "query.n")


def _allowed(request: Request, category: str | None, attrs: list[str]) -> set[str] | None:
    """Items passing the category and ``key:value`` attribute filters (None: no filter).

    Attribute filters read the catalogue (O(items)); categories use one query."""
    store = request.app.state.store
    allowed = None if category is None else store.items_in_category(category)
    if not attrs:
        return allowed
    wanted = []
    for i, attr in enumerate(attrs):
        key, sep, value = attr.partition(":")
        if not sep or not key:
            raise ApiError(422, f"attr must be key:value, got {attr!r}", f"query.attr.{i}")
        wanted.append((key, value))
    matching, offset = set(), 0
    while True:
        rows = store.list_items(offset=offset, limit=10_000)
        for row in rows:
            attributes = row["attributes"]
            if all(_attribute_matches(attributes.get(key), value) for key, value in wanted):
                matching.add(row["id"])
        if len(rows) < 10_000:
            break
        offset += len(rows)
    return matching if allowed is None else allowed & matching


def _attribute_matches(stored: Any, value: str) -> bool:
    if isinstance(stored, list):
        return any(_attribute_matches(v, value) for v in stored)
    if isinstance(stored, bool):
        return str(stored).lower() == value.lower()
    return stored is not None and str(stored) == value


def _explore(items: list[str], scores: list[float | None], pool: list[str], share: float,
             seed: str) -> tuple[list[str], list[float | None], list[bool]]:
    """Give ``share`` of the list to items drawn from ``pool`` (ranked below it)."""
    keep_top = 1 if len(items) > 1 else 0
    slots = min(int(round(share * len(items))), len(items) - keep_top)
    if slots <= 0 or not pool:
        return items, list(scores), [False] * len(items)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8],
                                               "big"))
    result = exploration_slots(np.array(items, dtype=object), np.array(pool, dtype=object),
                               n_slots=slots, rng=rng, keep_top=keep_top)
    by_item = dict(zip(items, scores, strict=True))
    out = [str(i) for i in result.items.tolist()]
    return out, [None if e else by_item[i] for i, e in zip(out, result.explored.tolist(),
                                                          strict=True)], \
        result.explored.tolist()


def _popular(request: Request, k: int, exclude: Collection[str],
             allowed: Collection[str] | None) -> Recommendation:
    ids, scores = popular_list(request.app.state.store, k, exclude, allowed)
    return Recommendation(ids, scores, "popular", None)


def _log(request: Request, request_id: str, user: str, items: list[str], offset: int,
         version: int | None, experiment: int | None, variant: str | None) -> None:
    if not request.app.state.settings.log_impressions or not items:
        return
    now = time.time()
    request.app.state.impressions.add([
        {"request_id": request_id, "user": user, "item": item, "position": offset + i,
         "version": version, "experiment": experiment, "variant": variant, "time": now}
        for i, item in enumerate(items)])


@router.get("/recommend/{user}", response_model=RecommendationOut,
            dependencies=[read_access()], summary="A user's recommendations")
async def recommend(
    request: Request, user: PathId, n: N = 10, offset: Offset = 0,
    category: Category = None,
    attr: Annotated[list[Annotated[str, Query(max_length=MAX_ID_LENGTH)]], Query(
        max_length=16, description="attribute filter key:value (repeatable)")] = [],  # noqa: B006
    exclude: Annotated[list[Annotated[str, Query(max_length=MAX_ID_LENGTH)]], Query(
        max_length=MAX_N, description="item ids never to return")] = [],  # noqa: B006
    exclude_seen: bool = True,
    diversity: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                      description="MMR weight of diversity")] = 0.0,
    explore: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                    description="share of the list drawn from below "
                                                "its top")] = 0.0,
) -> Any:
    args = (request, user, n, offset, category, attr, exclude, exclude_seen, diversity,
            explore)
    state = request.app.state
    if state.store.dialect == "sqlite" and not attr and state.service.settled():
        # in-process reads and CPU-bound scoring of a loaded model: answered here, without
        # a thread-pool hop (the GIL would serialise this work in the pool anyway)
        return _recommend(*args)
    # network reads, a catalogue scan, a refresh or a model load: keep the loop free
    return await run_in_threadpool(_recommend, *args)


def _recommend(request: Request, user: str, n: int, offset: int, category: str | None,
               attr: list[str], exclude: list[str], exclude_seen: bool, diversity: float,
               explore: float) -> JSONResponse:
    """The work of :func:`recommend`, answered as JSON built from plain lists (the
    response model documents the shape; pydantic objects per item cost more than the
    scoring of an ALS list)."""
    _check_page(request, n, offset)
    service = request.app.state.service
    predictor, experiment, variant = service.route(user)
    allowed = _allowed(request, category, attr)
    k = offset + n
    reranked = diversity > 0 or explore > 0
    pool = min(max(POOL_FACTOR * k, k + 20), request.app.state.settings.max_n * POOL_FACTOR) \
        if reranked else k
    if predictor is None:
        served = _popular(request, pool, exclude, allowed)
    else:
        served = predictor.recommend(user, pool, exclude=exclude, allowed=allowed,
                                     exclude_seen=exclude_seen,
                                     use_lists=request.app.state.settings.use_lists)
    items, scores = served.items, served.scores
    if diversity > 0 and predictor is not None and served.source != "popular":
        items, scores = predictor.diversify(items, scores, k, diversity)
    request_id = uuid.uuid4().hex
    page, page_scores = items[offset:k], list[float | None](scores[offset:k])
    explored = [False] * len(page)
    if explore > 0:
        page, page_scores, explored = _explore(page, page_scores,
                                               [i for i in served.items if i not in page],
                                               explore, f"{user}:{request_id}")
    request.app.state.metrics.served(served.source)
    _log(request, request_id, user, page, offset, served.version, experiment, variant)
    return JSONResponse({  # RecommendationOut's fields, in its order
        "user": user,
        "items": [{"item": i, "score": s, "explored": e}
                  for i, s, e in zip(page, page_scores, explored, strict=True)],
        "source": served.source, "version": served.version, "experiment": experiment,
        "variant": variant, "request_id": request_id})


@router.post("/recommend", response_model=RecommendationOut,
             dependencies=[read_access()],
             summary="Recommendations for an anonymous session given by its events")
def recommend_session(request: Request, body: SessionIn) -> Any:
    _check_page(request, body.n, body.offset)
    predictor = request.app.state.service.active
    allowed = _allowed(request, body.category, [])
    weights: dict[str, float] = {}
    for event in body.events:
        weights[event.item] = weights.get(event.item, 0.0) + event.weight
    if predictor is None:
        seen = set(weights) if body.exclude_seen else set()
        served = _popular(request, body.offset + body.n, set(body.exclude) | seen, allowed)
        items, scores = served.items[body.offset:], served.scores[body.offset:]
    else:
        served = predictor.recommend_session(weights, body.n, offset=body.offset,
                                             exclude=body.exclude, allowed=allowed,
                                             exclude_seen=body.exclude_seen)
        items, scores = served.items, served.scores
    request.app.state.metrics.served(served.source)
    return {"user": None, "source": served.source, "version": served.version,
            "request_id": uuid.uuid4().hex,
            "items": [ScoredItem(item=i, score=s) for i, s in zip(items, scores, strict=True)]}


def _active(request: Request) -> Predictor:
    predictor = request.app.state.service.active
    if predictor is None:
        raise ApiError(409, "no model is active yet; activate a version first", None)
    return predictor


@router.get("/items/{item}/similar", response_model=list[NeighbourOut],
            dependencies=[read_access()], summary="Items similar to an item")
def similar_items(request: Request, item: PathId, n: N = 10) -> Any:
    return [{"id": i, "score": s} for i, s in _active(request).similar_items(item, n)]


@router.get("/users/{user}/similar", response_model=list[NeighbourOut],
            dependencies=[read_access()], summary="Users with similar tastes")
def similar_users(request: Request, user: PathId, n: N = 10) -> Any:
    return [{"id": u, "score": s} for u, s in _active(request).similar_users(user, n)]


@router.get("/recommend/{user}/explain/{item}", response_model=ExplanationOut,
            dependencies=[read_access()],
            summary="Why an item scores as it does for a user (history items, neighbours "
                    "or features)")
def explain(request: Request, user: PathId,
            item: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
            n: Annotated[int, Query(ge=1, le=100)] = 5) -> Any:
    predictor, _, _ = request.app.state.service.route(user)
    if predictor is None:
        raise ApiError(409, "no model is active yet; activate a version first", None)
    found = predictor.explain(user, item, n=n)
    return {"user": user, "item": item, "version": predictor.version, **found}


@router.get("/popular", response_model=list[ScoredItem], dependencies=[read_access()],
            summary="Most popular visible items (event counts)")
def popular(request: Request, n: N = 10, offset: Offset = 0, category: Category = None,
            since: Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False,
                                                 description="epoch seconds")] = None
            ) -> Any:
    _check_page(request, n, offset)
    store = request.app.state.store
    allowed = None if category is None else store.items_in_category(category)
    if since is None:
        ids, scores = popular_list(store, offset + n, (), allowed)
    else:
        ranked = store.popular_items(offset + n if allowed is None else 10 * (offset + n),
                                     since=since)  # hidden items are left out
        pairs = [(i, float(c)) for i, c in ranked if allowed is None or i in allowed]
        ids, scores = [i for i, _ in pairs], [s for _, s in pairs]
    return [{"item": i, "score": s} for i, s in zip(ids[offset:offset + n],
                                                     scores[offset:offset + n], strict=True)]


@router.get("/latest", response_model=list[ItemOut], dependencies=[read_access()],
            summary="Newest visible items (by item time)")
def latest(request: Request, n: N = 10, category: Category = None) -> Any:
    store = request.app.state.store
    if category is None:
        return store.latest_items(n)
    allowed = store.items_in_category(category)
    return [row for row in store.latest_items(n + len(allowed)) if row["id"] in allowed][:n]
