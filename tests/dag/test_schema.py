"""json_schema: a draft 2020-12 schema that accepts the valid pipelines and rejects malformed ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from twinpipe.dag._schema import json_schema
from twinpipe.ops import list_ops

VALID = sorted((Path(__file__).parent / "corpus" / "valid").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _imagenet() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "corpus" / "valid" / "imagenet_preprocess.yaml").read_text())
    return doc


def test_schema_is_draft_2020_12_and_serialisable() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(schema)) == schema
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["step"]["additionalProperties"] is False


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_pipeline_matches(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def _set(doc: dict[str, Any], keys: str, value: Any) -> dict[str, Any]:
    *path, last = keys.split("/")
    node = doc
    for k in path:
        node = node[k]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("keys", "value"),
    [
        ("stpes", {}),  # unknown top-level key
        ("inputs/image/datatype", "float32"),  # not a KServe datatype
        ("inputs/image/shape", [3, 224, 224]),  # no batch dimension first
        ("inputs/image/shape", [-1, 0]),  # a zero dimension
        ("outputs/pixels/from", "pre.tensor.x"),  # a reference with two dots
        ("steps/pre/device", "gpu"),
        ("steps/pre/mode", "training"),
        ("steps/pre/model", "resnet"),  # two kinds
        ("steps/pre/params/size", "big"),  # the op's own param kind
        ("steps/pre/params/sizes", 256),  # an unknown param of the op
        ("steps/pre/inputs/img", "decode.image"),  # an unknown argument of the op
        ("steps/pre/outputs", {"x": {"datatype": "FP32", "shape": [-1]}}),  # outputs on an op step
        ("steps/measure", {"python": "helpers.py:size", "inputs": {"image": "decode.image"}}),  # no outputs
        ("batching/max_batch", 8),
    ],
)
def test_malformed_documents_do_not_match(validator: jsonschema.Draft202012Validator, keys: str, value: Any) -> None:
    doc = _imagenet()
    assert validator.is_valid(doc)
    assert not validator.is_valid(_set(doc, keys, value))


def test_required_op_params_are_required(validator: jsonschema.Draft202012Validator) -> None:
    doc = _set(_imagenet(), "steps/small", {"op": "image.resize", "inputs": {"image": "decode.image"}})
    assert not validator.is_valid(doc)
    assert validator.is_valid(_set(doc, "steps/small/params", {"size": [224, 224]}))


def test_every_op_has_a_params_rule() -> None:
    rules = json_schema()["$defs"]["step"]["allOf"]
    consts = {r["if"]["properties"]["op"]["const"] for r in rules if "op" in r["if"].get("properties", {})}
    assert consts == set(list_ops())
