"""The Prometheus metrics: exact series after a known sequence of events, and the /metrics HTTP endpoint."""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import random
import socket
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from twinpipe.runtime._metrics import BATCH_SIZE_BUCKETS, CONTENT_TYPE, LATENCY_BUCKETS, Metrics

GPU_FAMILIES = {"twinpipe_gpu_utilization_ratio", "twinpipe_gpu_memory_used_bytes", "twinpipe_gpu_memory_total_bytes"}


def _rng() -> random.Random:
    return random.Random(int.from_bytes(os.urandom(4), "little"))


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _families(metrics: Metrics) -> dict[str, list[Sample]]:
    body, _ = metrics.render()
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _bucket_of(value: float, buckets: tuple[float, ...]) -> int:
    """Index of the first bucket whose upper bound holds ``value`` (len(buckets) for +Inf)."""
    return next((i for i, b in enumerate(buckets) if value <= b), len(buckets))


def _check_histogram(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    buckets: tuple[float, ...],
    values: list[float],
    **labels: str,
) -> None:
    assert samples[_key(f"{name}_count", **labels)] == len(values)
    assert math.isclose(samples[_key(f"{name}_sum", **labels)], sum(values), rel_tol=1e-9, abs_tol=1e-12)
    got = {
        float(dict(k[1])["le"]): v
        for k, v in samples.items()
        if k[0] == f"{name}_bucket" and {(a, b) for a, b in k[1] if a != "le"} == set(labels.items())
    }
    per = Counter(_bucket_of(v, buckets) for v in values)
    expected = {bound: sum(per[j] for j in range(i + 1)) for i, bound in enumerate(buckets)}
    assert got == {**expected, math.inf: len(values)}, name


def test_requests_are_counted_per_label_set_and_timed_on_success() -> None:
    rng = _rng()
    m = Metrics(gpu=False)
    ok_a: list[tuple[float, float, float]] = []
    fail_reasons: Counter[tuple[str, str]] = Counter()
    ok_b = 0
    for _ in range(rng.randint(20, 60)):
        pick = rng.random()
        req, queue, compute = rng.uniform(1e-4, 3.0), rng.uniform(0, 0.5), rng.uniform(1e-5, 2.0)
        if pick < 0.5:
            m.request("resnet", "1", ok=True, request_s=req, queue_s=queue, compute_s=compute)
            ok_a.append((req, queue, compute))
        elif pick < 0.6:
            m.request("bert", "3", ok=True, request_s=req)  # no queue/compute measured: not observed
            ok_b += 1
        else:
            reason = rng.choice(["NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED", None])
            model = rng.choice(["resnet", "bert"])
            m.request(model, "1", ok=False, reason=reason, request_s=req, queue_s=queue, compute_s=compute)
            fail_reasons[(model, reason or "INTERNAL")] += 1
    m.request("resnet", "1", ok=True, request_s=0.002, queue_s=0.0005, compute_s=0.001)
    ok_a.append((0.002, 0.0005, 0.001))  # at least one, whatever the draw

    s = _samples(m)
    assert s[_key("twinpipe_request_success_total", model="resnet", version="1")] == len(ok_a)
    if ok_b:
        assert s[_key("twinpipe_request_success_total", model="bert", version="3")] == ok_b
        assert s[_key("twinpipe_request_duration_seconds_count", model="bert", version="3")] == ok_b
        assert _key("twinpipe_queue_duration_seconds_count", model="bert", version="3") not in s
        assert _key("twinpipe_compute_duration_seconds_count", model="bert", version="3") not in s
    failures = {
        (dict(k[1])["model"], dict(k[1])["reason"]): v for k, v in s.items() if k[0] == "twinpipe_request_failure_total"
    }
    assert failures == dict(fail_reasons)
    assert all(dict(k[1])["version"] == "1" for k in s if k[0] == "twinpipe_request_failure_total")
    # failures are counted, never timed: the histograms hold exactly the successes
    for name, column in [
        ("twinpipe_request_duration_seconds", 0),
        ("twinpipe_queue_duration_seconds", 1),
        ("twinpipe_compute_duration_seconds", 2),
    ]:
        _check_histogram(s, name, LATENCY_BUCKETS, [t[column] for t in ok_a], model="resnet", version="1")


