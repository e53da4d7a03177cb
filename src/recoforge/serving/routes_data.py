"""Data endpoints: users and items (with attributes), feedback events, forgetting a user.

Writes need a key of scope ``write``; reads follow ``ServeSettings.read_requires_key``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request

from recoforge.serving.schemas import (
    MAX_BATCH,
    MAX_ID_LENGTH,
    EventIn,
    EventOut,
    FeedbackOut,
    Forgotten,
    HiddenIn,
    ItemIn,
    ItemOut,
    ItemRow,
    UserIn,
    UserOut,
    UserRow,
    Written,
)
from recoforge.serving.security import ApiError, read_access, require
from recoforge.serving.store import Event

router = APIRouter()

PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _store(request: Request) -> Any:
    return request.app.state.store


def _items_changed(request: Request) -> None:
    """Hidden flags may have changed: this app's next request re-reads them."""
    request.app.state.service.hidden.invalidate()


def _check_batch(request: Request, rows: list[Any], what: str) -> None:
    limit = request.app.state.settings.max_batch
    if len(rows) > limit:
        raise ApiError(413, f"{len(rows)} {what} in one request; at most {limit}", "body")


# ---------------------------------------------------------------------- users
@router.put("/users/{user}", response_model=UserOut, tags=["users"],
            dependencies=[require("write")], summary="Insert or replace a user")
def put_user(request: Request, user: PathId, body: UserIn) -> Any:
    store = _store(request)
    store.upsert_users([{"id": user, "attributes": body.attributes}])
    return store.get_user(user)


@router.post("/users", response_model=Written, tags=["users"],
             dependencies=[require("write")], summary="Insert or replace users (batch)")
def post_users(request: Request,
               body: Annotated[list[UserRow], Body(max_length=MAX_BATCH)]) -> Any:
    _check_batch(request, body, "users")
    written = _store(request).upsert_users([row.model_dump() for row in body])
    return {"written": written}


@router.get("/users", response_model=list[UserOut], tags=["users"],
            dependencies=[read_access()], summary="List users (id order)")
def list_users(request: Request, offset: Offset = 0, limit: Limit = 100) -> Any:
    return _store(request).list_users(offset=offset, limit=limit)


@router.get("/users/{user}", response_model=UserOut, tags=["users"],
            dependencies=[read_access()], summary="Get a user")
def get_user(request: Request, user: PathId) -> Any:
    row = _store(request).get_user(user)
    if row is None:
        raise ApiError(404, f"unknown user id {user!r}", "user")
    return row


@router.delete("/users/{user}", response_model=Forgotten, tags=["users"],
               dependencies=[require("write")],
               summary="Forget a user: events, impressions, cached lists and the user row")
def forget_user(request: Request, user: PathId) -> Any:
    return {"user": user, "deleted": _store(request).delete_user(user)}


@router.get("/users/{user}/feedback", response_model=list[EventOut], tags=["feedback"],
            dependencies=[read_access()], summary="A user's events, newest first")
def user_feedback(request: Request, user: PathId, offset: Offset = 0,
                  limit: Limit = 100) -> Any:
    return _store(request).user_events(user, offset=offset, limit=limit)


# ---------------------------------------------------------------------- items
@router.put("/items/{item}", response_model=ItemOut, tags=["items"],
            dependencies=[require("write")], summary="Insert or replace an item")
def put_item(request: Request, item: PathId, body: ItemIn) -> Any:
    store = _store(request)
    store.upsert_items([{"id": item, **body.model_dump()}])
    _items_changed(request)
    return store.get_item(item)


@router.post("/items", response_model=Written, tags=["items"],
             dependencies=[require("write")], summary="Insert or replace items (batch)")
def post_items(request: Request,
               body: Annotated[list[ItemRow], Body(max_length=MAX_BATCH)]) -> Any:
    _check_batch(request, body, "items")
    written = _store(request).upsert_items([row.model_dump() for row in body])
    _items_changed(request)
    return {"written": written}


@router.get("/items", response_model=list[ItemOut], tags=["items"],
            dependencies=[read_access()],
            summary="List items (id order), by category, or search ids and attributes")
def list_items(request: Request, offset: Offset = 0, limit: Limit = 100,
               category: Annotated[str | None, Query(min_length=1,
                                                     max_length=MAX_ID_LENGTH)] = None,
               q: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH,
                                              description="case-insensitive text in the "
                                                          "id or an attribute")] = None,
               include_hidden: bool = False) -> Any:
    store = _store(request)
    if q is not None:
        rows = store.search_items(q, limit=offset + limit)
        rows = [row for row in rows if (include_hidden or not row["hidden"])
                and (category is None or category in row["categories"])]
        return rows[offset:offset + limit]
    return store.list_items(offset=offset, limit=limit, category=category,
                            include_hidden=include_hidden)


@router.get("/items/{item}", response_model=ItemOut, tags=["items"],
            dependencies=[read_access()], summary="Get an item")
def get_item(request: Request, item: PathId) -> Any:
    row = _store(request).get_item(item)
    if row is None:
        raise ApiError(404, f"unknown item id {item!r}", "item")
    return row


@router.delete("/items/{item}", response_model=Written, tags=["items"],
               dependencies=[require("write")],
               summary="Remove an item from the catalogue (its events stay)")
def delete_item(request: Request, item: PathId) -> Any:
    if not _store(request).delete_item(item):
        raise ApiError(404, f"unknown item id {item!r}", "item")
    _items_changed(request)
    return {"written": 1}


@router.put("/items/{item}/hidden", response_model=ItemOut, tags=["items"],
            dependencies=[require("write")],
            summary="Hide an item from every list (or show it again)")
def set_hidden(request: Request, item: PathId, body: HiddenIn) -> Any:
    store = _store(request)
    if not store.set_hidden(item, body.hidden):
        raise ApiError(404, f"unknown item id {item!r}", "item")
    _items_changed(request)
    return store.get_item(item)


@router.get("/items/{item}/feedback", response_model=list[EventOut], tags=["feedback"],
            dependencies=[read_access()], summary="An item's events, newest first")
def item_feedback(request: Request, item: PathId, offset: Offset = 0,
                  limit: Limit = 100) -> Any:
    return _store(request).item_events(item, offset=offset, limit=limit)


# ---------------------------------------------------------------------- feedback
@router.post("/feedback", response_model=FeedbackOut, tags=["feedback"],
             dependencies=[require("write")],
             summary="Insert feedback events (one transaction, durable when answered)")
def post_feedback(
    request: Request,
    body: Annotated[list[EventIn], Body(min_length=1, max_length=MAX_BATCH)],
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=MAX_ID_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying a batch with the same key inserts nothing twice")] = None,
) -> Any:
    _check_batch(request, body, "events")
    events = [Event(user=e.user, item=e.item, type=e.type, weight=e.weight, time=e.time)
              for e in body]
    inserted, replayed = _store(request).insert_events(events, idempotency_key)
    return {"inserted": inserted, "replayed": replayed}
