import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recoforge.errors import ConfigError
from recoforge.models.neighbours.similarity import (
    column_idf,
    similarity_matrix,
    topk_neighbours,
    weight_rows,
)


def random_ratings(seed: int, n_rows: int = 25, n_cols: int = 30, density: float = 0.3):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < density
    dense = np.where(mask, rng.integers(1, 6, (n_rows, n_cols)), 0).astype(np.float32)
    return sp.csr_matrix(dense), dense


def corated_cosine(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = len(z)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            co = mask[i] & mask[j]
            den = np.sqrt((z[i, co] ** 2).sum() * (z[j, co] ** 2).sum())
            if i != j and den > 0:
                out[i, j] = (z[i, co] * z[j, co]).sum() / den
    return out


def test_cosine_matches_dense_and_keeps_top_k():
    mat, dense = random_ratings(0)
    norms = np.linalg.norm(dense, axis=1)
    expected = dense @ dense.T / np.outer(norms, norms)
    np.fill_diagonal(expected, 0)
    full = similarity_matrix(mat, 100, "cosine").toarray()
    np.testing.assert_allclose(full, expected, atol=1e-6)
    top = similarity_matrix(mat, 3, "cosine")
    assert np.diff(top.indptr).max() == 3 and top.has_sorted_indices
    for i in range(dense.shape[0]):
        kept = np.sort(top[i].data)[::-1]
        np.testing.assert_allclose(kept, np.sort(expected[i])[::-1][:3], rtol=1e-6)


def test_pearson_centres_by_row_mean_over_corated_columns():
    mat, dense = random_ratings(1)
    mask = dense != 0
    means = dense.sum(1) / mask.sum(1)
    expected = corated_cosine(np.where(mask, dense - means[:, None], 0), mask)
    got = similarity_matrix(mat, 100, "pearson", min_similarity=-1.0).toarray()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    positive = similarity_matrix(mat, 100, "pearson").toarray()
    assert positive.min() >= 0 and np.allclose(positive, np.where(expected > 0, expected, 0),
                                                atol=1e-5)


def test_adjusted_cosine_centres_by_column_mean():
    mat, dense = random_ratings(2)
    mask = dense != 0
    col_means = dense.sum(0) / np.maximum(mask.sum(0), 1)
    z = np.where(mask, dense - col_means[None, :], 0)
    norms = np.linalg.norm(z, axis=1)
    expected = z @ z.T / np.outer(norms, norms)
    np.fill_diagonal(expected, 0)
    got = similarity_matrix(mat, 100, "adjusted_cosine", min_similarity=-1.0).toarray()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pearson_baseline_uses_given_residuals():
    mat, dense = random_ratings(3, 10, 12, 0.5)
    mask = dense != 0
    mu, rows, cols = 3.0, np.linspace(-0.5, 0.5, 10), np.linspace(0.3, -0.3, 12)
    z = np.where(mask, dense - mu - rows[:, None] - cols[None, :], 0)
    expected = corated_cosine(z, mask)
    got = similarity_matrix(mat, 20, "pearson_baseline", min_similarity=-1.0,
                            baseline=(mu, rows, cols)).toarray()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_jaccard_and_shrinkage_by_hand():
    # rows a={0,1,2}, b={1,2,3}, c={4}
    mat = sp.csr_matrix(np.array([[1, 2, 3, 0, 0], [0, 5, 1, 1, 0], [0, 0, 0, 0, 4]],
                                 dtype=np.float32))
    sims = similarity_matrix(mat, 5, "jaccard").toarray()
    assert sims[0, 1] == pytest.approx(2 / 4) and sims[1, 0] == pytest.approx(2 / 4)
    assert sims[0, 2] == 0 and sims[2].sum() == 0
    shrunk = similarity_matrix(mat, 5, "jaccard", shrinkage=2.0).toarray()
    assert shrunk[0, 1] == pytest.approx(0.5 * 2 / (2 + 2))
    assert similarity_matrix(mat, 5, "jaccard", min_support=3).nnz == 0
    assert similarity_matrix(mat, 5, "jaccard", min_similarity=0.6).nnz == 0


def test_bm25_and_tfidf_weights_by_hand():
    mat = sp.csr_matrix(np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=np.float32))
    idf = column_idf(mat)
    np.testing.assert_allclose(idf, np.log(2) - np.log1p([2, 1, 1]))
    bm25 = weight_rows(mat, "bm25", idf, average_length=2.5, k1=1.2, b=0.75).toarray()
    norm0 = 0.25 + 0.75 * 3 / 2.5
    assert bm25[0, 0] == pytest.approx(2 * 2.2 / (1.2 * norm0 + 2) * idf[0], rel=1e-5)
    tfidf = weight_rows(mat, "tfidf", idf, 1.0).toarray()
    assert tfidf[0, 2] == pytest.approx(1.0 * idf[2], rel=1e-6)
    assert weight_rows(mat, "none", idf, 1.0).nnz == mat.nnz


