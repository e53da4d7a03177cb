"""VectorIndex: exact backend against brute force, FAISS recall and filters, persistence."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recoforge.errors import ArtifactError, ConfigError, DataError, MissingDependencyError
from recoforge.ranking import _faiss
from recoforge.ranking.index import VectorIndex

N_ITEMS, DIM, N_QUERIES, K = 5000, 32, 300, 10


def clustered(n: int, dim: int, seed: int, n_clusters: int = 50) -> np.ndarray:
    """Gaussian clusters around random centres (seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)) * 2.0
    labels = rng.integers(0, n_clusters, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return clustered(N_ITEMS, DIM, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(N_QUERIES, DIM, seed=1)


def brute_force(vectors, queries, k, metric, exclude=None, allowed=None):
    """Sorted (score desc, index asc) lists in float64, skipping excluded/disallowed items."""
    v, q = vectors.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ v.T
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(v.shape[0]), scores.shape), -scores))
    top = order[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    return np.where(np.isfinite(top_scores), top, -1), top_scores


def random_exclusions(n_rows, n_items, per_row, seed):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), per_row)
    cols = np.concatenate([rng.choice(n_items, per_row, replace=False) for _ in range(n_rows)])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_rows, n_items))


def recall(found, truth):
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max((t >= 0).sum(), 1)
            for f, t in zip(found, truth)]
    return float(np.mean(hits))


# ----------------------------------------------------------------------------- exact
@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_exact_equals_brute_force(items, queries, metric):
    index = VectorIndex.build(items, metric=metric, backend="exact")
    found, scores = index.search(queries, K)
    truth, truth_scores = brute_force(items, queries, K, metric)
    assert found.dtype == np.int32 and scores.dtype == np.float32
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_exact_honours_exclusions_and_whitelist(items, queries, metric):
    exclude = random_exclusions(N_QUERIES, N_ITEMS, 40, seed=2)
    allowed = np.random.default_rng(3).random(N_ITEMS) < 0.3
    index = VectorIndex.build(items, metric=metric)
    found, _ = index.search(queries, K, exclude=exclude, allowed=allowed)
    truth, _ = brute_force(items, queries, K, metric, exclude, allowed)
    np.testing.assert_array_equal(found, truth)


def test_exact_pads_when_fewer_items_are_eligible(items, queries):
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[[7, 70, 700]] = True
    exclude = sp.csr_matrix(([1.0], ([0], [70])), shape=(N_QUERIES, N_ITEMS))
    found, scores = VectorIndex.build(items).search(queries, 5, exclude=exclude,
                                                    allowed=allowed)
    assert found.shape == (N_QUERIES, 5)
    assert sorted(found[0, :2]) == [7, 700] and (found[0, 2:] == -1).all()
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()
    assert set(found[1, :3]) == {7, 70, 700} and (found[1:, 3:] == -1).all()


def test_k_above_catalogue_pads(items):
    small = VectorIndex.build(items[:4])
    found, scores = small.search(items[:2], 6)
    assert found.shape == (2, 6) and (found[:, 4:] == -1).all()
    assert sorted(found[0, :4]) == [0, 1, 2, 3] and np.isneginf(scores[:, 4:]).all()


def test_exact_blocks_give_the_same_answer(items, queries, monkeypatch):
    whole, _ = VectorIndex.build(items).search(queries, K)
    monkeypatch.setattr("recoforge.ranking.index.BLOCK_BYTES", 4 * N_ITEMS * 7)
    blocked, _ = VectorIndex.build(items).search(queries, K)
    np.testing.assert_array_equal(blocked, whole)


def test_auto_is_exact_for_small_catalogues(items):
    index = VectorIndex.build(items, backend="auto")
    assert index.backend == "exact" and index.requested_backend == "auto"


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("k", [0, -1, True, 2.5, "3"])
def test_bad_k(items, k):
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        VectorIndex.build(items).search(items[:2], k)


