"""What the segmentation ops share: label-map dtypes and spec."""

from __future__ import annotations

import numpy as np

from .._spec import TensorSpec

__all__ = ["LABEL_DTYPES", "Meta", "label_spec", "random_labels"]

#: dtypes of label maps: uint8 (up to 256 classes, PNG-able), int32, int64 (torch.argmax's)
LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64))

Meta = list[tuple[tuple[int, ...], np.dtype]]


def label_spec(name: str = "labels", doc: str = "") -> TensorSpec:
    return TensorSpec(name, LABEL_DTYPES, "H W", doc or "a label map: one class index per pixel")


def random_labels(rng: np.random.Generator, dtype: np.dtype, classes: int, max_side: int = 40) -> np.ndarray:
    """A random ``H W`` label map of 1-pixel to ``max_side`` sides with classes below ``classes``."""
    h, w = (int(v) for v in rng.integers(1, max_side + 1, size=2))
    return rng.integers(0, classes, size=(h, w)).astype(dtype)
