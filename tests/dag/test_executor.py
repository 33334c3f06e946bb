"""The executor: results, threads, concurrency, releases, errors, randomness, when, batches, async."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinpipe.dag._executor import Executor, PipelineInputError, StepError
from twinpipe.dag._load import load_spec
from twinpipe.dag._resolved import ValidPipeline
from twinpipe.dag._spec import TensorRef
from twinpipe.dag._validate import validate
from twinpipe.ops import Choice, Op, Param, TensorSpec, image
from twinpipe.pipelines import asset_path

# -- tiny ops for the tests ------------------------------------------------------------------------

F32 = (np.float32,)
THREADS: list[int] = []
REFS: dict[str, Any] = {}
ALIVE: list[bool] = []
BARRIER = threading.Barrier(2)


def _vec(name: str) -> TensorSpec:
    return TensorSpec(name, F32, "N")


def _where(x: np.ndarray) -> np.ndarray:
    THREADS.append(threading.get_ident())
    return x.copy()


def _meet(x: np.ndarray) -> np.ndarray:
    BARRIER.wait(timeout=30)  # both branches must be inside at once, or this breaks
    return x + 1


def _fail(x: np.ndarray) -> np.ndarray:
    raise ValueError("boom: the pixel was bad")


def _mark(x: np.ndarray, *, tag: str) -> np.ndarray:
    y = x.copy()
    REFS[tag] = weakref.ref(y)
    return y


def _alive(x: np.ndarray, *, tag: str) -> np.ndarray:
    ALIVE.append(REFS[tag]() is not None)
    return x.copy()


Op("testexec.add", doc="a + b", inputs=[_vec("a"), _vec("b")], outputs=[_vec("sum")], reference=lambda a, b: a + b)
Op("testexec.where", doc="records the thread", inputs=[_vec("x")], outputs=[_vec("x")], reference=_where)
Op("testexec.meet", doc="waits for another branch", inputs=[_vec("x")], outputs=[_vec("x")], reference=_meet)
Op("testexec.fail", doc="raises", inputs=[_vec("x")], outputs=[_vec("x")], reference=_fail)
TAG = Param("tag", Choice(("a", "b")), "a", "which array")
Op("testexec.mark", doc="remembers its output", inputs=[_vec("x")], outputs=[_vec("x")], params=[TAG], reference=_mark)
Op("testexec.alive", doc="is the remembered output alive?", inputs=[_vec("x")], outputs=[_vec("x")], params=[TAG],
   reference=_alive)


def _valid(tmp_path: Path, text: str, name: str = "p") -> ValidPipeline:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return validate(load_spec(path))


VEC_IN = """
inputs:
  x: {datatype: FP32, shape: [-1, -1]}
"""
JPEG_IN = """
inputs:
  image: {datatype: BYTES, shape: [-1]}
"""
PHOTOS = ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")


def _jpeg(name: str = "coffee.jpg") -> bytes:
    return asset_path(name).read_bytes()


# -- results ---------------------------------------------------------------------------------------

PRE = "name: pre" + JPEG_IN + """
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 32, 32], from: chw.image}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  resize: {op: image.resize, inputs: {image: decode.image}, params: {size: 40}}
  crop: {op: image.center_crop, inputs: {image: resize.image}, params: {size: 32}}
  norm: {op: image.normalize, inputs: {image: crop.image}, params: {mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3]}}
  chw: {op: image.layout, inputs: {image: norm.image}}
"""


def _direct(data: bytes) -> np.ndarray:
    x = image.resize(image.decode(data), size=40)
    x = image.normalize(image.center_crop(x, size=32), mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    return image.layout(x)


def test_run_equals_calling_the_ops_in_order(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, PRE))
    for name in PHOTOS:
        out = ex.run({"image": _jpeg(name)})
        assert list(out) == ["pixels"]
        np.testing.assert_array_equal(out["pixels"], _direct(_jpeg(name)))


def test_every_step_is_timed_in_plan_order(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, PRE))
    _, stats = ex.run_with_stats({"image": _jpeg()})
    assert stats.steps == ("decode", "resize", "crop", "norm", "chw")
    assert list(stats.step_seconds) == list(stats.steps) and stats.skipped == ()
    assert all(s >= 0 for s in stats.seconds) and stats.total >= sum(stats.seconds)
    assert all(b2 >= b1 + s1 for b1, s1, b2 in zip(stats.begin, stats.seconds, stats.begin[1:]))  # one after another
    assert ex.last_stats is stats and stats.pipeline == "pre" and stats.mode == "serve"


def test_a_ragged_batch_is_stacked_once_its_shapes_agree(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, PRE))
    batch = [_jpeg(n) for n in PHOTOS]
    out = ex.run({"image": batch})["pixels"]
    assert isinstance(out, np.ndarray) and out.shape == (3, 3, 32, 32)
    for row, data in zip(out, batch):
        np.testing.assert_array_equal(row, _direct(data))


def test_missing_and_unknown_inputs_are_named(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, PRE))
    with pytest.raises(PipelineInputError, match=r"pipeline 'pre': missing input 'image' \(inputs are: image\)"):
        ex.run({})
    with pytest.raises(PipelineInputError, match=r"no input named 'imgae'"):
        ex.run({"image": _jpeg(), "imgae": b""})


# -- threads ---------------------------------------------------------------------------------------

CHAIN = "name: chain" + VEC_IN + """
outputs:
  y: {datatype: FP32, shape: [-1, -1], from: c.x}
