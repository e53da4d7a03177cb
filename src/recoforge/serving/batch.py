"""Lists that do not need a model: the store's popular items, and the batch job writing
precomputed top-N lists of every user for a model version.

:func:`precompute` stamps each list with the time its users' histories were read; the
:class:`~recoforge.serving.predictor.Predictor` serves a list while it is at least as new
as the user's last event and scores the user live otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from recoforge.errors import NotSupportedError

if TYPE_CHECKING:
    from recoforge.serving.predictor import Predictor
    from recoforge.serving.store import Store

_log = logging.getLogger(__name__)

#: precomputed lists are this long unless told otherwise
LIST_LENGTH = 100
#: users scored together by :func:`precompute`
PRECOMPUTE_BATCH = 256


def popular_list(store: Store, k: int, exclude: Collection[str] = (),
                 allowed: Collection[str] | None = None) -> tuple[list[str], list[float]]:
    """The ``k`` most popular visible items of the store (scores: event counts), after
    ``exclude`` and the ``allowed`` whitelist (the store leaves hidden items out)."""
    blocked = set(exclude)
    want = k + len(blocked)
    ranked = store.popular_items(want if allowed is None else max(want * 4, 200))
    pairs = [(item, float(count)) for item, count in ranked
             if item not in blocked and (allowed is None or item in allowed)]
    return [i for i, _ in pairs[:k]], [s for _, s in pairs[:k]]


def precompute(store: Store, predictor: Predictor, *, n: int = LIST_LENGTH,
               users: Iterable[str] | None = None, batch_size: int = PRECOMPUTE_BATCH,
               page: int = 10_000) -> int:
    """Write top-``n`` lists of every store user (or of ``users``) for the predictor's
    version; returns the number of lists written.

    Each list is stamped with the time its users' histories were read, so a user with a
    later event is scored live until the next run. Memory: O(batch_size * n_items).
    """
    if predictor.version is None:
        raise NotSupportedError("precomputed lists belong to a registered model version; "
                                "serve from the database (--db) with an active version")
    total = 0
    for chunk in _user_chunks(store, users, batch_size, page):
        computed = time.time()
        lists = predictor.top_lists(chunk, n)
        if lists:
            total += store.put_lists(predictor.version, lists, computed)
    _log.info("precomputed %d lists for version %s", total, predictor.version)
    return total


def _user_chunks(store: Store, users: Iterable[str] | None, batch_size: int, page: int
                 ) -> Iterable[list[str]]:
    if users is not None:
        chosen = list(users)
        for start in range(0, len(chosen), batch_size):
            yield chosen[start:start + batch_size]
        return
    offset = 0
    while True:
        rows = store.list_users(offset=offset, limit=page)
        if not rows:
            return
        ids = [row["id"] for row in rows]
        for start in range(0, len(ids), batch_size):
            yield ids[start:start + batch_size]
        offset += len(rows)
