"""The executor: runs a compiled plan on one request (a sample, a dense batch or a ragged batch).

A chain of steps runs inline in the caller's thread. Where the plan branches, independent steps
run concurrently on a thread pool (the kernels release the GIL), scheduled by counting down
each step's dependencies — no barrier between levels — and the calling thread keeps working
too, so a saturated pool slows a run down but never deadlocks it. Intermediates are released
right after their last use; every step's wall time is recorded in a :class:`RunStats`.

Random ops draw from a generator made for the step from the run's seed and the step's name, so
a run is reproducible from its seed and adding a step does not change another step's draws.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._context import StepContext
from ._placement import move
from ._plan import Mode, Plan, PlanStep, compile_plan
from ._resolved import ValidPipeline

__all__ = ["Executor", "PipelineInputError", "RunStats", "Seed", "StepError", "StreamingError"]

Seed = int | np.random.Generator | np.random.SeedSequence | None
StepFn = Callable[..., Any]


class _Absent:
    """The value of a slot that holds nothing: not produced (skipped step) or already released."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


class StepError(RuntimeError):
    """A step failed. Names the pipeline, the step and what it runs; the cause is chained."""

    def __init__(self, pipeline: str, step: str, kind: str, target: str, detail: str) -> None:
        self.pipeline = pipeline
        self.step = step
        self.kind = kind
        self.target = target
        super().__init__(f"pipeline {pipeline!r}, step {step!r} ({kind} {target}): {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        detail = str(self).split("): ", 1)[-1]
        return (StepError, (self.pipeline, self.step, self.kind, self.target, detail))


class PipelineInputError(ValueError):
    """The inputs given to a pipeline are missing one it needs, or name one it does not have."""


@dataclass
class RunStats:
    """Timings of one run: per plan step, its start (seconds after the run began) and wall time.

    Steps that did not run (``when`` false, or a failure before them) have NaN for both.
    """

    pipeline: str
    mode: Mode
    steps: tuple[str, ...]
    begin: list[float]
    seconds: list[float]
    total: float = math.nan

    @property
    def step_seconds(self) -> dict[str, float]:
        """Wall time of each step that ran, by step name."""
        return {n: s for n, s in zip(self.steps, self.seconds) if not math.isnan(s)}

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(n for n, s in zip(self.steps, self.seconds) if math.isnan(s))


class _Run:
    """The mutable state of one run: slot values, timings, seed, and (async) the calling loop."""

    __slots__ = ("begin", "ctx", "loop", "mode", "root", "seconds", "t0", "values")

    def __init__(self, plan: Plan, mode: Mode, root: int | None, loop: asyncio.AbstractEventLoop | None,
                 ctx: StepContext | None = None) -> None:
        n = len(plan.steps)
        self.values: list[Any] = [ABSENT] * plan.n_slots
        self.begin = [math.nan] * n
        self.seconds = [math.nan] * n
        self.mode = mode
        self.root = root
        self.loop = loop
        self.ctx = ctx
        self.t0 = time.perf_counter()


