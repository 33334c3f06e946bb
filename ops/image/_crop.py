"""Crops: a box at given offsets, and the centred box, both zero-filled outside the image."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._op import Op
from .._params import Int, Param, Size
from ._common import image_spec
from ._pad import gather, source_index

__all__ = ["center_crop", "center_crop_offsets", "crop"]


def _crop_reference(image: np.ndarray, *, top: int, left: int, height: int, width: int) -> np.ndarray:
    h, w, c = image.shape
    out = np.zeros((height, width, c), image.dtype)
    # the part of the box inside the image, in image and in box coordinates
    y0, y1 = max(top, 0), min(top + height, h)
    x0, x1 = max(left, 0), min(left + width, w)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def _crop_infer(image: np.ndarray, *, top: int, left: int, height: int, width: int) -> list[tuple[tuple[int, ...], np.dtype]]:
    return [((height, width, image.shape[2]), image.dtype)]


def _crop_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    h, w = image.shape[:2]
    # boxes inside, straddling and wholly outside the image, negative offsets included
    return {
        "top": int(rng.integers(-h - 2, h + 3)),
        "left": int(rng.integers(-w - 2, w + 3)),
        "height": int(rng.integers(1, 2 * h + 3)),
        "width": int(rng.integers(1, 2 * w + 3)),
    }


crop = Op(
    "image.crop",
    doc="""Cut the ``height × width`` box whose top-left corner is at row ``top``, column ``left``.

Offsets may be negative and the box may extend past (or lie wholly outside) the image: pixels of
the box outside the image are 0, as torchvision v2 ``F.crop`` (which pads with 0). The output is
``height × width × C`` with the input's dtype; exact. (A box that ends above or left of the image,
``top + height < 0``, is all zeros here; torchvision 0.29 slices with the negative end, which
Python wraps, and returns the wrong shape.)""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="height width C")],
    params=[
        Param("top", Int(), doc="row of the box's top edge; negative is above the image"),
        Param("left", Int(), doc="column of the box's left edge; negative is left of the image"),
        Param("height", Int(min=1), doc="rows in the box"),
        Param("width", Int(min=1), doc="columns in the box"),
    ],
    reference=_crop_reference,
    infer=_crop_infer,
    example_params=_crop_examples,
)


def _crop_into(image: np.ndarray, out: np.ndarray, top: int, left: int) -> None:
    h, w, c = image.shape
    ys = source_index(h, -top, out.shape[0], "constant")
    xs = source_index(w, -left, out.shape[1], "constant")
    gather(image, out, ys, xs, np.zeros(c, image.dtype))


@crop.kernel("cpu")
def _crop_cpu(image: np.ndarray, *, out: np.ndarray, top: int, left: int, height: int, width: int) -> None:
    _crop_into(image, out, top, left)


def center_crop_offsets(image_height: int, image_width: int, height: int, width: int) -> tuple[int, int]:
    """``(top, left)`` of the centred ``height × width`` box, exactly as torchvision v2.

    Per axis: a crop no larger than the image starts at ``int(round((H - h) / 2.0))`` (Python's
    round, half to even); a larger crop is the image zero-padded by ``(h - H) // 2`` before (and
    the rest after), i.e. starts at ``-((h - H) // 2)``.
    """

    def axis(n: int, size: int) -> int:
        return -((size - n) // 2) if size > n else int(round((n - size) / 2.0))

    return axis(image_height, height), axis(image_width, width)


def _center_crop_reference(image: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    top, left = center_crop_offsets(image.shape[0], image.shape[1], *size)
    return _crop_reference(image, top=top, left=left, height=size[0], width=size[1])


def _center_crop_infer(image: np.ndarray, *, size: tuple[int, int]) -> list[tuple[tuple[int, ...], np.dtype]]:
    return [((size[0], size[1], image.shape[2]), image.dtype)]


def _center_crop_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    h, w = image.shape[:2]
    size = [int(rng.integers(1, 2 * h + 3)), int(rng.integers(1, 2 * w + 3))]
    return {"size": size if rng.random() < 0.7 else size[0]}


center_crop = Op(
    "image.center_crop",
    doc="""Cut the centred ``size`` box (``N`` or ``[height, width]``), exactly as torchvision v2
``CenterCrop`` / ``F.center_crop``.

Per axis of length ``n`` and crop ``s``: when ``s <= n`` the box starts at
``int(round((n - s) / 2.0))`` (Python's round: half to even); when ``s > n`` the image is
zero-padded by ``(s - n) // 2`` before and ``(s - n + 1) // 2`` after (so the box starts at
``-((s - n) // 2)``). The two axes are independent: a crop larger in one axis only pads that one.
The output is ``height × width × C`` with the input's dtype; exact.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="height width C")],
    params=[Param("size", Size(), doc="N or [height, width] of the box")],
    reference=_center_crop_reference,
    infer=_center_crop_infer,
    example_params=_center_crop_examples,
)


@center_crop.kernel("cpu")
def _center_crop_cpu(image: np.ndarray, *, out: np.ndarray, size: tuple[int, int]) -> None:
    top, left = center_crop_offsets(image.shape[0], image.shape[1], *size)
    _crop_into(image, out, top, left)
