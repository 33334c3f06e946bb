"""Decoding one level of a YOLO head's raw grid output (YOLOv5/v7 anchors, or anchor-free YOLOX)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Meta
from .._errors import InputError
from .._op import Op
from .._params import Choice, Float, Floats, Optional, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import BOX_DTYPES, ShapeDtypes

__all__ = ["decode_grid"]

_NAME = "detect.decode_grid"
_TOLERANCE = {"float32": (1e-6, 1e-6), "float64": (1e-12, 1e-14)}  # exp / sigmoid: a few last-bit differences


def _layout(features: np.ndarray | Meta, anchors: tuple[float, ...] | None) -> tuple[int, int]:
    """``(anchors per cell, values per box)`` of a level, or an ``InputError``."""
    a = 1 if anchors is None else len(anchors) // 2
    d = features.shape[0]
    if d % a or d // a < 6:
        raise InputError(
            f"{_NAME}: features must have A × (5 + classes) channels (A = {a} anchor(s), at least one class), "
            f"got shape {list(features.shape)}"
        )
    return a, d // a


def _infer(features: np.ndarray, *, anchors: tuple[float, ...] | None, **_: Any) -> ShapeDtypes:
    a, no = _layout(features, anchors)
    return [((a * features.shape[1] * features.shape[2], no), features.dtype)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


def _reference(features: np.ndarray, *, stride: float, style: str, anchors: tuple[float, ...] | None) -> np.ndarray:
    a, no = _layout(features, anchors)
    _, h, w = features.shape
    t = features.dtype.type
    x = features.reshape(a, no, h, w).transpose(0, 2, 3, 1)  # A H W no
    gy, gx = np.meshgrid(np.arange(h, dtype=features.dtype), np.arange(w, dtype=features.dtype), indexing="ij")
    out = np.empty((a, h, w, no), features.dtype)
    s = t(stride)
    if style == "yolov5":
        assert anchors is not None
        sig = _sigmoid(x)
        aw = np.array(anchors[0::2], features.dtype)[:, None, None]
        ah = np.array(anchors[1::2], features.dtype)[:, None, None]
        out[..., 0] = (sig[..., 0] * t(2) + (gx - t(0.5))) * s
        out[..., 1] = (sig[..., 1] * t(2) + (gy - t(0.5))) * s
        u, v = sig[..., 2] * t(2), sig[..., 3] * t(2)
        out[..., 2], out[..., 3] = u * u * aw, v * v * ah
        out[..., 4:] = sig[..., 4:]
    else:
        out[..., 0] = (x[..., 0] + gx) * s
        out[..., 1] = (x[..., 1] + gy) * s
        with np.errstate(over="ignore"):
            out[..., 2], out[..., 3] = np.exp(x[..., 2]) * s, np.exp(x[..., 3]) * s
        out[..., 4:] = _sigmoid(x[..., 4:])
    return out.reshape(-1, no)


@jit
def _loop(f: np.ndarray, out: np.ndarray, no: int, s: Any, v5: bool, aw: np.ndarray, ah: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray, half: Any, one: Any, two: Any) -> None:
    a_n = aw.shape[0]
    h, w = f.shape[1], f.shape[2]
    for a in range(a_n):
        base = a * no
        for y in range(h):
            gy = grid_y[y]
            for x in range(w):
                gx = grid_x[x]
                row = (a * h + y) * w + x
                tx, ty, tw, th = f[base, y, x], f[base + 1, y, x], f[base + 2, y, x], f[base + 3, y, x]
                if v5:
                    sx, sy = one / (one + np.exp(-tx)), one / (one + np.exp(-ty))
                    u, v = one / (one + np.exp(-tw)) * two, one / (one + np.exp(-th)) * two
                    out[row, 0] = (sx * two + (gx - half)) * s
                    out[row, 1] = (sy * two + (gy - half)) * s
                    out[row, 2] = u * u * aw[a]
                    out[row, 3] = v * v * ah[a]
                else:
                    out[row, 0] = (tx + gx) * s
                    out[row, 1] = (ty + gy) * s
                    out[row, 2] = np.exp(tw) * s
                    out[row, 3] = np.exp(th) * s
                for k in range(4, no):
                    out[row, k] = one / (one + np.exp(-f[base + k, y, x]))


def _check(params: dict[str, Any]) -> None:
    anchors = params["anchors"]
    if params["style"] == "yolov5" and (anchors is None or len(anchors) % 2):
        raise ValueError("style 'yolov5' needs anchors: [w0, h0, w1, h1, ...] in pixels (pairs)")
    if params["style"] == "yolox" and anchors is not None:
        raise ValueError("style 'yolox' is anchor-free: leave anchors null")
    if params["stride"] <= 0:
        raise ValueError(f"stride must be positive, got {params['stride']}")


def _examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    a, c = int(rng.choice([1, 3])), int(rng.choice([1, 2, 80]))
    h, w = (int(v) for v in rng.integers(1, 12, 2))
    f = (rng.standard_normal((a * (5 + c), h, w)) * rng.choice([1.0, 4.0])).astype(dtype)
    f[rng.random(f.shape) < 0.01] = np.nan
    return (f,)


def _example_params(rng: np.random.Generator, features: np.ndarray) -> dict[str, Any]:
    stride = float(rng.choice([8, 16, 32])) if rng.random() < 0.8 else float(rng.uniform(0.5, 64))
    ok_v5 = [a for a in (1, 3) if features.shape[0] % a == 0 and features.shape[0] // a >= 6]
    if rng.random() < 0.5 and ok_v5:
        a = ok_v5[-1] if rng.random() < 0.8 else ok_v5[0]
        return {"stride": stride, "style": "yolov5", "anchors": [float(v) for v in rng.uniform(4, 400, 2 * a)]}
    return {"stride": stride, "style": "yolox", "anchors": None}


decode_grid = Op(
    _NAME,
    doc="""Decode one level of a YOLO head's raw output grid into flat rows ``(cx, cy, w, h, obj, cls…)`` in pixels.

