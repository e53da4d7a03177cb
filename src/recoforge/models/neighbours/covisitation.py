"""Item-item co-visitation: "users who viewed X also viewed Y".

Events are ordered sequences: the dataset's sessions, or each user's history ordered by
timestamp. Two views a (position p) and b (position q) of one sequence co-occur when
0 < |p - q| <= ``window`` (``direction="forward"``: only b after a, q > p), with weight

    w = decay^(|p - q| - 1) * 2^(-(t_max - max(t_p, t_q)) / half_life)

C_ab = sum of w over co-occurrences, then normalised with f_a = events of a, N = all events:
``count`` C_ab, ``cosine`` C_ab / sqrt(f_a f_b), ``conditional`` P(b | a) = C_ab / f_a,
``lift`` C_ab N / (f_a f_b). Each item keeps its ``top_k`` best neighbours (a sparse W,
memory O(n_items * top_k)). A query scores s = q W, where q holds the user's ``n_recent``
latest items (weights ``recent_decay^age``); items without co-visitation evidence rank
after all others, by popularity. Counting runs in a numba kernel parallel over anchor
items: time O(sum over sequences of length * window), extra memory O(threads * n_items).

References
----------
Linden, Smith, York (2003), "Amazon.com recommendations: item-to-item collaborative
filtering", IEEE Internet Computing. Ludewig, Jannach (2018), "Evaluation of session-based
recommendation algorithms" (session co-occurrence baselines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError, DataError
from recoforge.models.base import Recommender
from recoforge.models.neighbours.similarity import neighbour_scores
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit

SECONDS_PER_DAY = 86_400.0
NORMALIZATIONS = ("count", "cosine", "conditional", "lift")
_ANCHORS_PER_TASK = 64


@numba.njit(cache=True, parallel=True)
def _covisit_topk(seq_items, seq_times, seq_lo, seq_hi, occ_ptr, occ_pos, n_items, window,
                  forward, distance_decay, half_life, t_ref, norm, support, total, min_count,
                  k, out_idx, out_val):  # pragma: no cover - compiled
    """Top-``k`` normalised co-occurrence neighbours of every anchor item."""
    n_tasks = (n_items + _ANCHORS_PER_TASK - 1) // _ANCHORS_PER_TASK
    for task in numba.prange(n_tasks):
        acc = np.zeros(n_items, np.float64)
        seen = np.zeros(n_items, np.bool_)
        touched = np.empty(n_items, np.int64)
        for a in range(task * _ANCHORS_PER_TASK, min(n_items, (task + 1) * _ANCHORS_PER_TASK)):
            n_touched = 0
            for o in range(occ_ptr[a], occ_ptr[a + 1]):
                p = occ_pos[o]
                lo = p + 1 if forward else (seq_lo[p] if window <= 0 else max(seq_lo[p],
                                                                               p - window))
                hi = seq_hi[p] if window <= 0 else min(seq_hi[p], p + window + 1)
                for q in range(lo, hi):
                    b = seq_items[q]
                    if q == p or b == a:
                        continue
                    w = distance_decay ** (abs(q - p) - 1) if distance_decay != 1.0 else 1.0
                    if half_life > 0.0:
                        w *= 2.0 ** (-(t_ref - max(seq_times[p], seq_times[q])) / half_life)
                    if not seen[b]:
                        seen[b] = True
                        touched[n_touched] = b
                        n_touched += 1
                    acc[b] += w
            cand = np.sort(touched[:n_touched])
            vals = np.empty(n_touched, np.float64)
            for j in range(n_touched):
                b = cand[j]
                c = acc[b]
                if c < min_count or c <= 0.0:
                    vals[j] = 0.0
                elif norm == 0:
                    vals[j] = c
                elif norm == 1:
                    vals[j] = c / np.sqrt(support[a] * support[b])
                elif norm == 2:
                    vals[j] = c / support[a]
                else:
                    vals[j] = c * total / (support[a] * support[b])
                acc[b] = 0.0
                seen[b] = False
            order = np.argsort(-vals, kind="mergesort")
            for r in range(min(k, n_touched)):
                if vals[order[r]] <= 0.0:
                    break
                out_idx[a, r] = cand[order[r]]
                out_val[a, r] = vals[order[r]]


def fill_unscored(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Zero scores replaced by -1 + popularity share, so they rank last, by popularity.

    For models whose scores are >= 0 and zero where they have no evidence (co-visitation,
    graph walks); modifies and returns ``scores``.
    """
    share = (counts / (counts.max() + 1.0)).astype(np.float32) if len(counts) else counts
    empty = scores == 0
    scores[empty] = np.broadcast_to(share - np.float32(1.0), scores.shape)[empty]
    return scores


