"""load_spec: YAML → PipelineSpec with locations; every structural problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinpipe.dag._load import load_spec
from twinpipe.dag._spec import Location, PipelineError, TensorRef

EXAMPLE = """\
name: imagenet_preprocess
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: pre.tensor}
steps:
  decode:
    op: image.decode
    inputs: {data: image}
    params: {color: rgb}
  flip:
    op: image.random_flip
    mode: train
    inputs: {image: decode.image}
  pre:
    op: image.resize_crop_normalize
    device: cpu
    inputs: {image: {from: flip.image, default: decode.image}}
    params: {size: 256, crop: 224}
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(PipelineError) as info:
        load_spec("p.yaml", text)
    return [str(d) for d in info.value.diagnostics]


def test_spec_carries_every_part_and_its_location() -> None:
    spec = load_spec("p.yaml", EXAMPLE)
    assert spec.name == "imagenet_preprocess"
    assert spec.path == "p.yaml"
    assert [d.name for d in spec.inputs] == ["image"]
    assert spec.inputs[0].datatype == "BYTES" and spec.inputs[0].shape == (-1,)
    out = spec.outputs[0]
    assert (out.shape, out.location) == ((-1, 3, 224, 224), Location("p.yaml", 5, 3))
    assert out.source == TensorRef("pre", "tensor", Location("p.yaml", 5, 60))
    assert [s.name for s in spec.steps] == ["decode", "flip", "pre"]
    decode, flip, pre = spec.steps
    assert (decode.kind, decode.target, decode.params) == ("op", "image.decode", {"color": "rgb"})
    assert decode.location == Location("p.yaml", 7, 3)
    assert decode.inputs["data"] == TensorRef(None, "image", Location("p.yaml", 9, 20))
    assert decode.locations["op"] == Location("p.yaml", 8, 9)
    assert decode.locations["params.color"] == Location("p.yaml", 10, 14)
    assert decode.locations["inputs.data"] == Location("p.yaml", 9, 14)
    assert (flip.mode, flip.device, flip.locations["mode"]) == ("train", "auto", Location("p.yaml", 13, 11))
    assert pre.device == "cpu"
    ref = pre.inputs["image"]
    assert (ref.step, ref.name, ref.location) == ("flip", "image", Location("p.yaml", 18, 28))
    assert ref.default == TensorRef("decode", "image", Location("p.yaml", 18, 49))
    assert pre.params == {"size": 256, "crop": 224}


def test_file_is_read_from_disk_and_reported_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE)
    spec = load_spec(path)
    assert spec.path == str(path)
    assert spec.steps[0].location.file == str(path)
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.yaml")


def test_yaml_tags_that_build_python_objects_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "created"
    text = EXAMPLE.replace("{color: rgb}", f"{{color: !!python/object/apply:os.mkdir [{str(marker)!r}]}}")
    errors = _errors(text)
    assert len(errors) == 1
    assert errors[0].startswith("p.yaml:10:21: invalid YAML: could not determine a constructor for the tag")
    assert not marker.exists()


def test_duplicate_keys_are_found_at_any_depth() -> None:
    text = EXAMPLE.replace("{color: rgb}", "{color: rgb, exif: true, color: bgr}")
    assert _errors(text) == ["p.yaml:10:38: duplicate key 'color' (first written at line 10); YAML would keep only the last one"]


def test_anchors_and_merge_keys_work_and_own_keys_override() -> None:
    text = EXAMPLE.replace("params: {size: 256, crop: 224}", "params: {<<: &base {size: 320, crop: 224}, size: 256}")
    text = text.replace("params: {color: rgb}", "params: {color: rgb, exif: true}")
    pre = load_spec("p.yaml", text).step("pre")
    assert pre.params == {"size": 256, "crop": 224}


def test_every_structural_problem_is_reported_in_one_error() -> None:
    text = (
        EXAMPLE.replace("datatype: BYTES", "datatype: bytes")
        .replace("mode: train", "mode: both")
        .replace("params: {color: rgb}", "parms: {color: rgb}")
        .replace("decode.image}}", "decode.image.x}}")
    )
    with pytest.raises(PipelineError) as info:
        load_spec("p.yaml", text)
    message = str(info.value)
    assert message.startswith("4 errors in pipeline:\n")
    assert [str(d.location) for d in info.value.diagnostics] == ["p.yaml:3:21", "p.yaml:10:5", "p.yaml:13:11", "p.yaml:18:49"]
    assert "did you mean 'BYTES'?" in message
    assert "step 'decode': unknown key 'parms' in the step; did you mean 'params'?" in message


