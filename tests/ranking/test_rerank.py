import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recoforge.errors import ConfigError, DataError
from recoforge.ranking.rerank import apply_rules, exploration_slots, mmr


def plain_topk(scores, k):
    """Reference: positions by (score desc, position asc), NaN never selected."""
    ranked = sorted((-float(s), j) for j, s in enumerate(scores) if not np.isnan(s))
    return [j for _, j in ranked[:k]]


score_values = st.one_of(st.floats(-5, 5), st.sampled_from([0.0, 1.0, np.nan]))


@st.composite
def pools(draw, min_size=0):
    c = draw(st.integers(min_size, 25))
    scores = draw(arrays(np.float64, c, elements=score_values))
    vectors = draw(arrays(np.float64, (c, 3), elements=st.floats(-2, 2)))
    k = draw(st.integers(0, 30))
    return np.arange(100, 100 + c), scores, vectors, k


@settings(max_examples=150, deadline=None)
@given(pool=pools(), weight=st.floats(0, 1))
def test_mmr_no_duplicates_and_length(pool, weight):
    candidates, scores, vectors, k = pool
    items, values = mmr(candidates, scores, k, weight=weight, item_vectors=vectors)
    n_scored = int((~np.isnan(scores)).sum())
    assert len(items) == min(k, n_scored)
    assert len(set(items.tolist())) == len(items)
    assert set(items.tolist()) <= set(candidates[~np.isnan(scores)].tolist())
    np.testing.assert_array_equal(values, scores[items - 100])
    if len(items):  # the first pick is always the most relevant
        assert items[0] == candidates[plain_topk(scores, 1)[0]]


@settings(max_examples=150, deadline=None)
@given(pool=pools())
def test_mmr_weight_one_is_plain_topk(pool):
    candidates, scores, vectors, k = pool
    items, _ = mmr(candidates, scores, k, weight=1.0, item_vectors=vectors)
    assert items.tolist() == candidates[plain_topk(scores, k)].tolist()
    no_vectors, _ = mmr(candidates, scores, k, weight=1.0)
    assert no_vectors.tolist() == items.tolist()


def near_duplicate_pool():
    """Two clusters: five near-copies of one item (the most relevant) and five of another."""
    rng = np.random.default_rng(0)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    vectors = np.vstack([a + 0.01 * rng.normal(size=(5, 3)), b + 0.01 * rng.normal(size=(5, 3))])
    scores = np.array([1.0, 0.99, 0.98, 0.97, 0.96, 0.8, 0.79, 0.78, 0.77, 0.76])
    items = np.array([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])
    return items, scores, vectors


def test_mmr_diversifies_near_duplicates():
    items, scores, vectors = near_duplicate_pool()
    plain, _ = mmr(items, scores, 2, weight=1.0)
    assert plain.tolist() == ["a0", "a1"]
    diverse, values = mmr(items, scores, 2, weight=0.5, item_vectors=vectors)
    assert diverse.tolist() == ["a0", "b0"]
    np.testing.assert_array_equal(values, [1.0, 0.8])
    # once both clusters are in the list every candidate is equally redundant, and
    # relevance decides again
    four, _ = mmr(items, scores, 4, weight=0.5, item_vectors=vectors)
    assert four.tolist() == ["a0", "b0", "a1", "a2"]


def test_mmr_similarity_function_matches_vectors():
    items, scores, vectors = near_duplicate_pool()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    calls = []

    def similarity(candidates, j):
        calls.append(j)
        assert candidates is not None and len(candidates) == len(items)
        return unit @ unit[j]

    by_fn, _ = mmr(items, scores, 6, weight=0.3, similarity=similarity)
    by_vectors, _ = mmr(items, scores, 6, weight=0.3, item_vectors=vectors)
    assert by_fn.tolist() == by_vectors.tolist()
    assert calls[0] == 0 and len(calls) == 5  # no column needed after the last pick


def test_mmr_weight_zero_picks_least_similar():
    items = np.array(["x", "near_x", "far"])
    vectors = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    chosen, _ = mmr(items, [3.0, 2.0, 1.0], 2, weight=0.0, item_vectors=vectors)
    assert chosen.tolist() == ["x", "far"]


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_mmr_bad_weight(weight):
    with pytest.raises(ConfigError, match="weight"):
        mmr([1, 2], [1.0, 0.5], 1, weight=weight, item_vectors=np.eye(2))


