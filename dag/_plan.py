"""The compiled plan: what runs, in which order, reading and writing which slots.

A :class:`Plan` is compiled once per (pipeline, mode, requested outputs) and then run many
times, so everything the executor would otherwise work out per request is decided here: the
steps needed for the requested outputs in a topological order, integer slots for every tensor
(a flat list on the hot path, not a dict), each step's dependencies and dependents (the
executor counts them down to run independent branches concurrently), each intermediate's last
use (released right after it), and the device each step runs on with the copies that implies.

``mode:`` is resolved here: a step excluded from this mode is not in the plan, and a reference
to its output falls back to the reference's ``default`` at compile time. ``when:`` is resolved
at run time: such a step may be skipped, so a reference to its output keeps its fallbacks as a
list of candidate slots, tried in order.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._placement import Device, cuda_usable, gpu_present, made_on, place, reads_on
from ._resolved import ValidPipeline
from ._spec import StepKind, TensorRef

__all__ = ["Copy", "Plan", "PlanError", "PlanStep", "compile_plan", "step_seed_key"]

Mode = Literal["train", "serve"]


class PlanError(ValueError):
    """The requested plan cannot be made: an unknown output, or a step with nothing to run it."""


@dataclass(frozen=True)
class Copy:
    """A tensor that crosses devices on its way into a step (``slot`` moves ``src`` → ``dst``)."""

    slot: int
    tensor: str
    src: Device
    dst: Device


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan. Indices (``deps``, ``dependents``) are positions in ``Plan.steps``."""

    index: int
    name: str
    kind: StepKind
    target: str  # op name, model, pipeline or python target: what an error names
    fn: Callable[..., dict[str, Any]] | None  # None only for a nested pipeline the executor runs
    nested: ValidPipeline | None
    args: tuple[str, ...]  # argument names, aligned with arg_slots
    arg_slots: tuple[tuple[int, ...], ...]  # per argument: candidate slots, tried in order
    when: tuple[int, ...]  # candidate slots of the ``when`` tensor; () when unconditional
    outputs: tuple[tuple[str, int], ...]  # (output name, slot) for the outputs something reads
    reads: tuple[int, ...]  # every slot it reads (arguments and ``when``), once each
    release: tuple[int, ...]  # slots whose last use (in plan order) is this step
    deps: tuple[int, ...]
    dependents: tuple[int, ...]
    level: int  # 0 for steps that only read inputs; 1 + the deepest dependency otherwise
    device: Device
    copies: tuple[Copy, ...]
    takes_rng: bool  # called with rng= and mode= (random ops, nested pipelines)
    takes_ctx: bool  # called with ctx= (python steps, nested pipelines)
    streams: bool  # a generator python step: its results stream, each one running its dependents
    seed_key: int  # stable per step name: its generator is derived from (run seed, seed_key)
    simple: bool  # no ``when``, and every argument is one slot that is always present
    pairs: tuple[tuple[str, int], ...]  # (argument, first candidate slot): the fast path of simple steps


