"""Train-only augmentations: random resized crop, random flip and colour jitter.

Each is a random op: ``draw`` makes the per-sample choices with the caller's NumPy Generator,
the reference and the CPU kernel apply them, and ``serve`` says what the op does when serving
(the classic eval transform for the crop, identity for flip and jitter).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Bool, Choice, Float, FloatRange, Int, Optional, Param, Size
from ._common import image_spec, jit, random_image, same_shape
from ._crop import center_crop, crop
from ._geometry import flip
from ._resize import resize

__all__ = ["color_jitter", "random_flip", "random_resized_crop", "rrc_box", "serve_shorter_side"]

ShapeDtypes = list[tuple[tuple[int, ...], np.dtype]]
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


# -- random_resized_crop -------------------------------------------------------------------------


def rrc_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` drawn as torchvision's ``RandomResizedCrop.get_params``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # fallback: the largest centred box whose aspect ratio is clamped into ``ratio``
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    # a very thin image with a narrow ratio range rounds a side to 0 (torchvision's empty box): keep 1
    h, w = max(h, 1), max(w, 1)
    return (height - h) // 2, (width - w) // 2, h, w


def serve_shorter_side(size: tuple[int, int], serve_size: int | None) -> int:
    """The shorter side serve mode resizes to: ``serve_size``, else ``round(min(size) * 256 / 224)``."""
    return serve_size if serve_size is not None else int(round(min(size) * 256 / 224))


def _rrc_draw(rng: np.random.Generator, image: np.ndarray, *, scale: tuple[float, float], ratio: tuple[float, float], **_: Any) -> dict[str, Any]:
    top, left, h, w = rrc_box(rng, image.shape[0], image.shape[1], scale, ratio)
    return {"top": top, "left": left, "height": h, "width": w}


def _rrc_reference(image: np.ndarray, *, size: tuple[int, int], interpolation: str, antialias: bool, top: int, left: int, height: int, width: int, **_: Any) -> np.ndarray:
    box = crop.reference(image, top=top, left=left, height=height, width=width)
    return resize.reference(box, size=size, fit="exact", max_size=None, interpolation=interpolation, antialias=antialias)


def _rrc_infer(image: np.ndarray, *, size: tuple[int, int], **_: Any) -> ShapeDtypes:
    return [((size[0], size[1], image.shape[2]), image.dtype)]


def _rrc_serve(image: np.ndarray, *, size: tuple[int, int], interpolation: str, antialias: bool, serve_size: int | None, **_: Any) -> np.ndarray:
    side = serve_shorter_side(size, serve_size)
    resized = resize(image, size=side, fit="shorter", interpolation=interpolation, antialias=antialias)
    return center_crop(resized, size=size)


def _rrc_check(params: dict[str, Any]) -> None:
    if params["scale"][1] <= 0:
        raise ValueError(f"parameter 'scale' must have a positive upper bound, got {list(params['scale'])}")
    if params["ratio"][0] <= 0:
        raise ValueError(f"parameter 'ratio' must have a positive lower bound, got {list(params['ratio'])}")


def _rrc_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    lo = float(rng.uniform(0.05, 1.0))
    r = float(rng.uniform(0.3, 1.0))
    return {
        "size": [int(v) for v in rng.integers(1, 24, size=2)] if rng.random() < 0.7 else int(rng.integers(1, 24)),
        "scale": [lo, float(rng.uniform(lo, 1.0))],
        "ratio": [r, float(rng.uniform(r, 3.0))],
        "interpolation": str(rng.choice(_INTERPOLATIONS)),
        "antialias": bool(rng.random() < 0.5),
        "serve_size": None if rng.random() < 0.5 else int(rng.integers(1, 40)),
    }


random_resized_crop = Op(
    "image.random_resized_crop",
    doc="""Train: crop a random box, resize it to ``size``; serve: resize the shorter side, then centre crop.

