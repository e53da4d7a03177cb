"""Compiled kernels of the ranking-MF family (models/bpr.py): samplers and SGD epochs.

Random numbers come from per-stream splitmix64 generators derived from the seed, so a
single-threaded run is reproducible; epochs run lock-free in parallel (Hogwild) otherwise.
Positives are looked up in a user x item bitset (one memory access per test).
"""

from __future__ import annotations

import math

import numba
import numpy as np

UNIFORM, POPULARITY, HARD = 0, 1, 2
SAMPLERS = {"uniform": UNIFORM, "popularity": POPULARITY, "hard": HARD}
#: draws before a sample is skipped because every drawn item was a positive of the user
MAX_TRIES = 16
#: positives bitset limits (see positive_bitset)
BITSET_BYTES_PER_NNZ, BITSET_MAX_BYTES = 16, 1 << 28
#: most streams (independent generators) an epoch is cut into
MAX_STREAMS = 64
#: per-epoch statistics: loss sum, samples in it, correct, updates, skipped samples
N_STATS = 5
#: the loss (a logarithm per sample) is estimated on every LOSS_STRIDE-th sample
LOSS_STRIDE = 16


# ---------------------------------------------------------------- random numbers
@numba.njit(cache=True, inline="always")
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:  # pragma: no cover - numba
    """xorshift64* step: (new state, a float in [0, 1))."""
    x = state
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    r = x * np.uint64(0x2545F4914F6CDD1D)
    return x, (r >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _below(state: np.uint64, n: int) -> tuple[np.uint64, np.int64]:  # pragma: no cover - numba
    """(new state, an integer uniform in [0, n)), n < 2^32 (multiply-shift, no division)."""
    x = state
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    r = (x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)
    return x, np.int64((r * np.uint64(n)) >> np.uint64(32))


@numba.njit(cache=True, inline="always")
def _is_positive(positives, user, item) -> bool:  # pragma: no cover - numba
    """Whether (user, item) is a training pair: one bit where the model keeps a bitset,
    else a branch-free binary search of the user's (sorted) CSR row."""
    indptr, indices, bits = positives
    if bits.shape[0] > 0:
        return ((bits[user, item >> 6] >> np.uint64(item & 63)) & np.uint64(1)) != 0
    lo, n = indptr[user], indptr[user + 1] - indptr[user]
    if n == 0:
        return False
    while n > 1:
        half = n >> 1
        lo = lo + half if indices[lo + half] <= item else lo
        n -= half
    return indices[lo] == item


@numba.njit(cache=True, inline="always")
def _draw_one(state, user, positives, strategy, cdf):  # pragma: no cover - numba
    """One non-positive item, uniform or from the popularity ``cdf``; -1 after MAX_TRIES."""
    n_items = cdf.shape[0]
    for _ in range(MAX_TRIES):
        if strategy == POPULARITY:
            state, r = _uniform(state)
            item = min(np.searchsorted(cdf, r * cdf[n_items - 1], side="right"), n_items - 1)
        else:
            state, item = _below(state, n_items)
        if not _is_positive(positives, user, item):
            return state, item
    return state, -1


@numba.njit(cache=True, inline="always")
def _draw_negative(state, user, positives, strategy, cdf, n_candidates,
                   user_vec, item_factors):  # pragma: no cover - numba
    """A negative item for ``user``; "hard" keeps the best-scoring of uniform candidates."""
    if strategy != HARD:
        return _draw_one(state, user, positives, strategy, cdf)
    best, best_score = -1, -np.inf
    for _ in range(n_candidates):
        state, item = _draw_one(state, user, positives, UNIFORM, cdf)
        if item < 0:
            continue
        score = 0.0
        for f in range(user_vec.shape[0]):
            score += user_vec[f] * item_factors[item, f]
        if score > best_score:
            best, best_score = item, score
    return state, best


@numba.njit(cache=True)
def sample_negatives(users, positives, strategy, cdf, n_candidates, user_factors,
                     item_factors, seed):  # pragma: no cover - numba
    """The negatives the training kernels would draw for ``users`` (for tests/diagnostics)."""
    state = np.uint64(seed) | np.uint64(1)
    out = np.empty(users.shape[0], np.int64)
    for n in range(users.shape[0]):
        state, item = _draw_negative(state, users[n], positives, strategy, cdf,
                                     n_candidates, user_factors[users[n]], item_factors)
        out[n] = item
    return out


# ---------------------------------------------------------------- epoch kernels
@numba.njit(cache=True, parallel=True, fastmath=True)
def bpr_epoch(positives, pairs, user_factors, item_factors, lr, reg,
              strategy, cdf, n_candidates, states):  # pragma: no cover - numba
    """One BPR epoch (nnz triples); the last factor column is the item bias."""
    n_streams, nnz = states.shape[0], pairs.shape[0]
    d = user_factors.shape[1] - 1
    stats = np.zeros((n_streams, N_STATS))
    per_stream = (nnz + n_streams - 1) // n_streams
    for s in numba.prange(n_streams):
        state = states[s]
        loss, n_loss, correct, updates, skipped = 0.0, 0, 0, 0, 0
        for t in range(max(0, min(nnz - s * per_stream, per_stream))):
            state, idx = _below(state, nnz)
            u, i = pairs[idx, 0], pairs[idx, 1]
            pu = user_factors[u]
            state, j = _draw_negative(state, u, positives, strategy, cdf, n_candidates,
                                      pu, item_factors)
            if j < 0:
                skipped += 1
                continue
            qi, qj = item_factors[i], item_factors[j]
            x = np.float32(0.0)
            for f in range(d + 1):
                x += pu[f] * (qi[f] - qj[f])
            z = np.float32(1.0 / (1.0 + math.exp(min(x, 50.0))))  # sigma(-x)
            if t % LOSS_STRIDE == 0:
                loss += math.log1p(math.exp(-x)) if x > -30.0 else -x
                n_loss += 1
            correct += x > 0
            updates += 1
            for f in range(d):
                p, a, b = pu[f], qi[f], qj[f]
                pu[f] = p + lr * (z * (a - b) - reg * p)
                qi[f] = a + lr * (z * p - reg * a)
                qj[f] = b - lr * (z * p + reg * b)
            qi[d] += lr * (z - reg * qi[d])
            qj[d] += lr * (-z - reg * qj[d])
        states[s] = state
        stats[s, 0], stats[s, 1], stats[s, 2] = loss, n_loss, correct
        stats[s, 3], stats[s, 4] = updates, skipped
    return stats.sum(axis=0)


@numba.njit(cache=True, inline="always")
def _logistic_step(pu, qj, label, lr, reg, d):  # pragma: no cover - numba
    """One BCE step on (u, j, label); columns d: (1, b_i), d + 1: (b_u, 1). Returns x."""
    x = np.float32(0.0)
    for f in range(d + 2):
        x += pu[f] * qj[f]
    g = np.float32(label - 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0))))
    for f in range(d):
        p = pu[f]
        pu[f] += lr * (g * qj[f] - reg * p)
        qj[f] += lr * (g * p - reg * qj[f])
    qj[d] += lr * (g - reg * qj[d])
    pu[d + 1] += lr * (g - reg * pu[d + 1])
    return x


