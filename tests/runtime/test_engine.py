"""The Engine in process: models and pipelines of a repository, sync and async, errors mapped to
their status codes, parameters honoured, load/unload, metadata, config and statistics."""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e._server import write_python_models
from twinpipe.runtime._engine import Engine
from twinpipe.runtime._errors import (
    DeadlineError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)

MODELS = {
    "double": ("max_batch_size: 8\ndevice: cpu\ninputs: {x: {datatype: FP32, shape: [3]}}\noutputs: {y: {datatype: FP32, shape: [3]}}\n"
               "dynamic_batching: {max_queue_delay_us: 1000}\n",
               "def build():\n    return lambda x: x * 2\n"),
    "slow": ("max_batch_size: 1\ninputs: {x: {datatype: INT32, shape: [1]}}\noutputs: {y: {datatype: INT32, shape: [1]}}\n"
             "dynamic_batching: {max_queue_size: 2}\n",
             "import threading\nGATE = threading.Event()\n"
             "def build():\n    def run(x):\n        GATE.wait(20)\n        return x + 1\n    return run\n"),
    "boom": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [1]}}\noutputs: {y: {datatype: FP32, shape: [1]}}\n",
             "def build():\n    def run(x):\n        if (x < 0).any():\n            raise ValueError('negative input')\n        return x\n    return run\n"),
    "acc": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n"
            "sequence_batching:\n  state: {h: {input: h_in, output: h_out, datatype: FP32, shape: [2], initial: 1}}\n",
            "def build():\n    return lambda x, h: (x + h, x + h)\n"),
}

PIPELINE = """\
name: twice
inputs: {x: {datatype: FP32, shape: [-1, 3]}}
outputs:
  y: {datatype: FP32, shape: [-1, 3], from: b.y}
  half: {datatype: FP32, shape: [-1, 3], from: a.y}
batching: {max_batch_size: 4}
steps:
  a: {model: double, inputs: {x: x}}
  b: {model: double, inputs: {x: a.y}}
"""


def _repo(root: Path, broken: bool = False) -> Path:
    write_python_models(root, MODELS)
    (root / "twice.yaml").write_text(PIPELINE)
    if broken:
        (root / "broken" / "1").mkdir(parents=True)
        (root / "broken" / "config.yaml").write_text("name: broken\nbackend: torchscript\ninputs: {}\noutputs: {}\n")
    return root


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    e = Engine(_repo(tmp_path))
    yield e
    e.close()


def _x(rows: int, width: int = 3) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    return rng.uniform(1, 5, (rows, width)).astype(np.float32)


def test_models_and_pipelines_answer_sync_and_async(engine: Engine) -> None:
    x = _x(2)
    out = engine.infer("double", {"x": x}, request_id="r1")
    assert (out.model_name, out.model_version, out.id) == ("double", "1", "r1")
    np.testing.assert_array_equal(out.outputs["y"], x * 2)
    assert out.datatypes == {"y": "FP32"}
    piped = engine.infer("twice", {"x": x})
    np.testing.assert_array_equal(piped.outputs["y"], x * 4)
    only = engine.infer("twice", {"x": x}, outputs=["half"])
    assert list(only.outputs) == ["half"]

    async def main() -> list[Any]:  # a loop other than the engine's: requests hop over
        return list(await asyncio.gather(*(engine.infer_async("twice", {"x": x * k}) for k in range(1, 6))))

    for k, r in enumerate(asyncio.run(main()), start=1):
        np.testing.assert_array_equal(r.outputs["y"], x * 4 * k)


