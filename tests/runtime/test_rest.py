"""The KServe v2 HTTP/REST codec (runtime/_rest.py): JSON and binary-data request bodies → NumPy,
responses → JSON and binary, the generate extension; every malformed body is an error naming the
tensor, what was expected and what was given."""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import numpy as np
import pytest

from twinpipe.dag import DATATYPES
from twinpipe.runtime._engine import InferResponse
from twinpipe.runtime._rest import decode_generate, decode_request, encode_generate, encode_response, json_tensor
from twinpipe.runtime._wire import WireError

NUMERIC = [dt for dt in DATATYPES if dt not in ("BYTES", "BF16")]


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def _random(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype == "BYTES":
        return np.array([bytes(rng.integers(0, 256, rng.integers(0, 9), dtype=np.uint8)) for _ in range(int(np.prod(shape)))],
                        dtype=object).reshape(shape)
    if datatype == "BF16":
        return rng.integers(0, 2**16, shape, dtype=np.uint16)
    dt = DATATYPES[datatype]
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)


def _body(inputs: list[dict[str, Any]], binary: list[bytes] = (), **extra: Any) -> tuple[bytes, int | None]:  # type: ignore[assignment]
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + b"".join(binary), (len(head) if binary else None)


def _raw(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(x)) + x for x in arr.reshape(-1))
    return arr.astype(DATATYPES[datatype].newbyteorder("<")).tobytes()


@pytest.mark.parametrize("datatype", [*DATATYPES])
def test_every_datatype_decodes_from_binary_data_bit_for_bit(datatype: str) -> None:
    rng = _rng()
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 7)))
    x, y = _random(datatype, shape, rng), _random(datatype, (3,), rng)
    body, length = _body([{"name": "x", "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": len(_raw(x, datatype))}},
                          {"name": "y", "shape": [3], "datatype": datatype, "parameters": {"binary_data_size": len(_raw(y, datatype))}}],
                         [_raw(x, datatype), _raw(y, datatype)])
    req = decode_request(body, length)
    assert list(req.inputs) == ["x", "y"]
    for name, want in (("x", x), ("y", y)):
        got = req.inputs[name]
        assert got.shape == want.shape
        if datatype == "BYTES":
            assert got.tolist() == want.tolist()
        else:
            assert got.dtype == (np.uint16 if datatype == "BF16" else DATATYPES[datatype]) and np.array_equal(got, want)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_datatype_decodes_from_json_data_flat_or_nested(datatype: str) -> None:
    rng = _rng()
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 6)))
    x = _random(datatype, shape, rng)
    for data in (x.reshape(-1).tolist(), x.tolist()):
        req = decode_request(*_body([{"name": "x", "shape": list(shape), "datatype": datatype, "data": data}]))
        got = req.inputs["x"]
        assert got.dtype == DATATYPES[datatype] and got.shape == shape and np.array_equal(got, x)


def test_bf16_json_values_round_to_the_nearest_bfloat16() -> None:
    values = [1.0, 1.00390625, 1.005859375, -3.14159, 65504.0, 1e-3]
    got = json_tensor("x", "BF16", [6], values)
    as_float = (got.astype(np.uint32) << 16).view(np.float32)
    assert got.dtype == np.uint16
    # exact bfloat16 values stay; others land on one of the two nearest
    assert as_float[0] == 1.0 and as_float[1] == 1.0 and as_float[2] == 1.0078125
    assert abs(as_float[3] - -3.14159) < 0.0079 and as_float[4] == 65536.0


def test_bytes_take_utf8_text_or_base64() -> None:
    rng = _rng()
    blobs = [bytes(rng.integers(0, 256, 5, dtype=np.uint8)) for _ in range(3)]
    req = decode_request(*_body([{"name": "t", "shape": [2], "datatype": "BYTES", "data": ["héllo", ""]},
                                 {"name": "b", "shape": [3], "datatype": "BYTES", "parameters": {"content_type": "base64"},
                                  "data": [base64.b64encode(b).decode() for b in blobs]}]))
    assert req.inputs["t"].tolist() == ["héllo".encode(), b""] and req.inputs["b"].tolist() == blobs