@numba.njit(cache=True, parallel=True, fastmath=True)
def logistic_epoch(positives, pairs, user_factors, item_factors, lr, reg,
                   strategy, cdf, n_candidates, n_negatives, states):  # pragma: no cover
    """One logistic-MF epoch: each sampled positive, then ``n_negatives`` negatives."""
    n_streams, nnz = states.shape[0], pairs.shape[0]
    d = user_factors.shape[1] - 2
    stats = np.zeros((n_streams, N_STATS))
    per_stream = (nnz + n_streams - 1) // n_streams
    for s in numba.prange(n_streams):
        state = states[s]
        loss, n_loss, correct, updates, skipped = 0.0, 0, 0, 0, 0
        for t in range(max(0, min(nnz - s * per_stream, per_stream))):
            state, idx = _below(state, nnz)
            u, i = pairs[idx, 0], pairs[idx, 1]
            pu = user_factors[u]
            track = t % LOSS_STRIDE == 0
            x = _logistic_step(pu, item_factors[i], 1.0, lr, reg, d)
            if track:
                loss += math.log1p(math.exp(-x)) if x > -30.0 else -x
                n_loss += 1
            correct += x > 0
            updates += 1
            for _n in range(n_negatives):
                state, j = _draw_negative(state, u, positives, strategy, cdf,
                                          n_candidates, pu, item_factors)
                if j < 0:
                    skipped += 1
                    continue
                x = _logistic_step(pu, item_factors[j], 0.0, lr, reg, d)
                if track:
                    loss += math.log1p(math.exp(x)) if x < 30.0 else x
                    n_loss += 1
                correct += x <= 0
                updates += 1
        states[s] = state
        stats[s, 0], stats[s, 1], stats[s, 2] = loss, n_loss, correct
        stats[s, 3], stats[s, 4] = updates, skipped
    return stats.sum(axis=0)


