"""Model instances: ``count`` copies of a model serving concurrently, each on its own thread.

Each instance is its own loaded copy (module, weights and, on a GPU, CUDA stream), so instances
share nothing while they run; torch releases the GIL inside its kernels, so they overlap.

    pool = InstancePool("tiny", [model.runner, model.new_instance()])
    out = await pool.run({"pixels": x})               # on whichever instance is free
    out = await pool.run({"pixels": x}, instance=1)   # on instance 1 (sequence routing)

Each instance has a worker thread that takes the next request from the pool's queue itself, so
back-to-back requests never wait for the event loop in between; only the answer hops back.

A model whose last calls all took under ``INLINE_BELOW_S`` (an identity, a lookup, a small
tabular model) runs on the caller's event loop instead: for such a model the hop to a thread and
back costs more than the work. A call on a worker is timed by its thread's CPU time (waiting for
the GIL or for a core is not the model's cost); a call on the loop by its wall time (how long it
held the loop). Two slower calls in the window (or one far slower) send the model back to its
thread, and an inline call that holds the loop for over ``INLINE_BLOCK_S`` (a model waiting on I/O,
or one that got slower) keeps it off the loop for the next ``_COOLDOWN`` calls. Only pools made
with ``inline=True`` take the fast path: compiled models (TorchScript, torch.export, ONNX), never
Python factories, which may wait on the very loop they would block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["INLINE_BELOW_S", "INLINE_BLOCK_S", "InstancePool", "Runner"]

Runner = Callable[..., Mapping[str, Any]]
INLINE_BELOW_S = 100e-6  # about what the hop to a worker thread and back costs in CPU
INLINE_BLOCK_S = 1e-3
_COOLDOWN = 1000
_WINDOW = 16  # the calls that decide whether a model is that fast


@dataclass(eq=False)
class _Work:
    inputs: Mapping[str, Any]
    instance: int | None
    future: asyncio.Future[dict[str, Any]]
    loop: asyncio.AbstractEventLoop
    items: asyncio.Queue[Any] | None = None  # a stream's responses, then _END or the error
    stop: bool = False  # a stream's consumer has left: stop at the next response


_END = object()


class InstancePool:
    """Runs requests on the first free instance (or a named one), oldest first; one request per
    instance at a time."""

    def __init__(self, name: str, runners: Sequence[Runner], *, inline: bool = False) -> None:
        if not runners:
            raise ValueError(f"model {name!r}: an instance pool needs at least one instance")
        self.name = name
        self.runners = tuple(runners)
        self._queue: deque[_Work | None] = deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._recent: deque[float] = deque(maxlen=_WINDOW)
        self._slow = 0  # calls in the window at or over INLINE_BELOW_S
        self._far = 0  # ... and at or over 10 × INLINE_BELOW_S
        self._fast = False
        self._cooldown = 0  # calls to run on threads before the fast path may return
        self._inline_ok = inline
        self.inline_calls = 0

    def __len__(self) -> int:
        return len(self.runners)

    async def run(self, inputs: Mapping[str, Any], *, instance: int | None = None) -> dict[str, Any]:
        """Run one (batched) request; waits for a free instance."""
        if self._fast and instance is None:  # not waiting for the pool to be idle: under load it never is,
            return self.run_inline(inputs)  # and compiled models may be called from two threads at once
        if instance is not None and not 0 <= instance < len(self.runners):
            raise ValueError(f"model {self.name!r} has {len(self.runners)} instance(s); there is no instance {instance}")
        if self._closed:
            raise RuntimeError(f"model {self.name!r}: the instance pool is closed")
        if self._fast and instance == 0:
            return self.run_inline(inputs)
        loop = asyncio.get_running_loop()
        work = _Work(inputs, instance, loop.create_future(), loop)
        with self._ready:
            if not self._threads:
                self._start()
            self._queue.append(work)
            if instance is None:
                self._ready.notify()  # any worker takes it
            else:
                self._ready.notify_all()  # it must reach its own worker
        return await work.future  # cancelling drops it if no worker took it yet

    @property
    def inline(self) -> bool:
        """Whether the next unpinned call runs on the caller's thread (then :meth:`run_inline`
        does it without a coroutine)."""
        return self._fast

    def run_inline(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run one request on instance 0, on this thread: for a pool whose :attr:`inline` is on."""
        if self._closed:
            raise RuntimeError(f"model {self.name!r}: the instance pool is closed")
        start = time.perf_counter()
        try:
            return dict(self.runners[0](**inputs))
        finally:
            # on the loop what counts is how long the loop was held: wall time (and no second clock to read)
            wall = time.perf_counter() - start
            with self._ready:
                if wall > INLINE_BLOCK_S:  # waiting or computing, it held the loop
                    self._cooldown = _COOLDOWN
                self._note(wall)
                self.inline_calls += 1

    def _start(self) -> None:
        for i in range(len(self.runners)):
            t = threading.Thread(target=self._serve, args=(i,), name=f"twinpipe-{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _take(self, i: int) -> _Work | None:
        """The oldest queued work this instance may run (None: the pool closed)."""
        with self._ready:
            while True:
                for k, work in enumerate(self._queue):
                    if work is None:
                        return None
                    if work.instance is None or work.instance == i:
                        del self._queue[k]
                        return work
                self._ready.wait()

    async def stream(self, inputs: Mapping[str, Any], *, instance: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Run one request of a decoupled model on the first free instance: its responses, as the
        model yields them. The instance serves the stream until it ends; leaving the iteration
        early (or being cancelled) closes the model's generator once its current step is done."""
        if self._closed:
            raise RuntimeError(f"model {self.name!r}: the instance pool is closed")
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        work = _Work(inputs, instance, loop.create_future(), loop, items)
        with self._ready:
            if not self._threads:
                self._start()
            self._queue.append(work)
            self._ready.notify_all()
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            work.stop = True
            work.future.cancel()  # not taken yet: no worker will start it

    def _stream(self, runner: Runner, work: _Work) -> None:
        """Run a stream on this worker, handing each response to the consumer's loop."""
        assert work.items is not None
        put = work.items.put_nowait

        def send(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the consumer's loop is gone
                work.loop.call_soon_threadsafe(put, item)

        try:
            # a model runner's responses(); a plain function (tests) returns its iterable
            responses: Any = runner.responses(**work.inputs) if hasattr(runner, "responses") else iter(runner(**work.inputs))
            try:
                for out in responses:
                    if work.stop:
                        break
                    send(dict(out))
            finally:
                close = getattr(responses, "close", None)
                if close is not None:
                    close()
            send(_END)
        except BaseException as e:  # handed to the consumer; the worker lives on
            send(e)

    def _serve(self, i: int) -> None:
        runner = self.runners[i]
        while (work := self._take(i)) is not None:
            if work.items is not None:
                if not work.stop:
                    self._stream(runner, work)
                continue
            result: Any = None
            error: BaseException | None = None
            ran = not work.future.cancelled()
            start = time.thread_time()
            if ran:
                try:
                    result = dict(runner(**work.inputs))
                except BaseException as e:  # handed to the caller; the worker lives on
                    error = e
            if ran:
                with self._ready:
                    self._note(time.thread_time() - start)
            with contextlib.suppress(RuntimeError):  # RuntimeError: the caller's loop is gone
                work.loop.call_soon_threadsafe(_settle, work.future, result, error)

    def _note(self, seconds: float) -> None:
        """Record a call's time (holding the lock); decides the inline fast path."""
        recent = self._recent
        if len(recent) == _WINDOW:  # the oldest call leaves the window
            old = recent[0]
            self._slow -= old >= INLINE_BELOW_S
            self._far -= old >= 10 * INLINE_BELOW_S
        recent.append(seconds)
        self._slow += seconds >= INLINE_BELOW_S
        self._far += seconds >= 10 * INLINE_BELOW_S
        if self._cooldown:
            self._cooldown -= 1
        # all but one of the last calls under the bound (a garbage collection may land in one), none far over
        self._fast = (self._inline_ok and not self._cooldown and len(recent) == _WINDOW and self._slow <= 1
                      and not self._far)

    def close(self) -> None:
        """Stop the instance threads once their current work is done."""
        with self._ready:
            self._closed = True
            self._queue.append(None)
            self._ready.notify_all()


def _settle(future: asyncio.Future[dict[str, Any]], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
