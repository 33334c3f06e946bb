"""validate: steps resolved to what runs them, the graph, nested pipelines, python steps, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinpipe.dag._load import load_spec
from twinpipe.dag._resolved import ModelInfo, ValidPipeline
from twinpipe.dag._spec import Location, PipelineError, TensorDecl
from twinpipe.dag._validate import check, validate
from twinpipe.ops import image
from twinpipe.pipelines import asset_path

VALID = Path(__file__).parent / "corpus" / "valid"
_HERE = Location("models", 1, 1)


def _classifier(fn: Any = None) -> dict[str, ModelInfo]:
    return {
        "classifier": ModelInfo(
            "classifier",
            inputs=(TensorDecl("pixels", "FP32", (-1, 3, 224, 224), _HERE),),
            outputs=(TensorDecl("logits", "FP32", (-1, 1000), _HERE),),
            fn=fn,
        )
    }


def _errors(path: Path, text: str, **kw: Any) -> list[str]:
    path.write_text(text)
    with pytest.raises(PipelineError) as info:
        check(path, **kw)
    return [f"{d.location.line}:{d.location.column}: {d.message}" for d in info.value.diagnostics]


def test_op_steps_run_the_bound_ops_on_real_bytes() -> None:
    pipe = check(VALID / "imagenet_preprocess.yaml")
    data = asset_path("coffee.jpg").read_bytes()
    decode, pre = pipe.steps
    assert (decode.op_name, decode.outputs, decode.is_random) == ("image.decode", ("image",), False)
    assert decode.fn is not None and pre.fn is not None
    img = decode.fn(data=data)["image"]
    out = pre.fn(image=img)["tensor"]
    expected = image.resize_crop_normalize(image.decode(data), size=256, crop=224)
    assert out.dtype == np.float32 and out.shape == (3, 224, 224)
    np.testing.assert_array_equal(out, expected)


def test_graph_has_a_node_per_step_and_input_and_labelled_edges() -> None:
    pipe = check(VALID / "imagenet_preprocess.yaml")
    g = pipe.graph
    assert set(g.nodes) == {"input:image", "decode", "pre"}
    assert g.nodes["pre"]["kind"] == "op" and g.nodes["pre"]["target"] == "image.resize_crop_normalize"
    assert g.edges["input:image", "decode"]["tensor"] == "image"
    assert g.edges["decode", "pre"]["tensor"] == "decode.image"


def test_defaults_and_when_are_edges_too() -> None:
    pipe = check(VALID / "train_serve.yaml", search_paths=[VALID])
    g = pipe.graph
    assert g.edges["flip", "norm"]["tensors"] == ["flip.image"]
    assert g.edges["centered", "norm"]["tensor"] == "centered.image"
    assert g.edges["input:grayscale", "gray"]["kind"] == "when"


def test_random_ops_are_marked_and_run_in_both_modes() -> None:
    pipe = check(VALID / "train_serve.yaml")
    flip = pipe.step("flip")
    assert (flip.is_random, flip.op_name, flip.spec.mode) == (True, "image.random_flip", "train")
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert flip.fn is not None
    np.testing.assert_array_equal(flip.fn(image=img, mode="serve")["image"], img)
    flipped = [flip.fn(image=img, rng=seed)["image"] for seed in range(8)]
    assert any(np.array_equal(f, img[:, ::-1]) for f in flipped)


def test_python_step_calls_its_function_with_the_inputs_dict() -> None:
    pipe = check(VALID / "train_serve.yaml")
    measure = pipe.step("measure")
    assert measure.outputs == ("size",)
    img = image.decode(asset_path("coffee.jpg").read_bytes())
    assert measure.fn is not None
    np.testing.assert_array_equal(measure.fn(image=img)["size"], [img.shape[:2]])


def test_python_step_async_functions_and_their_results_are_checked(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "async def double(inputs, ctx):\n    return {'y': inputs['x'] * 2}\n"
        "def wrong(inputs, ctx):\n    return {'z': 1}\n"
        "def not_a_dict(inputs, ctx):\n    return [1]\n"
    )
    text = """\
name: bls
inputs: {x: {datatype: INT64, shape: [-1]}}
outputs: {y: {datatype: INT64, shape: [-1], from: f.y}}
steps:
  f: {python: steps.py:%s, inputs: {x: x}, outputs: {y: {datatype: INT64, shape: [-1]}}}
