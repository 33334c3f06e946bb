"""Python steps inside the Engine (business logic scripting): ``ctx.infer`` through the models'
batchers, sync and async steps, errors naming the step and the callee, the request's id,
parameters and deadline, recursion refused, and streaming pipelines."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.e2e._server import write_python_models
from twinpipe.runtime._engine import Engine
from twinpipe.runtime._errors import InternalError, InvalidArgumentError

MODELS = {
    "double": ("max_batch_size: 16\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n"
               "dynamic_batching: {max_queue_delay_us: 20000, preferred_batch_sizes: [16]}\n",
               "import time\ndef build():\n    def run(x):\n        time.sleep(0.002)\n        return x * 2\n    return run\n"),
    "boom": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n",
             "def build():\n    def run(x):\n        raise ValueError('the boom model always fails')\n    return run\n"),
}

BLS = '''
import time
import numpy as np


def twice(inputs, ctx):
    return {"y": ctx.infer("double", {"x": inputs["x"]})["y"]}


async def twice_async(inputs, ctx):
    out = await ctx.infer_async("double", {"x": inputs["x"]})
    return {"y": out["y"]}


def calls_boom(inputs, ctx):
    return {"y": ctx.infer("boom", {"x": inputs["x"]})["y"]}


def bad_inputs(inputs, ctx):
    return {"y": ctx.infer("double", {"z": inputs["x"]})["y"]}


async def sync_call_on_loop(inputs, ctx):
    return {"y": ctx.infer("double", {"x": inputs["x"]})["y"]}


def recurse(inputs, ctx):
    return ctx.infer("self_call", {"x": inputs["x"]})


def about(inputs, ctx):
    ctx.logger.info("looking at the request")
    left = -1.0 if ctx.remaining is None else ctx.remaining
    return {"rid": np.array([ctx.request_id]), "tag": np.array([str(ctx.parameters.get("tag", ""))]),
            "left": np.array([left], np.float64)}


SEEN = []


def waits_for_the_client(inputs, ctx):
    end = time.monotonic() + 10
    while not ctx.cancelled and time.monotonic() < end:
        time.sleep(0.005)
    SEEN.append(ctx.cancelled)
    return {"y": inputs["x"]}


def batch_ids(inputs, ctx):
    return {"y": ctx.infer("double", {"x": inputs["x"]})["y"] + len(ctx.request_id)}


def many(inputs, ctx):
    out = None
    for _ in range(40):
        out = ctx.infer("ident", {"x": inputs["x"]})
    return {"y": out["y"]}


def ident_bad(inputs, ctx):
    for _ in range(40):
        ctx.infer("ident", {"x": inputs["x"]})
    return ctx.infer("ident", {"x": inputs["x"].astype("float64")})


def tokens(inputs, ctx):
    for k in range(int(inputs["n"][0])):
        if ctx.cancelled:
            return
        yield {"t": np.array([k], np.int64)}
        time.sleep(0.002)
'''


def _pipe(name: str, target: str, out: str = "y") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        inputs: {{x: {{datatype: FP32, shape: [-1, 2]}}}}
        outputs: {{{out}: {{datatype: FP32, shape: [-1, 2], from: s.{out}}}}}
        steps:
          s: {{python: bls.py:{target}, inputs: {{x: x}}, outputs: {{{out}: {{datatype: FP32, shape: [-1, 2]}}}}}}
        """)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    write_python_models(tmp_path, MODELS)
    (tmp_path / "bls.py").write_text(BLS)
    (tmp_path / "ident" / "1").mkdir(parents=True)  # a tiny compiled model: runs inline, no queue
    (tmp_path / "ident" / "config.yaml").write_text("name: ident\nbackend: torchscript\nmax_batch_size: 0\n"
                                                    "inputs: {x: {datatype: FP32, shape: [-1, 2]}}\noutputs: {y: {datatype: FP32, shape: [-1, 2]}}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "ident" / "1" / "model.pt"))
    for name, target in (("twice", "twice"), ("twice_async", "twice_async"), ("calls_boom", "calls_boom"),
                         ("bad_inputs", "bad_inputs"), ("sync_call_on_loop", "sync_call_on_loop"), ("self_call", "recurse"),
                         ("waits", "waits_for_the_client"), ("batched", "batch_ids"), ("many", "many"),
                         ("ident_bad", "ident_bad")):
        (tmp_path / f"{name}.yaml").write_text(_pipe(name, target))
    batched = tmp_path / "batched.yaml"
    batched.write_text(batched.read_text() + "batching: {max_batch_size: 8, max_queue_delay_us: 20000}\n")
    (tmp_path / "about.yaml").write_text(textwrap.dedent("""\
        name: about
        inputs: {x: {datatype: FP32, shape: [-1, 2]}}
        outputs:
          rid: {datatype: BYTES, shape: [-1], from: s.rid}
          tag: {datatype: BYTES, shape: [-1], from: s.tag}
          left: {datatype: FP64, shape: [-1], from: s.left}
        steps:
          s:
            python: bls.py:about
            inputs: {x: x}
            outputs: {rid: {datatype: BYTES, shape: [-1]}, tag: {datatype: BYTES, shape: [-1]}, left: {datatype: FP64, shape: [-1]}}
        """))
    (tmp_path / "tokens.yaml").write_text(textwrap.dedent("""\
        name: tokens
        inputs: {n: {datatype: INT64, shape: [-1]}}
        outputs: {t: {datatype: INT64, shape: [-1], from: g.t}}
        steps:
          g: {python: bls.py:tokens, inputs: {n: n}, outputs: {t: {datatype: INT64, shape: [-1]}}}
        """))
    e = Engine(tmp_path)
    yield e
    e.close()


def _x(rows: int = 1) -> np.ndarray:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little")).uniform(1, 5, (rows, 2)).astype(np.float32)


@pytest.mark.parametrize("pipeline", ["twice", "twice_async"])
def test_ctx_infer_goes_through_the_models_batcher(engine: Engine, pipeline: str) -> None:
    xs = [_x() for _ in range(16)]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(engine.infer_async(pipeline, {"x": x}) for x in xs)))

    for x, r in zip(xs, asyncio.run(main())):
        np.testing.assert_array_equal(r.outputs["y"], x * 2)
    stats = engine.statistics("double")[0]
    assert stats["inference_count"] == 16
    assert stats["execution_count"] < 16  # the steps' calls were batched together
    assert engine.ready and engine.index()  # the engine is whole


