"""The tensor codec against tritonclient: its requests decode exactly, our responses read back exactly."""

from __future__ import annotations

import os
import re
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import tritonclient.grpc as tc
from tritonclient.grpc import _utils as tc_utils
from tritonclient.grpc import service_pb2 as tsv

from twinpipe.runtime._proto import kserve_pb2 as kp
from twinpipe.runtime._wire import (
    DATATYPES,
    RequestOptions,
    WireError,
    decode_inputs,
    decode_parameters,
    encode_outputs,
    encode_parameters,
    parse_sequence,
    request_options,
    requested_outputs,
)

SHAPES = [(), (1,), (0,), (3, 0, 2), (2, 3, 5), (7, 1, 3, 1)]


def _gen() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def _random(datatype: str, shape: tuple[int, ...], g: np.random.Generator) -> np.ndarray:
    """Random non-trivial data as tritonclient takes it (BF16 as ml_dtypes.bfloat16)."""
    if datatype == "BYTES":
        items = [g.bytes(int(g.integers(0, 12))) for _ in range(int(np.prod(shape)))]
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    if datatype == "BOOL":
        return np.asarray(g.random(shape) < 0.5)
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        x = np.asarray(g.standard_normal(shape) * 100 + 1)
        return x.astype(ml_dtypes.bfloat16 if datatype == "BF16" else DATATYPES[datatype])
    info = np.iinfo(DATATYPES[datatype])
    return np.asarray(g.integers(info.min, info.max, size=shape, dtype=DATATYPES[datatype], endpoint=True))


def _bits(arr: np.ndarray) -> np.ndarray:
    return arr.view(np.uint16) if arr.dtype == ml_dtypes.bfloat16 else arr


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        np.testing.assert_array_equal(_bits(a), _bits(b))


def _tc_request(tensors: dict[str, tuple[str, np.ndarray]], outputs: list[str] | None = None, **kw: Any) -> kp.ModelInferRequest:
    """Build with tritonclient's own classes, serialize with its service_pb2, parse with ours."""
    inputs = [tc.InferInput(n, list(a.shape), dt).set_data_from_numpy(a) for n, (dt, a) in tensors.items()]
    outs = [tc.InferRequestedOutput(n) for n in outputs] if outputs else None
    args = {"sequence_id": 0, "sequence_start": False, "sequence_end": False, "priority": 0, "timeout": None, "parameters": None} | kw
    req = tc_utils._get_inference_request("m", inputs, "", "", outs, **args)
    assert isinstance(req, tsv.ModelInferRequest)
    return kp.ModelInferRequest.FromString(req.SerializeToString())


def _tc_result(response: kp.ModelInferResponse) -> tc.InferResult:
    return tc.InferResult(tsv.ModelInferResponse.FromString(response.SerializeToString()))


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_tritonclient_inputs_decode_exactly(datatype: str) -> None:
    g = _gen()
    tensors = {f"t{i}": (datatype, _random(datatype, s, g)) for i, s in enumerate(SHAPES)}
    decoded = decode_inputs(_tc_request(tensors))
    assert list(decoded) == list(tensors)
    for name, (_, arr) in tensors.items():
        assert decoded[name].dtype == DATATYPES[datatype], name
        _same(decoded[name], arr)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_our_outputs_read_back_in_tritonclient(datatype: str) -> None:
    g = _gen()
    arrays = {f"o{i}": _random(datatype, s, g) for i, s in enumerate(SHAPES)}
    resp = kp.ModelInferResponse(model_name="m")
    encode_outputs(resp, {n: _bits(a) for n, a in arrays.items()}, dict.fromkeys(arrays, datatype), None)
    assert [(o.name, o.datatype, tuple(o.shape)) for o in resp.outputs] == [(n, datatype, a.shape) for n, a in arrays.items()]
    result = _tc_result(resp)
    for name, arr in arrays.items():
        _same(result.as_numpy(name), arr)


def test_mixed_inputs_in_one_request_and_fixed_size_views_share_the_request_bytes() -> None:
    g = _gen()
    tensors = {dt: (dt, _random(dt, (2, 3), g)) for dt in DATATYPES}
    req = _tc_request(tensors)
    decoded = decode_inputs(req)
    for dt, arr in decoded.items():
        _same(arr, tensors[dt][1])
        if dt == "BYTES":
            continue
        base = arr
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base, bytes), dt  # a view of the message's bytes: no copy
        assert not arr.flags.writeable
        assert np.shares_memory(arr, np.frombuffer(base, dtype=np.uint8))


