"""Bucketize by boundaries, and fill missing values."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .._errors import InputError, OpError
from .._params import Bool, Floats, Optional, Param
from .._spec import BYTES
from ._column import FLOATS, NUMBERS, ColumnOp, Scalar, column_spec, example_strings, strings
from ._scale import _examples as _number_examples
from ._source import check_source, feature_stats, source_params
from ._stats import NumericStats, StatsError, cached_stats
from ._xxh64 import jit

__all__ = ["bucketize", "fill_missing"]


# -- bucketize ----------------------------------------------------------------------------------


def _boundaries(params: dict[str, Any], op_name: str) -> tuple[float, ...]:
    if params["stats"] is None:
        return tuple(params["boundaries"])
    b = feature_stats(params, NumericStats, op_name, needs="boundaries").boundaries
    assert b is not None
    return b


def _bucketize_check(params: dict[str, Any]) -> None:
    check_source(params, ["boundaries"], NumericStats, needs="boundaries")
    b = params["boundaries"]
    if b is not None and any(x >= y for x, y in itertools.pairwise(b)):
        raise ValueError(f"boundaries must be strictly increasing, got {list(b)}")


def _bucketize_reference(x: np.ndarray, **params: Any) -> np.ndarray:
    b = np.asarray(_boundaries(params, "tabular.bucketize"), np.float64)
    v = np.asarray(x).astype(np.float64)
    out = np.searchsorted(b, v, side="right").astype(np.int64)  # = numpy.digitize(v, b)
    if params["missing_bucket"]:
        out = np.where(np.isnan(v), len(b) + 1, out)
    return np.asarray(out, np.int64)


def _bucketize_infer(x: np.ndarray, **_: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    return [(np.shape(x), np.dtype(np.int64))]


def _bucketize_examples(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
    n = int(rng.integers(0, 8))
    b = np.unique(rng.standard_normal(n) * 10.0 ** int(rng.integers(0, 3)))
    if rng.random() < 0.3 and np.isfinite(x) and b.size:  # the value itself as a boundary (a tie)
        b = np.unique(np.append(b, float(x)))
    return {"boundaries": [float(v) for v in b], "missing_bucket": bool(rng.random() < 0.5)}


@jit
def _bucketize_kernel(x: np.ndarray, b: np.ndarray, nan_bucket: int, out: np.ndarray) -> None:
    m = b.shape[0]
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if v != v:
            out[i] = nan_bucket
            continue
        lo, hi = 0, m
        while lo < hi:  # the number of boundaries <= v
            mid = (lo + hi) >> 1
            if b[mid] <= v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo


bucketize = ColumnOp(
    "tabular.bucketize",
    doc="""The bucket of each value: the number of boundaries ``<= x``, an int64 in ``[0, len(b)]``.

Bucket ``i`` holds ``b[i-1] <= x < b[i]`` — a value equal to a boundary goes to the bucket above
it. This is ``numpy.digitize(x, b)`` (``right=False``) = ``numpy.searchsorted(b, x,
side="right")`` = ``torch.bucketize(x, b, right=True)``, and TensorFlow's ``Bucketize``.
``-inf`` is bucket 0, ``+inf`` bucket ``len(b)``. NaN goes to bucket ``len(b)`` as in NumPy and
torch, or, with ``missing_bucket``, to its own bucket ``len(b) + 1``. Comparisons are in float64
(a float32 value is compared exactly). ``boundaries`` are given (strictly increasing; none at all
puts everything in bucket 0), or read from the stats file (``fit`` with ``Numeric(buckets=n)``
gives quantile boundaries).""",
    inputs=[column_spec("x", NUMBERS, "", "a numeric column: [N], or any shape")],
    outputs=[column_spec("bucket", (np.int64,), "", "same shape as x")],
    params=[
        Param("boundaries", Optional(Floats(min_len=0)), None, doc="strictly increasing bucket boundaries"),
        *source_params("the boundaries"),
        Param("missing_bucket", Bool(), False, doc="NaN gets its own bucket len(boundaries) + 1"),
    ],
    reference=_bucketize_reference,
    infer=_bucketize_infer,
    check=_bucketize_check,
    example_params=_bucketize_examples,
    example_inputs=_number_examples,
)


@bucketize.kernel("cpu")
def _bucketize_cpu(x: np.ndarray, *, out: np.ndarray, **params: Any) -> None:
    b = np.asarray(_boundaries(params, "tabular.bucketize"), np.float64)
    a = np.asarray(x)
    flat = (a if a.dtype.kind == "f" else a.astype(np.float64)).reshape(-1)
    _bucketize_kernel(flat, b, len(b) + 1 if params["missing_bucket"] else len(b), out.reshape(-1))


# -- fill missing -------------------------------------------------------------------------------


def _fill_value(params: dict[str, Any], error: type[Exception]) -> float | bytes:
    """The fill value: the literal ``value``, or the feature's ``fill`` in the stats file."""
    if params["stats"] is None:
        value: float | bytes = params["value"]
        return value
    path, name = params["stats"], params["feature"]
    try:
        f = cached_stats(path)[name]
    except StatsError as e:
        raise error(f"stats {path!r}: {e}") from None
    if isinstance(f, NumericStats):
        return f.fill
    if f.values != "string":
        raise error(f"stats {path!r}: feature {name!r} holds integers, which are never missing")
    if not isinstance(f.fill, bytes):
        raise error(f"stats {path!r}: feature {name!r} has no fill value (its vocabulary is empty)")
    return f.fill


