"""The runtime: the in-process Engine, the HTTP and gRPC frontends, metrics and the CLI.

    from twinpipe.runtime import Engine
    engine = Engine("repo/")                       # models (<model>/config.yaml) and pipelines (<name>.yaml)
    out = engine.infer("classify_color", {"image": images})

The names load on first use, so ``twinpipe validate`` and friends do not import the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._engine import Engine, InferResponse, ModelState
    from ._errors import (
        DeadlineError,
        EngineError,
        InternalError,
        InvalidArgumentError,
        NotFoundError,
        UnavailableError,
    )
    from ._grpc import GrpcFrontend
    from ._http import HttpFrontend
    from ._metrics import Metrics
    from ._serve import serve

_WHERE = {
    "Engine": "_engine", "InferResponse": "_engine", "ModelState": "_engine",
    "DeadlineError": "_errors", "EngineError": "_errors", "InternalError": "_errors",
    "InvalidArgumentError": "_errors", "NotFoundError": "_errors", "UnavailableError": "_errors",
    "GrpcFrontend": "_grpc", "HttpFrontend": "_http", "Metrics": "_metrics", "serve": "_serve",
}

__all__ = [
    "DeadlineError",
    "Engine",
    "EngineError",
    "GrpcFrontend",
    "HttpFrontend",
    "InferResponse",
    "InternalError",
    "InvalidArgumentError",
    "Metrics",
    "ModelState",
    "NotFoundError",
    "UnavailableError",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'twinpipe.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
