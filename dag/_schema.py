"""A JSON Schema (draft 2020-12) of the pipeline format, for editors (``twinpipe schema``).

It mirrors what ``load_spec`` accepts — the keys at every level, the datatypes, devices and
modes, exactly one of ``op``/``model``/``pipeline``/``python`` per step, the reference syntax —
and, for each registered op, its ``params`` (from the op's parameter kinds) and input names.
What a schema cannot see (unknown models, cycles, types) is ``validate``'s job.
"""

from __future__ import annotations

from typing import Any

from twinpipe.ops import get_op, list_ops

from ._datatypes import DATATYPES
from ._load import BATCHING, NAME_PATTERN, REF_PATTERN
from ._spec import STEP_KINDS

__all__ = ["json_schema"]

_ID = "https://twinpipe.dev/schema/pipeline.json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _decl(extra: dict[str, Any] | None = None, required: tuple[str, ...] = ("datatype", "shape")) -> dict[str, Any]:
    props: dict[str, Any] = {
        "datatype": _ref("datatype"),
        "shape": _ref("shape"),
        "description": {"type": "string"},
        **(extra or {}),
    }
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def _named(item: dict[str, Any], min_properties: int = 0) -> dict[str, Any]:
    """A mapping keyed by names (no dots) of ``item``."""
    out: dict[str, Any] = {"type": "object", "propertyNames": {"pattern": f"^{NAME_PATTERN}$"}, "additionalProperties": item}
    if min_properties:
        out["minProperties"] = min_properties
    return out


def _op_rules() -> list[dict[str, Any]]:
    """Per op: ``if op == name then params/inputs as the op declares``."""
    rules = []
    for name in list_ops():
        op = get_op(name)
        params: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: {**p.kind.json_schema(), "description": p.doc} for p in op.params},
            "additionalProperties": False,
        }
        required = [p.name for p in op.params if p.required]
        if required:
            params["required"] = required
        inputs = {
            "type": "object",
            "properties": {s.name: _ref("input_ref") for s in op.inputs},
            "required": [s.name for s in op.inputs],
            "additionalProperties": False,
        }
        then: dict[str, Any] = {"properties": {"params": params, "inputs": inputs}}
        if required:
            then["required"] = ["params"]
        rules.append({"if": {"properties": {"op": {"const": name}}, "required": ["op"]}, "then": then})
    return rules


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file, as a dict (``json.dumps`` it for an editor)."""
    ops = list_ops()
    step_props: dict[str, Any] = {
        "op": {"type": "string", "description": "a registered op, e.g. image.resize", "anyOf": [{"enum": ops}, {"type": "string"}]},
        "model": {"type": "string", "minLength": 1, "description": "a model of the repository, optionally name:version"},
        "pipeline": {"type": "string", "minLength": 1, "description": "a pipeline by name, or a path relative to this file"},
        "python": {"type": "string", "pattern": r"^.+:[A-Za-z_][A-Za-z0-9_.]*$", "description": "package.module:function or file.py:function"},
        "inputs": {"type": "object", "additionalProperties": _ref("input_ref"), "description": "argument name → tensor reference"},
        "params": {"type": "object", "description": "the op's parameters"},
        "outputs": _named(_decl(), 1),
        "device": {"enum": ["cpu", "cuda", "auto"]},
        "mode": {"enum": ["train", "serve"], "description": "run only in this mode; consumers give a default for the other"},
        "when": {**_ref("tensor_ref"), "description": "run only if this BOOL tensor is true"},
        "description": {"type": "string"},
    }
    kinds = [{"required": [k]} for k in STEP_KINDS]
    step = {
        "type": "object",
        "properties": step_props,
        "additionalProperties": False,
        "oneOf": kinds,
        "allOf": [
            {"if": {"required": ["python"]}, "then": {"required": ["outputs"]}, "else": {"not": {"required": ["outputs"]}}},
            *_op_rules(),
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _ID,
        "title": "twinpipe pipeline",
        "description": "A YAML pipeline of ops, models, nested pipelines and python steps (twinpipe.dag).",
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
            "description": {"type": "string"},
            "inputs": _named(_decl()),
            "outputs": _named(_decl({"from": _ref("input_ref"), "default": _ref("input_ref")}, ("datatype", "shape", "from")), 1),
            "batching": {
                "type": "object",
                "properties": {key: _batching_schema(kind, minimum) for key, (kind, minimum) in BATCHING.items()},
                "additionalProperties": False,
            },
            "steps": _named(_ref("step")),
        },
        "required": ["name", "outputs", "steps"],
        "additionalProperties": False,
        "$defs": {
            "datatype": {"enum": list(DATATYPES)},
            "shape": {
                "type": "array",
                "description": "the batch dimension (-1) first, then -1 for a dynamic dimension or a size",
                "prefixItems": [{"const": -1}],
                "items": {"type": "integer", "anyOf": [{"const": -1}, {"minimum": 1}]},
                "minItems": 1,
            },
            "tensor_ref": {"type": "string", "pattern": f"^{REF_PATTERN}$", "description": "<pipeline input> or <step>.<output>"},
            "input_ref": {
                "anyOf": [
                    _ref("tensor_ref"),
                    {
                        "type": "object",
                        "properties": {"from": _ref("tensor_ref"), "default": _ref("input_ref")},
                        "required": ["from"],
                        "additionalProperties": False,
                    },
                ]
            },
            "step": step,
        },
    }


def _batching_schema(kind: str, minimum: int) -> dict[str, Any]:
    if kind == "ints":
        return {"type": "array", "items": {"type": "integer", "minimum": minimum}}
    return {"type": "boolean"} if kind == "bool" else {"type": "integer", "minimum": minimum}