def test_errors_name_the_step_and_the_callee(engine: Engine) -> None:
    with pytest.raises(InternalError, match=r"pipeline 'calls_boom', step 's' \(python bls.py:calls_boom\): CalleeError: "
                                            r"ctx.infer\('boom'\) failed \(INTERNAL\): .*the boom model always fails"):
        engine.infer("calls_boom", {"x": _x()})
    with pytest.raises(InternalError, match=r"ctx.infer\('double'\) failed \(INVALID_ARGUMENT\): .*unknown input 'z'"):
        engine.infer("bad_inputs", {"x": _x()})
    with pytest.raises(InternalError, match=r"this step runs on it: make the step async and use await ctx.infer_async"):
        engine.infer("sync_call_on_loop", {"x": _x()})
    with pytest.raises(InternalError, match=r"calls nested 16 deep \(does a pipeline call itself\?\)"):
        engine.infer("self_call", {"x": _x()})
    np.testing.assert_array_equal(engine.infer("twice", {"x": (x := _x())}).outputs["y"], x * 2)  # still serving


def test_the_ctx_sees_the_request(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="twinpipe.pipeline.about"):
        out = engine.infer("about", {"x": _x()}, request_id="req-9", parameters={"tag": "blue", "timeout": 5_000_000}).outputs
    assert out["rid"].tolist() == ["req-9"] and out["tag"].tolist() == ["blue"]
    assert 0 < float(out["left"][0]) <= 5.0
    assert "[request req-9] looking at the request" in caplog.text
    bare = engine.infer("about", {"x": _x()}).outputs
    assert bare["rid"].tolist() == [""] and float(bare["left"][0]) == -1.0  # no timeout: no deadline


def test_a_streaming_pipeline_answers_through_a_stream(engine: Engine) -> None:
    n = int.from_bytes(os.urandom(1), "little") % 6 + 2

    async def main(limit: int | None = None) -> list[int]:
        got = []
        async for r in engine.stream("tokens", {"n": np.array([n if limit is None else 10_000])}, request_id="s1"):
            got.append(int(r.outputs["t"][0]))
            if limit is not None and len(got) == limit:
                break
        return got

    assert asyncio.run(main()) == list(range(n))
    assert asyncio.run(main(limit=3)) == [0, 1, 2]
    assert engine.get("tokens").config()["model_transaction_policy"] == {"decoupled": True}
    with pytest.raises(InvalidArgumentError, match=r"pipeline 'tokens' is decoupled"):
        engine.infer("tokens", {"n": np.array([2])})


