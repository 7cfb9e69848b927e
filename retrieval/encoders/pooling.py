"""Pure numpy pooling helpers shared by the encoder and the parity tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def mean_pool(last_hidden: npt.NDArray[np.floating], attention_mask: npt.NDArray[np.integer]) -> FloatArray:
    """Average token vectors over the positions the attention mask marks as real.

    ``last_hidden`` is ``(batch, seq, dim)`` and ``attention_mask`` ``(batch, seq)`` of 0/1.
    This mirrors sentence-transformers / uniem "last_mean" pooling: padding tokens must not
    dilute the average, so they are zeroed and the sum divided by the real-token count. A row
    with no real tokens (never produced by our tokenizer, which always adds [CLS]/[SEP]) yields
    zeros instead of NaN because the count is clamped to at least 1.
    """
    if last_hidden.ndim != 3 or attention_mask.shape != last_hidden.shape[:2]:
        raise ValueError(
            f"shape mismatch: last_hidden {last_hidden.shape} vs attention_mask {attention_mask.shape}"
        )
    mask = attention_mask.astype(np.float32)[:, :, None]
    summed = (last_hidden.astype(np.float32, copy=False) * mask).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1), 1.0)
    pooled: FloatArray = (summed / counts).astype(np.float32, copy=False)
    return pooled


def l2_normalize(x: npt.NDArray[np.floating], eps: float = 1e-12) -> FloatArray:
    """Scale each row to unit L2 norm; all-zero rows stay zero rather than becoming NaN.

    Accepts a single vector ``(dim,)`` or a matrix ``(n, dim)``. Vector stores compare by inner
    product, so every embedding we index or query with goes through here.
    """
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    # Dividing by max(norm, eps) keeps zero rows at zero (0 / eps == 0) without a warning.
    out: FloatArray = (arr / np.maximum(norms, eps)).astype(np.float32, copy=False)
    return out
