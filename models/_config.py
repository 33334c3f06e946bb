"""Reading a model's ``config.yaml`` into a :class:`ModelConfig`, every error with its location.

The YAML is composed with PyYAML's *safe* loader into nodes (which know their line and column)
and walked here, so every problem — unknown keys (with a guess), bad datatypes or shapes, a name
that is not the folder's — is reported at once as a :class:`PipelineError`.

    name: tiny                      # must equal the model's folder name
    backend: torchscript            # torchscript (model.pt) | torch_export (model.pt2) | onnx (model.onnx) | python
    max_batch_size: 8               # 0: the model takes no batch dim; > 0: shapes exclude it
    inputs:
      pixels: {datatype: FP32, shape: [3, 32, 32]}
    outputs:
      scores: {datatype: FP32, shape: [10]}
    device: auto                    # cpu | cuda | auto
    instances: {count: 1, device: cpu}
    version_policy: {latest: 1}     # {latest: N} | all | {specific: [1, 3]}
    factory: my_module:build        # python backend only
    decoupled: false                # python backend: true if its call yields any number of responses
    dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4, 8]}
    warmup: {batch_size: 1}         # or true: one zero-filled request at load
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from twinpipe.dag import DATATYPES, Diagnostic, Location, PipelineError, TensorDecl

__all__ = ["BACKENDS", "DEVICES", "TOP_KEYS", "ModelConfig", "VersionPolicy", "load_config"]

BACKENDS = ("torchscript", "torch_export", "onnx", "python")
DEVICES = ("cpu", "cuda", "auto")
TOP_KEYS = ("name", "description", "backend", "inputs", "outputs", "max_batch_size", "device", "instances",
            "version_policy", "factory", "dynamic_batching", "sequence_batching", "warmup", "decoupled")
DECL_KEYS = ("datatype", "shape", "description")
INSTANCE_KEYS = ("count", "device")
WARMUP_KEYS = ("batch_size",)
# key → (kind, minimum) for the scalar settings of the batching sections
DYNAMIC_KEYS: dict[str, tuple[str, int]] = {
    "max_queue_delay_us": ("int", 0), "preferred_batch_sizes": ("ints", 1), "max_queue_size": ("int", 1),
    "timeout_us": ("int", 1), "priority_levels": ("int", 1), "default_priority": ("int", 1),
    "preserve_ordering": ("bool", 0),
}
SEQUENCE_KEYS: dict[str, tuple[str, int]] = {
    "strategy": ("strategy", 0), "max_sequence_idle_us": ("int", 1), "max_candidate_sequences": ("int", 1),
    "max_queue_delay_us": ("int", 0), "state": ("state", 0),
}
STATE_KEYS = ("input", "output", "datatype", "shape", "initial")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")
_DATATYPES = tuple(DATATYPES)
_DATATYPE_HINTS = {"float32": "FP32", "float": "FP32", "float16": "FP16", "half": "FP16", "float64": "FP64",
                   "double": "FP64", "int64": "INT64", "long": "INT64", "int32": "INT32", "int": "INT64",
                   "uint8": "UINT8", "bool": "BOOL", "bytes": "BYTES", "string": "BYTES", "bfloat16": "BF16"}
_INVALID = object()


@dataclass(frozen=True)
class VersionPolicy:
    """Which numeric version folders load: the ``latest`` N, ``all``, or ``specific`` ones."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to load out of ``available`` (ascending)."""
        have = sorted(available)
        if self.kind == "all":
            return have
        if self.kind == "specific":
            return [v for v in self.versions if v in have]
        return have[-self.latest:]