def test_bad_queries_and_filters(items):
    index = VectorIndex.build(items)
    with pytest.raises(DataError, match="dimension 31, the index has 32"):
        index.search(items[:2, :31], K)
    nan_queries = items[:3].copy()
    nan_queries[2, 5] = np.nan
    with pytest.raises(DataError, match="non-finite value .* row 2"):
        index.search(nan_queries, K)
    with pytest.raises(DataError, match="numeric 2-d array"):
        index.search(items[0], K)
    with pytest.raises(DataError, match="boolean mask"):
        index.search(items[:2], K, allowed=np.array([1, 5, 9]))
    with pytest.raises(DataError, match="exclude has shape"):
        index.search(items[:2], K, exclude=sp.csr_matrix((3, N_ITEMS)))
    with pytest.raises(DataError, match="non-finite value .* row 0"):
        VectorIndex.build(np.full((3, 4), np.inf))


def test_bad_configuration(items):
    with pytest.raises(ConfigError, match="metric must be one of"):
        VectorIndex(metric="euclid")
    with pytest.raises(ConfigError, match="backend must be one of"):
        VectorIndex(backend="annoy")
    with pytest.raises(ConfigError, match="unknown option.*nprobe.*'hnsw'"):
        VectorIndex(backend="hnsw", nprobe=3)
    with pytest.raises(ConfigError, match="'auto' takes no options"):
        VectorIndex(backend="auto", M=8)
    with pytest.raises(ConfigError, match="ef_search must be a positive integer"):
        VectorIndex(backend="hnsw", ef_search=0)
    with pytest.raises(ConfigError, match="ip_transform must be True or False, got 1"):
        VectorIndex(backend="hnsw", ip_transform=1)
    with pytest.raises(ConfigError, match="before fit"):
        VectorIndex().search(items[:1], K)


