"""GPU placement: ``device: cpu | cuda | auto`` resolved in the plan, the copies it implies, and
pipelines whose steps run on the GPU (Numba's CUDA simulator here; the real GPU where there is
one) giving what the same pipeline gives on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from numba import cuda

from twinpipe.dag import Location, ModelInfo, Pipeline, TensorDecl, to_dot, to_host, to_mermaid
from twinpipe.dag._load import load_spec
from twinpipe.dag._plan import compile_plan
from twinpipe.dag._validate import validate
from twinpipe.ops._device import is_device_array

GPU_CHAIN = """
name: gpu_chain
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 6, 7], from: chw.image}
  small: {datatype: UINT8, shape: [-1, -1, -1, 3], from: small.image}
  normalized: {datatype: FP32, shape: [-1, 6, 7, 3], from: norm.image}
steps:
  decode:
    op: image.decode
    DECODE
    inputs: {data: image}
  small:
    op: image.resize
    inputs: {image: decode.image}
    params: {size: [9, 11]}
  crop:
    op: image.center_crop
    inputs: {image: small.image}
    params: {size: [6, 7]}
  norm:
    op: image.normalize
    DEVICE
    inputs: {image: crop.image}
    params: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
  chw:
    op: image.layout
    inputs: {image: norm.image}
"""


def _write(tmp_path: Path, device: str, decode: str = "auto") -> Path:
    path = tmp_path / f"gpu_chain_{device}_{decode}.yaml"
    path.write_text(textwrap.dedent(GPU_CHAIN).replace("DEVICE", f"device: {device}").replace("DECODE", f"device: {decode}"))
    return path


def _jpeg(rng: np.random.Generator) -> bytes:
    img = cv2.GaussianBlur(rng.integers(0, 256, (int(rng.integers(12, 30)), int(rng.integers(12, 30)), 3), dtype=np.uint8), (3, 3), 0)
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return data.tobytes()


def test_auto_steps_follow_the_data_onto_the_gpu_when_there_is_one(tmp_path: Path) -> None:
    """With a GPU, the auto steps before the cuda step join it (each feeds only GPU steps), the
    decoder too (nvJPEG: it reads the bytes on the host), and the step after it follows: the batch
    is on the GPU from the decode on, and nothing is copied."""
    valid = validate(load_spec(_write(tmp_path, "cuda")))
    plan = compile_plan(valid, mode="serve", gpu=True)
    assert {s.name: s.device for s in plan.steps} == {"decode": "cuda", "small": "cuda", "crop": "cuda", "norm": "cuda", "chw": "cuda"}
    assert not any(s.copies for s in plan.steps)
    # without a GPU auto is the CPU: only the cuda step moves, and its result comes back
    plan = compile_plan(valid, mode="serve", gpu=False)
    assert {s.name: s.device for s in plan.steps} == {"decode": "cpu", "small": "cpu", "crop": "cpu", "norm": "cuda", "chw": "cpu"}
    copies = [(s.name, c.tensor, c.src, c.dst) for s in plan.steps for c in s.copies]
    assert copies == [("norm", "crop.image", "cpu", "cuda"), ("chw", "norm.image", "cuda", "cpu")]
    # a step written cpu stops the chain: the GPU part starts after it, with one upload
    plan = compile_plan(validate(load_spec(_write(tmp_path, "cuda", decode="cpu"))), mode="serve", gpu=True)
    assert [(s.name, c.tensor, c.src, c.dst) for s in plan.steps for c in s.copies] == [("small", "decode.image", "cpu", "cuda")]
    # all auto: nothing moves, GPU or not
    plan = compile_plan(validate(load_spec(_write(tmp_path, "auto"))), mode="serve", gpu=True)
    assert {s.device for s in plan.steps} == {"cpu"} and not any(s.copies for s in plan.steps)


def test_the_graph_shows_where_a_step_is_placed(tmp_path: Path) -> None:
    valid = validate(load_spec(_write(tmp_path, "cuda", decode="cpu")))
    mermaid = to_mermaid(valid)
    assert 'n_norm["norm<br/>op: image.normalize<br/>on cuda"]' in mermaid
    assert 'n_decode["decode<br/>op: image.decode<br/>on cpu"]' in mermaid
    assert 'n_crop["crop<br/>op: image.center_crop"]' in mermaid  # auto: no device written
    assert "on cuda" in to_dot(valid)


MODEL_CHAIN = """
name: model_chain
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  top: {datatype: INT64, shape: [-1, 2], from: top.indices}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  pre: {op: image.resize_crop_normalize, inputs: {image: decode.image}, params: {size: 8, crop: 8}}
  net: {model: net, inputs: {pixels: pre.tensor}}
  soft: {op: classify.softmax, inputs: {logits: net.logits}}
  top: {op: classify.topk, inputs: {scores: soft.probs}, params: {k: 2}}
