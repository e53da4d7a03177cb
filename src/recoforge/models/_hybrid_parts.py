"""Building blocks of :mod:`recoforge.models.hybrid`: component specs, score normalisation,
the validation split a hybrid carves from its training data, and the two blend learners.

- :func:`parse_components` turns ``"ease;item_knn(k=50);content"`` (or a list of names /
  ``{"name": ..., "params": {...}}`` dicts) into ``[(name, params), ...]``, validated
  against the registry and each model's ``Config``.
- :func:`normalised_scores` scores a query with every component and puts each on a common
  scale, per model and per user: z-score (or min-max) with statistics taken over a fixed
  reference sample of items, so a candidate's normalised score does not depend on which
  other candidates are scored (candidate scores equal gathered full scores).
- :func:`validation_split` holds out a share of sampled users' events (the hybrid tunes on
  them, never on a test split); :func:`candidate_block` gathers each validation user's
  candidates (the union of every component's top items) with relevance labels.
- :func:`tune_weights` searches the simplex of blend weights for the best NDCG@10;
  :func:`fit_logistic` learns a stacked blend (L2-regularised logistic regression, Newton
  steps) over the normalised component scores.

Memory: normalisation holds one (n, c + n_ref) float32 block per component; the
validation block is (n_val, c) per component with c <= n_components * n_candidates.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError
from recoforge.models.query import Query

if TYPE_CHECKING:
    from recoforge.models.base import Recommender

ComponentSpec = tuple[str, dict[str, Any]]
#: most components a hybrid holds (each is saved as a nested model)
MAX_COMPONENTS = 8
_SPEC = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


# ---------------------------------------------------------------------- component specs
def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets, braces and parentheses."""
    parts, depth, start = [], 0, 0
    for pos, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == sep and depth == 0:
            parts.append(text[start:pos])
            start = pos + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def _parse_one(text: str) -> ComponentSpec:
    from recoforge.models.registry import model_class

    match = _SPEC.match(text)
    if match is None:
        raise ConfigError(f"hybrid component {text!r} is not 'name' or 'name(key=value, ...)'")
    name, args = match.group(1), match.group(2) or ""
    pairs = {}
    for item in _split_top(args, ","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"hybrid component {text!r}: {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return name, model_class(name).Config.from_strings(pairs)


def _one_entry(entry: Any) -> ComponentSpec:
    if isinstance(entry, str):
        return _parse_one(entry)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) \
            and set(entry) <= {"name", "params"}:
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"hybrid component {entry['name']!r}: params must be a dict")
        return entry["name"], dict(params)
    raise ConfigError(f"a hybrid component is a name, 'name(key=value)' or "
                      f"{{'name': ..., 'params': {{...}}}}, not {entry!r}")


def parse_components(spec: str | Sequence[Any]) -> list[ComponentSpec]:
    """``[(name, params), ...]`` from a component spec; ConfigError naming the bad part.

    Every name must be registered and every parameter valid for its model.
    """
    from recoforge.models.registry import model_class

    entries = _split_top(spec, ";") if isinstance(spec, str) else list(spec)
    parsed = [_one_entry(e) for e in entries]
    if not 1 <= len(parsed) <= MAX_COMPONENTS:
        raise ConfigError(f"a hybrid takes 1 to {MAX_COMPONENTS} components, got "
                          f"{len(parsed)}")
    for name, params in parsed:
        if name == "hybrid":
            raise ConfigError("a hybrid component cannot itself be a hybrid")
        model_class(name)(**params)  # validates the parameters
    return parsed


