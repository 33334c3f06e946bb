"""``image.resize_crop_normalize``: the classifier pre-processing (resize the shorter side, centre
crop, normalise, HWC → CHW, cast) in one pass over the pixels the crop keeps."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._op import Op
from .._params import Bool, Choice, Float, Floats, Int, Optional, Param, Size
from .._spec import TensorSpec
from ._common import image_spec, jit, random_image
from ._convert import check_float32_std, default_scale, normalize, per_channel
from ._convert import layout as to_layout
from ._crop import center_crop, center_crop_offsets
from ._resample import horizontal_first, lane_weights, resample_window, taps
from ._resize import output_size, resize

__all__ = ["CropWindow", "crop_window", "normalize_constants", "resize_crop_normalize"]

NAME = "image.resize_crop_normalize"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CropWindow(NamedTuple):
    """Which pixels of the resized image the crop keeps (the only ones resampled)."""

    size: tuple[int, int]  # the resized image's (height, width)
    origin: tuple[int, int]  # (y, x) of the window's first pixel in the resized image
    shape: tuple[int, int]  # the window's (height, width): the crop's pixels inside the resized image
    offset: tuple[int, int]  # (top, left) of the window in the crop (the rest is padding)


def crop_window(h: int, w: int, size: int, crop: tuple[int, int]) -> CropWindow:
    """The window of an ``h × w`` image's shorter-side-``size`` resize that the centred ``crop`` keeps."""
    oh, ow = output_size(h, w, size, "shorter")
    top, left = center_crop_offsets(oh, ow, *crop)
    y0, y1, x0, x1 = max(top, 0), min(top + crop[0], oh), max(left, 0), min(left + crop[1], ow)
    return CropWindow((oh, ow), (y0, x0), (max(y1 - y0, 0), max(x1 - x0, 0)), (y0 - top, x0 - left))


