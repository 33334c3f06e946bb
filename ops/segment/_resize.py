"""``segment.resize``: a label map back to the original image size, nearest neighbour."""

from __future__ import annotations

import numpy as np

from .._errors import InputError
from .._op import Op
from .._spec import TensorSpec
from ..image._common import jit
from ..image._resample import nearest_index
from ._common import LABEL_DTYPES, label_spec, random_labels

__all__ = ["MAX_PIXELS", "resize"]

#: the largest label map ``segment.resize`` makes: 2**28 pixels (2 GiB as int64)
MAX_PIXELS = 1 << 28


def _target(size: np.ndarray) -> tuple[int, int]:
    if size.dtype.kind not in "iu" or size.shape != (2,):
        raise InputError(f"segment.resize: input 'size' must be [height, width] integers, got {size.dtype} {list(size.shape)}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1 or h * w > MAX_PIXELS:
        raise InputError(f"segment.resize: size [{h}, {w}] must be positive with at most {MAX_PIXELS} pixels")
    return h, w


def _resize_reference(labels: np.ndarray, size: np.ndarray) -> np.ndarray:
    oh, ow = _target(size)
    ys = nearest_index(labels.shape[0], oh)
    xs = nearest_index(labels.shape[1], ow)
    return np.asarray(labels[ys][:, xs])


def _resize_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    labels = random_labels(rng, dtype, int(rng.choice([2, 21, 200])))
    size = rng.integers(1, 90, size=2)
    return labels, size.astype(np.int64 if rng.random() < 0.5 else np.int32)


resize = Op(
    "segment.resize",
    doc="""Resize a label map to ``size`` = ``[height, width]`` (e.g. the original image's), by
nearest neighbour: never a class that is not in the map, never a blend.

Pixel centres as ``image.resize``'s ``nearest``: output pixel ``i`` takes source pixel
``min(floor((i + 0.5) * in / out), in - 1)``, computed in float32 as torch does, so it equals
torchvision ``NEAREST_EXACT`` (and ``image.resize(..., interpolation="nearest")``) exactly,
enlarging or shrinking, each axis on its own. ``size`` is an input tensor (int32 or int64, one
per sample in a batch) because the original size differs per request; sides must be >= 1 and
the map at most 2**28 pixels, else an error naming the size. The output keeps the dtype.""",
    inputs=[
        label_spec(),
        TensorSpec("size", (np.int64, np.int32), "2", "[height, width] of the output"),
    ],
    outputs=[TensorSpec("labels", LABEL_DTYPES, "height width", "the resized label map")],
    reference=_resize_reference,
    example_inputs=_resize_inputs,
)


@jit
def _gather(src: np.ndarray, ys: np.ndarray, xs: np.ndarray, out: np.ndarray) -> None:
    for i in range(ys.shape[0]):
        row = src[ys[i]]
        for j in range(xs.shape[0]):
            out[i, j] = row[xs[j]]


@resize.kernel("cpu")
def _resize_cpu(labels: np.ndarray, size: np.ndarray) -> np.ndarray:
    oh, ow = _target(size)
    out = np.empty((oh, ow), labels.dtype)
    _gather(labels, nearest_index(labels.shape[0], oh), nearest_index(labels.shape[1], ow), out)
    return out
