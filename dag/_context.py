"""What a python step's ``ctx`` offers: the request it serves, and calls to the engine's models.

    def cascade(inputs, ctx):
        small = ctx.infer("small", {"pixels": inputs["pixels"]})       # through the model's batcher
        if small["scores"].max() < 0.8:
            return ctx.infer("big", {"pixels": inputs["pixels"]})
        ctx.logger.info("small model was sure")                          # tagged with the request id
        return small

The runtime (an Engine) hands each request's run a context whose :meth:`StepContext.infer` calls
its models and pipelines; outside an Engine (training, ``twinpipe run``) a run gets this base
context, whose ``infer`` says it needs one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["StepContext"]


class _RequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        rid = (self.extra or {}).get("request_id")
        return (f"[request {rid}] {msg}" if rid else msg), kwargs


class StepContext:
    """The ``ctx`` of a python step.

    Attributes:
        request_id: the request's id ("" when none was given, or for a batch of requests).
        parameters: the request's parameters, all of them (custom ones included).
        deadline: when the request times out, on ``time.monotonic()``'s clock (None: never).
        pipeline: the pipeline's name.
    """

    def __init__(self, *, pipeline: str = "", request_id: str = "", parameters: Mapping[str, Any] | None = None,
                 deadline: float | None = None) -> None:
        self.pipeline = pipeline
        self.request_id = request_id
        self.parameters: Mapping[str, Any] = dict(parameters or {})
        self.deadline = deadline
        self._cancelled = False
        self._logger: logging.LoggerAdapter | None = None  # type: ignore[type-arg]

    @property
    def cancelled(self) -> bool:
        """True once the client has gone (disconnected, cancelled, or left a stream): a long step
        may stop early."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def remaining(self) -> float | None:
        """Seconds until the deadline (None: no deadline; never below 0)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger (``twinpipe.pipeline.<name>``) whose lines start with the request id."""
        if self._logger is None:
            self._logger = _RequestLog(logging.getLogger(f"twinpipe.pipeline.{self.pipeline or 'run'}"),
                                       {"request_id": self.request_id})
        return self._logger

    def infer(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        """Run model or pipeline ``name`` on ``inputs`` and return its outputs (from a sync step).
        ``timeout`` in seconds (the request's own deadline also bounds it)."""
        raise RuntimeError(f"ctx.infer({name!r}): calling models needs an Engine; pipeline {self.pipeline!r} runs "
                           "outside one (serve it, or run it through twinpipe.runtime.Engine)")

    async def infer_async(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
                          timeout: float | None = None) -> dict[str, Any]:
        """:meth:`infer` for ``async`` steps: ``await ctx.infer_async(...)``."""
        return self.infer(name, inputs, version=version, timeout=timeout)