@pytest.mark.parametrize(("tensor", "message"), [
    ({"name": "x", "shape": [3], "datatype": "INT32", "data": [1, 2]}, "input 'x' (INT32 [3]): expected 3 values in data, given 2"),
    ({"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2.5]}, "data takes integers; element 1 is 2.5"),
    ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 200]}, "element 1 is 200, out of int8's range [-128, 127]"),
    ({"name": "x", "shape": [2], "datatype": "UINT64", "data": [1, -1]}, "element 1 is -1, out of uint64's range"),
    ({"name": "x", "shape": [2], "datatype": "INT64", "data": [-1, 2**63]}, "element 1 is 9223372036854775808, out of int64's range"),
    ({"name": "x", "shape": [2], "datatype": "INT32", "data": [True, 1]}, "data takes integers; element 0 is true"),
    ({"name": "x", "shape": [2], "datatype": "BOOL", "data": [True, 1]}, "data takes true or false; element 1 is 1"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": [1, "2"]}, "data takes numbers; element 1 is \"2\""),
    ({"name": "x", "shape": [1], "datatype": "FP16", "data": [1e6]}, "element 0 is 1000000.0, out of FP16's range"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [None]}, "data takes numbers; element 0 is null"),
    ({"name": "x", "shape": [1], "datatype": "BYTES", "data": [5]}, "data takes strings; element 0 is 5"),
    ({"name": "x", "shape": [1], "datatype": "BYTES", "data": ["!!"], "parameters": {"content_type": "base64"}}, "element 0 is not base64"),
    ({"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}, "unknown datatype 'FP8'"),
    ({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}, "negative dimension"),
    ({"name": "x", "shape": [1.0], "datatype": "FP32", "data": [1]}, "needs a 'shape': an array of integers"),
    ({"name": "x", "shape": [1], "datatype": "FP32"}, "input 'x' has no data"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": 1}, "'data' must be an array, given a number"),
    ({"shape": [1], "datatype": "FP32", "data": [1]}, "input #0 has no name"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "contents": {}}, "unknown field 'contents'"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"shared_memory_region": "r"}}, "uses shared memory"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}, "both 'data' and binary_data_size"),
])
def test_malformed_json_inputs_name_what_was_wrong(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError) as info:
        decode_request(*_body([tensor]))
    assert message in str(info.value)


def test_binary_data_sizes_must_account_for_the_whole_body() -> None:
    x = np.arange(4, dtype=np.float32)
    tensor = {"name": "x", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
    body, length = _body([tensor], [x.tobytes()])
    assert np.array_equal(decode_request(body, length).inputs["x"], x)
    with pytest.raises(WireError, match="binary_data_size is 16, but only 12 bytes of binary data remain"):
        decode_request(body[:-4], length)
    with pytest.raises(WireError, match="the body holds 3 bytes after the inputs' binary data"):
        decode_request(body + b"abc", length)
    with pytest.raises(WireError, match="Inference-Header-Content-Length is 999, but the body holds"):
        decode_request(body, 999)
    with pytest.raises(WireError, match="is not (valid|UTF-8) JSON: .*needs the Inference-Header-Content-Length header"):
        decode_request(body)  # the binary tail read as JSON
    short = {**tensor, "parameters": {"binary_data_size": 12}}
    body, length = _body([short], [x.tobytes()[:12]])
    with pytest.raises(WireError, match=r"input 'x' \(FP32 \[4\]\): expected 16 bytes of raw contents, given 12"):
        decode_request(body, length)


def test_request_fields_and_parameters_are_checked() -> None:
    ok = [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]
    req = decode_request(*_body(ok, id="r7", parameters={"binary_data_output": True, "sequence_id": 4, "mine": "a"},
                                outputs=[{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}]))
    assert (req.id, req.parameters, req.outputs, req.binary_output, req.binary) == ("r7", {"sequence_id": 4, "mine": "a"},
                                                                                    ["y", "z"], True, {"y": False})
    assert decode_request(*_body(ok)).parameters is None
    cases = [
        (_body(ok, model="m"), "unknown field 'model' in the inference request"),
        (_body(ok, id=3), "'id' must be a string"),
        (_body(ok, parameters={"p": [1]}), "parameter 'p' must be a boolean, number or string, given an array"),
        (_body(ok, parameters={"binary_data_output": 1}), "'binary_data_output' must be a boolean"),
        (_body(ok, outputs=[{"name": "y", "parameters": {"classification": 3}}]), "classification extension is not supported"),
        (_body(ok, outputs=[{"name": "y", "parameters": {"binary": True}}]), "unknown parameter 'binary'"),
        ((b'{"inputs": {}}', None), "'inputs' must be an array, given an object"),
        ((b"[1]", None), "the inference request must be a JSON object, given an array"),
        ((b"\x80{}", None), "is not UTF-8 JSON"),
        ((b'{"inputs": [] ', None), "is not valid JSON: Expecting ',' delimiter at line 1 column 15"),
        ((b"[" * 100_000, None), "nests JSON arrays or objects too deeply"),
    ]
    for (body, length), message in cases:
        with pytest.raises(WireError) as info:
            decode_request(body, length)
        assert message in str(info.value)


def _response(outputs: dict[str, Any], datatypes: dict[str, str]) -> InferResponse:
    return InferResponse("m", "1", "id9", outputs, datatypes)


@pytest.mark.parametrize("datatype", [*DATATYPES])
def test_responses_carry_every_datatype_in_binary_and_in_json(datatype: str) -> None:
    rng = _rng()
    shape = (2, int(rng.integers(1, 5)))
    y = _random(datatype, shape, rng)
    if datatype == "BYTES":  # JSON carries text
        y = np.array([("ä" * int(n)).encode() for n in rng.integers(0, 4, y.size)], dtype=object).reshape(shape)
    result = _response({"y": y}, {"y": datatype})
    req = decode_request(*_body([], parameters={"binary_data_output": True}))
    head, chunks = encode_response(result, req)
    meta = json.loads(head)
    out = meta["outputs"][0]
    assert meta["model_name"] == "m" and meta["id"] == "id9" and out["shape"] == list(shape)
    assert out["parameters"]["binary_data_size"] == len(chunks[0]) and chunks[0] == _raw(y, datatype)
    head, chunks = encode_response(result, decode_request(*_body([])))
    data = json.loads(head)["outputs"][0]["data"]
    assert not chunks and len(data) == y.size
    if datatype == "BYTES":
        assert [d.encode() for d in data] == y.reshape(-1).tolist()
    elif datatype == "BF16":
        # the bfloat16 values as floats, exactly (NaN payloads aside: JSON has one NaN)
        np.testing.assert_array_equal(np.array(data, np.float32), (y.reshape(-1).astype(np.uint32) << 16).view(np.float32))
    else:
        assert np.array_equal(np.array(data, dtype=DATATYPES[datatype]), y.reshape(-1))


def test_per_output_binary_flags_override_the_request_default_and_order_the_bytes() -> None:
    a, b, c = np.arange(3, dtype=np.int32), np.ones(2, np.float64), np.array([b"\xff\x00"], dtype=object)
    result = _response({"a": a, "b": b, "c": c}, {"a": "INT32", "b": "FP64", "c": "BYTES"})
    req = decode_request(*_body([], parameters={"binary_data_output": True},
                                outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}, {"name": "c"}]))
    head, chunks = encode_response(result, req)
    outs = json.loads(head)["outputs"]
    assert [("data" in o) for o in outs] == [False, True, False] and chunks == [a.tobytes(), struct.pack("<I", 2) + b"\xff\x00"]
    # non-UTF-8 bytes cannot go in JSON: an error that says how to ask, or base64 when asked
    with pytest.raises(WireError, match="element 0 is not UTF-8 text.*binary_data: true.*content_type: base64"):
        encode_response(_response({"c": c}, {"c": "BYTES"}), decode_request(*_body([])))
    req = decode_request(*_body([], outputs=[{"name": "c", "parameters": {"content_type": "base64"}}]))
    out = json.loads(encode_response(_response({"c": c}, {"c": "BYTES"}), req)[0])["outputs"][0]
    assert out["parameters"] == {"content_type": "base64"} and base64.b64decode(out["data"][0]) == b"\xff\x00"
    with pytest.raises(TypeError, match="does not fit its datatype INT32"):
        encode_response(_response({"a": a.astype(np.float64)}, {"a": "INT32"}))