"""
    fns: dict[str, Callable[..., dict[str, Any]]] = {}
    for name in ("double", "wrong", "not_a_dict"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text % name)
        fn = check(path).step("f").fn
        assert fn is not None
        fns[name] = fn
    # an async step's callable returns the awaitable: the executor awaits it on the run's event loop
    assert asyncio.run(fns["double"](x=np.int64(4))) == {"y": 8}
    with pytest.raises(ValueError, match="python step 'f' did not return its declared output"):
        fns["wrong"](x=1)
    with pytest.raises(TypeError, match="python step 'f' returned list; expected a dict"):
        fns["not_a_dict"](x=1)


def test_model_steps_get_the_model_callable_and_nested_pipelines_their_plan() -> None:
    def run(**inputs: Any) -> dict[str, Any]:
        return {"logits": np.zeros((1, 1000), np.float32)}

    pipe = check(VALID / "classify.yaml", models=_classifier(run), search_paths=[VALID])
    pre, model = pipe.steps
    assert isinstance(pre.nested, ValidPipeline) and pre.nested.spec.name == "imagenet_preprocess"
    assert pre.outputs == ("pixels",) and pre.fn is None
    assert model.fn is run and model.outputs == ("logits",)
    assert str(pipe.types["model.logits"]) == "float32[1000]"


def test_nested_pipeline_by_relative_path(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "inner.yaml").write_text((VALID / "imagenet_preprocess.yaml").read_text())
    (tmp_path / "outer.yaml").write_text(
        "name: outer\ninputs: {image: {datatype: BYTES, shape: [-1]}}\n"
        "outputs: {pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: pre.pixels}}\n"
        "steps:\n  pre: {pipeline: sub/inner.yaml, inputs: {image: image}}\n"
    )
    pipe = check(tmp_path / "outer.yaml")
    assert pipe.step("pre").nested is not None
    assert str(pipe.types["pre.pixels"]) == "float32[3 224 224]"


def test_nested_pipeline_inputs_are_checked(tmp_path: Path) -> None:
    (tmp_path / "imagenet_preprocess.yaml").write_text((VALID / "imagenet_preprocess.yaml").read_text())
    text = (
        "name: outer\ninputs: {image: {datatype: BYTES, shape: [-1]}}\n"
        "outputs: {pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: pre.pixels}}\n"
        "steps:\n  pre: {pipeline: imagenet_preprocess, inputs: {img: image}}\n"
    )
    assert _errors(tmp_path / "outer.yaml", text) == ["5:49: pipeline 'imagenet_preprocess' has no input 'img'; did you mean 'image'?"]


def test_every_cycle_is_named(tmp_path: Path) -> None:
    text = """\
name: cycles
inputs: {image: {datatype: UINT8, shape: [-1, -1, -1, 3]}}
outputs: {image: {datatype: UINT8, shape: [-1, -1, -1, 3], from: c.image}}
steps:
  a: {op: image.flip, inputs: {image: c.image}}
  b: {op: image.flip, inputs: {image: a.image}}
  c: {op: image.flip, inputs: {image: b.image}}
  d: {op: image.flip, inputs: {image: d.image}}
  e: {op: image.flip, inputs: {image: image}}
"""
    assert _errors(tmp_path / "p.yaml", text) == [
        "5:3: the steps form a cycle: a → b → c → a",
        "8:3: the steps form a cycle: d → d",
    ]


def test_steps_of_one_mode_may_read_each_other_without_defaults(tmp_path: Path) -> None:
    text = """\
name: modes
inputs: {image: {datatype: UINT8, shape: [-1, -1, -1, 3]}}
outputs: {image: {datatype: UINT8, shape: [-1, -1, -1, 3], from: b.image, default: image}}
steps:
  a: {op: image.random_flip, mode: train, inputs: {image: image}}
  b: {op: image.flip, mode: train, inputs: {image: a.image}}
  c: {op: image.flip, mode: serve, inputs: {image: a.image}}
"""
    assert _errors(tmp_path / "p.yaml", text) == [
        "7:52: step 'a' runs only in train mode; give a default for serve mode: {from: a.image, default: ...}"
    ]


def test_an_empty_model_repository_is_named(tmp_path: Path) -> None:
    text = (VALID / "classify.yaml").read_text().replace("imagenet_preprocess", str(VALID / "imagenet_preprocess.yaml"))
    assert _errors(tmp_path / "classify.yaml", text, models={}) == [
        "12:12: unknown model 'classifier': the model repository is empty"
    ]


def test_validate_takes_a_spec_and_check_a_path() -> None:
    spec = load_spec(VALID / "letterbox.yaml")
    pipe = validate(spec)
    assert pipe.spec is spec
    assert [s.name for s in pipe.steps] == ["decode", "box", "scaled", "chw"]
    assert check(VALID / "letterbox.yaml").spec == spec


def test_a_nested_pipeline_may_not_have_inputs_named_rng_or_mode(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text(
        "name: inner\ninputs:\n  mode: {datatype: UINT8, shape: [-1, -1, -1, 3]}\n"
        "outputs:\n  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: f.image}\n"
        "steps:\n  f: {op: image.flip, inputs: {image: mode}}\n"
    )
    outer = tmp_path / "outer.yaml"
    outer.write_text(
        "name: outer\ninputs:\n  img: {datatype: UINT8, shape: [-1, -1, -1, 3]}\n"
        "outputs:\n  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: sub.out}\n"
        "steps:\n  sub: {pipeline: inner.yaml, inputs: {mode: img}}\n"
    )
    with pytest.raises(PipelineError, match="has an input named 'mode', a name reserved for nested pipelines"):
        validate(load_spec(outer))


def test_python_steps_naming_one_file_share_its_module(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "LOADS = []\nLOADS.append(1)\n\ndef first(inputs, ctx):\n    return {'n': len(LOADS)}\n\ndef second(inputs, ctx):\n    return {'n': len(LOADS)}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\ninputs:\n  x: {datatype: INT64, shape: [-1]}\n"
        "outputs:\n  a: {datatype: INT64, shape: [-1], from: one.n}\n  b: {datatype: INT64, shape: [-1], from: two.n}\n"
        "steps:\n"
        "  one: {python: steps.py:first, inputs: {x: x}, outputs: {n: {datatype: INT64, shape: [-1]}}}\n"
        "  two: {python: steps.py:second, inputs: {x: x}, outputs: {n: {datatype: INT64, shape: [-1]}}}\n"
    )
    valid = validate(load_spec(path))
    one, two = valid.step("one").fn, valid.step("two").fn
    assert one is not None and two is not None
    assert one(x=1) == {"n": 1}
    assert two(x=1) == {"n": 1}  # the module ran once, not once per step
