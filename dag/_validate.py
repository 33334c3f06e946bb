"""Validation: resolve every step of a parsed pipeline and check the whole graph before it runs.

Every problem is collected — unknown ops, models, pipelines and python targets; bad params (the
op's own checks); unknown argument names; references that do not resolve; name clashes; cycles;
unused inputs; consumers of a ``mode:``/``when:`` step without a default; dtype and shape
mismatches — and raised together as one :class:`PipelineError`, in file order.

Nested pipelines (``pipeline: name`` or ``pipeline: path.yaml``) are found by name as
``<name>.yaml`` in ``search_paths`` and then next to the including file, or by a path relative to
the including file, and validated recursively; a pipeline that includes itself is an error.
Python targets are ``package.module:function`` or ``file.py:function`` (relative to the file);
validation imports them.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import networkx as nx

from twinpipe.ops import Op, OpError, ParamError, get_op, list_ops

from ._context import StepContext
from ._infer import StepSignature, infer_types
from ._load import load_spec
from ._resolved import ModelInfo, ResolvedStep, TensorType, ValidPipeline, op_step_fn
from ._spec import Diagnostic, Location, PipelineError, PipelineSpec, StepSpec, TensorRef

__all__ = ["check", "validate"]

_PARAM_NAMED = re.compile(r"parameter '([^']+)'")


def validate(spec: PipelineSpec, *, models: Mapping[str, ModelInfo] | None = None, search_paths: Iterable[str | os.PathLike[str]] = ()) -> ValidPipeline:
    """Resolve and check ``spec``; a :class:`ValidPipeline`, or a ``PipelineError`` of every problem.

    ``models`` maps a model name to what the model layer knows of it (None: no repository is
    loaded, so any model step is an error); ``search_paths`` are folders where nested pipelines
    are looked up by name.
    """
    return _Validator(spec, models, tuple(Path(p) for p in search_paths), ()).run()


def check(path: str | os.PathLike[str], *, models: Mapping[str, ModelInfo] | None = None, search_paths: Iterable[str | os.PathLike[str]] = ()) -> ValidPipeline:
    """Load and validate the pipeline file at ``path`` (``load_spec`` then ``validate``)."""
    return validate(load_spec(path), models=models, search_paths=search_paths)


def _guess(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1)
    return found[0] if found else None


def _hint(word: str, options: Sequence[str], what: str) -> str:
    """``; did you mean 'x'?`` or ``; <what> are: a, b`` (or ``; there are none``)."""
    guess = _guess(word, options)
    if guess is not None:
        return f"; did you mean {guess!r}?"
    return f"; {what} are: {', '.join(options)}" if options else f"; there are no {what}"


def _chain(ref: TensorRef) -> Iterator[TensorRef]:
    """A reference and its defaults, in order."""
    r: TensorRef | None = ref
    while r is not None:
        yield r
        r = r.default


class _Validator:
    def __init__(self, spec: PipelineSpec, models: Mapping[str, ModelInfo] | None, search_paths: tuple[Path, ...], chain: tuple[Path, ...]) -> None:
        self.spec = spec
        self.models = models
        self.search_paths = search_paths
        self.folder = Path(spec.path).parent  # as given: nested files are reported alike
        self.chain = (*chain, Path(spec.path).resolve())
        self.diagnostics: list[Diagnostic] = []
        self.outputs: dict[str, tuple[str, ...] | None] = {s.name: None for s in spec.steps}
        self.signatures: dict[str, StepSignature] = {}
        self.resolved: dict[str, ResolvedStep] = {}
        self.used: set[str] = set()

    def error(self, location: Location, message: str, step: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(location, message, step))

    def run(self) -> ValidPipeline:
        spec = self.spec
        inputs = {d.name for d in spec.inputs}
        for step in spec.steps:
            if step.name in inputs:
                self.error(step.location, f"{step.name!r} is both a pipeline input and a step; give them different names", step.name)
            self.resolve(step)
        for step in spec.steps:
            for ref in step.inputs.values():
                self.check_ref(ref, step)
            if step.when is not None:
                self.check_ref(step.when, step)
        for decl in spec.outputs:
            if decl.source is not None:
                self.check_ref(decl.source, None, f"output {decl.name!r}: ")
        for d in spec.inputs:
            if d.name not in self.used:
                self.error(d.location, f"pipeline input {d.name!r} is never used")
        streams = [s for s in spec.steps if s.name in self.resolved and self.resolved[s.name].streams]
        for extra in streams[1:]:
            self.error(extra.location, f"a pipeline has at most one streaming step (a generator); {streams[0].name!r} "
                       "is one already", extra.name)
        graph = self.graph()
        order = self.order(graph)
        types: dict[str, TensorType] = {}
        if order is not None:
            types, problems = infer_types(spec, self.signatures, order)
            self.diagnostics.extend(problems)
        if self.diagnostics:
            raise PipelineError(self.diagnostics)
        return ValidPipeline(spec, tuple(self.resolved[s.name] for s in spec.steps), types, graph)

    # -- steps ---------------------------------------------------------------------------------

    def resolve(self, step: StepSpec) -> None:
        if step.kind != "op" and step.params:
            where = step.locations.get("params", step.location)
            self.error(where, f"params: are for op steps; a {step.kind} step takes none", step.name)
        {"op": self.resolve_op, "model": self.resolve_model, "pipeline": self.resolve_pipeline, "python": self.resolve_python}[step.kind](step)

    def done(self, step: StepSpec, sig: StepSignature, fn: Callable[..., dict[str, Any]] | None, outputs: Sequence[str], **extra: Any) -> None:
        self.outputs[step.name] = tuple(outputs)
        self.signatures[step.name] = sig
        self.resolved[step.name] = ResolvedStep(step, fn, tuple(outputs), **extra)

    def check_args(self, step: StepSpec, names: Sequence[str], what: str) -> None:
        """The step's argument names against the inputs ``what`` takes (all required)."""
        guessed = set()
        for arg in step.inputs:
            if arg not in names:
                guess = _guess(arg, names)
                guessed.add(guess)
                where = step.locations.get(f"inputs.{arg}", step.location)
                self.error(where, f"{what} has no input {arg!r}{_hint(arg, names, 'its inputs')}", step.name)
        for name in names:
            if name not in step.inputs and name not in guessed:
                self.error(step.locations.get("inputs", step.location), f"missing input {name!r} of {what}", step.name)

    def resolve_op(self, step: StepSpec) -> None:
        try:
            op = get_op(step.target)
        except OpError:
            where = step.locations.get("op", step.location)
            self.error(where, f"unknown op {step.target!r}{_hint(step.target, list_ops(), 'ops')}", step.name)
            return
        self.check_args(step, [s.name for s in op.inputs], op.name)
        params = self.check_params(step, op)
        cuda_kernel = op.kernel_for("cuda")
        if step.device == "cuda" and cuda_kernel is None:
            where = step.locations.get("device", step.location)
            family = op.name.partition(".")[0]
            with_cuda = [n for n in sorted(list_ops()) if n.startswith(f"{family}.") and get_op(n).kernel_for("cuda") is not None]
            more = f" ({family} ops with one: {', '.join(with_cuda)})" if with_cuda else ""
            self.error(where, f"{op.name} has no CUDA kernel yet; use device: cpu or auto{more}", step.name)
        if params is not None:
            bound = op.bind(**params)
            gpu_fn = op_step_fn(bound, gpu=True) if cuda_kernel is not None and cuda_kernel.host_inputs else None
            self.done(step, StepSignature(op.name, op, params), op_step_fn(bound), [s.name for s in op.outputs], is_random=op.is_random,
                      op_name=op.name, gpu_fn=gpu_fn)

    def check_params(self, step: StepSpec, op: Op) -> dict[str, Any] | None:
        """The op's own ``validate_params``, run until every bad parameter has been reported."""
        remaining = dict(step.params)
        failed: set[str | None] = set()
        while True:
            try:
                params = op.validate_params(remaining)
                return None if failed else params
            except ParamError as e:
                m = _PARAM_NAMED.search(str(e))
                name = m.group(1) if m else None
                if name in failed:  # "required" once its bad value is set aside: said already
                    break
                where = step.locations.get(f"params.{name}") or step.locations.get("params", step.location)
                self.error(where, str(e), step.name)
                failed.add(name)
                if name is None or name not in remaining:
                    return None
                del remaining[name]
        # a bad required parameter stops validate_params; check the others one by one, as it does
        for p in op.params:
            if p.name in remaining and p.name not in failed:
                try:
                    p.kind.check(remaining[p.name])
                except ValueError as e:
                    self.error(step.locations.get(f"params.{p.name}", step.location), f"{op.name}: parameter {p.name!r}: {e}", step.name)
        return None

    def resolve_model(self, step: StepSpec) -> None:
        where = step.locations.get("model", step.location)
        if not self.models:
            why = "no model repository is loaded" if self.models is None else "the model repository is empty"
            self.error(where, f"unknown model {step.target!r}: {why}", step.name)
            return
        info = self.models.get(step.target) or self.models.get(step.target.split(":")[0])
        if info is None:
            self.error(where, f"unknown model {step.target!r}{_hint(step.target, sorted(self.models), 'models')}", step.name)
            return
        what = f"model {info.name!r}"
        self.check_args(step, [d.name for d in info.inputs], what)
        sig = StepSignature(what, inputs=info.inputs, outputs=info.outputs)
        self.done(step, sig, info.fn, [d.name for d in info.outputs], model_device=info.device)

    def resolve_pipeline(self, step: StepSpec) -> None:
        where = step.locations.get("pipeline", step.location)
        path = self.find_pipeline(step.target, where, step.name)
        if path is None:
            return
        if path.resolve() in self.chain:
            loop = " → ".join(p.name for p in (*self.chain[self.chain.index(path.resolve()):], path))
            self.error(where, f"pipeline {step.target!r} includes itself: {loop}", step.name)
            return
        try:
            nested = _Validator(load_spec(path), self.models, self.search_paths, self.chain).run()
        except PipelineError as e:
            self.diagnostics.extend(e.diagnostics)
            n = len(e.diagnostics)
            self.error(where, f"pipeline {step.target!r} is invalid: {n} error{'s' if n != 1 else ''} in {path.name}", step.name)
            return
        except OSError as e:
            self.error(where, f"cannot read pipeline {step.target!r}: {e.strerror or e}", step.name)
            return
        what = f"pipeline {step.target!r}"
        inner_stream = nested.streaming_step
        if inner_stream is not None:
            self.error(where, f"{what} streams (its step {inner_stream!r} is a generator); a nested pipeline must answer "
                       "once: make this pipeline's own step the generator", step.name)
        for name in ("rng", "mode"):
            if any(d.name == name for d in nested.spec.inputs):
                self.error(where, f"{what} has an input named {name!r}, a name reserved for nested pipelines; rename it", step.name)
        self.check_args(step, [d.name for d in nested.spec.inputs], what)
        sig = StepSignature(what, inputs=nested.spec.inputs, outputs=nested.spec.outputs)
        self.done(step, sig, None, [d.name for d in nested.spec.outputs], nested=nested)

    def find_pipeline(self, target: str, where: Location, step: str) -> Path | None:
        if target.endswith((".yaml", ".yml")) or "/" in target or os.sep in target:
            path = self.folder / target
            if path.is_file():
                return path
            self.error(where, f"no pipeline file {target!r} (looked for it relative to {Path(self.spec.path).name})", step)
            return None
        folders = [*self.search_paths, self.folder]
        for folder in folders:
            for ext in (".yaml", ".yml"):
                if (folder / f"{target}{ext}").is_file():
                    return folder / f"{target}{ext}"
        known = sorted({p.stem for f in folders if f.is_dir() for p in f.iterdir() if p.suffix in (".yaml", ".yml")})
        guess = _guess(target, known)
        hint = f"; did you mean {guess!r}?" if guess else ""
        where_text = "in the search paths or next to this file" if self.search_paths else "next to this file"
        self.error(where, f"unknown pipeline {target!r}: no {target}.yaml {where_text}{hint}", step)
        return None

    def resolve_python(self, step: StepSpec) -> None:
        where = step.locations.get("python", step.location)
        target = _import_target(step.target, self.folder)
        if isinstance(target, str):
            self.error(where, target, step.name)
            return
        for arg in ("rng", "mode"):
            if arg in step.inputs:
                self.error(step.locations.get(f"inputs.{arg}", where), f"argument name {arg!r} is reserved; choose another", step.name)
        names = [d.name for d in step.outputs]
        instance = _instantiate(target, step.target)
        if isinstance(instance, str):
            self.error(where, instance, step.name)
            return
        streams = _is_generator(instance)
        if streams and step.when is not None:
            self.error(step.locations.get("when", where), "a streaming step (a generator) cannot have when:; "
                       "yield nothing instead", step.name)
        sig = StepSignature(f"python {step.target!r}", outputs=step.outputs)
        self.done(step, sig, _python_fn(instance, names, step.name, self.spec.name, streams), names, streams=streams)

    # -- references ----------------------------------------------------------------------------

    def check_ref(self, ref: TensorRef, consumer: StepSpec | None, prefix: str = "") -> None:
        """That ``ref`` (and its defaults) resolve, and that what it needs will have run."""
        step_names = list(self.outputs)
        input_names = [d.name for d in self.spec.inputs]
        who = consumer.name if consumer is not None else None
        for r in _chain(ref):
            if r.step is None:
                if r.name in input_names:
                    self.used.add(r.name)
                elif r.name in self.outputs:
                    outs = self.outputs[r.name]
                    example = f"{r.name}.{outs[0]}" if outs else f"{r.name}.<output>"
                    self.error(r.location, f"{prefix}{r.name!r} is a step, not a tensor; name one of its outputs, e.g. {example!r}", who)
                else:
                    self.error(r.location, f"{prefix}unknown tensor {r.name!r}: not a pipeline input{_hint(r.name, input_names, 'pipeline inputs')}", who)
                    self.used.add(_guess(r.name, input_names) or "")  # a misspelt use is still a use
            elif r.step not in self.outputs:
                self.error(r.location, f"{prefix}unknown step {r.step!r} in {str(r)!r}{_hint(r.step, step_names, 'steps')}", who)
            else:
                outs = self.outputs[r.step]
                if outs is not None and r.name not in outs:
                    self.error(r.location, f"{prefix}step {r.step!r} has no output {r.name!r}{_hint(r.name, outs, 'its outputs')}", who)
        self.check_runs(ref, consumer, prefix)

    def check_runs(self, ref: TensorRef, consumer: StepSpec | None, prefix: str) -> None:
        """Whenever the reader runs (each mode it runs in, under its own ``when``), some tensor of
        the chain ``ref``, default, … must have been produced."""
        chain = list(_chain(ref))
        if any(r.step is not None and r.step not in self.outputs for r in chain):
            return  # an unknown step: reported
        for mode in [consumer.mode] if consumer is not None and consumer.mode else ["train", "serve"]:
            if any(self.runs(r, mode, consumer) for r in chain):
                continue
            last = chain[-1]
            producer = self.spec.step(last.step or "")
            who = consumer.name if consumer is not None else None
            fix = f"{{from: {last}, default: ...}}" if consumer is not None else f"from: {last}, default: ..."
            if producer.mode is not None and producer.mode != mode:
                why = f"runs only in {producer.mode} mode; give a default for {mode} mode"
            else:
                why = f"runs only when {str(producer.when)!r} is true; give a default for when it is skipped"
            self.error(last.location, f"{prefix}step {producer.name!r} {why}: {fix}", who)
            return

    def runs(self, r: TensorRef, mode: str, consumer: StepSpec | None) -> bool:
        """Whether the tensor ``r`` exists in ``mode`` whenever ``consumer`` runs."""
        if r.step is None:
            return True
        producer = self.spec.step(r.step)
        if producer.mode is not None and producer.mode != mode:
            return False
        if producer.when is None:
            return True
        return consumer is not None and consumer.when is not None and str(consumer.when) == str(producer.when)

    # -- the graph -----------------------------------------------------------------------------

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for d in self.spec.inputs:
            g.add_node(f"input:{d.name}", kind="input", location=d.location)
        for s in self.spec.steps:
            g.add_node(s.name, kind=s.kind, target=s.target, location=s.location)
        for s in self.spec.steps:
            refs = [(r, "data") for ref in s.inputs.values() for r in _chain(ref)]
            refs += [(s.when, "when")] if s.when is not None else []
            for r, kind in refs:
                u = f"input:{r.name}" if r.step is None else r.step
                if u not in g:
                    continue  # an unknown reference, reported
                if g.has_edge(u, s.name):
                    g.edges[u, s.name]["tensors"].append(str(r))
                else:
                    g.add_edge(u, s.name, tensor=str(r), tensors=[str(r)], kind=kind)
        return g

    def order(self, g: nx.DiGraph) -> list[str] | None:
        """The steps in a topological order (file order among equals), or None after a cycle."""
        index = {s.name: i for i, s in enumerate(self.spec.steps)}
        steps = g.subgraph(index)
        cyclic = False
        for comp in sorted(nx.strongly_connected_components(steps), key=lambda c: min(index[n] for n in c)):
            first = min(comp, key=index.__getitem__)
            if len(comp) == 1 and not steps.has_edge(first, first):
                continue
            cyclic = True
            names = [u for u, _ in nx.find_cycle(steps.subgraph(comp), source=first)]
            start = names.index(min(names, key=index.__getitem__))  # from the step written first
            names = names[start:] + names[:start]
            loop = " → ".join([*names, names[0]])
            self.error(self.spec.step(names[0]).location, f"the steps form a cycle: {loop}", names[0])
        if cyclic:
            return None
        return list(nx.lexicographical_topological_sort(steps, key=lambda n: f"{index[n]:09d}"))


