"""Model config validation: every problem reported at once, each at its file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from twinpipe.dag import PipelineError
from twinpipe.models._config import ModelConfig, VersionPolicy, load_config


def _write(tmp_path: Path, text: str, folder: str = "tiny") -> Path:
    path = tmp_path / folder / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _errors(path: Path) -> list[tuple[int, int, str]]:
    with pytest.raises(PipelineError) as info:
        load_config(path)
    for d in info.value.diagnostics:
        assert d.location.file == str(path)
    return [(d.location.line, d.location.column, d.message) for d in info.value.diagnostics]


GOOD = """\
name: tiny
backend: torchscript
max_batch_size: 8
inputs:
  pixels: {datatype: FP32, shape: [3, -1, -1]}
outputs:
  logits: {datatype: FP32, shape: [5]}
  feats: {datatype: BF16, shape: [4]}
device: cuda
instances: {count: 2, device: cpu}
version_policy: {specific: [1, 3]}
dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4, 8], max_queue_size: 64, preserve_ordering: true}
warmup: {batch_size: 2}
"""
SEQUENCE = """\
name: tiny
backend: torchscript
max_batch_size: 8
inputs:
  pixels: {datatype: FP32, shape: [3]}
outputs:
  logits: {datatype: FP32, shape: [5]}
sequence_batching:
  strategy: oldest
  max_sequence_idle_us: 1000000
  state:
    hidden: {input: h_in, output: h_out, datatype: FP32, shape: [16], initial: 0.5}
"""


def test_a_full_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert isinstance(cfg, ModelConfig)
    assert (cfg.name, cfg.backend, cfg.max_batch_size, cfg.device) == ("tiny", "torchscript", 8, "cuda")
    assert [(d.name, d.datatype, d.shape) for d in cfg.inputs] == [("pixels", "FP32", (3, -1, -1))]
    assert [d.name for d in cfg.outputs] == ["logits", "feats"]
    assert (cfg.inputs[0].location.line, cfg.inputs[0].location.column) == (5, 3)
    assert (cfg.instance_count, cfg.instance_device) == (2, "cpu")
    assert cfg.version_policy == VersionPolicy("specific", versions=(1, 3))
    assert cfg.dynamic_batching == {"max_queue_delay_us": 500, "preferred_batch_sizes": [4, 8], "max_queue_size": 64, "preserve_ordering": True}
    assert cfg.warmup == {"batch_size": 2}
    assert cfg.where("device").line == 9


def test_a_sequence_config_declares_its_state(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, SEQUENCE))
    assert cfg.sequence_batching is not None and cfg.sequence_batching["strategy"] == "oldest"
    assert cfg.sequence_batching["state"]["hidden"] == {"input": "h_in", "output": "h_out", "datatype": "FP32", "shape": (16,), "initial": 0.5}
    assert [(d.name, d.shape) for d in cfg.model_inputs] == [("pixels", (3,)), ("h_in", (16,))]
    assert [d.name for d in cfg.model_outputs] == ["logits", "h_out"]


def test_sections_are_checked_against_each_other(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: tiny
        backend: torchscript
        max_batch_size: 0
        inputs:
          x: {datatype: FP32, shape: [3]}
        outputs:
          y: {datatype: FP32, shape: [3]}
        dynamic_batching: {preferred_batch_sizes: [4], priority_levels: 2, default_priority: 3}
        sequence_batching:
          state:
            h: {input: x, output: h_out, datatype: FP32, shape: [-1, 2]}
            g: {input: g_in, output: y, datatype: FP32, shape: [2]}
        """)
    errors = _errors(path)
    text = "\n".join(m for _, _, m in errors)
    assert (10, 3, "a model has dynamic_batching or sequence_batching, not both (a sequence model batches its sequences itself)") in errors
    assert (8, 19, "dynamic_batching needs max_batch_size >= 1 (0 means the model takes no batch dimension)") in errors
    assert "dynamic_batching: default_priority 3 is above priority_levels 2" in text
    assert "state 'h': input 'x' is also a declared input" in text
    assert "state 'h': shape [-1, 2] must be fixed" in text
    assert "state 'g': output 'y' is also a declared output" in text
    path = _write(tmp_path, SEQUENCE.replace("max_batch_size: 8", "max_batch_size: 2") + "  max_queue_delay_us: 100\n", "other")
    path.write_text(path.read_text().replace("name: tiny", "name: other"))
    assert load_config(path).sequence_batching["max_queue_delay_us"] == 100  # type: ignore[index]
    big = _write(tmp_path, GOOD.replace("max_batch_size: 8", "max_batch_size: 6"), "big")
    big.write_text(big.read_text().replace("name: tiny", "name: big"))
    assert [m for _, _, m in _errors(big)] == ["dynamic_batching: preferred_batch_sizes [8] exceed max_batch_size 6"]


