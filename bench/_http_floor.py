"""The HTTP floor for bench/http.py: a bare aiohttp KServe v2 REST server that echoes ``identity``.

Its infer handler reads the body, parses the JSON header, takes the FP32 input from the binary
data (``np.frombuffer``) or from JSON ``data`` (``np.array``), and sends it back as ``y`` in the
format asked (binary after the JSON, or JSON data): the least a Python HTTP server on the same
stack (aiohttp's low-level server, the same Python and json module) must do per request. It answers
just enough else for perf_analyzer: health, metadata, config and statistics of one model,
``identity`` (x: FP32 [-1] → y: FP32 [-1], no batching, version "1").

Run: ``python bench/_http_floor.py [--host 127.0.0.1] [--port 0]``; the last line printed is
``http-floor: listening http=HOST:PORT`` once it serves. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import numpy as np
from aiohttp import web

__all__ = ["main", "serve"]

_HEADER = "Inference-Header-Content-Length"
_META = {"name": "identity", "versions": ["1"], "platform": "python",
         "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
         "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}]}
_CONFIG = {"name": "identity", "platform": "python", "backend": "python", "max_batch_size": 0,
           "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1]}],
           "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1]}]}
_STATS = {"model_stats": [{"name": "identity", "version": "1"}]}


def _json(value: Any) -> web.Response:
    return web.Response(body=json.dumps(value).encode(), content_type="application/json")


async def infer(request: web.BaseRequest) -> web.Response:
    body = await request.read()
    length = request.headers.get(_HEADER)
    n = int(length) if length is not None else len(body)
    req = json.loads(body[:n])
    tensor = req["inputs"][0]
    size = tensor.get("parameters", {}).get("binary_data_size")
    x = np.frombuffer(body, np.float32, offset=n) if size is not None else np.array(tensor["data"], np.float32)
    outputs = req.get("outputs")
    binary = outputs[0].get("parameters", {}).get("binary_data", False) if outputs else \
        req.get("parameters", {}).get("binary_data_output", False)
    out: dict[str, Any] = {"name": "y", "datatype": "FP32", "shape": tensor["shape"]}
    head = {"model_name": "identity", "model_version": "1", "outputs": [out]}
    if binary:
        raw = x.tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
        encoded = json.dumps(head).encode()
        return web.Response(body=encoded + raw, headers={_HEADER: str(len(encoded)), "Content-Type": "application/octet-stream"})
    out["data"] = x.tolist()
    return _json(head)


async def handle(request: web.BaseRequest) -> web.StreamResponse:
    path = request.path
    if path in ("/v2/models/identity/infer", "/v2/models/identity/versions/1/infer"):
        return await infer(request)
    if path in ("/v2/health/live", "/v2/health/ready", "/v2/models/identity/ready", "/v2/models/identity/versions/1/ready"):
        return web.Response()
    if path in ("/v2/models/identity", "/v2/models/identity/versions/1"):
        return _json(_META)
    if path.startswith("/v2/models/identity") and path.endswith("/config"):
        return _json(_CONFIG)
    if path.endswith("/stats"):
        return _json(_STATS)
    if path == "/v2":
        return _json({"name": "http-floor", "version": "0", "extensions": ["binary_tensor_data"]})
    return web.Response(status=404, body=b'{"error": "not found"}', content_type="application/json")


async def serve(host: str, port: int) -> None:
    server = web.Server(handle, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"http-floor: listening http={host}:{bound}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