# ---------------------------------------------------------------------- normalisation
def _row_stats(refs: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per row of the reference scores, over their finite entries."""
    finite = np.isfinite(refs)
    safe = np.where(finite, refs, 0.0).astype(np.float64)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    if how == "minmax":
        low = np.where(finite, refs, np.inf).min(axis=1, keepdims=True)
        high = np.where(finite, refs, -np.inf).max(axis=1, keepdims=True)
        low = np.where(np.isfinite(low), low, 0.0)
        span = np.where(np.isfinite(high), high - low, 0.0)
        return low, np.where(span > 1e-12, span, 1.0)
    mean = safe.sum(axis=1, keepdims=True) / count
    var = (np.where(finite, (safe - mean) ** 2, 0.0)).sum(axis=1, keepdims=True) / count
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12, std, 1.0)


def _raw_scores(component: Recommender, query: Query, items: np.ndarray | None,
                refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores at ``items`` or the whole catalogue, scores at the reference items)."""
    n_known = len(component.item_index_)
    if items is None and component.scores_full_catalogue:
        full = np.asarray(component._score(query), dtype=np.float32)
        return full, full[:, refs]
    n = len(query)
    if items is None:
        items = np.broadcast_to(np.arange(n_known, dtype=np.int64), (n, n_known))
    beyond = items >= n_known  # items added after this component was fitted
    block = np.hstack([np.where(beyond | (items < 0), 0, items),
                       np.broadcast_to(refs, (n, len(refs)))]).astype(np.int64)
    out = np.asarray(component._score_candidates(query, block), dtype=np.float32)
    raw = out[:, :items.shape[1]]
    if beyond.any():
        raw = np.where(beyond, -np.inf, raw)
    return raw, out[:, items.shape[1]:]


def normalised_scores(components: Sequence[Recommender], query: Query,
                      items: np.ndarray | None, refs: np.ndarray, how: str,
                      n_items: int) -> list[np.ndarray]:
    """Each component's scores of ``items`` ((n, c) indices; None: all ``n_items``) on a
    per-user scale: ``(s - offset_u) / scale_u`` with the z-score (or min-max) statistics
    of the user's scores of the reference items ``refs``. Items a component cannot score
    (added after it was fitted) get the lowest reference value of that user."""
    out = []
    for component in components:
        raw, ref_scores = _raw_scores(component, query, items, refs)
        if items is None and raw.shape[1] < n_items:
            pad = np.full((len(query), n_items - raw.shape[1]), -np.inf, np.float32)
            raw = np.hstack([raw, pad])
        offset, scale = _row_stats(ref_scores, how)
        z = ((raw - offset) / scale).astype(np.float32)
        floor = ((np.where(np.isfinite(ref_scores), ref_scores, np.inf).min(axis=1,
                                                                            keepdims=True)
                  - offset) / scale).astype(np.float32)
        floor = np.where(np.isfinite(floor), floor, 0.0).astype(np.float32)
        out.append(np.where(np.isneginf(raw), floor, z))
    return out


# ---------------------------------------------------------------------- validation data
def validation_split(matrix: sp.csr_matrix, fraction: float, max_users: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(held-out mask over the CSR's stored entries, validation user indices).

    Users with at least two events are sampled (at most ``max_users``); each gives
    ``round(fraction * n)`` of its events (at least one, never all) to validation.
    """
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) == 0:
        return np.zeros(matrix.nnz, dtype=bool), eligible
    users = np.sort(rng.choice(eligible, size=min(max_users, len(eligible)), replace=False))
    held = np.zeros(matrix.nnz, dtype=bool)
    for user in users:
        start, n = matrix.indptr[user], counts[user]
        n_held = int(min(n - 1, max(1, round(fraction * n))))
        held[start + rng.choice(n, size=n_held, replace=False)] = True
    return held, users


def candidate_block(components: Sequence[Recommender], users: np.ndarray, n_candidates: int,
                    truth: sp.csr_matrix, allowed: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per validation user the union of every component's top ``n_candidates`` unseen
    (and ``allowed``) items ((n, c) indices, ``-1`` padding) and whether each is a
    held-out item."""
    tops = [component.top_items(users, k=n_candidates, allowed=allowed)[0]
            for component in components]
    stacked = np.hstack(tops).astype(np.int64)
    width = stacked.shape[1]
    cands = np.full((len(users), width), -1, np.int64)
    for row in range(len(users)):
        items = np.unique(stacked[row][stacked[row] >= 0])
        cands[row, :len(items)] = items
    used = int((cands >= 0).sum(axis=1).max()) if len(users) else 0
    cands = cands[:, :max(used, 1)]
    labels = np.zeros(cands.shape, dtype=bool)
    for row in range(len(users)):
        held = truth.indices[truth.indptr[row]:truth.indptr[row + 1]]
        labels[row] = np.isin(cands[row], held) & (cands[row] >= 0)
    return cands, labels


# ---------------------------------------------------------------------- blend learners
def ndcg_at(scores: np.ndarray, labels: np.ndarray, n_relevant: np.ndarray,
            k: int = 10) -> np.ndarray:
    """NDCG@k per row of candidate scores with binary labels; the ideal DCG counts all
    ``n_relevant`` held-out items (also those no candidate list holds)."""
    width = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :width]
    gains = np.take_along_axis(labels, top, axis=1) / np.log2(np.arange(2, width + 2))
    ideal_n = np.minimum(n_relevant, width)
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, width + 2)))])
    ideal = discounts[ideal_n]
    return np.where(ideal > 0, gains.sum(axis=1) / np.where(ideal > 0, ideal, 1.0), 0.0)


def simplex_grid(n_components: int, steps: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/steps, ..., 1} summing to 1."""
    points = [c for c in itertools.product(range(steps + 1), repeat=n_components)
              if sum(c) == steps]
    return np.asarray(points, dtype=np.float64) / steps


def tune_weights(zs: Sequence[np.ndarray], valid: np.ndarray, labels: np.ndarray,
                 n_relevant: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """The simplex-grid weights with the best mean NDCG@10 (ties: the first found)."""
    best, best_score = None, -1.0
    for weights in simplex_grid(len(zs), steps):
        blend = sum(w * z for w, z in zip(weights, zs))
        score = float(ndcg_at(np.where(valid, blend, -np.inf), labels, n_relevant).mean())
        if score > best_score + 1e-12:
            best, best_score = weights, score
    assert best is not None
    return best, best_score


def pair_differences(zs: Sequence[np.ndarray], valid: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator, per_positive: int = 10) -> np.ndarray:
    """z(positive) - z(negative) of the components for pairs of one user's candidates:
    each held-out candidate against ``per_positive`` random other candidates. Shape
    (n_pairs, n_components); a logistic fit on them (both signs) learns a ranking blend."""
    stacked = np.stack(zs, axis=2)  # (n, c, m)
    diffs = []
    for row in range(stacked.shape[0]):
        pos = np.flatnonzero(labels[row] & valid[row])
        neg = np.flatnonzero(valid[row] & ~labels[row])
        if len(pos) == 0 or len(neg) == 0:
            continue
        picks = rng.choice(neg, size=(len(pos), per_positive))
        diffs.append((stacked[row, pos][:, None, :] - stacked[row, picks]).reshape(-1,
                                                                                stacked.shape[2]))
    width = stacked.shape[2]
    return np.concatenate(diffs) if diffs else np.zeros((0, width), dtype=np.float32)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0,
                 iterations: int = 25) -> np.ndarray:
    """Coefficients (intercept last) of an L2-regularised logistic regression by Newton's
    method; the intercept is not penalised. O(iterations * n * m^2)."""
    x = np.hstack([features, np.ones((len(features), 1))]).astype(np.float64)
    y = labels.astype(np.float64)
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w
