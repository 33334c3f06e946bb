"""Columns: how tabular ops take their inputs, and the parameter kinds they share.

A tabular op works on a **column**: one feature's values for a whole batch, a 1-D array ``[N]``
(one value per row), or ``[N, K]`` for a list feature (``K`` values per row, e.g. the last ``K``
items a user clicked, padded). Per sample, an op's signature declares one value (shape ``[]``)
or one list (``[K]``), which is what a pipeline input ``[-1]`` / ``[-1, -1]`` gives per row;
but unlike an image op, a tabular op never loops over rows in Python: the whole column goes to
its kernel in one call, whatever its leading dimensions (``[]``, ``[N]``, ``[N, K]``, …). An
element-wise op keeps the input's shape; ``one_hot`` appends ``depth``; ``multi_hot`` replaces
the last axis by ``depth``. An empty column gives an empty output of the same kind.

A Python list (or tuple) is a ragged batch, as for every op: each item is run on its own and the
result is a list (the executor stacks items that agree). A torch CPU tensor gives a torch tensor.

Strings are BYTES columns: object arrays whose elements are ``bytes`` (also ``bytearray``,
``memoryview``, ``numpy.bytes_``), ``str`` (taken as its UTF-8 bytes) or ``None`` (missing,
the same as ``b""``). Fixed-width NumPy ``S``/``U`` arrays are accepted and converted (NumPy's
``S`` strips trailing NUL bytes; object arrays keep every byte). Bytes are never decoded, so
strings that are not valid UTF-8 — or that hold NUL bytes — are ordinary values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._arrays import from_host, is_bytes_like, kind_of, to_host
from .._errors import InputError, OpError
from .._op import BoundOp, Mode, Op, Outputs
from .._spec import BYTES, TensorSpec

__all__ = [
    "FLOATS",
    "INTS",
    "NUMBERS",
    "ColumnOp",
    "Scalar",
    "Text",
    "Values",
    "as_column",
    "column_spec",
    "pack_strings",
    "to_bytes",
]

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
INTS = (np.dtype(np.int32), np.dtype(np.int64))
NUMBERS = FLOATS + INTS


def column_spec(name: str, dtypes: tuple[Any, ...] | None, shape: str = "", doc: str = "") -> TensorSpec:
    return TensorSpec(name, dtypes, shape, doc)


class ColumnOp(Op):
    """An op whose kernel takes a whole column (any leading dimensions) in one call."""

    def bind(self, **params: Any) -> ColumnBoundOp:
        return ColumnBoundOp(self, self.validate_params(params))


class ColumnBoundOp(BoundOp):
    """A bound column op: arrays go to the kernel whole; lists are ragged batches."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (ColumnBoundOp, (self.op, self.params))

    def __call__(self, *inputs: Any, rng: np.random.Generator | int | None = None, mode: Mode = "train") -> Any:
        op = self.op
        if len(inputs) != len(op.inputs):
            raise InputError(f"{op.name} takes {len(op.inputs)} input(s), got {len(inputs)}")
        if mode not in ("train", "serve"):
            raise OpError(f"{op.name}: mode must be 'train' or 'serve', got {mode!r}")
        lists = [isinstance(x, (list, tuple)) for x in inputs]
        if any(lists):
            sizes = {len(x) for x, is_list in zip(inputs, lists) if is_list}
            if len(sizes) > 1 or not all(lists):
                raise InputError(f"{op.name}: a ragged batch needs every input as a list of the same length")
            n = sizes.pop()
            results = []
            for i in range(n):
                try:
                    results.append(self._column(tuple(x[i] for x in inputs)))
                except OpError as e:
                    raise type(e)(f"{e} (batch item {i} of {n})") from e
            names = [s.name for s in op.outputs]
            if len(names) == 1:
                return list(results)
            return Outputs([[r[k] for r in results] for k in range(len(names))], names)
        return self._column(inputs)

    def _column(self, inputs: tuple[Any, ...]) -> Any:
        op = self.op
        kinds = []
        host = []
        for spec, x in zip(op.inputs, inputs):
            if isinstance(x, np.generic) and not is_bytes_like(x):
                x = np.asarray(x)  # a NumPy scalar (np.float32(3)) is a 0-d column
            try:
                kind = kind_of(x) if not isinstance(x, str) else "bytes"
            except TypeError:
                raise InputError(
                    f"{op.name}: input {spec.name!r} must be an array (a column), a torch tensor or one string, "
                    f"got {type(x).__name__}"
                ) from None
            if kind == "cuda":
                raise InputError(
                    f"{op.name} has no CUDA kernel; its input {spec.name!r} is on the GPU. "
                    "Move it to the host (tensor.cpu() / cupy.asnumpy)"
                )
            kinds.append(kind)
            try:
                host.append(as_column(op.name, spec, x if isinstance(x, str) else to_host(x)))
            except TypeError as e:  # a bfloat16 tensor
                raise InputError(f"{op.name}: input {spec.name!r}: {e}") from None
        kernel = op.kernel_for("cpu")
        n = len(op.outputs)
        if kernel is not None and op.infer is not None:
            outs = tuple(np.empty(shape, dtype) for shape, dtype in op.infer(*host, **self.params))
            kernel.fn(*host, out=outs[0] if n == 1 else outs, **self.params)
            values: tuple[Any, ...] = outs
        else:
            fn = kernel.fn if kernel is not None else op.reference
            result = fn(*host, **self.params)
            values = (result,) if n == 1 else tuple(result)
        wrap = from_host("torch" if "torch" in kinds else "numpy")
        wrapped = [wrap(v) for v in values]
        return wrapped[0] if n == 1 else Outputs(wrapped, [s.name for s in op.outputs])


