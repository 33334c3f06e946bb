"""Numeric transforms: standardize, min-max scale, log1p, clip.

All four are element-wise over a column of any shape. Floats keep their dtype; ``int32`` and
``int64`` columns give ``float32``. Each value is computed in float64 and rounded once to the
output dtype, so the result does not depend on the batch, the kernel or the machine. NaN stays
NaN (use ``fill_missing`` first); ±inf go through the formula.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._params import Bool, Float, Optional, Param
from ._column import NUMBERS, ColumnOp, column_spec
from ._source import check_source, feature_stats, source_params
from ._stats import NumericStats
from ._xxh64 import jit

__all__ = ["clip", "log1p", "min_max_scale", "standardize"]

Meta = list[tuple[tuple[int, ...], np.dtype]]


def out_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)


def _infer(x: np.ndarray, **_: Any) -> Meta:
    return [(x.shape, out_dtype(x))]


def _examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return (np.asarray(rng.integers(-1000, 1000), dt),)
    r = rng.random()
    v = [np.nan, np.inf, -np.inf, 0.0, -1.0][int(rng.integers(5))] if r < 0.2 else rng.standard_normal() * 10.0 ** int(rng.integers(-3, 4))
    return (np.asarray(v, dt),)


def _flat(x: np.ndarray) -> np.ndarray:
    """A 1-D view (or copy) in a dtype the kernels take: floats as they are, integers as float64."""
    return (x if x.dtype.kind == "f" else x.astype(np.float64)).reshape(-1)


@jit
def _affine_kernel(x: np.ndarray, out: np.ndarray, sub: float, div: float, lo: float, hi: float) -> None:
    for i in range(x.shape[0]):
        v = (float(x[i]) - sub) / div
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        out[i] = v


def _affine_reference(x: np.ndarray, sub: float, div: float, lo: float, hi: float) -> np.ndarray:
    y = (np.asarray(x).astype(np.float64) - sub) / div
    return np.clip(y, lo, hi).astype(out_dtype(np.asarray(x)))


# -- standardize --------------------------------------------------------------------------------


def _mean_std(params: dict[str, Any], op_name: str) -> tuple[float, float]:
    if params["stats"] is None:
        mean, std = params["mean"], params["std"]
    else:
        f = feature_stats(params, NumericStats, op_name)
        mean, std = f.mean, f.std
    return mean, std if std > 0 else 1.0


def _standardize_reference(x: np.ndarray, **params: Any) -> np.ndarray:
    mean, std = _mean_std(params, "tabular.standardize")
    return _affine_reference(x, mean, std, -math.inf, math.inf)


def _standardize_check(params: dict[str, Any]) -> None:
    check_source(params, ["mean", "std"], NumericStats)


def _numeric_examples(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
    return {"mean": float(rng.standard_normal() * 50), "std": float([0.0, 1e-3, 1.0, 37.5][int(rng.integers(4))])}


standardize = ColumnOp(
    "tabular.standardize",
    doc="""``(x - mean) / std``: the z-score of each value.