def test_typed_contents_decode_for_every_type_that_has_them() -> None:
    g = _gen()
    fields = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
              "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
              "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
    req = tsv.ModelInferRequest(model_name="m")
    expected = {}
    for dt, field in fields.items():
        for shape in [(2, 3), (0, 4), ()]:
            arr = _random(dt, shape, g)
            t = req.inputs.add(name=f"{dt}{shape}", datatype=dt, shape=shape)
            getattr(t.contents, field).extend(arr.reshape(-1).tolist())
            expected[t.name] = arr
    decoded = decode_inputs(kp.ModelInferRequest.FromString(req.SerializeToString()))
    for name, arr in expected.items():
        assert decoded[name].dtype == arr.dtype, name
        _same(decoded[name], arr)


def test_requested_outputs_in_the_order_asked() -> None:
    g = _gen()
    req = _tc_request({"x": ("FP32", _random("FP32", (2,), g))}, outputs=["c", "a"])
    assert requested_outputs(req) == ["c", "a"]
    assert requested_outputs(_tc_request({"x": ("FP32", _random("FP32", (2,), g))})) is None
    outs = {"a": _random("INT32", (3,), g), "b": _random("FP64", (1, 2), g), "c": np.array(["x", "\u00e9"], dtype=object)}
    resp = kp.ModelInferResponse()
    encode_outputs(resp, outs, {"a": "INT32", "b": "FP64", "c": "BYTES"}, requested_outputs(req))
    assert [o.name for o in resp.outputs] == ["c", "a"] and len(resp.raw_output_contents) == 2
    result = _tc_result(resp)
    assert result.as_numpy("c").tolist() == [b"x", "\u00e9".encode()] and result.as_numpy("b") is None
    _same(result.as_numpy("a"), outs["a"])


def test_outputs_from_views_casts_and_string_arrays() -> None:
    g = _gen()
    base = _random("FP32", (4, 6), g)
    outs = {
        "t": base.T,  # not contiguous
        "s": base[::2, 1::3],
        "widened": _random("INT16", (5,), g),  # int16 fits INT64: a safe cast
        "u": np.array(["ab", "", "\u00fcber"]),
        "S": np.array([b"ab", b"c"]),
        "buffers": np.array([bytearray(b"q\x00"), memoryview(b"r")], dtype=object),
        "dt": _random("UINT8", (2, 2), g),  # no datatype given: from the dtype
    }
    resp = kp.ModelInferResponse()
    encode_outputs(resp, outs, {"t": "FP32", "s": "FP32", "widened": "INT64"}, None)
    r = _tc_result(resp)
    _same(r.as_numpy("t"), base.T)
    _same(r.as_numpy("s"), base[::2, 1::3])
    assert r.as_numpy("widened").dtype == np.int64 and r.as_numpy("widened").tolist() == outs["widened"].tolist()
    assert r.as_numpy("u").tolist() == [b"ab", b"", "\u00fcber".encode()] and r.as_numpy("S").tolist() == [b"ab", b"c"]
    assert r.as_numpy("buffers").tolist() == [b"q\x00", b"r"]
    assert r.get_output("dt").datatype == "UINT8" and r.get_output("u").datatype == "BYTES"


