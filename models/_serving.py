"""What serves one model version or one pipeline: request checks, instances, and the batcher
its config asks for. The runtime's Engine holds one of these per model and per pipeline.

    served = ServedModel(repo.get("tiny"))
    out = await served.infer({"pixels": x})                          # x: [n, 3, 32, 32]
    out = await served.infer({"audio": chunk}, sequence_id=7, sequence_start=True)
    pipe = ServedPipeline(load_pipeline("imagenet_preprocess"))    # batches if it declares batching:
"""

from __future__ import annotations

import difflib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NoReturn

import numpy as np

from twinpipe.dag import DATATYPES, Pipeline, RunStats, StepContext, TensorDecl, datatype_of, dtype_of, to_host

from ._batcher import BatcherStats, BatchingPolicy, DynamicBatcher
from ._instances import InstancePool
from ._repository import LoadedModel
from ._sequence import SequenceBatcher

__all__ = ["InferInputError", "ServedModel", "ServedPipeline", "check_inputs"]

#: a pipeline that declares ``batching:`` without ``max_batch_size`` batches up to this
DEFAULT_PIPELINE_BATCH = 8


_DTYPES = {name: np.dtype(dtype_of(name)) for name in DATATYPES}


class InferInputError(ValueError):
    """A request's inputs do not match what the model declares (names the tensor, expected vs given)."""


