"""Static types: per-sample dtypes and shapes propagated through the ops' declared signatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinpipe.dag._infer import StepSignature, decl_type, infer_types
from twinpipe.dag._load import load_spec
from twinpipe.dag._resolved import TensorType
from twinpipe.dag._spec import Location, PipelineError, TensorDecl
from twinpipe.dag._validate import check, validate
from twinpipe.ops import get_op

VALID = Path(__file__).parent / "corpus" / "valid"


def _types(text: str) -> dict[str, str]:
    """``name: type`` of every tensor of a pipeline whose header is generic and steps are ``text``."""
    pipe = validate(load_spec("p.yaml", text))
    return {k: str(v) for k, v in pipe.types.items()}


def _errors(text: str) -> list[str]:
    with pytest.raises(PipelineError) as info:
        validate(load_spec("p.yaml", text))
    return [str(d) for d in info.value.diagnostics]


def _pipeline(input_decl: str, steps: str, output: str) -> str:
    return f"name: t\ninputs: {{x: {input_decl}}}\noutputs: {{y: {output}}}\nsteps:\n{steps}"


def test_declared_shapes_lose_their_batch_dimension() -> None:
    decl = TensorDecl("x", "UINT8", (-1, -1, -1, 3), Location("f", 1, 1))
    assert decl_type(decl) == TensorType(np.dtype(np.uint8), (-1, -1, 3))
    assert str(decl_type(TensorDecl("b", "BYTES", (-1,), Location("f", 1, 1)))) == "bytes[]"


def test_shipped_style_chains_are_typed() -> None:
    types = {k: str(v) for k, v in check(VALID / "letterbox.yaml").types.items()}
    assert types == {
        "image": "bytes[]",
        "decode.image": "uint8[? ? ?]",  # decode has no infer: its output spec
        "box.image": "uint8[640 640 3]",  # three fill values fix the channels
        "box.scale": "float32[2]",
        "box.offset": "float32[2]",
        "scaled.image": "float32[640 640 3]",
        "chw.image": "float32[3 640 640]",
    }


def test_static_dims_come_through_and_dynamic_ones_stay_dynamic() -> None:
    steps = (
        "  r: {op: image.rotate90, inputs: {image: x}}\n"
        "  s: {op: image.resize, inputs: {image: r.image}, params: {size: 64, fit: shorter}}\n"
        "  e: {op: image.resize, inputs: {image: s.image}, params: {size: [32, 48]}}\n"
    )
    types = _types(_pipeline("{datatype: UINT16, shape: [-1, 100, 200, 3]}", steps, "{datatype: UINT16, shape: [-1, 32, 48, 3], from: e.image}"))
    assert types["r.image"] == "uint16[200 100 3]"
    assert types["s.image"] == "uint16[128 64 3]"  # static input: the op's own arithmetic
    dyn = _types(_pipeline("{datatype: UINT16, shape: [-1, -1, -1, 3]}", steps, "{datatype: UINT16, shape: [-1, 32, 48, 3], from: e.image}"))
    assert (dyn["r.image"], dyn["s.image"], dyn["e.image"]) == ("uint16[? ? 3]", "uint16[? ? 3]", "uint16[32 48 3]")


def test_an_op_constraint_fixes_an_unknown_dimension() -> None:
    steps = "  n: {op: image.normalize, inputs: {image: x}, params: {mean: [0.5, 0.5, 0.5], std: [0.2]}}\n"
    types = _types(_pipeline("{datatype: UINT8, shape: [-1, -1, -1, -1]}", steps, "{datatype: FP32, shape: [-1, -1, -1, 3], from: n.image}"))
    assert types["n.image"] == "float32[? ? 3]"


def test_stand_in_sizes_satisfy_ops_that_need_even_or_divisible_sizes() -> None:
    steps = "  c: {op: image.convert_color, inputs: {image: x}, params: {conversion: nv12_to_rgb}}\n"
    dyn = _types(_pipeline("{datatype: UINT8, shape: [-1, -1, -1, 1]}", steps, "{datatype: UINT8, shape: [-1, -1, -1, 3], from: c.image}"))
    assert dyn["c.image"] == "uint8[? ? 3]"
    fixed = _types(_pipeline("{datatype: UINT8, shape: [-1, 720, 640, 1]}", steps, "{datatype: UINT8, shape: [-1, 480, 640, 3], from: c.image}"))
    assert fixed["c.image"] == "uint8[480 640 3]"


def test_a_probe_that_fails_on_known_sizes_is_reported() -> None:
    steps = "  c: {op: image.convert_color, inputs: {image: x}, params: {conversion: nv12_to_rgb}}\n"
    errors = _errors(_pipeline("{datatype: UINT8, shape: [-1, 721, 640, 1]}", steps, "{datatype: UINT8, shape: [-1, -1, -1, 3], from: c.image}"))
    assert errors == [
        "p.yaml:5:48: step 'c': image.convert_color: conversion 'nv12_to_rgb' needs a YUV 4:2:0 frame of shape [H*3/2 W 1] "
        "with an even image height H and width W (the input height a multiple of 3), got shape [721, 640, 1] "
        "(image height 480.667, width 640) (input uint8[721 640 1] from pipeline input 'x')"
    ]


def test_dtype_rank_and_output_mismatches_are_reported_at_the_consumer() -> None:
    steps = (
        "  h: {op: image.to_dtype, inputs: {image: x}, params: {dtype: float64}}\n"
        "  r: {op: image.resize, inputs: {image: h.image}, params: {size: 8}}\n"
    )
    errors = _errors(_pipeline("{datatype: UINT8, shape: [-1, -1, -1, 3]}", steps, "{datatype: FP64, shape: [-1, 8, 8, 3], from: h.image}"))
    assert errors == [
        "p.yaml:6:41: step 'r': input 'image' of image.resize: expected one of uint8, uint16, float32, found float64[? ? 3] from step 'h'"
    ]
    errors = _errors(_pipeline("{datatype: UINT8, shape: [-1, -1, -1, 3]}", "  r: {op: image.resize, inputs: {image: x}, params: {size: 8}}\n", "{datatype: UINT8, shape: [-1, 8, 8], from: r.image}"))
    assert errors == ["p.yaml:3:57: output 'y': expected UINT8 [-1, 8, 8], found UINT8 [-1, 8, 8, 3] from step 'r'"]


def test_when_needs_a_bool_tensor_and_accepts_one() -> None:
    text = (
        "name: t\ninputs: {x: {datatype: UINT8, shape: [-1, -1, -1, 3]}, flag: {datatype: BOOL, shape: [-1]}}\n"
        "outputs: {y: {datatype: UINT8, shape: [-1, -1, -1, 3], from: f.image, default: x}}\n"
        "steps:\n  f: {op: image.flip, when: flag, inputs: {image: x}}\n"
    )
    assert _types(text)["f.image"] == "uint8[? ? 3]"
    assert _errors(text.replace("BOOL", "INT32")) == [
        "p.yaml:5:29: step 'f': when: must name a BOOL tensor, found INT32 [-1] from pipeline input 'flag'"
    ]


def test_defaults_merge_their_types() -> None:
    types = {k: str(v) for k, v in check(VALID / "train_serve.yaml").types.items()}
    assert types["gray.image"] == "uint8[224 224 1]"
    assert types["norm.image"] == "float32[224 224 3]"
    assert types["measure.size"] == "int64[2]"


def test_infer_types_skips_unresolved_steps() -> None:
    spec = load_spec("p.yaml", _pipeline("{datatype: UINT8, shape: [-1, -1, -1, 3]}",
                                         "  a: {op: image.flip, inputs: {image: x}}\n  b: {op: image.flip, inputs: {image: a.image}}\n",
                                         "{datatype: UINT8, shape: [-1, -1, -1, 3], from: b.image}"))
    flip = get_op("image.flip")
    types, problems = infer_types(spec, {"b": StepSignature("image.flip", flip, flip.validate_params({}))}, ["a", "b"])
    assert problems == []
    assert "a.image" not in types
    assert str(types["b.image"]) == "?[? ? ?]"  # its input is untyped: what the op's output spec says
    assert str(types["x"]) == "uint8[? ? 3]"
