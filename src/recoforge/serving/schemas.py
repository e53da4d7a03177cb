"""Request and response bodies of the HTTP API, and the service's settings.

Every request body is a pydantic model with bounds (id lengths, list lengths, finite
numbers), so that a malformed request is a 422 whose body names the offending field and
the OpenAPI schema states what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

#: longest id (user, item, category, event type) accepted
MAX_ID_LENGTH = 256
#: most events, users or items in one write request
MAX_BATCH = 10_000
#: longest list a request may ask for
MAX_N = 1_000
#: most attributes of a user or item
MAX_ATTRIBUTES = 100
#: epoch seconds accepted as event / item times (1970 .. 5138)
MAX_TIME = 1e11

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH,
                                      pattern=r"^[^\x00-\x1f\x7f]+$")]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                             pattern=r"^[A-Za-z0-9_.:-]+$")]
Attributes = Annotated[dict[Id, JsonValue], Field(max_length=MAX_ATTRIBUTES)]
Weight = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Time = Annotated[float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False)]


@dataclass(frozen=True)
class ServeSettings:
    """What a service allows and requires.

    Attributes
    ----------
    read_requires_key : bool
        Read endpoints need an API key too (write and admin endpoints always do).
    max_n : int
        Longest list ``n + offset`` a request may ask for.
    max_batch : int
        Most events / users / items in one write.
    max_body_bytes : int
        Largest request body accepted (413 above it).
    log_impressions : bool
        Record every served list as impressions (what experiment reports count).
    use_lists : bool
        Serve precomputed lists while they are fresh.
    max_loaded_versions : int
        Model versions kept loaded at once (the active one and experiment variants).
    hidden_ttl : float
        Seconds a worker reuses the set of hidden items (its own writes apply at once).
    """

    read_requires_key: bool = False
    max_n: int = MAX_N
    max_batch: int = MAX_BATCH
    max_body_bytes: int = 4 * 1024 * 1024
    log_impressions: bool = True
    use_lists: bool = True
    max_loaded_versions: int = 4
    hidden_ttl: float = 1.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- requests
class EventIn(Strict):
    """One feedback event; ``time`` in epoch seconds (omitted: now)."""

    user: Id
    item: Id
    type: EventType = "click"
    weight: Weight = 1.0
    time: Time | None = None


class UserIn(Strict):
    attributes: Attributes = Field(default_factory=dict)


class UserRow(UserIn):
    id: Id


class ItemIn(Strict):
    attributes: Attributes = Field(default_factory=dict)
    categories: Annotated[list[Id], Field(max_length=MAX_ATTRIBUTES)] = Field(
        default_factory=list)
    hidden: bool = False
    time: Time | None = None


class ItemRow(ItemIn):
    id: Id


class HiddenIn(Strict):
    hidden: bool


class SessionEvent(Strict):
    item: Id
    type: EventType = "click"
    weight: Weight = 1.0


class SessionIn(Strict):
    """An anonymous session: its events and the list wanted."""

    events: Annotated[list[SessionEvent], Field(min_length=1, max_length=MAX_BATCH)]
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 10
    offset: Annotated[int, Field(ge=0, le=MAX_N)] = 0
    category: Id | None = None
    exclude: Annotated[list[Id], Field(max_length=MAX_N)] = Field(default_factory=list)
    exclude_seen: bool = True


class VariantIn(Strict):
    version: Annotated[int, Field(ge=1)]
    share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class ExperimentIn(Strict):
    name: Id
    variants: Annotated[dict[Id, VariantIn], Field(min_length=1, max_length=16)]


# ---------------------------------------------------------------------- responses
class UserOut(BaseModel):
    id: str
    attributes: dict[str, Any]
    created: float | None = None


class ItemOut(BaseModel):
    id: str
    attributes: dict[str, Any]
    categories: list[str]
    hidden: bool
    time: float | None = None


class EventOut(BaseModel):
    user: str
    item: str
    type: str
    weight: float
    time: float


class Written(BaseModel):
    written: int


class FeedbackOut(BaseModel):
    inserted: int
    replayed: bool


class Forgotten(BaseModel):
    user: str
    deleted: dict[str, int]


class ScoredItem(BaseModel):
    item: str
    score: float | None = None
    explored: bool = False


class RecommendationOut(BaseModel):
    user: str | None
    items: list[ScoredItem]
    source: str
    version: int | None
    experiment: int | None = None
    variant: str | None = None
    request_id: str


class NeighbourOut(BaseModel):
    id: str
    score: float


class Contribution(BaseModel):
    source: str
    id: str
    contribution: float


class ExplanationOut(BaseModel):
    user: str
    item: str
    score: float | None
    contributions: list[Contribution]
    version: int | None


class ModelVersionOut(BaseModel):
    id: int
    name: str
    metrics: dict[str, Any]
    created: float | None = None
    active: bool
    note: str = ""
    loaded: bool = False


class ExperimentOut(BaseModel):
    id: int
    name: str
    variants: dict[str, Any]
    started: float | None = None
    stopped: float | None = None


class Health(BaseModel):
    status: str
    version: int | None = None
    model: str | None = None
