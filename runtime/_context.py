"""The ``ctx`` a python step gets inside an Engine: ``ctx.infer`` calls the engine's models and
pipelines through their batchers (so a step's calls batch with all other traffic), on the
engine's event loop.

A sync step runs on a worker thread and ``ctx.infer`` waits there for the loop's answer — except
for a model with no queue to join (unbatched, on its instances' inline path: a tiny compiled
model), which it runs right there, saving the two thread wake-ups; an ``async`` step runs on the
loop and awaits ``ctx.infer_async``. A callee's error is raised in the
step as a :class:`CalleeError` naming the callee; if the step lets it go, the request fails with
INTERNAL naming the step (and, through the chained message, the callee).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twinpipe.dag import StepContext

from ._errors import EngineError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["MAX_DEPTH", "CalleeError", "EngineContext"]

MAX_DEPTH = 16  # ctx.infer calls nested this deep (a pipeline calling itself) are refused


class CalleeError(RuntimeError):
    """What a model or pipeline called with ``ctx.infer`` failed with (its status in ``code``)."""

    def __init__(self, callee: str, error: EngineError) -> None:
        self.callee, self.code = callee, error.code
        super().__init__(f"ctx.infer({callee!r}) failed ({error.code}): {error}")


class EngineContext(StepContext):  # type: ignore[misc]  # (mypy sees twinpipe.dag as Any: the editable install maps it)
    """A request's context inside an Engine (see :class:`twinpipe.dag.StepContext`)."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, *, pipeline: str, request_id: str = "",
                 parameters: Mapping[str, Any] | None = None, deadline: float | None = None, depth: int = 0) -> None:
        super().__init__(pipeline=pipeline, request_id=request_id, parameters=parameters, deadline=deadline)
        self.engine, self.loop, self.depth = engine, loop, depth

    def infer(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:  # waiting here would stop the very loop that must answer
            raise RuntimeError(f"ctx.infer({name!r}) waits for the engine's event loop, and this step runs on it: "
                               "make the step async and use await ctx.infer_async(...)")
        try:
            servable = self.engine.get(name, version)
            if servable.runs_here and self.depth < MAX_DEPTH:  # no queue to join: no reason to hop to the loop
                return self.engine.infer_here(servable, inputs, self.request_id).outputs
        except EngineError as e:
            raise CalleeError(name, e) from None
        work = asyncio.run_coroutine_threadsafe(self.infer_async(name, inputs, version=version, timeout=timeout), self.loop)
        return work.result()

    async def infer_async(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
                          timeout: float | None = None) -> dict[str, Any]:
        if self.depth >= MAX_DEPTH:
            raise RuntimeError(f"ctx.infer({name!r}): calls nested {MAX_DEPTH} deep (does a pipeline call itself?)")
        limit = [t for t in (timeout, self.remaining) if t is not None]
        parameters = {"timeout": max(1, int(min(limit) * 1e6))} if limit else None
        engine = self.engine
        try:
            servable = engine.get(name, version)
            child = None
            if servable.kind == "pipeline":  # the callee's python steps see this request, one level deeper
                deadline = time.monotonic() + min(limit) if limit else None
                child = EngineContext(engine, self.loop, pipeline=servable.name, request_id=self.request_id,
                                      parameters=self.parameters, deadline=deadline, depth=self.depth + 1)
            response = await engine.submit(servable, inputs, request_id=self.request_id, parameters=parameters, ctx=child,
                                           nested=True)
        except EngineError as e:
            raise CalleeError(name, e) from None
        return response.outputs
