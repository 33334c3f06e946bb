"""``segment.argmax``: per-pixel class decision over segmentation logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Choice, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import LABEL_DTYPES, Meta

__all__ = ["argmax"]


def _hw(logits: np.ndarray, layout: str) -> tuple[int, int, int]:
    """(classes, height, width) of ``logits`` in ``layout``."""
    if layout == "CHW":
        return logits.shape[0], logits.shape[1], logits.shape[2]
    return logits.shape[2], logits.shape[0], logits.shape[1]


def _argmax_infer(logits: np.ndarray, *, layout: str, dtype: str) -> Meta:
    c, h, w = _hw(logits, layout)
    if dtype == "uint8" and c > 256:
        raise InputError(f"segment.argmax: {c} classes do not fit dtype uint8 (at most 256); use dtype int32 or int64")
    return [((h, w), np.dtype(dtype))]


def _argmax_reference(logits: np.ndarray, *, layout: str, dtype: str) -> np.ndarray:
    _argmax_infer(logits, layout=layout, dtype=dtype)
    return np.argmax(logits, axis=0 if layout == "CHW" else 2).astype(dtype)


def _argmax_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    c = int(rng.choice([1, 2, 21, 300])) if rng.random() < 0.3 else int(rng.integers(1, 30))
    h, w = (int(v) for v in rng.integers(1, 40, size=2))
    x = rng.standard_normal((c, h, w)) * float(rng.choice([1.0, 1e4]))
    if rng.random() < 0.3:  # ties
        x = np.round(x / np.abs(x).max() * 2)
    if rng.random() < 0.3:
        x.flat[rng.integers(0, x.size, size=3)] = rng.choice([np.nan, np.inf, -np.inf], size=3)
    return (x.astype(dtype) if rng.random() < 0.5 else np.ascontiguousarray(x.transpose(1, 2, 0)).astype(dtype),)


def _argmax_params(rng: np.random.Generator, logits: np.ndarray) -> dict[str, Any]:
    # any 3-D array is valid in both layouts; uint8 only where the classes fit
    layout = str(rng.choice(["CHW", "HWC"]))
    dtypes = ["int64", "int32", "uint8"] if _hw(logits, layout)[0] <= 256 else ["int64", "int32"]
    return {"layout": layout, "dtype": str(rng.choice(dtypes))}


argmax = Op(
    "segment.argmax",
    doc="""The class of each pixel: the index of the largest logit.

``logits`` are ``C H W`` (``layout="CHW"``, the default: what PyTorch segmentation models give
per sample; a batch is ``N C H W``) or ``H W C`` (``layout="HWC"``, e.g. TensorFlow/ONNX
exports). The output is the ``H W`` label map, of ``dtype`` int64 (default, as ``torch.argmax``),
int32 or uint8 (at most 256 classes, else an error). Ties go to the lowest class index (as
``torch.argmax`` and ``numpy.argmax``); NaN ranks above every number, the first NaN wins (as
both); +inf and -inf are ordinary extremes. Exact. Scores of any kind work (logits,
probabilities): argmax does not care.""",
    inputs=[TensorSpec("logits", (np.float32, np.float64), "C H W", "class scores: C H W, or H W C with layout HWC")],
    outputs=[TensorSpec("labels", LABEL_DTYPES, "H W", "the class index of each pixel")],
    params=[
        Param("layout", Choice(("CHW", "HWC")), "CHW", "where the class axis is"),
        Param("dtype", Choice(("int64", "int32", "uint8")), "int64", "dtype of the label map"),
    ],
    reference=_argmax_reference,
    infer=_argmax_infer,
    example_inputs=_argmax_inputs,
    example_params=_argmax_params,
)


@jit
def _better(v: float, b: float) -> bool:
    return v > b or (v != v and b == b)


@jit
def _argmax_chw(x: np.ndarray, out: np.ndarray) -> None:
    c, h, w = x.shape
    best = x[0].copy()
    out[:, :] = 0
    for k in range(1, c):
        for i in range(h):
            for j in range(w):
                v = x[k, i, j]
                if _better(v, best[i, j]):
                    best[i, j] = v
                    out[i, j] = k


@jit
def _argmax_hwc(x: np.ndarray, out: np.ndarray) -> None:
    h, w, c = x.shape
    for i in range(h):
        for j in range(w):
            b = x[i, j, 0]
            arg = 0
            for k in range(1, c):
                if _better(x[i, j, k], b):
                    b = x[i, j, k]
                    arg = k
            out[i, j] = arg


@argmax.kernel("cpu")
def _argmax_cpu(logits: np.ndarray, *, out: np.ndarray, layout: str, dtype: str) -> None:
    if layout == "CHW":
        _argmax_chw(logits, out)
    else:
        _argmax_hwc(logits, out)