def test_missing_faiss_names_the_extra(items, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(MissingDependencyError, match=r"recoforge\[ann\]"):
        VectorIndex.build(items, backend="hnsw")


# ----------------------------------------------------------------------------- FAISS
ANN_CASES = [("hnsw", {"ef_search": 256}), ("ivf", {"nlist": 50, "nprobe": 20})]


@pytest.fixture(scope="module")
def ann_indexes(items):
    pytest.importorskip("faiss")
    return {(backend, metric): VectorIndex.build(items, metric, backend, **options)
            for backend, options in ANN_CASES for metric in ("dot", "cosine")}


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_ann_recall_against_exact(ann_indexes, items, queries, backend, metric):
    found, scores = ann_indexes[backend, metric].search(queries, K)
    truth, truth_scores = VectorIndex.build(items, metric).search(queries, K)
    assert recall(found, truth) >= 0.95
    assert (found >= 0).all()
    same = found == truth  # where they agree, the scores agree too
    np.testing.assert_allclose(scores[same], truth_scores[same], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def transformed_hnsw(ann_indexes):
    return ann_indexes["hnsw", "dot"]


def test_hnsw_with_and_without_the_ip_transform(ann_indexes, transformed_hnsw, items,
                                                queries):
    assert ann_indexes["hnsw", "dot"].options["ip_transform"] is True  # the default
    plain = VectorIndex.build(items, "dot", "hnsw", ef_search=256, ip_transform=False)
    assert plain.options["ip_transform"] is False
    assert (transformed_hnsw._faiss_index.d, plain._faiss_index.d) == (DIM + 1, DIM)
    truth, truth_scores = VectorIndex.build(items).search(queries, K)
    for index in (plain, transformed_hnsw):
        found, scores = index.search(queries, K)
        assert recall(found, truth) >= 0.95
        same = found == truth
        np.testing.assert_allclose(scores[same], truth_scores[same], rtol=1e-4, atol=1e-4)
        again = round_trip(index)
        assert again.options["ip_transform"] is index.options["ip_transform"]
        np.testing.assert_array_equal(again.search(queries, K)[0], found)
    meta, arrays, blobs = plain.to_parts()
    claims_transform = {**meta, "options": {**meta["options"], "ip_transform": True}}
    with pytest.raises(ArtifactError, match=f"dimension {DIM}, the metadata says "
                                            f"{N_ITEMS} of dimension {DIM + 1}"):
        VectorIndex.from_parts(claims_transform, arrays, blobs)


def test_hnsw_saved_before_ip_transform_existed_loads_transformed(transformed_hnsw, queries):
    meta, arrays, blobs = transformed_hnsw.to_parts()
    older = {**meta, "options": {k: v for k, v in meta["options"].items()
                                 if k != "ip_transform"}}
    again = VectorIndex.from_parts(older, arrays, blobs)
    assert again.options["ip_transform"] is True
    np.testing.assert_array_equal(again.search(queries, K)[0],
                                  transformed_hnsw.search(queries, K)[0])


def spy_fetch_sizes(monkeypatch):
    sizes: list[int] = []
    original = _faiss.search

    def recording(index, backend, queries, size, options):
        sizes.append(size)
        return original(index, backend, queries, size, options)

    monkeypatch.setattr(_faiss, "search", recording)
    return sizes


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_ann_over_fetches_past_exclusions(ann_indexes, items, queries, backend, monkeypatch):
    exact = VectorIndex.build(items)
    top, _ = exact.search(queries, 8)  # exclude each row's 8 best items: the hard case
    rows = np.repeat(np.arange(N_QUERIES), 8)
    exclude = sp.csr_matrix((np.ones(rows.size), (rows, top.ravel())),
                            shape=(N_QUERIES, N_ITEMS))
    allowed = np.random.default_rng(4).random(N_ITEMS) < 0.8
    sizes = spy_fetch_sizes(monkeypatch)
    found, _ = ann_indexes[backend, "dot"].search(queries, K, exclude=exclude,
                                                  allowed=allowed)
    truth, _ = exact.search(queries, K, exclude=exclude, allowed=allowed)
    assert sizes and min(sizes) > K  # it fetched more than k, through FAISS
    assert (found >= 0).all() and allowed[found].all()
    assert not any(set(f) & set(t) for f, t in zip(found, top))
    assert recall(found, truth) >= 0.95


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_ann_small_whitelist_is_answered_exactly(ann_indexes, items, queries, backend):
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[np.random.default_rng(5).choice(N_ITEMS, 60, replace=False)] = True
    exclude = random_exclusions(N_QUERIES, N_ITEMS, 30, seed=6)
    found, scores = ann_indexes[backend, "cosine"].search(queries, K, exclude=exclude,
                                                          allowed=allowed)
    truth, truth_scores = brute_force(items, queries, K, "cosine", exclude, allowed)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-4)


def test_ivf_fills_defaults_and_checks_nprobe(items):
    pytest.importorskip("faiss")
    index = VectorIndex.build(items[:2000], backend="ivf")
    assert index.options["nlist"] == 45 and index.options["nprobe"] == 16
    with pytest.raises(ConfigError, match="nprobe=46 exceeds nlist=45"):
        index.set_search_params(nprobe=46)
    with pytest.raises(ConfigError, match="not a search setting"):
        index.set_search_params(ef_search=10)


def test_faiss_threads_set_only_when_different(ann_indexes, queries, monkeypatch):
    import faiss

    before = faiss.omp_get_max_threads()
    calls: list[int] = []
    real_set = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), real_set(n)))
    monkeypatch.setattr(_faiss, "get_num_threads", lambda: 1)
    try:
        for _ in range(3):
            ann_indexes["hnsw", "dot"].search(queries[:5], K)
        assert faiss.omp_get_max_threads() == 1
        assert calls == ([] if before == 1 else [1])
    finally:
        real_set(before)


# ----------------------------------------------------------------------------- parts
def round_trip(index):
    meta, arrays, blobs = index.to_parts()
    import json

    meta = json.loads(json.dumps(meta))  # the metadata must survive JSON
    return VectorIndex.from_parts(meta, arrays, blobs)