Train mode draws a box ``(top, left, height, width)`` exactly as torchvision's
``RandomResizedCrop.get_params`` but with the NumPy Generator (and float64 where torch uses
float32, so the same draws are not bit-identical to torch's): up to 10 attempts, each drawing
an area fraction ``uniform(scale)`` and an aspect ratio ``exp(uniform(log(ratio)))``, making
``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))`` (Python's round) and
accepting the first box that fits, placed at ``top = integers(0, H - h + 1)`` then
``left = integers(0, W - w + 1)``. If none fits: the centred box of the whole image with its
aspect ratio clamped into ``ratio`` (``h = round(W / ratio[0])`` or ``w = round(H * ratio[1])``,
at least 1 where torchvision's would round to an empty box).
The box is then resized to ``size`` as ``image.resize`` (``fit="exact"``) does, i.e. torchvision
v2 ``F.resized_crop``.

Serve mode is the classic evaluation transform: ``image.resize`` with ``fit="shorter"`` to
``serve_size`` (default ``round(min(size) * 256 / 224)``, Python's round: 224 → 256), then
``image.center_crop`` to ``size`` (zero-filled where the resized image is smaller than ``size``).""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="height width C")],
    params=[
        Param("size", Size(), doc="N or [height, width] of the output"),
        Param("scale", FloatRange(min=0.0, max=1.0), (0.08, 1.0), "range of the box's area as a fraction of the image's"),
        Param("ratio", FloatRange(min=0.0), (3 / 4, 4 / 3), "range of the box's aspect ratio, width / height (log-uniform)"),
        Param("interpolation", Choice(_INTERPOLATIONS), "bilinear", "as image.resize"),
        Param("antialias", Bool(), True, "as image.resize"),
        Param("serve_size", Optional(Int(min=1)), None, "serve mode: the shorter side to resize to before the centre crop"),
    ],
    reference=_rrc_reference,
    infer=_rrc_infer,
    check=_rrc_check,
    draw=_rrc_draw,
    serve=_rrc_serve,
    tolerance=resize.tolerance,
    example_params=_rrc_examples,
)


@random_resized_crop.kernel("cpu")
def _rrc_cpu(image: np.ndarray, *, out: np.ndarray, size: tuple[int, int], interpolation: str, antialias: bool, top: int, left: int, height: int, width: int, **_: Any) -> None:
    h, w = image.shape[:2]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        box = image[top : top + height, left : left + width]
    else:  # not a drawn box; crop's zero fill
        box = np.empty((height, width, image.shape[2]), image.dtype)
        crop.kernel_for("cpu").fn(image, out=box, top=top, left=left, height=height, width=width)  # type: ignore[union-attr]
    resize.kernel_for("cpu").fn(box, out=out, size=size, fit="exact", max_size=None, interpolation=interpolation, antialias=antialias)  # type: ignore[union-attr]


# -- random_flip ---------------------------------------------------------------------------------


def _flip_reference(image: np.ndarray, *, axis: str, flipped: bool, **_: Any) -> np.ndarray:
    return flip.reference(image, axis=axis) if flipped else image.copy()