def test_errors_carry_their_status_and_the_engine_keeps_serving(engine: Engine) -> None:
    x = _x(1)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: engine.infer("nope", {"x": x}), NotFoundError, r"unknown model 'nope'"),
        (lambda: engine.infer("double", {"x": x}, version=7), NotFoundError, r"model 'double' has no version 7 \(loaded: 1\)"),
        (lambda: engine.infer("double", {"x": x[:, :2]}), InvalidArgumentError, r"input 'x' expects shape \[-1, 3\].*given \[1, 2\]"),
        (lambda: engine.infer("double", {"z": x}), InvalidArgumentError, r"unknown input 'z'"),
        (lambda: engine.infer("double", {"x": x}, outputs=["w"]), InvalidArgumentError, r"has no output 'w'; its outputs are: y"),
        (lambda: engine.infer("double", {"x": x}, outputs=["y", "y"]), InvalidArgumentError, r"model 'double' version 1: output 'y' requested twice"),
        (lambda: engine.infer("double", {"x": x, "z": x}), InvalidArgumentError, r"unknown input 'z'; its inputs are: x"),
        (lambda: engine.infer("double", {}), InvalidArgumentError, r"missing input\(s\) 'x'"),
        (lambda: engine.infer("double", {"x": x.astype(np.float64)}), InvalidArgumentError, r"input 'x' has datatype FP32 \(float32\); given FP64 \(float64\)"),
        (lambda: engine.infer("double", {"x": x}, parameters={"priority": "high"}), InvalidArgumentError, r"parameter 'priority' must be a non-negative integer"),
        (lambda: engine.infer("twice", {"x": x}, parameters={"sequence_id": 4}), InvalidArgumentError, r"pipeline 'twice' is not a sequence model"),
        (lambda: engine.infer("boom", {"x": -np.ones((1, 1), np.float32)}), InternalError, r"model 'boom' version 1: ValueError: negative input"),
        (lambda: engine.infer("acc", {"x": x[:, :2]}, parameters={"sequence_id": 9}), InvalidArgumentError, r"sequence 9 is unknown or has expired"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()
    assert InternalError.code == "INTERNAL" and NotFoundError.code == "NOT_FOUND"
    np.testing.assert_array_equal(engine.infer("boom", {"x": np.ones((1, 1), np.float32)}).outputs["y"], np.ones((1, 1)))
    stats = {s["name"]: s for s in engine.statistics()}
    assert stats["boom"]["inference_stats"]["fail"]["count"] == 1
    assert stats["boom"]["inference_stats"]["success"]["count"] == 1


def test_a_full_queue_is_unavailable_and_a_late_request_misses_its_deadline(engine: Engine) -> None:
    import sys
    gate = next(m for n, m in sys.modules.items() if n.startswith("_twinpipe_model_slow")).GATE

    async def main() -> list[Any]:
        one = np.ones((1, 1), np.int32)
        first = asyncio.ensure_future(engine.infer_async("slow", {"x": one}))  # runs, held at the gate
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(engine.infer_async("slow", {"x": one * k})) for k in (2, 3)]
        await asyncio.sleep(0.05)
        with pytest.raises(UnavailableError, match=r"queue full \(2 requests waiting, max_queue_size\)"):
            await engine.infer_async("slow", {"x": one})
        gate.set()
        return list(await asyncio.gather(first, *queued))

    done = asyncio.run(main())
    assert [int(r.outputs["y"][0, 0]) for r in done] == [2, 3, 4]
    gate.clear()

    async def late() -> None:
        one = np.ones((1, 1), np.int32)
        first = asyncio.ensure_future(engine.infer_async("slow", {"x": one}))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineError, match=r"waited \d+ µs in the queue \(timeout 30000 µs\) and was not run"):
            await engine.infer_async("slow", {"x": one}, parameters={"timeout": 30000})
        gate.set()
        await first

    asyncio.run(late())


def test_max_inflight_refuses_beyond_the_limit(tmp_path: Path) -> None:
    e = Engine(_repo(tmp_path), max_inflight=1)
    import sys
    gate = next(m for n, m in sys.modules.items() if n.startswith("_twinpipe_model_slow") and not m.GATE.is_set()).GATE

    async def main() -> None:
        first = asyncio.ensure_future(e.infer_async("slow", {"x": np.ones((1, 1), np.int32)}))
        await asyncio.sleep(0.05)
        with pytest.raises(UnavailableError, match=r"too many requests in flight \(1, max_inflight\)"):
            await e.infer_async("double", {"x": _x(1)})
        gate.set()
        await first

    asyncio.run(main())
    e.close()


def test_sequence_parameters_reach_a_stateful_model(engine: Engine) -> None:
    x = np.full((1, 2), 3, np.float32)
    seq = [engine.infer("acc", {"x": x}, parameters={"sequence_id": "s", "sequence_start": k == 0, "sequence_end": k == 2})
           for k in range(3)]
    assert [float(r.outputs["y"][0, 0]) for r in seq] == [4, 7, 10]  # initial 1, then the state carries
    with pytest.raises(InvalidArgumentError, match=r"sequence 's' is unknown"):
        engine.infer("acc", {"x": x}, parameters={"sequence_id": "s"})


def test_load_and_unload_by_name_only(engine: Engine) -> None:
    engine.unload("double")
    assert not engine.is_ready("double") and not engine.is_ready("twice")
    rows = {r["name"]: r for r in engine.index()}
    assert rows["double"]["state"] == "UNAVAILABLE" and "unloaded" in rows["double"]["reason"]
    assert "uses 'double'" in rows["twice"]["reason"]
    with pytest.raises(NotFoundError, match=r"unknown model 'twice'"):
        engine.infer("twice", {"x": _x(1)})
    engine.load("double")
    assert engine.is_ready("double") and engine.is_ready("twice") and engine.ready
    for bad in ("../double", "/etc", "a/b", ""):
        with pytest.raises(InvalidArgumentError, match=r"is not a model name"):
            engine.load(bad)
    with pytest.raises(NotFoundError, match=r"no model or pipeline 'ghost'"):
        engine.load("ghost")


def test_a_broken_model_is_listed_unavailable_and_the_server_not_ready(tmp_path: Path) -> None:
    e = Engine(_repo(tmp_path, broken=True))
    rows = {r["name"]: r for r in e.index()}
    assert rows["broken"]["state"] == "UNAVAILABLE" and "inputs: is empty" in rows["broken"]["reason"]
    assert rows["double"]["state"] == "READY"
    assert e.live and not e.ready
    e.close()