def _import_target(target: str, folder: Path) -> Callable[..., Any] | str:
    """The callable a python step names, or what is wrong with it."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        return f"python: {target!r} must name 'package.module:function' or 'file.py:function'"
    try:
        if module_name.endswith(".py"):
            path = (folder / module_name).resolve()
            if not path.is_file():
                return f"python: no file {module_name!r} next to this pipeline"
            unique = f"twinpipe_bls_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
            if unique in sys.modules:  # one module per file: steps naming it share its state
                module = sys.modules[unique]
            else:
                spec = importlib.util.spec_from_file_location(unique, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[unique]
                    raise
        else:
            module = importlib.import_module(module_name)
    except Exception as e:  # the user's module failing to import is what we report
        return f"python: cannot import {module_name!r}: {type(e).__name__}: {e}"
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            return f"python: {module_name!r} has no attribute {attr!r}{_hint(part, names, 'its names')}"
        obj = getattr(obj, part)
    if not callable(obj):
        return f"python: {target!r} is not callable (it is {type(obj).__name__} {obj!r:.40})"
    return obj


def _instantiate(target: Callable[..., Any], name: str) -> Callable[..., Any] | str:
    """A class target becomes its instance, its ``setup()`` run once (here, at load); a function
    is itself. A string: what went wrong."""
    if not inspect.isclass(target):
        return target
    try:
        obj = target()
    except Exception as e:
        return f"python: {name!r} is a class and could not be made without arguments: {type(e).__name__}: {e}"
    if not callable(obj):
        return f"python: {name!r} is a class whose instances are not callable; give it __call__(self, inputs, ctx)"
    setup = getattr(obj, "setup", None)
    if callable(setup):
        try:
            setup()
        except Exception as e:  # the user's setup failing is what we report
            return f"python: {name!r}.setup() failed: {type(e).__name__}: {e}"
    return cast(Callable[..., Any], obj)


def _is_generator(fn: Any) -> bool:
    """Whether a python step yields its responses (a sync or async generator function or method)."""
    call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)


def _python_fn(target: Callable[..., Any], outputs: Sequence[str], step: str, pipeline: str,
               streams: bool) -> Callable[..., Any]:
    """A python step's callable: ``target(inputs, ctx)``. Its result is checked for the declared
    outputs (after awaiting, if async); a streaming step's iterator is checked item by item by
    the executor."""

    def check(result: Any) -> dict[str, Any]:
        if not isinstance(result, Mapping):
            raise TypeError(f"python step {step!r} returned {type(result).__name__}; expected a dict of its outputs ({', '.join(outputs)})")
        missing = [o for o in outputs if o not in result]
        if missing:
            raise ValueError(f"python step {step!r} did not return its declared output(s) {', '.join(missing)}")
        return dict(result)

    async def checked(awaitable: Any) -> dict[str, Any]:
        return check(await awaitable)

    def run(*, ctx: Any = None, **inputs: Any) -> Any:
        result = target(dict(inputs), ctx if ctx is not None else StepContext(pipeline=pipeline))
        if streams:
            return _checked_items(result, check)
        if inspect.isawaitable(result):
            return checked(result)  # awaited by the executor, on the run's event loop
        return check(result)

    return run


def _checked_items(items: Any, check: Callable[[Any], dict[str, Any]]) -> Any:
    """A streaming step's iterator (sync or async), each item checked as it comes."""
    if hasattr(items, "__aiter__"):
        async def agen() -> Any:
            try:
                async for item in items:
                    yield check(item)
            finally:
                await items.aclose()
        return agen()

    def gen() -> Any:
        try:
            for item in items:
                yield check(item)
        finally:
            items.close()
    return gen()
