"""examples/generate end to end: a streaming pipeline (tokenize → generate → detokenize) served by
``twinpipe serve`` and read through tritonclient's stream API — one response per character, the
text the model's counts allow, reproducible per seed, and a client that leaves stops the
generation."""

from __future__ import annotations

import http.client
import json
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg

from ._server import Server, load_example

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "generate"
CORPUS = (EXAMPLE / "repository" / "corpus.txt").read_text()
generate = load_example(EXAMPLE / "client.py", "generate_client").generate  # the example's own client


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(EXAMPLE / "repository")
    yield s
    s.stop()


def _prompt(rng: np.random.Generator) -> str:
    start = int(rng.integers(0, len(CORPUS) - 12))
    return CORPUS[start:start + int(rng.integers(2, 10))]


def test_the_stream_holds_one_character_per_response_that_the_counts_allow(server: Server) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    prompt, n = _prompt(rng), int(rng.integers(20, 60))
    client = tg.InferenceServerClient(server.grpc)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        text = tg.InferInput("prompt", [1], "BYTES")
        text.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
        limit = tg.InferInput("max_tokens", [1], "INT32")
        limit.set_data_from_numpy(np.array([n], np.int32))
        client.async_stream_infer("generate", [text, limit], request_id="g1", parameters={"seed": seed})
        got = [answers.get(timeout=60) for _ in range(n)]
        time.sleep(0.2)
        assert answers.empty()  # no more than max_tokens responses (and no final one unless asked)
    finally:
        client.stop_stream()
    assert all(e is None for _, e in got)
    assert [int(r.as_numpy("position")[0]) for r, _ in got] == list(range(n))
    assert {r.get_response().id for r, _ in got} == {"g1"}
    finals = [r.get_response().parameters["triton_final_response"].bool_param for r, _ in got]
    assert finals == [False] * (n - 1) + [True]  # no empty final response asked for: the last one is flagged
    tokens = [r.as_numpy("token")[0].decode() for r, _ in got]
    assert all(len(t) == 1 for t in tokens)
    full = prompt + "".join(tokens)
    for k in range(len(prompt), len(full)):  # each character follows its context somewhere in the corpus
        context, nxt = full[k - 2:k], full[k]
        if context in CORPUS:
            assert context + nxt in CORPUS, f"seed {seed}: {context + nxt!r} never occurs in the corpus"
        else:
            assert context[-1] + nxt in CORPUS, f"seed {seed}: {context[-1] + nxt!r} never occurs in the corpus"
    config = client.get_model_config("generate").config
    assert config.platform == "ensemble" and config.model_transaction_policy.decoupled  # clients see a streaming pipeline
    # the same prompt and seed give the same text, through the example's own client
    assert "".join(generate(client, prompt, n, seed)) == "".join(tokens)
    client.close()


def _model_calls(client: tg.InferenceServerClient) -> int:
    return int(client.get_inference_statistics("charlm").model_stats[0].inference_count)


def _assert_the_model_calls_stop(client: tg.InferenceServerClient, before: int) -> None:
    """The generator stops asking the model once it sees its client gone (then closes ``client``)."""
    deadline = time.monotonic() + 10
    settled = _model_calls(client)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _model_calls(client)
        if now == settled:
            break
        settled = now
    assert _model_calls(client) == settled, "the generation kept calling the model after the client left"
    assert settled - before < 100_000
    client.close()


def test_a_client_that_leaves_stops_the_generation(server: Server) -> None:
    client = tg.InferenceServerClient(server.grpc)

    before = _model_calls(client)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    text = tg.InferInput("prompt", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"the "], dtype=object))
    limit = tg.InferInput("max_tokens", [1], "INT32")
    limit.set_data_from_numpy(np.array([1_000_000], np.int32))
    client.async_stream_infer("generate", [text, limit])
    first = [answers.get(timeout=60) for _ in range(5)]
    assert all(e is None for _, e in first)
    client.stop_stream(cancel_requests=True)
    _assert_the_model_calls_stop(client, before)


def test_the_example_client_prints_the_text(server: Server) -> None:
    run = subprocess.run([sys.executable, str(EXAMPLE / "client.py"), "the ", "--max-tokens", "30", "--seed", "5", "--url", server.grpc],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("the ") and run.stdout.endswith("\n")
    assert len(run.stdout) - 1 == 4 + 30  # the prompt, 30 generated characters (a newline among them too), the closing newline


def _sse(server: Server, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """POST …/generate_stream; each server-sent event's JSON as it arrives."""
    host, port = server.http.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", "/v2/models/generate/generate_stream", body=json.dumps(body).encode())
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        while line := r.readline():
            if line.startswith(b"data: "):
                yield json.loads(line[len(b"data: "):])
    finally:
        conn.close()


def test_the_streaming_pipeline_answers_generate_stream_as_server_sent_events(server: Server) -> None:
    """Over HTTP, the same prompt and seed give the same characters as over gRPC, one event each."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    prompt, n = _prompt(rng), int(rng.integers(10, 30))
    events = list(_sse(server, {"prompt": prompt, "max_tokens": n, "parameters": {"seed": seed}}))
    assert [e["position"] for e in events] == list(range(n))
    assert all(e["model_name"] == "generate" and len(e["token"]) == 1 for e in events)
    client = tg.InferenceServerClient(server.grpc)
    assert "".join(e["token"] for e in events) == "".join(generate(client, prompt, n, seed)), f"seed {seed}"
    client.close()


def test_a_client_that_leaves_the_event_stream_stops_the_generation(server: Server) -> None:
    client = tg.InferenceServerClient(server.grpc)

    before = _model_calls(client)
    stream = _sse(server, {"prompt": "the ", "max_tokens": 1_000_000})
    first = [next(stream) for _ in range(5)]
    assert [e["position"] for e in first] == list(range(5))
    stream.close()  # closes the connection
    _assert_the_model_calls_stop(client, before)
