"""Streams through the Engine: a decoupled (streaming) model's responses as they come, one
response for every other model, and the mistakes a streaming model can make, each named."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e._server import write_python_models
from twinpipe.runtime._engine import Engine, InferResponse
from twinpipe.runtime._errors import InternalError, InvalidArgumentError

COUNT = """\
import numpy as np
def build():
    def run(n):
        n = int(n.reshape(-1)[0])
        for k in range(abs(n)):
            if n < 0 and k == 2:
                raise ValueError("cannot count below zero")
            yield {"k": np.array([k + 1], np.int32), "square": np.array([(k + 1) ** 2], np.int64)}
    return run
"""
MODELS = {
    "count": ("decoupled: true\ninputs: {n: {datatype: INT32, shape: [1]}}\n"
              "outputs: {k: {datatype: INT32, shape: [1]}, square: {datatype: INT64, shape: [1]}}\n", COUNT),
    "once": ("decoupled: true\ninputs: {n: {datatype: INT32, shape: [1]}}\noutputs: {k: {datatype: INT32, shape: [1]}}\n",
             "def build():\n    return lambda n: {'k': n}\n"),  # decoupled, yet answers with a dict
    "sneaky": ("inputs: {n: {datatype: INT32, shape: [1]}}\noutputs: {k: {datatype: INT32, shape: [1]}}\n",
               "def build():\n    def run(n):\n        yield {'k': n}\n    return run\n"),  # yields, not decoupled
    "plain": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n",
              "def build():\n    return lambda x: x + 1\n"),
}
USES_STREAM = """\
name: uses_stream
inputs: {n: {datatype: INT32, shape: [-1]}}
outputs: {k: {datatype: INT32, shape: [-1], from: c.k}}
steps:
  c: {model: count, inputs: {n: n}}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    write_python_models(tmp_path, MODELS)
    (tmp_path / "uses_stream.yaml").write_text(USES_STREAM)
    e = Engine(tmp_path)
    yield e
    e.close()


def _n(n: int) -> dict[str, np.ndarray]:
    return {"n": np.array([n], np.int32)}


def _collect(engine: Engine, name: str, inputs: dict[str, np.ndarray], **kw: Any) -> list[InferResponse]:
    async def main() -> list[InferResponse]:
        return [r async for r in engine.stream(name, inputs, **kw)]

    return asyncio.run(main())


def test_a_decoupled_model_streams_one_response_per_item_it_yields(engine: Engine) -> None:
    n = int.from_bytes(os.urandom(1), "little") % 9 + 3
    got = _collect(engine, "count", _n(n), request_id="r7", outputs=["square"])
    assert [int(r.outputs["square"][0]) for r in got] == [(k + 1) ** 2 for k in range(n)]
    assert {r.id for r in got} == {"r7"} and all(list(r.outputs) == ["square"] and r.datatypes == {"square": "INT64"} for r in got)
    assert _collect(engine, "count", _n(0)) == []  # a stream may hold no response at all
    stats = engine.statistics("count")[0]
    assert stats["inference_stats"]["success"]["count"] == 2 and stats["inference_count"] == 2
    assert engine.get("count").config()["model_transaction_policy"] == {"decoupled": True}
    assert engine.get("plain").config()["model_transaction_policy"] == {"decoupled": False}


def test_any_other_model_answers_a_stream_once(engine: Engine) -> None:
    x = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).normal(size=(3, 2)).astype(np.float32)
    (only,) = _collect(engine, "plain", {"x": x})
    np.testing.assert_array_equal(only.outputs["y"], x + 1)


def test_streaming_mistakes_are_named(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentError, match=r"model 'count' version 1 is decoupled .*call it through a stream"):
        engine.infer("count", _n(3))
    with pytest.raises(InvalidArgumentError, match=r"is decoupled"):
        engine.infer("count", _n(3), parameters={"priority": 1})

    async def partial() -> tuple[list[int], Exception | None]:
        seen = []
        try:
            async for r in engine.stream("count", _n(-5)):
                seen.append(int(r.outputs["k"][0]))
        except InternalError as e:
            return seen, e
        return seen, None

    seen, error = asyncio.run(partial())
    assert seen == [1, 2]  # what came before the error was delivered
    assert str(error) == "model 'count' version 1: ValueError: cannot count below zero"
    assert engine.statistics("count")[0]["inference_stats"]["fail"]["count"] == 3  # two refused, one failed
    with pytest.raises(InternalError, match=r"model 'once' is decoupled: its call must return an iterable of responses .*returned dict"):
        _collect(engine, "once", _n(1))
    with pytest.raises(InternalError, match=r"model 'sneaky' returned generator; .* must say decoupled: true"):
        engine.infer("sneaky", _n(1))
    with pytest.raises(InvalidArgumentError, match=r"not a sequence model"):
        _collect(engine, "count", _n(2), parameters={"sequence_id": 4})
    row = next(r for r in engine.index() if r["name"] == "uses_stream")
    assert row["state"] == "UNAVAILABLE"
    assert "uses_stream.yaml:5" in row["reason"] and "step 'c': model 'count' is decoupled" in row["reason"]
    assert [int(r.outputs["k"][0]) for r in _collect(engine, "count", _n(2))] == [1, 2]  # still serving


def test_leaving_a_stream_stops_the_model(engine: Engine) -> None:
    async def main() -> int:
        got = 0
        async for _ in engine.stream("count", _n(10_000)):
            got += 1
            if got == 3:
                break
        await asyncio.sleep(0.05)
        return got

    assert asyncio.run(main()) == 3
    # the one instance is free again: a stream that had kept running would block this one
    assert len(_collect(engine, "count", _n(4))) == 4
    assert engine.inflight == 0