def _fill_check(params: dict[str, Any]) -> None:
    has_value, has_file = params["value"] is not None, params["stats"] is not None or params["feature"] is not None
    if has_value and has_file:
        raise ValueError("give either 'value' or 'stats' and 'feature', not both")
    if not has_value and not has_file:
        raise ValueError("give 'value', or 'stats' and 'feature' (the feature's fill value)")
    if has_file:
        if params["stats"] is None or params["feature"] is None:
            raise ValueError("'stats' and 'feature' go together: the stats file and the feature's name in it")
        _fill_value(params, ValueError)


def _fill(x: Any, params: dict[str, Any]) -> np.ndarray:
    op = "tabular.fill_missing"
    value = _fill_value(params, OpError)
    a = x if isinstance(x, np.ndarray) else np.asarray(x, BYTES)
    if a.dtype == BYTES:
        if not isinstance(value, bytes):
            raise InputError(f"{op}: the input holds strings but the fill value is the number {value!r}")
        out = np.empty(a.shape, BYTES)
        out.reshape(-1)[:] = [s if s else value for s in strings(a, op)] if a.size else []
        return out
    if isinstance(value, bytes):
        raise InputError(f"{op}: the input holds {a.dtype} numbers but the fill value is the string {value!r}")
    out = np.empty(a.shape, a.dtype)
    _fill_kernel(a.reshape(-1), a.dtype.type(value), out.reshape(-1))
    return out


@jit
def _fill_kernel(x: np.ndarray, value: Any, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = value if x[i] != x[i] else x[i]


def _fill_reference(x: Any, **params: Any) -> np.ndarray:
    value = _fill_value(params, OpError)
    a = x if isinstance(x, np.ndarray) else np.asarray(x, BYTES)
    if a.dtype == BYTES or isinstance(value, bytes):
        return _fill(a, params)  # strings: one Python loop is both the meaning and the kernel
    return np.where(np.isnan(a), a.dtype.type(value), a)


def _fill_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any]:
    if np.dtype(dtype) == BYTES:
        r = rng.random()
        if r < 0.2:
            missing = np.empty((), BYTES)  # one missing string, as a 0-d array holding None
            return (missing,)
        return ("text",) if r > 0.9 else (example_strings(rng, 1)[0],)
    return _number_examples(rng, dtype)


def _fill_examples(rng: np.random.Generator, x: Any) -> dict[str, Any]:
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return {"value": float(rng.standard_normal())}
    return {"value": ["__missing__", "", "ünknown"][int(rng.integers(3))]}


fill_missing = ColumnOp(
    "tabular.fill_missing",
    doc="""Replace missing values: NaN in a float column, a missing string in a BYTES column.

A missing string is ``None`` or the empty string ``b""`` (they are the same to every tabular
op). The replacement is ``value`` (a number for floats, a string for BYTES — it is UTF-8
encoded), or read from the stats file: the feature's ``fill`` (``fit``: the mean, median or zero
for numbers; the most frequent value for strings). Floats keep their dtype (the value is rounded
to it); ±inf are not missing. String outputs are ``bytes`` (``str`` elements are UTF-8 encoded,
others kept as they are, invalid UTF-8 included). Integer columns have no missing values and
are not accepted.""",
    inputs=[column_spec("x", (*FLOATS, BYTES), "", "a float or string column: [N], or any shape")],
    outputs=[column_spec("y", (*FLOATS, BYTES), "", "same shape and dtype as x")],
    params=[Param("value", Optional(Scalar()), None, doc="the replacement"), *source_params("the fill value")],
    reference=_fill_reference,
    check=_fill_check,
    example_params=_fill_examples,
    example_inputs=_fill_inputs,
)


@fill_missing.kernel("cpu")
def _fill_cpu(x: Any, **params: Any) -> np.ndarray:
    return _fill(x, params)

