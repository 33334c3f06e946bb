"""The dynamic batcher: requests queue up, compatible ones are stacked into one batch, the batch
runs once, and its outputs are split back to the requests row for row.

    batcher = DynamicBatcher("tiny", pool.run, BatchingPolicy(max_batch_size=32, max_queue_delay_us=500))
    out = await batcher.infer({"pixels": x})              # x: [n, 3, 32, 32], n <= 32

A batch is formed when its rows reach the largest preferred size (or ``max_batch_size``), or when
its oldest request has waited ``max_queue_delay_us``; it then takes the largest preferred size
that the queue fills, else all it has. ``concurrency`` batches run at once (one per instance),
so while every instance is busy the queue grows and the next batch is bigger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BatchError", "BatchingPolicy", "BatcherStats", "DynamicBatcher", "QueueFullError", "QueueTimeoutError", "RequestError"]

RunBatch = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]]
BatchObserver = Callable[[int, float, float], None]


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue_size`` requests: rejected at once (retry later)."""


class QueueTimeoutError(TimeoutError):
    """The request waited in the queue longer than its timeout and was not run."""


class BatchError(RuntimeError):
    """The batch a request was part of failed; the cause is chained."""


class RequestError(ValueError):
    """The request cannot be batched (its inputs disagree on the batch size, it is too big, …)."""


@dataclass(frozen=True)
class BatchingPolicy:
    """How a batcher forms batches (the keys of ``dynamic_batching:`` / ``batching:``).

    Priority 1 is the highest; a request without one gets ``default_priority`` (the lowest level
    unless set). ``timeout_us`` is the default time a request may wait in the queue.
    """

    max_batch_size: int
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int | None = None
    timeout_us: int | None = None
    priority_levels: int = 1
    default_priority: int | None = None
    preserve_ordering: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 to batch, found {self.max_batch_size}")
        too_big = [n for n in self.preferred_batch_sizes if n > self.max_batch_size]
        if too_big:
            raise ValueError(f"preferred_batch_sizes {list(too_big)} exceed max_batch_size {self.max_batch_size}")
        if not 1 <= self.priority <= self.priority_levels:
            raise ValueError(f"default_priority {self.priority} is outside 1..{self.priority_levels} (priority_levels)")

    @property
    def priority(self) -> int:
        return self.default_priority or self.priority_levels

    @classmethod
    def from_section(cls, section: Mapping[str, Any], max_batch_size: int) -> BatchingPolicy:
        """From a config's ``dynamic_batching:`` (or a pipeline's ``batching:``) mapping."""
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        known["preferred_batch_sizes"] = tuple(sorted(set(known.get("preferred_batch_sizes") or ())))
        return cls(**{**known, "max_batch_size": known.get("max_batch_size", max_batch_size)})


@dataclass
class BatcherStats:
    """Counts and cumulative times (nanoseconds), for statistics endpoints and benchmarks."""

    requests: int = 0
    batches: int = 0
    rows: int = 0
    failed: int = 0
    rejected: int = 0
    timed_out: int = 0
    queue_ns: int = 0
    compute_ns: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # rows → how many batches
    batch_compute_ns: dict[int, int] = field(default_factory=dict)  # rows → their compute time


@dataclass(eq=False)
class _Request:
    inputs: dict[str, Any]
    rows: int
    key: tuple[Any, ...]
    arrival: float
    future: asyncio.Future[dict[str, Any]]
    timer: asyncio.TimerHandle | None = None