def normalize_constants(c: int, dtype: np.dtype, mean: tuple[float, ...], std: tuple[float, ...], scale: float | None) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Per-channel float32 ``mean`` and ``std`` (this op's errors for a bad count) and the scale."""
    return (per_channel(NAME, "mean", mean, c), per_channel(NAME, "std", std, c),
            np.float32(default_scale(np.dtype(dtype)) if scale is None else scale))


def _fused_reference(image: np.ndarray, *, size: int, crop: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, interpolation: str, antialias: bool, dtype: str, layout: str) -> np.ndarray:
    """The composition of the unfused ops' references: what the fused kernel must equal."""
    per_channel(NAME, "mean", mean, image.shape[2])  # this op's own error for a bad count
    per_channel(NAME, "std", std, image.shape[2])
    resized = resize.reference(image, size=size, fit="shorter", max_size=None, interpolation=interpolation, antialias=antialias)
    box = center_crop.reference(resized, size=crop)
    out = normalize.reference(box, mean=mean, std=std, scale=scale, dtype="float32")
    if layout == "CHW":
        out = to_layout.reference(out, to="CHW")
    return out.astype(dtype)


def _fused_infer(image: np.ndarray, *, crop: tuple[int, int], dtype: str, layout: str, **_: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    c = image.shape[2]
    shape = (c, *crop) if layout == "CHW" else (*crop, c)
    return [(shape, np.dtype(dtype))]


def _fused_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    c = image.shape[2]
    size = int(rng.integers(1, 40))
    crop: Any = int(rng.integers(1, 45)) if rng.random() < 0.5 else [int(rng.integers(1, 45)), int(rng.integers(1, 45))]
    n = c if rng.random() < 0.7 else 1
    out: dict[str, Any] = {
        "size": size,
        "crop": crop,
        "mean": [float(v) for v in rng.random(n)],
        "std": [float(v) for v in rng.uniform(0.1, 1.0, n)],
        "interpolation": str(rng.choice(["bilinear", "bicubic"])),
        "antialias": bool(rng.random() < 0.7),
        "dtype": str(rng.choice(["float32", "float16"])),
        "layout": str(rng.choice(["CHW", "HWC"])),
    }
    if rng.random() < 0.3:
        out["scale"] = float(rng.uniform(0.001, 2.0))
    return out


resize_crop_normalize = Op(
    "image.resize_crop_normalize",
    doc="""The classifier pre-processing in one op: resize the shorter side to ``size``, cut the
centred ``crop``, normalise, lay out, cast; uint8 or float32 HWC in, float32 or float16 out.

Exactly ``image.resize(size, fit="shorter", interpolation, antialias)`` → centre crop →
``(x * scale - mean) / std`` in float32 → ``layout`` (CHW or HWC) → ``dtype`` (float16: round to
nearest even, as NumPy's cast). The resized values are the resize op's bit for bit (uint8 ones
rounded to uint8 before normalising), and only the pixels the crop keeps are computed. The crop
sits where torchvision v2 ``CenterCrop`` puts it (``top = int(round((H - h) / 2))``, Python's
round; where the crop is taller than the image, ``(h - H) // 2`` rows of padding above); pixels
outside the resized image are 0 before normalisation (torchvision pads with 0). ``scale``
defaults to 1/255 for uint8 and 1 for float32; ``mean`` and ``std`` take one value or one per
channel.

On uint8 images this matches torchvision v2 ``Resize(size, antialias=True) → CenterCrop(crop) →
ToDtype(float32, scale=True) → Normalize(mean, std)`` to within one uint8 step divided by
``std`` (0.0175 for ImageNet's): the resize is within 1 of torchvision's uint8 resize, the rest
is the same float32 arithmetic.""",
    inputs=[image_spec(dtypes=(np.uint8, np.float32))],
    outputs=[TensorSpec("tensor", (np.float32, np.float16), "C H2 W2", "C × crop (CHW), or crop × C with layout HWC")],
    params=[
        Param("size", Int(min=1), 256, "the shorter side after resizing"),
        Param("crop", Size(), 224, "[height, width] of the centre crop, or one int: a square"),
        Param("mean", Floats(), IMAGENET_MEAN, "subtracted per channel after scaling"),
        Param("std", Floats(positive=True), IMAGENET_STD, "divides per channel"),
        Param("scale", Optional(Float()), None, "multiplies first; default 1/255 for uint8, 1 for float32"),
        Param("interpolation", Choice(("bilinear", "bicubic")), "bilinear", "the resampling filter"),
        Param("antialias", Bool(), True, "widen the filter when shrinking (torchvision)"),
        Param("dtype", Choice(("float32", "float16")), "float32", "the output dtype"),
        Param("layout", Choice(("CHW", "HWC")), "CHW", "the output layout"),
    ],
    reference=_fused_reference,
    check=lambda p: check_float32_std(p["std"]),
    infer=_fused_infer,
    # float16: one float16 step for |v| < 16 (2**-6). uint8 inputs are bit-exact (tested apart);
    # float32 inputs sum in float32 against a float64 reference, and a 1-ulp float32 difference
    # can round to the neighbouring float16 (about 2e-4 of values)
    tolerance={"float32": (1e-5, 1e-6), "float16": (2**-6, 2**-10)},
    example_params=_fused_examples,
    example_inputs=lambda rng, dtype: (random_image(rng, dtype),),
)


@jit(error_model="numpy")  # type: ignore[call-arg, untyped-decorator]  # no zero-division checks (std > 0): they stop vectorisation
def _sink(window: np.ndarray, scale: float, mean: np.ndarray, std: np.ndarray, out: np.ndarray, top: int, left: int, chw: bool) -> None:
    """Normalise ``window`` into the float32 ``out`` (C H W or H W C) at rows from ``top`` and
    columns from ``left``, and a zero pixel's value elsewhere: ``(v * scale - mean) / std`` in
    float32, the reference's operations in its order (so bit-identical). Inner loops run along
    contiguous output without branches."""
    c = mean.shape[0]
    wh, ww = window.shape[0], window.shape[1]
    ch, cw = (out.shape[1], out.shape[2]) if chw else (out.shape[0], out.shape[1])
    s = np.float32(scale)
    pad = (np.float32(0) * s - mean) / std
    xa, xb = left, left + ww  # the window's columns in the crop
    if chw:
        for y in range(ch):
            wy = y - top
            if wy < 0 or wy >= wh:
                for k in range(c):
                    out[k, y] = pad[k]
                continue
            for k in range(c):
                out[k, y, :xa] = pad[k]
                out[k, y, xb:] = pad[k]
            src = window[wy].reshape(-1)
            if c == 3:  # the common case: a literal stride-3 sweep, which LLVM vectorises
                r0, r1, r2 = out[0, y, xa:xb], out[1, y, xa:xb], out[2, y, xa:xb]
                m0, m1, m2, d0, d1, d2 = mean[0], mean[1], mean[2], std[0], std[1], std[2]
                for x in range(ww):
                    r0[x] = (np.float32(src[3 * x]) * s - m0) / d0
                    r1[x] = (np.float32(src[3 * x + 1]) * s - m1) / d1
                    r2[x] = (np.float32(src[3 * x + 2]) * s - m2) / d2
            else:
                for k in range(c):
                    seg, mk, dk = out[k, y, xa:xb], mean[k], std[k]
                    for x in range(ww):
                        seg[x] = (np.float32(src[x * c + k]) * s - mk) / dk
    else:
        # per-channel constants laid out along a row, so the inner loop is one contiguous sweep
        mrow, drow, prow = np.empty(cw * c, np.float32), np.empty(cw * c, np.float32), np.empty(cw * c, np.float32)
        for j in range(cw * c):
            mrow[j], drow[j], prow[j] = mean[j % c], std[j % c], pad[j % c]
        for y in range(ch):
            row = out[y].reshape(-1)
            wy = y - top
            if wy < 0 or wy >= wh:
                row[:] = prow
                continue
            row[: xa * c] = prow[: xa * c]
            row[xb * c :] = prow[xb * c :]
            src = window[wy].reshape(-1)
            seg, ms, ds = row[xa * c : xb * c], mrow[xa * c : xb * c], drow[xa * c : xb * c]
            for j in range(ww * c):
                seg[j] = (np.float32(src[j]) * s - ms[j]) / ds[j]


@jit
def _half_bits(src: np.ndarray, dst: np.ndarray) -> None:
    """float32 → float16 bits, round to nearest even (NumPy's ``astype(float16)``, without its
    cost): rebias the exponent and round in the integer bits; subnormal halves count units of
    2**-24; overflow gives inf; NaN the canonical quiet NaN. Branch-free, so it vectorises."""
    bits = src.view(np.uint32)
    for i in range(src.shape[0]):
        u = np.int64(bits[i])
        a = u & 0x7FFFFFFF
        normal = (a - (112 << 23) + 0xFFF + ((a >> 13) & 1)) >> 13
        sub = np.int64(np.rint(np.float64(abs(src[i])) * 16777216.0))
        special = 0x7E00 if a > 0x7F800000 else 0x7C00
        h = special if a >= 0x47800000 else (sub if a < 0x38800000 else normal)
        dst[i] = np.uint16(((u >> 16) & 0x8000) | h)


@resize_crop_normalize.kernel("cpu")
def _fused_cpu(image: np.ndarray, *, out: np.ndarray, size: int, crop: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, interpolation: str, antialias: bool, dtype: str, layout: str) -> None:
    src = np.ascontiguousarray(image)
    h, w, c = src.shape
    m, s, sc = normalize_constants(c, src.dtype, mean, std, scale)
    win = crop_window(h, w, size, crop)
    (oh, ow), (y0, x0) = win.size, win.origin
    window = np.empty((*win.shape, c), src.dtype)
    if window.size and (oh, ow) == (h, w):
        window[...] = src[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]]
    elif window.size:
        ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
        hfirst = horizontal_first(h, w, oh, ow, ty, tx)  # as the whole resize: same intermediate rounding
        wl = lane_weights(w, ow, interpolation, antialias, c, src.dtype == np.uint8)
        resample_window(src, ty, tx, wl, y0, x0, hfirst, window)
    chw = layout == "CHW"
    wtop, wleft = win.offset
    if dtype == "float32":
        _sink(window, float(sc), m, s, out, wtop, wleft, chw)
    else:  # float16: the float32 values, rounded to nearest even as NumPy's cast
        tmp = np.empty(out.shape, np.float32)
        _sink(window, float(sc), m, s, tmp, wtop, wleft, chw)
        _half_bits(tmp.reshape(-1), out.reshape(-1).view(np.uint16))
