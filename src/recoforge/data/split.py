"""Train/test splits: leave-one-out, per-user and global holdout, temporal, cold-start, k-fold.

Every split returns :class:`Split` objects whose ``train`` is a :class:`Dataset` (the whole
item catalogue, users compacted to those with training interactions) and whose ``test``
keeps the full dataset vocabularies: evaluation matches test users to a model's users by
*external* id, so users absent from training are detected and counted, never misread.

Randomness comes from ``np.random.default_rng(seed)`` only: the same data and seed give the
same split. Per-user operations are vectorised (a lexicographic sort by user and a random
or temporal key), O(nnz log nnz) time and O(nnz) memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from recoforge.data.dataset import Dataset, as_dataset
from recoforge.data.interactions import Interactions
from recoforge.errors import ConfigError, DataError

__all__ = ["Split", "cold_start", "holdout_global", "holdout_per_user", "kfold",
           "leave_one_out", "temporal"]


@dataclass(frozen=True, eq=False)
class Split:
    """One train/test split.

    Attributes
    ----------
    train : Dataset
        What a model is fitted on (``data.subset(train_mask)``).
    test : Interactions
        Held-out interactions, indexed in the *full* dataset's vocabularies.
    history : Interactions or None
        Only for cold-start user splits: each held-out user's interactions given to the
        model at test time as their history (fold-in without retraining); the rest of
        their interactions are in ``test``. Same vocabularies as ``test``.
    name : str
        Describes how the split was made (e.g. ``"holdout_per_user(0.2, seed=0)"``).
    """

    train: Dataset
    test: Interactions
    history: Interactions | None = None
    name: str = "split"

    def __repr__(self) -> str:
        hist = "" if self.history is None else f", history={len(self.history)}"
        return (f"Split({self.name!r}, train={len(self.train.interactions)} interactions/"
                f"{self.train.n_users} users, test={len(self.test)}{hist})")


# ---------------------------------------------------------------------- helpers
def _checked(data: Dataset | Interactions) -> Dataset:
    try:
        data = as_dataset(data)
    except TypeError as exc:
        raise DataError(str(exc)) from None
    if len(data.interactions) == 0:
        raise DataError("cannot split empty interactions")
    return data


def _check_fraction(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _round_half_up(values: np.ndarray | float) -> np.ndarray:
    """Round to the nearest integer, halves upward (not banker's rounding)."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def _positions_in_user(users: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """0-based position of each interaction within its user, ordered by ``keys``.

    ``keys`` are given minor to major as for :func:`numpy.lexsort`; the user is the
    outermost key. Position 0 is the smallest key.
    """
    order = np.lexsort((*keys, users))
    sorted_users = users[order]
    group_start = np.searchsorted(sorted_users, sorted_users, side="left")
    positions = np.empty(len(users), dtype=np.int64)
    positions[order] = np.arange(len(users)) - group_start
    return positions


def _make_split(data: Dataset, test_mask: np.ndarray, name: str,
                history_mask: np.ndarray | None = None,
                sessions_before: int | None = None) -> Split:
    held = test_mask if history_mask is None else (test_mask | history_mask)
    if not test_mask.any():
        raise DataError(f"{name}: no test interactions (users or data too small for the "
                        f"requested fraction)")
    if held.all():
        raise DataError(f"{name}: no training interactions left")
    inter = data.interactions
    history = None if history_mask is None else inter.select(history_mask)
    train = data.subset(~held, sessions_before=sessions_before)
    return Split(train=train, test=inter.select(test_mask), history=history, name=name)


# ---------------------------------------------------------------------- splits
def leave_one_out(data: Dataset | Interactions, strategy: Literal["random", "latest"] = "random",
                  seed: Any = 0, min_interactions: int = 2) -> Split:
    """Hold out one interaction per user.

    Parameters
    ----------
    strategy : {"random", "latest"}
        A random interaction, or the most recent one (needs timestamps). Several
        interactions sharing the latest timestamp are tie-broken by a seeded random draw,
        so the result is deterministic under ``seed``.
    min_interactions : int
        Users with fewer interactions (>= 2) stay wholly in train.
    """
    data = _checked(data)
    min_interactions = _check_int("min_interactions", min_interactions, 2)
    inter = data.interactions
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(inter))
    if strategy == "random":
        positions = _positions_in_user(inter.users, tiebreak)
    elif strategy == "latest":
        if inter.timestamps is None:
            raise DataError("leave_one_out(strategy='latest') needs timestamps; the data has "
                            "none (use strategy='random')")
        positions = _positions_in_user(inter.users, tiebreak, -inter.timestamps)
    else:
        raise ConfigError(f"strategy must be 'random' or 'latest', not {strategy!r}")
    counts = np.bincount(inter.users, minlength=inter.n_users)
    test = (positions == 0) & (counts[inter.users] >= min_interactions)
    return _make_split(data, test, f"leave_one_out({strategy}, seed={seed})")


def holdout_per_user(data: Dataset | Interactions, test_fraction: float = 0.2, seed: Any = 0,
                     min_train: int = 1) -> Split:
    """Hold out a random ``test_fraction`` of each user's interactions (per-user 80/20).

    A user with ``n`` interactions gets ``round(test_fraction * n)`` (halves up) test
    interactions, capped so that at least ``min_train`` stay in train; every test user is
    therefore a training user.
    """
    data = _checked(data)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    min_train = _check_int("min_train", min_train, 1)
    inter = data.interactions
    rng = np.random.default_rng(seed)
    positions = _positions_in_user(inter.users, rng.random(len(inter)))
    counts = np.bincount(inter.users, minlength=inter.n_users)
    n_test = np.clip(np.minimum(_round_half_up(test_fraction * counts), counts - min_train),
                     0, None)
    test = positions < n_test[inter.users]
    return _make_split(data, test, f"holdout_per_user({test_fraction}, seed={seed})")


def holdout_global(data: Dataset | Interactions, test_fraction: float = 0.2,
                   seed: Any = 0) -> Split:
    """Hold out a uniformly random ``test_fraction`` of all interactions (rating prediction).

    Test users or items without training interactions are possible; evaluation counts
    them as unknown.
    """
    data = _checked(data)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    n = len(data.interactions)
    n_test = int(_round_half_up(test_fraction * n))
    test = np.zeros(n, dtype=bool)
    test[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    return _make_split(data, test, f"holdout_global({test_fraction}, seed={seed})")


def _to_epoch_seconds(cutoff: Any) -> int:
    if isinstance(cutoff, bool):
        raise ConfigError(f"cutoff must be a timestamp, got {cutoff!r}")
    if isinstance(cutoff, (int, float, np.integer, np.floating)):
        if not np.isfinite(cutoff):
            raise ConfigError(f"cutoff must be finite, got {cutoff!r}")
        return int(cutoff)
    try:
        stamp = pd.Timestamp(cutoff)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cutoff {cutoff!r} is neither seconds nor a date ({exc})") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())


def temporal(data: Dataset | Interactions, cutoff: Any = None, quantile: float = 0.8) -> Split:
    """Train on interactions before a point in time, test on those at or after it.

    Parameters
    ----------
    cutoff : int, float, str or datetime, optional
        Seconds since the epoch or a date (naive dates are UTC). Interactions with
        ``timestamp < cutoff`` train, the others test.
    quantile : float
        When ``cutoff`` is omitted, the cut is the timestamp at this quantile of all
        interactions (the value at sorted position ``floor(quantile * n)``), so about
        ``quantile`` of the data trains (less when many events share that timestamp).

    Test users who only appear after the cut are unknown to the model; evaluation
    counts them.
    """
    data = _checked(data)
    stamps = data.interactions.timestamps
    if stamps is None:
        raise DataError("temporal split needs timestamps; the data has none")
    if cutoff is None:
        quantile = _check_fraction("quantile", quantile)
        ordered = np.sort(stamps)
        cut = int(ordered[min(int(quantile * len(ordered)), len(ordered) - 1)])
        name = f"temporal(quantile={quantile})"
    else:
        cut = _to_epoch_seconds(cutoff)
        name = f"temporal(cutoff={cut})"
    test = stamps >= cut
    if test.all() or not test.any():
        raise DataError(f"{name}: cut at {cut} leaves one side empty (timestamps range "
                        f"{int(stamps.min())}..{int(stamps.max())})")
    sessions = data.sessions
    cut_sessions = sessions is not None and sessions.timestamps is not None
    return _make_split(data, test, name, sessions_before=cut if cut_sessions else None)


def cold_start(data: Dataset | Interactions, on: Literal["users", "items"] = "users",
               fraction: float = 0.1, history_fraction: float = 0.5, seed: Any = 0) -> Split:
    """Hold out whole users or items, absent from training.

    Parameters
    ----------
    on : {"users", "items"}
        ``"users"``: a random ``fraction`` of users (among those with enough interactions)
        leave train; a random ``history_fraction`` of each one's interactions (at least
        one, at most all but one; none when ``history_fraction == 0``) becomes
        ``split.history``, the rest ``split.test``. ``"items"``: a random ``fraction``
        of the items with interactions leave train and all their interactions go to test;
        the items stay in the catalogue, so feature-based models can score them
        (``history_fraction`` is not used).
    fraction : float in (0, 1)
    history_fraction : float in [0, 1)
    """
    data = _checked(data)
    fraction = _check_fraction("fraction", fraction)
    history_fraction = _check_fraction("history_fraction", history_fraction, allow_zero=True)
    inter = data.interactions
    rng = np.random.default_rng(seed)
    if on == "items":
        counts = np.bincount(inter.items, minlength=inter.n_items)
        eligible = np.flatnonzero(counts > 0)
        held = np.zeros(inter.n_items, dtype=bool)
        n_held = max(1, int(_round_half_up(fraction * len(eligible))))
        held[rng.choice(eligible, size=n_held, replace=False)] = True
        return _make_split(data, held[inter.items], f"cold_start(items, {fraction}, seed={seed})")
    if on != "users":
        raise ConfigError(f"on must be 'users' or 'items', not {on!r}")
    counts = np.bincount(inter.users, minlength=inter.n_users)
    eligible = np.flatnonzero(counts >= (2 if history_fraction > 0 else 1))
    if len(eligible) == 0:
        raise DataError("cold_start(users): no user has the 2 interactions needed to give "
                        "both a history and a test part")
    n_held = max(1, int(_round_half_up(fraction * len(eligible))))
    held_users = np.zeros(inter.n_users, dtype=bool)
    held_users[rng.choice(eligible, size=n_held, replace=False)] = True
    positions = _positions_in_user(inter.users, rng.random(len(inter)))
    n_history = _round_half_up(history_fraction * counts)
    if history_fraction > 0:
        n_history = np.clip(n_history, 1, np.maximum(counts - 1, 1))
    held = held_users[inter.users]
    history = held & (positions < n_history[inter.users])
    return _make_split(data, held & ~history,
                       f"cold_start(users, {fraction}, history={history_fraction}, seed={seed})",
                       history_mask=history)


def kfold(data: Dataset | Interactions, n_folds: int = 5, seed: Any = 0,
          by: Literal["interactions", "users"] = "interactions",
          test_fraction: float = 0.2) -> list[Split]:
    """K-fold cross-validation splits.

    Parameters
    ----------
    by : {"interactions", "users"}
        ``"interactions"``: interactions are shuffled and dealt into ``n_folds`` folds;
        fold ``f`` is the test set of split ``f`` (each interaction is tested once).
        ``"users"``: users with at least 2 interactions are dealt into folds; in split
        ``f`` each user of fold ``f`` holds out ``test_fraction`` of their interactions
        (as :func:`holdout_per_user`, at least one in train), all other users train
        fully (each user is tested in exactly one split; as LensKit's ``crossfold_users``).
    test_fraction : float
        Only for ``by="users"``.
    """
    data = _checked(data)
    n_folds = _check_int("n_folds", n_folds, 2)
    inter = data.interactions
    rng = np.random.default_rng(seed)
    if by == "interactions":
        if n_folds > len(inter):
            raise ConfigError(f"n_folds={n_folds} exceeds the {len(inter)} interactions")
        fold = np.empty(len(inter), dtype=np.int64)
        fold[rng.permutation(len(inter))] = np.arange(len(inter)) % n_folds
        return [_make_split(data, fold == f, f"kfold(interactions, {f + 1}/{n_folds}, "
                                             f"seed={seed})") for f in range(n_folds)]
    if by != "users":
        raise ConfigError(f"by must be 'interactions' or 'users', not {by!r}")
    test_fraction = _check_fraction("test_fraction", test_fraction)
    counts = np.bincount(inter.users, minlength=inter.n_users)
    eligible = np.flatnonzero(counts >= 2)
    if n_folds > len(eligible):
        raise ConfigError(f"n_folds={n_folds} exceeds the {len(eligible)} users with at "
                          f"least 2 interactions")
    user_fold = np.full(inter.n_users, -1, dtype=np.int64)
    user_fold[rng.permutation(eligible)] = np.arange(len(eligible)) % n_folds
    positions = _positions_in_user(inter.users, rng.random(len(inter)))
    n_test = np.clip(_round_half_up(test_fraction * counts), 1, np.maximum(counts - 1, 0))
    sampled = positions < n_test[inter.users]
    fold_of_row = user_fold[inter.users]
    return [_make_split(data, sampled & (fold_of_row == f),
                        f"kfold(users, {f + 1}/{n_folds}, seed={seed})")
            for f in range(n_folds)]