class Executor:
    """Runs a validated pipeline (or the part of it producing ``outputs``) in either mode.

    Args:
        valid: the validated pipeline.
        outputs: what to produce (pipeline outputs, step outputs like ``"pre.image"``, or inputs);
            default: the pipeline's outputs.
        inputs: step outputs to take as inputs instead of computing them (``"decode.image"``).
        max_workers: threads for independent branches (default ``min(4, cpu count)``).
        concurrent: run independent branches concurrently (False: one thread, plan order).
    """

    def __init__(
        self,
        valid: ValidPipeline,
        *,
        outputs: Sequence[str] | None = None,
        inputs: Sequence[str] = (),
        max_workers: int | None = None,
        concurrent: bool = True,
    ) -> None:
        self.valid = valid
        self.outputs = None if outputs is None else tuple(outputs)
        self.inputs = tuple(inputs)
        self.max_workers = max_workers or min(4, os.cpu_count() or 1)
        self.concurrent = concurrent and self.max_workers > 1
        self.last_stats: RunStats | None = None
        self._plans: dict[str, tuple[Plan, list[StepFn]]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    @property
    def name(self) -> str:
        return self.valid.spec.name

    def plan(self, mode: Mode) -> Plan:
        """The plan for ``mode`` (compiled on first use, then cached)."""
        return self._compiled(mode)[0]

    def _compiled(self, mode: Mode) -> tuple[Plan, list[StepFn]]:
        entry = self._plans.get(mode)
        if entry is None:
            plan = compile_plan(self.valid, mode=mode, outputs=self.outputs, inputs=self.inputs)
            fns = [s.fn if s.fn is not None else _nested_fn(s) for s in plan.steps]
            entry = self._plans.setdefault(mode, (plan, fns))
        return entry

    # -- running -------------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve",
            ctx: StepContext | None = None) -> dict[str, Any]:
        """Run on ``inputs`` (name → value); returns the outputs (name → value).

        An output whose producing step was skipped (``when`` false, or not in this ``mode``) is
        absent from the result. ``rng`` (a seed or a Generator) drives the random ops in train
        mode; without it a train run draws fresh entropy. Serve mode never draws. ``ctx`` is what
        python steps get (an Engine passes its own; default: a plain :class:`StepContext`).
        """
        return self._execute(inputs, rng, mode, None, ctx)[0]

    def run_with_stats(
        self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve", ctx: StepContext | None = None
    ) -> tuple[dict[str, Any], RunStats]:
        """:meth:`run`, also returning the run's timings (safe when runs overlap)."""
        return self._execute(inputs, rng, mode, None, ctx)

    async def run_async(self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve",
                        ctx: StepContext | None = None) -> dict[str, Any]:
        """:meth:`run` off the event loop (one hop to a worker thread per run, not per step).

        A step whose callable is a coroutine function (an ``async`` python step) is awaited on
        this loop.
        """
        return (await self.run_with_stats_async(inputs, rng=rng, mode=mode, ctx=ctx))[0]

    async def run_with_stats_async(
        self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve", ctx: StepContext | None = None,
        threads: concurrent.futures.Executor | None = None,
    ) -> tuple[dict[str, Any], RunStats]:
        """:meth:`run_async`, also returning the run's timings; ``threads``: where the run goes
        (default: the loop's default executor)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(threads, functools.partial(self._execute, inputs, rng, mode, loop, ctx))

    def _start(self, inputs: Mapping[str, Any], rng: Seed, mode: Mode, loop: asyncio.AbstractEventLoop | None,
               ctx: StepContext | None) -> tuple[Plan, list[StepFn], _Run]:
        plan, fns = self._compiled(mode)
        root = _root_seed(rng) if plan.any_random and mode == "train" else None
        if ctx is None and plan.any_ctx:
            ctx = StepContext(pipeline=plan.pipeline)
        run = _Run(plan, mode, root, loop, ctx)
        values = run.values
        try:
            for name, slot in plan.inputs:
                values[slot] = inputs[name]
        except KeyError:
            raise self._input_error(plan, inputs) from None
        except TypeError:
            raise PipelineInputError(
                f"pipeline {plan.pipeline!r}: inputs must be a mapping of name to value, got {type(inputs).__name__}"
            ) from None
        if len(inputs) > len(plan.inputs):
            unknown = [k for k in inputs if k not in plan.known_inputs]
            if unknown:
                raise self._input_error(plan, inputs)
        return plan, fns, run

    def _execute(
        self, inputs: Mapping[str, Any], rng: Seed, mode: Mode, loop: asyncio.AbstractEventLoop | None,
        ctx: StepContext | None = None,
    ) -> tuple[dict[str, Any], RunStats]:
        plan, fns, run = self._start(inputs, rng, mode, loop, ctx)
        if plan.stream_step is not None:
            raise StreamingError(f"pipeline {plan.pipeline!r} streams (step {plan.steps[plan.stream_step].name!r} is a "
                                 "generator): run it with stream() or stream_async(), or through an Engine's stream")
        if self.concurrent and plan.width > 1:
            self._run_concurrent(plan, fns, run)
        else:
            self._run_sequential(plan, fns, run)
        out = _outputs(plan, run.values)
        stats = RunStats(plan.pipeline, mode, tuple(s.name for s in plan.steps), run.begin, run.seconds,
                         time.perf_counter() - run.t0)
        self.last_stats = stats
        return out, stats

    # -- streaming (dag/_stream.py) ----------------------------------------------------------------

    def stream(self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve",
               ctx: StepContext | None = None) -> Generator[dict[str, Any], None, None]:
        """Run a streaming pipeline: one result (its outputs) per item its generator step yields.

        The steps the generator does not depend on run once first, the generator step next, and
        then, for each item it yields, the steps that depend on it. Closing the iterator closes
        the generator step. A pipeline without a generator step yields its one result.
        """
        from ._stream import stream  # (a cycle at import time otherwise)

        return stream(self, inputs, rng, mode, None, ctx)

    def stream_async(self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve",
                     ctx: StepContext | None = None) -> AsyncIterator[dict[str, Any]]:
        """:meth:`stream` off the event loop: the steps run on a thread of their own, each result
        is handed to this loop as it is made; leaving early cancels ``ctx`` and closes the stream."""
        from ._stream import stream_async

        return stream_async(self, inputs, rng, mode, ctx)

    def _run_sequential(self, plan: Plan, fns: list[StepFn], run: _Run) -> None:
        values = run.values
        begin = run.begin
        seconds = run.seconds
        t0 = run.t0
        pc = time.perf_counter
        for st in plan.steps:
            if st.simple and not st.takes_rng and not st.takes_ctx:
                # the hot path: gather, call, scatter, release
                kwargs = {a: values[s] for a, s in st.pairs}
                t = pc()
                try:
                    out = fns[st.index](**kwargs)
                    if type(out) is not dict:
                        out = _result(out, run.loop)
                    for o, s in st.outputs:
                        v = out[o]
                        values[s] = _densify(v) if type(v) is list else v
                except Exception as e:
                    raise _step_error(plan, st, e) from e
                t1 = pc()
                begin[st.index] = t - t0
                seconds[st.index] = t1 - t
            else:
                self._step(plan, st, fns[st.index], run)
            for s in st.release:
                values[s] = ABSENT

    def _step(self, plan: Plan, st: PlanStep, fn: StepFn, run: _Run) -> None:
        """Run one step, the general way: ``when``, fallbacks, generators."""
        values = run.values
        if st.when:
            flag = _first(values, st.when)
            if flag is ABSENT:
                raise StepError(plan.pipeline, st.name, st.kind, st.target,
                                f"its when: tensor {plan.slot_names[st.when[0]]} was not produced")
            try:
                go = _truth(flag)
            except (TypeError, ValueError) as e:
                raise _step_error(plan, st, e) from e
            if not go:
                return
        kwargs = self._arguments(plan, st, values)
        t = time.perf_counter()
        try:
            if st.takes_ctx:
                kwargs["ctx"] = run.ctx
            if st.takes_rng:
                gen = None if run.root is None else np.random.default_rng((run.root, st.seed_key))
                out = fn(rng=gen, mode=run.mode, **kwargs)
            else:
                out = fn(**kwargs)
            if type(out) is not dict:
                out = _result(out, run.loop)
            for o, s in st.outputs:
                v = out[o]
                values[s] = _densify(v) if type(v) is list else v
        except Exception as e:
            raise _step_error(plan, st, e) from e
        t1 = time.perf_counter()
        run.begin[st.index] = t - run.t0
        run.seconds[st.index] = t1 - t

    @staticmethod
    def _arguments(plan: Plan, st: PlanStep, values: list[Any]) -> dict[str, Any]:
        kwargs = {}
        moves = {c.slot: c.dst for c in st.copies}
        for a, cands in zip(st.args, st.arg_slots):
            slot = next((s for s in cands if values[s] is not ABSENT), None)
            if slot is None:
                raise StepError(plan.pipeline, st.name, st.kind, st.target,
                                f"input {a!r}: {plan.slot_names[cands[0]]} was not produced (its step was skipped) "
                                "and the reference declares no default")
            v = values[slot]
            if slot in moves:  # across devices (a no-op where the value is already there)
                try:
                    v = move(v, moves[slot])
                except Exception as e:
                    raise _step_error(plan, st, e) from e
            kwargs[a] = v
        return kwargs

    def _run_concurrent(self, plan: Plan, fns: list[StepFn], run: _Run) -> None:
        """Dependency counting: a finished step starts its first newly ready dependent itself
        (a chain stays on one thread) and hands the others to the pool."""
        steps = plan.steps
        pending = [len(s.deps) for s in steps]
        uses = list(plan.uses)
        keep = plan.keep
        values = run.values
        ready: deque[int] = deque()
        cond = threading.Condition()
        state: dict[str, Any] = {"done": 0, "error": None}
        n = len(steps)
        pool = self._get_pool()

        def work(first: int | None) -> None:
            i = first
            while True:
                if i is None:
                    with cond:
                        if state["error"] is not None or not ready:
                            return
                        i = ready.popleft()
                st = steps[i]
                try:
                    self._step(plan, st, fns[i], run)
                except BaseException as e:
                    with cond:
                        if state["error"] is None:
                            state["error"] = e
                        cond.notify_all()
                    return
                spawn = 0
                nxt = None
                with cond:
                    state["done"] += 1
                    for s in st.reads:
                        uses[s] -= 1
                        if uses[s] == 0 and s not in keep:
                            values[s] = ABSENT
                    for d in st.dependents:
                        pending[d] -= 1
                        if pending[d] == 0:
                            if nxt is None:
                                nxt = d
                            else:
                                ready.append(d)
                                spawn += 1
                    if spawn or state["done"] == n:
                        cond.notify_all()
                for _ in range(spawn):
                    pool.submit(work, None)
                if state["error"] is not None:  # another branch failed: start nothing new
                    return
                i = nxt

        roots = [s.index for s in steps if not s.deps]
        with cond:
            ready.extend(roots[1:])
        for _ in roots[1:]:
            pool.submit(work, None)
        work(roots[0])
        while True:
            with cond:
                while state["error"] is None and state["done"] < n and not ready:
                    cond.wait()
                if state["error"] is not None:
                    raise state["error"]
                if state["done"] == n:
                    return
            work(None)  # the caller helps with what is ready

    def _get_pool(self) -> ThreadPoolExecutor:
        # a pool does not survive fork (its threads stay in the parent): one per process
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=f"twinpipe-{self.name}")
                    self._pool_pid = pid
        return self._pool

    def _input_error(self, plan: Plan, inputs: Mapping[str, Any]) -> PipelineInputError:
        needed = [n for n, _ in plan.inputs]
        missing = [n for n in needed if n not in inputs]
        unknown = [k for k in inputs if k not in plan.known_inputs]
        parts = []
        if missing:
            parts.append(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"no input{'s' if len(unknown) > 1 else ''} named {', '.join(map(repr, unknown))}")
        return PipelineInputError(
            f"pipeline {plan.pipeline!r}: {'; '.join(parts)} (inputs are: {', '.join(needed) or 'none'})"
        )

    def close(self) -> None:
        """Stop the branch threads (they are also stopped when the executor is collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an Executor is not picklable; pickle the Pipeline (it reloads from its file)")


class StreamingError(RuntimeError):
    """A streaming pipeline was run for one result: it answers with a stream."""


def _outputs(plan: Plan, values: list[Any]) -> dict[str, Any]:
    out = {}
    for name, cands in plan.outputs:
        for s in cands:
            v = values[s]
            if v is not ABSENT:
                out[name] = v
                break
    return out


def _first(values: list[Any], cands: tuple[int, ...]) -> Any:
    for s in cands:
        v = values[s]
        if v is not ABSENT:
            return v
    return ABSENT


def _densify(items: list[Any]) -> Any:
    """A ragged batch whose items now agree in shape and dtype, stacked into a dense one."""
    if not items:
        return items
    first = items[0]
    if isinstance(first, np.ndarray):
        if all(isinstance(a, np.ndarray) and a.shape == first.shape and a.dtype == first.dtype for a in items):
            return np.stack(items)
    elif type(first).__module__.startswith("torch") and hasattr(first, "shape"):
        import torch

        if all(isinstance(a, torch.Tensor) and a.shape == first.shape and a.dtype == first.dtype
               and a.device == first.device for a in items):
            return torch.stack(items)
    return items


def _truth(flag: Any) -> bool:
    """A ``when`` tensor's value: one boolean (a Python bool, a 1-element array or tensor)."""
    arr = np.asarray(flag.cpu() if hasattr(flag, "cpu") else flag)
    if arr.size != 1:
        raise ValueError(f"a when: tensor must hold one boolean, got shape {list(arr.shape)}")
    return bool(arr.reshape(()))


def _result(out: Any, loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    """A step's result as a dict: awaiting a coroutine (a BLS step) on the run's loop."""
    if inspect.isawaitable(out):
        if loop is not None:
            out = asyncio.run_coroutine_threadsafe(_await(out), loop).result()
        else:
            out = asyncio.run(_await(out))
    if not isinstance(out, Mapping):
        raise TypeError(f"a step must return a dict of output name to value, got {type(out).__name__}")
    return dict(out)


async def _await(x: Any) -> Any:
    return await x


def _step_error(plan: Plan, st: PlanStep, e: Exception) -> StepError:
    if isinstance(e, KeyError) and e.args and e.args[0] in {o for o, _ in st.outputs}:
        detail = f"it returned no output {e.args[0]!r}"
    else:
        detail = f"{type(e).__name__}: {e}"
    return StepError(plan.pipeline, st.name, st.kind, st.target, detail)


def _root_seed(rng: Seed) -> int:
    """The run's seed: from a seed, a Generator (one draw), a SeedSequence, or fresh entropy."""
    if rng is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    if isinstance(rng, np.random.SeedSequence):
        return int(rng.generate_state(1, np.uint64)[0])
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return int(rng) & 0xFFFF_FFFF_FFFF_FFFF
    raise TypeError(f"rng must be a seed (int), a numpy Generator or SeedSequence, got {type(rng).__name__}")


def _nested_fn(st: PlanStep) -> StepFn:
    """A nested pipeline step's callable: a sub-executor over the inner pipeline."""
    assert st.nested is not None
    inner = Executor(st.nested)

    def run(*, rng: Any = None, mode: Mode = "serve", ctx: StepContext | None = None, **inputs: Any) -> dict[str, Any]:
        return inner.run(inputs, rng=rng, mode=mode, ctx=ctx)

    return run  # (validation reserves the input names rng and mode for nested pipelines)
