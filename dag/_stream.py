"""Streaming runs: a pipeline whose python step is a generator answers with one result per item.

The steps the generator does not depend on run once, the generator step next, and for each item
it yields the steps that depend on it run again (nothing is released between items). A sync
generator is iterated on the run's thread; an async one is driven on the run's event loop.
``stream_async`` runs the whole stream on a thread of its own and hands each result to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Generator, Mapping
from typing import TYPE_CHECKING, Any

from ._context import StepContext
from ._executor import Seed, _outputs, _step_error
from ._plan import Mode, Plan

if TYPE_CHECKING:
    from ._executor import Executor

__all__ = ["stream", "stream_async"]


_END: Any = object()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def stream_async(ex: Executor, inputs: Mapping[str, Any], rng: Seed, mode: Mode,
                       ctx: StepContext | None) -> AsyncIterator[dict[str, Any]]:
    """The results of a streaming run, handed to this loop as they are made; leaving early
    cancels ``ctx`` and closes the stream."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def drive() -> None:
        results = stream(ex, inputs, rng, mode, loop, ctx)
        try:
            for out in results:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(items.put_nowait, out)
            results.close()
            loop.call_soon_threadsafe(items.put_nowait, _END)
        except BaseException as e:  # handed to the consumer
            results.close()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(items.put_nowait, _Failed(e))

    # a stream may last long: its own thread, so streams never starve runs of pooled threads
    worker = threading.Thread(target=drive, name=f"twinpipe-stream-{ex.name}", daemon=True)
    worker.start()
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        if ctx is not None:
            ctx.cancel()


def stream(ex: Executor, inputs: Mapping[str, Any], rng: Seed, mode: Mode, loop: asyncio.AbstractEventLoop | None,
           ctx: StepContext | None) -> Generator[dict[str, Any], None, None]:
    """The results of a streaming run, on this thread (a plain pipeline yields its one result)."""
    plan, fns, run = ex._start(inputs, rng, mode, loop, ctx)
    if plan.stream_step is None:
        ex._run_sequential(plan, fns, run)
        yield _outputs(plan, run.values)
        return
    gen = plan.steps[plan.stream_step]
    after = _downstream(plan, gen.index)
    for st in plan.steps:  # nothing is released: each item runs the dependents again
        if st.index != gen.index and st.index not in after:
            ex._step(plan, st, fns[st.index], run)
    kwargs = ex._arguments(plan, gen, run.values)
    try:
        produced = fns[gen.index](ctx=run.ctx, **kwargs)
    except Exception as e:
        raise _step_error(plan, gen, e) from e
    private = None
    if hasattr(produced, "__aiter__") and run.loop is None:
        private = asyncio.new_event_loop()  # an async generator outside any loop: drive it on our own
    items = _iterate(produced, run.loop or private)
    try:
        while True:
            t = time.perf_counter()
            try:
                item = next(items, _END)
            except Exception as e:
                raise _step_error(plan, gen, e) from e
            if item is _END:
                return
            try:
                for o, slot in gen.outputs:
                    run.values[slot] = item[o]
            except KeyError as e:
                raise _step_error(plan, gen, e) from e
            run.seconds[gen.index] = time.perf_counter() - t
            for st in plan.steps:
                if st.index in after:
                    ex._step(plan, st, fns[st.index], run)
            yield _outputs(plan, run.values)
    finally:
        items.close()
        if private is not None:
            private.close()


def _downstream(plan: Plan, index: int) -> set[int]:
    """The steps that depend, directly or not, on step ``index``."""
    found: set[int] = set()
    todo = list(plan.steps[index].dependents)
    while todo:
        i = todo.pop()
        if i not in found:
            found.add(i)
            todo.extend(plan.steps[i].dependents)
    return found


def _iterate(produced: Any, loop: asyncio.AbstractEventLoop | None) -> Generator[Any, None, None]:
    """A streaming step's items, from a sync iterator or (driven on ``loop``) an async one."""
    if not hasattr(produced, "__aiter__"):
        it = iter(produced)
        try:
            yield from it
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        return
    assert loop is not None
    agen = produced.__aiter__()

    def on_loop(coro: Any) -> Any:
        if loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        return loop.run_until_complete(coro)

    try:
        while True:
            try:
                yield on_loop(_anext(agen))
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                on_loop(aclose())


async def _anext(agen: Any) -> Any:
    return await agen.__anext__()