def test_exact_round_trip(items, queries):
    index = VectorIndex.build(items, "cosine")
    again = round_trip(index)
    assert (again.metric, again.backend, again.n_items, again.dim) == ("cosine", "exact",
                                                                       N_ITEMS, DIM)
    for out, expected in zip(again.search(queries, K), index.search(queries, K)):
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_faiss_round_trip(ann_indexes, queries, backend):
    index = ann_indexes[backend, "dot"]
    again = round_trip(index)
    assert again.options == index.options
    exclude = random_exclusions(N_QUERIES, N_ITEMS, 20, seed=7)
    for out, expected in zip(again.search(queries, K, exclude=exclude),
                             index.search(queries, K, exclude=exclude)):
        np.testing.assert_array_equal(out, expected)


def tampered(parts, meta=None, arrays=None, blobs=None):
    m, a, b = parts
    return ({**m, **(meta or {})}, {**a, **(arrays or {})}, {**b, **(blobs or {})})


def test_tampered_exact_parts_are_refused(items):
    parts = VectorIndex.build(items[:100]).to_parts()
    vectors = parts[1]["vectors"]
    nan_vectors = vectors.copy()
    nan_vectors[3, 3] = np.nan
    cases = {
        "unknown backend 'annoy'": tampered(parts, meta={"backend": "annoy"}),
        "unknown backend 'auto'": tampered(parts, meta={"backend": "auto"}),
        "unknown metric 'l2'": tampered(parts, meta={"metric": "l2"}),
        "shape": tampered(parts, arrays={"vectors": vectors[:, :5]}),
        "NaN or inf": tampered(parts, arrays={"vectors": nan_vectors}),
        "float32": tampered(parts, arrays={"vectors": vectors.astype(np.float64)}),
        "expected arrays": tampered(parts, blobs={"faiss_index": b"x"}),
        "metadata must have keys": ({"metric": "dot"}, parts[1], parts[2]),
        "part version": tampered(parts, meta={"version": 99}),
        "n_items must be": tampered(parts, meta={"n_items": -4}),
        "unknown option": tampered(parts, meta={"options": {"M": 3}}),
    }
    for message, (meta, arrays, blobs) in cases.items():
        with pytest.raises(ArtifactError, match=message):
            VectorIndex.from_parts(meta, arrays, blobs)
    cosine = VectorIndex.build(items[:100], "cosine").to_parts()
    with pytest.raises(ArtifactError, match="not unit-normalised"):
        VectorIndex.from_parts(*tampered(cosine, arrays={"vectors": vectors}))


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_tampered_faiss_parts_are_refused(ann_indexes, items, backend):
    parts = ann_indexes[backend, "dot"].to_parts()
    blob = parts[2]["faiss_index"]
    other = "ivf" if backend == "hnsw" else "hnsw"
    other_parts = ann_indexes[other, "dot"].to_parts()
    cases = {
        "does not deserialise": tampered(parts, blobs={"faiss_index": b"garbage" * 10}),
        "does not deserialise ": tampered(parts, blobs={"faiss_index": blob[:len(blob) // 2]}),
        "holds a IndexIVFFlat|holds a IndexHNSWFlat": tampered(
            parts, blobs={"faiss_index": other_parts[2]["faiss_index"]}),
        "holds 5000 vectors .* the metadata says 4999": tampered(
            parts, meta={"n_items": 4999}),
        "expected arrays": tampered(parts, arrays={"vectors": items}),
    }
    for message, (meta, arrays, blobs) in cases.items():
        with pytest.raises(ArtifactError, match=message.strip()):
            VectorIndex.from_parts(meta, arrays, blobs)


def test_unfitted_index_cannot_be_saved():
    with pytest.raises(ConfigError, match="before fit"):
        VectorIndex().to_parts()


def test_registered_as_an_artifact_part(items, queries):
    from recoforge.artifacts import parts

    index = VectorIndex.build(items[:500], "cosine")
    assert parts.kind_of(index) == "vector_index"
    payload = parts.encode("vector_index", index, "index_")
    again = parts.decode("vector_index", *payload, label="index_")
    np.testing.assert_array_equal(again.search(queries, K)[0], index.search(queries, K)[0])
    meta, arrays, blobs = payload
    with pytest.raises(ArtifactError, match="unknown backend 'annoy'"):
        parts.decode("vector_index", {**meta, "backend": "annoy"}, arrays, blobs, "index_")
