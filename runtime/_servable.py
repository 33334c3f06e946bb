"""One servable of the Engine — a model version or a pipeline — as clients see it: how to run it,
its metadata, its config in Triton's shape, its statistics and its counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twinpipe.dag import ModelInfo, RunStats, StepContext, TensorDecl
from twinpipe.models import BatcherStats, ServedModel, ServedPipeline

from ._errors import DeadlineError, InvalidArgumentError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["InferResponse", "Servable", "model_servable", "pipeline_servable"]

_PLATFORMS = {"torchscript": ("pytorch", "pytorch_libtorch"), "torch_export": ("pytorch", "torch_export"),
              "onnx": ("onnxruntime", "onnxruntime_onnx"), "python": ("python", "")}


_EPOCH = time.time() - time.perf_counter()  # perf_counter() + _EPOCH: the wall clock, without a second clock read


@dataclass(slots=True)
class InferResponse:
    """What a request gets back: outputs by name, with their KServe datatypes (read-only: the
    datatypes may be shared between responses)."""

    model_name: str
    model_version: str
    id: str
    outputs: dict[str, Any]
    datatypes: Mapping[str, str]
    parameters: dict[str, Any] | None = None


@dataclass
class _Counts:
    success: int = 0
    success_ns: int = 0
    fail: int = 0
    fail_ns: int = 0
    last_ms: int = 0


class Servable:
    """A loaded model version or pipeline behind the Engine."""

    def __init__(self, kind: str, name: str, version: str, served: ServedModel | ServedPipeline, engine: Engine,
                 inputs: tuple[TensorDecl, ...], outputs: tuple[TensorDecl, ...], max_batch_size: int) -> None:
        self.kind, self.name, self.version, self.served = kind, name, version, served
        self.engine = engine
        self.label = f"{kind} {name!r}" + (f" version {version}" if kind == "model" else "")
        self.inputs, self.outputs, self.max_batch_size = inputs, outputs, max_batch_size
        self.datatypes = {d.name: d.datatype for d in outputs}
        self._scalars = tuple(d.name for d in inputs if d.shape == ())  # per-sample scalars
        self.uses: set[str] = set()  # pipelines: the models their steps name
        #: a streaming model or pipeline: any number of responses per request (Triton's decoupled policy)
        self.decoupled = served.config.decoupled if isinstance(served, ServedModel) else served.streaming_step is not None
        #: a pipeline whose runs need a context (python steps, nested pipelines)
        self.needs_context = isinstance(served, ServedPipeline) and served.needs_context
        self.counts = _Counts()
        batcher = served.batcher
        if batcher is not None:
            batcher.observer = self._batch_done

    @property
    def metrics(self) -> Any:
        return getattr(self.engine, "metrics", None)

    def _batch_done(self, rows: int, wait_s: float, compute_s: float) -> None:
        if self.metrics is not None:
            self.metrics.batch(self.name, self.version, rows, queue_s=wait_s, compute_s=compute_s)

    def _steps_done(self, stats: RunStats) -> None:
        if self.metrics is not None:
            for step, seconds in stats.step_seconds.items():
                self.metrics.step(self.name, step, seconds)

    def info(self) -> ModelInfo:
        """The model as a pipeline's model step sees it: the step calls the model's runner on the
        pipeline's thread. (Routing it through the model's batcher from that thread was tried: the
        thread hops cost more than the batching gave; an async executor would do it properly.)"""
        assert isinstance(self.served, ServedModel)
        return self.served.model.info()

    def _unsqueezed(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """A batch of scalars may come as [n, 1] (the config says dims [1] with reshape [], as
        Triton writes it for such tensors, so perf_analyzer sends that); it is [n] inside."""
        if not self.max_batch_size or not self._scalars:
            return inputs
        out = dict(inputs)
        for name in self._scalars:
            x = out.get(name)
            if x is not None and getattr(x, "ndim", 0) == 2 and x.shape[1] == 1:
                out[name] = x.reshape(-1)
        return out

    def run(self, inputs: Mapping[str, Any]) -> Awaitable[dict[str, Any]]:
        """Run a request that has no options (the common case)."""
        if self.decoupled:
            raise InvalidArgumentError(f"{self.label} is decoupled (it answers a request with a stream of responses): "
                                       "call it through a stream (gRPC ModelStreamInfer, Engine.stream)")
        if self._scalars and self.max_batch_size:
            inputs = self._unsqueezed(inputs)
        return self.served.infer(inputs)

    def infer(self, inputs: Mapping[str, Any], options: Mapping[str, Any], ctx: StepContext | None = None) -> Awaitable[dict[str, Any]]:
        """Run a request with its options (sequence, priority, timeout) and, for a pipeline, the
        context its python steps get."""
        if self.decoupled or (not options and ctx is None):
            return self.run(inputs)  # (a decoupled one is refused there)
        if self._scalars and self.max_batch_size:
            inputs = self._unsqueezed(inputs)
        priority, timeout_us = options.get("priority"), options.get("timeout_us")
        if isinstance(self.served, ServedModel):
            return self.served.infer(inputs, priority=priority, timeout_us=timeout_us,
                                     sequence_id=options.get("sequence_id"), sequence_start=options.get("sequence_start", False),
                                     sequence_end=options.get("sequence_end", False))
        if options.get("sequence_id") is not None or options.get("sequence_start") or options.get("sequence_end"):
            raise InvalidArgumentError(f"{self.label} is not a sequence model; it takes no sequence_id/start/end")
        work = self.served.infer(inputs, priority=priority, timeout_us=timeout_us, ctx=ctx)
        if timeout_us and self.served.batcher is None:  # no queue to time out in: bound the whole run
            return _deadline(work, timeout_us, self.label)
        return work

    @property
    def runs_here(self) -> bool:
        """A model that can answer on the caller's thread now (see ``ServedModel.runs_here``)."""
        return isinstance(self.served, ServedModel) and self.served.runs_here

    def run_here(self, inputs: Mapping[str, Any], *, count: bool = True) -> tuple[dict[str, Any], int]:
        assert isinstance(self.served, ServedModel)
        if self._scalars and self.max_batch_size:
            inputs = self._unsqueezed(inputs)
        return self.served.run_here(inputs, count=count)

    def stream(self, inputs: Mapping[str, Any], options: Mapping[str, Any], ctx: StepContext | None = None) -> AsyncIterator[dict[str, Any]]:
        """A decoupled model's or streaming pipeline's responses to a request, as they come.
        Streams have no queue and no sequences: priority means nothing to them (as to any model
        without a batcher); a pipeline's steps see the timeout as ``ctx.deadline``."""
        assert self.decoupled
        if options.get("sequence_id") is not None or options.get("sequence_start") or options.get("sequence_end"):
            raise InvalidArgumentError(f"{self.label} is not a sequence model; it takes no sequence_id/start/end")
        if self._scalars and self.max_batch_size:
            inputs = self._unsqueezed(inputs)
        if isinstance(self.served, ServedModel):
            return self.served.stream(inputs)
        return self.served.stream(inputs, ctx)

    def response(self, result: dict[str, Any], requested: Sequence[str] | None, request_id: str) -> InferResponse:
        """The response to a request: the requested outputs (all when None, in the order asked)
        with their datatypes. ``result`` is the request's own dict (it becomes the response's)."""
        types = self.datatypes
        if not requested:
            datatypes = types if result.keys() == types.keys() else {k: types.get(k, "") for k in result}
            return InferResponse(self.name, self.version, request_id, result, datatypes)
        unknown = [n for n in requested if n not in result]
        if unknown:
            raise InvalidArgumentError(f"{self.label} has no output {unknown[0]!r}; its outputs are: {', '.join(result)}")
        if len(set(requested)) != len(requested):
            twice = next(n for n in requested if requested.count(n) > 1)
            raise InvalidArgumentError(f"{self.label}: output {twice!r} requested twice")
        return InferResponse(self.name, self.version, request_id, {n: result[n] for n in requested},
                             {n: types.get(n, "") for n in requested})

    def count(self, ok: bool, seconds: float, reason: str = "") -> None:
        c, ns = self.counts, int(seconds * 1e9)
        if ok:
            c.success, c.success_ns = c.success + 1, c.success_ns + ns
        else:
            c.fail, c.fail_ns = c.fail + 1, c.fail_ns + ns
        c.last_ms = int((time.perf_counter() + _EPOCH) * 1000)
        if self.metrics is not None:
            self.metrics.request(self.name, self.version, ok=ok, reason=reason or None, request_s=seconds)

    # -- what clients read -----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        versions = sorted(self.engine._servables.get(self.name, {self.version: self}), key=int)

        def tensor(d: TensorDecl) -> dict[str, Any]:
            return {"name": d.name, "datatype": d.datatype, "shape": list(self._client_shape(d))}

        return {"name": self.name, "versions": versions, "platform": self.platform,
                "inputs": [tensor(d) for d in self.inputs], "outputs": [tensor(d) for d in self.outputs]}

    def _client_shape(self, d: TensorDecl) -> tuple[int, ...]:
        if self.max_batch_size > 0:  # a scalar per row reads [-1, 1], as the config's dims [1] say
            return (-1, *(d.shape or (1,))) if d.name in self._scalars else (-1, *d.shape)
        return d.shape

    @property
    def platform(self) -> str:
        if isinstance(self.served, ServedPipeline):
            return "ensemble"
        return _PLATFORMS[self.served.config.backend][1] or "python"

    def config(self) -> dict[str, Any]:
        """The config in the shape of Triton's ModelConfig (proto field names)."""

        def tensor(d: TensorDecl) -> dict[str, Any]:
            out = {"name": d.name, "data_type": "TYPE_" + d.datatype if d.datatype != "BYTES" else "TYPE_STRING",
                   "dims": list(d.shape)}
            if not d.shape and self.max_batch_size:  # a scalar per batch row: Triton writes dims [1], reshape []
                out |= {"dims": [1], "reshape": {"shape": []}}
            return out

        out: dict[str, Any] = {"name": self.name, "platform": self.platform, "max_batch_size": self.max_batch_size,
                               "input": [tensor(d) for d in self.inputs], "output": [tensor(d) for d in self.outputs],
                               "model_transaction_policy": {"decoupled": self.decoupled}}
        if isinstance(self.served, ServedPipeline):  # scheduling is one of ensemble/dynamic/sequence
            # the model steps only: clients (perf_analyzer) look each one up as a model
            steps = [s for s in self.served.pipeline.spec.steps if s.kind == "model"]
            out["ensemble_scheduling"] = {"step": [self._ensemble_step(s) for s in steps]}
            return out
        cfg = self.served.config
        out["backend"] = _PLATFORMS[cfg.backend][0]
        out["instance_group"] = [{"count": cfg.instance_count,
                                  "kind": "KIND_GPU" if str(self.served.model.runner.device).startswith("cuda") else "KIND_CPU"}]
        policy = cfg.version_policy
        out["version_policy"] = ({"all": {}} if policy.kind == "all" else {"specific": {"versions": list(policy.versions)}}
                                 if policy.kind == "specific" else {"latest": {"num_versions": policy.latest}})
        if cfg.sequence_batching is not None:
            out["sequence_batching"] = _sequence_config(cfg.sequence_batching)
        batcher = self.served.batcher
        if batcher is not None:
            p = batcher.policy
            queue: dict[str, Any] = {"allow_timeout_override": True}
            if p.timeout_us:
                queue["default_timeout_microseconds"] = p.timeout_us
            if p.max_queue_size:
                queue["max_queue_size"] = p.max_queue_size
            out["dynamic_batching"] = {"preferred_batch_size": list(p.preferred_batch_sizes),
                                       "max_queue_delay_microseconds": p.max_queue_delay_us,
                                       "preserve_ordering": p.preserve_ordering, "priority_levels": p.priority_levels,
                                       "default_priority_level": p.priority, "default_queue_policy": queue}
        return out

    def _ensemble_step(self, step: Any) -> dict[str, Any]:
        """A model step as Triton writes an ensemble step, with the version it runs (clients look
        its statistics up by that version)."""
        model, _, version = step.target.partition(":")
        if not version.isdigit():
            loaded = self.engine._servables.get(model, {})
            version = max(loaded, key=int) if loaded else "-1"
        return {"model_name": model, "model_version": int(version),
                "input_map": {k: str(ref) for k, ref in step.inputs.items()}, "output_map": {}}

    def statistics(self) -> dict[str, Any]:
        """Triton's ModelStatistics shape: counts and cumulative nanoseconds."""
        s: BatcherStats = self.served.stats
        c = self.counts
        ok = c.success
        return {
            "name": self.name, "version": self.version, "last_inference": c.last_ms,
            "inference_count": s.rows, "execution_count": s.batches,
            "inference_stats": {"success": {"count": ok, "ns": c.success_ns}, "fail": {"count": c.fail, "ns": c.fail_ns},
                                "queue": {"count": ok, "ns": s.queue_ns}, "compute_input": {"count": ok, "ns": 0},
                                "compute_infer": {"count": ok, "ns": s.compute_ns}, "compute_output": {"count": ok, "ns": 0}},
            "batch_stats": [{"batch_size": n, "compute_infer": {"count": k, "ns": s.batch_compute_ns.get(n, 0)}}
                            for n, k in sorted(s.batch_sizes.items())],
        }

    async def close(self) -> None:
        await self.served.close()

    def close_now(self) -> None:
        if isinstance(self.served, ServedModel):
            self.served.pool.close()


