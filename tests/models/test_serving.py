"""Serving a model or a pipeline: request checks, instances that really run concurrently (each its
own copy), the batcher a config asks for, and a shipped pipeline batched over real JPEGs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.dag import load_pipeline
from twinpipe.models import load_repository
from twinpipe.models._serving import InferInputError, ServedModel, ServedPipeline
from twinpipe.pipelines import asset_path

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

CNN = """\
name: cnn
backend: torchscript
max_batch_size: 8
inputs:
  pixels: {datatype: FP32, shape: [3, 12, -1]}
  scale: {datatype: FP32, shape: [1]}
outputs:
  logits: {datatype: FP32, shape: [4]}
device: cpu
instances: {count: 2}
dynamic_batching: {max_queue_delay_us: 3000, preferred_batch_sizes: [8]}
"""

# a python model that meets its twin at a barrier: only instances running at once get through.
# Each instance loads its own copy of meeting.py; the barrier lives in one shared module.
MEETING = """\
import {point} as point

class Meet:
    def __init__(self):
        point.COPIES.append(self)

    def __call__(self, x):
        point.BARRIER.wait()
        return x * 2

def build():
    return Meet()
"""
POINT = "import threading\nBARRIER = threading.Barrier({parties}, timeout=20)\nCOPIES = []\n"


class _Cnn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))) * scale


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _repo(tmp: Path, parties: int = 2, count: int = 2) -> Path:
    point = f"meetpoint_{tmp.name}_{_seed()}"
    (tmp / f"{point}.py").write_text(POINT.format(parties=parties))
    sys.path.insert(0, str(tmp))
    (tmp / "cnn" / "1").mkdir(parents=True)
    (tmp / "cnn" / "config.yaml").write_text(CNN)
    torch.jit.save(torch.jit.script(_Cnn().eval()), str(tmp / "cnn" / "1" / "model.pt"))
    for name in ("meet_a", "meet_b"):
        (tmp / name / "1").mkdir(parents=True)
        (tmp / name / "1" / "meeting.py").write_text(MEETING.format(point=point))
        (tmp / name / "config.yaml").write_text(
            f"name: {name}\nbackend: python\nfactory: meeting:build\nmax_batch_size: 4\n"
            f"inputs:\n  x: {{datatype: INT32, shape: [2]}}\noutputs:\n  y: {{datatype: INT32, shape: [2]}}\n"
            f"instances: {{count: {count}}}\n")
    return tmp


def test_a_batched_model_with_two_instances_gives_the_unbatched_results(tmp_path: Path) -> None:
    repo = load_repository(_repo(tmp_path))
    model = repo.get("cnn")
    rng = np.random.default_rng(_seed())
    reqs = [{"pixels": rng.standard_normal((int(rng.integers(1, 4)), 3, 12, w)).astype(np.float32)}
            for w in rng.integers(5, 8, 40)]
    for r in reqs:
        r["scale"] = rng.uniform(0.5, 2, (len(r["pixels"]), 1)).astype(np.float32)
    want = [model.runner(**r) for r in reqs]

    async def main() -> tuple[list[dict[str, Any]], Any]:
        served = ServedModel(model)
        assert served.batcher is not None and len(served.pool) == 2
        got = await asyncio.gather(*(served.infer(r) for r in reqs))
        await served.close()
        return list(got), served.stats

    got, stats = asyncio.run(main())
    for w, g in zip(want, got):
        np.testing.assert_allclose(g["logits"], w["logits"], rtol=1e-5, atol=1e-6)
    assert stats.requests == 40 and stats.batches < 40 and stats.rows == sum(len(r["pixels"]) for r in reqs)


def test_each_instance_is_its_own_copy(tmp_path: Path) -> None:
    model = load_repository(_repo(tmp_path)).get("cnn")
    other = model.new_instance()
    assert other.model is not model.runner.model
    mine = dict(model.runner.model.named_parameters())  # type: ignore[union-attr]
    theirs = dict(other.model.named_parameters())  # type: ignore[union-attr]
    for name, p in mine.items():
        assert p.data_ptr() != theirs[name].data_ptr()
        torch.testing.assert_close(p, theirs[name])


def test_instances_run_concurrently(tmp_path: Path) -> None:
    repo = load_repository(_repo(tmp_path, parties=2, count=2))
    meet = repo.get("meet_a")

    async def main() -> list[dict[str, Any]]:
        served = ServedModel(meet)
        # each waits at a barrier of two: they can only finish if both instances run at once
        got = await asyncio.gather(*(served.infer({"x": np.full((1, 2), v, np.int32)}) for v in (3, 4)))
        await served.close()
        return list(got)

    got = asyncio.run(main())
    assert [int(g["y"][0, 0]) for g in got] == [6, 8]
    point = sys.modules[meet.runner.model.__class__.__module__].point  # type: ignore[union-attr]
    mine = [c for c in point.COPIES if "meet_a" in type(c).__module__]
    assert len(mine) == 2 and mine[0] is not mine[1]  # the factory ran once per instance


def test_independent_models_run_concurrently(tmp_path: Path) -> None:
    repo = load_repository(_repo(tmp_path, parties=2, count=1))  # one instance each, one shared barrier

    async def main() -> list[dict[str, Any]]:
        sa, sb = ServedModel(repo.get("meet_a")), ServedModel(repo.get("meet_b"))
        got = await asyncio.gather(sa.infer({"x": np.full((1, 2), 1, np.int32)}), sb.infer({"x": np.full((1, 2), 2, np.int32)}))
        await sa.close()
        await sb.close()
        return list(got)

    assert [int(g["y"][0, 1]) for g in asyncio.run(main())] == [2, 4]


def test_bad_requests_name_the_tensor_and_what_was_expected(tmp_path: Path) -> None:
    model = load_repository(_repo(tmp_path)).get("cnn")
    x, s = np.ones((2, 3, 12, 6), np.float32), np.ones((2, 1), np.float32)

    async def main() -> None:
        served = ServedModel(model)
        cases = [
            ({"pixel": x, "scale": s}, r"unknown input 'pixel'; did you mean 'pixels'\?"),
            ({"pixels": x}, r"missing input\(s\) 'scale'"),
            ({"pixels": x.astype(np.float64), "scale": s}, r"input 'pixels' has datatype FP32 \(float32\); given FP64 \(float64\)"),
            ({"pixels": x[:, :, :10], "scale": s}, r"input 'pixels' expects shape \[-1, 3, 12, -1\] \(the first dimension is the batch\); given \[2, 3, 10, 6\]"),
            ({"pixels": x[0], "scale": s}, r"input 'pixels' expects shape \[-1, 3, 12, -1\]"),
            ({"pixels": x, "scale": s[:1]}, r"inputs disagree on the batch size \(first dimension\): \{'pixels': 2, 'scale': 1\}"),
            ({"pixels": np.ones((9, 3, 12, 6), np.float32), "scale": np.ones((9, 1), np.float32)}, r"a batch of 9 is outside 1..8 \(max_batch_size\)"),
        ]
        for inputs, message in cases:
            with pytest.raises(InferInputError, match=r"model 'cnn' version 1: " + message):
                await served.infer(inputs)
        with pytest.raises(InferInputError, match=r"has no sequence_batching"):
            await served.infer({"pixels": x, "scale": s}, sequence_id=3)
        out = await served.infer({"pixels": x, "scale": s})  # and it keeps serving
        assert out["logits"].shape == (2, 4)
        await served.close()

    asyncio.run(main())


def test_a_shipped_pipeline_batches_real_jpegs_like_it_runs_them_alone() -> None:
    pipe = load_pipeline("imagenet_preprocess")
    assert pipe.spec.batching is not None
    photos = [asset_path(n).read_bytes() for n in ("coffee.jpg", "chelsea.jpg", "astronaut.png", "coffee_exif6.jpg")]
    rng = np.random.default_rng(_seed())
    reqs = [np.array([photos[int(i)] for i in rng.integers(0, 4, int(rng.integers(1, 3)))], dtype=object) for _ in range(12)]
    alone = [pipe(image=r)["pixels"] for r in reqs]

    async def main() -> tuple[list[dict[str, Any]], Any]:
        served = ServedPipeline(pipe)
        assert served.batcher is not None and served.batcher.policy.max_batch_size == 32
        got = await asyncio.gather(*(served.infer({"image": r}) for r in reqs))
        with pytest.raises(InferInputError, match=r"pipeline 'imagenet_preprocess': unknown input 'img'; did you mean 'image'\?"):
            await served.infer({"img": reqs[0]})
        await served.close()
        return list(got), served.stats

    got, stats = asyncio.run(main())
    for want, g in zip(alone, got):
        np.testing.assert_array_equal(g["pixels"], want)  # bit for bit: the same kernels on the same rows
    assert stats.batches < len(reqs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_instances_on_a_gpu_have_their_own_streams_and_match_the_cpu(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "cnn" / "config.yaml").write_text(CNN.replace("device: cpu", "device: cuda"))
    model = load_repository(root).get("cnn")
    cpu = torch.jit.load(str(root / "cnn" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    rng = np.random.default_rng(_seed())
    reqs = [{"pixels": rng.standard_normal((int(rng.integers(1, 4)), 3, 12, 9)).astype(np.float32)} for _ in range(24)]
    for r in reqs:
        r["scale"] = rng.uniform(0.5, 2, (len(r["pixels"]), 1)).astype(np.float32)

    async def main() -> tuple[list[dict[str, Any]], list[Any]]:
        served = ServedModel(model)
        got = await asyncio.gather(*(served.infer(r) for r in reqs))
        streams = [r.stream for r in served.pool.runners]  # type: ignore[attr-defined]
        await served.close()
        return list(got), streams

    got, streams = asyncio.run(main())
    assert all(s is not None for s in streams) and streams[0] != streams[1]
    for r, g in zip(reqs, got):
        want = cpu(torch.from_numpy(r["pixels"]), torch.from_numpy(r["scale"])).detach().numpy()
        np.testing.assert_allclose(g["logits"], want, rtol=1e-3, atol=1e-4)  # TF32/cuDNN vs CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_model_in_a_pipeline_gives_its_outputs_on_the_gpu_to_gpu_steps(tmp_path: Path) -> None:
    """The model's outputs stay on its GPU (no copy to the host and back) for the softmax after it,
    which runs there too; the served pipeline answers from the host, equal to the CPU model."""
    from twinpipe.dag import Pipeline, to_host
    from twinpipe.dag._load import load_spec
    from twinpipe.dag._validate import validate

    root = _repo(tmp_path)
    (root / "cnn" / "config.yaml").write_text(CNN.replace("device: cpu", "device: cuda"))
    model = load_repository(root).get("cnn")
    (tmp_path / "p.yaml").write_text(
        "name: p\ninputs:\n  pixels: {datatype: FP32, shape: [-1, 3, 12, 9]}\n  scale: {datatype: FP32, shape: [-1, 1]}\n"
        "outputs:\n  probs: {datatype: FP32, shape: [-1, 4], from: soft.probs}\nsteps:\n"
        "  net: {model: cnn, inputs: {pixels: pixels, scale: scale}}\n  soft: {op: classify.softmax, inputs: {logits: net.logits}}\n")
    pipe = Pipeline(validate(load_spec(tmp_path / "p.yaml"), models={"cnn": model.info()}))
    assert {s.name: s.device for s in pipe.executor.plan("serve").steps} == {"net": "any", "soft": "cuda"}
    rng = np.random.default_rng(_seed())
    x = {"pixels": rng.standard_normal((3, 3, 12, 9)).astype(np.float32), "scale": rng.uniform(0.5, 2, (3, 1)).astype(np.float32)}
    out = pipe.run(x)
    assert isinstance(out["probs"], torch.Tensor) and out["probs"].is_cuda
    cpu = torch.jit.load(str(root / "cnn" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    want = torch.softmax(cpu(torch.from_numpy(x["pixels"]), torch.from_numpy(x["scale"])), 1).detach().numpy()
    np.testing.assert_allclose(to_host(out)["probs"], want, rtol=1e-3, atol=1e-4)  # TF32/cuDNN vs CPU