@numba.njit(cache=True, parallel=True, fastmath=True)
def warp_epoch(positives, pairs, user_factors, item_factors, lr, reg,
               max_sampled, cdf, states):  # pragma: no cover - numba
    """One WARP epoch; stats[1] counts positives with no violator in ``max_sampled`` draws."""
    n_streams, nnz = states.shape[0], pairs.shape[0]
    d, n_items = user_factors.shape[1] - 1, item_factors.shape[0]
    stats = np.zeros((n_streams, N_STATS))
    per_stream = (nnz + n_streams - 1) // n_streams
    for s in numba.prange(n_streams):
        state = states[s]
        for _ in range(max(0, min(nnz - s * per_stream, per_stream))):
            state, idx = _below(state, nnz)
            u, i = pairs[idx, 0], pairs[idx, 1]
            pu, qi = user_factors[u], item_factors[i]
            x_ui = np.float32(0.0)
            for f in range(d + 1):
                x_ui += pu[f] * qi[f]
            violated = False
            for trial in range(1, max_sampled + 1):
                state, j = _draw_one(state, u, positives, UNIFORM, cdf)
                if j < 0:
                    break
                qj = item_factors[j]
                x_uj = np.float32(0.0)
                for f in range(d + 1):
                    x_uj += pu[f] * qj[f]
                if x_uj > x_ui - 1.0:
                    w = np.float32(math.log(max(1.0, math.floor((n_items - 1) / trial))))
                    stats[s, 0] += w * (1.0 - x_ui + x_uj)
                    stats[s, 1] += 1
                    for f in range(d):
                        p = pu[f]
                        pu[f] += lr * (w * (qi[f] - qj[f]) - reg * p)
                        qi[f] += lr * (w * p - reg * qi[f])
                        qj[f] += lr * (-w * p - reg * qj[f])
                    qi[d] += lr * (w - reg * qi[d])
                    qj[d] += lr * (-w - reg * qj[d])
                    stats[s, 3] += 1
                    violated = True
                    break
            if not violated:
                stats[s, 2] += 1
        states[s] = state
    return stats.sum(axis=0)