def test_batches_fill_the_size_buckets_and_batch_timings() -> None:
    rng = _rng()
    m = Metrics(gpu=False)
    rows = [rng.randint(1, 300) for _ in range(rng.randint(10, 40))] + [1, 2, 3, 256, 257]
    queue = [rng.uniform(0, 0.2) for _ in rows]
    compute = [rng.uniform(1e-4, 1.0) for _ in rows]
    for r, q, c in zip(rows, queue, compute):
        m.batch("yolo", "2", r, queue_s=q, compute_s=c)
    m.batch("other", "1", 8, queue_s=0.01, compute_s=0.02)

    s = _samples(m)
    _check_histogram(s, "twinpipe_batch_size", BATCH_SIZE_BUCKETS, [float(r) for r in rows], model="yolo", version="2")
    _check_histogram(s, "twinpipe_batch_queue_duration_seconds", LATENCY_BUCKETS, queue, model="yolo", version="2")
    _check_histogram(s, "twinpipe_batch_compute_duration_seconds", LATENCY_BUCKETS, compute, model="yolo", version="2")
    _check_histogram(s, "twinpipe_batch_size", BATCH_SIZE_BUCKETS, [8.0], model="other", version="1")
    # batches are not requests
    assert not any(k[0].startswith("twinpipe_request_") and k[0].endswith(("_total", "_count")) for k in s)


def test_steps_are_timed_per_pipeline_and_step() -> None:
    rng = _rng()
    m = Metrics(gpu=False)
    seen: dict[tuple[str, str], list[float]] = {}
    for _ in range(rng.randint(10, 50)):
        key = (rng.choice(["detect", "classify"]), rng.choice(["decode", "resize", "model", "nms"]))
        t = rng.uniform(5e-5, 12.0)
        m.step(*key, t)
        seen.setdefault(key, []).append(t)
    m.step("detect", "clock_went_back", -1e-6)  # clamped to zero, not a negative sum
    seen[("detect", "clock_went_back")] = [0.0]

    s = _samples(m)
    for (pipeline, step), values in seen.items():
        _check_histogram(s, "twinpipe_step_duration_seconds", LATENCY_BUCKETS, values, pipeline=pipeline, step=step)


def test_inflight_gauge_goes_up_and_down_per_model() -> None:
    rng = _rng()
    m = Metrics(gpu=False)
    level = {"a": 0, "b": 0}
    for _ in range(rng.randint(30, 80)):
        model = rng.choice(["a", "b"])
        delta = 1 if level[model] == 0 or rng.random() < 0.6 else -1
        m.inflight(model, delta)
        level[model] += delta
        assert _samples(m)[_key("twinpipe_inflight_requests", model=model)] == level[model]
    for model in ("a", "b"):
        for _ in range(level[model]):
            m.inflight(model, -1)
    s = _samples(m)
    assert s[_key("twinpipe_inflight_requests", model="a")] == 0
    assert s[_key("twinpipe_inflight_requests", model="b")] == 0


def test_two_instances_do_not_share_state() -> None:
    a, b = Metrics(gpu=False), Metrics(gpu=False)
    a.request("m", "1", ok=True, request_s=0.01)
    a.inflight("m", 1)
    b.request("m", "1", ok=False, reason="NOT_FOUND", request_s=0.001)
    sa, sb = _samples(a), _samples(b)
    assert sa[_key("twinpipe_request_success_total", model="m", version="1")] == 1
    assert _key("twinpipe_request_success_total", model="m", version="1") not in sb
    assert sb[_key("twinpipe_request_failure_total", model="m", version="1", reason="NOT_FOUND")] == 1
    assert not any(k[0] == "twinpipe_request_failure_total" for k in sa)
    assert _key("twinpipe_inflight_requests", model="m") not in sb
    assert a.registry is not b.registry