steps:
  a: {op: testexec.where, inputs: {x: x}}
  b: {op: testexec.where, inputs: {x: a.x}}
  c: {op: testexec.where, inputs: {x: b.x}}
"""


def test_a_chain_runs_in_the_callers_thread(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, CHAIN))
    THREADS.clear()
    ex.run({"x": np.ones(3, np.float32)})
    assert set(THREADS) == {threading.get_ident()} and len(THREADS) == 3


DIAMOND = "name: diamond" + VEC_IN + """
outputs:
  y: {datatype: FP32, shape: [-1, -1], from: join.sum}
steps:
  left: {op: testexec.meet, inputs: {x: x}}
  right: {op: testexec.meet, inputs: {x: x}}
  more: {op: testexec.add, inputs: {a: right.x, b: x}}
  join: {op: testexec.add, inputs: {a: left.x, b: more.sum}}
"""


def test_independent_branches_run_at_the_same_time(tmp_path: Path) -> None:
    # each branch waits at a barrier for the other: run one after the other, they would break it
    ex = Executor(_valid(tmp_path, DIAMOND))
    x = np.arange(4, dtype=np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(ex.run({"x": x})["y"], (x + 1) + (x + 1 + x))
    assert ex.plan("serve").width == 2


def test_a_failing_step_names_pipeline_step_and_op_with_the_cause_chained(tmp_path: Path) -> None:
    text = CHAIN.replace("b: {op: testexec.where", "b: {op: testexec.fail")
    ex = Executor(_valid(tmp_path, text))
    with pytest.raises(StepError) as info:
        ex.run({"x": np.ones(2, np.float32)})
    err = info.value
    assert str(err) == "pipeline 'chain', step 'b' (op testexec.fail): ValueError: boom: the pixel was bad"
    assert (err.pipeline, err.step, err.kind, err.target) == ("chain", "b", "op", "testexec.fail")
    assert isinstance(err.__cause__, ValueError) and "boom" in str(err.__cause__)


def test_a_failing_branch_is_reported_from_the_thread_pool(tmp_path: Path) -> None:
    text = "name: branchy" + VEC_IN + """
outputs:
  y: {datatype: FP32, shape: [-1, -1], from: join.sum}
steps:
  ok: {op: testexec.where, inputs: {x: x}}
  bad: {op: testexec.fail, inputs: {x: x}}
  join: {op: testexec.add, inputs: {a: ok.x, b: bad.x}}
"""
    ex = Executor(_valid(tmp_path, text))
    for _ in range(3):
        with pytest.raises(StepError, match=r"step 'bad' \(op testexec.fail\): ValueError: boom") as info:
            ex.run({"x": np.ones(2, np.float32)})
        assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("branch", [False, True], ids=["chain", "branches"])
def test_intermediates_are_released_after_their_last_use(tmp_path: Path, branch: bool) -> None:
    text = "name: rel" + VEC_IN + """
outputs:
  y: {datatype: FP32, shape: [-1, -1], from: d.x}
  kept: {datatype: FP32, shape: [-1, -1], from: k.x}
steps:
  m: {op: testexec.mark, inputs: {x: x}, params: {tag: a}}
  k: {op: testexec.mark, inputs: {x: m.x}, params: {tag: b}}
  c: {op: testexec.alive, inputs: {x: k.x}, params: {tag: a}}
  d: {op: testexec.alive, inputs: {x: c.x}, params: {tag: b}}
"""
    if branch:  # a second branch: the run goes through the concurrent scheduler
        text = text.replace("steps:\n", "  side: {datatype: FP32, shape: [-1, -1], from: side.x}\nsteps:\n")
        text += "  side: {op: testexec.where, inputs: {x: x}}\n"
    ex = Executor(_valid(tmp_path, text))
    assert (ex.plan("serve").width > 1) == branch
    ALIVE.clear()
    out = ex.run({"x": np.ones(2, np.float32)})
    # m.x was last read by k: gone when c runs; k.x is a pipeline output: kept
    assert ALIVE == [False, True]
    assert REFS["b"]() is out["kept"]


# -- randomness and modes --------------------------------------------------------------------------

AUG = "name: aug" + JPEG_IN + """
outputs:
  crop: {datatype: UINT8, shape: [-1, 48, 48, 3], from: rrc.image}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  rrc: {op: image.random_resized_crop, inputs: {image: decode.image}, params: {size: 48}}
