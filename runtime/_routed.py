"""A pipeline's ``model:`` step served through the model's own batcher and instances.

Inside the Engine a pipeline does not call a model's runner directly: its model steps submit to
the model's :class:`~twinpipe.models.ServedModel` on the engine's loop, so pipeline traffic batches
with direct traffic, shares the model's instances and counts in its statistics. The pipeline runs
on a worker thread, which waits for the answer; on the loop thread itself (or with no loop) the
step calls the runner directly, as outside the Engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from twinpipe.models import ServedModel

__all__ = ["RoutedModel"]


class RoutedModel:
    """The callable a pipeline's model step runs (``step(**inputs) -> {output: array}``)."""

    def __init__(self, served: ServedModel, loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self.served = served
        self._loop = loop

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        served, cfg = self.served, self.served.config
        loop = self._loop()
        direct = (loop is None or not loop.is_running() or cfg.sequence_batching is not None  # state: wired by the pipeline
                  or any(not isinstance(x, np.ndarray) for x in inputs.values()) or _on_loop(loop))
        if direct or loop is None:
            return dict(served.model.runner(**inputs))
        unbatch = False
        if cfg.max_batch_size > 0:
            decls = {d.name: d for d in cfg.inputs}
            if all(x.ndim == len(decls[n].shape) for n, x in inputs.items() if n in decls):
                inputs, unbatch = {n: x[None] for n, x in inputs.items()}, True  # one sample: a batch of one
        out = self._submit(inputs, loop) if cfg.max_batch_size == 0 else self._chunked(inputs, loop)
        return {k: v[0] for k, v in out.items()} if unbatch else out

    def _submit(self, inputs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self.served.infer(inputs), loop).result()

    def _chunked(self, inputs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        """A pipeline batch larger than the model's max_batch_size goes as several requests."""
        limit = self.served.config.max_batch_size
        rows = len(next(iter(inputs.values())))
        if rows <= limit:
            return self._submit(inputs, loop)
        futures = [asyncio.run_coroutine_threadsafe(self.served.infer({k: v[i:i + limit] for k, v in inputs.items()}), loop)
                   for i in range(0, rows, limit)]
        parts = [f.result() for f in futures]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread runs ``loop`` (blocking on it here would never return)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs in this thread
        return False
