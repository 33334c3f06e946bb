"""The gRPC frontend: KServe v2 / Triton's ``inference.GRPCInferenceService`` on grpc.aio, plus
the standard ``grpc.health.v1.Health`` service — wire-compatible with ``tritonclient.grpc`` and
``perf_analyzer``.

Our messages live in the protobuf package ``twinpipe.kserve`` (``tritonclient`` registers
``inference.*`` in the same process); the services are registered under their wire names with a
generic handler, since the wire only sees method paths and field numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format

from ._engine import Engine, InferResponse
from ._errors import EngineError, InvalidArgumentError
from ._proto import HEALTH_SERVICE, INFERENCE_SERVICE
from ._proto import kserve_pb2 as pb
from ._wire import (
    decode_inputs,
    decode_parameters,
    encode_outputs,
    request_options,
    requested_outputs,
    wants_empty_final,
)

__all__ = ["GRPC_SERVICE", "HEALTH_SERVICE", "GrpcFrontend"]

GRPC_SERVICE = INFERENCE_SERVICE  # the wire names live with the .proto


_SCHEDULING = ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout")


def _options(request: Any) -> dict[str, Any] | None:
    """The request's parameters: the scheduling ones checked for their wire types, and the others
    as given (a pipeline's python steps read them as ``ctx.parameters``)."""
    if not request.parameters:  # the common case: nothing to parse
        return None
    opts = request_options(request.parameters)
    custom = {k: v for k, v in decode_parameters(request.parameters).items() if k not in _SCHEDULING}
    return custom | {"sequence_id": opts.sequence_id, "sequence_start": opts.sequence_start, "sequence_end": opts.sequence_end,
                     "priority": opts.priority or None, "timeout": opts.timeout_us or None}


class GrpcFrontend:
    """The gRPC server in front of an :class:`Engine`.

    Args:
        max_message_bytes: the largest request or response message (default 256 MiB).
    """

    def __init__(self, engine: Engine, *, host: str = "0.0.0.0", port: int = 8001,
                 max_message_bytes: int = 256 << 20) -> None:
        self.engine, self.host, self.port = engine, host, port
        self.max_message_bytes = max_message_bytes
        self.server: grpc.aio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (``port=0`` picks a free one)."""
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes), ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((self._service(), self._health()))
        wanted = self.port
        try:  # grpcio raises RuntimeError for a port it cannot bind (older versions returned 0)
            self.port = server.add_insecure_port(f"{self.host}:{wanted}")
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {self.host}:{wanted} (is the port in use?)")
        await server.start()
        self.server = server
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting calls; those in flight get up to ``grace_s`` to finish."""
        if self.server is not None:
            await self.server.stop(grace_s)

    # -- registration --------------------------------------------------------------------------

    def _service(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[..., Awaitable[Any]], req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)

        handlers = {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelConfig": unary(self.model_config, pb.ModelConfigRequest, pb.ModelConfigResponse),
            "ModelStatistics": unary(self.model_statistics, pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
            "RepositoryIndex": unary(self.repository_index, pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
            "RepositoryModelLoad": unary(self.repository_load, pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
            "RepositoryModelUnload": unary(self.repository_unload, pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                self.model_stream_infer, request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelStreamInferResponse.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers)

    def _health(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(HEALTH_SERVICE, {
            "Check": grpc.unary_unary_rpc_method_handler(self.health_check, request_deserializer=pb.HealthCheckRequest.FromString,
                                                         response_serializer=pb.HealthCheckResponse.SerializeToString),
            "Watch": grpc.unary_stream_rpc_method_handler(self.health_watch, request_deserializer=pb.HealthCheckRequest.FromString,
                                                          response_serializer=pb.HealthCheckResponse.SerializeToString),
        })

    # -- the inference service -----------------------------------------------------------------

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=self.engine.live)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.engine.ready)

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=self.engine.is_ready(request.name, request.version or None))

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**self.engine.server_metadata())

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _status(context):
            meta = self.engine.get(request.name, request.version or None).metadata()
            return json_format.ParseDict(meta, pb.ModelMetadataResponse())
        raise AssertionError  # unreachable: _status aborts

    async def model_config(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _status(context):
            config = self.engine.get(request.name, request.version or None).config()
            return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))
        raise AssertionError

    async def model_statistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _status(context):
            stats = self.engine.statistics(request.name, request.version or None)
            return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())
        raise AssertionError

    async def repository_index(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = [r for r in self.engine.index() if not request.ready or r["state"] == "READY"]
        return json_format.ParseDict({"models": rows}, pb.RepositoryIndexResponse())

    async def repository_load(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _status(context):
            if request.parameters:  # Triton lets a request carry config/files; twinpipe loads only its repository
                raise InvalidArgumentError(f"load {request.model_name!r}: parameters ({', '.join(request.parameters)}) are not "
                                           "supported; twinpipe loads models from its repository only")
            await asyncio.to_thread(self.engine.load, request.model_name)
            return pb.RepositoryModelLoadResponse()
        raise AssertionError

    async def repository_unload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _status(context):
            self.engine.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()
        raise AssertionError

    def _submit(self, request: Any) -> Awaitable[InferResponse]:
        """Start one request; raises EngineError for an unknown model (NOT_FOUND before anything is
        decoded) or a malformed request."""
        engine = self.engine
        servable = engine.get(request.model_name, request.model_version or None)
        return engine.submit(servable, decode_inputs(request), request_id=request.id, parameters=_options(request),
                             outputs=requested_outputs(request))

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:  # the hot path: a plain try, not the _status context manager
            return _response(request, await self._submit(request))
        except EngineError as e:
            await context.abort(grpc.StatusCode[e.code], str(e))
        except Exception as e:
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        raise AssertionError  # unreachable: abort raises

    async def model_stream_infer(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Each request is answered as it completes (in any order; clients match by id); a failed
        request is answered with its error and the stream goes on. A decoupled model's (or
        streaming pipeline's) responses carry Triton's ``triton_final_response`` flag: a request
        that asks for an empty final response (``triton_enable_empty_final_response``) gets each
        response the moment it is made, flagged not final, then the empty one flagged final; a
        request that does not gets each response once the next exists (a generator only knows it
        is done when asked for more), the last one flagged final. Any other model's single
        response is flagged final. A client that leaves cancels what it started."""
        answers: asyncio.Queue[Any] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        def send(response: Any, final: bool) -> None:
            response.parameters["triton_final_response"].bool_param = final
            answers.put_nowait(pb.ModelStreamInferResponse(infer_response=response))

        async def answer(request: Any) -> None:
            held = None  # without an empty final response, each response waits for the next: the last is flagged final
            try:
                servable = self.engine.get(request.model_name, request.model_version or None)
                if not servable.decoupled:
                    send(_response(request, await self._submit(request)), final=True)
                    return
                empty_final = bool(request.parameters) and wants_empty_final(request.parameters)
                responses = self.engine.submit_stream(servable, decode_inputs(request), request_id=request.id,
                                                      parameters=_options(request), outputs=requested_outputs(request))
                async for result in responses:
                    if empty_final:
                        send(_response(request, result), final=False)  # at once: the empty final one ends the stream
                    else:
                        if held is not None:
                            send(held, final=False)
                        held = _response(request, result)
                if empty_final:
                    send(pb.ModelInferResponse(model_name=servable.name, model_version=servable.version, id=request.id), final=True)
                elif held is not None:
                    send(held, final=True)
                held = None
            except EngineError as e:
                if held is not None:  # what was made before the error still goes out
                    send(held, final=False)
                failed = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
                answers.put_nowait(pb.ModelStreamInferResponse(error_message=str(e), infer_response=failed))
            except Exception as e:  # never let one request end the stream
                if held is not None:
                    send(held, final=False)
                answers.put_nowait(pb.ModelStreamInferResponse(error_message=f"internal error: {type(e).__name__}: {e}"))

        async def read() -> None:
            async for request in requests:
                task = asyncio.ensure_future(answer(request))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            await answers.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await answers.get()) is not None:
                yield item
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    # -- health --------------------------------------------------------------------------------

    def _health_status(self, service: str) -> Any:
        if service not in ("", GRPC_SERVICE):
            return None
        return pb.HealthCheckResponse.SERVING if self.engine.ready else pb.HealthCheckResponse.NOT_SERVING

    async def health_check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        status = self._health_status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return pb.HealthCheckResponse(status=status)

    async def health_watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        last = None
        while True:
            status = self._health_status(request.service)
            status = pb.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status
            if status != last:
                yield pb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(0.25)


def _response(request: Any, result: InferResponse) -> Any:
    response = pb.ModelInferResponse(model_name=result.model_name, model_version=result.model_version, id=request.id)
    encode_outputs(response, result.outputs, result.datatypes)
    return response


@contextlib.asynccontextmanager
async def _status(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Turn an EngineError (or a bug) into the call's gRPC status."""
    try:
        yield
    except EngineError as e:
        await context.abort(grpc.StatusCode[e.code], str(e))
    except Exception as e:  # a bug: INTERNAL, and the server lives on
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
