"""The KServe v2 tensor codec: request inputs → NumPy arrays, NumPy arrays → response outputs.

Pure functions over the gRPC messages of :mod:`twinpipe.runtime._proto` (field-compatible with
Triton's, so tritonclient's messages work too). Sizes are checked against shapes before anything
is allocated, and every bad request raises :class:`WireError` naming the tensor, what was expected
and what was given.

Datatypes are KServe's names (``twinpipe.dag.DATATYPES``). On the wire, fixed-size elements are
little-endian; BOOL is one byte (0 or 1); BF16 travels as its 16 bits, decoded to a ``uint16``
array (the runner views it as bfloat16); BYTES elements are a 4-byte little-endian length followed
by the bytes, concatenated, and decode to an object array of ``bytes``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinpipe.dag import DATATYPES, datatype_of, dtype_of

from ._errors import InvalidArgumentError

__all__ = [
    "DATATYPES",
    "RequestOptions",
    "WireError",
    "bf16_bits",
    "datatype_of",
    "decode_inputs",
    "decode_parameters",
    "dtype_of",
    "encode_outputs",
    "encode_parameters",
    "output_datatype",
    "parse_sequence",
    "raw_tensor",
    "request_options",
    "requested_outputs",
    "shaped",
    "tensor_bytes",
    "tensor_size",
    "wants_empty_final",
]


class WireError(InvalidArgumentError):
    """A malformed request: the message names the tensor or parameter, expected vs given."""


# typed contents field for each datatype that has one (FP16 and BF16 travel raw only)
_TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# the NumPy dtype that holds every value of each typed field exactly
_TYPED_WIDE = {
    "bool_contents": np.bool_,
    "int_contents": np.int64,
    "int64_contents": np.int64,
    "uint_contents": np.int64,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}
_LEN = struct.Struct("<I")
_LITTLE = {name: dt.newbyteorder("<") for name, dt in DATATYPES.items()}
_PLAIN = {name: dt for name, dt in _LITTLE.items() if name not in ("BOOL", "BYTES")}  # raw bytes are the array
_SHM_PARAMS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_INT64_MAX = 2**63 - 1


class _Head:
    """``input 'x' (FP32 [2, 3])``, formatted when an error message needs it."""

    __slots__ = ("datatype", "name", "shape")

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        self.name, self.datatype, self.shape = name, datatype, shape

    def __str__(self) -> str:
        return f"input '{self.name}' ({self.datatype} {list(self.shape)})"


def decode_inputs(request: Any) -> dict[str, np.ndarray]:
    """The input tensors of a ``ModelInferRequest``, by name, in request order.

    Raw contents are used for all inputs or for none (Triton's rule). Fixed-size raw tensors are
    zero-copy, read-only views of the request's bytes. Raises :class:`WireError` for anything
    malformed: an unknown datatype, a negative dim, a byte or element count that does not match
    the shape, a duplicate name, mixed raw and typed contents, shared-memory inputs.
    """
    inputs = request.inputs
    raw = request.raw_input_contents
    n_raw = len(raw)
    if n_raw and n_raw != len(inputs):
        raise WireError(
            f"raw_input_contents holds {n_raw} entries for {len(inputs)} inputs; give raw contents for every input or for none"
        )
    out: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        name, datatype, shape = tensor.name, tensor.datatype, tuple(tensor.shape)
        if tensor.parameters:
            shm = [p for p in _SHM_PARAMS if p in tensor.parameters]
            if shm:
                raise WireError(f"input '{name}' uses shared memory ({shm[0]}), which this server does not support; send the data in the request")
        if not name or name in out:
            raise WireError(f"input '{name}' given twice" if name else f"input #{i} has no name")
        n = tensor_size(name, datatype, shape)
        if n_raw:
            if tensor.HasField("contents") and tensor.contents.ListFields():
                raise WireError(f"{_Head(name, datatype, shape)}: both raw contents and typed contents given; use one")
            data = raw[i]
            dtype = _PLAIN.get(datatype)
            if dtype is not None and len(data) == n * dtype.itemsize:  # the common case: a zero-copy view
                flat = np.frombuffer(data, dtype=dtype)
            else:
                flat = _from_raw(data, datatype, n, _Head(name, datatype, shape))
        else:
            flat = _from_typed(tensor.contents, datatype, n, _Head(name, datatype, shape))
        out[name] = shaped(flat, name, datatype, shape)
    return out


def tensor_size(name: str, datatype: str, shape: Sequence[int]) -> int:
    """The element count of an input tensor's header, after checking its datatype and dims."""
    if (shape and min(shape) < 0) or datatype not in DATATYPES:
        head = _Head(name, datatype, shape)
        if datatype not in DATATYPES:
            raise WireError(f"{head}: unknown datatype '{datatype}'; datatypes are: {', '.join(DATATYPES)}")
        raise WireError(f"{head}: negative dimension in the shape")
    return math.prod(shape)  # a Python int: no overflow, compared with the buffer before any allocation


def shaped(flat: np.ndarray, name: str, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """``flat`` (already the shape's element count) in ``shape``."""
    try:
        return flat.reshape(shape)
    except ValueError as e:  # e.g. a 0-size shape too large for NumPy, or over 64 dims
        raise WireError(f"{_Head(name, datatype, shape)}: NumPy cannot hold this shape ({e})") from None


def raw_tensor(name: str, datatype: str, shape: Sequence[int], data: bytes | memoryview) -> np.ndarray:
    """One input tensor from its raw bytes (the binary-data layout, as ``raw_input_contents``):
    a zero-copy read-only view for fixed-size datatypes. Raises :class:`WireError` as
    :func:`decode_inputs` does."""
    n = tensor_size(name, datatype, shape)
    return shaped(_from_raw(data, datatype, n, _Head(name, datatype, shape)), name, datatype, shape)


def _from_raw(data: bytes | memoryview, datatype: str, n: int, head: object) -> np.ndarray:
    if datatype == "BYTES":
        return _split_bytes(data, n, head)
    dtype = _LITTLE[datatype]
    if len(data) != n * dtype.itemsize:
        raise WireError(f"{head}: expected {n * dtype.itemsize} bytes of raw contents, given {len(data)}")
    if datatype == "BOOL":
        octets = np.frombuffer(data, dtype=np.uint8)
        if n and int(octets.max()) > 1:
            raise WireError(f"{head}: BOOL elements are one byte, 0 or 1; given the byte value {int(octets.max())}")
        return octets.view(np.bool_)
    return np.frombuffer(data, dtype=dtype)


def _split_bytes(data: bytes | memoryview, n: int, head: object) -> np.ndarray:
    """``n`` length-prefixed elements, exactly filling ``data``; the loop is bounded by ``len(data)``."""
    items: list[bytes] = []
    off, end = 0, len(data)
    while len(items) < n and off < end:
        k = len(items) + 1
        if end - off < 4:
            raise WireError(f"{head}: element {k} of {n} has a cut-off length prefix ({end - off} bytes remain in the raw contents)")
        (size,) = _LEN.unpack_from(data, off)
        off += 4
        if size > end - off:
            raise WireError(f"{head}: element {k} of {n} claims {size} bytes, only {end - off} remain in the raw contents")
        items.append(bytes(data[off : off + size]))
        off += size
    if len(items) < n:
        raise WireError(f"{head}: expected {n} length-prefixed elements in the raw contents, given {len(items)}")
    if off != end:
        raise WireError(f"{head}: expected {n} length-prefixed elements in the raw contents, given more ({end - off} bytes left over after element {n})")
    arr = np.empty(n, dtype=object)
    arr[:] = items
    return arr


def _from_typed(contents: Any, datatype: str, n: int, head: object) -> np.ndarray:
    field = _TYPED_FIELD.get(datatype)
    if field is None:
        raise WireError(f"{head}: {datatype} has no typed contents; send it in raw_input_contents")
    others = [f.name for f, _ in contents.ListFields() if f.name != field]
    if others:
        raise WireError(f"{head}: contents given in {others[0]}; {datatype} takes {field}")
    values = getattr(contents, field)
    if len(values) != n:
        raise WireError(f"{head}: expected {n} values in {field}, given {len(values)}")
    if datatype == "BYTES":
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
        return arr
    dtype = DATATYPES[datatype]
    wide: np.ndarray = np.array(list(values), dtype=_TYPED_WIDE[field])
    if n == 0:
        return np.empty(0, dtype=dtype)
    if dtype.kind in "iu" and wide.dtype != dtype:  # int_contents/uint_contents carry the narrow ints
        info = np.iinfo(dtype)
        lo, hi = int(wide.min()), int(wide.max())
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise WireError(f"{head}: {field} holds {bad}, out of {datatype}'s range [{info.min}, {info.max}]")
    return wide.astype(dtype, copy=False)


def requested_outputs(request: Any) -> list[str] | None:
    """The output names a ``ModelInferRequest`` asks for, or None when it asks for none (all)."""
    return [o.name for o in request.outputs] or None


def encode_outputs(
    response: Any,
    outputs: Mapping[str, Any],
    datatypes: Mapping[str, str],
    requested: Sequence[str] | None = None,
) -> None:
    """Append ``outputs`` to a ``ModelInferResponse``: metadata in ``outputs``, data in ``raw_output_contents``.

    Only the ``requested`` names, in that order (None or empty: all of ``outputs``, in its order).
    ``datatypes`` gives each output's KServe datatype (default: from the array's dtype). The data is
    always raw: ``tobytes()`` once per tensor, C order. A dtype that differs from the datatype is
    cast only when NumPy calls it safe. BF16 takes ``uint16`` bits, an ``ml_dtypes.bfloat16`` array,
    or a floating array rounded to the nearest bfloat16, ties to even (NaN stays NaN, a sign kept).

    Raises :class:`WireError` for an unknown or repeated requested name (the client's mistake) and
    ``TypeError`` for an output that cannot be encoded as its datatype (the server's).
    """
    if requested:
        seen: set[str] = set()
        for name in requested:
            if name not in outputs:
                raise WireError(f"unknown output '{name}' requested; outputs are: {', '.join(outputs) or '(none)'}")
            if name in seen:
                raise WireError(f"output '{name}' requested twice")
            seen.add(name)
    add, raw = response.outputs.add, response.raw_output_contents
    for name in requested or outputs:
        arr = outputs[name]
        if type(arr) is not np.ndarray:
            arr = np.asarray(arr)
        datatype = datatypes.get(name) or output_datatype(name, arr)
        raw.append(tensor_bytes(name, arr, datatype))
        add(name=name, datatype=datatype, shape=arr.shape)


def output_datatype(name: str, arr: np.ndarray) -> str:
    """The KServe datatype of an output array that declares none."""
    if arr.dtype.name == "bfloat16":
        return "BF16"
    if arr.dtype.kind in "SU":
        return "BYTES"
    try:
        return datatype_of(arr.dtype)
    except KeyError:
        raise TypeError(f"output '{name}' has dtype {arr.dtype}, which has no KServe datatype") from None


def tensor_bytes(name: str, arr: np.ndarray, datatype: str) -> bytes:
    """An output tensor's raw bytes as ``datatype`` (see :func:`encode_outputs` for the casts allowed)."""
    if datatype == "BYTES":
        return _join_bytes(name, arr)
    if datatype == "BF16":
        return bf16_bits(name, arr).astype("<u2", copy=False).tobytes()
    if datatype not in DATATYPES:
        raise TypeError(f"output '{name}': unknown datatype '{datatype}'")
    little = _LITTLE[datatype]
    if arr.dtype != little:
        target = DATATYPES[datatype]
        if arr.dtype != target and not np.can_cast(arr.dtype, target, "safe"):
            raise TypeError(f"output '{name}' is {arr.dtype}, which does not fit its datatype {datatype} ({target})")
        arr = arr.astype(little)
    return arr.tobytes()


def bf16_bits(name: str, arr: np.ndarray) -> np.ndarray:
    """An array as bfloat16 bits (``uint16``), rounded to nearest, ties to even."""
    if arr.dtype == np.uint16 or arr.dtype.name == "bfloat16":
        return arr.view(np.uint16) if arr.dtype != np.uint16 else arr
    if arr.dtype.kind != "f":
        raise TypeError(f"output '{name}' is {arr.dtype}; BF16 takes uint16 bits, bfloat16 or a floating array")
    bits = arr.astype(np.float32).view(np.uint32)
    # round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then drop the low half
    rounded = ((bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(arr)
    if nan.any():  # the carry would turn a NaN's payload into ±inf or flip its sign: keep a quiet NaN
        rounded[nan] = (bits[nan] >> np.uint32(16)).astype(np.uint16) | np.uint16(0x7FC0)
    return rounded


def _join_bytes(name: str, arr: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for k, item in enumerate(arr.reshape(-1).tolist()):
        if isinstance(item, str):
            item = item.encode()
        elif isinstance(item, (bytearray, memoryview)):
            item = bytes(item)
        elif not isinstance(item, bytes):
            raise TypeError(f"output '{name}' (BYTES): element {k} is {type(item).__name__}, expected bytes or str")
        if len(item) >= 2**32:
            raise TypeError(f"output '{name}' (BYTES): element {k} is {len(item)} bytes, over the 4-byte length prefix")
        parts.append(_LEN.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def decode_parameters(params: Mapping[str, Any]) -> dict[str, bool | int | str | float]:
    """An ``InferParameter`` map as plain Python values (int64 and uint64 both become ``int``)."""
    out: dict[str, bool | int | str | float] = {}
    for key, param in params.items():
        kind = param.WhichOneof("parameter_choice")
        if kind is None:
            raise WireError(f"parameter '{key}' has no value")
        out[key] = getattr(param, kind)
    return out


def encode_parameters(target: MutableMapping[str, Any], values: Mapping[str, bool | int | str | float]) -> None:
    """Set ``values`` into an ``InferParameter`` map (ints above int64's range go as uint64)."""
    for key, value in values.items():
        param = target[key]
        if isinstance(value, (bool, np.bool_)):
            param.bool_param = bool(value)
        elif isinstance(value, (int, np.integer)):
            v = int(value)
            if -(2**63) <= v <= _INT64_MAX:
                param.int64_param = v
            elif _INT64_MAX < v < 2**64:
                param.uint64_param = v
            else:
                raise ValueError(f"parameter '{key}' = {v} does not fit int64 or uint64")
        elif isinstance(value, (float, np.floating)):
            param.double_param = float(value)
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise TypeError(f"parameter '{key}' is {type(value).__name__}; parameters are bool, int, float or str")


@dataclass(frozen=True)
class RequestOptions:
    """The scheduling parameters of a request (0 or None: not given)."""

    sequence_id: int | str | None = None
    sequence_start: bool = False
    sequence_end: bool = False
    priority: int = 0  # 0: the model's default level
    timeout_us: int = 0  # 0: no timeout


_KIND_NAMES = {"bool_param": "a bool", "int64_param": "an int64", "uint64_param": "a uint64", "string_param": "a string", "double_param": "a double"}


def _get(params: Mapping[str, Any], key: str, kinds: tuple[str, ...], wanted: str) -> Any:
    if key not in params:
        return None
    kind = params[key].WhichOneof("parameter_choice")
    if kind not in kinds:
        given = _KIND_NAMES.get(kind or "", "no value")
        raise WireError(f"parameter '{key}' must be {wanted}, given {given}")
    return getattr(params[key], kind)


def parse_sequence(params: Mapping[str, Any]) -> tuple[int | str | None, bool, bool]:
    """``(sequence_id, sequence_start, sequence_end)``; an id of 0 or "" is no sequence."""
    seq = _get(params, "sequence_id", ("int64_param", "uint64_param", "string_param"), "an integer or a string")
    if isinstance(seq, int) and seq < 0:
        raise WireError(f"parameter 'sequence_id' must not be negative, given {seq}")
    start = bool(_get(params, "sequence_start", ("bool_param",), "a bool"))
    end = bool(_get(params, "sequence_end", ("bool_param",), "a bool"))
    if not seq:
        if start or end:
            raise WireError(f"parameter '{'sequence_start' if start else 'sequence_end'}' given without a sequence_id")
        return None, False, False
    return seq, start, end


def wants_empty_final(params: Mapping[str, Any]) -> bool:
    """Whether a streamed request asks for an empty final response (Triton's
    ``triton_enable_empty_final_response``: how a client learns a decoupled stream has ended)."""
    return bool(_get(params, "triton_enable_empty_final_response", ("bool_param",), "a bool"))


def request_options(params: Mapping[str, Any]) -> RequestOptions:
    """The sequence, ``priority`` (uint64 or int64 ≥ 0) and ``timeout`` (µs, int64 ≥ 0) of a request."""
    seq, start, end = parse_sequence(params)
    found: dict[str, int] = {}
    for key in ("priority", "timeout"):
        v = _get(params, key, ("uint64_param", "int64_param"), "an integer")
        if v is not None and v < 0:
            raise WireError(f"parameter '{key}' must not be negative, given {v}")
        found[key] = v or 0
    return RequestOptions(seq, start, end, found["priority"], found["timeout"])