def test_mmr_bad_inputs():
    with pytest.raises(ConfigError, match="item_vectors or a similarity"):
        mmr([1, 2], [1.0, 0.5], 1, weight=0.5)
    with pytest.raises(ConfigError, match="not both"):
        mmr([1, 2], [1.0, 0.5], 1, item_vectors=np.eye(2), similarity=lambda c, j: np.ones(2))
    with pytest.raises(DataError, match="duplicate items.*1"):
        mmr([1, 1], [1.0, 0.5], 1, weight=1.0)
    with pytest.raises(DataError, match="one score per item"):
        mmr([1, 2], [1.0], 1, weight=1.0)
    with pytest.raises(DataError, match=r"item_vectors must have shape \(2, d\)"):
        mmr([1, 2], [1.0, 0.5], 1, item_vectors=np.eye(3))
    with pytest.raises(DataError, match="infinite"):
        mmr([1, 2], [np.inf, 0.5], 1, weight=1.0)
    with pytest.raises(ConfigError, match="k must"):
        mmr([1, 2], [1.0, 0.5], -1, weight=1.0)
    with pytest.raises(DataError, match="similarity"):
        mmr([1, 2, 3], [1.0, 0.5, 0.2], 3, similarity=lambda c, j: np.ones(2))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 20), n_pool=st.integers(0, 30), overlap=st.integers(0, 10),
       share=st.floats(0, 1), keep_top=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_exploration_properties(n, n_pool, overlap, share, keep_top, seed):
    ranked = [f"r{i}" for i in range(n)]
    pool = [f"p{i}" for i in range(n_pool)] + ranked[:overlap]
    wanted = int(round(share * n))
    if wanted > max(n - keep_top, 0):
        with pytest.raises(ConfigError, match=r"share=.* exceeds"):
            exploration_slots(ranked, pool, share=share, rng=seed, keep_top=keep_top)
        return
    result = exploration_slots(ranked, pool, share=share, rng=seed, keep_top=keep_top)
    items = result.items.tolist()
    assert len(items) == n
    assert len(set(items)) == n  # never duplicates
    n_explored = min(wanted, n_pool)
    assert int(result.explored.sum()) == n_explored
    assert not result.explored[:keep_top].any()
    assert all(item.startswith("p") for item in result.items[result.explored])
    # the exploited items keep their order, the lowest ones drop off
    assert result.items[~result.explored].tolist() == ranked[: n - n_explored]
    again = exploration_slots(ranked, pool, share=share, rng=seed, keep_top=keep_top)
    assert again.items.tolist() == items
    np.testing.assert_array_equal(again.explored, result.explored)


def test_exploration_positions_vary_with_seed_and_cover_the_list():
    ranked = list(range(10))
    pool = list(range(100, 200))
    seen_positions = set()
    lists = set()
    for seed in range(200):
        result = exploration_slots(ranked, pool, n_slots=2, rng=seed)
        seen_positions |= set(np.flatnonzero(result.explored).tolist())
        lists.add(tuple(result.items.tolist()))
    assert seen_positions == set(range(1, 10))  # every position but the kept top one
    assert len(lists) > 150


def test_exploration_accepts_generator_and_errors():
    rng = np.random.default_rng(3)
    result = exploration_slots(["a", "b", "c"], ["x"], n_slots=2, rng=rng)
    assert result.items.tolist().count("x") == 1 and result.explored.sum() == 1
    objects = exploration_slots(np.array(["a", "b", "c", "d"], dtype=object),
                                np.array(["x", "b", "y", "x"], dtype=object), n_slots=2, rng=1)
    assert objects.items.dtype == object and sorted(objects.items[objects.explored]) == ["x", "y"]
    assert objects.items[~objects.explored].tolist() == ["a", "b"]
    with pytest.raises(ConfigError, match="exactly one of share and n_slots"):
        exploration_slots(["a"], ["x"])
    with pytest.raises(ConfigError, match="exactly one of share and n_slots"):
        exploration_slots(["a"], ["x"], share=0.5, n_slots=1)
    with pytest.raises(ConfigError, match="share must be in"):
        exploration_slots(["a"], ["x"], share=2.0)
    with pytest.raises(ConfigError, match="n_slots must be"):
        exploration_slots(["a"], ["x"], n_slots=-1)
    with pytest.raises(DataError, match="duplicate"):
        exploration_slots(["a", "a"], ["x"], n_slots=1)


def test_apply_rules():
    items = ["a", "b", "c", "d", "e"]
    scores = [5.0, 4.0, 3.0, 2.0, 1.0]
    kept, values = apply_rules(items, scores, hidden={"b"}, excluded=["d"])
    assert kept.tolist() == ["a", "c", "e"] and values.tolist() == [5.0, 3.0, 1.0]
    kept, values = apply_rules(items, scores, allowed={"e", "a", "b"}, hidden={"b"})
    assert kept.tolist() == ["a", "e"] and values.tolist() == [5.0, 1.0]
    kept, _ = apply_rules(items, scores, allowed=set())
    assert kept.tolist() == []
    kept, values = apply_rules([], [])
    assert len(kept) == 0 and len(values) == 0
    with pytest.raises(DataError, match="one score per item"):
        apply_rules(items, scores[:2])
