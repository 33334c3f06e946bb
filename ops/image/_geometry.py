"""Geometry ops that move pixels without interpolation: flip and rotate90."""

from __future__ import annotations

import numpy as np

from .._op import Op
from .._params import Choice, Int, Param
from ._common import image_spec, jit, same_shape

__all__ = ["flip", "rotate90"]


def _flip_reference(image: np.ndarray, *, axis: str) -> np.ndarray:
    if axis == "horizontal":
        return image[:, ::-1].copy()
    if axis == "vertical":
        return image[::-1].copy()
    return image[::-1, ::-1].copy()


flip = Op(
    "image.flip",
    doc="""Mirror an image: ``horizontal`` (left-right), ``vertical`` (top-bottom) or ``both``.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None)],
    params=[Param("axis", Choice(("horizontal", "vertical", "both")), "horizontal", "which way to mirror")],
    reference=_flip_reference,
    infer=same_shape,
    example_params=lambda rng, image: {"axis": str(rng.choice(["horizontal", "vertical", "both"]))},
)


@jit
def _flip_kernel(src: np.ndarray, dst: np.ndarray, flip_y: bool, flip_x: bool) -> None:
    h, w, c = src.shape
    for y in range(h):
        sy = h - 1 - y if flip_y else y
        for x in range(w):
            sx = w - 1 - x if flip_x else x
            for k in range(c):
                dst[y, x, k] = src[sy, sx, k]


@flip.kernel("cpu")
def _flip_cpu(image: np.ndarray, *, out: np.ndarray, axis: str) -> None:
    _flip_kernel(image, out, axis != "horizontal", axis != "vertical")


def _rotate90_reference(image: np.ndarray, *, k: int) -> np.ndarray:
    return np.rot90(image, k, axes=(0, 1)).copy()


def _rotate90_infer(image: np.ndarray, *, k: int) -> list[tuple[tuple[int, ...], np.dtype]]:
    h, w, c = image.shape
    return [((w, h, c) if k % 2 else (h, w, c), image.dtype)]


rotate90 = Op(
    "image.rotate90",
    doc="""Rotate an image by ``k`` quarter turns counter-clockwise (as ``numpy.rot90``).""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="H2 W2 C")],
    params=[Param("k", Int(), 1, "quarter turns, counter-clockwise; negative turns clockwise")],
    reference=_rotate90_reference,
    infer=_rotate90_infer,
    example_params=lambda rng, image: {"k": int(rng.integers(-5, 6))},
)


@jit
def _rotate90_kernel(src: np.ndarray, dst: np.ndarray, k: int) -> None:
    h, w, c = src.shape
    oh, ow = dst.shape[0], dst.shape[1]
    for y in range(oh):
        for x in range(ow):
            if k == 0:
                sy, sx = y, x
            elif k == 1:
                sy, sx = x, w - 1 - y
            elif k == 2:
                sy, sx = h - 1 - y, w - 1 - x
            else:
                sy, sx = h - 1 - x, y
            for ch in range(c):
                dst[y, x, ch] = src[sy, sx, ch]


@rotate90.kernel("cpu")
def _rotate90_cpu(image: np.ndarray, *, out: np.ndarray, k: int) -> None:
    _rotate90_kernel(image, out, k % 4)
