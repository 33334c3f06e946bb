"""Decoupled (streaming) models through ``twinpipe serve`` and tritonclient's stream APIs: each
response as the model yields it, Triton's final-response flags, the empty final response, errors
in band, and a client that leaves stopping the model."""

from __future__ import annotations

import asyncio
import os
import queue
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
from tritonclient.utils import InferenceServerException

from ._server import COUNT_MODEL, Server, write_python_models

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# yields every 5 ms until closed; its finally leaves a file saying how far it got
TICKER = """\
import time
from pathlib import Path
import numpy as np
def build():
    def run(x):
        k = 0
        try:
            while True:
                k += 1
                time.sleep(0.005)
                yield {"t": np.array([k], np.int32)}
        finally:
            (Path(__file__).parent / f"closed-{int(x.reshape(-1)[0])}").write_text(str(k))
    return run
"""
MODELS = {
    "count": COUNT_MODEL,
    "ticker": ("decoupled: true\ninstances: {count: 2}\ninputs: {x: {datatype: INT32, shape: [1]}}\n"
               "outputs: {t: {datatype: INT32, shape: [1]}}\n", TICKER),
    "plain": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n",
              "def build():\n    return lambda x: x + 1\n"),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streams")
    write_python_models(root, MODELS)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    s = Server(repo)
    yield s
    s.stop()


def _input(name: str, arr: np.ndarray, datatype: str) -> tg.InferInput:
    i = tg.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def _final(result: Any) -> bool:
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def test_responses_stream_with_triton_flags(server: Server) -> None:
    client = tg.InferenceServerClient(server.grpc)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    n = int.from_bytes(os.urandom(1), "little") % 7 + 2
    try:
        client.async_stream_infer("count", [_input("n", np.array([n], np.int32), "INT32")], request_id="a",
                                  enable_empty_final_response=True)
        got = [answers.get(timeout=30) for _ in range(n + 1)]
        client.async_stream_infer("count", [_input("n", np.array([2], np.int32), "INT32")], request_id="b")
        quiet = [answers.get(timeout=30) for _ in range(2)]
        x = np.random.default_rng(n).normal(size=(1, 2)).astype(np.float32)
        client.async_stream_infer("plain", [_input("x", x, "FP32")], request_id="c", enable_empty_final_response=True)
        once = answers.get(timeout=30)
        client.async_stream_infer("count", [_input("n", np.array([-4], np.int32), "INT32")], request_id="d")
        failing = [answers.get(timeout=30) for _ in range(3)]
        time.sleep(0.2)
        assert answers.empty()  # nothing more: no empty final response unless asked, one answer for "plain"
    finally:
        client.stop_stream()
    assert all(e is None for _, e in got + quiet)
    assert [int(r.as_numpy("k")[0]) for r, _ in got[:-1]] == list(range(1, n + 1))
    assert [_final(r) for r, _ in got] == [False] * n + [True]  # then the empty final response
    last = got[-1][0].get_response()
    assert (last.id, last.model_name, len(last.outputs)) == ("a", "count", 0)
    # not asking for the empty final response: the last response itself carries the flag
    assert [int(r.as_numpy("k")[0]) for r, _ in quiet] == [1, 2] and [_final(r) for r, _ in quiet] == [False, True]
    result, error = once
    assert error is None and _final(result) and result.get_response().id == "c"
    np.testing.assert_array_equal(result.as_numpy("y"), x + 1)
    assert [int(r.as_numpy("k")[0]) for r, e in failing[:2]] == [1, 2] and failing[2][0] is None
    assert "model 'count' version 1: ValueError: cannot count below zero" in str(failing[2][1])
    cfg = client.get_model_config("count").config
    assert cfg.model_transaction_policy.decoupled and not client.get_model_config("plain").config.model_transaction_policy.decoupled
    with pytest.raises(InferenceServerException, match="is decoupled") as info:
        client.infer("count", [_input("n", np.array([3], np.int32), "INT32")])
    assert "INVALID_ARGUMENT" in str(info.value.status())
    client.close()


def test_the_aio_client_streams_and_leaving_stops_the_model(server: Server, repo: Path) -> None:
    async def main() -> list[int]:
        client = tga.InferenceServerClient(server.grpc)
        sent = asyncio.Event()

        async def requests() -> AsyncIterator[dict[str, Any]]:
            inp = tga.InferInput("x", [1], "INT32")
            inp.set_data_from_numpy(np.array([7], np.int32))
            yield {"model_name": "ticker", "inputs": [inp], "request_id": "t"}
            sent.set()
            await asyncio.sleep(3600)  # keep the request side open: the ticker never ends by itself

        ticks = []
        stream = client.stream_infer(requests())
        async for result, error in stream:
            assert error is None
            ticks.append(int(result.as_numpy("t")[0]))
            if len(ticks) == 5:
                break
        stream.cancel()  # type: ignore[attr-defined]  # the client leaves
        await client.close()
        return ticks

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    marker = repo / "ticker" / "1" / "closed-7"
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the model's generator was not closed when the client left"
    assert int(marker.read_text()) < 1000  # stopped soon after, not left ticking


def test_a_sync_client_that_cancels_stops_the_model(server: Server, repo: Path) -> None:
    client = tg.InferenceServerClient(server.grpc)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("ticker", [_input("x", np.array([8], np.int32), "INT32")])
    first = [answers.get(timeout=30) for _ in range(3)]
    client.stop_stream(cancel_requests=True)
    client.close()
    assert [int(r.as_numpy("t")[0]) for r, _ in first] == [1, 2, 3]
    marker = repo / "ticker" / "1" / "closed-8"
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the model's generator was not closed when the client cancelled"
