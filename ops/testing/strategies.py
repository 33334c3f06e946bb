"""Hypothesis strategies for images and batches, for property tests of ops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["dense_batches", "images", "ragged_batches"]


def _elements(dtype: np.dtype) -> st.SearchStrategy[Any]:
    if dtype.kind == "u":
        return st.integers(0, int(np.iinfo(dtype).max))
    return st.floats(0.0, 1.0, width=32 if dtype.itemsize <= 4 else 64, allow_nan=False)


@st.composite
def images(
    draw: st.DrawFn,
    /,
    dtypes: Sequence[Any] = (np.uint8, np.float32),
    channels: Sequence[int] = (1, 3, 4),
    min_side: int = 1,
    max_side: int = 33,
) -> np.ndarray:
    """HWC images of any accepted dtype, 1-pixel and odd sides included, full value range."""
    dtype = np.dtype(draw(st.sampled_from(list(dtypes))))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    c = draw(st.sampled_from(list(channels)))
    return draw(hnp.arrays(dtype, (h, w, c), elements=_elements(dtype)))


@st.composite
def dense_batches(draw: st.DrawFn, /, max_batch: int = 4, **image_kw: Any) -> np.ndarray:
    """``N H W C`` batches of same-shaped images."""
    first = draw(images(**image_kw))
    n = draw(st.integers(1, max_batch))
    rest = [draw(hnp.arrays(first.dtype, first.shape, elements=_elements(first.dtype))) for _ in range(n - 1)]
    return np.stack([first, *rest])


@st.composite
def ragged_batches(draw: st.DrawFn, /, max_batch: int = 4, **image_kw: Any) -> list[np.ndarray]:
    """Lists of images of one dtype and channel count but different heights and widths."""
    first = draw(images(**image_kw))
    n = draw(st.integers(1, max_batch))
    kw = {**image_kw, "dtypes": [first.dtype], "channels": [first.shape[2]]}
    return [first, *(draw(images(**kw)) for _ in range(n - 1))]
