"""``fit``: the stats of a dataset's features, for the stats file that training and serving share."""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._arrays import kind_of, to_host
from .._spec import BYTES
from ._column import strings
from ._stats import CategoricalStats, FeatureStats, NumericStats, Stats, StatsError

__all__ = ["Categorical", "Numeric", "fit"]


@dataclass(frozen=True)
class Numeric:
    """Fit a numeric feature: count, missing (NaN), mean, std, min, max, and optionally boundaries.

    Args:
        buckets: quantile buckets for ``bucketize``: the boundaries are the ``i / buckets``
            quantiles (``i = 1 … buckets - 1``) of the finite values, by ``numpy.quantile``'s
            default (linear) method, with repeats dropped — so equal-frequency buckets, fewer
            where the data has heavy ties.
        boundaries: fixed boundaries to store instead (strictly increasing).
        fill: what ``fill_missing`` puts for NaN: ``"mean"``, ``"median"`` or ``"zero"``.
    """

    buckets: int | None = None
    boundaries: Sequence[float] | None = None
    fill: Literal["mean", "median", "zero"] = "mean"


@dataclass(frozen=True)
class Categorical:
    """Fit a categorical feature (strings or integers): its vocabulary.

    The vocabulary lists each distinct value seen at least ``min_count`` times, most frequent
    first (ties: ascending value — bytewise for strings), cut to the ``max_size`` most frequent.
    A missing string (``None`` or ``b""``) is counted in ``missing``, never put in the vocabulary.
    ``fill`` (``fill_missing``'s value for missing strings) is the most frequent value.
    """

    max_size: int | None = None
    min_count: int = 1


Spec = Numeric | Categorical | Literal["numeric", "categorical"]


def fit(columns: Mapping[str, Any], spec: Mapping[str, Spec] | None = None) -> Stats:
    """The stats of ``columns`` (feature name → values), one entry per feature of ``spec``.

    ``columns`` values are arrays or tensors of any shape (``[N]``, or ``[N, K]`` lists, which
    are flattened), or Python lists. ``spec`` maps a feature name to ``Numeric(...)``,
    ``Categorical(...)`` or the shorthands ``"numeric"`` / ``"categorical"``; without a spec,
    float columns are numeric and integer and string columns categorical. Statistics are
    computed in float64: ``std`` is the population standard deviation (``ddof=0``, as
    scikit-learn's ``StandardScaler``). A numeric feature without a single finite value is an
    error (a ``StatsError`` naming it), not a silent default.
    """
    arrays = {name: _array(name, col) for name, col in columns.items()}
    if spec is None:
        spec = {name: "numeric" if a.dtype.kind == "f" else "categorical" for name, a in arrays.items()}
    out: dict[str, FeatureStats] = {}
    for name, s in spec.items():
        if name not in arrays:
            raise StatsError(f"fit: no column {name!r}; the columns are {', '.join(sorted(arrays)) or 'none'}")
        kind = Numeric() if s == "numeric" else Categorical() if s == "categorical" else s
        if isinstance(kind, Numeric):
            out[name] = _fit_numeric(name, arrays[name], kind)
        elif isinstance(kind, Categorical):
            out[name] = _fit_categorical(name, arrays[name], kind)
        else:
            raise StatsError(f"fit: feature {name!r}: expected Numeric(...), Categorical(...), 'numeric' or 'categorical', got {s!r}")
    return Stats(out)


def _array(name: str, column: Any) -> np.ndarray:
    if isinstance(column, (list, tuple)):
        if all(isinstance(v, (str, bytes, bytearray, type(None))) for v in column):
            a = np.empty(len(column), BYTES)
            a[:] = list(column)
            return a
        return np.asarray(column)
    try:
        kind_of(column)
        host = to_host(column)
    except TypeError as e:
        raise StatsError(f"fit: column {name!r}: {e}") from None
    a = np.asarray(host)
    return a.astype(BYTES) if a.dtype.kind in "SU" else a


def _fit_numeric(name: str, a: np.ndarray, spec: Numeric) -> NumericStats:
    if a.dtype.kind not in "fiu":
        raise StatsError(f"fit: numeric feature {name!r} has dtype {a.dtype}; expected floats or integers")
    x = a.astype(np.float64).ravel()
    nan = np.isnan(x)
    inf = np.isinf(x)
    finite = x[~nan & ~inf]
    if finite.size == 0:
        raise StatsError(f"fit: numeric feature {name!r} has no finite value ({x.size} values, {int(nan.sum())} NaN)")
    mean, std = float(finite.mean()), float(finite.std())
    boundaries: tuple[float, ...] | None = None
    if spec.boundaries is not None:
        boundaries = tuple(float(b) for b in spec.boundaries)
        if not all(math.isfinite(b) for b in boundaries) or any(p >= q for p, q in itertools.pairwise(boundaries)):
            raise StatsError(f"fit: feature {name!r}: boundaries must be finite and strictly increasing")
    elif spec.buckets is not None:
        if spec.buckets < 1:
            raise StatsError(f"fit: feature {name!r}: buckets must be >= 1, got {spec.buckets}")
        qs = np.quantile(finite, np.arange(1, spec.buckets) / spec.buckets)
        boundaries = tuple(float(b) for b in np.unique(qs))
    fills = {"mean": mean, "median": float(np.median(finite)), "zero": 0.0}
    if spec.fill not in fills:
        raise StatsError(f"fit: feature {name!r}: fill is 'mean', 'median' or 'zero', got {spec.fill!r}")
    return NumericStats(
        count=int(finite.size), missing=int(nan.sum()), infinite=int(inf.sum()), mean=mean, std=std,
        min=float(finite.min()), max=float(finite.max()), boundaries=boundaries, fill=fills[spec.fill],
    )


def _fit_categorical(name: str, a: np.ndarray, spec: Categorical) -> CategoricalStats:
    if spec.min_count < 1 or (spec.max_size is not None and spec.max_size < 0):
        raise StatsError(f"fit: feature {name!r}: min_count must be >= 1 and max_size >= 0")
    if a.dtype == BYTES:
        items = strings(a, f"fit (feature {name!r})")
        counts = collections.Counter(items)
        missing = counts.pop(b"", 0)
        ranked: list[tuple[Any, int]] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        values: Literal["string", "int"] = "string"
        total = len(items) - missing
    elif a.dtype.kind in "iu":
        if a.dtype == np.uint64 and a.size and int(a.max()) >= 2**63:
            raise StatsError(f"fit: feature {name!r}: integers must fit int64")
        uniq, cnt = np.unique(a.astype(np.int64).ravel(), return_counts=True)
        order = np.lexsort((uniq, -cnt))
        ranked = [(int(uniq[i]), int(cnt[i])) for i in order]
        values, missing, total = "int", 0, int(a.size)
    else:
        raise StatsError(f"fit: categorical feature {name!r} has dtype {a.dtype}; expected strings or integers")
    ranked = [(v, c) for v, c in ranked if c >= spec.min_count]
    if spec.max_size is not None:
        ranked = ranked[: spec.max_size]
    return CategoricalStats(
        values=values, count=total, missing=missing, vocabulary=tuple(v for v, _ in ranked),
        frequencies=tuple(c for _, c in ranked), fill=ranked[0][0] if ranked else None,
    )
