"""A loaded model version answering requests, with known users' histories from the store.

A :class:`Predictor` wraps one fitted model (one registered version) and never changes it:
every request reads the user's events from the :class:`~recoforge.serving.store.Store`,
turns them into one history row over the model's items and scores that row. An event
written through the API is therefore part of the next request's history (no refit):

- a user whose store history equals the history the model was trained on is scored as a
  *stored* query (trained per-user parameters, e.g. ALS factors: the fast path);
- a user with other events (new ones, or a user the model never saw) is scored from the
  history row (fold-in for factor models, the row itself for neighbour models, EASE);
- a user with no events at all gets the store's most popular items (or the model's own
  scores when it needs no history, as popularity does).

Hidden items are never recommended. Precomputed lists (:func:`precompute`) are served
while they are at least as new as the user's last event; otherwise the user is scored
live. Memory per request: O(events of the user + n_items) for the score row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.errors import UnknownIdError
from recoforge.models.query import Query
from recoforge.serving.batch import LIST_LENGTH, popular_list, precompute

__all__ = ["Predictor", "Recommendation", "popular_list", "precompute"]

if TYPE_CHECKING:
    from recoforge.models.base import Recommender
    from recoforge.serving.store import Store

_log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Recommendation:
    """One served list: item ids best first, their scores, where the list came from
    (``"live"``, ``"precomputed"``, ``"popular"``, ``"session"``) and the model version."""

    items: list[str]
    scores: list[float]
    source: str
    version: int | None = None


class Predictor:
    """One model version serving requests; frozen and safe to share between threads.

    Parameters
    ----------
    model : Recommender
        A fitted model (its learned state is only read).
    store : Store
        Source of histories, hidden items, popularity and precomputed lists.
    version : int, optional
        The registered version this model is (None for a model directory served as is).
    hidden : callable, optional
        ``hidden() -> ids`` of the hidden items (default: ask the store on every request;
        the service passes a cache refreshed every second and on its own writes).

    Notes
    -----
    Item ids in the store are text; they are read with the model's id type (an integer
    vocabulary maps ``"42"`` to 42). Store items the model was not trained on cannot be
    scored: they are dropped from histories and appear only in popularity lists.
    """

    def __init__(self, model: Recommender, store: Store, *, version: int | None = None,
                 hidden: Callable[[], Collection[str]] | None = None) -> None:
        model._check_fitted()
        self.model = model
        self.store = store
        self._hidden = store.hidden_items if hidden is None else hidden
        self.version = version
        self.name = model.name
        self._item_ids = np.array([str(i) for i in model.item_index_.ids.tolist()], dtype=object)
        # text id -> index lookups (the store's ids are text; "007" never matches 7)
        self._item_lookup = {item: k for k, item in enumerate(self._item_ids.tolist())}
        self._user_lookup = pd.Index([str(u) for u in model.user_index_.ids.tolist()],
                                     dtype=object)
        self._user_vectors: tuple[np.ndarray | sp.csr_matrix, np.ndarray] | None = None

    @classmethod
    def from_dir(cls, path: str | Path, store: Store, *, version: int | None = None,
                 hidden: Callable[[], Collection[str]] | None = None) -> Predictor:
        """Load a model directory (checksummed, never unpickled) and wrap it."""
        from recoforge.artifacts import load_model

        return cls(load_model(path), store, version=version, hidden=hidden)

    def __repr__(self) -> str:
        return f"Predictor(model={self.name!r}, version={self.version})"

    @property
    def n_items(self) -> int:
        return len(self._item_ids)

    # ------------------------------------------------------------------ id mapping
    def _positions(self, items: Sequence[str]) -> np.ndarray:
        """Model indices of store item ids, ``-1`` for items the model lacks."""
        if not len(items):
            return np.zeros(0, np.int64)
        get = self._item_lookup.get
        return np.fromiter((get(item, -1) for item in items), np.int64, len(items))

    def item_indices(self, items: Iterable[str]) -> np.ndarray:
        """Indices of the given store item ids in the model (items it lacks are dropped)."""
        idx = self._positions(list(items))
        return idx[idx >= 0]

    def user_index(self, user: str) -> int:
        """The user's index in the model's vocabulary, ``-1`` when it does not know them."""
        try:
            found = self._user_lookup.get_loc(user)
        except (KeyError, TypeError):
            return -1
        return found if isinstance(found, int) else -1

    def item_position(self, item: str) -> int:
        """The item's index in the model's vocabulary, ``-1`` when it does not know it."""
        return self._item_lookup.get(item, -1)

    def history_row(self, items: Sequence[str], weights: Any) -> sp.csr_matrix:
        """One CSR row (1, n_items) of event weights over the model's items."""
        values = np.asarray(weights, dtype=np.float32).reshape(-1)
        idx = self._positions(list(items))
        keep = idx >= 0
        idx, values = idx[keep], values[keep]
        order = np.argsort(idx, kind="stable")
        idx, values = idx[order], values[order]
        if len(idx) > 1 and not (idx[1:] != idx[:-1]).all():  # repeated items: summed
            row = sp.csr_matrix((values, (np.zeros(len(idx), np.int64), idx)),
                                shape=(1, self.n_items), dtype=np.float32)
            row.sum_duplicates()
            row.sort_indices()
            return row
        # distinct sorted indices (a store history): the CSR arrays directly, no COO pass
        return sp.csr_matrix((values, idx.astype(np.int32), np.array([0, len(idx)], np.int32)),
                             shape=(1, self.n_items))

    def _query(self, user: str, row: sp.csr_matrix) -> Query:
        """A stored query when the row is exactly the trained history, else a history one
        (with the user's store attributes as features, for models that read them)."""
        uidx = self.user_index(user)
        described = self._described(user)
        if described is not None:
            return self._featured(Query.from_history(row, np.array([uidx])), described)
        source = self.model.history_source
        if uidx >= 0 and source is not None:
            matrix = source.matrix  # the trained row by indptr slices: O(row), no copy
            start, stop = matrix.indptr[uidx], matrix.indptr[uidx + 1]
            indices, data = matrix.indices[start:stop], matrix.data[start:stop]
            if (stop - start == row.nnz and np.array_equal(indices, row.indices)
                    and (np.array_equal(data, row.data) or np.allclose(data, row.data))):
                return self._featured(Query.for_known(np.array([uidx]), row))
        return self._featured(Query.from_history(row, np.array([uidx])))

    def _featured(self, query: Query, rows: sp.csr_matrix | None = None) -> Query:
        """The query with user feature rows for models that read them: ``rows``, else a
        known user's training row, zeros for a new user (:mod:`recoforge.models._features`)."""
        if not getattr(self.model, "uses_user_features", False):
            return query
        from recoforge.models import _features

        if rows is None:
            rows = _features.stored_rows(self.model, query.users)
        return replace(query, user_features=rows)

    def _described(self, user: str) -> sp.csr_matrix | None:
        """The user's store attributes encoded with the model's user encoder (models
        fitted with user features), or None: no such model, no attributes, or attributes
        the encoder cannot read (then the training row or zeros serve)."""
        model = self.model
        if not getattr(model, "uses_user_features", False) \
                or getattr(model, "user_encoder_", None) is None:
            return None
        attributes = (self.store.get_user(user) or {}).get("attributes") or {}
        if not attributes:
            return None
        from recoforge.errors import RecoforgeError
        from recoforge.models import _features

        try:
            return _features.encode_users(model, pd.DataFrame([attributes], index=[user]))
        except (RecoforgeError, KeyError, TypeError, ValueError) as exc:
            _log.debug("attributes of user %r not usable as features: %s", user, exc)
            return None

    # ------------------------------------------------------------------ masks
    def _allowed(self, allowed: Collection[str] | None, exclude: Collection[str]
                 ) -> np.ndarray | None:
        """The candidate mask: ``allowed`` minus hidden and excluded items (None: all)."""
        blocked = set(self._hidden()) | set(exclude)
        if allowed is None and not blocked:
            return None
        if allowed is None:
            mask = np.ones(self.n_items, dtype=bool)
        else:
            mask = np.zeros(self.n_items, dtype=bool)
            mask[self.item_indices(allowed)] = True
        mask[self.item_indices(blocked)] = False
        return mask

    def _rank(self, query: Query, k: int, exclude_seen: bool, mask: np.ndarray | None
              ) -> tuple[list[str], list[float]]:
        if mask is not None and not mask.any():
            return [], []
        idx, scores = self.model._rank(query, k, exclude_seen, mask, None, None)
        idx, scores = idx[0], scores[0]
        ok = (idx >= 0) & np.isfinite(scores)
        return self._item_ids[idx[ok]].tolist(), scores[ok].astype(float).tolist()

    # ------------------------------------------------------------------ recommending
    def recommend(self, user: str, n: int = 10, *, offset: int = 0,
                  exclude: Collection[str] = (), allowed: Collection[str] | None = None,
                  exclude_seen: bool = True, use_lists: bool = True) -> Recommendation:
        """Items ``offset .. offset + n`` of ``user``'s list.

        Parameters
        ----------
        user : str
            A store user id (known to the model or not).
        n, offset : int
            Page of the list.
        exclude : collection of str
            Items never to return (besides hidden items).
        allowed : collection of str, optional
            Candidate whitelist (category and attribute filters resolve to this).
        exclude_seen : bool
            Drop items the user has events on.
        use_lists : bool
            Serve a precomputed list when it is fresh.
        """
        items, weights, last = self.store.user_history(user)
        if not len(items):
            described = self._described(user)
            if described is None:
                return self._cold(n, offset, exclude, allowed)
            empty = sp.csr_matrix((1, self.n_items), dtype=np.float32)
            query = self._featured(Query.from_history(empty, np.array([self.user_index(user)])),
                                   described)  # a new user described by attributes alone
            ids, scores = self._rank(query, offset + n, exclude_seen,
                                     self._allowed(allowed, exclude))
            return self._page(ids, scores, offset, n, "features")
        k = offset + n
        if use_lists and exclude_seen and self.version is not None:
            cached = self._from_list(user, last, k, exclude, allowed)
            if cached is not None:
                return self._page(cached[0], cached[1], offset, n, "precomputed")
        row = self.history_row(items, weights)
        mask = self._allowed(allowed, exclude)
        if row.nnz == 0 and not self.model.needs_history:
            row = sp.csr_matrix((1, self.n_items), dtype=np.float32)
        elif row.nnz == 0:  # events only on items this model has never seen
            return self._cold(n, offset, set(exclude) | set(items) if exclude_seen else exclude,
                              allowed)
        ids, scores = self._rank(self._query(user, row), k, exclude_seen, mask)
        return self._page(ids, scores, offset, n, "live")

    def _from_list(self, user: str, last: float | None, k: int, exclude: Collection[str],
                   allowed: Collection[str] | None) -> tuple[list[str], list[float]] | None:
        """The precomputed list filtered by the request, when fresh and long enough."""
        assert self.version is not None
        stored = self.store.get_list(self.version, user)
        if stored is None:
            return None
        items, scores, computed = stored
        if last is not None and computed < last:
            return None
        blocked = set(self._hidden()) | set(exclude)
        keep = [(i, s) for i, s in zip(items, scores, strict=True)
                if i not in blocked and (allowed is None or i in allowed)]
        if len(keep) < k:
            return None  # a short list or filters ate into it: score live for a full page
        return [i for i, _ in keep], [s for _, s in keep]

    def _cold(self, n: int, offset: int, exclude: Collection[str],
              allowed: Collection[str] | None) -> Recommendation:
        """A user with no usable events: the model's own scores when it needs no history,
        else the store's most popular items."""
        if not self.model.needs_history:
            empty = self._featured(Query.from_history(sp.csr_matrix((1, self.n_items),
                                                                    dtype=np.float32)))
            ids, scores = self._rank(empty, offset + n, False, self._allowed(allowed, exclude))
            return self._page(ids, scores, offset, n, "popular")
        ids, scores = popular_list(self.store, offset + n, exclude, allowed)
        return self._page(ids, scores, offset, n, "popular")

    def recommend_session(self, events: Mapping[str, float] | Sequence[str], n: int = 10, *,
                          offset: int = 0, exclude: Collection[str] = (),
                          allowed: Collection[str] | None = None,
                          exclude_seen: bool = True) -> Recommendation:
        """A list for an anonymous session given by its events (item -> summed weight, or
        an item list with weight 1 each); nothing is read from or written to the store
        except hidden items."""
        pairs = dict(events) if isinstance(events, Mapping) else {}
        if not isinstance(events, Mapping):
            for item in events:
                pairs[item] = pairs.get(item, 0.0) + 1.0
        row = self.history_row(list(pairs), list(pairs.values()))
        if row.nnz == 0 and self.model.needs_history:
            cold = self._cold(n, offset, set(exclude) | (set(pairs) if exclude_seen else set()),
                              allowed)
            return Recommendation(cold.items, cold.scores, "popular", self.version)
        ids, scores = self._rank(self._featured(Query.from_history(row)), offset + n, exclude_seen,
                                 self._allowed(allowed, exclude))
        return self._page(ids, scores, offset, n, "session")

    def _page(self, ids: list[str], scores: list[float], offset: int, n: int, source: str
              ) -> Recommendation:
        return Recommendation(ids[offset:offset + n], scores[offset:offset + n], source,
                              self.version)

    def diversify(self, items: Sequence[str], scores: Sequence[float], k: int,
                  diversity: float) -> tuple[list[str], list[float]]:
        """The first ``k`` of ``items`` re-ranked by MMR with relevance weight
        ``1 - diversity`` (:func:`recoforge.ranking.rerank.mmr`), similarity being the
        cosine of item vectors, or the model's item-item similarity for other models."""
        from recoforge.ranking.rerank import mmr

        if diversity <= 0 or len(items) <= 1:
            return list(items[:k]), list(scores[:k])
        idx = self._positions(list(items))
        vectors = self.model.item_vectors()
        if vectors is not None:
            chosen, kept = mmr(np.arange(len(idx)), scores, k, weight=1.0 - diversity,
                               item_vectors=np.asarray(vectors)[idx])
        else:
            def similarity(candidates: np.ndarray, j: int) -> np.ndarray:
                row = np.asarray(self.model._similar(idx[[j]]), np.float64)[0, idx]
                return np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=0.0)

            chosen, kept = mmr(np.arange(len(idx)), scores, k, weight=1.0 - diversity,
                               similarity=similarity)
        return [items[int(c)] for c in chosen], [float(v) for v in kept]

    # ------------------------------------------------------------------ similarity
    def similar_items(self, item: str, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` items most like ``item`` by the model's notion of similarity; hidden
        items are left out. Raises UnknownIdError when the model does not know ``item``."""
        if self.item_position(item) < 0:
            raise UnknownIdError(f"unknown item id {item!r} (not in model version "
                                 f"{self.version})")
        hidden = set(self._hidden())
        k = min(n + len(hidden), max(self.n_items - 1, 1))
        frame = self.model.similar_items([self.model.item_index_.ids[
            self.item_position(item)]], k=k)
        pairs = [(str(i), float(s)) for i, s in zip(frame["similar_item"], frame["score"],
                                                     strict=True)
                 if str(i) not in hidden and np.isfinite(s)]
        return pairs[:n]

    def similar_users(self, user: str, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` users closest to ``user``: cosine of query vectors for factorised
        models, else cosine of histories (the model's training history, or a snapshot
        of the store's events taken on first use when the model was saved without one).

        Memory: O(n_users * d) or O(events) once (cached), O(n_users) per request.
        """
        vectors, ids = self._user_space()
        items, weights, _ = self.store.user_history(user)
        row = self.history_row(items, weights)
        if row.nnz == 0:
            raise UnknownIdError(f"user {user!r} has no events on this model's items")
        if isinstance(vectors, np.ndarray):
            query = np.asarray(self.model.query_vectors(self._query(user, row)), np.float64)[0]
        else:
            query = row.toarray()[0].astype(np.float64)
        norm = np.linalg.norm(query)
        sims = np.asarray(vectors @ (query / norm if norm > 0 else query), np.float64).ravel()
        sims[ids == user] = -np.inf
        order = np.argsort(-sims, kind="stable")[:n]
        return [(str(ids[i]), float(sims[i])) for i in order if np.isfinite(sims[i])]

    def _user_space(self) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
        """(row-normalised user vectors, their user ids), built on first use (a race
        only builds it twice)."""
        if self._user_vectors is not None:
            return self._user_vectors
        model = self.model
        ids = np.array([str(u) for u in model.user_index_.ids.tolist()], dtype=object)
        source = model.history_source
        if model.factorised and (source is not None or model.user_state == "fold_in"):
            users = np.arange(len(ids), dtype=np.int64)
            trained = source.matrix if source is not None else sp.csr_matrix(
                (len(ids), self.n_items), dtype=np.float32)  # fold-in models: factors only
            vectors = np.asarray(model.query_vectors(self._featured(
                Query.for_known(users, trained))), np.float64)
            norms = np.linalg.norm(vectors, axis=1)
            space: tuple[np.ndarray | sp.csr_matrix, np.ndarray] = (
                vectors / np.where(norms > 0, norms, 1.0)[:, None], ids)
        else:
            matrix, ids = (source.matrix, ids) if source is not None else self._store_matrix()
            matrix = sp.csr_matrix(matrix, dtype=np.float64)
            norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
            space = (sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix),
                     ids)
        self._user_vectors = space
        return space

    def _store_matrix(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """Every store user's summed event weights over the model's items (a snapshot)."""
        frame = self.store.events_frame()
        summed = frame.groupby(["user", "item"], sort=False)["weight"].sum().reset_index()
        codes, users = pd.factorize(summed["user"])
        items = self._positions(summed["item"].tolist())
        keep = items >= 0
        matrix = sp.csr_matrix((summed["weight"].to_numpy(np.float64)[keep],
                                (codes[keep], items[keep])),
                               shape=(len(users), self.n_items))
        return matrix, np.asarray(users, dtype=object)

    # ------------------------------------------------------------------ explanations
    def explain(self, user: str, item: str, n: int = 5) -> dict[str, Any]:
        """Why ``item`` scores as it does for ``user`` now (history from the store).

        Returns ``{"score": float or None, "contributions": [{"source", "id",
        "contribution"}]}``; raises NotSupportedError for models that cannot explain.
        """
        if self.item_position(item) < 0:
            raise UnknownIdError(f"unknown item id {item!r} (not in model version "
                                 f"{self.version})")
        items, weights, _ = self.store.user_history(user)
        row = self.history_row(items, weights)
        if row.nnz == 0:
            raise UnknownIdError(f"user {user!r} has no events on this model's items")
        model = self.model
        query = self._query(user, row)
        item_idx = self.item_position(item)
        score = float(model._score_candidates(query, np.array([[item_idx]]))[0, 0])
        hist = {"request": {model.item_index_.ids[i]: float(v)
                            for i, v in zip(row.indices, row.data, strict=True)}}
        frame: pd.DataFrame = model.explain(model.item_index_.ids[item_idx], history=hist, n=n)
        contributions = [{"source": str(s), "id": str(i), "contribution": float(c)}
                         for s, i, c in zip(frame["source"], frame["id"], frame["contribution"],
                                            strict=True)]
        return {"score": score if np.isfinite(score) else None,
                "contributions": contributions}

    # ------------------------------------------------------------------ batch
    def top_lists(self, users: Sequence[str], n: int = LIST_LENGTH
                  ) -> dict[str, tuple[list[str], list[float]]]:
        """Top-``n`` lists (seen items excluded, hidden items left in: they are filtered
        when served) of the given users, scored together; users without usable events
        are left out. Memory: O(len(users) * n_items)."""
        found = self.store.histories(users)
        labels, rows = [], []
        for user in users:
            if user in found:
                row = self.history_row(*found[user])
                if row.nnz:
                    labels.append(user)
                    rows.append(row)
        if not rows:
            return {}
        uidx = self._user_lookup.get_indexer(np.asarray(labels, dtype=object))
        query = self._featured(Query.from_history(sp.vstack(rows, format="csr"), uidx))
        idx, scores = self.model._rank(query, n, True, None, None, None)
        out = {}
        for r, user in enumerate(labels):
            ok = (idx[r] >= 0) & np.isfinite(scores[r])
            out[user] = (self._item_ids[idx[r][ok]].tolist(),
                         scores[r][ok].astype(float).tolist())
        return out
