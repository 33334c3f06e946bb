"""``twinpipe serve`` over HTTP/REST end to end: ``tritonclient.http`` (sync and aio, binary and
JSON tensors, compression), raw requests from the standard library (the README's curl call, a
hand-made binary body, malformed ones), the generate extension and its server-sent events, the
body limit, the error statuses, and SIGTERM with an HTTP request in flight."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from twinpipe.pipelines import asset_path

from ._server import (
    COUNT_MODEL,
    DATATYPES,
    Server,
    assert_sigterm_lets_it_finish,
    build_repository,
    find_perf_analyzer,
    queue_full_then_deadline,
    small_cnn,
    write_python_models,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")



def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = build_repository(tmp_path_factory.mktemp("repo"))
    write_python_models(repo, {"count": COUNT_MODEL})
    s = Server(repo, "--max-message-mb", "4")
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[th.InferenceServerClient]:
    c = th.InferenceServerClient(server.http)
    yield c
    c.close()


def _input(name: str, arr: np.ndarray, datatype: str, binary: bool = True) -> th.InferInput:
    i = th.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr, binary_data=binary)
    return i


def _call(server: Server, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request with the standard library: status, headers, body."""
    conn = http.client.HTTPConnection(*server.http.split(":"), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_health_metadata_config_index_and_statistics(client: th.InferenceServerClient, server: Server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cnn") and client.is_model_ready("classify") and not client.is_model_ready("ghost")
    meta = client.get_server_metadata()
    assert meta["name"] == "twinpipe" and {"binary_tensor_data", "model_repository", "generate"} <= set(meta["extensions"])
    m = client.get_model_metadata("cnn")
    assert (m["platform"], m["versions"], m["inputs"]) == ("pytorch_libtorch", ["1"],
                                                           [{"name": "pixels", "datatype": "FP32", "shape": [-1, 3, 32, 32]}])
    assert client.get_model_metadata("cnn", "1") == m
    cfg = client.get_model_config("cnn")
    assert cfg["max_batch_size"] == 16 and cfg["dynamic_batching"]["preferred_batch_size"] == [8, 16]
    assert cfg["input"][0]["dims"] == [3, 32, 32] and cfg["instance_group"][0]["count"] == 2
    assert client.get_model_config("classify")["ensemble_scheduling"]["step"][0]["model_name"] == "cnn"
    index = {row["name"]: row["state"] for row in client.get_model_repository_index()}
    assert index["cnn"] == "READY" and len(index) == len(DATATYPES) + 6
    stats = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in stats} == set(index)
    assert client.get_inference_statistics("cnn", "1")["model_stats"][0]["version"] == "1"
    status, _, body = _call(server, "GET", "/v2/health/ready")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize("mode", ["binary", "json"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_in_binary_and_in_json(client: th.InferenceServerClient, datatype: str, mode: str) -> None:
    rng = _rng()
    shape = (int(rng.integers(1, 5)), int(rng.integers(0, 7)))
    n = int(np.prod(shape))
    if datatype == "BYTES":  # JSON carries text; binary carries any bytes
        items = [("é" * int(rng.integers(0, 4)) + str(rng.integers(0, 999))).encode() if mode == "json"
                 else bytes(rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8)) for _ in range(n)]
        arr = np.array(items, dtype=object).reshape(shape)
    elif datatype == "BOOL":
        arr = rng.random(shape) < 0.5
    elif datatype in ("FP16", "FP32", "FP64"):
        arr = (rng.standard_normal(shape) * 100).astype({"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype])
    elif datatype == "BF16":
        arr = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).bfloat16().view(torch.uint16).numpy()
    else:
        info = np.iinfo(np.dtype(datatype.lower()))
        arr = rng.integers(info.min, info.max, shape, dtype=np.dtype(datatype.lower()), endpoint=True)
    binary = mode == "binary"
    if datatype == "BF16":  # tritonclient makes BF16 from float32 by truncation, and never in JSON: send the bits
        inp = th.InferInput("x", list(shape), "BF16")
        inp._raw_data = arr.astype("<u2").tobytes()
        inp._parameters["binary_data_size"] = len(inp._raw_data)
    else:
        inp = _input("x", arr, datatype, binary)
    res = client.infer(f"echo_{datatype.lower()}", [inp], outputs=[th.InferRequestedOutput("y", binary_data=binary)])
    out = res.get_output("y")
    assert out["datatype"] == datatype and out["shape"] == list(shape) and ("data" in out) == (not binary)
    got = res.as_numpy("y")
    if datatype == "BF16":  # as floats: the bfloat16 values exactly
        want = (arr.astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(np.asarray(got, np.float32).reshape(shape), want)
    elif datatype == "BYTES" and not binary:
        assert [s.encode() for s in got.reshape(-1)] == items
    else:
        np.testing.assert_array_equal(got.reshape(shape), arr)


def test_a_jpeg_pipeline_answers_over_http_as_over_grpc(client: th.InferenceServerClient, server: Server) -> None:
    photos = np.array([asset_path(n).read_bytes() for n in ("coffee.jpg", "chelsea.jpg")], dtype=object)
    over_http = client.infer("classify", [_input("image", photos, "BYTES")])
    g = tg.InferenceServerClient(server.grpc)
    img = tg.InferInput("image", [2], "BYTES")
    img.set_data_from_numpy(photos)
    over_grpc = g.infer("classify", [img])
    g.close()
    for name in ("scores", "classes"):
        np.testing.assert_array_equal(over_http.as_numpy(name), over_grpc.as_numpy(name))
    # only what was asked for, in JSON
    res = client.infer("classify", [_input("image", photos, "BYTES")], outputs=[th.InferRequestedOutput("classes", binary_data=False)])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["classes"]
    np.testing.assert_array_equal(res.as_numpy("classes"), over_grpc.as_numpy("classes"))


def test_the_aio_client_runs_concurrent_requests_through_the_batcher(server: Server) -> None:
    rng = _rng()
    xs = [rng.standard_normal((int(rng.integers(1, 4)), 3, 32, 32)).astype(np.float32) for _ in range(24)]

    async def main() -> list[np.ndarray]:
        c = tha.InferenceServerClient(server.http)
        try:
            assert await c.is_server_ready()
            results = await asyncio.gather(*(c.infer("cnn", [_input("pixels", x, "FP32", binary=k % 2 == 0)])
                                             for k, x in enumerate(xs)))
            return [r.as_numpy("logits") for r in results]
        finally:
            await c.close()

    with torch.no_grad():
        net = small_cnn()
        for x, got in zip(xs, asyncio.run(main())):
            np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_compressed_requests_and_responses(client: th.InferenceServerClient) -> None:
    x = _rng().standard_normal((3, 200)).astype(np.float32)
    for request, response in (("gzip", "deflate"), ("deflate", "gzip"), (None, "gzip")):
        res = client.infer("echo_fp32", [_input("x", x, "FP32")], request_compression_algorithm=request,
                           response_compression_algorithm=response)
        np.testing.assert_array_equal(res.as_numpy("y"), x)


def _status(e: InferenceServerException) -> int:
    return int(str(e.status()))


def test_errors_answer_with_their_http_status_and_the_server_goes_on(client: th.InferenceServerClient) -> None:
    x = np.ones((1, 3, 32, 32), np.float32)
    cases = [
        (lambda: client.infer("ghost", [_input("pixels", x, "FP32")]), 404, "unknown model 'ghost'"),
        (lambda: client.infer("cnn", [_input("pixels", x, "FP32")], model_version="9"), 404, "has no version 9"),
        (lambda: client.infer("cnn", [_input("pixel", x, "FP32")]), 400, "unknown input 'pixel'; did you mean 'pixels'?"),
        (lambda: client.infer("cnn", [_input("pixels", x.astype(np.float64), "FP64")]), 400, "input 'pixels' has datatype FP32"),
        (lambda: client.infer("cnn", [_input("pixels", x[:, :, :8], "FP32", binary=False)]), 400, "expects shape [-1, 3, 32, 32]"),
        (lambda: client.infer("boom", [_input("x", -np.ones((1, 1), np.float32), "FP32")]), 500, "ValueError: negative input"),
        (lambda: client.infer("classify", [_input("image", np.array([b"not an image"], dtype=object), "BYTES")]), 500, "step 'decode'"),
        (lambda: client.infer("acc", [_input("x", np.ones((1, 2), np.float32), "FP32")], sequence_id=77), 400, "sequence 77 is unknown"),
        (lambda: client.infer("count", [_input("n", np.ones(1, np.int32), "INT32")]), 400, "/v2/models/count/generate_stream"),
        (lambda: client.infer("echo_bytes", [_input("x", np.array([[b"\xff"]], dtype=object), "BYTES")],
                              outputs=[th.InferRequestedOutput("y", binary_data=False)]), 400, "is not UTF-8 text"),
    ]
    for call, status, text in cases:
        with pytest.raises(InferenceServerException) as info:
            call()
        assert _status(info.value) == status and text in str(info.value), str(info.value)
    assert client.is_server_live()


def test_queue_full_is_503_and_a_passed_deadline_504(server: Server) -> None:
    def infer(ms: int, timeout_us: int | None) -> Any:
        c = th.InferenceServerClient(server.http, network_timeout=60)
        try:
            return c.infer("slow", [_input("x", np.full((1, 1), ms, np.int32), "INT32")], timeout=timeout_us)
        except InferenceServerException as e:
            return e

    full, late, ran = queue_full_then_deadline(infer)
    assert isinstance(full, InferenceServerException) and _status(full) == 503 and "queue full" in str(full)
    assert all(not isinstance(r, Exception) for r in ran)
    assert isinstance(late, InferenceServerException) and _status(late) == 504, late


def test_raw_json_requests_get_v2_json_replies(server: Server) -> None:
    """What curl sends: a JSON body, no client library."""
    x = _rng().integers(-50, 50, (2, 3)).astype(np.int32)
    body = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": x.tolist()}]}
    status, headers, reply = _call(server, "POST", "/v2/models/echo_int32/infer", json.dumps(body).encode(),
                                   {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(reply) == {"model_name": "echo_int32", "model_version": "1", "id": "r1",
                                 "outputs": [{"name": "y", "datatype": "INT32", "shape": [2, 3], "data": x.reshape(-1).tolist()}]}
    # the same through urllib, by version
    req = urllib.request.Request(f"http://{server.http}/v2/models/echo_int32/versions/1/infer", data=json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        assert json.loads(r.read())["outputs"][0]["data"] == x.reshape(-1).tolist()
    # BYTES as text, a custom parameter accepted
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["héllo", "wörld"]}], "parameters": {"note": "hi"}}
    status, _, reply = _call(server, "POST", "/v2/models/echo_bytes/infer", json.dumps(body).encode())
    assert status == 200 and json.loads(reply)["outputs"][0]["data"] == ["héllo", "wörld"]


def test_a_hand_made_binary_request_gets_a_binary_reply(server: Server) -> None:
    x = _rng().standard_normal((2, 5)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, 5], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    status, headers, reply = _call(server, "POST", "/v2/models/echo_fp32/infer", head + x.tobytes(),
                                   {"Inference-Header-Content-Length": str(len(head))})
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    n = int(headers["Inference-Header-Content-Length"])
    meta = json.loads(reply[:n])
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 5], "parameters": {"binary_data_size": x.nbytes}}]
    np.testing.assert_array_equal(np.frombuffer(reply[n:], "<f4").reshape(2, 5), x)
    # a body shorter than its inputs say
    status, _, reply = _call(server, "POST", "/v2/models/echo_fp32/infer", head + x.tobytes()[:-4],
                             {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400 and "binary_data_size is 40, but only 36 bytes of binary data remain" in json.loads(reply)["error"]


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("POST", "/v2/models/echo_int32/infer", b'{"inputs": [', 400, "the request body is not valid JSON: Expecting value at line 1 column 13"),
    ("POST", "/v2/models/echo_int32/infer", b'{"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2.5]}]}',
     400, "input 'x' (INT32 [2]): data takes integers; element 1 is 2.5"),
    ("POST", "/v2/models/echo_int32/infer", b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
     400, "input 'x' has datatype INT32 (int32); given FP32 (float32)"),
    ("POST", "/v2/models/ghost/infer", b"{}", 404, "unknown model 'ghost'"),
    ("GET", "/v2/models/echo_int32/infer", None, 405, "takes POST, not GET"),
    ("POST", "/v2/health/live", b"", 405, "takes GET, not POST"),
    ("GET", "/v2/nothing", None, 404, "no endpoint GET /v2/nothing"),
    ("GET", "/v2/models", None, 404, "list the models with POST /v2/repository/index"),
    ("GET", "/v2/models/cnn/trace", None, 404, "a model's endpoints are"),
    ("POST", "/v2/systemsharedmemory/region/r/register", b"{}", 400, "shared memory is not supported"),
    ("POST", "/v2/repository/index", b'{"ready": 1}', 400, "'ready' must be a boolean"),
])
def test_malformed_requests_name_what_was_wrong(server: Server, method: str, path: str, body: bytes | None, status: int,
                                                text: str) -> None:
    got, headers, reply = _call(server, method, path, body)
    assert got == status and headers["Content-Type"].startswith("application/json")
    assert text in json.loads(reply)["error"], reply
    if status == 405:
        assert headers["Allow"] in ("GET", "POST")


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: Server) -> None:
    """--max-message-mb 4: a 5 MiB Content-Length is answered 413 at once, with no byte of the body
    sent; a chunked body is cut off at the limit; the server goes on."""
    host, port = server.http.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v2/models/echo_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880\r\n\r\n")
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "over the limit of 4194304" in reply
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (b"x" * (1 << 20) for _ in range(6))
    conn.request("POST", "/v2/models/echo_fp32/infer", body=chunks, encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 413 and "over the limit" in json.loads(r.read())["error"]
    conn.close()
    status, _, _ = _call(server, "GET", "/v2/health/live")
    assert status == 200


def test_sequences_load_and_unload_over_http(client: th.InferenceServerClient) -> None:
    x = np.full((1, 2), 2, np.float32)
    got = [float(client.infer("acc", [_input("x", x, "FP32")], sequence_id=9, sequence_start=k == 0,
                              sequence_end=k == 3).as_numpy("y")[0, 0]) for k in range(4)]
    assert got == [3, 5, 7, 9]
    client.unload_model("echo_int16")
    assert not client.is_model_ready("echo_int16")
    with pytest.raises(InferenceServerException) as info:
        client.infer("echo_int16", [_input("x", np.ones((1, 2), np.int16), "INT16")])
    assert _status(info.value) == 404
    client.load_model("echo_int16")
    assert client.is_model_ready("echo_int16")
    with pytest.raises(InferenceServerException) as info:
        client.load_model("echo_int16", config='{"backend": "python"}')
    assert _status(info.value) == 400 and "twinpipe loads models from its repository only" in str(info.value)
    for bad in ("a b", ".hidden"):
        with pytest.raises(InferenceServerException) as info:
            client.load_model(bad)
        assert _status(info.value) == 400 and "is not a model name" in str(info.value)


def _events(server: Server, path: str, body: Any) -> tuple[int, str, list[Any]]:
    status, headers, reply = _call(server, "POST", path, json.dumps(body).encode())
    events = [json.loads(chunk[len("data: "):]) for chunk in reply.decode().split("\n\n") if chunk]
    return status, headers.get("Content-Type", ""), events


def test_generate_and_generate_stream(server: Server) -> None:
    status, kind, events = _events(server, "/v2/models/count/generate_stream", {"n": 4})
    assert status == 200 and kind == "text/event-stream; charset=utf-8"
    assert events == [{"model_name": "count", "model_version": "1", "k": k} for k in (1, 2, 3, 4)]
    # an error after two responses: two events, then the error, status already sent
    status, _, events = _events(server, "/v2/models/count/generate_stream", {"n": -5})
    assert status == 200 and [e.get("k") for e in events[:2]] == [1, 2]
    assert len(events) == 3 and "cannot count below zero" in events[2]["error"]
    # an error before the first response: an HTTP error
    status, _, reply = _call(server, "POST", "/v2/models/count/generate_stream", b'{"m": 1}')
    assert status == 400 and "'m' is not an input; the inputs are: n" in json.loads(reply)["error"]
    # a v2 inference request on generate_stream: v2 responses, in JSON
    status, _, events = _events(server, "/v2/models/count/generate_stream",
                                {"id": "s1", "inputs": [{"name": "n", "shape": [1], "datatype": "INT32", "data": [2]}]})
    assert [(e["id"], e["outputs"][0]["data"]) for e in events] == [("s1", [1]), ("s1", [2])]
    # generate: one answer, shaped by the declarations; a streaming model refuses it
    status, _, reply = _call(server, "POST", "/v2/models/echo_fp32/generate", b'{"x": [1.5, -2]}')
    assert status == 200 and json.loads(reply) == {"model_name": "echo_fp32", "model_version": "1", "y": [1.5, -2.0]}
    status, _, reply = _call(server, "POST", "/v2/models/count/generate", b'{"n": 2}')
    assert status == 400 and "generate_stream" in json.loads(reply)["error"]
    status, _, events = _events(server, "/v2/models/echo_int32/generate_stream", {"x": 7})
    assert status == 200 and events == [{"model_name": "echo_int32", "model_version": "1", "y": 7}]


def test_metrics_are_served_on_the_http_port_too(client: th.InferenceServerClient, server: Server) -> None:
    client.infer("echo_fp32", [_input("x", np.ones((1, 3), np.float32), "FP32")])
    status, headers, body = _call(server, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'twinpipe_request_success_total{model="echo_fp32",version="1"}' in body.decode()


def test_perf_analyzer_drives_the_http_frontend_in_binary_and_json(server: Server, tmp_path: Path) -> None:
    tool = find_perf_analyzer()
    if not tool.is_file():
        pytest.skip("perf_analyzer is not available here")
    for fmt in ("binary", "json"):
        out = tmp_path / f"{fmt}.csv"
        run = subprocess.run([str(tool), "-m", "echo_fp32", "-u", server.http, "-i", "http", "--shape", "x:16",
                              "--input-tensor-format", fmt, "--output-tensor-format", fmt, "--concurrency-range", "2:2",
                              "--measurement-interval", "500", "-s", "1000", "-f", str(out)],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        row = dict(zip(*(line.split(",") for line in out.read_text().splitlines()[:2])))
        assert float(row["Inferences/Second"]) > 0


def test_sigterm_lets_an_http_request_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    s = Server(build_repository(tmp_path), "--grace", "20", "--no-grpc")
    assert s.http and not s.grpc and not any("grpc=" in line for line in s.lines)
    client = th.InferenceServerClient(s.http, network_timeout=60)
    assert_sigterm_lets_it_finish(s, lambda: client.infer("slow", [_input("x", np.full((1, 1), 1500, np.int32), "INT32")]).as_numpy("y"),
                                  np.array([[1501]], np.int32))


def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_client_that_expects_100_continue_is_told_to_send_the_body_or_refused(server: Server) -> None:
    """curl sends ``Expect: 100-continue`` before a body over 1 KiB and waits for the answer: the
    server says continue, or (over the limit) refuses at once, before any of the body is sent."""
    x = _rng().integers(-9, 9, 300).tolist()
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 300], "datatype": "INT32", "data": x}]}).encode()
    host, port = server.http.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v2/models/echo_int32/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert _recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        reply = _recv_until(sock, b"}]}")
    assert reply.startswith(b"HTTP/1.1 200 OK") and json.loads(reply.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"] == x
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v2/models/echo_int32/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5242880\r\n\r\n")
        assert _recv_until(sock, b"}").startswith(b"HTTP/1.1 413")
