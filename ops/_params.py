"""Typed op parameters: each kind checks and normalises a value, and describes itself.

A kind's ``check`` returns the normalised value (``Size`` turns ``256`` into ``(256, 256)`` when
asked to) or raises ``ValueError`` with what was expected; the op turns that into a
``ParamError`` naming the op and the parameter. ``json_schema`` feeds the pipeline schema.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "REQUIRED",
    "Bool",
    "Choice",
    "Float",
    "FloatRange",
    "Floats",
    "Int",
    "Optional",
    "Param",
    "ParamKind",
    "Size",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ParamKind(Protocol):
    def check(self, value: Any) -> Any: ...

    def describe(self) -> str: ...

    def json_schema(self) -> dict[str, Any]: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pair(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _bounds(schema: dict[str, Any], lo: float | None, hi: float | None) -> dict[str, Any]:
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return schema


@dataclass(frozen=True)
class Int:
    min: int | None = None
    max: int | None = None

    def check(self, value: Any) -> int:
        if not _is_int(value):
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        v = int(value)
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max) or not -(2**62) <= v <= 2**62:
            raise ValueError(f"expected {self.describe()}, got {v}")
        return v

    def describe(self) -> str:
        return "an integer" + _range_text(self.min, self.max)

    def json_schema(self) -> dict[str, Any]:
        return _bounds({"type": "integer"}, self.min, self.max)


@dataclass(frozen=True)
class Float:
    min: float | None = None
    max: float | None = None

    def check(self, value: Any) -> float:
        if not _is_real(value):
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            raise ValueError(f"expected {self.describe()}, got {v}")
        return v

    def describe(self) -> str:
        return "a finite number" + _range_text(self.min, self.max)

    def json_schema(self) -> dict[str, Any]:
        return _bounds({"type": "number"}, self.min, self.max)


@dataclass(frozen=True)
class Bool:
    def check(self, value: Any) -> bool:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise ValueError(f"expected true or false, got {value!r}")
        return bool(value)

    def describe(self) -> str:
        return "true or false"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def check(self, value: Any) -> str:
        if value not in self.values:
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        return str(value)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def json_schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


@dataclass(frozen=True)
class Size:
    """A positive size: ``N`` or ``[height, width]``. With ``pair=True`` ``N`` becomes ``(N, N)``."""

    pair: bool = True
    allow_single: bool = True

    def check(self, value: Any) -> int | tuple[int, int]:
        if _is_int(value) and self.allow_single:
            if value < 1:
                raise ValueError(f"expected {self.describe()}, got {value}")
            return (int(value), int(value)) if self.pair else int(value)
        if _is_pair(value) and all(_is_int(v) and v >= 1 for v in value):
            return (int(value[0]), int(value[1]))
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        pair = "[height, width] of positive integers"
        return f"a positive integer or {pair}" if self.allow_single else pair

    def json_schema(self) -> dict[str, Any]:
        pair = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2}
        if not self.allow_single:
            return pair
        return {"oneOf": [{"type": "integer", "minimum": 1}, pair]}


@dataclass(frozen=True)
class Floats:
    """A list of numbers, e.g. per-channel mean; a single number is accepted as a list of one."""

    min_len: int = 1
    max_len: int | None = None
    min: float | None = None
    max: float | None = None
    positive: bool = False

    def check(self, value: Any) -> tuple[float, ...]:
        items = [value] if _is_real(value) else value
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        out = []
        for v in items:
            if not _is_real(v) or not math.isfinite(float(v)):
                raise ValueError(f"expected {self.describe()}, got {value!r}")
            f = float(v)
            if self.positive and f <= 0:
                raise ValueError(f"expected {self.describe()}, got {value!r}")
            if (self.min is not None and f < self.min) or (self.max is not None and f > self.max):
                raise ValueError(f"expected {self.describe()}, got {value!r}")
            out.append(f)
        if len(out) < self.min_len or (self.max_len is not None and len(out) > self.max_len):
            raise ValueError(f"expected {self.describe()}, got {len(out)} values")
        return tuple(out)

    def describe(self) -> str:
        n = f"{self.min_len}" if self.max_len == self.min_len else f"{self.min_len} to {self.max_len or 'any'}"
        what = "positive numbers" if self.positive else "numbers" + _range_text(self.min, self.max)
        return f"a list of {n} {what}"

    def json_schema(self) -> dict[str, Any]:
        item = _bounds({"type": "number"}, self.min, self.max)
        if self.positive:
            item["exclusiveMinimum"] = 0
        arr: dict[str, Any] = {"type": "array", "items": item, "minItems": self.min_len}
        if self.max_len is not None:
            arr["maxItems"] = self.max_len
        return {"oneOf": [item, arr]} if self.min_len <= 1 else arr


@dataclass(frozen=True)
class FloatRange:
    """A ``[low, high]`` pair of numbers with ``low <= high`` inside optional bounds."""

    min: float | None = None
    max: float | None = None

    def check(self, value: Any) -> tuple[float, float]:
        if _is_pair(value) and all(_is_real(v) and math.isfinite(float(v)) for v in value):
            lo, hi = float(value[0]), float(value[1])
            if lo <= hi and (self.min is None or lo >= self.min) and (self.max is None or hi <= self.max):
                return (lo, hi)
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        return "[low, high] with low <= high" + _range_text(self.min, self.max)

    def json_schema(self) -> dict[str, Any]:
        item = _bounds({"type": "number"}, self.min, self.max)
        return {"type": "array", "items": item, "minItems": 2, "maxItems": 2}


@dataclass(frozen=True)
class Optional:
    inner: ParamKind

    def check(self, value: Any) -> Any:
        return None if value is None else self.inner.check(value)

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"

    def json_schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "null"}, self.inner.json_schema()]}


@dataclass(frozen=True)
class Param:
    """One named op parameter: its kind, default (``REQUIRED`` if none) and documentation."""

    name: str
    kind: ParamKind
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED
