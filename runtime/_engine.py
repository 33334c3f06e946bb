"""The Engine: the in-process server. It loads a repository of models and pipelines and answers
inference requests, sync or async; every frontend (gRPC, HTTP) calls it.

    engine = Engine("repo/")                      # <model>/config.yaml folders + <pipeline>.yaml files
    out = engine.infer("classify_color", {"image": np.array([jpeg], dtype=object)})
    out.outputs["labels"]
    out = await engine.infer_async("tiny", {"pixels": batch}, parameters={"priority": 1})

Pipelines appear to clients as models (as Triton's ensembles do), with version "1". Errors are
:class:`EngineError` subclasses whose ``code`` is the gRPC status they map to.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from twinpipe.dag import PipelineError, PipelineInputError, StepContext, StepError, load_pipeline
from twinpipe.models import (
    BatchError,
    InferInputError,
    QueueFullError,
    QueueTimeoutError,
    RequestError,
    SequenceError,
    ServedModel,
    ServedPipeline,
    load_model,
)

from ._context import EngineContext
from ._errors import (
    DeadlineError,
    EngineError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from ._servable import InferResponse, Servable, model_servable, pipeline_servable

__all__ = ["Engine", "InferResponse", "ModelState"]

#: the KServe v2 / Triton protocol extensions every frontend serves
EXTENSIONS = ("model_repository", "model_configuration", "statistics", "sequence", "parameters", "schedule_policy")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class ModelState(dict[str, str]):
    """One row of the repository index: name, version, state (READY / UNAVAILABLE), reason."""


def default_repository() -> tuple[Path, Path]:
    """The shipped repository: ``twinpipe/pipelines/models`` and the shipped pipeline files."""
    from twinpipe.pipelines import models_dir, pipelines_dir
    return models_dir(), pipelines_dir()


class Engine:
    """Serves the models and pipelines of a repository.

    Args:
        repository: a folder of ``<model>/config.yaml`` model folders and ``<name>.yaml``
            pipeline files; ``None``: the shipped default repository.
        max_inflight: requests in flight at once; beyond it a request is refused (UNAVAILABLE)
            rather than queued without bound.
        metrics: a :class:`~twinpipe.runtime.Metrics` to record requests, batches and steps in.
    """

    def __init__(self, repository: str | Path | None = None, *, max_inflight: int = 1024, load: bool = True,
                 metrics: Any = None) -> None:
        if repository is None:
            self.models_root, self.pipelines_root = default_repository()
        else:
            root = Path(repository)
            if not root.is_dir():
                raise FileNotFoundError(f"repository {root} is not a folder")
            self.models_root = self.pipelines_root = root
        self.max_inflight = max_inflight
        self.metrics = metrics
        self._servables: dict[str, dict[str, Servable]] = {}
        self._failed: dict[str, str] = {}  # name → why it is not loaded
        self._lock = threading.RLock()
        self._inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self.closing = False
        if load:
            self.load_all()

    # -- the repository ------------------------------------------------------------------------

    def model_folders(self) -> list[str]:
        root = self.models_root
        return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "config.yaml").is_file()) if root.is_dir() else []

    def pipeline_files(self) -> list[str]:
        return sorted(p.stem for p in self.pipelines_root.glob("*.yaml"))

    def load_all(self) -> None:
        """Load every model, then every pipeline (they are checked against the models)."""
        for name in self.model_folders():
            self._load_model(name)
        for name in self.pipeline_files():
            if name not in self._servables:
                self._load_pipeline(name)

    def load(self, name: str) -> None:
        """(Re)load a model or pipeline of the repository by name; pipelines using a reloaded
        model are reloaded too. A name is never a path: only entries of the repository load."""
        if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
            raise InvalidArgumentError(f"{name!r} is not a model name (letters, digits, '_', '.', '-')")
        with self._lock:
            if name in self.model_folders():
                self._unload(name)
                self._load_model(name)
                if name in self._servables:
                    for dependent in self._dependents(name):
                        self._unload(dependent)
                        self._load_pipeline(dependent)
                    for pipe in self.pipeline_files():  # those that failed for want of it
                        if pipe not in self._servables and self._failed.get(pipe) != "unloaded":
                            self._load_pipeline(pipe)
            elif name in self.pipeline_files():
                self._unload(name)
                self._load_pipeline(name)
            else:
                raise NotFoundError(f"no model or pipeline {name!r} in the repository {self.models_root}")
            if name in self._failed:
                raise InvalidArgumentError(f"failed to load {name!r}: {self._failed[name]}")

    def unload(self, name: str) -> None:
        """Stop serving ``name`` (pipelines using it become unavailable)."""
        with self._lock:
            if name not in self._servables:
                raise NotFoundError(f"{name!r} is not loaded")
            for dependent in self._dependents(name):
                self._unload(dependent)
                self._failed[dependent] = f"it uses {name!r}, which was unloaded"
            self._unload(name)
            self._failed[name] = "unloaded"

    def _dependents(self, model: str) -> list[str]:
        out = []
        for name, versions in self._servables.items():
            for s in versions.values():
                if s.kind == "pipeline" and model in s.uses:
                    out.append(name)
        return out

    def _unload(self, name: str) -> None:
        versions = self._servables.pop(name, {})
        self._failed.pop(name, None)
        for s in versions.values():
            self._close_later(s)

    def _load_model(self, name: str) -> None:
        try:
            loaded = load_model(self.models_root / name)
            self._servables[name] = {str(v): model_servable(ServedModel(m), self) for v, m in loaded.items()}
            self._failed.pop(name, None)
        except PipelineError as e:
            self._failed[name] = str(e)

    def _load_pipeline(self, name: str) -> None:
        if name in self._servables:
            self._failed[name] = f"the name {name!r} is taken by a model"
            return
        infos = {}
        for model, versions in self._servables.items():
            for v, s in versions.items():
                if s.kind == "model":
                    infos[f"{model}:{v}"] = s.info()
            latest = max((s for s in versions.values() if s.kind == "model"), key=lambda s: int(s.version), default=None)
            if latest is not None:
                infos[model] = latest.info()
        try:
            pipe = load_pipeline(self.pipelines_root / f"{name}.yaml", models=infos, search_paths=[self.pipelines_root])
        except (PipelineError, OSError) as e:
            self._failed[name] = str(e)
            return
        if pipe.name != name:
            self._failed[name] = f"{name}.yaml declares name {pipe.name!r}; a pipeline's name must be its file's name"
            return
        for step in pipe.spec.steps:
            model, _, version = step.target.partition(":")
            used = self._servables.get(model, {}).get(version) if version else None
            used = used or next(iter(self._servables.get(model, {}).values()), None)
            if step.kind == "model" and used is not None and used.decoupled:
                self._failed[name] = (f"{step.location}: step {step.name!r}: model {model!r} is decoupled (it answers with a "
                                      "stream of responses); a pipeline's model step needs one answer per call")
                return
        if pipe.executor.valid.streaming_step is not None and pipe.spec.batching is not None:
            self._failed[name] = (f"{pipe.spec.path}: pipeline {name!r} streams (step {pipe.executor.valid.streaming_step!r} "
                                  "is a generator); streams are not batched: remove batching:")
            return
        self._servables[name] = {"1": pipeline_servable(ServedPipeline(pipe), self)}
        self._failed.pop(name, None)

    # -- what clients ask about ----------------------------------------------------------------

    def index(self) -> list[ModelState]:
        """Every model and pipeline of the repository, loaded or not."""
        rows = []
        with self._lock:
            for name in sorted(set(self.model_folders()) | set(self.pipeline_files()) | set(self._servables)):
                for v in sorted(self._servables.get(name, {})):
                    rows.append(ModelState(name=name, version=v, state="READY", reason=""))
                if name not in self._servables:
                    rows.append(ModelState(name=name, version="", state="UNAVAILABLE", reason=self._failed.get(name, "not loaded")))
        return rows

    def server_metadata(self, extensions: Sequence[str] = ()) -> dict[str, Any]:
        """The v2 server metadata: name, version, and the extensions a frontend supports (the
        Engine's own plus ``extensions``)."""
        from twinpipe import __version__

        return {"name": "twinpipe", "version": __version__, "extensions": [*EXTENSIONS, *extensions]}

    @property
    def live(self) -> bool:
        return not self.closing

    @property
    def ready(self) -> bool:
        """Ready when not shutting down and everything in the repository loaded (as Triton's
        strict readiness)."""
        return not self.closing and not self._failed

    def is_ready(self, name: str, version: str | int | None = None) -> bool:
        try:
            self.get(name, version)
        except EngineError:
            return False
        return not self.closing

    def get(self, name: str, version: str | int | None = None) -> Servable:
        """The servable ``name`` (its latest version unless ``version``)."""
        versions = self._servables.get(name)
        if not versions:
            why = self._failed.get(name)
            raise NotFoundError(f"unknown model {name!r}" + (f" (not loaded: {why.splitlines()[0]})" if why else ""))
        if version in (None, "", 0, "0"):
            return versions[max(versions, key=int)]
        if str(version) not in versions:
            raise NotFoundError(f"model {name!r} has no version {version} (loaded: {', '.join(sorted(versions, key=int))})")
        return versions[str(version)]

    def statistics(self, name: str = "", version: str | int | None = None) -> list[dict[str, Any]]:
        """Triton-shaped statistics for one model (all its versions unless ``version``) or all."""
        if name:
            targets = [self.get(name, version)] if version not in (None, "") else list(self._servables.get(name, {}).values())
            if not targets:
                raise NotFoundError(f"unknown model {name!r}")
        else:
            targets = [s for versions in self._servables.values() for s in versions.values()]
        return [s.statistics() for s in targets]

    # -- inference -----------------------------------------------------------------------------

    async def infer_async(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
                          request_id: str = "", parameters: Mapping[str, Any] | None = None,
                          outputs: Sequence[str] | None = None) -> InferResponse:
        """Run one request. ``parameters`` honoured: ``sequence_id``, ``sequence_start``,
        ``sequence_end``, ``priority``, ``timeout`` (µs); ``outputs`` limits what comes back."""
        return await self.submit(self.get(name, version), inputs, request_id=request_id, parameters=parameters,
                                 outputs=outputs)

    def infer(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None, request_id: str = "",
              parameters: Mapping[str, Any] | None = None, outputs: Sequence[str] | None = None) -> InferResponse:
        """:meth:`infer_async` for synchronous callers (runs on the engine's event loop)."""
        servable = self.get(name, version)
        if self._loop is None or (self._loop_thread is None and not self._loop.is_running()):
            self._start_loop()  # none yet, or the loop that used us has finished
        assert self._loop is not None
        work = self._infer(servable, inputs, request_id, parameters, outputs)
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def submit(self, servable: Servable, inputs: Mapping[str, Any], *, request_id: str = "",
               parameters: Mapping[str, Any] | None = None, outputs: Sequence[str] | None = None,
               ctx: StepContext | None = None, nested: bool = False) -> Awaitable[InferResponse]:
        """:meth:`infer_async` for a servable already looked up with :meth:`get` (what frontends
        call: they answer NOT_FOUND before they decode a request's tensors). Call it on a running
        event loop and await what it returns. ``ctx``: the context a pipeline's python steps get
        (default: one made from the request). ``nested``: a call made by a request already
        admitted (a python step's ``ctx.infer``): never refused for ``max_inflight`` or shutdown,
        which would fail the request that holds the slot."""
        loop = asyncio.get_running_loop()
        work = self._infer(servable, inputs, request_id, parameters, outputs, ctx, nested)
        if self._loop is not loop:
            if self._loop is None or (self._loop_thread is None and not self._loop.is_running()):
                self._loop = loop  # the first loop to call (a finished one is replaced: asyncio.run per test)
            else:  # batchers live on the engine's loop: hop there
                return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))
        return work

    async def stream(self, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None,
                     request_id: str = "", parameters: Mapping[str, Any] | None = None,
                     outputs: Sequence[str] | None = None) -> AsyncIterator[InferResponse]:
        """Run one request and yield its responses as they come: any number for a decoupled
        (streaming) model, exactly one for every other model and pipeline. Leaving the loop early
        stops the model's generator."""
        async for response in self.submit_stream(self.get(name, version), inputs, request_id=request_id,
                                                 parameters=parameters, outputs=outputs):
            yield response

    async def submit_stream(self, servable: Servable, inputs: Mapping[str, Any], *, request_id: str = "",
                            parameters: Mapping[str, Any] | None = None,
                            outputs: Sequence[str] | None = None) -> AsyncIterator[InferResponse]:
        """:meth:`stream` for a servable already looked up with :meth:`get`. A decoupled model's
        stream runs on the caller's event loop (its instance threads answer any loop)."""
        if not servable.decoupled:
            yield await self.submit(servable, inputs, request_id=request_id, parameters=parameters, outputs=outputs)
            return
        start = time.perf_counter()
        self._admit(servable)
        reason = "CANCELLED"  # unless it ends or fails: the consumer left early
        ctx = self._context(servable, request_id, parameters) if servable.needs_context else None
        try:
            try:
                async for result in servable.stream(inputs, _options(parameters) if parameters else {}, ctx):
                    yield servable.response(result, outputs, request_id)
            except EngineError:
                raise
            except Exception as e:
                raise _engine_error(e, servable.label) from e
            reason = ""
        except EngineError as e:
            reason = e.code
            raise
        finally:
            if ctx is not None and reason:
                ctx.cancel()
            servable.count(not reason, time.perf_counter() - start, reason)
            self._leave(servable)

    def infer_here(self, servable: Servable, inputs: Mapping[str, Any], request_id: str = "") -> InferResponse:
        """Run a request for a model that :attr:`Servable.runs_here` on this (non-loop) thread:
        what a sync python step's ``ctx.infer`` does for such a model, saving two thread hops.
        Its statistics are counted on the engine's loop afterwards (it is not in the in-flight
        gauge: it takes under ``INLINE_BELOW_S``; like any nested call it is not refused at shutdown)."""
        start, rows, reason = time.perf_counter(), 0, ""
        try:
            try:
                result, rows = servable.run_here(inputs, count=False)
            except EngineError:
                raise
            except Exception as e:
                raise _engine_error(e, servable.label) from e
            return servable.response(result, None, request_id)
        except EngineError as e:
            reason = e.code
            raise
        finally:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._count_here, servable, rows, time.perf_counter() - start, reason)

    @staticmethod
    def _count_here(servable: Servable, rows: int, seconds: float, reason: str) -> None:
        assert isinstance(servable.served, ServedModel)
        servable.served.count(rows, seconds, failed=bool(reason))
        servable.count(not reason, seconds, reason)

    def _admit(self, servable: Servable) -> None:
        """Count a request in, or refuse it (shutting down, too many in flight)."""
        if self.closing or self._inflight >= self.max_inflight:
            self._refuse(servable)
        self._inflight += 1
        if self.metrics is not None:
            self.metrics.inflight(servable.name, 1)

    def _context(self, servable: Servable, request_id: str, parameters: Mapping[str, Any] | None) -> EngineContext:
        """A request's context for a pipeline's python steps: its id, parameters and deadline."""
        timeout = (parameters or {}).get("timeout")
        deadline = time.monotonic() + timeout / 1e6 if isinstance(timeout, int) and timeout > 0 else None
        return EngineContext(self, asyncio.get_running_loop(), pipeline=servable.name, request_id=request_id,
                             parameters=parameters, deadline=deadline)

    def batch_context(self, servable: Servable) -> EngineContext:
        """The context of a batched pipeline run: it serves several requests, so it has no id."""
        return EngineContext(self, asyncio.get_running_loop(), pipeline=servable.name)

    def _refuse(self, servable: Servable) -> NoReturn:
        if self.closing:
            raise UnavailableError("the server is shutting down")
        servable.count(False, 0.0, "UNAVAILABLE")
        raise UnavailableError(f"too many requests in flight ({self.max_inflight}, max_inflight); try again later")

    def _leave(self, servable: Servable) -> None:
        self._inflight -= 1
        if self.metrics is not None:
            self.metrics.inflight(servable.name, -1)

    def _start_loop(self) -> None:
        with self._lock:
            if self._loop_thread is None:
                loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(target=loop.run_forever, name="twinpipe-engine", daemon=True)
                self._loop_thread.start()
                self._loop = loop

    async def _infer(self, servable: Servable, inputs: Mapping[str, Any], request_id: str,
                     parameters: Mapping[str, Any] | None, outputs: Sequence[str] | None,
                     ctx: StepContext | None = None, nested: bool = False) -> InferResponse:
        start = time.perf_counter()
        if (self.closing or self._inflight >= self.max_inflight) and not nested:
            self._refuse(servable)
        self._inflight += 1  # (admission and release inline: this is the hot path)
        metrics = self.metrics
        if metrics is not None:
            metrics.inflight(servable.name, 1)
        try:
            if servable.needs_context and ctx is None:
                ctx = self._context(servable, request_id, parameters)
            try:  # what the models and pipelines raise, as EngineErrors
                if parameters or ctx is not None:
                    result = await servable.infer(inputs, _options(parameters) if parameters else {}, ctx)
                elif servable.runs_here:  # a tiny unbatched model: answered right here, no coroutine to await
                    result = servable.run_here(inputs)[0]
                else:
                    result = await servable.run(inputs)
            except EngineError:
                raise
            except asyncio.CancelledError:
                if ctx is not None:
                    ctx.cancel()  # the client went: steps still running can see it
                raise
            except Exception as e:
                raise _engine_error(e, servable.label) from e
            response = servable.response(result, outputs, request_id)
            servable.count(True, time.perf_counter() - start)
            return response
        except EngineError as e:
            servable.count(False, time.perf_counter() - start, e.code)
            raise
        finally:
            self._inflight -= 1
            if metrics is not None:
                metrics.inflight(servable.name, -1)

    @property
    def inflight(self) -> int:
        return self._inflight

    # -- shutdown --------------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> bool:
        """Refuse new requests, then wait up to ``grace_s`` for those in flight; True if all ended."""
        self.closing = True
        deadline = time.monotonic() + grace_s
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self._inflight

    def _close_later(self, s: Servable) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(s.close(), loop)
        else:
            s.close_now()

    def _take_all(self) -> list[Servable]:
        with self._lock:
            out = [s for versions in self._servables.values() for s in versions.values()]
            self._servables.clear()
            return out

    async def aclose(self) -> None:
        """Unload everything (from inside the engine's event loop)."""
        await _close_all(self._take_all())

    def close(self) -> None:
        """Unload everything and stop the engine's own loop (if it started one). From code
        running on the engine's loop, use ``await engine.aclose()``."""
        loop, servables = self._loop, self._take_all()
        if loop is not None and loop.is_running():
            done = asyncio.run_coroutine_threadsafe(_close_all(servables), loop)
            done.result(timeout=30)
        else:
            for s in servables:
                s.close_now()
        if self._loop_thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._loop_thread.join(timeout=5)
            loop.close()


