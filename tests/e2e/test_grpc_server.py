"""``twinpipe serve`` end to end, driven by ``tritonclient.grpc`` (sync, aio and streaming): every
RPC, every datatype, the error statuses, load/unload, statistics, metrics, health, and SIGTERM
with requests in flight."""

from __future__ import annotations

import asyncio
import os
import queue
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from twinpipe.ops import classify, image
from twinpipe.pipelines import asset_path
from twinpipe.runtime._proto import kserve_pb2

from ._server import (
    DATATYPES,
    Server,
    assert_sigterm_lets_it_finish,
    build_repository,
    queue_full_then_deadline,
    small_cnn,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(build_repository(tmp_path_factory.mktemp("repo")), "--max-message-mb", "4")
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(server.grpc)
    yield c
    c.close()


def _input(name: str, arr: np.ndarray, datatype: str) -> tg.InferInput:
    i = tg.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def _status(e: InferenceServerException) -> str:
    return str(e.status()).replace("StatusCode.", "")


def test_health_metadata_config_and_index(client: tg.InferenceServerClient, server: Server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cnn") and client.is_model_ready("classify") and not client.is_model_ready("ghost")
    meta = client.get_server_metadata()
    assert meta.name == "twinpipe" and "model_repository" in meta.extensions
    m = client.get_model_metadata("cnn")
    assert (m.platform, m.versions, [(t.name, t.datatype, list(t.shape)) for t in m.inputs]) == (
        "pytorch_libtorch", ["1"], [("pixels", "FP32", [-1, 3, 32, 32])])
    cfg = client.get_model_config("cnn").config
    assert cfg.max_batch_size == 16 and list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cfg.instance_group[0].count == 2 and list(cfg.input[0].dims) == [3, 32, 32]
    pipe = client.get_model_config("classify").config
    assert pipe.platform == "ensemble" and [s.model_name for s in pipe.ensemble_scheduling.step] == ["cnn"]
    assert client.get_model_config("acc").config.sequence_batching.max_sequence_idle_microseconds == 1_000_000
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index["cnn"] == "READY" and index["classify"] == "READY" and len(index) == len(DATATYPES) + 5
    # the standard health service, by its wire path
    with grpc.insecure_channel(server.grpc) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=kserve_pb2.HealthCheckRequest.SerializeToString,
                                    response_deserializer=kserve_pb2.HealthCheckResponse.FromString)
        assert check(kserve_pb2.HealthCheckRequest(service="")).status == kserve_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            check(kserve_pb2.HealthCheckRequest(service="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips(client: tg.InferenceServerClient, datatype: str) -> None:
    rng = _rng()
    shape = (int(rng.integers(1, 5)), int(rng.integers(0, 7)))
    if datatype == "BYTES":
        arr = np.array([bytes(rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8)) for _ in range(int(np.prod(shape)))],
                       dtype=object).reshape(shape)
    elif datatype == "BOOL":
        arr = rng.random(shape) < 0.5
    elif datatype in ("FP16", "FP32", "FP64"):
        arr = (rng.standard_normal(shape) * 100).astype({"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype])
    elif datatype == "BF16":
        arr = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).bfloat16().view(torch.uint16).numpy()
    else:
        dt = np.dtype(datatype.lower())
        info = np.iinfo(dt)
        arr = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if datatype == "BF16":  # tritonclient sends BF16 from float32 arrays by truncation; send the bits raw
        inp = tg.InferInput("x", list(shape), "BF16")
        inp._raw_content = arr.astype("<u2").tobytes()
    else:
        inp = _input("x", arr, datatype)
    out = client.infer(f"echo_{datatype.lower()}", [inp]).get_output("y")
    assert out.datatype == datatype and list(out.shape) == list(shape)
    got = client.infer(f"echo_{datatype.lower()}", [inp]).as_numpy("y")
    if datatype == "BF16":
        got = np.frombuffer(client.infer("echo_bf16", [inp]).get_response().raw_output_contents[0], "<u2").reshape(shape)
    np.testing.assert_array_equal(got, arr)


def test_a_real_cnn_and_a_jpeg_pipeline_answer_like_torch(client: tg.InferenceServerClient) -> None:
    rng = _rng()
    x = rng.standard_normal((5, 3, 32, 32)).astype(np.float32)
    got = client.infer("cnn", [_input("pixels", x, "FP32")]).as_numpy("logits")
    with torch.no_grad():
        want = small_cnn()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    photos = [asset_path(n).read_bytes() for n in ("coffee.jpg", "chelsea.jpg")]
    res = client.infer("classify", [_input("image", np.array(photos, dtype=object), "BYTES")], outputs=[tg.InferRequestedOutput("classes")])
    assert [o.name for o in res.get_response().outputs] == ["classes"]  # only what was asked for
    for photo, classes in zip(photos, res.as_numpy("classes")):
        pixels = image.resize_crop_normalize(image.decode(photo), size=36, crop=32)
        with torch.no_grad():
            logits = small_cnn()(torch.from_numpy(np.ascontiguousarray(pixels))[None]).numpy()
        np.testing.assert_array_equal(classes, classify.topk(classify.softmax(logits[0]), k=3).indices)


def test_the_aio_client_runs_concurrent_requests_through_the_batcher(server: Server) -> None:
    rng = _rng()
    xs = [rng.standard_normal((int(rng.integers(1, 4)), 3, 32, 32)).astype(np.float32) for _ in range(24)]

    async def main() -> list[np.ndarray]:
        c = tga.InferenceServerClient(server.grpc)
        try:
            results = await asyncio.gather(*(c.infer("cnn", [_input("pixels", x, "FP32")]) for x in xs))
            return [r.as_numpy("logits") for r in results]
        finally:
            await c.close()

    with torch.no_grad():
        net = small_cnn()
        for x, got in zip(xs, asyncio.run(main())):
            np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    stats = tg.InferenceServerClient(server.grpc).get_inference_statistics("cnn").model_stats[0]
    assert stats.execution_count < stats.inference_count  # requests were batched together


def test_streaming_answers_each_request_and_reports_errors_in_band(client: tg.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for k in range(6):
            client.async_stream_infer("boom", [_input("x", np.full((1, 1), -1 if k == 3 else k, np.float32), "FP32")], request_id=f"r{k}")
        got = [answers.get(timeout=30) for _ in range(6)]
    finally:
        client.stop_stream()
    ok = {r.get_response().id: float(r.as_numpy("y")[0, 0]) for r, e in got if e is None}
    errors = [e for _, e in got if e is not None]
    assert ok == {f"r{k}": float(k) for k in (0, 1, 2, 4, 5)}
    assert len(errors) == 1 and "ValueError: negative input" in str(errors[0])
    final = [r.get_response().parameters["triton_final_response"].bool_param for r, e in got if e is None]
    assert all(final)


def test_errors_map_to_their_grpc_status(client: tg.InferenceServerClient, server: Server) -> None:
    x = np.ones((1, 3, 32, 32), np.float32)
    cases = [
        (lambda: client.infer("ghost", [_input("pixels", x, "FP32")]), "NOT_FOUND", "unknown model 'ghost'"),
        (lambda: client.infer("cnn", [_input("pixels", x, "FP32")], model_version="9"), "NOT_FOUND", "has no version 9"),
        (lambda: client.infer("cnn", [_input("pixel", x, "FP32")]), "INVALID_ARGUMENT", "unknown input 'pixel'; did you mean 'pixels'?"),
        (lambda: client.infer("cnn", [_input("pixels", x.astype(np.float64), "FP64")]), "INVALID_ARGUMENT", "input 'pixels' has datatype FP32"),
        (lambda: client.infer("cnn", [_input("pixels", x[:, :, :8], "FP32")]), "INVALID_ARGUMENT", "expects shape [-1, 3, 32, 32]"),
        (lambda: client.infer("boom", [_input("x", -np.ones((1, 1), np.float32), "FP32")]), "INTERNAL", "ValueError: negative input"),
        (lambda: client.infer("classify", [_input("image", np.array([b"not an image"], dtype=object), "BYTES")]), "INTERNAL", "step 'decode'"),
        (lambda: client.infer("acc", [_input("x", np.ones((1, 2), np.float32), "FP32")], sequence_id=77), "INVALID_ARGUMENT", "sequence 77 is unknown"),
    ]
    for call, status, text in cases:
        with pytest.raises(InferenceServerException) as info:
            call()
        assert _status(info.value) == status and text in str(info.value), str(info.value)
    # raw contents shorter than the shape says: refused before anything is allocated
    request = service_pb2.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 3, 32, 32])
    request.raw_input_contents.append(x.tobytes()[:-4])
    with grpc.insecure_channel(server.grpc) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        with pytest.raises(grpc.RpcError) as rpc:
            infer(request)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected 12288 bytes of raw contents, given 12284" in str(rpc.value.details())
    assert client.is_server_live()  # and it keeps serving


def test_queue_full_and_deadline_statuses(server: Server) -> None:
    def infer(ms: int, timeout_us: int | None) -> Any:
        c = tg.InferenceServerClient(server.grpc)
        try:
            return c.infer("slow", [_input("x", np.full((1, 1), ms, np.int32), "INT32")], timeout=timeout_us)
        except InferenceServerException as e:
            return e

    full, late, ran = queue_full_then_deadline(infer)
    assert isinstance(full, InferenceServerException) and _status(full) == "UNAVAILABLE"
    assert "queue full" in str(full)
    assert all(not isinstance(r, Exception) for r in ran)
    assert isinstance(late, InferenceServerException) and _status(late) == "DEADLINE_EXCEEDED"


def test_sequences_keep_their_state_between_requests(client: tg.InferenceServerClient) -> None:
    x = np.full((1, 2), 2, np.float32)
    got = [float(client.infer("acc", [_input("x", x, "FP32")], sequence_id="call-1", sequence_start=k == 0,
                              sequence_end=k == 3).as_numpy("y")[0, 0]) for k in range(4)]
    assert got == [3, 5, 7, 9]


def test_load_and_unload_through_the_client(client: tg.InferenceServerClient) -> None:
    client.unload_model("echo_int8")
    assert not client.is_model_ready("echo_int8")
    with pytest.raises(InferenceServerException) as info:
        client.infer("echo_int8", [_input("x", np.ones((1, 2), np.int8), "INT8")])
    assert _status(info.value) == "NOT_FOUND"
    client.load_model("echo_int8")
    assert client.is_model_ready("echo_int8")
    for bad in ("../echo_int8", "/tmp", "a/b"):
        with pytest.raises(InferenceServerException) as info:
            client.load_model(bad)
        assert _status(info.value) == "INVALID_ARGUMENT" and "is not a model name" in str(info.value)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("echo_int8", config='{"backend": "python"}')
    assert "twinpipe loads models from its repository only" in str(info.value)


def test_statistics_and_metrics_count_the_requests(client: tg.InferenceServerClient, server: Server) -> None:
    before = client.get_inference_statistics("echo_fp32").model_stats[0].inference_stats.success.count
    for _ in range(3):
        client.infer("echo_fp32", [_input("x", np.ones((2, 3), np.float32), "FP32")])
    stats = client.get_inference_statistics("echo_fp32").model_stats[0]
    assert stats.inference_stats.success.count == before + 3 and stats.inference_stats.success.ns > 0
    with pytest.raises(InferenceServerException):
        client.infer("boom", [_input("x", -np.ones((1, 1), np.float32), "FP32")])
    # a batched model and a pipeline of its own (under xdist the tests that call them may run elsewhere)
    client.infer("cnn", [_input("pixels", np.ones((1, 3, 32, 32), np.float32), "FP32")])
    client.infer("classify", [_input("image", np.array([asset_path("coffee.jpg").read_bytes()], dtype=object), "BYTES")])
    text = urllib.request.urlopen(server.metrics, timeout=10).read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("twinpipe_request_success_total", (("model", "echo_fp32"), ("version", "1")))] >= 3
    assert samples[("twinpipe_request_failure_total", (("model", "boom"), ("reason", "INTERNAL"), ("version", "1")))] >= 1
    assert any(name == "twinpipe_batch_size_count" and dict(labels).get("model") == "cnn" for name, labels in samples)
    assert any(name == "twinpipe_step_duration_seconds_count" and dict(labels).get("step") == "decode" for name, labels in samples)


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    s = Server(build_repository(tmp_path), "--grace", "20")
    client = tg.InferenceServerClient(s.grpc)
    assert_sigterm_lets_it_finish(s, lambda: client.infer("slow", [_input("x", np.full((1, 1), 1500, np.int32), "INT32")]).as_numpy("y"),
                                  np.array([[1501]], np.int32))


def test_a_jpeg_from_disk_survives_the_wire_bit_for_bit(client: tg.InferenceServerClient, tmp_path: Path) -> None:
    rng = _rng()
    img = rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img)
    assert ok
    data = jpeg.tobytes()
    echoed = client.infer("echo_bytes", [_input("x", np.array([[data]], dtype=object), "BYTES")]).as_numpy("y")
    assert echoed[0, 0] == data


def test_a_message_over_the_limit_is_refused_and_the_server_goes_on(client: tg.InferenceServerClient) -> None:
    big = np.ones((1, 5 << 18), np.float32)  # 5 MiB against --max-message-mb 4
    with pytest.raises(InferenceServerException) as info:
        client.infer("echo_fp32", [_input("x", big, "FP32")])
    assert _status(info.value) == "RESOURCE_EXHAUSTED"
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(client.infer("echo_fp32", [_input("x", small, "FP32")]).as_numpy("y"), small)
