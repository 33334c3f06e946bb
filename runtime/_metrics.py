"""Prometheus metrics for the inference server: request/batch/step timings, in-flight gauges, NVML GPU gauges.

Each :class:`Metrics` owns its own ``prometheus_client`` registry (never the process-global one), so two
servers, or two tests, in one process never share a series. ``Metrics.serve`` exposes it as ``GET /metrics``
on a small asyncio HTTP/1.1 endpoint; ``Metrics.render`` gives the same text for any other frontend.

GPU gauges come from NVML (the optional ``nvidia-ml-py`` package, imported as ``pynvml``) and are read at
scrape time by a custom collector; without the package, a driver or a device they are simply absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "BATCH_SIZE_BUCKETS", "Metrics", "MetricsServer"]

_log = logging.getLogger(__name__)

# the classic text format (what generate_latest writes with its default escaping); every Prometheus reads it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: 100 µs (a cached tabular model) to 10 s (a large batch on a cold GPU)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_DEFAULT_REASON = "INTERNAL"
_READ_TIMEOUT_S = 10.0  # a client that has not sent its request head by then is dropped
_MAX_LINE = 8192  # bytes in one request or header line
_MAX_HEADERS = 100
_LINGER_S, _LINGER_BYTES = 1.0, 1 << 20  # how long / how much unread input to drain before closing
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def _seconds(value: float) -> float:
    # a clock step can make a difference of perf_counter()s tiny and negative; never observe below zero
    return value if value > 0.0 else 0.0


class Metrics:
    """The server's metrics, in a registry of their own.

    Series (all names prefixed ``twinpipe_``, durations in seconds):

    - ``request_success_total{model,version}`` / ``request_failure_total{model,version,reason}``: one per
      finished request; ``reason`` is the caller's status string (``NOT_FOUND``, ``DEADLINE_EXCEEDED``, ...),
      ``INTERNAL`` when none is given.
    - ``request_duration_seconds``, ``queue_duration_seconds``, ``compute_duration_seconds`` ``{model,version}``:
      histograms of *successful* requests (as Triton counts them; failures are counted by reason above).
    - ``batch_size{model,version}`` (buckets 1…256), ``batch_queue_duration_seconds`` and
      ``batch_compute_duration_seconds`` ``{model,version}``: one observation per executed batch.
    - ``step_duration_seconds{pipeline,step}``: one pipeline step's wall time.
    - ``inflight_requests{model}``: a gauge moved by :meth:`inflight`.
    - ``gpu_utilization_ratio``, ``gpu_memory_used_bytes``, ``gpu_memory_total_bytes`` ``{gpu,uuid}``: read from
      NVML at each scrape, present only when ``gpu=True`` and NVML works (see :attr:`gpu`).

    Every method is safe to call from any thread (``prometheus_client``'s metrics lock themselves).
    """

    def __init__(self, *, gpu: bool = True) -> None:
        """Make the metrics in a new registry; with ``gpu``, also the NVML gauges if NVML can be opened."""
        self._registry = CollectorRegistry()
        reg = self._registry
        mv = ("model", "version")
        self._success = Counter("twinpipe_request_success", "Requests that succeeded.", mv, registry=reg)
        self._failure = Counter(
            "twinpipe_request_failure", "Requests that failed, by reason.", (*mv, "reason"), registry=reg
        )
        self._request_s = Histogram(
            "twinpipe_request_duration_seconds",
            "End-to-end time of successful requests.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._queue_s = Histogram(
            "twinpipe_queue_duration_seconds",
            "Time successful requests waited in a queue.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._compute_s = Histogram(
            "twinpipe_compute_duration_seconds",
            "Compute time of successful requests.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._batch_rows = Histogram(
            "twinpipe_batch_size", "Rows per executed batch.", mv, buckets=BATCH_SIZE_BUCKETS, registry=reg
        )
        self._batch_queue_s = Histogram(
            "twinpipe_batch_queue_duration_seconds",
            "Queue wait reported for each executed batch.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._batch_compute_s = Histogram(
            "twinpipe_batch_compute_duration_seconds",
            "Compute time of each executed batch.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._step_s = Histogram(
            "twinpipe_step_duration_seconds",
            "Wall time of one pipeline step.",
            ("pipeline", "step"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._inflight = Gauge("twinpipe_inflight_requests", "Requests being processed now.", ("model",), registry=reg)
        self._gpu = _GpuCollector.open() if gpu else None
        if self._gpu is not None:
            reg.register(self._gpu)

    @property
    def registry(self) -> CollectorRegistry:
        """This instance's registry (to add series of your own, or to hand to another exporter)."""
        return self._registry

    @property
    def gpu(self) -> bool:
        """Whether the NVML GPU gauges are being exported."""
        return self._gpu is not None

    def request(
        self,
        model: str,
        version: str,
        *,
        ok: bool,
        reason: str | None = None,
        request_s: float,
        queue_s: float | None = None,
        compute_s: float | None = None,
    ) -> None:
        """Record one finished request.

        A success increments ``request_success_total`` and observes ``request_s`` and, when measured (not
        ``None``), ``queue_s`` and ``compute_s``; a failure only increments ``request_failure_total`` under
        ``reason`` (``"INTERNAL"`` when ``None``).
        """
        if not ok:
            self._failure.labels(model, version, reason or _DEFAULT_REASON).inc()
            return
        self._success.labels(model, version).inc()
        self._request_s.labels(model, version).observe(_seconds(request_s))
        if queue_s is not None:
            self._queue_s.labels(model, version).observe(_seconds(queue_s))
        if compute_s is not None:
            self._compute_s.labels(model, version).observe(_seconds(compute_s))

    def batch(self, model: str, version: str, rows: int, *, queue_s: float, compute_s: float) -> None:
        """Record one executed batch of ``rows`` rows (the batcher's observer)."""
        self._batch_rows.labels(model, version).observe(rows)
        self._batch_queue_s.labels(model, version).observe(_seconds(queue_s))
        self._batch_compute_s.labels(model, version).observe(_seconds(compute_s))

    def step(self, pipeline: str, step: str, seconds: float) -> None:
        """Record one pipeline step's wall time."""
        self._step_s.labels(pipeline, step).observe(_seconds(seconds))

    def inflight(self, model: str, delta: int) -> None:
        """Move the in-flight gauge of ``model``: ``+1`` when a request enters, ``-1`` when it leaves."""
        self._inflight.labels(model).inc(delta)

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE

    async def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``GET /metrics`` on ``host:port`` (``port`` 0 picks a free one) until the server is closed."""
        return await MetricsServer.start(self.render, host, port)


class MetricsServer:
    """A running ``/metrics`` endpoint: a minimal HTTP/1.1 server, one request per connection.

    ``GET``/``HEAD /metrics`` → 200 with the text format; any other path → 404; another method → 405; a
    malformed request head → 400. The page is rendered on the default executor, off the event loop.
    """

    def __init__(self, render: Callable[[], tuple[bytes, str]]) -> None:
        """Use :meth:`start` (or :meth:`Metrics.serve`); this only holds the state."""
        self._render = render
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] = ("", 0)
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, render: Callable[[], tuple[bytes, str]], host: str, port: int) -> MetricsServer:
        """Bind ``host:port`` and start serving ``render``'s output."""
        self = cls(render)
        self._server = await asyncio.start_server(self._handle, host, port, limit=_MAX_LINE)
        bound = self._server.sockets[0].getsockname()  # kept: the sockets are gone once closed
        self._address = (str(bound[0]), int(bound[1]))
        return self

    @property
    def port(self) -> int:
        """The bound port (the one picked when 0 was asked for)."""
        return self._address[1]

    @property
    def host(self) -> str:
        """The bound address."""
        return self._address[0]

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):  # else wait_closed (3.12+) waits for idle clients
            writer.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                head = await asyncio.wait_for(_read_head(reader), _READ_TIMEOUT_S)
            except (asyncio.TimeoutError, ConnectionError):
                return
            if head is None:  # connected and closed without a request
                return
            await self._respond(writer, head)
            await _linger(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, writer: asyncio.StreamWriter, head: tuple[str, str] | str) -> None:
        headers: dict[str, str] = {}
        if isinstance(head, str):
            status, body, ctype = 400, f"{head}\n".encode(), "text/plain; charset=utf-8"
            method = "GET"
        else:
            method, path = head
            ctype = "text/plain; charset=utf-8"
            if path != "/metrics":
                status, body = 404, b"not found; try /metrics\n"
            elif method not in ("GET", "HEAD"):
                status, body = 405, b"method not allowed\n"
                headers["Allow"] = "GET, HEAD"
            else:
                try:
                    body, ctype = await asyncio.get_running_loop().run_in_executor(None, self._render)
                    status = 200
                except Exception:
                    _log.exception("rendering /metrics failed")
                    status, body = 500, b"rendering the metrics failed\n"
        headers = {"Content-Type": ctype, "Content-Length": str(len(body)), **headers, "Connection": "close"}
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then discard what the client still sends, briefly.

    Closing a socket with unread input (a request body, the rest of an over-long line) makes the kernel send
    a reset, which can destroy the response before the client reads it.
    """
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        deadline, left = loop.time() + _LINGER_S, _LINGER_BYTES
        while left > 0 and (remaining := deadline - loop.time()) > 0:
            chunk = await asyncio.wait_for(reader.read(min(left, 65536)), remaining)
            if not chunk:
                break
            left -= len(chunk)


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str] | str | None:
    """Read a request head: ``(method, path)``, an error message (→ 400), or ``None`` at a bare EOF."""
    try:
        line = await reader.readline()
        while line in (b"\r\n", b"\n"):  # a client may send stray CRLFs before the request line
            line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
            return "malformed request line"
        method, target, _ = parts
        for _ in range(_MAX_HEADERS + 1):
            header = await reader.readline()
            if header in (b"\r\n", b"\n"):
                break
            if not header.endswith(b"\n"):
                return "request head cut short"
            if b":" not in header:
                return "malformed header line"
        else:
            return "too many header lines"
    except ValueError:  # StreamReader.readline: a line over the stream's limit
        return "request line or header too long"
    return method, target.split("?", 1)[0]  # methods are case-sensitive: "get" gets a 405


class _GpuCollector(Collector):  # an ABC in older prometheus_client (mypy), a Protocol now
    """NVML gauges read at scrape time: utilization and memory of every visible GPU."""

    def __init__(self, nvml: ModuleType, handles: list[tuple[str, str, Any]]) -> None:
        self._nvml = nvml
        self._handles = handles  # (index, uuid, NVML handle)

    @classmethod
    def open(cls) -> _GpuCollector | None:
        """A collector over every GPU NVML sees, or ``None`` without ``pynvml``, a driver or a device."""
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None
        try:
            nvml.nvmlInit()
        except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: no usable driver
            return None
        try:
            handles = []
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                uuid = nvml.nvmlDeviceGetUUID(handle)
                handles.append((str(i), uuid.decode() if isinstance(uuid, bytes) else str(uuid), handle))
        except Exception:
            _log.warning("NVML opened but listing its devices failed; no GPU metrics", exc_info=True)
            handles = []
        if not handles:
            nvml.nvmlShutdown()
            return None
        collector = cls(nvml, handles)
        # nvmlInit is reference-counted: release this instance's count when the collector goes
        weakref.finalize(collector, _shutdown, nvml)
        return collector

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so the registry can check names without touching NVML."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        """Read every device now; a device that fails a read (lost, MIG, not supported) is left out of that gauge."""
        util, used, total = self._families()
        for index, uuid, handle in self._handles:
            labels = [index, uuid]
            with contextlib.suppress(Exception):
                util.add_metric(labels, self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
            with contextlib.suppress(Exception):
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                used.add_metric(labels, float(memory.used))
                total.add_metric(labels, float(memory.total))
        return [util, used, total]

    @staticmethod
    def _families() -> Iterator[GaugeMetricFamily]:
        labels = ("gpu", "uuid")
        yield GaugeMetricFamily(
            "twinpipe_gpu_utilization_ratio", "GPU busy fraction over NVML's last sample period.", labels=labels
        )
        yield GaugeMetricFamily("twinpipe_gpu_memory_used_bytes", "GPU memory in use.", labels=labels)
        yield GaugeMetricFamily("twinpipe_gpu_memory_total_bytes", "GPU memory installed.", labels=labels)


def _shutdown(nvml: ModuleType) -> None:
    with contextlib.suppress(Exception):
        nvml.nvmlShutdown()
