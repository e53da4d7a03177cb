"""Where ``Predictor.recommend`` spends its CPU, and what four candidate fixes would save.

Measures the CPU per call of :meth:`recoforge.serving.predictor.Predictor.recommend` (one
thread, best of 5 rounds over the same 200 users) as the code is, then with prototype
fixes applied one after the other by *monkeypatching this process only* (an experiment
for the store's and the predictor's owners, not project code):

1. the store's hidden items read at most once a second;
2. ``Store.user_history`` as one plain SQL statement on a pooled DBAPI connection (no
   SQLAlchemy statement building per call);
3. item and user ids mapped through dicts built once per predictor (instead of
   ``IdIndex.to_index``'s pandas ``factorize`` per call);
4. the "is this the trained history?" check by ``indptr`` slices of the training matrix
   (instead of scipy fancy row indexing).

Usage (a store loaded with ``recoforge load`` and a model fitted on the same data)::

    python benchmarks/profile_serving.py --db /tmp/ml1m.db --model model-ials
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge.models.query import Query
from recoforge.serving.predictor import Predictor
from recoforge.serving.store import Store

HISTORY_SQL = ("SELECT item, SUM(weight), MAX(time) FROM events WHERE user = ? "
               "GROUP BY item ORDER BY MAX(time), item")


def cpu_ms(predictor: Predictor, users: list[str], rounds: int = 5) -> float:
    """Best-of-``rounds`` CPU milliseconds per ``recommend`` call."""
    for user in users[:30]:
        predictor.recommend(user, 10)
    best = []
    for _ in range(rounds):
        start = time.process_time()
        for user in users:
            predictor.recommend(user, 10)
        best.append(1000 * (time.process_time() - start) / len(users))
    return min(best)


def patch_hidden(store: Store, predictor: Predictor) -> None:
    read = store.hidden_items
    cache: dict[str, Any] = {"at": -1e9, "value": set()}

    def hidden_items() -> set[str]:
        if time.monotonic() - cache["at"] > 1.0:
            cache["value"], cache["at"] = read(), time.monotonic()
        return cache["value"]

    store.hidden_items = hidden_items
    if hasattr(predictor, "_hidden"):  # a predictor that took the store's method already
        predictor._hidden = hidden_items


def patch_history(store: Store) -> None:
    if store.dialect != "sqlite":
        raise SystemExit("the raw-SQL prototype is written for SQLite (qmark parameters)")

    def user_history(user: str) -> tuple[list[str], np.ndarray, float | None]:
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(HISTORY_SQL, (user,))
            rows = cursor.fetchall()
            cursor.close()
            raw.commit()
        finally:
            raw.close()
        if not rows:
            return [], np.zeros(0), None
        return ([r[0] for r in rows], np.fromiter((r[1] for r in rows), float, len(rows)),
                float(max(r[2] for r in rows)))

    store.user_history = user_history


def patch_ids(predictor: Predictor) -> None:
    items = {str(i): k for k, i in enumerate(predictor.model.item_index_.ids.tolist())}
    users = {str(u): k for k, u in enumerate(predictor.model.user_index_.ids.tolist())}

    def history_row(found: Any, weights: Any) -> sp.csr_matrix:
        found = list(found)
        idx = np.fromiter((items.get(i, -1) for i in found), np.int64, len(found))
        values = np.asarray(weights, dtype=np.float32).reshape(-1)
        keep = idx >= 0
        row = sp.csr_matrix((values[keep], (np.zeros(int(keep.sum()), np.int64), idx[keep])),
                            shape=(1, predictor.n_items), dtype=np.float32)
        row.sum_duplicates()
        row.sort_indices()
        return row

    predictor.history_row = history_row
    predictor.user_index = lambda user: users.get(user, -1)


def patch_trained_check(predictor: Predictor) -> None:
    source = predictor.model.history_source
    if source is None:
        return
    matrix = source.matrix

    def query(user: str, row: sp.csr_matrix) -> Query:
        uidx = predictor.user_index(user)
        if uidx >= 0:
            a, b = matrix.indptr[uidx], matrix.indptr[uidx + 1]
            if (b - a == row.nnz and np.array_equal(matrix.indices[a:b], row.indices)
                    and np.allclose(matrix.data[a:b], row.data)):
                return Query.for_known(np.array([uidx]), matrix[uidx:uidx + 1])
        return Query.from_history(row, np.array([uidx]))

    predictor._query = query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    store = Store.open(args.db, create=False)
    predictor = Predictor.from_dir(args.model, store)
    ids = [row["id"] for row in store.list_users(limit=1000)]
    users = random.Random(0).sample(ids, min(args.users, len(ids)))
    print(f"{'as is':58s} {cpu_ms(predictor, users):6.2f} ms CPU per recommend")
    steps = [("+ hidden items read at most once a second", lambda: patch_hidden(store, predictor)),
             ("+ user_history as one plain SQL statement", lambda: patch_history(store)),
             ("+ id lookups through dicts", lambda: patch_ids(predictor)),
             ("+ trained-history check by indptr slices",
              lambda: patch_trained_check(predictor))]
    for label, apply in steps:
        apply()
        print(f"{label:58s} {cpu_ms(predictor, users):6.2f} ms CPU per recommend",
              flush=True)


if __name__ == "__main__":
    main()