def test_bf16_from_floats_rounds_to_nearest_even_like_torch() -> None:
    g = _gen()
    x = (g.standard_normal(4000) * 10.0 ** g.integers(-30, 30, 4000)).astype(np.float32)
    bits = x.view(np.uint32)
    ties = ((bits[:500] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)).view(np.float32)  # exactly half way
    special = np.array([np.inf, -np.inf, 3.4e38, -3.4e38, 0.0, -0.0, 1e-45, np.nan, -np.nan], dtype=np.float32)
    x = np.concatenate([x, ties, special])
    for arr in (x, x.astype(np.float64)):
        resp = kp.ModelInferResponse()
        encode_outputs(resp, {"y": arr}, {"y": "BF16"}, None)
        got = _tc_result(resp).as_numpy("y").view(np.uint16)
        want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        nan = np.isnan(x)
        np.testing.assert_array_equal(got[~nan], want[~nan])
        assert ((got[nan] & 0x7F80) == 0x7F80).all() and (got[nan] & 0x7F).all()  # still NaN
        assert ((got[nan] >> 15) == (x[nan].view(np.uint32) >> 31)).all()  # sign kept
    resp = kp.ModelInferResponse()
    encode_outputs(resp, {"y": x.astype(ml_dtypes.bfloat16)}, {"y": "BF16"}, None)
    np.testing.assert_array_equal(_tc_result(resp).as_numpy("y").view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_parameters_round_trip_and_request_options() -> None:
    g = _gen()
    seq = int(g.integers(1, 2**62))
    custom = {"note": "hi", "flag": True, "count": -int(g.integers(1, 100)), "ratio": float(g.random())}
    req = _tc_request({"x": ("INT8", _random("INT8", (2,), g))}, sequence_id=seq, sequence_start=True, priority=3, timeout=2500, parameters=custom)
    params = decode_parameters(req.parameters)
    assert params == custom | {"sequence_id": seq, "sequence_start": True, "sequence_end": False, "priority": 3, "timeout": 2500}
    assert request_options(req.parameters) == RequestOptions(seq, True, False, 3, 2500)
    assert parse_sequence(req.parameters) == (seq, True, False)
    named = _tc_request({"x": ("INT8", _random("INT8", (2,), g))}, sequence_id="user-7", sequence_end=True)
    assert request_options(named.parameters) == RequestOptions("user-7", False, True, 0, 0)
    assert request_options(kp.ModelInferRequest().parameters) == RequestOptions(None, False, False, 0, 0)
    back = kp.ModelInferResponse()
    values = params | {"big": 2**64 - 1, "np_int": np.int32(-4), "np_float": np.float32(0.5), "np_bool": np.bool_(True)}
    encode_parameters(back.parameters, values)
    assert back.parameters["big"].uint64_param == 2**64 - 1 and back.parameters["np_bool"].bool_param
    assert decode_parameters(back.parameters) == {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}
    with pytest.raises(ValueError, match=r"^parameter 'huge' = 18446744073709551616 does not fit int64 or uint64$"):
        encode_parameters(back.parameters, {"huge": 2**64})
    with pytest.raises(TypeError, match=r"^parameter 'l' is list; parameters are bool, int, float or str$"):
        encode_parameters(back.parameters, {"l": [1]})


def _req(*tensors: tuple[Any, ...], **typed: list[Any]) -> kp.ModelInferRequest:
    """Inputs ``(name, datatype, shape[, raw])``; ``typed`` fills each input's typed contents."""
    req = kp.ModelInferRequest()
    for name, dt, shape, *rest in tensors:
        raw = rest[0] if rest else None
        t = req.inputs.add(name=name, datatype=dt, shape=shape)
        for field, vals in typed.items():
            getattr(t.contents, field).extend(vals)
        if raw is not None:
            req.raw_input_contents.append(raw)
    return req


def _bytes(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


ALL = ", ".join(DATATYPES)
INPUT_ERRORS = [
    (_req(("pixels", "FP32", [2, 3, 4, 4], b"\x01" * 380)), "input 'pixels' (FP32 [2, 3, 4, 4]): expected 384 bytes of raw contents, given 380"),
    (_req(("x", "FP32", [2, -1], b"")), "input 'x' (FP32 [2, -1]): negative dimension in the shape"),
    (_req(("x", "FP8", [2], b"ab")), f"input 'x' (FP8 [2]): unknown datatype 'FP8'; datatypes are: {ALL}"),
    (_req(("", "FP32", [1], b"abcd")), "input #0 has no name"),
    (_req(("x", "INT8", [1], b"a"), ("x", "INT8", [1], b"b")), "input 'x' given twice"),
    (_req(("a", "INT8", [1], b"a"), ("b", "INT8", [1], None)), "raw_input_contents holds 1 entries for 2 inputs; give raw contents for every input or for none"),
    (_req(("x", "INT32", [1], b"abcd"), int_contents=[5]), "input 'x' (INT32 [1]): both raw contents and typed contents given; use one"),
    (_req(("b", "BOOL", [3], b"\x00\x01\x02")), "input 'b' (BOOL [3]): BOOL elements are one byte, 0 or 1; given the byte value 2"),
    (_req(("s", "BYTES", [2, 2], _bytes(b"ab", b"") + b"\x01\x00")), "input 's' (BYTES [2, 2]): element 3 of 4 has a cut-off length prefix (2 bytes remain in the raw contents)"),
    (_req(("s", "BYTES", [2], _bytes(b"ab") + b"\x09\x00\x00\x00abc")), "input 's' (BYTES [2]): element 2 of 2 claims 9 bytes, only 3 remain in the raw contents"),
    (_req(("s", "BYTES", [3], _bytes(b"ab", b"c"))), "input 's' (BYTES [3]): expected 3 length-prefixed elements in the raw contents, given 2"),
    (_req(("s", "BYTES", [1], _bytes(b"ab", b"c"))), "input 's' (BYTES [1]): expected 1 length-prefixed elements in the raw contents, given more (5 bytes left over after element 1)"),
    (_req(("s", "BYTES", [0], b"\x00")), "input 's' (BYTES [0]): expected 0 length-prefixed elements in the raw contents, given more (1 bytes left over after element 0)"),
    # absurd shapes are refused by arithmetic on Python ints, before anything is allocated
    (_req(("s", "BYTES", [2**40, 2**40], _bytes(b"z"))), f"input 's' (BYTES [{2**40}, {2**40}]): expected {2**80} length-prefixed elements in the raw contents, given 1"),
    (_req(("f", "FP64", [2**62, 2**62], b"\x00" * 8)), f"input 'f' (FP64 [{2**62}, {2**62}]): expected {2**124 * 8} bytes of raw contents, given 8"),
    (_req(("h", "FP16", [2]), fp32_contents=[1.0, 2.0]), "input 'h' (FP16 [2]): FP16 has no typed contents; send it in raw_input_contents"),
    (_req(("h", "BF16", [1])), "input 'h' (BF16 [1]): BF16 has no typed contents; send it in raw_input_contents"),
    (_req(("x", "INT32", [2]), fp32_contents=[1.0, 2.0]), "input 'x' (INT32 [2]): contents given in fp32_contents; INT32 takes int_contents"),
    (_req(("x", "INT64", [2, 3]), int64_contents=[1, 2, 3, 4, 5]), "input 'x' (INT64 [2, 3]): expected 6 values in int64_contents, given 5"),
    (_req(("x", "FP32", [2])), "input 'x' (FP32 [2]): expected 2 values in fp32_contents, given 0"),
    (_req(("x", "INT8", [2]), int_contents=[-7, 300]), "input 'x' (INT8 [2]): int_contents holds 300, out of INT8's range [-128, 127]"),
    (_req(("x", "INT16", [2]), int_contents=[-40000, 1]), "input 'x' (INT16 [2]): int_contents holds -40000, out of INT16's range [-32768, 32767]"),
    (_req(("x", "UINT8", [1]), uint_contents=[256]), "input 'x' (UINT8 [1]): uint_contents holds 256, out of UINT8's range [0, 255]"),
]


@pytest.mark.parametrize(("request_", "message"), INPUT_ERRORS, ids=[m[:40] for _, m in INPUT_ERRORS])
def test_bad_inputs_name_the_tensor_expected_and_given(request_: kp.ModelInferRequest, message: str) -> None:
    with pytest.raises(WireError, match=f"^{re.escape(message)}$"):
        decode_inputs(request_)


def test_errors_are_invalid_argument_and_shape_limits_are_wire_errors() -> None:
    assert issubclass(WireError, ValueError) and WireError.code == "INVALID_ARGUMENT"
    with pytest.raises(WireError, match=r"^input 'z' \(FP32 \[0, 4611686018427387904\]\): NumPy cannot hold this shape \(.+\)$"):
        decode_inputs(_req(("z", "FP32", [0, 2**62], b"")))
    with pytest.raises(WireError, match=r"^input 'z' \(INT8 \[0, 1, .*\]\): NumPy cannot hold this shape \(.*64.*\)$"):
        decode_inputs(_req(("z", "INT8", [0] + [1] * 70, b"")))
    shm = _req(("x", "FP32", [1], None))
    shm.inputs[0].parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(WireError, match=r"^input 'x' uses shared memory \(shared_memory_region\), which this server does not support; send the data in the request$"):
        decode_inputs(shm)


def test_bad_outputs() -> None:
    outs = {"a": np.zeros(2, np.float32) + 1, "b": np.ones(1, np.float64)}
    with pytest.raises(WireError, match=r"^unknown output 'nope' requested; outputs are: a, b$"):
        encode_outputs(kp.ModelInferResponse(), outs, {}, ["a", "nope"])
    with pytest.raises(WireError, match=r"^output 'a' requested twice$"):
        encode_outputs(kp.ModelInferResponse(), outs, {}, ["a", "a"])
    with pytest.raises(TypeError, match=r"^output 'b' is float64, which does not fit its datatype FP32 \(float32\)$"):
        encode_outputs(kp.ModelInferResponse(), outs, {"b": "FP32"}, None)
    with pytest.raises(TypeError, match=r"^output 'n' \(BYTES\): element 1 is int, expected bytes or str$"):
        encode_outputs(kp.ModelInferResponse(), {"n": np.array([b"x", 3], dtype=object)}, {"n": "BYTES"}, None)
    with pytest.raises(TypeError, match=r"^output 'i' is int32; BF16 takes uint16 bits, bfloat16 or a floating array$"):
        encode_outputs(kp.ModelInferResponse(), {"i": np.ones(2, np.int32)}, {"i": "BF16"}, None)
    with pytest.raises(TypeError, match=r"^output 'c' has dtype complex64, which has no KServe datatype$"):
        encode_outputs(kp.ModelInferResponse(), {"c": np.ones(2, np.complex64)}, {}, None)
    with pytest.raises(TypeError, match=r"^output 'a': unknown datatype 'FP8'$"):
        encode_outputs(kp.ModelInferResponse(), outs, {"a": "FP8"}, None)
    with pytest.raises(WireError, match=r"^unknown output 'a' requested; outputs are: \(none\)$"):
        encode_outputs(kp.ModelInferResponse(), {}, {}, ["a"])


def _params(**kinds: tuple[str, Any]) -> Any:
    req = kp.ModelInferRequest()
    for key, (kind, value) in kinds.items():
        if kind:
            setattr(req.parameters[key], kind, value)
        else:
            req.parameters[key].Clear()  # present, with no value
    return req.parameters


PARAM_ERRORS = [
    (_params(sequence_id=("int64_param", 4), sequence_start=("string_param", "true")), "parameter 'sequence_start' must be a bool, given a string"),
    (_params(sequence_id=("int64_param", 4), sequence_end=("int64_param", 1)), "parameter 'sequence_end' must be a bool, given an int64"),
    (_params(sequence_id=("double_param", 4.0)), "parameter 'sequence_id' must be an integer or a string, given a double"),
    (_params(sequence_id=("bool_param", True)), "parameter 'sequence_id' must be an integer or a string, given a bool"),
    (_params(sequence_id=("int64_param", -5)), "parameter 'sequence_id' must not be negative, given -5"),
    (_params(sequence_start=("bool_param", True)), "parameter 'sequence_start' given without a sequence_id"),
    (_params(sequence_id=("string_param", ""), sequence_end=("bool_param", True)), "parameter 'sequence_end' given without a sequence_id"),
    (_params(priority=("int64_param", -1)), "parameter 'priority' must not be negative, given -1"),
    (_params(priority=("string_param", "high")), "parameter 'priority' must be an integer, given a string"),
    (_params(timeout=("double_param", 1.5)), "parameter 'timeout' must be an integer, given a double"),
    (_params(timeout=("", None)), "parameter 'timeout' must be an integer, given no value"),
]


@pytest.mark.parametrize(("params", "message"), PARAM_ERRORS, ids=[m[:40] for _, m in PARAM_ERRORS])
def test_bad_parameters(params: Any, message: str) -> None:
    with pytest.raises(WireError, match=f"^{re.escape(message)}$"):
        request_options(params)


def test_options_accept_both_integer_kinds_and_decode_rejects_empty_values() -> None:
    p = _params(sequence_id=("uint64_param", 2**64 - 1), priority=("int64_param", 2), timeout=("uint64_param", 9))
    assert request_options(p) == RequestOptions(2**64 - 1, False, False, 2, 9)
    with pytest.raises(WireError, match=r"^parameter 'x' has no value$"):
        decode_parameters(_params(x=("", None)))