@numba.njit(cache=True, parallel=True, fastmath=True)
def fold_in_kernel(indptr, indices, item_factors, loss, n_epochs, lr, reg, n_negatives,
                   max_sampled, seed):  # pragma: no cover - numba
    """Users' vectors from their history rows under the model's own loss, items fixed.

    ``loss``: 0 BPR, 1 logistic, 2 WARP. Each row starts at zero with its constant column
    at 1 (so an empty history ranks items by their bias), takes n_epochs * |history| SGD
    steps on uniformly drawn (positive, negative) pairs and uses its own generator seeded
    by ``seed`` alone, so a row's vector depends on its history only.
    """
    n_rows, width, n_items = indptr.shape[0] - 1, item_factors.shape[1], item_factors.shape[0]
    d = width - (2 if loss == 1 else 1)
    out = np.zeros((n_rows, width), np.float32)
    empty = np.zeros((0, 1), np.uint64)
    cdf = np.arange(1, n_items + 1).astype(np.float64)
    for row in numba.prange(n_rows):
        u = out[row]
        u[d] = 1.0  # against the item bias: an empty history ranks by item bias
        start, length = indptr[row], indptr[row + 1] - indptr[row]
        positives = (indptr, indices, empty)
        state = np.uint64(seed) | np.uint64(1)
        for _ in range(n_epochs * length):
            state, k = _below(state, length)
            qi = item_factors[indices[start + k]]
            if loss == 1:
                _fold_in_logistic(u, qi, 1.0, lr, reg, d)
                for _n in range(n_negatives):
                    state, j = _draw_one(state, row, positives, UNIFORM, cdf)
                    if j >= 0:
                        _fold_in_logistic(u, item_factors[j], 0.0, lr, reg, d)
                continue
            x_ui = np.float32(0.0)
            for f in range(width):
                x_ui += u[f] * qi[f]
            for trial in range(1, (max_sampled if loss == 2 else 1) + 1):
                state, j = _draw_one(state, row, positives, UNIFORM, cdf)
                if j < 0:
                    break
                qj = item_factors[j]
                x = x_ui
                for f in range(width):
                    x -= u[f] * qj[f]
                if loss == 0:
                    w = np.float32(1.0 / (1.0 + math.exp(min(x, 50.0))))
                elif x < 1.0:
                    w = np.float32(math.log(max(1.0, math.floor((n_items - 1) / trial))))
                else:
                    continue
                for f in range(d):
                    u[f] += lr * (w * (qi[f] - qj[f]) - reg * u[f])
                break
    return out


@numba.njit(cache=True, inline="always")
def _fold_in_logistic(u, qj, label, lr, reg, d):  # pragma: no cover - numba
    """One BCE step on the user side only (factors and the user bias, column d + 1)."""
    x = np.float32(0.0)
    for f in range(d + 2):
        x += u[f] * qj[f]
    g = np.float32(label - 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0))))
    for f in range(d):
        u[f] += lr * (g * qj[f] - reg * u[f])
    u[d + 1] += lr * (g - reg * u[d + 1])


# ---------------------------------------------------------------- models
@numba.njit(cache=True)
def _fill_bits(indptr, indices, bits):  # pragma: no cover - numba
    for user in range(indptr.shape[0] - 1):
        for k in range(indptr[user], indptr[user + 1]):
            item = indices[k]
            bits[user, item >> 6] |= np.uint64(1) << np.uint64(item & 63)


def positive_bitset(indptr: np.ndarray, indices: np.ndarray, n_items: int) -> np.ndarray:
    """Users x items bit matrix of the training pairs, when small; else an empty array.

    One bit lookup replaces a binary search (several dependent cache misses) per sampled
    negative. Kept when it costs at most BITSET_BYTES_PER_NNZ bytes per interaction and
    BITSET_MAX_BYTES in all (density >= 1/128); sparser data uses binary search.
    """
    n_users, words = len(indptr) - 1, (n_items + 63) // 64
    size = n_users * words * 8
    if size > min(BITSET_BYTES_PER_NNZ * len(indices), BITSET_MAX_BYTES):
        return np.zeros((0, 1), np.uint64)
    bits = np.zeros((n_users, words), np.uint64)
    _fill_bits(indptr, indices, bits)
    return bits


def negative_sampling_cdf(item_counts: np.ndarray, negative_sampling: str,
                          popularity_exponent: float) -> np.ndarray:
    """Cumulative sampling weights over items (float64, length n_items).

    Uniform (and the candidates of "hard"): every item weighs 1. Popularity:
    count_j^exponent, and items without training interactions weigh 0 (never drawn).
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if negative_sampling != "popularity":
        return np.cumsum(np.ones_like(counts))
    return np.cumsum(np.where(counts > 0, counts ** popularity_exponent, 0.0))