@dataclass(frozen=True)
class ModelConfig:
    """A validated model config. ``inputs``/``outputs`` shapes are as written: without the batch
    dimension when ``max_batch_size > 0`` (as in Triton)."""

    name: str
    path: str
    backend: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    max_batch_size: int = 0
    device: str = "auto"
    instance_count: int = 1
    instance_device: str | None = None
    version_policy: VersionPolicy = VersionPolicy()
    factory: str | None = None
    dynamic_batching: dict[str, Any] | None = None
    sequence_batching: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    description: str = ""
    locations: dict[str, Location] = field(default_factory=dict, compare=False)  # key → where its value is
    #: a streaming model (Triton's decoupled transaction policy): its call returns an iterable, and
    #: each item is one response to the request
    decoupled: bool = False

    @property
    def location(self) -> Location:
        return self.locations.get("", Location(self.path, 1, 1))

    @functools.cached_property
    def state_inputs(self) -> tuple[TensorDecl, ...]:
        """The implicit state tensors the runtime feeds (sequence batching), per sample."""
        state = (self.sequence_batching or {}).get("state") or {}
        return tuple(TensorDecl(s["input"], s["datatype"], s["shape"], self.where(f"state.{n}")) for n, s in state.items())

    @functools.cached_property
    def state_outputs(self) -> tuple[TensorDecl, ...]:
        """The model outputs that become the next request's state, per sample."""
        state = (self.sequence_batching or {}).get("state") or {}
        return tuple(TensorDecl(s["output"], s["datatype"], s["shape"], self.where(f"state.{n}")) for n, s in state.items())

    @functools.cached_property
    def model_inputs(self) -> tuple[TensorDecl, ...]:
        """What the model is called with, in order: the declared inputs, then the state inputs."""
        return self.inputs + self.state_inputs

    @functools.cached_property
    def model_outputs(self) -> tuple[TensorDecl, ...]:
        """What the model returns, in order: the declared outputs, then the state outputs."""
        return self.outputs + self.state_outputs

    def where(self, key: str) -> Location:
        """Where ``key``'s value is written (the file's start if it is not written)."""
        return self.locations.get(key, self.location)


