"""The floor for bench/server.py: a bare grpc.aio KServe v2 server that echoes its inputs.

ModelInfer decodes each raw input (``np.frombuffer`` for fixed-size datatypes, the 4-byte
length-prefix parse for BYTES), then sends the same tensors back as raw outputs: the least a
Python gRPC server must do per request, with the same Python, grpc and protobuf messages as
twinpipe's server. ServerLive/ServerReady/ServerMetadata/ModelReady/ModelMetadata/ModelConfig/
ModelStatistics answer just enough for perf_analyzer, for two models (no batching, version "1"):

    identity  x: FP32 [-1]    → y: FP32 [-1]       (x echoed)
    classify  image: BYTES [-1] → image: BYTES [-1]  (the encoded image echoed)

Run: ``python bench/_floor.py [--host 127.0.0.1] [--port 0]``; the last line printed is
``floor: listening grpc=HOST:PORT`` once it serves. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from twinpipe.runtime._proto import kserve_pb2 as pb

__all__ = ["MODELS", "Floor", "main"]

# name → ((input, datatype), (output, datatype)); every dim is -1 (any length), no batching
MODELS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "identity": (("x", "FP32"), ("y", "FP32")),
    "classify": (("image", "BYTES"), ("image", "BYTES")),
}
_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
           "UINT8": np.dtype("u1")}
_LEN = struct.Struct("<I")


def split_bytes(data: bytes) -> list[bytes]:
    """BYTES raw contents → its elements (each a 4-byte little-endian length, then the bytes)."""
    items, off = [], 0
    while off < len(data):
        (size,) = _LEN.unpack_from(data, off)
        items.append(data[off + 4: off + 4 + size])
        off += 4 + size
    return items


def join_bytes(items: list[bytes]) -> bytes:
    return b"".join(part for item in items for part in (_LEN.pack(len(item)), item))


class Floor:
    """The handlers: each one a coroutine over our (Triton-identical) protobuf messages."""

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=True)

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(name="floor", version="0", extensions=["statistics", "model_configuration"])

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=request.name in MODELS)

    async def _known(self, name: str, context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], tuple[str, str]]:
        if name not in MODELS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        return MODELS[name]

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        (i, idt), (o, odt) = await self._known(request.name, context)
        return pb.ModelMetadataResponse(
            name=request.name, versions=["1"], platform="python",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name=i, datatype=idt, shape=[-1])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name=o, datatype=odt, shape=[-1])])

    async def model_config(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        (i, idt), (o, odt) = await self._known(request.name, context)

        def kind(dt: str) -> Any:
            return pb.DataType.Value("TYPE_STRING" if dt == "BYTES" else f"TYPE_{dt}")

        config = pb.ModelConfig(name=request.name, platform="python", backend="python", max_batch_size=0,
                                input=[pb.ModelInput(name=i, data_type=kind(idt), dims=[-1])],
                                output=[pb.ModelOutput(name=o, data_type=kind(odt), dims=[-1])])
        return pb.ModelConfigResponse(config=config)

    async def model_statistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        names = [request.name] if request.name else list(MODELS)
        for name in names:
            await self._known(name, context)
        return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(name=n, version="1") for n in names])

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        (_, _), (out_name, _) = await self._known(request.model_name, context)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for tensor, raw in zip(request.inputs, request.raw_input_contents):
            if tensor.datatype == "BYTES":
                data = join_bytes(split_bytes(raw))
            else:
                data = np.frombuffer(raw, dtype=_DTYPES[tensor.datatype]).reshape(tuple(tensor.shape)).tobytes()
            response.outputs.add(name=out_name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(data)
        return response

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[..., Awaitable[Any]], req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                       response_serializer=resp.SerializeToString)

        return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelConfig": unary(self.model_config, pb.ModelConfigRequest, pb.ModelConfigResponse),
            "ModelStatistics": unary(self.model_statistics, pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        })


async def serve(host: str, port: int, floor: Floor | None = None, name: str = "floor") -> None:
    # the same message limits and port options as twinpipe's GrpcFrontend
    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20),
               ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers(((floor or Floor()).handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{name}: listening grpc={host}:{bound}", flush=True)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