def as_column(op_name: str, spec: TensorSpec, x: Any) -> np.ndarray:
    """``x`` as a NumPy column the op accepts, or an ``InputError`` naming the op and input."""
    accepts_bytes = spec.dtypes is not None and BYTES in spec.dtypes
    if is_bytes_like(x) or isinstance(x, str):
        if not accepts_bytes:
            raise InputError(f"{op_name}: input {spec.name!r} takes numbers, got {type(x).__name__}")
        col = np.empty((), BYTES)
        col[()] = x
        return col
    if not isinstance(x, np.ndarray):
        raise InputError(f"{op_name}: input {spec.name!r} must be an array, got {type(x).__name__}")
    if x.dtype.kind in "SU" and accepts_bytes:
        x = x.astype(BYTES)
    if spec.dtypes is not None and x.dtype not in spec.dtypes:
        allowed = ", ".join("bytes" if d == BYTES else d.name for d in spec.dtypes)
        raise InputError(f"{op_name}: input {spec.name!r} has dtype {x.dtype}; expected one of {allowed}")
    if x.ndim < spec.rank:
        raise InputError(
            f"{op_name}: input {spec.name!r} must have shape [..., {' '.join(spec.shape)}] "
            f"(at least {spec.rank} dimension(s)), got shape {list(x.shape)}"
        )
    return x


def to_bytes(value: Any, op_name: str, index: int) -> bytes:
    """One string element as bytes: ``None`` is ``b""``, ``str`` is its UTF-8 encoding."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{op_name}: string element {index} has lone surrogates; pass it as bytes") from None
    raise InputError(f"{op_name}: string element {index} is {type(value).__name__}; expected bytes, str or None")


def pack_strings(column: np.ndarray, op_name: str, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A BYTES column, flattened, as one ``uint8`` buffer and ``int64`` offsets (``n + 1``).

    ``positions``: where each element sits in the caller's column, for error messages.
    """
    items = column.ravel().tolist()
    try:
        blob = _join(items)
        lengths = np.fromiter(map(len, items), np.int64, len(items))
    except TypeError:  # str, None or something else among the bytes: normalise one by one
        where = range(len(items)) if positions is None else positions.tolist()
        items = [to_bytes(v, op_name, i) for i, v in zip(where, items)]
        blob = _join(items)
        lengths = np.fromiter(map(len, items), np.int64, len(items))
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(blob, np.uint8), offsets


def _join(items: list[Any], chunk: int = 4096) -> bytes:
    """``b"".join(items)``, in chunks: one join of a million items allocates a buffer descriptor
    per item (80 MB) and runs 2-3 times slower than joins of a few thousand, joined."""
    if len(items) <= chunk:
        return b"".join(items)
    return b"".join([b"".join(items[i : i + chunk]) for i in range(0, len(items), chunk)])


def strings(column: np.ndarray, op_name: str) -> list[bytes]:
    """A BYTES column, flattened, as a list of bytes (``None`` → ``b""``, ``str`` → UTF-8)."""
    return [to_bytes(v, op_name, i) for i, v in enumerate(column.ravel().tolist())]


# -- parameter kinds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A non-empty string (a file path, a feature name)."""

    what: str = "a non-empty string"

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        return value

    def describe(self) -> str:
        return self.what

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class Scalar:
    """A fill value: a finite number (for number columns) or a string (for BYTES columns)."""

    def check(self, value: Any) -> float | bytes:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, bytes):
            return value
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        return "a finite number or a string"

    def json_schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "number"}, {"type": "string"}]}


@dataclass(frozen=True)
class Values:
    """A vocabulary: distinct strings (stored as UTF-8 bytes) or distinct integers, not mixed."""

    def check(self, value: Any) -> tuple[bytes, ...] | tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        items = list(value)
        if all(isinstance(v, (str, bytes)) for v in items):
            out: tuple[Any, ...] = tuple(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in items)
        elif all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
            out = tuple(int(v) for v in items)
            if any(not -(2**63) <= v < 2**63 for v in out):
                raise ValueError(f"expected {self.describe()}; integers must fit int64")
        else:
            raise ValueError(f"expected {self.describe()}, got a mix: {value!r}")
        if len(set(out)) != len(out):
            dup = next(v for i, v in enumerate(out) if v in out[:i])
            raise ValueError(f"expected {self.describe()}; {dup!r} is listed twice")
        return out

    def describe(self) -> str:
        return "a list of distinct strings or distinct integers"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": ["string", "integer"]}}


def example_strings(rng: np.random.Generator, n: int, *, pool: Sequence[bytes] = ()) -> list[bytes]:
    """Random strings for tests: ASCII words, UTF-8 text, invalid UTF-8, empty, long ones."""
    out = []
    for _ in range(n):
        r = rng.random()
        if pool and r < 0.5:
            out.append(pool[int(rng.integers(len(pool)))])
        elif r < 0.6:
            out.append(b"")
        elif r < 0.75:
            out.append(bytes(rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8)))  # not UTF-8, mostly
        elif r < 0.85:
            out.append("".join(chr(int(c)) for c in rng.integers(0x20, 0x3000, int(rng.integers(1, 9)))).encode())
        else:
            out.append(bytes(rng.integers(97, 123, int(rng.integers(1, 40)), dtype=np.uint8)))
    return out