@dataclass(frozen=True)
class Plan:
    """A pipeline compiled for one mode and one set of outputs."""

    pipeline: str
    mode: Mode
    steps: tuple[PlanStep, ...]  # topological order (file order among independent steps)
    n_slots: int
    slot_names: tuple[str, ...]  # slot → tensor name ("image", "decode.image")
    inputs: tuple[tuple[str, int], ...]  # the inputs this plan reads: (name, slot)
    known_inputs: frozenset[str]  # names a caller may pass (read or not)
    outputs: tuple[tuple[str, tuple[int, ...]], ...]  # (requested name, candidate slots)
    uses: tuple[int, ...]  # per slot: how many steps read it (for release under concurrency)
    keep: frozenset[int]  # slots never released (the outputs)
    excluded: tuple[str, ...]  # steps left out because of ``mode:``
    levels: tuple[tuple[int, ...], ...]  # steps by level: each level's steps are independent
    any_random: bool

    @property
    def any_ctx(self) -> bool:
        """Whether a step of this plan takes the run's context (python steps, nested pipelines)."""
        return any(s.takes_ctx for s in self.steps)

    @property
    def stream_step(self) -> int | None:
        """The index of the streaming step this plan runs, if any."""
        return next((s.index for s in self.steps if s.streams), None)

    @property
    def width(self) -> int:
        """The most steps that can run at once (the widest level)."""
        return max((len(level) for level in self.levels), default=0)

    @property
    def roots(self) -> tuple[int, ...]:
        return tuple(s.index for s in self.steps if not s.deps)

    def describe(self) -> str:
        """A readable listing: one line per step with its level, device, reads and writes."""
        lines = [f"plan {self.pipeline!r} ({self.mode}): {len(self.steps)} steps, {self.n_slots} slots"]
        for s in self.steps:
            reads = ", ".join(f"{a}={'|'.join(self.slot_names[c] for c in cs)}" for a, cs in zip(s.args, s.arg_slots))
            writes = ", ".join(self.slot_names[slot] for _, slot in s.outputs)
            when = f" when {'|'.join(self.slot_names[c] for c in s.when)}" if s.when else ""
            copies = "".join(f"; copies {c.tensor} {c.src}→{c.dst}" for c in s.copies)
            free = f"; frees {', '.join(self.slot_names[c] for c in s.release)}" if s.release else ""
            lines.append(f"  [{s.level}] {s.name} ({s.kind} {s.target}, {s.device}){when}: {reads} -> {writes}{copies}{free}")
        if self.excluded:
            lines.append(f"  not in {self.mode} mode: {', '.join(self.excluded)}")
        return "\n".join(lines)