``mean`` and ``std`` are given, or read from the stats file (``stats``, ``feature``: the
feature's population mean and std as ``fit`` computed them). A ``std`` of 0 (a constant feature)
is taken as 1, so the output is ``x - mean`` — as scikit-learn's ``StandardScaler``. Computed in
float64, rounded once to the output dtype (the input's float dtype; float32 for integers).""",
    inputs=[column_spec("x", NUMBERS, "", "a numeric column: [N], or any shape")],
    outputs=[column_spec("y", (np.float32, np.float64), "", "same shape as x")],
    params=[
        Param("mean", Optional(Float()), None, doc="the mean to subtract"),
        Param("std", Optional(Float(min=0.0)), None, doc="the standard deviation to divide by (0 → 1)"),
        *source_params("mean and std"),
    ],
    reference=_standardize_reference,
    infer=_infer,
    check=_standardize_check,
    example_params=_numeric_examples,
    example_inputs=_examples,
)


@standardize.kernel("cpu")
def _standardize_cpu(x: np.ndarray, *, out: np.ndarray, **params: Any) -> None:
    mean, std = _mean_std(params, "tabular.standardize")
    _affine_kernel(_flat(np.asarray(x)), out.reshape(-1), mean, std, -math.inf, math.inf)


# -- min-max scale ------------------------------------------------------------------------------


def _min_range(params: dict[str, Any], op_name: str) -> tuple[float, float]:
    if params["stats"] is None:
        lo, hi = params["min"], params["max"]
    else:
        f = feature_stats(params, NumericStats, op_name)
        lo, hi = f.min, f.max
    return lo, (hi - lo) if hi > lo else 1.0


def _min_max_bounds(params: dict[str, Any]) -> tuple[float, float]:
    return (0.0, 1.0) if params["clip"] else (-math.inf, math.inf)


def _min_max_reference(x: np.ndarray, **params: Any) -> np.ndarray:
    lo, rng = _min_range(params, "tabular.min_max_scale")
    return _affine_reference(x, lo, rng, *_min_max_bounds(params))


def _min_max_check(params: dict[str, Any]) -> None:
    check_source(params, ["min", "max"], NumericStats)
    if params["stats"] is None and params["min"] > params["max"]:
        raise ValueError(f"min ({params['min']}) must not exceed max ({params['max']})")


def _min_max_examples(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
    lo = float(rng.standard_normal() * 10)
    return {"min": lo, "max": lo + float([0.0, 0.5, 20.0][int(rng.integers(3))]), "clip": bool(rng.random() < 0.5)}


min_max_scale = ColumnOp(
    "tabular.min_max_scale",
    doc="""``(x - min) / (max - min)``: the training range mapped to [0, 1].

``min`` and ``max`` are given, or read from the stats file (the feature's smallest and largest
finite values). When ``max == min`` the divisor is 1 (as scikit-learn's ``MinMaxScaler``), so
the output is ``x - min``. Values outside the training range map outside [0, 1] unless
``clip`` is true, which clips the result to [0, 1] (NaN stays NaN). Computed in float64,
rounded once to the output dtype (the input's float dtype; float32 for integers).""",
    inputs=[column_spec("x", NUMBERS, "", "a numeric column: [N], or any shape")],
    outputs=[column_spec("y", (np.float32, np.float64), "", "same shape as x")],
    params=[
        Param("min", Optional(Float()), None, doc="the value that maps to 0"),
        Param("max", Optional(Float()), None, doc="the value that maps to 1"),
        *source_params("min and max"),
        Param("clip", Bool(), False, doc="clip the result to [0, 1]"),
    ],
    reference=_min_max_reference,
    infer=_infer,
    check=_min_max_check,
    example_params=_min_max_examples,
    example_inputs=_examples,
)


@min_max_scale.kernel("cpu")
def _min_max_cpu(x: np.ndarray, *, out: np.ndarray, **params: Any) -> None:
    lo, rng = _min_range(params, "tabular.min_max_scale")
    _affine_kernel(_flat(np.asarray(x)), out.reshape(-1), lo, rng, *_min_max_bounds(params))


# -- log1p --------------------------------------------------------------------------------------


def _log1p_reference(x: np.ndarray, *, signed: bool) -> np.ndarray:
    a = np.asarray(x)
    v = a.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.copysign(np.log1p(np.abs(v)), v) if signed else np.log1p(v)
    return y.astype(out_dtype(a))


@jit
def _log1p_kernel(x: np.ndarray, out: np.ndarray, signed: bool) -> None:
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if signed:
            out[i] = math.copysign(math.log1p(abs(v)), v)
        else:
            out[i] = math.log1p(v)


log1p = ColumnOp(
    "tabular.log1p",
    doc="""``log(1 + x)``, for heavy-tailed counts and amounts.

As ``numpy.log1p`` in float64 (the C library's ``log1p``, which may differ from NumPy's own in
the last bit), rounded once to the output dtype: ``x = -1`` gives ``-inf``,
``x < -1`` gives NaN, ``+inf`` gives ``+inf``, NaN stays NaN. With ``signed``, the symmetric
``sign(x) * log1p(|x|)`` instead, defined for every number (``-0.0`` stays ``-0.0``).""",
    inputs=[column_spec("x", NUMBERS, "", "a numeric column: [N], or any shape")],
    outputs=[column_spec("y", (np.float32, np.float64), "", "same shape as x")],
    params=[Param("signed", Bool(), False, doc="sign(x) * log1p(|x|) instead of log1p(x)")],
    reference=_log1p_reference,
    infer=_infer,
    example_params=lambda rng, x: {"signed": bool(rng.random() < 0.5)},
    example_inputs=_examples,
)


@log1p.kernel("cpu")
def _log1p_cpu(x: np.ndarray, *, out: np.ndarray, signed: bool) -> None:
    _log1p_kernel(_flat(np.asarray(x)), out.reshape(-1), signed)


# -- clip ---------------------------------------------------------------------------------------


def _clip_bounds(params: dict[str, Any], op_name: str) -> tuple[float, float]:
    if params["stats"] is not None:
        f = feature_stats(params, NumericStats, op_name)
        return f.min, f.max
    lo, hi = params["min"], params["max"]
    return -math.inf if lo is None else lo, math.inf if hi is None else hi


def _clip_check(params: dict[str, Any]) -> None:
    if params["stats"] is not None or params["feature"] is not None:
        check_source(params, ["min", "max"], NumericStats)  # with the file, neither bound is given
        return
    if params["min"] is None and params["max"] is None:
        raise ValueError("give 'min', 'max' or both, or 'stats' and 'feature' (the feature's training range)")
    if params["min"] is not None and params["max"] is not None and params["min"] > params["max"]:
        raise ValueError(f"min ({params['min']}) must not exceed max ({params['max']})")


def _clip_reference(x: np.ndarray, **params: Any) -> np.ndarray:
    lo, hi = _clip_bounds(params, "tabular.clip")
    return _affine_reference(x, 0.0, 1.0, lo, hi)


def _clip_examples(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
    lo = float(rng.standard_normal() * 5)
    hi = lo + float(rng.random() * 10)
    r = rng.random()
    return {"min": lo if r < 0.7 else None, "max": hi if r > 0.3 else None}


clip = ColumnOp(
    "tabular.clip",
    doc="""Clip each value to ``[min, max]``, as ``numpy.clip`` in float64 (NaN stays NaN).

Give ``min``, ``max`` or both (a missing bound does not clip), or the stats file: the feature's
training range ``[min, max]`` (so serving never sees values training did not). The output has
the input's float dtype (float32 for integers); a bound is applied in float64 before the
rounding, so a clipped float32 value is the bound rounded to float32.""",
    inputs=[column_spec("x", NUMBERS, "", "a numeric column: [N], or any shape")],
    outputs=[column_spec("y", (np.float32, np.float64), "", "same shape as x")],
    params=[
        Param("min", Optional(Float()), None, doc="lower bound (none: no lower bound)"),
        Param("max", Optional(Float()), None, doc="upper bound (none: no upper bound)"),
        *source_params("the training range"),
    ],
    reference=_clip_reference,
    infer=_infer,
    check=_clip_check,
    example_params=_clip_examples,
    example_inputs=_examples,
)


@clip.kernel("cpu")
def _clip_cpu(x: np.ndarray, *, out: np.ndarray, **params: Any) -> None:
    lo, hi = _clip_bounds(params, "tabular.clip")
    _affine_kernel(_flat(np.asarray(x)), out.reshape(-1), 0.0, 1.0, lo, hi)
