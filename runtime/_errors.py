"""The Engine's errors: each carries the status a frontend answers with (gRPC codes by name).

Every failure of a request becomes one of these, with a message that names what was wrong; the
frontends map ``code`` to their own status (gRPC ``StatusCode[code]``, HTTP 400/404/503/500).
"""

from __future__ import annotations

__all__ = [
    "DeadlineError",
    "EngineError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "UnavailableError",
]


class EngineError(Exception):
    """A request failed; ``code`` is the gRPC status name it maps to."""

    code = "INTERNAL"


class NotFoundError(EngineError, LookupError):
    """No such model, pipeline or version (or it is not loaded)."""

    code = "NOT_FOUND"


class InvalidArgumentError(EngineError, ValueError):
    """The request is wrong: an input's name, datatype, shape or size, a parameter, a sequence id."""

    code = "INVALID_ARGUMENT"


class UnavailableError(EngineError):
    """Not now: a queue is full, too many requests are in flight, the model is not ready."""

    code = "UNAVAILABLE"


class DeadlineError(EngineError, TimeoutError):
    """The request's timeout passed before it ran."""

    code = "DEADLINE_EXCEEDED"


class InternalError(EngineError):
    """The model or a pipeline step raised; the message names the step and the cause."""

    code = "INTERNAL"