def test_a_client_that_goes_cancels_the_steps_context(engine: Engine, tmp_path: Path) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(engine.infer_async("waits", {"x": _x()}))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    module = next(m for k, m in sys.modules.items() if k.startswith("twinpipe_bls_bls_") and getattr(m, "__file__", "") == str(tmp_path / "bls.py"))
    deadline = time.monotonic() + 5
    while not module.SEEN and time.monotonic() < deadline:
        time.sleep(0.01)
    assert module.SEEN == [True]  # the step saw ctx.cancelled, well before its 10 s


def test_a_batched_pipeline_runs_its_steps_once_per_batch(engine: Engine) -> None:
    xs = [_x() for _ in range(8)]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(engine.infer_async("batched", {"x": x}, request_id=f"r{k}") for k, x in enumerate(xs))))

    for x, r in zip(xs, asyncio.run(main())):  # a batch's context has no request id: len("") == 0
        np.testing.assert_array_equal(r.outputs["y"], x * 2)
    stats = engine.statistics("batched")[0]
    assert stats["inference_count"] == 8 and stats["execution_count"] < 8


def test_a_sync_step_runs_a_queue_free_model_itself_and_it_is_counted(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # the tiny-model judgement is by time: on a loaded machine one call may look slow and send the
    # model back to its thread for a while; what is tested here is the routing, so time never decides
    from twinpipe.models import _instances

    monkeypatch.setattr(_instances, "INLINE_BELOW_S", 10.0)
    monkeypatch.setattr(_instances, "INLINE_BLOCK_S", 60.0)
    x = _x(3)
    here: list[str] = []
    direct = engine.infer_here

    def counted(*args: Any, **kwargs: Any) -> Any:  # the real call, counted
        here.append(threading.current_thread().name)
        return direct(*args, **kwargs)

    engine.infer_here = counted  # type: ignore[method-assign]
    for _ in range(3):
        np.testing.assert_array_equal(engine.infer("many", {"x": x}).outputs["y"], x)
    assert engine.get("ident").runs_here  # unbatched and tiny: on its inline path, so steps call it directly
    # all but the first calls (those that proved the model tiny) ran on the steps' threads
    assert len(here) >= 120 - 20 and all(name.startswith("twinpipe-bls") for name in here)

    def successes() -> int:
        return int(engine.statistics("ident")[0]["inference_stats"]["success"]["count"])

    deadline = time.monotonic() + 5
    while successes() < 120 and time.monotonic() < deadline:  # counted on the engine's loop, just after
        time.sleep(0.01)
    assert successes() == 120 and engine.statistics("ident")[0]["inference_count"] == 120
    with pytest.raises(InternalError, match=r"ctx.infer\('ident'\) failed \(INVALID_ARGUMENT\): .*input 'x' has datatype FP32 \(float32\); given FP64 \(float64\)"):
        engine.infer("ident_bad", {"x": x})
    deadline = time.monotonic() + 5
    while engine.statistics("ident")[0]["inference_stats"]["fail"]["count"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.statistics("ident")[0]["inference_stats"]["fail"]["count"] == 1


def test_a_streaming_pipeline_with_batching_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "bls.py").write_text(BLS)
    (tmp_path / "tokens_batched.yaml").write_text(textwrap.dedent("""\
        name: tokens_batched
        inputs: {n: {datatype: INT64, shape: [-1]}}
        outputs: {t: {datatype: INT64, shape: [-1], from: g.t}}
        batching: {max_batch_size: 4}
        steps:
          g: {python: bls.py:tokens, inputs: {n: n}, outputs: {t: {datatype: INT64, shape: [-1]}}}
        """))
    engine = Engine(tmp_path)
    try:
        (row,) = engine.index()
        assert row["state"] == "UNAVAILABLE" and not engine.ready
        assert row["reason"].endswith("tokens_batched.yaml: pipeline 'tokens_batched' streams (step 'g' is a generator); "
                                      "streams are not batched: remove batching:")
    finally:
        engine.close()


def test_a_steps_own_calls_are_not_refused_by_the_inflight_limit(engine: Engine) -> None:
    """max_inflight bounds client requests; a step's ctx.infer belongs to a request already admitted
    (refusing it would fail the very request that holds the slot)."""
    tight = Engine(engine.pipelines_root, max_inflight=1)
    try:
        for pipeline in ("twice", "twice_async"):
            np.testing.assert_array_equal(tight.infer(pipeline, {"x": (x := _x())}).outputs["y"], x * 2)

        async def two() -> list[Any]:
            return list(await asyncio.gather(*(tight.infer_async("twice", {"x": _x()}) for _ in range(2)),
                                             return_exceptions=True))

        answers = asyncio.run(two())
        refused = [a for a in answers if isinstance(a, Exception)]
        assert len(refused) == 1 and "too many requests in flight (1, max_inflight)" in str(refused[0])
    finally:
        tight.close()
