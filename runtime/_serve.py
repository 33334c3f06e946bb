"""``twinpipe serve``: the Engine behind the HTTP and gRPC frontends and the metrics endpoint, until
SIGTERM/SIGINT — then stop accepting, let requests in flight finish within a grace period, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Protocol, TextIO

from ._engine import Engine
from ._metrics import Metrics

__all__ = ["serve"]


class _Frontend(Protocol):
    async def start(self) -> int: ...
    async def stop(self, grace_s: float) -> None: ...


async def serve(repository: str | Path | None = None, *, host: str = "0.0.0.0", http_port: int | None = 8000,
                grpc_port: int | None = 8001, metrics_port: int | None = 8002, grace_s: float = 10.0,
                max_inflight: int = 1024, max_message_mb: int = 256, out: TextIO = sys.stdout) -> int:
    """Serve until a signal; returns the process exit code. A port of None turns that endpoint off
    (at least one of HTTP and gRPC must be on)."""
    if http_port is None and grpc_port is None:
        raise ValueError("both HTTP and gRPC are off: nothing would serve requests")
    metrics = Metrics() if metrics_port is not None else None
    engine = Engine(repository, max_inflight=max_inflight, metrics=metrics)
    frontends: dict[str, tuple[_Frontend, int]] = {}
    scrape = None
    try:
        if http_port is not None:
            from ._http import HttpFrontend

            http = HttpFrontend(engine, host=host, port=http_port, max_body_bytes=max_message_mb << 20)
            frontends["http"] = (http, await http.start())
        if grpc_port is not None:
            from ._grpc import GrpcFrontend

            grpc = GrpcFrontend(engine, host=host, port=grpc_port, max_message_bytes=max_message_mb << 20)
            frontends["grpc"] = (grpc, await grpc.start())
        scrape = await metrics.serve(host, metrics_port) if metrics is not None and metrics_port is not None else None
    except BaseException:
        for frontend, _ in frontends.values():  # a port in use must not leave the others half open
            await frontend.stop(0)
        engine.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    rows = engine.index()
    ready = [r["name"] for r in rows if r["state"] == "READY"]
    print(f"twinpipe: serving {len(ready)} model(s) and pipeline(s) from {engine.pipelines_root}", file=out)
    for r in rows:
        if r["state"] != "READY":
            print(f"twinpipe: {r['name']} is UNAVAILABLE: {r['reason'].splitlines()[0]}", file=out)
    if repository is None and "grpc" in frontends:  # the shipped repository: the shipped client talks to it
        print(f"twinpipe: try  python examples/client.py --url {shown}:{frontends['grpc'][1]}", file=out)
    at = " ".join(f"{kind}={shown}:{port}" for kind, (_, port) in frontends.items())
    metrics_at = f" metrics=http://{shown}:{scrape.port}/metrics" if scrape is not None else ""
    print(f"twinpipe: listening {at}{metrics_at}", file=out, flush=True)  # the last line: ready
    await stop.wait()
    print(f"twinpipe: stopping; {engine.inflight} request(s) in flight get {grace_s:g} s", file=out, flush=True)
    engine.closing = True
    await asyncio.gather(*(frontend.stop(grace_s) for frontend, _ in frontends.values()))
    await engine.drain(0)
    if scrape is not None:
        await scrape.close()
    with contextlib.suppress(Exception):
        await engine.aclose()
    print("twinpipe: stopped", file=out, flush=True)
    return 0