"""


def test_a_seed_reproduces_a_run_and_serve_mode_never_draws(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, AUG))
    data = _jpeg()
    a = ex.run({"image": data}, mode="train", rng=7)["crop"]
    np.testing.assert_array_equal(ex.run({"image": data}, mode="train", rng=7)["crop"], a)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(ex.run({"image": data}, mode="train", rng=g1)["crop"],
                                  ex.run({"image": data}, mode="train", rng=g2)["crop"])
    serve = ex.run({"image": data})["crop"]
    np.testing.assert_array_equal(serve, image.random_resized_crop(image.decode(data), size=48, mode="serve"))


def test_adding_a_random_step_does_not_change_another_steps_draws(tmp_path: Path) -> None:
    more = AUG.replace("name: aug", "name: aug2") + """
  noise: {op: image.random_flip, inputs: {image: decode.image}}
"""
    more = more.replace("outputs:\n", "outputs:\n  flipped: {datatype: UINT8, shape: [-1, -1, -1, 3], from: noise.image}\n")
    one, two = Executor(_valid(tmp_path, AUG)), Executor(_valid(tmp_path, more, "aug2"))
    data = _jpeg("chelsea.jpg")
    for seed in (0, 1, 2):
        out = two.run({"image": data}, mode="train", rng=seed)
        assert set(out) == {"crop", "flipped"}
        np.testing.assert_array_equal(out["crop"], one.run({"image": data}, mode="train", rng=seed)["crop"])


WHEN = "name: cond" + JPEG_IN + """
  big: {datatype: BOOL, shape: [-1]}
outputs:
  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: {from: small.image, default: decode.image}}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  small: {op: image.resize, when: big, inputs: {image: decode.image}, params: {size: 16}}
"""


def test_when_false_skips_the_step_and_the_consumer_takes_the_default(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, WHEN))
    data = _jpeg()
    out, stats = ex.run_with_stats({"image": data, "big": np.array(False)})
    np.testing.assert_array_equal(out["out"], image.decode(data))
    assert stats.skipped == ("small",)
    out, stats = ex.run_with_stats({"image": data, "big": np.array([True])})
    assert min(out["out"].shape[:2]) == 16 and stats.skipped == ()
    with pytest.raises(StepError, match="must hold one boolean"):
        ex.run({"image": data, "big": np.array([True, False])})


def test_reading_a_skipped_output_without_a_default_is_a_step_error(tmp_path: Path) -> None:
    # validation refuses this pipeline; build it anyway to check the executor's own guard
    text = WHEN + "  post: {op: image.flip, inputs: {image: {from: small.image, default: decode.image}}}\n"
    text = text.replace("from: {from: small.image, default: decode.image}}", "from: post.image}")
    valid = _valid(tmp_path, text)
    post = valid.step("post")
    bare = dataclasses.replace(post.spec, inputs={"image": TensorRef("small", "image", post.spec.location)})
    steps = tuple(dataclasses.replace(s, spec=bare) if s.name == "post" else s for s in valid.steps)
    ex = Executor(dataclasses.replace(valid, steps=steps))
    with pytest.raises(StepError, match=r"step 'post' \(op image.flip\): input 'image': small.image was not produced"):
        ex.run({"image": _jpeg(), "big": False})


# -- async, python and nested steps ---------------------------------------------------------------

def test_run_async_gives_what_run_gives(tmp_path: Path) -> None:
    ex = Executor(_valid(tmp_path, PRE))

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(ex.run_async({"image": _jpeg(n)}) for n in PHOTOS)))

    for out, name in zip(asyncio.run(both()), PHOTOS):
        np.testing.assert_array_equal(out["pixels"], ex.run({"image": _jpeg(name)})["pixels"])


def test_async_python_steps_and_nested_pipelines_run(tmp_path: Path) -> None:
    (tmp_path / "bls.py").write_text(textwrap.dedent("""
        import asyncio

        async def double(inputs, ctx):
            await asyncio.sleep(0)
            return {"y": inputs["x"] * 2}
    """))
    _valid(tmp_path, "name: inner" + VEC_IN + """
outputs:
  z: {datatype: FP32, shape: [-1, -1], from: plus.sum}
steps:
  plus: {op: testexec.add, inputs: {a: x, b: x}}
""", "inner")
    outer = _valid(tmp_path, "name: outer" + VEC_IN + """
outputs:
  y: {datatype: FP32, shape: [-1, -1], from: nest.z}
steps:
  twice:
    python: bls.py:double
    inputs: {x: x}
    outputs: {y: {datatype: FP32, shape: [-1, -1]}}
  nest: {pipeline: inner, inputs: {x: twice.y}}
""", "outer")
    ex = Executor(outer)
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(ex.run({"x": x})["y"], x * 4)
    np.testing.assert_array_equal(asyncio.run(ex.run_async({"x": x}))["y"], x * 4)
    assert ex.plan("serve").steps[1].kind == "pipeline"