async def _close_all(servables: list[Servable]) -> None:
    await asyncio.gather(*(s.close() for s in servables), return_exceptions=True)


def _options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The request parameters the runtime honours, type-checked."""
    out: dict[str, Any] = {}
    sid = parameters.get("sequence_id")
    if sid is not None and sid not in (0, ""):
        if isinstance(sid, bool) or not isinstance(sid, int | str):
            raise InvalidArgumentError(f"parameter 'sequence_id' must be an integer or a string, given {type(sid).__name__}")
        out["sequence_id"] = sid
    for flag in ("sequence_start", "sequence_end"):
        v = parameters.get(flag, False)
        if not isinstance(v, bool):
            raise InvalidArgumentError(f"parameter {flag!r} must be a bool, given {v!r}")
        out[flag] = v
    for key, target in (("priority", "priority"), ("timeout", "timeout_us")):
        v = parameters.get(key)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidArgumentError(f"parameter {key!r} must be a non-negative integer, given {v!r}")
            if v:
                out[target] = v
    return out


def _engine_error(e: Exception, label: str) -> EngineError:
    """What a model or pipeline raised, as the EngineError (status) it maps to."""
    if isinstance(e, InferInputError | RequestError | SequenceError | PipelineInputError):
        return InvalidArgumentError(str(e))
    if isinstance(e, QueueFullError):
        return UnavailableError(str(e))
    if isinstance(e, QueueTimeoutError):
        return DeadlineError(str(e))
    if isinstance(e, BatchError | StepError):
        return InternalError(str(e))
    return InternalError(f"{label}: {type(e).__name__}: {e}")  # a bug in a model or step: the server lives
