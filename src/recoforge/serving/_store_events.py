"""The reading side of :class:`~recoforge.serving.store.Store`'s feedback events:
listings, histories (the serving hot path), popularity, the training frame.

Histories are summed in Python from one indexed range scan per user (``events(user,
time)``), which is cheaper than a GROUP BY through the SQL layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recoforge.errors import DataError
from recoforge.serving import schema as db
from recoforge.serving._store_admin import StoreAdmin, chunks


def page(offset: int, limit: int) -> tuple[int, int]:
    """A validated ``(offset, limit)``."""
    if offset < 0 or limit < 0:
        raise DataError(f"offset and limit must be >= 0 (got offset={offset}, "
                        f"limit={limit})")
    return int(offset), int(limit)


class StoreEvents(StoreAdmin):
    """Reading feedback events (see the module docstring)."""

    def _events_page(self, column: Any, value: str, offset: int, limit: int
                     ) -> list[dict[str, Any]]:
        offset, limit = page(offset, limit)
        query = (sa.select(db.events).where(column == value)
                 .order_by(db.events.c.time.desc(), db.events.c.id.desc())
                 .offset(offset).limit(limit))
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def user_events(self, user: str, offset: int = 0, limit: int = 100
                    ) -> list[dict[str, Any]]:
        """A user's events, newest first, one page."""
        return self._events_page(db.events.c.user, user, offset, limit)

    def item_events(self, item: str, offset: int = 0, limit: int = 100
                    ) -> list[dict[str, Any]]:
        """An item's events, newest first, one page."""
        return self._events_page(db.events.c.item, item, offset, limit)

    def _histories(self, users: Sequence[str]
                   ) -> dict[str, tuple[list[str], np.ndarray, float | None]]:
        """Each user's items (ordered by their last event, then id), summed weights and
        last event time. The raw events are summed here: one indexed range scan per
        user, cheaper than a GROUP BY through the SQL layer (the hot path of serving)."""
        mark = "?" if self.dialect == "sqlite" else "%s"
        sums: dict[str, dict[str, list[float]]] = {user: {} for user in users}
        batches = list(chunks(list(sums)))
        reader = self._read_statement if len(batches) == 1 else self._read
        with reader() as conn:
            # the driver's own cursor: plain tuples, no SQLAlchemy row per event
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for chunk in batches:
                    sql = (f'SELECT "user", item, weight, time FROM events WHERE "user" IN '
                           f'({", ".join([mark] * len(chunk))}) ORDER BY "user", time, id')
                    cursor.execute(sql, tuple(chunk))
                    for user, item, weight, stamp in cursor.fetchall():
                        entry = sums[user].setdefault(item, [0.0, stamp])
                        entry[0] += weight
                        entry[1] = stamp  # rows come in time order: the last is the latest
            finally:
                cursor.close()
        out = {}
        for user, by_item in sums.items():
            items = sorted(by_item, key=lambda item: (by_item[item][1], item))
            out[user] = (items, np.array([by_item[item][0] for item in items], dtype=float),
                         float(max(v[1] for v in by_item.values())) if by_item else None)
        return out

    def user_history(self, user: str) -> tuple[list[str], np.ndarray, float | None]:
        """A user's history: items (oldest last event first), the summed weight of each,
        and the time of the user's last event (None without events)."""
        return self._histories([user])[user]

    def histories(self, users: Sequence[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """:meth:`user_history` of many users (items, summed weights); every requested
        user is a key, with empty lists when they have no events."""
        return {user: (items, weights)
                for user, (items, weights, _) in self._histories(users).items()}

    def last_event_times(self, users: Sequence[str]) -> dict[str, float]:
        """The time of each user's last event (users without events are absent)."""
        e = db.events.c
        out: dict[str, float] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(users))):
                out.update((user, float(last)) for user, last in conn.execute(
                    sa.select(e.user, sa.func.max(e.time)).where(e.user.in_(list(chunk)))
                    .group_by(e.user)))
        return out

    def popular_items(self, n: int, since: float | None = None, *,
                      include_hidden: bool = False) -> list[tuple[str, int]]:
        """The ``n`` items with the most events (since ``since``), with their counts;
        hidden items left out unless ``include_hidden``."""
        e = db.events.c
        count = sa.func.count().label("n")
        query = sa.select(e.item, count).group_by(e.item).order_by(count.desc(), e.item)
        if since is not None:
            query = query.where(e.time >= float(since))
        if not include_hidden:
            query = query.where(e.item.not_in(
                sa.select(db.items.c.id).where(db.items.c.hidden.is_(True))))
        with self._read() as conn:
            return [(item, int(k)) for item, k in conn.execute(query.limit(max(0, int(n))))]

    def latest_items(self, n: int, *, include_hidden: bool = False) -> list[dict[str, Any]]:
        """The ``n`` items with the latest ``time`` (items without one last)."""
        query = sa.select(db.items).order_by(db.items.c.time.desc().nulls_last(),
                                             db.items.c.id).limit(max(0, int(n)))
        if not include_hidden:
            query = query.where(db.items.c.hidden.is_(False))
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def events_frame(self, types: Sequence[str] | None = None) -> pd.DataFrame:
        """Every event (or those of ``types``) as a DataFrame with columns user, item,
        type, weight, time, in time order: what ``retrain`` fits on."""
        e = db.events.c
        query = sa.select(e.user, e.item, e.type, e.weight, e.time).order_by(e.time, e.id)
        if types is not None:
            query = query.where(e.type.in_(list(types)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["user", "item", "type", "weight", "time"])
        return frame.astype({"user": object, "item": object, "type": object,
                             "weight": float, "time": float})

    def count_events(self) -> int:
        """The number of stored events."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(db.events))
                       .scalar_one())
