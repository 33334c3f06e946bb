"""Python steps in the executor: the ctx they get, class steps set up once, and generator steps
that stream (the steps after them run once per item; closing the stream closes the generator)."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinpipe.dag import Executor, PipelineError, StepContext, StreamingError, ValidPipeline, load_spec, validate

STEPS = '''
import asyncio
import numpy as np

SETUPS = []
CLOSED = []


def who(inputs, ctx):
    return {"y": inputs["x"] + 1, "rid": np.array([ctx.request_id]), "p": np.array([ctx.parameters.get("tag", "")])}


class Scale:
    def setup(self):
        SETUPS.append(1)
        self.k = 3

    def __call__(self, inputs, ctx):
        return {"y": inputs["x"] * self.k}


def count(inputs, ctx):
    try:
        for k in range(int(inputs["n"][0])):
            yield {"k": np.array([k + 1], np.int64)}
    finally:
        CLOSED.append("count")


async def acount(inputs, ctx):
    try:
        for k in range(int(inputs["n"][0])):
            await asyncio.sleep(0)
            yield {"k": np.array([k + 1], np.int64)}
    finally:
        CLOSED.append("acount")


def bad_item(inputs, ctx):
    yield {"k": np.array([1], np.int64)}
    yield {"wrong": 2}


def needs_engine(inputs, ctx):
    return ctx.infer("anything", {"x": inputs["x"]})
'''

STREAM = """\
name: gen
inputs: {n: {datatype: INT64, shape: [-1]}, base: {datatype: INT64, shape: [-1]}}
outputs:
  k: {datatype: INT64, shape: [-1], from: c.k}
  total: {datatype: INT64, shape: [-1], from: plus.y}
  offset: {datatype: INT64, shape: [-1], from: once.y}
  rid: {datatype: BYTES, shape: [-1], from: plus.rid}
  p: {datatype: BYTES, shape: [-1], from: plus.p}
steps:
  once: {python: steps.py:Scale, inputs: {x: base}, outputs: {y: {datatype: INT64, shape: [-1]}}}
  c: {python: steps.py:%s, inputs: {n: n}, outputs: {k: {datatype: INT64, shape: [-1]}}}
  plus: {python: steps.py:who, inputs: {x: c.k}, outputs: {y: {datatype: INT64, shape: [-1]}, rid: {datatype: BYTES, shape: [-1]}, p: {datatype: BYTES, shape: [-1]}}}