def step_seed_key(name: str) -> int:
    """A stable 63-bit key for a step name (Python's ``hash`` changes between processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


def compile_plan(
    valid: ValidPipeline,
    *,
    mode: Mode,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] = (),
    gpu: bool | None = None,
) -> Plan:
    """Compile ``valid`` for ``mode``, producing ``outputs`` (default: the pipeline's outputs).

    ``outputs`` may name pipeline outputs, step outputs (``"pre.image"``) or pipeline inputs.
    ``inputs`` names step outputs to take as given instead of computing them (e.g.
    ``"decode.image"`` for a batch that is already decoded): their producers do not run.
    ``gpu``: whether ``device: auto`` steps may go to the GPU (default: when this machine has
    one); see :mod:`._placement`.
    """
    if mode not in ("train", "serve"):
        raise PlanError(f"mode must be 'train' or 'serve', got {mode!r}")
    spec = valid.spec
    steps = {s.name: s for s in valid.steps}
    order = {s.name: i for i, s in enumerate(valid.steps)}
    pipeline_inputs = [d.name for d in spec.inputs]
    excluded = {s.name for s in valid.steps if s.spec.mode is not None and s.spec.mode != mode}
    cut = set(inputs)
    for name in cut:
        step_name, _, out = name.partition(".")
        if step_name not in steps or out not in steps[step_name].outputs:
            raise PlanError(f"pipeline {spec.name!r}: cannot take {name!r} as an input: {_no_tensor(valid, name)}")

    def candidates(ref: TensorRef | None) -> tuple[str, ...]:
        """The tensors a reference may read, in order: itself, then its defaults, as this mode allows."""
        found: list[str] = []
        while ref is not None:
            name = str(ref)
            if ref.step is None or name in cut:
                found.append(name)
                break
            if ref.step not in excluded:
                found.append(name)
                if steps[ref.step].spec.when is None:
                    break  # it always runs: later fallbacks can never be read
            ref = ref.default
        return tuple(found)

    # what is asked for
    declared = {d.name: d for d in spec.outputs}
    wanted: list[tuple[str, tuple[str, ...]]] = []
    for name in outputs if outputs is not None else list(declared):
        if name in declared:
            source = declared[name].source
            wanted.append((name, candidates(source) if source is not None else ()))
        elif name in pipeline_inputs or name in cut:
            wanted.append((name, (name,)))
        else:
            step_name, dot, out = name.partition(".")
            if not dot or step_name not in steps or out not in steps[step_name].outputs:
                raise PlanError(f"pipeline {spec.name!r} has no output {name!r}: {_no_tensor(valid, name)}")
            wanted.append((name, candidates(TensorRef(step_name, out, spec.location))))

    # the steps needed, walking back from what is asked for
    reads: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    whens: dict[str, tuple[str, ...]] = {}
    needed: set[str] = set()
    stack = [t for _, cands in wanted for t in cands]
    while stack:
        tensor = stack.pop()
        if tensor in cut or "." not in tensor:
            continue
        name = tensor.partition(".")[0]
        if name in needed:
            continue
        needed.add(name)
        step = steps[name]
        args = []
        for arg, ref in step.spec.inputs.items():
            cands = candidates(ref)
            if not cands:
                raise PlanError(
                    f"pipeline {spec.name!r}, step {name!r}: input {arg!r} reads {ref}, which is not computed in "
                    f"{mode} mode (step {ref.step!r} is {steps[ref.step].spec.mode}-only) and has no default"
                    if ref.step in excluded
                    else f"pipeline {spec.name!r}, step {name!r}: input {arg!r} reads {ref}, which is not available"
                )
            args.append((arg, cands))
            stack.extend(cands)
        reads[name] = args
        if step.spec.when is not None:
            whens[name] = candidates(step.spec.when)
            if not whens[name]:
                raise PlanError(
                    f"pipeline {spec.name!r}, step {name!r}: its when: {step.spec.when} is not computed in {mode} mode"
                )
            stack.extend(whens[name])

    # topological order, file order among the ready ones
    producers = {name: {t.partition(".")[0] for _, cs in reads[name] for t in cs if t not in cut and "." in t}
                 for name in needed}
    for name, cands in whens.items():
        producers[name] |= {t.partition(".")[0] for t in cands if t not in cut and "." in t}
    remaining = {name: len(producers[name]) for name in needed}
    consumers: dict[str, list[str]] = {name: [] for name in needed}
    for name, ps in producers.items():
        for p in ps:
            consumers[p].append(name)
    heap = [(order[n], n) for n in needed if remaining[n] == 0]
    heapq.heapify(heap)
    topo: list[str] = []
    while heap:
        _, name = heapq.heappop(heap)
        topo.append(name)
        for c in consumers[name]:
            remaining[c] -= 1
            if remaining[c] == 0:
                heapq.heappush(heap, (order[c], c))
    if len(topo) != len(needed):
        cycle = sorted(n for n in needed if remaining[n])
        raise PlanError(f"pipeline {spec.name!r}: steps {', '.join(cycle)} depend on each other (a cycle)")

    # slots: the inputs read first, then each step's outputs as it writes them
    slot_of: dict[str, int] = {}

    def slot(tensor: str) -> int:
        if tensor not in slot_of:
            slot_of[tensor] = len(slot_of)
        return slot_of[tensor]

    read_tensors = {t for name in needed for _, cs in reads[name] for t in cs} | {
        t for cs in whens.values() for t in cs
    } | {t for _, cs in wanted for t in cs}
    plan_inputs = tuple(
        (name, slot(name)) for name in [*pipeline_inputs, *sorted(cut)] if name in read_tensors
    )
    index = {name: i for i, name in enumerate(topo)}

    def _conditional(tensor: str) -> bool:
        """Whether a tensor may be absent at run time (its producer has a ``when``)."""
        return tensor not in cut and "." in tensor and steps[tensor.partition(".")[0]].spec.when is not None

    devices = place(steps, topo, producers, consumers, gpu_present() if gpu is None else gpu)
    if not cuda_usable():
        for name in topo:
            if devices[name] == "cuda":
                step_spec = steps[name].spec
                where = step_spec.locations.get("device", step_spec.location)
                raise PlanError(f"{where}: pipeline {spec.name!r}, step {name!r}: device: cuda, but this machine has no CUDA "
                                "device (torch and Numba see none); use device: auto to run on the CPU where there is no GPU")
    outputs_on = {n: made_on(steps[n], d) for n, d in devices.items()}
    built: list[dict[str, Any]] = []
    for name in topo:
        step = steps[name]
        arg_slots = tuple(tuple(slot(t) for t in cs) for _, cs in reads[name])
        when = tuple(slot(t) for t in whens.get(name, ()))
        outs = tuple((o, slot(f"{name}.{o}")) for o in step.outputs if f"{name}.{o}" in read_tensors)
        copies = tuple(
            Copy(slot_of[t], t, src, devices[name])
            for _, cs in reads[name]
            for t in cs
            if reads_on(step, devices[name]) != "any" and (src := _device_of(t, cut, outputs_on)) != devices[name]
        )
        if step.fn is None and step.nested is None:
            what = f"{step.spec.kind} {step.spec.target!r}"
            raise PlanError(
                f"pipeline {spec.name!r}, step {name!r}: nothing runs {what} "
                + ("(load the model first)" if step.spec.kind == "model" else "(python steps run in the runtime)")
            )
        built.append(
            {
                "index": index[name],
                "name": name,
                "kind": step.spec.kind,
                "target": step.op_name or step.spec.target,
                "fn": step.gpu_fn if devices[name] == "cuda" and step.gpu_fn is not None else step.fn,
                "nested": step.nested,
                "args": tuple(a for a, _ in reads[name]),
                "arg_slots": arg_slots,
                "when": when,
                "outputs": outs,
                "deps": tuple(sorted(index[p] for p in producers[name])),
                "dependents": tuple(sorted(index[c] for c in consumers[name])),
                "device": devices[name],
                "copies": copies,
                "takes_rng": step.is_random or step.spec.kind == "pipeline",
                "takes_ctx": step.spec.kind in ("python", "pipeline"),
                "streams": step.streams,
                "seed_key": step_seed_key(name),
                "simple": not when and not copies and all(len(cs) == 1 and not _conditional(cs[0]) for _, cs in reads[name]),
                "pairs": tuple((a, cs[0]) for a, cs in zip((a for a, _ in reads[name]), arg_slots)),
                "reads": tuple(sorted({s for cs in arg_slots for s in cs} | set(when))),
            }
        )

    # levels, uses and last uses
    levels: list[int] = []
    for b in built:
        levels.append(1 + max((levels[d] for d in b["deps"]), default=-1))
    n_slots = len(slot_of)
    wanted_slots = tuple((name, tuple(slot_of[t] for t in cs)) for name, cs in wanted)
    keep = frozenset(s for _, cs in wanted_slots for s in cs)
    uses = [0] * n_slots
    last: dict[int, int] = {}
    for i, b in enumerate(built):
        for s in b["reads"]:
            uses[s] += 1
            last[s] = i
    release: list[list[int]] = [[] for _ in built]
    for s, i in last.items():
        if s not in keep:
            release[i].append(s)
    plan_steps = tuple(
        PlanStep(**b, level=levels[i], release=tuple(sorted(release[i]))) for i, b in enumerate(built)
    )
    by_level: list[list[int]] = [[] for _ in range(max(levels, default=-1) + 1)]
    for i, lv in enumerate(levels):
        by_level[lv].append(i)
    return Plan(
        pipeline=spec.name,
        mode=mode,
        steps=plan_steps,
        n_slots=n_slots,
        slot_names=tuple(sorted(slot_of, key=slot_of.__getitem__)),
        inputs=plan_inputs,
        known_inputs=frozenset(pipeline_inputs) | frozenset(cut),
        outputs=wanted_slots,
        uses=tuple(uses),
        keep=keep,
        excluded=tuple(s.name for s in valid.steps if s.name in excluded),
        levels=tuple(tuple(lv) for lv in by_level),
        any_random=any(s.takes_rng for s in plan_steps),
    )


def _device_of(tensor: str, cut: set[str], devices: dict[str, Device]) -> Device:
    """Where a tensor is produced: inputs arrive on the host."""
    if tensor in cut or "." not in tensor:
        return "cpu"
    return devices[tensor.partition(".")[0]]


def _no_tensor(valid: ValidPipeline, name: str) -> str:
    outs = [d.name for d in valid.spec.outputs]
    step_outs = [f"{s.name}.{o}" for s in valid.steps for o in s.outputs]
    return f"expected one of the outputs ({', '.join(outs) or 'none'}) or a step output ({', '.join(step_outs)})"