Accepted layout: ``features`` [A × (5 + C), H, W] per image: the level's convolution output as
PyTorch gives it (NCHW, one image), channel ``a × (5 + C) + k`` holding value ``k`` of anchor ``a``
(YOLOv5's ``view(bs, na, no, ny, nx)``). Output ``prediction`` [A × H × W, 5 + C], rows in (anchor,
y, x) order, as the YOLOv5 Detect layer's inference output for that level; concatenate the levels
and feed them to ``detect.decode_yolo``. With ``σ(t) = 1 / (1 + exp(-t))``, cell ``(gx, gy)``, stride
``s``:

- ``style: yolov5`` (YOLOv5/YOLOv7, anchor-based; ``anchors`` = [w0, h0, w1, h1, …] in pixels, A
  = pairs): ``cx = (σ(tx) × 2 + (gx - 0.5)) × s``, ``w = (σ(tw) × 2)² × anchor_w``.
- ``style: yolox`` (anchor-free, A = 1, ``anchors`` null): ``cx = (tx + gx) × s``,
  ``w = exp(tw) × s``.

Objectness and class columns are ``σ`` of the logits in both. Computed in the features' dtype;
NaN propagates; an overflowing ``exp`` gives inf (the NMS ops drop such boxes). Channels that are
not A × (5 + C) with C ≥ 1 are an ``InputError``.""",
    inputs=[TensorSpec("features", BOX_DTYPES, "D H W", "one level's raw head output, A × (5 + classes) channels")],
    outputs=[TensorSpec("prediction", None, "R K", "decoded rows (cx, cy, w, h, obj, classes…) in pixels")],
    params=[
        Param("stride", Float(), doc="input pixels per grid cell (8, 16, 32 …)"),
        Param("style", Choice(("yolov5", "yolox")), "yolov5", "the decoding formulas (see above)"),
        Param("anchors", Optional(Floats(min_len=2, positive=True)), None, "yolov5: [w0, h0, w1, h1, …] in pixels"),
    ],
    reference=_reference,
    infer=_infer,
    check=_check,
    tolerance=_TOLERANCE,
    example_inputs=_examples,
    example_params=_example_params,
)


@decode_grid.kernel("cpu")
def _cpu(features: np.ndarray, *, out: np.ndarray, stride: float, style: str, anchors: tuple[float, ...] | None) -> None:
    _, no = _layout(features, anchors)
    dt = features.dtype
    t = dt.type
    pairs = np.array(anchors if anchors is not None else (1.0, 1.0), dt)
    grid_x, grid_y = np.arange(features.shape[2], dtype=dt), np.arange(features.shape[1], dtype=dt)
    _loop(features, out, no, t(stride), style == "yolov5", pairs[0::2].copy(), pairs[1::2].copy(), grid_x, grid_y, t(0.5), t(1), t(2))