def _nvml_works() -> bool:
    """Independently of the module: can NVML be opened and does it see a device?"""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:
        return False
    try:
        return int(nvml.nvmlDeviceGetCount()) > 0
    finally:
        nvml.nvmlShutdown()


def test_gpu_gauges_exist_exactly_when_nvml_works() -> None:
    assert GPU_FAMILIES.isdisjoint(_families(Metrics(gpu=False)))
    m = Metrics()
    families = _families(m)
    if not _nvml_works():  # this machine: no pynvml, driver or device → absent, and nothing breaks
        assert not m.gpu
        assert GPU_FAMILIES.isdisjoint(families)
        return
    # a GPU machine with nvidia-ml-py: one sample per device and gauge, with sane values
    assert m.gpu
    assert families.keys() >= GPU_FAMILIES
    used = {s.labels["gpu"]: s.value for s in families["twinpipe_gpu_memory_used_bytes"]}
    total = {s.labels["gpu"]: s.value for s in families["twinpipe_gpu_memory_total_bytes"]}
    assert used and used.keys() == total.keys()
    assert all(0 < used[g] <= total[g] for g in used)
    assert all(0.0 <= s.value <= 1.0 for s in families["twinpipe_gpu_utilization_ratio"])
    assert all(s.labels["uuid"].startswith(("GPU-", "MIG-")) for s in families["twinpipe_gpu_memory_total_bytes"])


def _fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


Fetched = tuple[int, str, bytes]


def test_metrics_endpoint_over_loopback_http() -> None:
    m = Metrics(gpu=False)
    m.request("resnet", "1", ok=True, request_s=0.003, queue_s=0.001, compute_s=0.002)
    m.request("resnet", "1", ok=False, reason="UNAVAILABLE", request_s=0.001)
    bad_heads = {
        "not a request line": b"hello there\r\n\r\n",
        "header without a colon": b"GET /metrics HTTP/1.1\r\nHost\r\n\r\n",
        "line over the limit": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        "not HTTP/1": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    }

    async def scenario() -> tuple[list[Fetched], dict[str, Fetched], dict[str, bytes]]:
        loop = asyncio.get_running_loop()
        server = await m.serve("127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.port}"
        try:
            scrapes = await asyncio.gather(
                *(loop.run_in_executor(None, _fetch, f"{base}/metrics") for _ in range(4)),
                loop.run_in_executor(None, _fetch, f"{base}/metrics?name[]=x"),
            )
            other = {
                "HEAD": await loop.run_in_executor(None, _fetch, f"{base}/metrics", "HEAD"),
                "404": await loop.run_in_executor(None, _fetch, f"{base}/nope"),
                "POST": await loop.run_in_executor(None, _fetch, f"{base}/metrics", "POST"),
            }
            raw = {k: await loop.run_in_executor(None, _raw, server.port, v) for k, v in bad_heads.items()}
            raw["empty"] = await loop.run_in_executor(None, _raw, server.port, b"")
        finally:
            await server.close()
        return list(scrapes), other, raw

    scrapes, other, raw = asyncio.run(scenario())
    for status, ctype, body in scrapes:
        assert (status, ctype) == (200, CONTENT_TYPE)
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["twinpipe_request_success"].samples[0].value == 1
        failure = [s for s in families["twinpipe_request_failure"].samples if s.name.endswith("_total")]
        assert [(s.labels["reason"], s.value) for s in failure] == [("UNAVAILABLE", 1.0)]
    assert other["HEAD"] == (200, CONTENT_TYPE, b"")
    assert other["404"][0] == 404
    assert other["POST"][0] == 405
    for what in bad_heads:
        assert raw[what].startswith(b"HTTP/1.1 400 Bad Request\r\n"), what
        assert b"\r\nConnection: close\r\n" in raw[what]
    assert raw["empty"] == b""  # connected and closed: no answer, no error


def test_server_port_is_released_on_close() -> None:
    async def scenario() -> int:
        server = await Metrics(gpu=False).serve("127.0.0.1", 0)
        # an idle client that never sends a request must not hold close() up
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0)
        await asyncio.wait_for(server.close(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        return server.port

    port = asyncio.run(scenario())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