class _Decl:
    def __init__(self, name: str, datatype: str, shape: tuple[int, ...]) -> None:
        self.name, self.datatype, self.shape = name, datatype, shape


def test_generate_requests_shape_values_by_the_declarations() -> None:
    decls = [_Decl("text_input", "BYTES", (1,)), _Decl("n", "INT32", ()), _Decl("v", "FP32", (-1, 2))]
    inputs, params = decode_generate({"text_input": "hi", "n": 3, "v": [[1, 2], [3, 4.5]], "parameters": {"t": 0.5}}, decls, batched=True)
    assert inputs["text_input"].shape == (1, 1) and inputs["text_input"][0, 0] == b"hi"
    assert inputs["n"].shape == (1,) and inputs["n"].dtype == np.int32 and inputs["n"][0] == 3
    assert inputs["v"].shape == (1, 2, 2) and np.array_equal(inputs["v"][0], [[1, 2], [3, 4.5]]) and params == {"t": 0.5}
    inputs, params = decode_generate({"v": [1, 2]}, decls, batched=False)
    assert inputs["v"].shape == (1, 2) and params is None
    for body, message in [({"nope": 1}, "'nope' is not an input; the inputs are: text_input, n, v"),
                          ({"v": [[1, 2], [3]]}, "ragged"), ({"n": [[1]]}, "input 'n' is declared [] ; given".replace(" ;", ";")),
                          ({"n": 1.5}, "data takes integers; element 0 is 1.5"), ("text", "must be a JSON object")]:
        with pytest.raises(WireError) as info:
            decode_generate(body, decls, batched=True)
        assert message in str(info.value)


def test_generate_responses_are_scalars_or_nested_arrays_without_the_batch() -> None:
    result = _response({"text_output": np.array([[b"ok"]], dtype=object), "scores": np.arange(6, dtype=np.float32).reshape(1, 2, 3),
                        "empty": np.zeros((1, 2, 0), np.int64)}, {"text_output": "BYTES", "scores": "FP32", "empty": "INT64"})
    out = encode_generate(result, batched=True)
    assert out == {"model_name": "m", "model_version": "1", "id": "id9", "text_output": "ok",
                   "scores": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "empty": [[], []]}
    assert encode_generate(_response({"n": np.array([7], np.int32)}, {"n": "INT32"}), batched=False)["n"] == 7