def test_version_policies_select_versions() -> None:
    assert VersionPolicy("latest", 2).select([3, 1, 7]) == [3, 7]
    assert VersionPolicy("all").select([3, 1]) == [1, 3]
    assert VersionPolicy("specific", versions=(1, 5)).select([1, 2]) == [1]


def test_every_error_is_reported_at_once_with_its_location(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: other
        backend: torchscrpt
        max_batch_size: -1
        inputs:
          pixels: {datatype: float32, shape: [3, 0]}
          bad: {datatype: FP32}
        outputs:
          logits: {dtype: FP32, shape: [5]}
        devise: cpu
        instances: {count: 0}
        version_policy: {latest: 1, specific: [1]}
        dynamic_batching: {max_queue_delay: 5, preserve_ordering: 1}
        sequence_batching: {strategy: newest}
        warmup: {batch: 1}
    """)
    errors = _errors(path)
    expected = [
        (1, 7, "name 'other' must equal the model's folder name 'tiny'"),
        (2, 10, "backend must be one of torchscript, torch_export, onnx, python, found 'torchscrpt'; did you mean 'torchscript'?"),
        (3, 17, "max_batch_size must be an integer >= 0, found -1"),
        (5, 22, "unknown datatype 'float32'; did you mean 'FP32'?"),
        (5, 38, "shape [3, 0]: dimension 1 is 0"),
        (6, 8, "missing required key 'shape' in input 'bad'"),
        (8, 12, "unknown key 'dtype' in output 'logits'; did you mean 'datatype'?"),
        (9, 1, "unknown key 'devise' in the model config; did you mean 'device'?"),
        (10, 20, "instances: count must be an integer >= 1, found 0"),
        (11, 17, "version_policy takes one of latest: or specific:, not both"),
        (12, 20, "unknown key 'max_queue_delay' in dynamic_batching; did you mean 'max_queue_delay_us'?"),
        (12, 59, "dynamic_batching: preserve_ordering must be true or false, found 1"),
        (13, 31, "sequence_batching: strategy must be one of direct, oldest, found 'newest'"),
        (13, 20, "a model has dynamic_batching or sequence_batching, not both"),
        (14, 10, "unknown key 'batch' in warmup; did you mean 'batch_size'?"),
    ]
    for line, col, text in expected:
        assert any(e[:2] == (line, col) and text in e[2] for e in errors), (line, col, text, errors)
    assert len(errors) == len(expected)


def test_yaml_syntax_error_has_its_location(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: tiny\ninputs: {a: [1, 2}\n")
    [(line, _col, message)] = _errors(path)
    assert line == 2 and message.startswith("invalid YAML")


def test_python_backend_needs_a_factory_and_others_refuse_one(tmp_path: Path) -> None:
    base = "name: tiny\ninputs: {x: {datatype: FP32, shape: [1]}}\noutputs: {y: {datatype: FP32, shape: [1]}}\n"
    errors = _errors(_write(tmp_path, base + "backend: python\n"))
    assert errors == [(4, 10, 'backend python needs factory: "module:function"')]
    errors = _errors(_write(tmp_path, base + "backend: torchscript\nfactory: mod:build\n"))
    assert errors == [(5, 10, "factory: applies to backend python only, not torchscript")]
    errors = _errors(_write(tmp_path, base + "backend: python\nfactory: not a factory\n"))
    assert errors == [(5, 10, "factory must be \"module:function\", found 'not a factory'")]


def test_missing_keys_duplicates_and_empty_files(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "name: tiny\nname: tiny\n"))
    assert (2, 1, "duplicate key 'name' in the model config; YAML would keep only the last one") in errors
    assert {e[2] for e in errors if e[:2] == (1, 1)} == {
        f"missing required key {k!r} in the model config" for k in ("backend", "inputs", "outputs")}
    assert _errors(_write(tmp_path, "")) == [(1, 1, "the model config is empty")]


def test_decoupled_is_for_python_models_without_batchers(tmp_path: Path) -> None:
    stream = _write(tmp_path, """\
        name: tiny
        backend: python
        factory: m:build
        decoupled: true
        inputs: {n: {datatype: INT32, shape: [1]}}
        outputs: {k: {datatype: INT32, shape: [1]}}
        """)
    assert load_config(stream).decoupled is True
    assert load_config(_write(tmp_path, GOOD)).decoupled is False  # the default: one answer per request
    bad = _write(tmp_path, """\
        name: tiny
        backend: torchscript
        max_batch_size: 4
        decoupled: true
        inputs: {n: {datatype: INT32, shape: [1]}}
        outputs: {k: {datatype: INT32, shape: [1]}}
        dynamic_batching: {}
        """)
    assert _errors(bad) == [
        (4, 12, "decoupled: true needs backend python (a function that yields responses); torchscript models answer once"),
        (7, 19, "a decoupled model answers each request with its own stream of responses; it takes no dynamic_batching"),
    ]
    word = _write(tmp_path, stream.read_text().replace("decoupled: true", "decoupled: often"))
    assert _errors(word) == [(4, 12, "decoupled must be true or false, found 'often'")]
