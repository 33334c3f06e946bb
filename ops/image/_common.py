"""What the image ops share: dtypes, the HWC image spec, the Numba decorator, test inputs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

from .._spec import TensorSpec

__all__ = ["IMAGE_DTYPES", "image_spec", "jit", "random_image", "same_shape"]

#: dtypes every image op accepts unless it says otherwise.
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

F = TypeVar("F", bound=Callable[..., Any])

#: Numba's njit as every CPU kernel uses it: cached on disk, releasing the GIL.
jit = cast(Callable[[F], F], functools.partial(numba.njit, cache=True, nogil=True))


def image_spec(name: str = "image", dtypes: tuple[Any, ...] | None = IMAGE_DTYPES, shape: str = "H W C", doc: str = "") -> TensorSpec:
    return TensorSpec(name, dtypes, shape, doc or "an image, height × width × channels")


def same_shape(image: np.ndarray, **_: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    """``infer`` of an op whose output has its input's shape and dtype."""
    return [(image.shape, image.dtype)]


def random_image(rng: np.random.Generator, dtype: Any, *, channels: tuple[int, ...] = (1, 3, 4), max_side: int = 37) -> np.ndarray:
    """A random HWC image of odd and tiny sizes (1-pixel sides included), full value range."""
    dt = np.dtype(dtype)
    sides = [1, 2, 3, 5, 8, 13, 17, max_side]
    h = int(rng.choice(sides)) if rng.random() < 0.3 else int(rng.integers(1, max_side + 1))
    w = int(rng.choice(sides)) if rng.random() < 0.3 else int(rng.integers(1, max_side + 1))
    c = int(rng.choice(channels))
    if dt.kind == "u":
        return rng.integers(0, np.iinfo(dt).max, size=(h, w, c), endpoint=True, dtype=dt)
    # floats in [0, 1] (the usual scale) or [0, 255] (images cast without scaling)
    scale = 1.0 if rng.random() < 0.7 else 255.0
    return (rng.random((h, w, c), dtype=np.float64) * scale).astype(dt)
