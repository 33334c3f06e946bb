"""Reading a pipeline file into a :class:`PipelineSpec`, every part carrying its source location.

YAML is composed with PyYAML's *safe* loader into nodes (which know their line and column) and
walked here, so that every structural problem — syntax, unknown or duplicate keys, missing keys,
bad values — is reported at once, each with its ``file:line:column``. Values under ``params:`` are
built by the safe constructor: plain YAML only, never Python objects.

Locations: a step's ``locations`` maps ``"op"`` / ``"model"`` / ``"pipeline"`` / ``"python"`` /
``"device"`` / ``"mode"`` / ``"when"`` to where their *value* is written, ``"inputs"`` /
``"params"`` / ``"outputs"`` to their key, and ``"inputs.<arg>"`` / ``"params.<name>"`` /
``"outputs.<name>"`` to the member's key. A reference's own ``location`` is where it is written.

Shapes: every declared shape (pipeline inputs and outputs, python step outputs) starts with the
batch dimension, which must be ``-1``; ``[-1]`` is one scalar per sample (e.g. one encoded image).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ._datatypes import DATATYPES
from ._spec import STEP_KINDS, Diagnostic, Location, PipelineError, PipelineSpec, StepSpec, TensorDecl, TensorRef

__all__ = ["load_spec", "NAME_PATTERN", "REF_PATTERN", "TOP_KEYS", "STEP_KEYS", "BATCHING_KEYS"]

#: a pipeline input, step or declared output name (no dots: references are ``step.output``)
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
_OUTPUT_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]*"  # outputs may start with a digit (model outputs)
#: a tensor reference: ``<pipeline input>`` or ``<step>.<output>``
REF_PATTERN = rf"{NAME_PATTERN}(\.{_OUTPUT_NAME})?"
_NAME = re.compile(NAME_PATTERN + r"\Z")
_REF = re.compile(rf"({NAME_PATTERN})(?:\.({_OUTPUT_NAME}))?\Z")
_PIPELINE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")

TOP_KEYS = ("name", "description", "inputs", "outputs", "batching", "steps")
STEP_KEYS = (*STEP_KINDS, "inputs", "params", "outputs", "device", "mode", "when", "description")
DECL_KEYS = ("datatype", "shape", "description")
OUTPUT_KEYS = ("datatype", "shape", "from", "default", "description")
REF_KEYS = ("from", "default")
# batching: key → (kind, minimum); the same settings as a model's dynamic_batching
BATCHING: dict[str, tuple[str, int]] = {
    "max_batch_size": ("int", 1), "max_queue_delay_us": ("int", 0), "preferred_batch_sizes": ("ints", 1),
    "max_queue_size": ("int", 1), "timeout_us": ("int", 1), "priority_levels": ("int", 1),
    "default_priority": ("int", 1), "preserve_ordering": ("bool", 0),
}
BATCHING_KEYS = tuple(BATCHING)
DEVICES = ("cpu", "cuda", "auto")
MODES = ("train", "serve")
_MERGE = "tag:yaml.org,2002:merge"
# lower-case spellings people write for a KServe datatype: "fp32", "float32", "uint8", …
_DATATYPE_HINTS = {k.lower(): k for k in DATATYPES} | {
    dt.name: k for k, dt in DATATYPES.items() if k not in ("BF16", "BYTES")
} | {"float": "FP32", "int": "INT64", "bytes": "BYTES", "string": "BYTES", "str": "BYTES", "bfloat16": "BF16"}


def load_spec(path: str | os.PathLike[str], text: str | None = None) -> PipelineSpec:
    """Parse the pipeline file at ``path`` (or ``text``, reported as ``path``) into a spec.

    Raises :class:`PipelineError` listing every structural problem found, and ``OSError`` when
    the file cannot be read. Ops, models, references and types are checked by ``validate``.
    """
    file = os.fspath(path)
    if text is None:
        with open(file, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            where = Location(file, line, column)
            raise PipelineError([Diagnostic(where, f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x})")]) from None
    return _Reader(file, text).read()


def _close(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1)
    return found[0] if found else None


class _Reader:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.yaml = yaml.SafeLoader(text)
        self.diagnostics: list[Diagnostic] = []

    # -- reporting -----------------------------------------------------------------------------

    def loc(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, where: Node | Location, message: str, step: str | None = None) -> None:
        loc = where if isinstance(where, Location) else self.loc(where)
        self.diagnostics.append(Diagnostic(loc, message, step))

    def yaml_error(self, e: yaml.YAMLError) -> None:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        loc = Location(self.file, mark.line + 1, mark.column + 1) if mark else Location(self.file, 1, 1)
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and getattr(e, "problem_mark", None) is not None:
            context = f"{context} at line {cmark.line + 1}"
        if "constructor for the tag" in problem:
            context = "the safe loader builds plain YAML values only"
        self.error(loc, f"invalid YAML: {problem}" + (f" ({context})" if context else ""))

    # -- the document --------------------------------------------------------------------------

    def read(self) -> PipelineSpec:
        try:
            root = self.yaml.get_single_node()
        except yaml.YAMLError as e:
            self.yaml_error(e)
            raise PipelineError(self.diagnostics) from None
        finally:
            self.yaml.dispose()
        top = Location(self.file, 1, 1)
        if root is None:
            raise PipelineError([Diagnostic(top, "the file is empty; a pipeline is a mapping with name, outputs and steps")])
        self.find_duplicates(root, set())
        if not isinstance(root, MappingNode):
            self.error(root, f"a pipeline file is a mapping (name:, inputs:, outputs:, steps:), found {self.found(root)}")
            raise PipelineError(self.diagnostics)
        keys = self.keys(root, TOP_KEYS, "at the top level", required=("name", "outputs", "steps"))
        name = self.string(keys["name"], "name", pattern=_PIPELINE_NAME) if "name" in keys else ""
        desc = self.string(keys["description"], "description") if "description" in keys else ""
        inputs = self.decls(keys.get("inputs"), "input", DECL_KEYS, ("datatype", "shape"))
        outputs = self.decls(keys.get("outputs"), "output", OUTPUT_KEYS, ("datatype", "shape", "from"))
        if "outputs" in keys and isinstance(keys["outputs"], MappingNode) and not keys["outputs"].value:
            self.error(keys["outputs"], "outputs: is empty; declare at least one output with from: <step>.<output>")
        batching = self.batching(keys["batching"]) if "batching" in keys else None
        steps = self.steps(keys["steps"]) if "steps" in keys else []
        if self.diagnostics:
            raise PipelineError(self.diagnostics)
        return PipelineSpec(name or "", self.file, tuple(inputs), tuple(outputs), tuple(steps), self.loc(root), desc or "", batching)

    def find_duplicates(self, node: Node, seen_nodes: set[int]) -> None:
        """Report duplicate mapping keys anywhere (the safe loader would silently keep the last)."""
        if id(node) in seen_nodes:  # an alias: already walked
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.tag != _MERGE:
                    if k.value in first:
                        line = first[k.value].start_mark.line + 1
                        self.error(k, f"duplicate key {k.value!r} (first written at line {line}); YAML would keep only the last one")
                    else:
                        first[k.value] = k
                self.find_duplicates(v, seen_nodes)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self.find_duplicates(item, seen_nodes)

    # -- helpers -------------------------------------------------------------------------------

    def value(self, node: Node) -> Any:
        """The plain Python value of a node, built by the safe constructor."""
        try:
            return self.yaml.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            self.yaml_error(e)
            return _INVALID

    def found(self, node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        v = self.value(node)
        if v is None:
            return "nothing (null)"
        return repr(v) if v is not _INVALID else "an invalid value"

    def items(self, node: Node, what: str, step: str | None = None) -> list[tuple[str, Node, Node]] | None:
        """A mapping's (key, key node, value node) in order, merges applied; None if not a mapping."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, found {self.found(node)}", step)
            return None
        if any(k.tag == _MERGE for k, _ in node.value):
            try:
                self.yaml.flatten_mapping(node)
            except yaml.YAMLError as e:
                self.yaml_error(e)
                return None
        out: dict[str, tuple[str, Node, Node]] = {}
        for k, v in node.value:
            key = self.value(k)
            if not isinstance(key, str):
                self.error(k, f"a key in {what} must be text, found {self.found(k)}{_bool_hint(key, k)}", step)
                continue
            out[key] = (key, k, v)  # a later duplicate (reported already) or merge override wins
        return list(out.values())

    def keys(self, node: Node, known: tuple[str, ...], where: str, required: tuple[str, ...] = (), step: str | None = None) -> dict[str, Node]:
        """A mapping's value nodes by key, reporting unknown keys (with a guess) and missing ones."""
        items = self.items(node, where.removeprefix("in ").removeprefix("at "), step) or []
        out: dict[str, Node] = {}
        guesses: set[str] = set()
        for key, knode, vnode in items:
            if key in known:
                out[key] = vnode
                continue
            guess = _close(key, known)
            if guess is not None:
                guesses.add(guess)
                self.error(knode, f"unknown key {key!r} {where}; did you mean {guess!r}?", step)
            else:
                self.error(knode, f"unknown key {key!r} {where}; expected one of: {', '.join(known)}", step)
        if isinstance(node, MappingNode):
            for key in required:
                if key not in out and key not in guesses:
                    self.error(node, f"missing required key {key!r} {where}", step)
        return out

    def key_nodes(self, node: Node) -> dict[str, Node]:
        return {k.value: k for k, _ in node.value if isinstance(k, ScalarNode)} if isinstance(node, MappingNode) else {}

    def string(self, node: Node, what: str, step: str | None = None, pattern: re.Pattern[str] | None = None) -> str | None:
        v = self.value(node)
        if v is _INVALID:
            return None
        if not isinstance(v, str) or not v:
            self.error(node, f"{what} must be non-empty text, found {self.found(node)}", step)
            return None
        if pattern is not None and not pattern.match(v):
            self.error(node, f"{what} {v!r} may hold only letters, digits, '_', '.' and '-'", step)
            return None
        return v

    def choice(self, node: Node, what: str, options: tuple[str, ...], step: str) -> str | None:
        v = self.value(node)
        if v not in options:
            if v is not _INVALID:
                self.error(node, f"{what} must be one of {', '.join(options)}; found {self.found(node)}", step)
            return None
        return str(v)

    def name(self, knode: Node, key: str, what: str, step: str | None = None) -> bool:
        if _NAME.match(key):
            return True
        self.error(knode, f"{what} name {key!r} must start with a letter or '_' and hold only letters, digits, '_' and '-'", step)
        return False

    # -- declarations --------------------------------------------------------------------------

    def decls(self, node: Node | None, what: str, known: tuple[str, ...], required: tuple[str, ...], step: str | None = None) -> list[TensorDecl]:
        if node is None:
            return []
        items = self.items(node, f"{what}s", step)
        out = []
        for key, knode, vnode in items or []:
            if self.name(knode, key, what, step):
                decl = self.decl(key, knode, vnode, what, known, required, step)
                if decl is not None:
                    out.append(decl)
        return out

    def decl(self, name: str, knode: Node, node: Node, what: str, known: tuple[str, ...], required: tuple[str, ...], step: str | None) -> TensorDecl | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} {name!r} must be a mapping like {{datatype: FP32, shape: [-1, 3]}}, found {self.found(node)}", step)
            return None
        keys = self.keys(node, known, f"in {what} {name!r}", required, step)
        datatype = self.datatype(keys["datatype"], step) if "datatype" in keys else None
        shape = self.shape(keys["shape"], step) if "shape" in keys else None
        source = None
        if "from" in keys:
            source = self.ref(keys["from"], step)
            if source is not None and "default" in keys:
                default = self.ref(keys["default"], step)
                source = TensorRef(source.step, source.name, source.location, default) if default else None
        elif "default" in keys and "from" not in required:
            self.error(keys["default"], f"default: applies to from:, which {what} {name!r} does not take", step)
        if datatype is None or shape is None or ("from" in required and source is None):
            return None
        return TensorDecl(name, datatype, shape, self.loc(knode), source)

    def datatype(self, node: Node, step: str | None) -> str | None:
        v = self.value(node)
        if isinstance(v, str) and v in DATATYPES:
            return v
        if v is _INVALID:
            return None
        hint = (_DATATYPE_HINTS.get(v.lower()) or _close(v.upper(), DATATYPES)) if isinstance(v, str) else None
        guess = f"did you mean {hint!r}? " if hint else ""
        self.error(node, f"unknown datatype {self.found(node)}; {guess}datatypes are: {', '.join(DATATYPES)}", step)
        return None

    def shape(self, node: Node, step: str | None) -> tuple[int, ...] | None:
        v = self.value(node)
        if v is _INVALID:
            return None
        dims_ok = isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
        if not dims_ok or not v:
            self.error(node, f"shape must be a list of integers starting with the batch dimension -1, e.g. [-1, 3, 224, 224]; found {self.found(node)}", step)
            return None
        bad = [i for i, d in enumerate(v) if d < 1 and d != -1]
        if bad:
            self.error(node, f"shape {v}: dimension {bad[0]} is {v[bad[0]]}; a dimension is a positive size or -1 (dynamic)", step)
            return None
        if v[0] != -1:
            self.error(node, f"shape {v}: the first dimension is the batch and must be -1 (write {[-1, *v]} if {v} is one sample)", step)
            return None
        return tuple(v)

    def batching(self, node: Node) -> dict[str, Any] | None:
        keys = self.keys(node, BATCHING_KEYS, "in batching")
        out: dict[str, Any] = {}
        for key, vnode in keys.items():
            kind, minimum = BATCHING[key]
            v = self.value(vnode)
            is_int = isinstance(v, int) and not isinstance(v, bool)
            if kind == "int" and not (is_int and v >= minimum):
                self.error(vnode, f"batching: {key} must be an integer >= {minimum}, found {self.found(vnode)}")
            elif kind == "ints" and not (isinstance(v, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)):
                self.error(vnode, f"batching: {key} must be a list of positive integers, found {self.found(vnode)}")
            elif kind == "bool" and not isinstance(v, bool):
                self.error(vnode, f"batching: {key} must be true or false, found {self.found(vnode)}")
            out[key] = v
        mbs, sizes = out.get("max_batch_size"), out.get("preferred_batch_sizes")
        if isinstance(mbs, int) and isinstance(sizes, list) and any(isinstance(n, int) and n > mbs for n in sizes):
            self.error(keys["preferred_batch_sizes"], f"batching: preferred_batch_sizes {sizes} exceed max_batch_size {mbs}")
        levels, default = out.get("priority_levels", 1), out.get("default_priority")
        if isinstance(levels, int) and isinstance(default, int) and default > levels:
            self.error(keys["default_priority"], f"batching: default_priority {default} is above priority_levels {levels} (1 is the highest)")
        return out

    # -- references ----------------------------------------------------------------------------

    def ref(self, node: Node, step: str | None, allow_default: bool = True) -> TensorRef | None:
        if isinstance(node, MappingNode) and allow_default:
            keys = self.keys(node, REF_KEYS, "in the reference", ("from",), step)
            primary = self.ref(keys["from"], step, allow_default=False) if "from" in keys else None
            default = self.ref(keys["default"], step) if "default" in keys else None
            if primary is None or ("default" in keys and default is None):
                return None
            return TensorRef(primary.step, primary.name, primary.location, default)
        v = self.value(node)
        if v is _INVALID:
            return None
        if isinstance(v, str) and v:
            m = _REF.match(v)
            if m:
                first, second = m.group(1), m.group(2)
                return TensorRef(first if second else None, second or first, self.loc(node))
            self.error(node, f"malformed tensor reference {v!r}: expected '<pipeline input>' or '<step>.<output>'", step)
            return None
        shape = "'<pipeline input>' or '<step>.<output>'"
        if allow_default:
            shape = "'<pipeline input>', '<step>.<output>' or {from: ..., default: ...}"
        if v is None or v == "":
            self.error(node, f"empty tensor reference: expected {shape}", step)
        else:
            self.error(node, f"expected a tensor reference ({shape}), found {self.found(node)}{_bool_hint(v, node)}", step)
        return None

    # -- steps ---------------------------------------------------------------------------------

    def steps(self, node: Node) -> list[StepSpec]:
        out = []
        for key, knode, vnode in self.items(node, "steps") or []:
            if self.name(knode, key, "step"):
                step = self.step(key, knode, vnode)
                if step is not None:
                    out.append(step)
        return out

    def step(self, name: str, knode: Node, node: Node) -> StepSpec | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"a step is a mapping with one of {', '.join(STEP_KINDS)}, found {self.found(node)}", name)
            return None
        keys = self.keys(node, STEP_KEYS, "in the step", step=name)
        knodes = self.key_nodes(node)
        kinds = [k for k in STEP_KINDS if k in keys]
        locations: dict[str, Location] = {}
        ok = True
        if not kinds:
            self.error(knode, f"the step has none of {', '.join(STEP_KINDS)}; give exactly one of them", name)
            ok = False
        elif len(kinds) > 1:
            self.error(knodes[kinds[1]], f"the step has both {kinds[0]}: and {kinds[1]}:; give exactly one of {', '.join(STEP_KINDS)}", name)
            ok = False
        target = None
        if kinds:
            locations[kinds[0]] = self.loc(keys[kinds[0]])
            target = self.string(keys[kinds[0]], f"{kinds[0]}:", name)
        inputs: dict[str, TensorRef] = {}
        if "inputs" in keys:
            locations["inputs"] = self.loc(knodes["inputs"])
            for arg, aknode, anode in self.items(keys["inputs"], "inputs", name) or []:
                locations[f"inputs.{arg}"] = self.loc(aknode)
                r = self.ref(anode, name)
                if r is not None:
                    inputs[arg] = r
        params: dict[str, Any] = {}
        if "params" in keys:
            locations["params"] = self.loc(knodes["params"])
            for p, pknode, pnode in self.items(keys["params"], "params", name) or []:
                locations[f"params.{p}"] = self.loc(pknode)
                params[p] = self.value(pnode)
        outputs: list[TensorDecl] = []
        if "outputs" in keys:
            locations["outputs"] = self.loc(knodes["outputs"])
            if kinds and kinds[0] != "python":
                article = "an" if kinds[0] == "op" else "a"
                self.error(knodes["outputs"], f"outputs: is for python steps only; {article} {kinds[0]} step's outputs come from its {kinds[0]}", name)
            else:
                outputs = self.decls(keys["outputs"], "output", DECL_KEYS, ("datatype", "shape"), name)
                for k, onode in self.key_nodes(keys["outputs"]).items():
                    locations[f"outputs.{k}"] = self.loc(onode)
                if isinstance(keys["outputs"], MappingNode) and not keys["outputs"].value:
                    self.error(knodes["outputs"], "outputs: is empty; a python step declares at least one output", name)
        elif kinds and kinds[0] == "python":
            self.error(knode, "a python step declares its outputs: outputs: {name: {datatype: FP32, shape: [-1, ...]}}", name)
        extra: dict[str, Any] = {}
        for key, options in (("device", DEVICES), ("mode", MODES)):
            if key in keys:
                locations[key] = self.loc(keys[key])
                extra[key] = self.choice(keys[key], f"{key}:", options, name)
                ok = ok and extra[key] is not None
        when = None
        if "when" in keys:
            locations["when"] = self.loc(keys["when"])
            when = self.ref(keys["when"], name, allow_default=False)
        if not ok or target is None:
            return None
        return StepSpec(
            name, kinds[0], target, inputs, params, self.loc(knode), device=extra.get("device") or "auto",
            mode=extra.get("mode"), when=when, outputs=tuple(outputs), locations=locations,
        )


def _bool_hint(value: Any, node: Node) -> str:
    """YAML 1.1 reads yes/no/on/off/y/n as booleans: say so where a name was meant."""
    if isinstance(value, bool) and isinstance(node, ScalarNode) and node.value.lower() not in ("true", "false"):
        return f" (YAML reads {node.value} as a boolean; write '{node.value}' in quotes for the name)"
    return ""


class _Invalid:
    """A value the safe constructor refused (reported already)."""


_INVALID: Any = _Invalid()