def _wire_name(dtype: np.dtype[Any]) -> str:
    """A given array's dtype as the client sent it: ``FP32 (float32)``, or NumPy's name alone."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return f"{datatype_of(dtype)} ({dtype.name})"
    except KeyError:
        return dtype.name


def check_inputs(name: str, decls: tuple[TensorDecl, ...], inputs: Mapping[str, Any], max_batch_size: int) -> dict[str, Any]:
    """``inputs`` as arrays, checked against ``decls``: names, datatypes, ranks and fixed
    dimensions, and (when ``max_batch_size > 0``) one batch size within the limit."""
    out: dict[str, Any] = {}
    rows = -1
    for d in decls:  # every request passes here: one loop, the messages built only on failure
        x = inputs.get(d.name, _MISSING)
        if x is _MISSING:
            _names_error(name, decls, inputs)
        arr = x if type(x) is np.ndarray else np.asarray(x)
        if arr.dtype != _DTYPES[d.datatype] and not (d.datatype == "BYTES" and arr.dtype.kind in "OSU"):
            given = _wire_name(arr.dtype)
            raise InferInputError(f"{name}: input {d.name!r} has datatype {d.datatype} ({_DTYPES[d.datatype].name}); given {given}")
        shape = (-1, *d.shape) if max_batch_size > 0 else d.shape
        if arr.ndim != len(shape) or any(s != -1 and s != g for s, g in zip(shape, arr.shape)):
            batch = " (the first dimension is the batch)" if max_batch_size > 0 else ""
            raise InferInputError(f"{name}: input {d.name!r} expects shape {list(shape)}{batch}; given {list(arr.shape)}")
        if max_batch_size > 0:
            if rows >= 0 and arr.shape[0] != rows:
                given_rows = {k: len(v) for k, v in out.items()} | {d.name: arr.shape[0]}
                raise InferInputError(f"{name}: inputs disagree on the batch size (first dimension): {given_rows}")
            rows = arr.shape[0]
        out[d.name] = arr
    if len(inputs) != len(out):
        _names_error(name, decls, inputs)
    if max_batch_size > 0 and decls and not 1 <= rows <= max_batch_size:
        raise InferInputError(f"{name}: a batch of {rows} is outside 1..{max_batch_size} (max_batch_size)")
    return out


_MISSING = object()


def _names_error(name: str, decls: tuple[TensorDecl, ...], inputs: Mapping[str, Any]) -> NoReturn:
    known = {d.name for d in decls}
    unknown = next((k for k in inputs if k not in known), None)
    if unknown is not None:
        guess = difflib.get_close_matches(unknown, sorted(known), n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"its inputs are: {', '.join(sorted(known))}"
        raise InferInputError(f"{name}: unknown input {unknown!r}; {hint}")
    missing = [d.name for d in decls if d.name not in inputs]
    raise InferInputError(f"{name}: missing input(s) {', '.join(map(repr, missing))}")


class ServedModel:
    """One loaded model version behind its instances and its batcher (dynamic, sequence, or none)."""

    def __init__(self, model: LoadedModel) -> None:
        cfg = self.config = model.config
        self.model = model
        self.name = f"model {cfg.name!r} version {model.version}"
        runners = [model.runner, *(model.new_instance() for _ in range(cfg.instance_count - 1))]
        # compiled models may run on the loop when they are tiny; Python code may wait on the loop
        self.pool = InstancePool(cfg.name, runners, inline=cfg.backend != "python")
        self.batcher: DynamicBatcher | None = None
        self.sequencer: SequenceBatcher | None = None
        self._stats = BatcherStats()
        if cfg.sequence_batching is not None:
            self.sequencer = SequenceBatcher(cfg, self.pool)
        elif cfg.dynamic_batching is not None:
            policy = BatchingPolicy.from_section(cfg.dynamic_batching, cfg.max_batch_size)
            self.batcher = DynamicBatcher(self.name, self.pool.run, policy, concurrency=len(self.pool))

    @property
    def stats(self) -> BatcherStats:
        """Requests, batches, failures, queue and compute time, for this model version."""
        return self.batcher.stats if self.batcher else self.sequencer.stats if self.sequencer else self._stats

    async def infer(self, inputs: Mapping[str, Any], *, priority: int | None = None, timeout_us: int | None = None,
                    sequence_id: int | str | None = None, sequence_start: bool = False, sequence_end: bool = False) -> dict[str, Any]:
        """Run one request (inputs by name, batch first when the model batches)."""
        cfg = self.config
        arrays = check_inputs(self.name, cfg.inputs, inputs, cfg.max_batch_size)
        if self.sequencer is not None:
            if sequence_id is None:
                raise InferInputError(f"{self.name} is a sequence model: a request needs a sequence id (correlation id)")
            return await self.sequencer.infer(arrays, sequence_id=sequence_id, start=sequence_start, end=sequence_end, timeout_us=timeout_us)
        if sequence_id is not None or sequence_start or sequence_end:
            raise InferInputError(f"{self.name} has no sequence_batching; a sequence id or start/end flag means nothing to it")
        if self.batcher is not None:
            return await self.batcher.infer(arrays, priority=priority, timeout_us=timeout_us)
        rows = len(next(iter(arrays.values()), (0,))) if cfg.max_batch_size else 1
        start = time.perf_counter()  # the hot path of an unbatched model: counted here, no wrapper
        try:
            pool = self.pool
            out = pool.run_inline(arrays) if pool.inline else await pool.run(arrays)
        except BaseException as e:  # a cancelled request counts, not as a failure
            _count(self._stats, rows, start, failed=isinstance(e, Exception))
            raise
        _count(self._stats, rows, start)
        return out

    @property
    def runs_here(self) -> bool:
        """Whether a request may run on the caller's own thread now (:meth:`run_here`): nothing to
        queue in (no batcher, no sequences, not decoupled) and the model on its inline path."""
        return self.batcher is None and self.sequencer is None and not self.config.decoupled and self.pool.inline

    def run_here(self, inputs: Mapping[str, Any], *, count: bool = True) -> tuple[dict[str, Any], int]:
        """Run one request on this thread (when :attr:`runs_here`): its outputs and rows. On the
        event loop it counts itself; from another thread (``count=False``) the caller counts it
        with :meth:`count` on the loop, where the statistics live."""
        cfg = self.config
        arrays = check_inputs(self.name, cfg.inputs, inputs, cfg.max_batch_size)
        rows = len(next(iter(arrays.values()), (0,))) if cfg.max_batch_size else 1
        if not count:
            return self.pool.run_inline(arrays), rows
        start = time.perf_counter()
        try:
            out = self.pool.run_inline(arrays)
        except Exception:
            _count(self._stats, rows, start, failed=True)
            raise
        _count(self._stats, rows, start)
        return out, rows

    def count(self, rows: int, seconds: float, failed: bool) -> None:
        """Count a request that ran elsewhere (:meth:`run_here`) in this model's statistics."""
        _add(self._stats, rows, int(seconds * 1e9), failed)

    async def stream(self, inputs: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A decoupled model's responses to one request, as the model yields them (any number)."""
        cfg = self.config
        if not cfg.decoupled:
            raise InferInputError(f"{self.name} is not decoupled: it answers once, through infer()")
        arrays = check_inputs(self.name, cfg.inputs, inputs, cfg.max_batch_size)
        rows = len(next(iter(arrays.values()), (0,))) if cfg.max_batch_size else 1
        start, failed = time.perf_counter(), False
        try:
            async for out in self.pool.stream(arrays):
                yield out
        except Exception:
            failed = True
            raise
        finally:  # the whole stream is one request's compute (a consumer that leaves early: not a failure)
            _count(self._stats, rows, start, failed=failed)

    async def close(self) -> None:
        for part in (self.batcher, self.sequencer):
            if part is not None:
                await part.close()
        self.pool.close()


class ServedPipeline:
    """A pipeline served as a model: its requests batched when it declares ``batching:``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.name = f"pipeline {pipeline.name!r}"
        self.batcher: DynamicBatcher | None = None
        self._stats = BatcherStats()
        self.on_stats: Callable[[RunStats], None] | None = None  # each run's step timings (metrics)
        #: the context for runs that have no request of their own (a batch of requests): set by the runtime
        self.context_factory: Callable[[], StepContext] | None = None
        valid = pipeline.executor.valid
        #: python steps or nested pipelines: each run gets a context (its request's, or the factory's)
        self.needs_context = any(s.spec.kind in ("python", "pipeline") for s in valid.steps)
        #: the generator step, if the pipeline streams (answers a request with several responses)
        self.streaming_step = valid.streaming_step
        wanted = set(pipeline.inputs)  # per sample: a pipeline's declared shapes start with the batch
        self._decls = tuple(replace(d, shape=d.shape[1:]) for d in pipeline.spec.inputs if d.name in wanted)
        batching = pipeline.spec.batching
        if batching is not None:
            policy = BatchingPolicy.from_section(batching, DEFAULT_PIPELINE_BATCH)
            self.batcher = DynamicBatcher(self.name, self._run, policy)

    @property
    def stats(self) -> BatcherStats:
        return self.batcher.stats if self.batcher else self._stats

    async def _run(self, inputs: dict[str, Any], ctx: StepContext | None = None) -> dict[str, Any]:
        if ctx is None and self.context_factory is not None and self.needs_context:
            ctx = self.context_factory()
        # runs whose python steps may wait on ctx.infer take threads from a larger pool: a step
        # waiting for a nested pipeline must not hold the last thread that pipeline needs
        threads = _waiting_pool() if self.needs_context else None
        out, stats = await self.pipeline.executor.run_with_stats_async(inputs, ctx=ctx, threads=threads)
        if self.on_stats is not None:
            self.on_stats(stats)
        return to_host(out)  # outputs made on the GPU go to the client from the host

    async def infer(self, inputs: Mapping[str, Any], *, priority: int | None = None, timeout_us: int | None = None,
                    ctx: StepContext | None = None) -> dict[str, Any]:
        """Run one request (inputs by name, batch first). ``ctx``: what its python steps get (a
        batched run gets the factory's context: it serves several requests)."""
        if self.streaming_step is not None:
            raise InferInputError(f"{self.name} streams (step {self.streaming_step!r} is a generator): it answers through stream()")
        decls = self._decls
        limit = self.batcher.policy.max_batch_size if self.batcher else 1 << 62
        arrays = check_inputs(self.name, decls, inputs, limit)
        if self.batcher is not None:
            return await self.batcher.infer(arrays, priority=priority, timeout_us=timeout_us)
        return await _timed(self._stats, self._run(arrays, ctx), len(next(iter(arrays.values()), [0])))

    async def stream(self, inputs: Mapping[str, Any], ctx: StepContext | None = None) -> AsyncIterator[dict[str, Any]]:
        """A streaming pipeline's responses to one request (one per item its generator step
        yields), as they are made. Streams are not batched."""
        if self.streaming_step is None:
            raise InferInputError(f"{self.name} does not stream: it answers once, through infer()")
        arrays = check_inputs(self.name, self._decls, inputs, 1 << 62)
        rows = len(next(iter(arrays.values()), [0]))
        if ctx is None and self.context_factory is not None:
            ctx = self.context_factory()
        start, failed = time.perf_counter(), False
        try:
            async for out in self.pipeline.executor.stream_async(arrays, ctx=ctx):
                yield to_host(out)
        except Exception:
            failed = True
            raise
        finally:
            _count(self._stats, rows, start, failed=failed)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()


#: threads for pipeline runs with python steps (which may block in ctx.infer); created on first use
WAITING_THREADS = 64
_pool: ThreadPoolExecutor | None = None


def _waiting_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(WAITING_THREADS, thread_name_prefix="twinpipe-bls")
    return _pool


async def _timed(stats: BatcherStats, work: Awaitable[Mapping[str, Any]], rows: int) -> dict[str, Any]:
    """Await unbatched work, counting it in ``stats`` like the batcher counts its batches."""
    start = time.perf_counter()
    try:
        out = dict(await work)
    except BaseException as e:
        _count(stats, rows, start, failed=isinstance(e, Exception))
        raise
    _count(stats, rows, start)
    return out


def _count(stats: BatcherStats, rows: int, start: float, failed: bool = False) -> None:
    _add(stats, rows, int((time.perf_counter() - start) * 1e9), failed)


def _add(stats: BatcherStats, rows: int, took: int, failed: bool) -> None:
    stats.requests, stats.batches, stats.rows = stats.requests + 1, stats.batches + 1, stats.rows + rows
    stats.failed += failed
    stats.compute_ns += took
    stats.batch_sizes[rows] = stats.batch_sizes.get(rows, 0) + 1
    stats.batch_compute_ns[rows] = stats.batch_compute_ns.get(rows, 0) + took