def _sequences(order_keys: np.ndarray, items: np.ndarray, times: np.ndarray | None,
               groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events sorted into sequences: (items, times, seq_lo, seq_hi) per position."""
    order = np.lexsort((order_keys, groups))
    groups = groups[order]
    bounds = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    lengths = np.diff(bounds)
    seq_lo = np.repeat(bounds[:-1], lengths).astype(np.int64)
    seq_hi = np.repeat(bounds[1:], lengths).astype(np.int64)
    seq_times = (times[order].astype(np.float64) if times is not None
                 else np.zeros(len(order), np.float64))
    return items[order].astype(np.int64), seq_times, seq_lo, seq_hi


@register
class CoVisitation(Recommender):
    """Item-to-item co-occurrence within a window of sessions or ordered histories."""

    name = "covisitation"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"neighbours_": "items x items", "item_counts_": "items",
                  "recent_items_": "users x items", "counted_from_": "str"}

    @dataclass(frozen=True)
    class Config(ModelConfig):
        source: str = param("auto", choices=("auto", "sessions", "histories"),
                            doc="sequences to count in; auto: sessions when the dataset "
                                "has any, else histories ordered by timestamp")
        window: int | None = param(10, ge=1, le=1_000_000,
                                   doc="max distance in positions between "
                                       "co-occurring views (None: whole sequence)")
        direction: str = param("symmetric", choices=("symmetric", "forward"),
                               doc="count both orders, or only B viewed after A")
        normalization: str = param("cosine", choices=NORMALIZATIONS,
                                   doc="count, cosine, conditional P(b|a) or lift")
        distance_decay: float = param(1.0, gt=0.0, le=1.0,
                                      doc="weight decay^(distance-1) of a co-occurrence")
        half_life_days: float | None = param(None, gt=0.0,
                                             doc="time decay of co-occurrences (None: off)")
        min_count: float = param(0.0, ge=0.0, doc="drop pairs with a smaller (weighted) count")
        top_k: int = param(100, ge=1, le=1_000_000, doc="neighbours kept per item")
        n_recent: int | None = param(None, ge=1, le=1_000_000,
                                     doc="latest history items a known user is "
                                         "scored from (None: all)")
        recent_decay: float = param(1.0, gt=0.0, le=1.0,
                                    doc="weight decay^age of a known user's recent items")
        fill_popular: bool = param(True, doc="rank items without evidence by popularity")

    # ------------------------------------------------------------------ fitting
    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        check_allocation(dense_bytes(data.n_items, min(cfg.top_k, data.n_items), itemsize=24),
                         f"covisitation with top_k={cfg.top_k} ({data.n_items} items)",
                         advice="lower top_k")
        items, times, seq_lo, seq_hi, ordered, timed = self._event_sequences(data)
        if cfg.direction == "forward" and not ordered:
            raise ConfigError("direction='forward' needs ordered events: sessions or "
                              "interactions with timestamps")
        if cfg.half_life_days is not None and not timed:
            raise ConfigError("half_life_days needs timestamps on the sessions or interactions")
        n_items = data.n_items
        support = np.bincount(items, minlength=n_items).astype(np.float64)
        occ_pos = np.argsort(items, kind="stable").astype(np.int64)
        occ_ptr = np.r_[0, np.cumsum(support)].astype(np.int64)
        window = (cfg.window or 0) if ordered else 0
        k = min(cfg.top_k, max(n_items - 1, 1))
        out_idx = np.full((n_items, k), -1, np.int64)
        out_val = np.zeros((n_items, k), np.float32)
        half_life = cfg.half_life_days * SECONDS_PER_DAY if cfg.half_life_days else 0.0
        _covisit_topk(items, times, seq_lo, seq_hi, occ_ptr, occ_pos, n_items, window,
                      cfg.direction == "forward", cfg.distance_decay, half_life,
                      float(times.max()) if len(times) else 0.0,
                      NORMALIZATIONS.index(cfg.normalization), support, float(len(items)),
                      cfg.min_count, k, out_idx, out_val)
        valid = out_idx >= 0
        self.neighbours_ = sp.csr_matrix(
            (out_val[valid], out_idx[valid].astype(np.int32),
             np.r_[0, np.cumsum(valid.sum(axis=1))]), shape=(n_items, n_items))
        self.item_counts_ = np.bincount(data.interactions.items, minlength=n_items) \
            .astype(np.float32)
        self.recent_items_ = self._recent_items(data)
        self.counted_from_ = "sessions" if self._uses_sessions(data) else "histories"

    def _uses_sessions(self, data: Dataset) -> bool:
        if self.config.source == "sessions" and data.sessions is None:
            raise ConfigError("source='sessions' but the dataset has no sessions")
        if self.config.source == "auto":
            return data.sessions is not None and len(data.sessions) > 0
        return self.config.source == "sessions"

    def _event_sequences(self, data: Dataset):
        """(items, times, seq_lo, seq_hi, ordered, timed) of all events, by sequence."""
        sessions = data.sessions if self._uses_sessions(data) else None
        if sessions is not None:
            items = np.asarray(sessions.items, dtype=np.int64)
            if len(items) and (items.min() < 0 or items.max() >= data.n_items):
                bad = items[(items < 0) | (items >= data.n_items)][0]
                raise DataError(f"session item index {bad} is outside the item vocabulary "
                                f"(0..{data.n_items - 1})")
            groups, _ = pd.factorize(np.asarray(sessions.session_ids))
            position = np.arange(len(items))  # sessions are stored in viewing order
            seq = _sequences(position, items, sessions.timestamps, groups)
            return (*seq, True, sessions.timestamps is not None)
        inter = data.interactions
        stamps = inter.timestamps
        keys = stamps if stamps is not None else np.zeros(len(inter), np.int64)
        seq = _sequences(keys, np.asarray(inter.items), stamps, np.asarray(inter.users))
        return (*seq, stamps is not None, stamps is not None)

    def _recent_items(self, data: Dataset) -> sp.csr_matrix:
        """Known users' latest ``n_recent`` items, weighted ``recent_decay^age``."""
        inter, cfg = data.interactions, self.config
        matrix = sp.csr_matrix(data.matrix(), dtype=np.float32, copy=True)
        matrix.data[:] = 1.0
        if inter.timestamps is None or (cfg.n_recent is None and cfg.recent_decay == 1.0):
            return matrix
        users = np.asarray(inter.users)
        order = np.lexsort((-inter.timestamps, users))  # newest first within each user
        starts = np.r_[0, np.flatnonzero(np.diff(users[order])) + 1]
        age = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep = age < (cfg.n_recent or len(order))
        chosen = order[keep]
        recent = sp.csr_matrix((cfg.recent_decay ** age[keep].astype(np.float64),
                                (users[chosen], np.asarray(inter.items)[chosen])),
                               shape=matrix.shape, dtype=np.float32)
        recent.sum_duplicates()
        return recent

    # ------------------------------------------------------------------ scoring
    def _query_weights(self, histories: sp.csr_matrix, users: np.ndarray | None):
        if users is not None:
            return self.recent_items_[users]
        weights = sp.csr_matrix(histories, dtype=np.float32, copy=True)
        weights.data[:] = 1.0
        return weights

    def _score(self, query: Query) -> np.ndarray:
        histories, users = query.history, query.stored_users
        scores = neighbour_scores(self._query_weights(histories, users), self.neighbours_)
        return fill_unscored(scores, self.item_counts_) if self.config.fill_popular else scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.neighbours_[items].toarray().astype(np.float32)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """History items a with their weight q_a * W[a, item] (they sum to the score)."""
        users = query.stored_users
        weights = self._query_weights(query.history[:1], None if users is None else users[:1])
        contributions = weights.data * self.neighbours_[weights.indices, item].toarray().ravel()
        keep = contributions != 0
        return "item", weights.indices[keep], contributions[keep]