def test_a_misspelt_step_kind_is_reported_with_a_guess() -> None:
    errors = _errors(EXAMPLE.replace("    op: image.decode", "    opp: image.decode"))
    assert errors == [
        "p.yaml:7:3: step 'decode': the step has none of op, model, pipeline, python; give exactly one of them",
        "p.yaml:8:5: step 'decode': unknown key 'opp' in the step; did you mean 'op'?",
    ]


def test_python_steps_declare_their_outputs() -> None:
    text = EXAMPLE + (
        "  measure:\n"
        "    python: helpers.py:sizes\n"
        "    inputs: {image: decode.image}\n"
        "    outputs:\n"
        "      size: {datatype: INT64, shape: [-1, 2]}\n"
    )
    measure = load_spec("p.yaml", text).step("measure")
    assert (measure.kind, measure.target) == ("python", "helpers.py:sizes")
    assert [(d.name, d.datatype, d.shape) for d in measure.outputs] == [("size", "INT64", (-1, 2))]
    assert measure.locations["outputs.size"] == Location("p.yaml", 24, 7)


def test_batching_and_description_are_kept() -> None:
    text = "description: the ImageNet chain\nbatching: {max_batch_size: 8, preferred_batch_sizes: [2, 4]}\n" + EXAMPLE
    spec = load_spec("p.yaml", text)
    assert spec.description == "the ImageNet chain"
    assert spec.batching == {"max_batch_size": 8, "preferred_batch_sizes": [2, 4]}
    assert _errors("batching: {max_batch_size: 0}\n" + EXAMPLE) == ["p.yaml:1:28: batching: max_batch_size must be an integer >= 1, found 0"]


def test_batching_takes_the_dynamic_batchers_settings() -> None:
    full = ("batching: {max_batch_size: 8, max_queue_delay_us: 0, max_queue_size: 64, timeout_us: 5000,"
            " priority_levels: 2, default_priority: 2, preserve_ordering: true}\n")
    assert load_spec("p.yaml", full + EXAMPLE).batching == {
        "max_batch_size": 8, "max_queue_delay_us": 0, "max_queue_size": 64, "timeout_us": 5000,
        "priority_levels": 2, "default_priority": 2, "preserve_ordering": True}
    bad = "batching: {max_batch_size: 4, preferred_batch_sizes: [8], preserve_ordering: 1, priority_levels: 2, default_priority: 3, max_queue_size: -1}\n"
    assert _errors(bad + EXAMPLE) == [
        "p.yaml:1:54: batching: preferred_batch_sizes [8] exceed max_batch_size 4",
        "p.yaml:1:78: batching: preserve_ordering must be true or false, found 1",
        "p.yaml:1:119: batching: default_priority 3 is above priority_levels 2 (1 is the highest)",
        "p.yaml:1:138: batching: max_queue_size must be an integer >= 1, found -1",
    ]


def test_when_takes_a_plain_reference() -> None:
    text = EXAMPLE.replace("    mode: train\n", "    when: decode.flag\n")
    assert load_spec("p.yaml", text).step("flip").when == TensorRef("decode", "flag", Location("p.yaml", 13, 11))
    errors = _errors(EXAMPLE.replace("    mode: train\n", "    when: {from: a.b, default: c}\n"))
    assert errors == ["p.yaml:13:11: step 'flip': expected a tensor reference ('<pipeline input>' or '<step>.<output>'), found a mapping"]


def test_yaml_booleans_are_not_names() -> None:
    assert _errors("name: yes\n" + EXAMPLE.split("\n", 1)[1]) == ["p.yaml:1:7: name must be non-empty text, found True"]


def test_syntax_errors_give_the_position() -> None:
    assert _errors("name: a\nsteps: [\n") == [
        "p.yaml:3:1: invalid YAML: expected the node content, but found '<stream end>' (while parsing a flow node at line 3)"
    ]


def test_yaml_words_read_as_booleans_get_a_hint() -> None:
    text = EXAMPLE.replace("  image: {datatype: BYTES", "  on: {datatype: BYTES").replace("{data: image}", "{data: on}")
    assert _errors(text) == [
        "p.yaml:3:3: a key in inputs must be text, found True (YAML reads on as a boolean; write 'on' in quotes for the name)",
        "p.yaml:9:20: step 'decode': expected a tensor reference ('<pipeline input>', '<step>.<output>' or {from: ..., default: ...}), "
        "found True (YAML reads on as a boolean; write 'on' in quotes for the name)",
    ]


def test_sections_that_are_not_mappings_name_their_step() -> None:
    assert _errors(EXAMPLE.replace("inputs: {data: image}", "inputs: image")) == [
        "p.yaml:9:13: step 'decode': inputs must be a mapping, found 'image'"
    ]
