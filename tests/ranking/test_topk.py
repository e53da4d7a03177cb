import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recoforge.errors import ConfigError
from recoforge.ranking import topk


def reference(scores, k, exclude=None, allowed=None):
    """Plain-Python top-k: sort by (-score, index), skipping excluded/NaN/disallowed."""
    out = []
    for r, row in enumerate(scores):
        banned = set(exclude[r].indices) if exclude is not None else set()
        cand = [(-float(s), j) for j, s in enumerate(row)
                if j not in banned and not np.isnan(s) and (allowed is None or allowed[j])]
        out.append([j for _, j in sorted(cand)[:k]])
    return out


score_values = st.one_of(st.floats(-5, 5, width=32), st.sampled_from([0.0, 1.0, np.nan]))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), m=st.integers(1, 30), k=st.integers(1, 35))
def test_matches_reference(data, n, m, k):
    scores = data.draw(arrays(np.float32, (n, m), elements=score_values))
    mask = data.draw(arrays(np.bool_, (n, m)))
    exclude = sp.csr_matrix(mask.astype(np.float32))
    allowed = data.draw(st.one_of(st.none(), arrays(np.bool_, (m,))))
    idx, vals = topk(scores, k, exclude, allowed)
    expected = reference(scores, k, exclude, allowed)
    assert idx.shape == (n, min(k, m))
    for r in range(n):
        got = [j for j in idx[r] if j >= 0]
        assert got == expected[r]
        np.testing.assert_array_equal(vals[r, :len(got)], scores[r, got])
        assert np.all(idx[r, len(got):] == -1) and np.all(np.isneginf(vals[r, len(got):]))


def test_simple_case_and_ties():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3, 2, 1, 0]], dtype=np.float32)
    idx, vals = topk(scores, 2)
    assert idx.tolist() == [[1, 3], [0, 1]]
    assert vals.tolist() == [[pytest.approx(0.9), pytest.approx(0.9)], [3, 2]]


def test_exclusion_with_unsorted_indices_and_bad_args():
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    exclude = sp.csr_matrix((np.ones(3), np.array([5, 3, 4]), np.array([0, 3, 3])), shape=(2, 6))
    exclude.has_sorted_indices = False
    idx, _ = topk(scores, 2, exclude)
    assert idx.tolist() == [[2, 1], [5, 4]]
    for k in (0, -3, 1.5, True, None):
        with pytest.raises(ConfigError):
            topk(scores, k)
    with pytest.raises(ValueError):
        topk(scores, 2, sp.csr_matrix((3, 6)))
    with pytest.raises(ValueError):
        topk(scores, 2, allowed=np.ones(5, bool))


def test_empty_rows_and_columns():
    idx, vals = topk(np.zeros((0, 4), np.float32), 3)
    assert idx.shape == (0, 3)
    idx, vals = topk(np.zeros((2, 0), np.float32), 3)
    assert idx.shape[0] == 2 and (idx == -1).all()