random_flip = Op(
    "image.random_flip",
    doc="""Train: mirror the image with probability ``p`` (as ``image.flip``); serve: identity.

The draw is ``flipped = rng.random() < p`` (torchvision's ``RandomHorizontalFlip`` /
``RandomVerticalFlip`` rule), so ``p=0`` never flips and ``p=1`` always does.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None)],
    params=[
        Param("p", Float(min=0.0, max=1.0), 0.5, "probability of flipping"),
        Param("axis", Choice(("horizontal", "vertical")), "horizontal", "horizontal: left-right; vertical: top-bottom"),
    ],
    reference=_flip_reference,
    infer=same_shape,
    draw=lambda rng, image, *, p, **_: {"flipped": bool(rng.random() < p)},
    serve=lambda image, **_: image.copy(),
    example_params=lambda rng, image: {"p": float(rng.choice([0.0, 0.5, 1.0])), "axis": str(rng.choice(["horizontal", "vertical"]))},
)


@random_flip.kernel("cpu")
def _random_flip_cpu(image: np.ndarray, *, out: np.ndarray, axis: str, flipped: bool, **_: Any) -> None:
    if flipped:
        flip.kernel_for("cpu").fn(image, out=out, axis=axis)  # type: ignore[union-attr]
    else:
        np.copyto(out, image)


# -- color_jitter --------------------------------------------------------------------------------
# Every step works on a float32 copy of the image and, for integer images, truncates its result
# as torchvision's ``.to(uint8)`` does, so the buffer holds exactly the integer image between
# steps. The arithmetic is torchvision's, in float32, operation by operation. torch computes
# ``x.add_(y, alpha=a)`` (its gray sums and blends) as a fused multiply-add, rounded once; ``a * y``
# of two float32s is exact in float64, so ``x + a * y`` summed in float64 then rounded to float32
# gives torch's bits.

_STEPS = ("brightness", "contrast", "saturation", "hue")
_W = (np.float32(0.2989), np.float32(0.587), np.float32(0.114))  # torchvision's rgb_to_grayscale
# torchvision's _hsv_to_rgb: which of (v, p, q, t) makes R, G and B in each hue sector
_SELECT = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])


def _jitter_draw(rng: np.random.Generator, image: np.ndarray, *, brightness: float, contrast: float, saturation: float, hue: float) -> dict[str, Any]:
    drawn: dict[str, Any] = {"order": tuple(int(i) for i in rng.permutation(4))}
    for name, v in zip(_STEPS, (brightness, contrast, saturation, hue)):
        lo, hi = (-v, v) if name == "hue" else (max(0.0, 1.0 - v), 1.0 + v)
        drawn[f"{name}_factor"] = None if v == 0 else float(rng.uniform(lo, hi))
    return drawn


def _channels(image: np.ndarray) -> None:
    if image.shape[2] not in (1, 3):
        raise InputError(
            f"image.color_jitter: input 'image' must be RGB or gray (shape [H W 3] or [H W 1]), got shape {list(image.shape)}"
        )


def _jitter_infer(image: np.ndarray, **_: Any) -> ShapeDtypes:
    _channels(image)
    return [(image.shape, image.dtype)]


def _jitter_serve(image: np.ndarray, **_: Any) -> np.ndarray:
    _channels(image)
    return image.copy()


def _levels(dtype: np.dtype) -> tuple[np.float32, bool]:
    """The value bound and whether results truncate to integers (integer images)."""
    return (np.float32(np.iinfo(dtype).max), True) if dtype.kind == "u" else (np.float32(1.0), False)


def _hue_scales(top: np.float32) -> tuple[np.float32, np.float32]:
    """torchvision's ``to_dtype`` scales, computed in double then cast: to [0, 1] and back."""
    return np.float32(1.0 / float(top)), np.float32(float(top) + 1.0 - 1e-3)


def _ref_fma(y: Any, alpha: np.float32, x: Any) -> np.ndarray:
    """float32 ``x + alpha * y`` rounded once, as torch's ``x.add_(y, alpha=alpha)``."""
    return (np.asarray(y, np.float64) * np.float64(alpha) + np.asarray(x, np.float64)).astype(np.float32)


def _ref_gray(a: np.ndarray, quant: bool) -> np.ndarray:
    if a.shape[2] == 1:
        return a[..., 0]
    g = _ref_fma(a[..., 2], _W[2], _ref_fma(a[..., 1], _W[1], a[..., 0] * _W[0]))
    return np.floor(g) if quant else g


def _ref_blend(a: np.ndarray, r: np.float32, other: Any, alpha: np.float32, top: np.float32, quant: bool) -> np.ndarray:
    v = np.clip(_ref_fma(other, alpha, a * r), np.float32(0), top)
    return np.trunc(v) if quant else v


def _ref_hue(a: np.ndarray, f: np.float32, top: np.float32, quant: bool) -> np.ndarray:
    one, zero = np.float32(1), np.float32(0)
    inv, back = _hue_scales(top)
    x = a * inv if quant else a
    maxc, minc = x.max(axis=2), x.min(axis=2)
    eqc = maxc == minc
    s = (maxc - minc) / np.where(eqc, one, maxc)
    rc, gc, bc = ((maxc[..., None] - x) / np.where(eqc, one, maxc - minc)[..., None]).transpose(2, 0, 1)
    h = np.where(maxc == x[..., 0], bc - gc, np.where(maxc == x[..., 1], (rc + np.float32(2)) - bc, (gc + np.float32(4)) - rc))
    h = np.fmod(np.fmod(h * np.float32(1.0 / 6.0) + one, one) + f, one)
    h6 = np.where(h < 0, h + one, h) * np.float32(6)
    i6 = np.floor(h6)
    sxf, oms = s * (h6 - i6), one - s
    vpqt = np.stack([maxc, oms * maxc, (one - sxf) * maxc, (sxf + oms) * maxc]).clip(zero, one)
    rgb = np.take_along_axis(vpqt, _SELECT[:, i6.astype(np.int64) % 6], axis=0).transpose(1, 2, 0)
    # uint16's back-scale rounds to 65536.0 in float32: clamp to the dtype's max
    return np.minimum(np.trunc(rgb * back), top) if quant else rgb


def _jitter_reference(image: np.ndarray, *, order: tuple[int, ...], brightness_factor: float | None, contrast_factor: float | None, saturation_factor: float | None, hue_factor: float | None, **_: Any) -> np.ndarray:
    _channels(image)
    top, quant = _levels(image.dtype)
    a = image.astype(np.float32)
    if not quant:
        np.clip(a, 0, top, out=a)  # float images live in [0, 1]; see the doc
    factors = (brightness_factor, contrast_factor, saturation_factor, hue_factor)
    for step in order:
        f = factors[step]
        if f is None or (step >= 2 and a.shape[2] == 1):  # saturation and hue leave gray as is
            continue
        r, alpha = np.float32(f), np.float32(1.0 - f)
        if step == 0:
            a = _ref_blend(a, r, np.float32(0), np.float32(0), top, quant)
        elif step == 1:
            mean = np.float32(np.sum(_ref_gray(a, quant), dtype=np.float64) / (a.shape[0] * a.shape[1]))
            a = _ref_blend(a, r, mean, alpha, top, quant)
        elif step == 2:
            a = _ref_blend(a, r, _ref_gray(a, quant)[..., None], alpha, top, quant)
        else:
            a = _ref_hue(a, r, top, quant)
    return a.astype(image.dtype)


def _jitter_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    def pick(hi: float) -> float:
        return 0.0 if rng.random() < 0.25 else float(rng.uniform(0, hi))

    return {"brightness": pick(1.0), "contrast": pick(1.0), "saturation": pick(1.5), "hue": pick(0.5)}


color_jitter = Op(
    "image.color_jitter",
    doc="""Train: random brightness, contrast, saturation and hue, in a random order; serve: identity.

As torchvision v2 ``ColorJitter``: the draw is a permutation of the four steps
(``rng.permutation(4)``), then, for each enabled step in the order brightness, contrast,
saturation, hue, a factor ``uniform(max(0, 1 - b), 1 + b)`` (``uniform(-h, h)`` for hue); a
parameter of 0 disables its step (nothing drawn). Each step is torchvision v2's functional
``adjust_brightness`` / ``adjust_contrast`` / ``adjust_saturation`` / ``adjust_hue``, computed the
same way in float32 (its fused multiply-adds included): gray = 0.2989 R + 0.587 G + 0.114 B,
floored for integer images; contrast blends with the mean gray; hue goes through HSV. Integer
images truncate to integers after every step, as torchvision's ``.to(uint8)``. Results match
torchvision within 1 LSB (in practice bit for bit). Values clamp to [0, dtype max] (uint8, uint16)
or [0, 1] (float32: a float image is taken to be in [0, 1], and values outside it are clipped
into it before the first step; torchvision leaves them to each step). Images are RGB (3 channels) or gray
(1 channel); on gray images saturation and hue do nothing, as torchvision. Other channel counts
are an ``InputError``, in serve mode too.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None)],
    params=[
        Param("brightness", Float(min=0.0), 0.0, "factor drawn from [max(0, 1 - b), 1 + b]; 0 disables"),
        Param("contrast", Float(min=0.0), 0.0, "factor drawn from [max(0, 1 - c), 1 + c]; 0 disables"),
        Param("saturation", Float(min=0.0), 0.0, "factor drawn from [max(0, 1 - s), 1 + s]; 0 disables"),
        Param("hue", Float(min=0.0, max=0.5), 0.0, "hue shift drawn from [-h, h] (in turns); 0 disables"),
    ],
    reference=_jitter_reference,
    infer=_jitter_infer,
    draw=_jitter_draw,
    serve=_jitter_serve,
    example_params=_jitter_examples,
    example_inputs=lambda rng, dtype: (random_image(rng, dtype, channels=(1, 3)),),
)


@jit
def _fma(y: np.float32, alpha: np.float32, x: np.float32) -> np.float32:
    return np.float32(np.float64(y) * np.float64(alpha) + np.float64(x))


@jit
def _gray(a: np.ndarray, y: int, x: int, quant: bool) -> np.float32:
    if a.shape[2] == 1:
        return a[y, x, 0]
    g = _fma(a[y, x, 2], np.float32(0.114), _fma(a[y, x, 1], np.float32(0.587), a[y, x, 0] * np.float32(0.2989)))
    return np.float32(np.floor(g)) if quant else g


@jit
def _gray_sum(a: np.ndarray, quant: bool) -> float:
    total: float = 0.0
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            total += float(_gray(a, y, x, quant))
    return total


@jit
def _blend_kernel(a: np.ndarray, r: np.float32, mean: np.float32, alpha: np.float32, use_mean: bool, top: np.float32, quant: bool) -> None:
    """``a * r + other * alpha``: ``other`` is ``mean`` (contrast, brightness) or the pixel's gray."""
    zero = np.float32(0)
    h, w, c = a.shape
    for y in range(h):
        for x in range(w):
            other = mean if use_mean else _gray(a, y, x, quant)
            for k in range(c):
                v = min(max(_fma(other, alpha, a[y, x, k] * r), zero), top)
                a[y, x, k] = np.float32(np.trunc(v)) if quant else v


@jit
def _hue_kernel(a: np.ndarray, f: np.float32, inv: np.float32, back: np.float32, top: np.float32, quant: bool) -> None:
    # torchvision's _rgb_to_hsv / _hsv_to_rgb per pixel, every value float32
    one, zero = np.float32(1), np.float32(0)
    h, w, _ = a.shape
    for y in range(h):
        for x in range(w):
            r, g, b = a[y, x, 0], a[y, x, 1], a[y, x, 2]
            if quant:
                r, g, b = r * inv, g * inv, b * inv
            maxc, minc = max(r, g, b), min(r, g, b)
            eqc = maxc == minc
            s = (maxc - minc) / (one if eqc else maxc)
            div = one if eqc else maxc - minc
            rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
            if maxc == r:
                hh = bc - gc
            elif maxc == g:
                hh = (rc + np.float32(2)) - bc
            else:
                hh = (gc + np.float32(4)) - rc
            hh = np.float32(np.fmod(np.float32(np.fmod(hh * np.float32(1.0 / 6.0) + one, one)) + f, one))
            h6 = (hh + one if hh < zero else hh) * np.float32(6)
            i6 = np.float32(np.floor(h6))
            sxf, oms = s * (h6 - i6), one - s
            vpqt = (maxc, min(max(oms * maxc, zero), one), min(max((one - sxf) * maxc, zero), one), min(max((sxf + oms) * maxc, zero), one))
            sector = int(i6) % 6
            for k in range(3):
                c = vpqt[_SELECT[k, sector]]
                a[y, x, k] = min(np.float32(np.trunc(c * back)), top) if quant else c


@color_jitter.kernel("cpu")
def _jitter_cpu(image: np.ndarray, *, out: np.ndarray, order: tuple[int, ...], brightness_factor: float | None, contrast_factor: float | None, saturation_factor: float | None, hue_factor: float | None, **_: Any) -> None:
    top, quant = _levels(image.dtype)
    a = out if out.dtype == np.float32 else np.empty(image.shape, np.float32)
    np.copyto(a, image)
    if not quant:
        np.clip(a, 0, top, out=a)  # float images live in [0, 1]; see the doc
    factors = (brightness_factor, contrast_factor, saturation_factor, hue_factor)
    for step in order:
        f = factors[step]
        if f is None or (step >= 2 and a.shape[2] == 1):
            continue
        r, alpha, zero = np.float32(f), np.float32(1.0 - f), np.float32(0)
        if step == 0:  # a * f: a blend with nothing
            _blend_kernel(a, r, zero, zero, True, top, quant)
        elif step == 1:
            mean = np.float32(_gray_sum(a, quant) / (a.shape[0] * a.shape[1]))
            _blend_kernel(a, r, mean, alpha, True, top, quant)
        elif step == 2:
            _blend_kernel(a, r, zero, alpha, False, top, quant)
        else:
            _hue_kernel(a, r, *_hue_scales(top), top, quant)
    if a is not out:
        np.copyto(out, a, casting="unsafe")
