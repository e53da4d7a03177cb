"""Re-ranking of one recommendation list: diversity (MMR), exploration slots, business rules.

These run after retrieval and scoring, on one user's candidate pool (tens to a few
thousand items), so they work on 1-d arrays and cost O(pool) memory; none of them imports
a model or the serving layer.

- :func:`mmr` trades relevance for diversity with Maximal Marginal Relevance.
- :func:`exploration_slots` gives a share of the list to items from outside the top, at
  positions drawn from a seeded generator.
- :func:`apply_rules` applies business rules: hidden items, an allowed set (a category or
  attribute filter) and an exclusion list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from recoforge.errors import ConfigError, DataError

__all__ = ["ExplorationResult", "apply_rules", "exploration_slots", "mmr"]

SimilarityFn = Callable[[np.ndarray, int], np.ndarray]


def _check_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _as_items(items: Sequence | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(items)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-d sequence of item ids, got shape {array.shape}")
    if len(np.unique(array)) != len(array):
        values, counts = np.unique(array, return_counts=True)
        raise DataError(f"{name} contains duplicate items, e.g. {values[counts > 1][0]!r}")
    return array


def _as_scores(scores: Sequence[float] | np.ndarray, n: int, name: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.shape != (n,):
        raise DataError(f"{name} must have one score per item ({n}), got shape {array.shape}")
    if np.isinf(array).any():
        raise DataError(f"{name} contains infinite values")
    return array


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _similarity_column(item_vectors: np.ndarray | None, similarity: SimilarityFn | None,
                       candidates: np.ndarray, order: np.ndarray, best: int) -> np.ndarray:
    """Similarities of the pool (in ``order``) to the pick at sorted position ``best``."""
    if item_vectors is not None:  # already in sorted order
        return item_vectors @ item_vectors[best]
    assert similarity is not None
    chosen = int(order[best])
    column = np.asarray(similarity(candidates, chosen), dtype=np.float64)
    if column.shape != (len(candidates),) or not np.isfinite(column).all():
        raise DataError(f"similarity(candidates, {chosen}) must return {len(candidates)} finite "
                        f"values, got shape {column.shape}")
    return column[order]


def mmr(
    candidates: Sequence | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    k: int,
    *,
    weight: float = 0.5,
    item_vectors: np.ndarray | None = None,
    similarity: SimilarityFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Maximal Marginal Relevance re-ranking of a candidate pool.

    Greedily picks, among the candidates not yet selected (set :math:`S`),

    .. math:: \arg\max_i \; \lambda\, r_i - (1 - \lambda) \max_{j \in S} \mathrm{sim}(i, j)

    where :math:`r` is the relevance min-max scaled to [0, 1] over the pool (so that it
    is on the scale of a cosine similarity) and :math:`\lambda` is ``weight``; the first
    pick is the most relevant item. ``weight=1`` gives the plain top-``k`` by score;
    ``weight=0`` ignores relevance after the first pick. Ties go to the higher score, then
    to the earlier candidate. Candidates with a NaN score are never selected.

    Reference: Carbonell & Goldstein, "The use of MMR, diversity-based reranking for
    reordering documents and producing summaries", SIGIR 1998.

    Cost: O(k * c * d) time with item vectors (one matrix-vector product per pick), O(c * d)
    memory for c candidates of dimension d; the c x c similarity matrix is never built.

    Parameters
    ----------
    candidates : sequence, shape (c,)
        Distinct item ids (or indices).
    scores : array-like, shape (c,)
        Relevance of each candidate (higher is better).
    k : int
        Length of the list returned (at most the number of scored candidates).
    weight : float in [0, 1]
        :math:`\lambda`, the weight of relevance against diversity.
    item_vectors : ndarray, shape (c, d), optional
        One vector per candidate; similarity is their cosine.
    similarity : callable, optional
        ``similarity(candidates, j) -> (c,)`` similarities of every candidate to the
        candidate at position ``j``. Exactly one of ``item_vectors`` and ``similarity``
        is needed when ``weight < 1``.

    Returns
    -------
    items : ndarray, shape (min(k, n_scored),)
        Selected candidates, in re-ranked order.
    scores : ndarray of float64, same shape
        Their original relevance scores.
    """
    weight = _check_fraction(weight, "weight")
    k = _check_count(k, "k")
    candidates = _as_items(candidates, "candidates")
    relevance = _as_scores(scores, len(candidates), "scores")
    if item_vectors is not None and similarity is not None:
        raise ConfigError("give either item_vectors or similarity, not both")
    if weight < 1 and item_vectors is None and similarity is None:
        raise ConfigError(f"weight={weight} < 1 needs item_vectors or a similarity function")
    vectors = None
    if item_vectors is not None:
        vectors = np.asarray(item_vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) != len(candidates):
            raise DataError(f"item_vectors must have shape ({len(candidates)}, d), "
                            f"got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise DataError("item_vectors contains NaN or infinite values")
        vectors = _unit_rows(vectors)
    # work in score order (score desc, position asc) so that argmax breaks ties by rank
    order = np.lexsort((np.arange(len(relevance)), -relevance))
    order = order[~np.isnan(relevance[order])]
    k = min(k, len(order))
    if k == 0:
        return candidates[:0], relevance[:0]
    rel = relevance[order]
    spread = rel[0] - rel[-1]
    rel = (rel - rel[-1]) / spread if spread > 0 else np.zeros_like(rel)
    if vectors is not None:
        vectors = vectors[order]
    max_sim = np.zeros(len(order))
    taken = np.zeros(len(order), dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    for step in range(k):
        gain = weight * rel - (1.0 - weight) * max_sim if step else rel.copy()
        gain[taken] = -np.inf
        best = int(np.argmax(gain))
        picks[step] = best
        taken[best] = True
        if weight < 1 and step + 1 < k:
            column = _similarity_column(vectors, similarity, candidates, order, best)
            max_sim = np.maximum(max_sim, column)
    chosen = order[picks]
    return candidates[chosen], relevance[chosen]


@dataclass(frozen=True)
class ExplorationResult:
    """Outcome of :func:`exploration_slots`.

    Attributes
    ----------
    items : ndarray, shape (n,)
        The list with exploration items inserted.
    explored : ndarray of bool, shape (n,)
        True at the positions holding an exploration item.
    """

    items: np.ndarray
    explored: np.ndarray


def exploration_slots(
    ranked: Sequence | np.ndarray,
    pool: Sequence | np.ndarray,
    *,
    share: float | None = None,
    n_slots: int | None = None,
    rng: np.random.Generator | int | None = None,
    keep_top: int = 1,
) -> ExplorationResult:
    """Give a share of a ranked list to items drawn from outside it.

    ``n_slots`` positions (or ``round(share * len(ranked))``) among positions
    ``keep_top .. len(ranked) - 1`` are drawn without replacement, and each receives an
    item drawn uniformly without replacement from ``pool`` minus the items in ``ranked``.
    The ranked items keep their order in the remaining positions; the lowest ones drop off,
    so the list keeps its length. With fewer pool items than slots, only that many slots
    are used. The same generator seed gives the same positions and items.

    Parameters
    ----------
    ranked : sequence, shape (n,)
        The exploited list, best first (distinct items).
    pool : sequence
        Items eligible for exploration, e.g. the candidates ranked below the list.
    share : float in [0, 1], optional
        Fraction of the list to explore; exclusive with ``n_slots``.
    n_slots : int, optional
        Number of exploration slots.
    rng : Generator or int seed, optional
        Source of randomness (seed it per request for reproducible lists).
    keep_top : int
        Leading positions never given to exploration.

    Returns
    -------
    ExplorationResult
    """
    ranked = _as_items(ranked, "ranked")
    pool_array = np.asarray(pool)
    if pool_array.ndim != 1:
        raise DataError(f"pool must be a 1-d sequence of item ids, got shape {pool_array.shape}")
    keep_top = _check_count(keep_top, "keep_top")
    if (share is None) == (n_slots is None):
        raise ConfigError("give exactly one of share and n_slots")
    if share is not None:
        slots = int(round(_check_fraction(share, "share") * len(ranked)))
    else:
        assert n_slots is not None
        slots = _check_count(n_slots, "n_slots")
    eligible_positions = max(len(ranked) - keep_top, 0)
    if slots > eligible_positions:
        asked = f"n_slots={n_slots}" if share is None else f"share={share} ({slots} slots)"
        raise ConfigError(f"{asked} exceeds the {eligible_positions} positions after "
                          f"keep_top={keep_top} in a list of {len(ranked)}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    _, first = np.unique(pool_array, return_index=True)
    fresh = pool_array[np.sort(first)]  # distinct, in pool order
    if len(ranked) and len(fresh):
        fresh = fresh[~np.isin(fresh, ranked)]
    slots = min(slots, len(fresh))
    explored = np.zeros(len(ranked), dtype=bool)
    if slots == 0:
        return ExplorationResult(ranked.copy(), explored)
    positions = keep_top + generator.choice(eligible_positions, size=slots, replace=False)
    drawn = fresh[generator.choice(len(fresh), size=slots, replace=False)]
    explored[positions] = True
    items = np.empty(len(ranked), dtype=np.result_type(ranked.dtype, drawn.dtype))
    items[np.sort(positions)] = drawn
    items[~explored] = ranked[: len(ranked) - slots]
    return ExplorationResult(items, explored)


def apply_rules(
    items: Sequence | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    hidden: Collection = frozenset(),
    allowed: Collection | None = None,
    excluded: Collection = frozenset(),
) -> tuple[np.ndarray, np.ndarray]:
    """Drop the items that business rules forbid, keeping the order of the rest.

    An item is kept when it is not hidden, not excluded and, if ``allowed`` is given, in
    ``allowed`` (e.g. the items of a requested category). Cost O(n) with set lookups.

    Parameters
    ----------
    items : sequence, shape (n,)
    scores : array-like, shape (n,)
    hidden : collection
        Items hidden from every list (e.g. out of stock).
    allowed : collection, optional
        Whitelist; ``None`` allows every item.
    excluded : collection
        Items excluded from this list (e.g. the request's exclusion list).

    Returns
    -------
    items, scores : ndarray
        The kept items and their scores.
    """
    array = np.asarray(items)
    if array.ndim != 1:
        raise DataError(f"items must be a 1-d sequence of item ids, got shape {array.shape}")
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(array),):
        raise DataError(f"scores must have one score per item ({len(array)}), "
                        f"got shape {values.shape}")
    banned = set(hidden) | set(excluded)
    whitelist = None if allowed is None else set(allowed)
    keep = np.fromiter(
        (item not in banned and (whitelist is None or item in whitelist)
         for item in array.tolist()), dtype=bool, count=len(array))
    return array[keep], values[keep]