"""


def _valid(tmp_path: Path, text: str, name: str = "p") -> ValidPipeline:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return validate(load_spec(path))


def _module(tmp_path: Path) -> Any:
    """The module validation imported steps.py as (its lists record setups and closings)."""
    return next(m for k, m in sys.modules.items() if k.startswith("twinpipe_bls_steps_") and getattr(m, "__file__", "") == str(tmp_path / "steps.py"))


def _n(n: int, base: int = 10) -> dict[str, np.ndarray]:
    return {"n": np.array([n]), "base": np.array([base])}


@pytest.mark.parametrize("step", ["count", "acount"])
def test_a_generator_step_streams_and_its_dependents_run_per_item(tmp_path: Path, step: str) -> None:
    ex = Executor(_valid(tmp_path, STREAM % step))
    mod = _module(tmp_path)
    setups: list[int] = mod.SETUPS
    assert setups == [1]  # the class step was set up once, at load
    n = int.from_bytes(os.urandom(1), "little") % 5 + 2
    got = list(ex.stream(_n(n), ctx=StepContext(request_id="r1", parameters={"tag": "t"})))
    assert [int(o["k"][0]) for o in got] == list(range(1, n + 1))
    assert [int(o["total"][0]) for o in got] == list(range(2, n + 2))  # the dependent step ran per item
    assert all(int(o["offset"][0]) == 30 for o in got)  # the step before ran once
    closed: list[str] = mod.CLOSED
    assert closed == [step]

    async def main() -> list[dict[str, np.ndarray]]:
        return [o async for o in ex.stream_async(_n(3, 2))]

    got = asyncio.run(main())
    assert [(int(o["k"][0]), int(o["total"][0]), int(o["offset"][0])) for o in got] == [(1, 2, 6), (2, 3, 6), (3, 4, 6)]
    assert got[0]["rid"].tolist() == [""]  # no request: the default context
    with pytest.raises(StreamingError, match=r"pipeline 'gen' streams \(step 'c' is a generator\): run it with stream\(\)"):
        ex.run(_n(2))


def test_the_ctx_carries_the_request_and_infer_needs_an_engine(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, STREAM % "count"))
    (out,) = list(ex.stream(_n(1), ctx=StepContext(request_id="abc", parameters={"tag": "blue"})))
    assert out["rid"].tolist() == ["abc"] and out["p"].tolist() == ["blue"]
    ctx = StepContext(pipeline="p", request_id="abc", deadline=0.0)
    assert ctx.remaining == 0.0 and not ctx.cancelled
    ctx.cancel()
    assert ctx.cancelled
    alone = Executor(_valid(tmp_path, """\
        name: alone
        inputs: {x: {datatype: FP32, shape: [-1]}}
        outputs: {y: {datatype: FP32, shape: [-1], from: e.y}}
        steps:
          e: {python: steps.py:needs_engine, inputs: {x: x}, outputs: {y: {datatype: FP32, shape: [-1]}}}
        """, "alone"))
    with pytest.raises(Exception, match=r"ctx.infer\('anything'\): calling models needs an Engine; pipeline 'alone' runs outside one"):
        alone.run({"x": np.ones(2, np.float32)})


def test_leaving_a_stream_closes_the_generator(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, STREAM % "count"))
    mod = _module(tmp_path)
    stream = ex.stream(_n(1000))
    assert int(next(stream)["k"][0]) == 1
    stream.close()
    closed: list[str] = mod.CLOSED
    assert closed == ["count"]

    async def main() -> int:
        ctx = StepContext()
        async for out in ex.stream_async(_n(1000), ctx=ctx):
            if int(out["k"][0]) == 2:
                break
        await asyncio.sleep(0.2)
        return int(ctx.cancelled)

    assert asyncio.run(main()) == 1  # leaving cancels the context
    closed: list[str] = mod.CLOSED
    assert closed == ["count", "count"]


def test_a_bad_item_names_the_step(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, STREAM % "bad_item"))
    items = ex.stream(_n(1))
    assert int(next(items)["k"][0]) == 1
    with pytest.raises(Exception, match=r"step 'c' \(python steps.py:bad_item\): ValueError: python step 'c' did not return its declared output\(s\) k"):
        next(items)


def test_streaming_is_validated(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        _valid(tmp_path, """\
            name: two
            inputs: {n: {datatype: INT64, shape: [-1]}, go: {datatype: BOOL, shape: [-1]}}
            outputs: {k: {datatype: INT64, shape: [-1], from: b.k}}
            steps:
              a: {python: steps.py:count, inputs: {n: n}, when: go, outputs: {k: {datatype: INT64, shape: [-1]}}}
              b: {python: steps.py:acount, inputs: {n: a.k}, outputs: {k: {datatype: INT64, shape: [-1]}}}
            """, "two")
    text = str(info.value)
    assert "two.yaml:5" in text and "a streaming step (a generator) cannot have when:" in text
    assert "two.yaml:6" in text and "a pipeline has at most one streaming step (a generator); 'a' is one already" in text
    _valid(tmp_path, STREAM % "count", "gen")
    with pytest.raises(PipelineError, match=r"pipeline 'gen' streams \(its step 'c' is a generator\); a nested pipeline must answer once"):
        _valid(tmp_path, """\
            name: outer
            inputs: {n: {datatype: INT64, shape: [-1]}, base: {datatype: INT64, shape: [-1]}}
            outputs: {k: {datatype: INT64, shape: [-1], from: g.k}}
            steps:
              g: {pipeline: gen, inputs: {n: n, base: base}}
            """, "outer")


def test_a_class_whose_setup_fails_is_reported_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("class Loader:\n    def setup(self):\n        raise OSError('no vocab.txt')\n"
                                        "    def __call__(self, inputs, ctx):\n        return inputs\n")
    path = tmp_path / "b.yaml"
    path.write_text(textwrap.dedent("""\
        name: b
        inputs: {x: {datatype: FP32, shape: [-1]}}
        outputs: {y: {datatype: FP32, shape: [-1], from: s.y}}
        steps:
          s: {python: broken.py:Loader, inputs: {x: x}, outputs: {y: {datatype: FP32, shape: [-1]}}}
        """))
    with pytest.raises(PipelineError, match=r"b.yaml:5:.*python: 'broken.py:Loader'.setup\(\) failed: OSError: no vocab.txt"):
        validate(load_spec(path))