def model_servable(served: ServedModel, engine: Engine) -> Servable:
    cfg = served.config
    return Servable("model", cfg.name, str(served.model.version), served, engine, cfg.inputs, cfg.outputs, cfg.max_batch_size)


def pipeline_servable(served: ServedPipeline, engine: Engine) -> Servable:
    pipe = served.pipeline
    spec = pipe.spec
    mbs = served.batcher.policy.max_batch_size if served.batcher is not None else 0

    def shape(d: TensorDecl) -> TensorDecl:  # a batching pipeline's dims exclude the batch, as a model's
        return TensorDecl(d.name, d.datatype, d.shape[1:] if mbs else d.shape, d.location)

    wanted_in, wanted_out = set(pipe.inputs), set(pipe.outputs)
    s = Servable("pipeline", pipe.name, "1", served, engine, tuple(shape(d) for d in spec.inputs if d.name in wanted_in),
                 tuple(shape(d) for d in spec.outputs if d.name in wanted_out), mbs)
    s.uses = {st.target.split(":")[0] for st in spec.steps if st.kind == "model"}
    served.on_stats = s._steps_done
    served.context_factory = lambda: engine.batch_context(s)
    return s




def _sequence_config(section: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"max_sequence_idle_microseconds": section.get("max_sequence_idle_us", 1_000_000)}
    if section.get("strategy", "oldest") == "direct":
        out["direct"] = {}
    else:
        oldest: dict[str, Any] = {"max_queue_delay_microseconds": section.get("max_queue_delay_us", 0)}
        if "max_candidate_sequences" in section:
            oldest["max_candidate_sequences"] = section["max_candidate_sequences"]
        out["oldest"] = oldest
    out["state"] = [{"input_name": s["input"], "output_name": s["output"],
                     "data_type": "TYPE_" + s["datatype"] if s["datatype"] != "BYTES" else "TYPE_STRING", "dims": list(s["shape"])}
                    for s in (section.get("state") or {}).values()]
    return out


async def _deadline(work: Awaitable[dict[str, Any]], timeout_us: int, label: str) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(work, timeout_us / 1e6)
    except TimeoutError:
        raise DeadlineError(f"{label}: the request did not finish within its timeout of {timeout_us} µs") from None