def test_topk_neighbours_excludes_and_pads():
    mat, _ = random_ratings(4, 6, 8, 0.6)
    found = topk_neighbours(mat, mat, 10, measure="cosine", exclude=np.array([0, -1] * 3))
    assert found.indices.shape == (6, 6)
    assert 0 not in found.indices[0, : found.counts[0]]
    assert found.indices[1, 0] == 1  # not excluded: a row is its own best match
    assert (found.indices[found.similarities == 0] == -1).all()
    with pytest.raises(ValueError, match="columns"):
        topk_neighbours(mat, mat[:, :3], 2)


@pytest.mark.parametrize("kwargs", [
    {"similarity": "euclid"}, {"weighting": "bm26"},
    {"similarity": "pearson", "weighting": "bm25"}, {"k": 0}, {"k": 2.5},
    {"shrinkage": -1.0}, {"min_support": 0},
])
def test_bad_options(kwargs):
    mat, _ = random_ratings(5)
    args = {"k": 5, **kwargs}
    with pytest.raises(ConfigError):
        similarity_matrix(mat, **args)


def test_empty_and_large_sparse_rows():
    empty = sp.csr_matrix((4, 5), dtype=np.float32)
    assert similarity_matrix(empty, 3).nnz == 0
    # 20k rows, ~3 entries each: memory stays O(n * k), result nnz bounded by n * k
    rng = np.random.default_rng(0)
    n = 20_000
    rows = np.repeat(np.arange(n), 3)
    cols = rng.integers(0, 2_000, size=3 * n)
    big = sp.csr_matrix((np.ones(3 * n, np.float32), (rows, cols)), shape=(n, 2_000))
    sims = similarity_matrix(big, 5)
    assert sims.shape == (n, n) and np.diff(sims.indptr).max() <= 5


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12),
       measure=st.sampled_from(["cosine", "jaccard", "pearson", "dot"]))
def test_symmetric_and_truncation_properties(seed, k, measure):
    mat, _ = random_ratings(seed, 12, 10, 0.4)
    full = similarity_matrix(mat, 100, measure).toarray()
    np.testing.assert_allclose(full, full.T, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(full) == 0)
    top = similarity_matrix(mat, k, measure)
    assert np.diff(top.indptr).max(initial=0) <= k
    dense_top = top.toarray()
    kept = dense_top != 0
    np.testing.assert_allclose(dense_top[kept], full[kept], rtol=1e-6)
    for i in range(full.shape[0]):  # nothing dropped is better than what was kept
        if kept[i].any():
            assert full[i][~kept[i]].max(initial=0) <= dense_top[i][kept[i]].min() + 1e-6


def test_neighbour_scores_equal_the_sparse_product():
    import scipy.sparse as sp

    from recoforge.models.neighbours.similarity import neighbour_scores

    rng = np.random.default_rng(3)
    histories = sp.random(7, 12, density=0.3, format="csr", random_state=rng)
    neighbours = sp.random(12, 12, density=0.2, format="csr", random_state=rng)
    expected = (histories @ neighbours).toarray()
    np.testing.assert_allclose(neighbour_scores(histories, neighbours), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="do not chain"):
        neighbour_scores(histories, neighbours[:5])
