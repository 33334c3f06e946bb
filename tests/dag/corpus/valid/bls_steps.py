"""Python (BLS) steps used by the test pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np


def image_size(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """``size``: [height, width] of each decoded image of the batch."""
    images = inputs["image"]
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else images
    return {"size": np.array([im.shape[:2] for im in images], dtype=np.int64)}


async def image_size_async(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return image_size(inputs, ctx)


LABELS = ["cat", "dog"]  # not callable: a python step naming it is an error