def test_metadata_config_and_statistics_have_tritons_shape(engine: Engine) -> None:
    meta = engine.get("double").metadata()
    assert meta == {"name": "double", "versions": ["1"], "platform": "python",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}
    cfg = engine.get("double").config()
    assert cfg["max_batch_size"] == 8 and cfg["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    pipe = engine.get("twice").config()
    assert pipe["platform"] == "ensemble" and pipe["max_batch_size"] == 4 and "dynamic_batching" not in pipe
    assert [s["model_name"] for s in pipe["ensemble_scheduling"]["step"]] == ["double", "double"]
    seq = engine.get("acc").config()["sequence_batching"]
    assert seq["oldest"] == {"max_queue_delay_microseconds": 0} and seq["state"][0]["input_name"] == "h_in"
    for _ in range(3):
        engine.infer("double", {"x": _x(2)})
    [stats] = engine.statistics("double")
    assert stats["inference_count"] == 6 and stats["inference_stats"]["success"]["count"] == 3
    assert sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]


def test_draining_refuses_new_requests_and_waits_for_those_in_flight(engine: Engine) -> None:
    import sys
    gate = next(m for n, m in sys.modules.items() if n.startswith("_twinpipe_model_slow") and not m.GATE.is_set()).GATE

    async def main() -> bool:
        busy = asyncio.ensure_future(engine.infer_async("slow", {"x": np.ones((1, 1), np.int32)}))
        await asyncio.sleep(0.05)
        threading.Timer(0.2, gate.set).start()
        drained = await engine.drain(10)
        assert (await busy).outputs["y"][0, 0] == 2
        with pytest.raises(UnavailableError, match=r"shutting down"):
            await engine.infer_async("double", {"x": _x(1)})
        return drained

    assert asyncio.run(main())
    assert engine.live is False


def test_the_default_repository_serves_the_shipped_pipelines() -> None:
    e = Engine()
    names = {r["name"] for r in e.index()}
    assert {"imagenet_preprocess", "detection_letterbox"} <= names
    assert e.is_ready("imagenet_preprocess")
    e.close()


def test_a_pipeline_file_must_carry_its_own_name(tmp_path: Path) -> None:
    _repo(tmp_path)
    (tmp_path / "other.yaml").write_text(textwrap.dedent(PIPELINE))
    e = Engine(tmp_path)
    rows = {r["name"]: r for r in e.index()}
    assert "other.yaml declares name 'twice'" in rows["other"]["reason"]
    e.close()


def test_the_runtime_package_exports_its_api_lazily() -> None:
    import subprocess
    import sys

    import twinpipe.runtime as runtime

    assert runtime.Engine is Engine and sorted(runtime.__all__) == sorted(runtime._WHERE)
    with pytest.raises(AttributeError, match=r"has no attribute 'Nope'"):
        _ = runtime.Nope  # type: ignore[attr-defined]
    # the CLI's light commands do not import the server (torch, grpc)
    code = "import sys, twinpipe.runtime.cli; print('twinpipe.runtime._engine' in sys.modules, 'grpc' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


def test_a_cuda_model_is_served_and_the_metrics_read_the_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from twinpipe.runtime import Metrics

    (tmp_path / "lin" / "1").mkdir(parents=True)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    torch.jit.save(torch.jit.script(net), str(tmp_path / "lin" / "1" / "model.pt"))
    (tmp_path / "lin" / "config.yaml").write_text(
        "name: lin\nbackend: torchscript\nmax_batch_size: 8\ndevice: cuda\ninstances: {count: 2}\n"
        "inputs: {x: {datatype: FP32, shape: [3]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n"
        "dynamic_batching: {max_queue_delay_us: 500}\n")
    metrics = Metrics()
    e = Engine(tmp_path, metrics=metrics)
    x = _x(5)
    got = e.infer("lin", {"x": x}).outputs["y"]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-3, atol=1e-4)
    assert e.get("lin").config()["instance_group"] == [{"count": 2, "kind": "KIND_GPU"}]
    body = metrics.render()[0].decode()
    assert metrics.gpu and "twinpipe_gpu_memory_used_bytes" in body and "twinpipe_request_success_total" in body
    e.close()


def test_sync_calls_work_after_an_async_caller_s_loop_has_finished(engine: Engine) -> None:
    x = _x(2)

    async def once() -> Any:
        return await engine.infer_async("double", {"x": x})

    np.testing.assert_array_equal(asyncio.run(once()).outputs["y"], x * 2)  # binds the engine to that loop
    np.testing.assert_array_equal(engine.infer("twice", {"x": x}).outputs["y"], x * 4)  # which is gone now
    np.testing.assert_array_equal(asyncio.run(once()).outputs["y"], x * 2)  # and async callers hop over
