"""The KServe v2 HTTP/REST codec: JSON request bodies (with the binary-data extension) → NumPy
inputs, and responses → JSON (with binary outputs after it). Pure functions, no HTTP.

A request body is a JSON object, optionally followed by tensor bytes: the header
``Inference-Header-Content-Length`` gives the JSON's length, and each input whose parameters say
``binary_data_size: N`` takes the next ``N`` bytes, in input order (the raw layout of
:mod:`._wire`: little-endian, BOOL one byte, BYTES elements length-prefixed). Other inputs carry
``data``: a flat or nested JSON array of numbers, booleans or (BYTES) strings — UTF-8 text, or
base64 when the input's parameters say ``content_type: base64``.

A response's outputs are binary when the request says so (``binary_data: true`` on a requested
output, else the request parameter ``binary_data_output``); the rest are JSON ``data``, flat.
Every malformed request raises :class:`~._wire.WireError` naming the tensor, what was expected
and what was given; values are never silently rounded to another integer, clipped or dropped.

The generate extension (Triton's ``/generate``, ``/generate_stream``) takes a flat JSON object
instead: each key an input's name, each value a scalar or (nested) array, shaped by the input's
declaration; its responses map each output's name to a scalar (one element) or nested array.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from twinpipe.dag import DATATYPES

from ._servable import InferResponse
from ._wire import WireError, bf16_bits, output_datatype, raw_tensor, shaped, tensor_bytes, tensor_size

__all__ = ["RestRequest", "decode_generate", "decode_request", "encode_generate", "encode_response", "json_body"]

_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
_SHM = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_INTS = {name for name, dt in DATATYPES.items() if dt.kind in "iu" and name != "BF16"}  # BF16 travels as uint16 bits
_FLOATS = ("FP16", "FP32", "FP64", "BF16")
_SCALARS = (bool, int, float, str)
_SCALAR_TYPES = frozenset(_SCALARS)


class _Decl(Protocol):
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(slots=True)
class RestRequest:
    """A decoded inference request: what :meth:`Engine.submit` takes, and how to answer."""

    id: str
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] | None  # None: none given (the engine's fast path)
    outputs: list[str] | None  # None: all of them
    binary_output: bool = False  # the request's default for outputs
    binary: dict[str, bool] | None = None  # per requested output, where it says
    base64: frozenset[str] = frozenset()  # BYTES outputs asked for as base64 text


def json_body(body: bytes | memoryview, what: str = "the request body") -> Any:
    """``body`` parsed as JSON, or a :class:`WireError` saying where it is malformed."""
    try:  # decoded first: json.loads of bytes would sniff the encoding on every request
        return json.loads(str(body, "utf-8"))
    except UnicodeDecodeError as e:
        raise WireError(f"{what} is not UTF-8 JSON: {e}") from None
    except json.JSONDecodeError as e:
        raise WireError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise WireError(f"{what} nests JSON arrays or objects too deeply") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{what} must be a JSON object, given {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _label(kind: str, name: str) -> str:
    return f"{kind} '{name}''s parameters"


def _params(value: Any, what: Callable[[], str]) -> dict[str, Any]:
    """:func:`parameters`, with the label made only for an error (the hot path)."""
    if type(value) is dict and all(type(v) in _SCALAR_TYPES for v in value.values()):
        return value
    return parameters(value, what())


def parameters(value: Any, what: str = "the request's parameters") -> dict[str, Any]:
    """A ``parameters`` object: each value a bool, number or string (as gRPC's InferParameter)."""
    params = _object(value, what)
    for key, v in params.items():
        if not isinstance(v, _SCALARS):
            raise WireError(f"parameter '{key}' must be a boolean, number or string, given {_kind(v)}")
    return params


def decode_request(body: bytes, header_length: int | None = None, *, parsed: Any = None) -> RestRequest:
    """A v2 inference request from an HTTP body (``header_length``: the JSON's length when binary
    data follows it, from ``Inference-Header-Content-Length``; ``parsed``: the body's JSON, when
    the caller has parsed a body without binary data already)."""
    size = len(body)
    if header_length is None:
        header_length = size
    elif not 0 <= header_length <= size:
        raise WireError(f"Inference-Header-Content-Length is {header_length}, but the body holds {size} bytes")
    view = memoryview(body)
    if parsed is None:
        try:
            parsed = json_body(view[:header_length] if header_length < size else body)
        except WireError as e:
            if header_length < size:
                raise
            raise WireError(f"{e} (binary data after the JSON needs the Inference-Header-Content-Length header)") from None
    req = _object(parsed, "the inference request")
    unknown = [k for k in req if k not in _REQUEST_KEYS]
    if unknown:
        raise WireError(f"unknown field '{unknown[0]}' in the inference request; its fields are: {', '.join(_REQUEST_KEYS)}")
    request_id = req.get("id", "")
    if not isinstance(request_id, str):
        raise WireError(f"the request's 'id' must be a string, given {_kind(request_id)}")
    params = dict(_params(req.get("parameters", {}), lambda: "the request's parameters"))
    binary_output = params.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise WireError(f"parameter 'binary_data_output' must be a boolean, given {_kind(binary_output)}")
    tensors = req.get("inputs")
    if not isinstance(tensors, list):
        raise WireError("the inference request needs 'inputs': an array of tensors" if tensors is None else
                        f"the request's 'inputs' must be an array, given {_kind(tensors)}")
    inputs: dict[str, np.ndarray] = {}
    offset = header_length
    for i, tensor in enumerate(tensors):
        name, arr, used = _input(i, tensor, view, offset, inputs)
        inputs[name] = arr
        offset += used
    if offset != size:
        raise WireError(f"the body holds {size - offset} bytes after the inputs' binary data (the JSON is "
                        f"{header_length} bytes, the inputs' binary_data_size add up to {offset - header_length})")
    outputs, binary, b64 = _outputs(req.get("outputs"))
    return RestRequest(request_id, inputs, params or None, outputs, binary_output, binary, b64)


def _input(i: int, tensor: Any, body: memoryview, offset: int, seen: Mapping[str, Any]) -> tuple[str, np.ndarray, int]:
    """One input: its name, array and the binary bytes it took."""
    t = _object(tensor, f"input #{i}")
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise WireError(f"input #{i} has no name" if name in (None, "") else f"input #{i}'s name must be a string")
    if name in seen:
        raise WireError(f"input '{name}' given twice")
    unknown = [k for k in t if k not in _INPUT_KEYS]
    if unknown:
        raise WireError(f"input '{name}': unknown field '{unknown[0]}'; an input's fields are: {', '.join(_INPUT_KEYS)}")
    datatype, shape = t.get("datatype"), t.get("shape")
    if not isinstance(datatype, str):
        raise WireError(f"input '{name}' needs a 'datatype' string" + ("" if datatype is None else f", given {_kind(datatype)}"))
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise WireError(f"input '{name}' needs a 'shape': an array of integers, given " + ("none" if shape is None else json.dumps(shape)))
    params = _params(t.get("parameters", {}), functools.partial(_label, "input", name))
    shm = [p for p in _SHM if p in params]
    if shm:
        raise WireError(f"input '{name}' uses shared memory ({shm[0]}), which this server does not support; send the data in the request")
    size = params.get("binary_data_size")
    content = params.get("content_type")
    if content not in (None, "base64", "str"):
        raise WireError(f"input '{name}': content_type {content!r} is not supported (base64 or str, for BYTES)")
    if size is not None:
        if type(size) is not int or size < 0:
            raise WireError(f"input '{name}': binary_data_size must be a non-negative integer, given {json.dumps(size)}")
        if "data" in t:
            raise WireError(f"input '{name}' has both 'data' and binary_data_size; give one")
        if offset + size > len(body):
            raise WireError(f"input '{name}' ({datatype} {shape}): binary_data_size is {size}, but only "
                            f"{len(body) - offset} bytes of binary data remain in the body")
        return name, raw_tensor(name, datatype, shape, body[offset:offset + size]), size
    if "data" not in t:
        raise WireError(f"input '{name}' has no data: give 'data', or binary_data_size and the bytes after the JSON")
    return name, json_tensor(name, datatype, shape, t["data"], base64_text=content == "base64"), 0


def json_tensor(name: str, datatype: str, shape: Sequence[int], data: Any, *, base64_text: bool = False) -> np.ndarray:
    """One tensor from JSON ``data`` (flat or nested) in ``shape``; checked, never rounded to
    another integer or clipped."""
    head = f"input '{name}' ({datatype} {list(shape)})"
    n = tensor_size(name, datatype, shape)
    if not isinstance(data, list):
        raise WireError(f"{head}: 'data' must be an array, given {_kind(data)}")
    flat = _flatten(data)
    if len(flat) != n:
        raise WireError(f"{head}: expected {n} values in data, given {len(flat)}")
    if datatype == "BYTES":
        return shaped(_bytes_items(head, flat, base64_text), name, datatype, shape)
    if base64_text:
        raise WireError(f"{head}: content_type base64 is for BYTES inputs")
    if datatype == "BOOL":
        _check_types(head, flat, (bool,), "true or false")
        return shaped(np.array(flat, dtype=np.bool_).reshape(-1), name, datatype, shape)
    if datatype in _INTS:
        _check_types(head, flat, (int,), "integers")
        return shaped(_ints(head, flat, DATATYPES[datatype]), name, datatype, shape)
    _check_types(head, flat, (int, float), "numbers")
    wide = np.array(flat, dtype=np.float64).reshape(-1)
    if datatype == "BF16":
        narrow = bf16_bits(name, wide)
        back = (narrow.astype(np.uint32) << np.uint32(16)).view(np.float32)
    else:
        with np.errstate(over="ignore"):  # reported below, naming the element
            narrow = back = wide.astype(DATATYPES[datatype])
    overflow = np.isinf(back) & np.isfinite(wide)
    if overflow.any():
        k = int(np.argmax(overflow))
        raise WireError(f"{head}: element {k} is {flat[k]!r}, out of {datatype}'s range")
    return shaped(narrow, name, datatype, shape)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(type(x) is list for x in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_types(head: str, flat: list[Any], allowed: tuple[type, ...], wanted: str) -> None:
    for k, x in enumerate(flat):
        if type(x) not in allowed:
            raise WireError(f"{head}: data takes {wanted}; element {k} is {json.dumps(x)}")


def _ints(head: str, flat: list[Any], dtype: np.dtype[Any]) -> np.ndarray:
    info = np.iinfo(dtype)
    try:
        wide = np.array(flat, dtype=np.uint64 if info.min == 0 else np.int64)
    except OverflowError:
        wide = None
    if wide is not None and (len(flat) == 0 or (info.min <= int(wide.min()) and int(wide.max()) <= info.max)):
        return wide.reshape(-1).astype(dtype, copy=False)
    k = next(k for k, x in enumerate(flat) if not info.min <= x <= info.max)
    raise WireError(f"{head}: element {k} is {flat[k]}, out of {dtype.name}'s range [{info.min}, {info.max}]")


def _bytes_items(head: str, flat: list[Any], base64_text: bool) -> np.ndarray:
    items: list[bytes] = []
    for k, x in enumerate(flat):
        if type(x) is not str:
            raise WireError(f"{head}: data takes strings; element {k} is {json.dumps(x)}")
        if base64_text:
            try:
                items.append(base64.b64decode(x, validate=True))
            except (binascii.Error, ValueError):
                raise WireError(f"{head}: element {k} is not base64 (content_type base64)") from None
        else:
            items.append(x.encode())
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _outputs(value: Any) -> tuple[list[str] | None, dict[str, bool] | None, frozenset[str]]:
    """The requested outputs' names, their binary flags and those asked for as base64."""
    if value is None:
        return None, None, frozenset()
    if not isinstance(value, list):
        raise WireError(f"the request's 'outputs' must be an array, given {_kind(value)}")
    names: list[str] = []
    binary: dict[str, bool] = {}
    b64: set[str] = set()
    for i, out in enumerate(value):
        o = _object(out, f"requested output #{i}")
        name = o.get("name")
        if not isinstance(name, str) or not name:
            raise WireError(f"requested output #{i} has no name")
        unknown = [k for k in o if k not in ("name", "parameters")]
        if unknown:
            raise WireError(f"requested output '{name}': unknown field '{unknown[0]}'; its fields are: name, parameters")
        params = _params(o.get("parameters", {}), functools.partial(_label, "requested output", name))
        for key, v in params.items():
            if key == "binary_data":
                if not isinstance(v, bool):
                    raise WireError(f"requested output '{name}': binary_data must be a boolean, given {_kind(v)}")
                binary[name] = v
            elif key == "classification":
                if v not in (0, False):
                    raise WireError(f"requested output '{name}': the classification extension is not supported; "
                                    "pipelines do top-k with classify.topk and classify.labels")
            elif key == "content_type":
                if v not in ("base64", "str"):
                    raise WireError(f"requested output '{name}': content_type {v!r} is not supported (base64 or str, for BYTES)")
                if v == "base64":
                    b64.add(name)
            elif key not in _SHM:
                raise WireError(f"requested output '{name}': unknown parameter '{key}' (binary_data, content_type)")
            else:
                raise WireError(f"requested output '{name}' uses shared memory ({key}), which this server does not support")
        names.append(name)
    return names or None, binary or None, frozenset(b64)


# -- responses -------------------------------------------------------------------------------------


def encode_response(result: InferResponse, request: RestRequest | None = None, *, binary_ok: bool = True) -> tuple[bytes, list[bytes]]:
    """The response's JSON and the binary outputs' bytes (in output order) that follow it.
    ``binary_ok=False`` (server-sent events) answers every output in JSON."""
    outputs = []
    chunks: list[bytes] = []
    default = request.binary_output if request is not None else False
    asked = request.binary if request is not None else None
    b64 = request.base64 if request is not None else frozenset()
    for name, value in result.outputs.items():
        arr = value if type(value) is np.ndarray else np.asarray(value)
        datatype = result.datatypes.get(name) or output_datatype(name, arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        binary = asked.get(name, default) if asked else default
        if binary and binary_ok:
            raw = tensor_bytes(name, arr, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_values(name, arr, datatype, base64_text=name in b64)
            if name in b64:
                entry["parameters"] = {"content_type": "base64"}
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        head["id"] = result.id
    if result.parameters:
        head["parameters"] = dict(result.parameters)
    head["outputs"] = outputs
    return json.dumps(head, separators=(",", ":")).encode(), chunks


def json_values(name: str, arr: np.ndarray, datatype: str, *, base64_text: bool = False) -> list[Any]:
    """An output's elements as JSON values, flat (C order). BYTES as UTF-8 text (or base64);
    raises :class:`WireError` for BYTES that are not UTF-8, and ``TypeError`` for an array that
    does not fit its datatype."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        out = []
        for k, item in enumerate(flat.tolist()):
            raw = item.encode() if isinstance(item, str) else bytes(item) if isinstance(item, bytes | bytearray | memoryview) else None
            if raw is None:
                raise TypeError(f"output '{name}' (BYTES): element {k} is {type(item).__name__}, expected bytes or str")
            if base64_text:
                out.append(base64.b64encode(raw).decode("ascii"))
                continue
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise WireError(f"output '{name}' (BYTES): element {k} is not UTF-8 text, so JSON cannot carry it; ask for it "
                                "as binary data (binary_data: true) or as base64 (content_type: base64)") from None
        return out
    if datatype == "BF16":
        return (bf16_bits(name, flat).astype(np.uint32) << np.uint32(16)).view(np.float32).tolist()
    target = DATATYPES.get(datatype)
    if target is None:
        raise TypeError(f"output '{name}': unknown datatype '{datatype}'")
    if flat.dtype != target and not np.can_cast(flat.dtype, target, "safe"):
        raise TypeError(f"output '{name}' is {flat.dtype}, which does not fit its datatype {datatype} ({target})")
    return flat.tolist()


# -- the generate extension ------------------------------------------------------------------------


def decode_generate(body: Any, decls: Sequence[_Decl], batched: bool) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """A generate request (``{"<input>": value, ..., "parameters": {...}}``) as inputs and
    parameters: each value shaped by its input's declaration (a scalar fills ``[1]``), with a
    batch of one in front when the model batches."""
    req = _object(body, "the generate request")
    params = parameters(req.get("parameters", {}))
    by_name = {d.name: d for d in decls}
    inputs: dict[str, np.ndarray] = {}
    for key, value in req.items():
        if key == "parameters":
            continue
        decl = by_name.get(key)
        if decl is None:
            raise WireError(f"'{key}' is not an input; the inputs are: {', '.join(by_name) or '(none)'}")
        dims, flat = _dims(key, value)
        declared = decl.shape
        if len(dims) > len(declared):
            raise WireError(f"input '{key}' is declared {list(declared)}; given a value of shape {list(dims)}")
        shape = [1] * (len(declared) - len(dims)) + dims
        if batched:
            shape = [1, *shape]
        inputs[key] = json_tensor(key, decl.datatype, shape, flat)
    return inputs, params or None


def _dims(name: str, value: Any) -> tuple[list[int], list[Any]]:
    """A (nested) array's shape and its elements, flat (a scalar: no dims, one element); a ragged
    array is an error."""
    if not isinstance(value, list):
        return [], [value]
    dims: list[int] = []
    x: Any = value
    while isinstance(x, list):
        dims.append(len(x))
        x = x[0] if x else None
    flat = _flatten(value)
    if len(flat) != math.prod(dims):
        raise WireError(f"input '{name}': the nested arrays are ragged (not all rows have the same length)")
    return dims, flat


def encode_generate(result: InferResponse, batched: bool) -> dict[str, Any]:
    """A generate response: model name and version, then each output by name — a scalar for one
    element, else a nested array (without the batch of one the request added)."""
    out: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        out["id"] = result.id
    for name, value in result.outputs.items():
        arr = value if type(value) is np.ndarray else np.asarray(value)
        if batched and arr.ndim and arr.shape[0] == 1:
            arr = arr[0]
        datatype = result.datatypes.get(name) or output_datatype(name, arr)
        values = json_values(name, arr, datatype)
        out[name] = values[0] if len(values) == 1 and arr.ndim <= 1 else _nest(values, arr.shape)
    return out


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if 0 in shape:
        return np.empty(shape).tolist()
    rows: list[Any] = flat
    for d in reversed(shape[1:]):
        rows = [rows[i:i + d] for i in range(0, len(rows), d)]
    return rows