def load_config(path: str | os.PathLike[str], *, folder_name: str | None = None) -> ModelConfig:
    """Parse and check the config at ``path``; ``folder_name`` (default: the parent folder's name)
    is what ``name:`` must equal. Raises :class:`PipelineError` listing every problem found."""
    file = os.fspath(path)
    with open(file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    expected = folder_name if folder_name is not None else os.path.basename(os.path.dirname(os.path.abspath(file)))
    return _Reader(file, text).read(expected)


def _close(word: str, options: tuple[str, ...] | list[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1)
    return found[0] if found else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Reader:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.yaml = yaml.SafeLoader(text)
        self.diagnostics: list[Diagnostic] = []
        self.locations: dict[str, Location] = {}

    def loc(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, where: Node | Location, message: str) -> None:
        self.diagnostics.append(Diagnostic(where if isinstance(where, Location) else self.loc(where), message))

    def value(self, node: Node) -> Any:
        try:
            return self.yaml.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            self.error(Location(self.file, mark.line + 1, mark.column + 1) if mark else self.loc(node), f"invalid YAML: {e}")
            return _INVALID

    def found(self, node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if not isinstance(node, ScalarNode):
            return "a list"
        v = self.value(node)
        return "nothing (null)" if v is None else repr(v)

    def keys(self, node: Node, known: tuple[str, ...], where: str, required: tuple[str, ...] = ()) -> dict[str, Node]:
        """A mapping's value nodes by key; reports unknown (with a guess), duplicate and missing keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping, found {self.found(node)}")
            return {}
        out: dict[str, Node] = {}
        guesses: set[str] = set()
        for knode, vnode in node.value:
            key = self.value(knode)
            if not isinstance(key, str):
                self.error(knode, f"a key {where} must be text, found {self.found(knode)}")
            elif key in out:
                self.error(knode, f"duplicate key {key!r} {where}; YAML would keep only the last one")
            elif key not in known:
                guess = _close(key, known)
                guesses.add(guess or "")
                hint = f"did you mean {guess!r}?" if guess else f"expected one of: {', '.join(known)}"
                self.error(knode, f"unknown key {key!r} {where}; {hint}")
            else:
                out[key] = vnode
        for key in required:
            if key not in out and key not in guesses:  # a misspelt key is reported once
                self.error(node, f"missing required key {key!r} {where}")
        return out

    def number(self, node: Node, what: str, minimum: int) -> int | None:
        v = self.value(node)
        if not _is_int(v) or v < minimum:
            if v is not _INVALID:
                self.error(node, f"{what} must be an integer >= {minimum}, found {self.found(node)}")
            return None
        return int(v)

    def choice(self, node: Node, what: str, options: tuple[str, ...]) -> str | None:
        v = self.value(node)
        if v not in options:
            guess = _close(v, options) if isinstance(v, str) else None
            hint = f"; did you mean {guess!r}?" if guess else ""
            self.error(node, f"{what} must be one of {', '.join(options)}, found {self.found(node)}{hint}")
            return None
        return str(v)

    # -- the document --------------------------------------------------------------------------

    def read(self, folder_name: str) -> ModelConfig:
        try:
            root = self.yaml.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = Location(self.file, mark.line + 1, mark.column + 1) if mark else Location(self.file, 1, 1)
            raise PipelineError([Diagnostic(where, f"invalid YAML: {getattr(e, 'problem', None) or e}")]) from None
        if root is None:
            raise PipelineError([Diagnostic(Location(self.file, 1, 1), "the model config is empty")])
        keys = self.keys(root, TOP_KEYS, "in the model config", required=("name", "backend", "inputs", "outputs"))
        self.locations = {"": self.loc(root)} | {k: self.loc(v) for k, v in keys.items()}
        name = self.name(keys["name"], folder_name) if "name" in keys else None
        backend = self.choice(keys["backend"], "backend", BACKENDS) if "backend" in keys else None
        mbs = self.number(keys["max_batch_size"], "max_batch_size", 0) if "max_batch_size" in keys else 0
        inputs = self.decls(keys.get("inputs"), "input")
        outputs = self.decls(keys.get("outputs"), "output")
        device = self.choice(keys["device"], "device", DEVICES) if "device" in keys else "auto"
        count, inst_device = self.instances(keys["instances"]) if "instances" in keys else (1, None)
        policy = self.policy(keys["version_policy"]) if "version_policy" in keys else VersionPolicy()
        factory = self.factory(keys.get("factory"), backend)
        dynamic = self.section(keys["dynamic_batching"], "dynamic_batching", DYNAMIC_KEYS) if "dynamic_batching" in keys else None
        sequence = self.section(keys["sequence_batching"], "sequence_batching", SEQUENCE_KEYS) if "sequence_batching" in keys else None
        warmup = self.warmup(keys["warmup"]) if "warmup" in keys else None
        desc = self.value(keys["description"]) if "description" in keys else ""
        decoupled = self.flag(keys["decoupled"], "decoupled") if "decoupled" in keys else False
        self.cross_check(mbs, dynamic, sequence, inputs, outputs)
        if decoupled:
            self.check_decoupled(backend, dynamic, sequence)
        if self.diagnostics:
            raise PipelineError(self.diagnostics)
        assert name is not None and backend is not None and mbs is not None and device is not None
        return ModelConfig(name, self.file, backend, tuple(inputs), tuple(outputs), mbs, device, count, inst_device,
                           policy, factory, dynamic, sequence, warmup, str(desc or ""), self.locations, decoupled=decoupled)

    def cross_check(self, mbs: int | None, dynamic: dict[str, Any] | None, sequence: dict[str, Any] | None,
                    inputs: list[TensorDecl], outputs: list[TensorDecl]) -> None:
        """What holds between sections: batching needs a batch, preferred sizes fit it, …"""
        at = self.locations.get
        if dynamic is not None and sequence is not None:
            self.error(at("sequence_batching", at("")), "a model has dynamic_batching or sequence_batching, not both (a sequence model batches its sequences itself)")
        for what, section in (("dynamic_batching", dynamic), ("sequence_batching", sequence)):
            if section is None or mbs is None:
                continue
            if mbs == 0 and what == "dynamic_batching":
                self.error(at(what, at("")), f"{what} needs max_batch_size >= 1 (0 means the model takes no batch dimension)")
            big = [n for n in section.get("preferred_batch_sizes") or () if isinstance(n, int) and n > mbs > 0]
            if big:
                self.error(at(f"{what}.preferred_batch_sizes", at("")), f"{what}: preferred_batch_sizes {big} exceed max_batch_size {mbs}")
        levels, default = (dynamic or {}).get("priority_levels") or 1, (dynamic or {}).get("default_priority")
        if isinstance(default, int) and isinstance(levels, int) and default > levels:
            self.error(at("dynamic_batching.default_priority", at("")), f"dynamic_batching: default_priority {default} is above priority_levels {levels} (1 is the highest priority)")
        state = (sequence or {}).get("state") or {}
        taken_in, taken_out = {d.name for d in inputs}, {d.name for d in outputs}
        for name, entry in state.items():
            where = at(f"state.{name}", at(""))
            if entry.get("input") in taken_in:
                self.error(where, f"state {name!r}: input {entry['input']!r} is also a declared input; the runtime feeds state inputs itself")
            if entry.get("output") in taken_out:
                self.error(where, f"state {name!r}: output {entry['output']!r} is also a declared output; state outputs are kept, not returned")
            taken_in.add(entry.get("input"))
            taken_out.add(entry.get("output"))
            shape = entry.get("shape")
            if shape is not None and -1 in shape:
                self.error(where, f"state {name!r}: shape {list(shape)} must be fixed (no -1): the initial state is made from it")

    def check_decoupled(self, backend: str | None, dynamic: dict[str, Any] | None, sequence: dict[str, Any] | None) -> None:
        """A decoupled model is Python code that yields; it answers each request on its own."""
        at = self.locations.get
        if backend not in ("python", None):
            self.error(at("decoupled", at("")), f"decoupled: true needs backend python (a function that yields responses); {backend} models answer once")
        for what, section in (("dynamic_batching", dynamic), ("sequence_batching", sequence)):
            if section is not None:
                self.error(at(what, at("")), f"a decoupled model answers each request with its own stream of responses; it takes no {what}")

    def flag(self, node: Node, what: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            self.error(node, f"{what} must be true or false, found {self.found(node)}")
            return False
        return v

    def name(self, node: Node, folder_name: str) -> str | None:
        v = self.value(node)
        if not isinstance(v, str) or not _MODEL_NAME.match(v):
            self.error(node, f"name must be text of letters, digits, '_', '.' and '-', found {self.found(node)}")
            return None
        if v != folder_name:
            self.error(node, f"name {v!r} must equal the model's folder name {folder_name!r}")
            return None
        return v

    def decls(self, node: Node | None, what: str) -> list[TensorDecl]:
        if node is None:
            return []
        names = tuple(k for k in (self.value(k) for k, _ in getattr(node, "value", [])) if isinstance(k, str))
        keys = self.keys(node, names, f"in {what}s")
        if isinstance(node, MappingNode) and not node.value:
            self.error(node, f"{what}s: is empty; declare at least one {what}")
        knodes = {self.value(k): k for k, _ in reversed(getattr(node, "value", []))}  # the first key node
        out = []
        for name, vnode in keys.items():
            if not _NAME.match(name):
                self.error(knodes[name], f"{what} name {name!r} must start with a letter or '_' and hold letters, digits, '_', '-'")
                continue
            decl = self.decl(name, knodes[name], vnode, what)
            if decl is not None:
                out.append(decl)
        return out

    def decl(self, name: str, knode: Node, node: Node, what: str) -> TensorDecl | None:
        keys = self.keys(node, DECL_KEYS, f"in {what} {name!r}", required=("datatype", "shape"))
        datatype = self.datatype(keys["datatype"]) if "datatype" in keys else None
        shape = self.shape(keys["shape"]) if "shape" in keys else None
        if datatype is None or shape is None:
            return None
        return TensorDecl(name, datatype, shape, self.loc(knode))

    def datatype(self, node: Node) -> str | None:
        v = self.value(node)
        if isinstance(v, str) and v in _DATATYPES:
            return v
        if v is not _INVALID:
            hint = (_DATATYPE_HINTS.get(v.lower()) or _close(v.upper(), _DATATYPES)) if isinstance(v, str) else None
            guess = f"did you mean {hint!r}? " if hint else ""
            self.error(node, f"unknown datatype {self.found(node)}; {guess}datatypes are: {', '.join(_DATATYPES)}")
        return None

    def shape(self, node: Node) -> tuple[int, ...] | None:
        v = self.value(node)
        if v is _INVALID:
            return None
        if not isinstance(v, list) or not all(_is_int(d) for d in v):
            self.error(node, f"shape must be a list of integers (-1: dynamic), e.g. [3, 224, 224]; found {self.found(node)}")
            return None
        bad = [i for i, d in enumerate(v) if d < 1 and d != -1]
        if bad:
            self.error(node, f"shape {v}: dimension {bad[0]} is {v[bad[0]]}; a dimension is a positive size or -1 (dynamic)")
            return None
        return tuple(v)

    def instances(self, node: Node) -> tuple[int, str | None]:
        keys = self.keys(node, INSTANCE_KEYS, "in instances")
        count = self.number(keys["count"], "instances: count", 1) if "count" in keys else 1
        device = self.choice(keys["device"], "instances: device", DEVICES) if "device" in keys else None
        return count or 1, device

    def policy(self, node: Node) -> VersionPolicy:
        if isinstance(node, ScalarNode) and self.value(node) == "all":
            return VersionPolicy("all")
        if not isinstance(node, MappingNode):
            self.error(node, f"version_policy must be all, {{latest: N}} or {{specific: [versions]}}, found {self.found(node)}")
            return VersionPolicy()
        keys = self.keys(node, ("latest", "specific"), "in version_policy")
        if len(keys) != 1:
            if len(keys) > 1:
                self.error(node, "version_policy takes one of latest: or specific:, not both")
            return VersionPolicy()
        if "latest" in keys:
            return VersionPolicy("latest", self.number(keys["latest"], "version_policy: latest", 1) or 1)
        v = self.value(keys["specific"])
        if not isinstance(v, list) or not v or not all(_is_int(n) and n >= 0 for n in v):
            self.error(keys["specific"], f"version_policy: specific must be a list of version numbers, found {self.found(keys['specific'])}")
            return VersionPolicy()
        return VersionPolicy("specific", versions=tuple(v))

    def factory(self, node: Node | None, backend: str | None) -> str | None:
        if node is None:
            if backend == "python":
                self.error(self.locations.get("backend", self.locations[""]), "backend python needs factory: \"module:function\"")
            return None
        v = self.value(node)
        if backend != "python" and backend is not None:
            self.error(node, f"factory: applies to backend python only, not {backend}")
        if not isinstance(v, str) or not _FACTORY.match(v):
            self.error(node, f"factory must be \"module:function\", found {self.found(node)}")
            return None
        return v

    def section(self, node: Node, what: str, known: dict[str, tuple[str, int]]) -> dict[str, Any]:
        if isinstance(node, ScalarNode) and self.value(node) in (True, None):
            return {}  # `dynamic_batching: true` / empty: all defaults
        keys = self.keys(node, tuple(known), f"in {what}")
        out: dict[str, Any] = {}
        for key, vnode in keys.items():
            kind, minimum = known[key]
            self.locations[f"{what}.{key}"] = self.loc(vnode)
            v = self.value(vnode)
            if kind == "int":
                v = self.number(vnode, f"{what}: {key}", minimum)
            elif kind == "ints" and not (isinstance(v, list) and all(_is_int(n) and n >= minimum for n in v)):
                self.error(vnode, f"{what}: {key} must be a list of positive integers, found {self.found(vnode)}")
            elif kind == "bool" and not isinstance(v, bool):
                self.error(vnode, f"{what}: {key} must be true or false, found {self.found(vnode)}")
            elif kind == "strategy":
                v = self.choice(vnode, f"{what}: {key}", ("direct", "oldest"))
            elif kind == "state":
                v = self.state(vnode)
            out[key] = v
        return out

    def state(self, node: Node) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        names = tuple(self.value(k) for k, _ in getattr(node, "value", []))
        for name, vnode in self.keys(node, names, "in sequence_batching: state").items():
            keys = self.keys(vnode, STATE_KEYS, f"in state {name!r}", required=("input", "output", "datatype", "shape"))
            self.locations[f"state.{name}"] = self.loc(vnode)
            entry: dict[str, Any] = {}
            for k in ("input", "output"):
                if k in keys:
                    entry[k] = self.value(keys[k])
                    if not isinstance(entry[k], str) or not _NAME.match(entry[k]):
                        self.error(keys[k], f"state {name!r}: {k} must be a tensor name, found {self.found(keys[k])}")
            entry["datatype"] = self.datatype(keys["datatype"]) if "datatype" in keys else None
            entry["shape"] = self.shape(keys["shape"]) if "shape" in keys else None
            initial = self.value(keys["initial"]) if "initial" in keys else 0
            if not isinstance(initial, int | float) or isinstance(initial, bool):
                self.error(keys["initial"], f"state {name!r}: initial must be a number, found {self.found(keys['initial'])}")
            entry["initial"] = initial
            out[name] = entry
        return out

    def warmup(self, node: Node) -> dict[str, Any] | None:
        v = self.value(node)
        if isinstance(v, bool):
            return {"batch_size": 1} if v else None
        keys = self.keys(node, WARMUP_KEYS, "in warmup")
        size = self.number(keys["batch_size"], "warmup: batch_size", 1) if "batch_size" in keys else 1
        return {"batch_size": size or 1}