"""


@pytest.mark.parametrize("model_device", ["cuda", "cpu"])
def test_auto_steps_around_a_model_follow_it_to_its_device(tmp_path: Path, model_device: str) -> None:
    """A model on a GPU takes GPU tensors and gives its outputs there: with a GPU, the auto
    pre- and post-processing around it run there too (a CPU model keeps them on the CPU)."""
    here = Location("net/config.yaml", 1, 1)
    info = ModelInfo("net", (TensorDecl("pixels", "FP32", (-1, 3, 8, 8), here),), (TensorDecl("logits", "FP32", (-1, 10), here),),
                     lambda **kw: kw, model_device)
    path = tmp_path / "model_chain.yaml"
    path.write_text(textwrap.dedent(MODEL_CHAIN))
    plan = compile_plan(validate(load_spec(path), models={"net": info}), mode="serve", gpu=True)
    want = "cuda" if model_device == "cuda" else "cpu"
    assert {s.name: s.device for s in plan.steps} == {"decode": want, "pre": want, "net": "any", "soft": want, "top": want}
    assert not any(s.copies for s in plan.steps)


@pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")
def test_a_pipeline_on_the_gpu_gives_what_it_gives_on_the_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    on_cpu = Pipeline(validate(load_spec(_write(tmp_path, "cpu"))))
    on_gpu = Pipeline(validate(load_spec(_write(tmp_path, "cuda", decode="cuda"))))
    data = np.array([_jpeg(rng), _jpeg(rng)], dtype=object)  # two sizes: a ragged decode, dense after the resize
    want = on_cpu.run({"image": data})
    got = on_gpu.run({"image": data})
    assert {s.name for s in on_gpu.executor.plan("serve").steps if s.device == "cuda"} >= {"decode", "norm"}
    assert is_device_array(got["normalized"]) and not isinstance(got["normalized"], np.ndarray)  # it stays on the GPU
    host = to_host(got)  # what a server does before it answers
    assert isinstance(host["pixels"], np.ndarray) and host["pixels"].shape == want["pixels"].shape == (2, 3, 6, 7)
    if torch.cuda.is_available():  # a real GPU decodes with nvJPEG: chroma upsampled its own way (its documented bound)
        assert np.abs(host["small"].astype(np.float64) - want["small"]).mean() < 2
        assert np.abs(host["pixels"] - want["pixels"]).mean() < 2 / 255 / 0.224
        return
    np.testing.assert_allclose(host["normalized"], want["normalized"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(host["small"], want["small"])
    np.testing.assert_allclose(host["pixels"], want["pixels"], rtol=0, atol=1e-6)


def test_device_cuda_without_a_gpu_or_simulator_is_an_error_naming_the_step(tmp_path: Path) -> None:
    """A machine with no GPU (and the simulator off): the plan says where the cuda step is."""
    path = _write(tmp_path, "cuda")
    code = ("from twinpipe.dag import load_pipeline\n"
            f"p = load_pipeline({str(path)!r})\n"
            "try:\n    p.executor.plan('serve')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.startswith(f"PlanError {path}:24:13: pipeline 'gpu_chain', step 'norm': device: cuda, but this machine has no CUDA device"), out
