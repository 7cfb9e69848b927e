"""Hand-computed cases for the numpy pooling helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from retrieval.encoders.pooling import l2_normalize, mean_pool

pytestmark = pytest.mark.unit


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2.0, 3.0]])


def test_mean_pool_rows_use_their_own_mask() -> None:
    hidden = np.array(
        [
            [[2.0, 0.0], [4.0, 2.0], [6.0, 4.0]],
            [[1.0, 1.0], [9.0, 9.0], [9.0, 9.0]],
        ],
        dtype=np.float32,
    )
    mask = np.array([[1, 1, 1], [1, 0, 0]], dtype=np.int64)
    out = mean_pool(hidden, mask)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[4.0, 2.0], [1.0, 1.0]])


def test_mean_pool_all_masked_row_is_zero_not_nan() -> None:
    hidden = np.ones((1, 2, 3), dtype=np.float32)
    out = mean_pool(hidden, np.zeros((1, 2), dtype=np.int64))
    np.testing.assert_array_equal(out, np.zeros((1, 3), dtype=np.float32))


def test_mean_pool_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        mean_pool(np.zeros((2, 3, 4), dtype=np.float32), np.ones((2, 4), dtype=np.int64))


def test_l2_normalize_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, -2.0]], dtype=np.float64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, -1.0]], rtol=1e-6)


def test_l2_normalize_zero_row_stays_zero_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a divide-by-zero RuntimeWarning would fail the test
        out = l2_normalize(np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(out, [[0.0, 0.0], [1.0, 0.0]])


def test_l2_normalize_single_vector() -> None:
    np.testing.assert_allclose(l2_normalize(np.array([0.0, 5.0])), [0.0, 1.0])