def batch_key(inputs: Mapping[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """The rows of a request and what must agree for two requests to share a batch: the input
    names, dtypes and every dimension after the batch one."""
    rows = {name: len(x) for name, x in inputs.items()}
    if len(set(rows.values())) > 1:
        raise RequestError(f"inputs disagree on the batch size (first dimension): {rows}")
    key = tuple(sorted((name, np.asarray(x).dtype.str, np.shape(x)[1:]) for name, x in inputs.items()))
    return next(iter(rows.values()), 0), key


def _resolve(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


class DynamicBatcher:
    """Batches requests in front of ``run`` (an async callable: stacked inputs → outputs)."""

    def __init__(self, name: str, run: RunBatch, policy: BatchingPolicy, *, concurrency: int = 1,
                 observer: BatchObserver | None = None) -> None:
        self.name = name
        self.policy = policy
        self.stats = BatcherStats()
        self.observer = observer  # called after each batch: (rows, longest queue wait s, compute s)
        self._run_batch = run
        self._queues: list[deque[_Request]] = [deque() for _ in range(policy.priority_levels)]
        self._concurrency = concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use (or a new loop): its own queue signal and task
            self._loop, self._wake, self._slots = loop, asyncio.Event(), asyncio.Semaphore(self._concurrency)
            self._released: asyncio.Future[None] = loop.create_future()
            self._released.set_result(None)
            self._tasks = {loop.create_task(self._schedule(), name=f"batcher-{self.name}")}
        return loop

    async def infer(self, inputs: Mapping[str, Any], *, priority: int | None = None, timeout_us: int | None = None) -> dict[str, Any]:
        """Queue one request (inputs with a leading batch dimension) and wait for its outputs."""
        loop, p = self._start(), self.policy
        rows, key = batch_key(inputs)
        prio = p.priority if priority is None or priority == 0 else priority
        if not 1 <= prio <= p.priority_levels:
            raise RequestError(f"{self.name}: priority {priority} is outside 1..{p.priority_levels}")
        if not 1 <= rows <= p.max_batch_size:
            raise RequestError(f"{self.name}: a request of {rows} rows does not fit max_batch_size {p.max_batch_size}")
        if p.max_queue_size is not None and self._queued() >= p.max_queue_size:
            self.stats.rejected += 1
            raise QueueFullError(f"{self.name}: queue full ({p.max_queue_size} requests waiting, max_queue_size); try again later")
        req = _Request(dict(inputs), rows, key, loop.time(), loop.create_future())
        timeout = timeout_us if timeout_us is not None else p.timeout_us
        if timeout is not None:
            req.timer = loop.call_later(timeout / 1e6, self._expire, req, timeout)
        self._queues[prio - 1].append(req)
        self.stats.requests += 1
        self._wake.set()
        if not p.preserve_ordering:
            return await req.future
        prev, mine = self._released, loop.create_future()
        self._released = mine
        try:
            await asyncio.wait([req.future])
            await asyncio.shield(prev)  # answers leave in the order the requests came
            return req.future.result()
        finally:
            req.future.cancel()  # no-op once answered; a cancelled caller's request leaves the queue
            prev.add_done_callback(lambda _: _resolve(mine))

    def _expire(self, req: _Request, timeout_us: int) -> None:
        if not req.future.done():
            self.stats.timed_out += 1
            waited = (self._loop.time() - req.arrival) * 1e6 if self._loop else timeout_us
            req.future.set_exception(QueueTimeoutError(
                f"{self.name}: the request waited {waited:.0f} µs in the queue (timeout {timeout_us} µs) and was not run"))

    def _queued(self) -> int:
        for i, q in enumerate(self._queues):  # drop what timed out or was cancelled while queued
            if any(r.future.done() for r in q):
                self._queues[i] = deque(r for r in q if not r.future.done())
        return sum(map(len, self._queues))

    async def _schedule(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _next_batch(self) -> list[_Request]:
        p, loop = self.policy, asyncio.get_running_loop()
        target = max(p.preferred_batch_sizes, default=p.max_batch_size)
        while True:
            self._wake.clear()
            if self._queued():
                head = next(q[0] for q in self._queues if q)  # oldest of the highest priority
                fits = self._gather(head.key, p.max_batch_size)
                rows = sum(r.rows for r in fits)
                wait = head.arrival + p.max_queue_delay_us / 1e6 - loop.time()
                if rows >= target:
                    return self._take(self._gather(head.key, target))
                if wait <= 0:  # the oldest waited long enough: the largest preferred size it fills
                    size = max((n for n in p.preferred_batch_sizes if n <= rows), default=rows)
                    return self._take(self._gather(head.key, size))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            else:
                await self._wake.wait()

    def _gather(self, key: tuple[Any, ...], limit: int) -> list[_Request]:
        """Queued requests that can join a batch of ``key``, by priority then age, up to ``limit`` rows."""
        out: list[_Request] = []
        rows = 0
        for q in self._queues:
            for r in q:
                if r.key == key and not r.future.done():
                    if rows + r.rows > limit:
                        return out
                    out.append(r)
                    rows += r.rows
        return out

    def _take(self, batch: list[_Request]) -> list[_Request]:
        taken = set(batch)
        for i, q in enumerate(self._queues):
            self._queues[i] = deque(r for r in q if r not in taken)
        for r in batch:
            if r.timer is not None:
                r.timer.cancel()
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        loop, s = asyncio.get_running_loop(), self.stats
        try:
            start = loop.time()
            rows = sum(r.rows for r in batch)
            s.batches, s.rows = s.batches + 1, s.rows + rows
            s.batch_sizes[rows] = s.batch_sizes.get(rows, 0) + 1
            s.queue_ns += sum(int((start - r.arrival) * 1e9) for r in batch)
            try:
                inputs = batch[0].inputs if len(batch) == 1 else {
                    name: np.concatenate([np.asarray(r.inputs[name]) for r in batch]) for name in batch[0].inputs}
                outputs = await self._run_batch(inputs)
                wrong = {k: np.shape(v)[:1] for k, v in outputs.items() if np.ndim(v) == 0 or len(v) != rows}
                if wrong:
                    raise BatchError(f"outputs {wrong} do not have the batch's {rows} rows as their first dimension")
            except Exception as e:
                s.failed += len(batch)
                error = BatchError(f"{self.name}: the batch of {rows} rows ({len(batch)} requests) failed: {type(e).__name__}: {e}")
                error.__cause__ = e
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(error)
                return
            finally:
                took = int((loop.time() - start) * 1e9)
                s.compute_ns += took
                s.batch_compute_ns[rows] = s.batch_compute_ns.get(rows, 0) + took
                if self.observer is not None:
                    self.observer(rows, start - min(r.arrival for r in batch), loop.time() - start)
            at = 0
            for r in batch:
                if not r.future.done():
                    r.future.set_result({k: v[at:at + r.rows] for k, v in outputs.items()})
                at += r.rows
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Stop scheduling; requests still queued fail with a clear error."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for q in self._queues:
            for r in q:
                if not r.future.done():
                    r.future.set_exception(BatchError(f"{self.name}: the batcher was closed before the request ran"))
            q.clear()
