"""The serving store: users, items, feedback events and everything the service records.

One :class:`Store` per database URL (SQLite file by default, PostgreSQL by URL), safe to
share between threads (a connection pool; every method is one short transaction). Writes
are committed before a method returns, so an acknowledged write survives a crash of the
process (SQLite runs in WAL mode with ``synchronous=FULL``; see :mod:`.schema`).

The methods here cover users, items and writing events; reading events is in
:mod:`._store_events`; model versions, experiments, impressions, precomputed lists and API
keys are in :mod:`._store_admin`. Ids are stored verbatim
(every query binds its values; nothing is spliced into SQL text).

Examples
--------
>>> store = Store.open("serving.db")                                # doctest: +SKIP
>>> store.insert_events([Event("u1", "i9", "click")], idempotency_key="req-1")  # doctest: +SKIP
(1, False)
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recoforge.errors import DataError
from recoforge.serving import schema as db
from recoforge.serving._store_admin import chunks
from recoforge.serving._store_events import StoreEvents, page

#: the item fields besides ``id`` (upserts replace those a row gives)
ITEM_COLUMNS = ("attributes", "categories", "hidden", "time")


@dataclass(frozen=True)
class Event:
    """One feedback event: ``user`` did ``type`` on ``item`` with ``weight`` at ``time``.

    ``time`` is in epoch seconds (UTC); None means now (when it is stored).
    """

    user: str
    item: str
    type: str = "click"
    weight: float = 1.0
    time: float | None = None


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{field}: expected a non-empty string id, got {value!r}")
    if "\x00" in value:
        raise DataError(f"{field}: id {value!r} contains a NUL character")
    return value


def _check_number(value: Any, field: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise DataError(f"{field}: expected a finite number, got {value!r}")
    return float(value)


def _json_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object (attributes): a mapping of names to JSON values, NaN refused."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise DataError(f"{field}: expected an object, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{field}: not storable as JSON ({exc})") from None
    return dict(value)


def _event_row(event: Event, index: int, now: float, key: str | None) -> dict[str, Any]:
    """The events-table row of one event, validated (errors name ``events[index].field``)."""
    where = f"events[{index}]"
    return {"user": _check_id(event.user, f"{where}.user"),
            "item": _check_id(event.item, f"{where}.item"),
            "type": _check_id(event.type, f"{where}.type"),
            "weight": _check_number(event.weight, f"{where}.weight"),
            "time": now if event.time is None else _check_number(event.time,
                                                                 f"{where}.time"),
            "idempotency_key": key}


class Store(StoreEvents):
    """Users, items, feedback, model versions, experiments and keys in one database.

    Make one with :meth:`open`. Attributes: ``url`` (the SQLAlchemy URL), ``dialect``
    (``"sqlite"`` or ``"postgresql"``), ``schema_version``.
    """

    def __init__(self, engine: sa.engine.Engine, url: str, version: int) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self.schema_version = version

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at ``url``.

        Parameters
        ----------
        url : str
            A SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``) or a bare
            file path, taken as SQLite.
        create : bool
            Create the schema in an empty database (else: error).

        Raises
        ------
        ConfigError
            An unsupported URL, an empty database with ``create=False``, or a database of
            a newer schema version than this recoforge (naming both versions).
        """
        full = db.database_url(url)
        engine = db.create_engine(full, create=create)
        try:
            version = db.migrate(engine, full, create=create)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, full, version)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def ping(self) -> bool:
        """Whether the database answers (readiness)."""
        try:
            with self._read() as conn:
                conn.execute(sa.select(1))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    # ------------------------------------------------------------------ users
    def upsert_users(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert or replace users ``{"id": str, "attributes": {...}}``; their number
        (a stored user given no ``attributes`` keeps theirs)."""
        now = time.time()
        records = [self._user_record(row, index, now) for index, row in enumerate(rows)]
        with self._write() as conn:
            self._upsert_given(conn, db.users, records, rows, ("attributes",))
        return len(records)

    @staticmethod
    def _user_record(row: Mapping[str, Any], index: int, now: float) -> dict[str, Any]:
        return {"id": _check_id(row.get("id"), f"users[{index}].id"),
                "attributes": _json_object(row.get("attributes"), f"users[{index}].attributes"),
                "created": now}

    def import_rows(self, users: Sequence[Mapping[str, Any]] = (),
                    items: Sequence[Mapping[str, Any]] = (), events: Sequence[Event] = (),
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """Upsert users and items and insert events, all in ONE transaction (a failure
        leaves the database as it was); what ``recoforge load`` uses.

        Returns ``{"users": n, "items": n, "events": n, "replayed": bool}``; with a known
        ``idempotency_key`` the events are not inserted again (users and items are still
        upserted).
        """
        now = time.time()
        user_rows = [self._user_record(row, index, now) for index, row in enumerate(users)]
        item_rows = [self._item_record(row, index) for index, row in enumerate(items)]
        key = None if idempotency_key is None else _check_id(idempotency_key,
                                                             "idempotency_key")
        event_rows = [_event_row(event, index, now, key) for index, event in enumerate(events)]
        with self._write() as conn:
            self._upsert_given(conn, db.users, user_rows, users, ("attributes",))
            self._upsert_given(conn, db.items, item_rows, items, ITEM_COLUMNS)
            first = None if key is None else self._claim_key(conn, key, len(event_rows), now)
            if first is None:
                self._create_missing(conn, event_rows, now)
                self._insert_events(conn, event_rows)
        return {"users": len(user_rows), "items": len(item_rows),
                "events": len(event_rows) if first is None else first,
                "replayed": first is not None}

    def get_user(self, user: str) -> dict[str, Any] | None:
        """The user's row (id, attributes, created), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(db.users).where(db.users.c.id == user)).first()
        return None if row is None else dict(row._mapping)

    def list_users(self, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Users in id order, one page."""
        offset, limit = page(offset, limit)
        query = sa.select(db.users).order_by(db.users.c.id).offset(offset).limit(limit)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def delete_user(self, user: str) -> dict[str, int]:
        """Forget a user: their events, impressions, precomputed lists and user row.

        Returns the number of rows deleted per table (``events``, ``impressions``,
        ``lists``, ``users``); nothing of any other user is touched.
        """
        counts = {}
        with self._write() as conn:
            for name, table, column in (("events", db.events, db.events.c.user),
                                        ("impressions", db.impressions,
                                         db.impressions.c.user),
                                        ("lists", db.lists, db.lists.c.user),
                                        ("users", db.users, db.users.c.id)):
                counts[name] = conn.execute(table.delete().where(column == user)).rowcount
        return counts

    # ------------------------------------------------------------------ items
    def upsert_items(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert or replace items ``{"id", "attributes", "categories", "hidden", "time"}``
        (all but ``id`` optional: a stored item keeps the fields a row leaves out); their
        number."""
        records = [self._item_record(row, index) for index, row in enumerate(rows)]
        with self._write() as conn:
            self._upsert_given(conn, db.items, records, rows, ITEM_COLUMNS)
        return len(records)

    def _upsert_given(self, conn: Connection, table: sa.Table, records: list[dict[str, Any]],
                      rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        """Upsert ``records`` (validated ``rows``): new rows get defaults for what they
        leave out, stored rows keep it. The last row of a repeated id wins."""
        last = {record["id"]: (record, row) for record, row in zip(records, rows,
                                                                  strict=True)}
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for record, row in last.values():
            given = tuple(name for name in columns if name in row)
            groups.setdefault(given, []).append(record)
        for given, group in groups.items():
            self._upsert(conn, table, group, given)

    @staticmethod
    def _item_record(row: Mapping[str, Any], index: int) -> dict[str, Any]:
        where = f"items[{index}]"
        attributes = _json_object(row.get("attributes"), f"{where}.attributes")
        categories = row.get("categories") or []
        if isinstance(categories, str) or not all(isinstance(c, str) for c in categories):
            raise DataError(f"{where}.categories: expected a list of strings")
        hidden = row.get("hidden", False)
        if not isinstance(hidden, (bool, np.bool_)):
            raise DataError(f"{where}.hidden: expected true or false, got {hidden!r}")
        stamp = row.get("time")
        return {"id": _check_id(row.get("id"), f"{where}.id"), "attributes": attributes,
                "categories": list(categories), "hidden": bool(hidden),
                "time": None if stamp is None else _check_number(stamp, f"{where}.time")}

    def get_item(self, item: str) -> dict[str, Any] | None:
        """The item's row (id, attributes, categories, hidden, time), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(db.items).where(db.items.c.id == item)).first()
        return None if row is None else dict(row._mapping)

    def list_items(self, offset: int = 0, limit: int = 100, *, category: str | None = None,
                   include_hidden: bool = False) -> list[dict[str, Any]]:
        """Items in id order, one page; optionally only one category's, hidden ones only
        with ``include_hidden``."""
        offset, limit = page(offset, limit)
        query = sa.select(db.items).order_by(db.items.c.id)
        if not include_hidden:
            query = query.where(db.items.c.hidden.is_(False))
        if category is None:
            with self._read() as conn:
                return [dict(row._mapping)
                        for row in conn.execute(query.offset(offset).limit(limit))]
        with self._read() as conn:  # categories are JSON: filtered here, portably
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return [row for row in rows if category in row["categories"]][offset:offset + limit]

    def delete_item(self, item: str) -> bool:
        """Remove an item from the catalogue (its events stay); whether it existed."""
        with self._write() as conn:
            return bool(conn.execute(db.items.delete().where(db.items.c.id == item)).rowcount)

    def set_hidden(self, item: str, hidden: bool) -> bool:
        """Hide (never recommended) or show an item; whether it exists."""
        with self._write() as conn:
            result = conn.execute(db.items.update().where(db.items.c.id == item)
                                  .values(hidden=bool(hidden)))
        return bool(result.rowcount)

    def hidden_items(self) -> set[str]:
        """Ids of the hidden items."""
        with self._read() as conn:
            return set(conn.execute(sa.select(db.items.c.id)
                                    .where(db.items.c.hidden.is_(True))).scalars())

    def items_in_category(self, category: str) -> set[str]:
        """Ids of the items listing ``category`` (hidden ones included)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(db.items.c.id, db.items.c.categories))
            return {item for item, categories in rows if category in (categories or [])}

    def search_items(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose id or any attribute value contains ``text`` (case-insensitive),
        ids first, then by id."""
        needle = str(text).casefold()
        if not needle:
            return []
        query = sa.select(db.items).order_by(db.items.c.id)
        if re.fullmatch(r"[a-z0-9 ]+", needle):  # spelt the same in the JSON text: narrow
            pattern = f"%{needle}%"                # in SQL, then check below
            query = query.where(sa.or_(
                sa.func.lower(db.items.c.id).like(pattern),
                sa.func.lower(sa.cast(db.items.c.attributes, sa.Text)).like(pattern)))
        with self._read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        by_id = [row for row in rows if needle in row["id"].casefold()]
        seen = {row["id"] for row in by_id}
        by_value = [row for row in rows if row["id"] not in seen and any(
            needle in str(value).casefold() for value in row["attributes"].values())]
        return (by_id + by_value)[:max(0, int(limit))]

    # ------------------------------------------------------------------ events
    def insert_events(self, events: Sequence[Event], idempotency_key: str | None = None, *,
                      create_missing: bool = True) -> tuple[int, bool]:
        """Store feedback events in one transaction, committed before returning.

        Parameters
        ----------
        events : sequence of Event
            Validated here (errors name ``events[i].field``); ``time=None`` is now.
        idempotency_key : str, optional
            A key seen before inserts nothing and returns the first call's count with
            ``replayed=True`` (safe retries of a batch).
        create_missing : bool
            Add users and items the events name that are not stored yet (no attributes).

        Returns
        -------
        (int, bool)
            The number of events inserted (or inserted by the first call with this key)
            and whether this call was a replay.
        """
        now = time.time()
        key = None if idempotency_key is None else _check_id(idempotency_key,
                                                             "idempotency_key")
        rows = [_event_row(event, index, now, key) for index, event in enumerate(events)]
        with self._write() as conn:
            if key is not None:
                first = self._claim_key(conn, key, len(rows), now)
                if first is not None:
                    return first, True
            if create_missing:
                self._create_missing(conn, rows, now)
            self._insert_events(conn, rows)
        return len(rows), False

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert validated event rows with the driver's executemany (bound parameters;
        SQLAlchemy's per-row compilation would cost more than the insert itself)."""
        mark = "?" if self.dialect == "sqlite" else "%s"
        sql = (f'INSERT INTO events ("user", item, type, weight, time, idempotency_key) '
               f'VALUES ({", ".join([mark] * 6)})')
        for chunk in chunks(rows, 50_000):
            conn.exec_driver_sql(sql, [(r["user"], r["item"], r["type"], r["weight"],
                                        r["time"], r["idempotency_key"]) for r in chunk])

    def _claim_key(self, conn: Connection, key: str, n: int, now: float) -> int | None:
        """Record an idempotency key; the first call's count when it was known."""
        claimed = conn.execute(self._insert(db.idempotency).values(key=key, n_events=n, time=now)
                               .on_conflict_do_nothing(index_elements=["key"])
                               .returning(db.idempotency.c.key)).first()
        if claimed is not None:
            return None
        return int(conn.execute(sa.select(db.idempotency.c.n_events)
                                .where(db.idempotency.c.key == key)).scalar_one())

    def _create_missing(self, conn: Connection, rows: list[dict[str, Any]],
                        now: float) -> None:
        """Add the users and items ``rows`` name that are not stored (no attributes);
        plain SQL with bound ids, as on every feedback write."""
        mark = "?" if self.dialect == "sqlite" else "%s"
        if not rows:
            return
        users = sorted({row["user"] for row in rows})
        items = sorted({row["item"] for row in rows})
        conn.exec_driver_sql(f"INSERT INTO users (id, attributes, created) VALUES "
                             f"({mark}, '{{}}', {mark}) ON CONFLICT (id) DO NOTHING",
                             [(user, now) for user in users])
        conn.exec_driver_sql(f"INSERT INTO items (id, attributes, categories, hidden) "
                             f"VALUES ({mark}, '{{}}', '[]', FALSE) ON CONFLICT (id) "
                             f"DO NOTHING", [(item,) for item in items])
