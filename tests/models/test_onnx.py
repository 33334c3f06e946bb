"""The onnx backend: real small torch models exported to ONNX (exporting needs ``onnx``; running
only ``onnxruntime``), run through :class:`OnnxRunner` and compared to calling the module."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # torch.onnx.export(dynamo=False) writes the file with it

from twinpipe.models import ModelConfig, ServedModel, load_config, load_repository
from twinpipe.models._onnx import ONNX_FILE, OnnxRunner, load_onnx

CONFIG = """\
name: {name}
backend: onnx
max_batch_size: {mbs}
inputs:
{inputs}
outputs:
{outputs}
device: cpu
{extra}"""


def fresh_rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(4 * 7 * 7, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class TwoHeads(TinyCNN):
    """Two outputs, written to the file as (probs, logits): the config lists logits first."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        logits = super().forward(x)
        return logits.softmax(-1), logits


class Mix(torch.nn.Module):
    """Two inputs, no batch dimension."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * 2.0 + b.sum()


class Accumulate(torch.nn.Module):
    """A sequence model: its running sum is state the runtime feeds back."""

    def forward(self, x: torch.Tensor, total_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = total_in + x
        return total.mean(-1, keepdim=True), total


def seeded(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return module.eval()


def export(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
           outputs: list[str], batch: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch"} for n in inputs + outputs} if batch else None
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, dynamo=False)


def config(tmp: Path, name: str, inputs: str, outputs: str, mbs: int = 8, extra: str = "") -> ModelConfig:
    """A config read by :func:`load_config`."""
    path = tmp / name / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG.format(name=name, mbs=mbs, inputs=inputs, outputs=outputs, extra=extra))
    return load_config(path)


CNN_IN = "  pixels: {datatype: FP32, shape: [3, 16, 16]}"
CNN_OUT = "  logits: {datatype: FP32, shape: [5]}"


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[OnnxRunner, torch.nn.Module]:
    net = seeded(TinyCNN())
    export(net, (torch.zeros(2, 3, 16, 16),), tmp_path / "tiny_onnx" / "1" / ONNX_FILE, ["x"], ["y"])
    cfg = config(tmp_path, "tiny_onnx", CNN_IN, CNN_OUT)
    return load_onnx(cfg, tmp_path / "tiny_onnx" / "1", "cpu"), net


def test_matches_torch_on_odd_batches(tiny: tuple[OnnxRunner, torch.nn.Module]) -> None:
    runner, net = tiny
    assert runner.device == "cpu"
    assert runner.input_names == ("pixels",)
    assert runner.output_names == ("logits",)
    assert runner.graph_inputs == {"pixels": "x"}  # names differ: by position
    rng = fresh_rng()
    for n in (1, 3, 7):
        x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
        out = runner(pixels=x)
        assert set(out) == {"logits"}
        with torch.inference_mode():
            want = net(torch.from_numpy(x)).numpy()
        assert out["logits"].shape == (n, 5)
        np.testing.assert_allclose(out["logits"], want, atol=1e-5, rtol=1e-5)
        assert np.abs(want).max() > 1e-3  # the comparison is not between zeros


def test_single_sample_is_unbatched(tiny: tuple[OnnxRunner, torch.nn.Module]) -> None:
    runner, net = tiny
    x = fresh_rng().standard_normal((3, 16, 16), dtype=np.float32)
    out = runner(pixels=x)
    assert out["logits"].shape == (5,)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)[None]).numpy()[0]
    np.testing.assert_allclose(out["logits"], want, atol=1e-5, rtol=1e-5)


def test_batch_above_max_is_an_error(tiny: tuple[OnnxRunner, torch.nn.Module]) -> None:
    runner, _ = tiny
    x = fresh_rng().standard_normal((9, 3, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"model 'tiny_onnx': batch of 9 exceeds max_batch_size 8"):
        runner(pixels=x)


def test_inputs_are_not_cast(tiny: tuple[OnnxRunner, torch.nn.Module]) -> None:
    runner, _ = tiny
    x = fresh_rng().standard_normal((2, 3, 16, 16))  # float64
    with pytest.raises(TypeError, match=r"input 'pixels': got a float64 array; config says FP32"):
        runner(pixels=x)
    with pytest.raises(TypeError, match=r"missing input\(s\) pixels"):
        runner(image=x.astype(np.float32))


def test_non_contiguous_input(tiny: tuple[OnnxRunner, torch.nn.Module]) -> None:
    runner, net = tiny
    x = fresh_rng().standard_normal((16, 16, 3, 3), dtype=np.float32).transpose(3, 2, 0, 1)
    assert not x.flags.c_contiguous
    with torch.inference_mode():
        want = net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    np.testing.assert_allclose(runner(pixels=x)["logits"], want, atol=1e-5, rtol=1e-5)


def test_datatype_disagreement_is_a_load_error(tmp_path: Path) -> None:
    export(seeded(TinyCNN()), (torch.zeros(2, 3, 16, 16),), tmp_path / "tiny" / "1" / ONNX_FILE, ["x"], ["y"])
    cfg = config(tmp_path, "tiny", "  pixels: {datatype: INT64, shape: [3, 16, 16]}", CNN_OUT)
    with pytest.raises(ValueError, match=r"model 'tiny' input 'pixels' \(model.onnx input 'x'\): config says INT64, model.onnx has FP32"):
        load_onnx(cfg, tmp_path / "tiny" / "1", "cpu")
    cfg = config(tmp_path, "tiny", CNN_IN, "  logits: {datatype: FP16, shape: [5]}")
    with pytest.raises(ValueError, match=r"output 'logits'.*config says FP16, model.onnx has FP32"):
        load_onnx(cfg, tmp_path / "tiny" / "1", "cpu")


def test_shape_and_count_disagreement_are_load_errors(tmp_path: Path) -> None:
    folder = tmp_path / "tiny" / "1"
    export(seeded(TinyCNN()), (torch.zeros(2, 3, 16, 16),), folder / ONNX_FILE, ["x"], ["y"])
    cfg = config(tmp_path, "tiny", "  pixels: {datatype: FP32, shape: [3, 32, 32]}", CNN_OUT)
    with pytest.raises(ValueError, match=r"input 'pixels'.*dimension 2 is 32 in the config, 16 in model.onnx"):
        load_onnx(cfg, folder, "cpu")
    cfg = config(tmp_path, "tiny", CNN_IN, CNN_OUT + "\n  extra: {datatype: FP32, shape: [1]}")
    with pytest.raises(ValueError, match=r"declares 2 output\(s\) \(logits, extra\); model.onnx has 1 \(y\)"):
        load_onnx(cfg, folder, "cpu")
    export(seeded(TinyCNN()), (torch.zeros(2, 3, 16, 16),), folder / ONNX_FILE, ["x"], ["y"], batch=False)
    cfg = config(tmp_path, "tiny", CNN_IN, CNN_OUT)
    with pytest.raises(ValueError, match=r"fixed batch dimension 2, but max_batch_size 8 needs it dynamic"):
        load_onnx(cfg, folder, "cpu")


def test_corrupt_file_raises(tmp_path: Path) -> None:
    folder = tmp_path / "broken" / "1"
    folder.mkdir(parents=True)
    (folder / ONNX_FILE).write_bytes(fresh_rng().bytes(512))
    cfg = config(tmp_path, "broken", CNN_IN, CNN_OUT)
    with pytest.raises(Exception, match=r"Load model from .*model.onnx failed"):
        load_onnx(cfg, folder, "cpu")
    export(seeded(TinyCNN()), (torch.zeros(2, 3, 16, 16),), folder / ONNX_FILE, ["x"], ["y"])
    data = (folder / ONNX_FILE).read_bytes()
    (folder / ONNX_FILE).write_bytes(data[: len(data) // 2])  # a half-copied file
    with pytest.raises(Exception, match=r"Load model from .*model.onnx failed"):
        load_onnx(cfg, folder, "cpu")


def test_two_outputs_mapped_by_name(tmp_path: Path) -> None:
    net = seeded(TwoHeads())
    folder = tmp_path / "heads" / "1"
    export(net, (torch.zeros(2, 3, 16, 16),), folder / ONNX_FILE, ["pixels"], ["probs", "logits"])
    cfg = config(tmp_path, "heads", CNN_IN, CNN_OUT + "\n  probs: {datatype: FP32, shape: [5]}")
    runner = load_onnx(cfg, folder, "cpu")
    assert runner.output_names == ("logits", "probs")
    assert runner.graph_outputs == {"logits": "logits", "probs": "probs"}
    x = fresh_rng().standard_normal((3, 3, 16, 16), dtype=np.float32)
    out = runner(pixels=x)
    assert list(out) == ["logits", "probs"]
    with torch.inference_mode():
        probs, logits = net(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out["probs"], probs.numpy(), atol=1e-5, rtol=1e-5)
    assert not np.allclose(out["logits"], out["probs"])  # a swap would show


def test_shared_name_at_another_position_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "heads" / "1"
    export(seeded(TwoHeads()), (torch.zeros(2, 3, 16, 16),), folder / ONNX_FILE, ["pixels"], ["probs", "logits"])
    cfg = config(tmp_path, "heads", CNN_IN, CNN_OUT + "\n  scores: {datatype: FP32, shape: [5]}")
    with pytest.raises(ValueError, match=r"output 'logits': it is output 0 in the config but 1 in model.onnx"):
        load_onnx(cfg, folder, "cpu")


def test_no_batch_model_with_two_inputs_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "mix" / "1"
    export(Mix(), (torch.zeros(4), torch.zeros(2, 3)), folder / ONNX_FILE, ["a", "b"], ["out"], batch=False)
    # the config lists b before a: matched by name, not position
    cfg = config(tmp_path, "mix", "  b: {datatype: FP32, shape: [2, 3]}\n  a: {datatype: FP32, shape: [4]}",
                 "  out: {datatype: FP32, shape: [4]}", mbs=0)
    runner = load_onnx(cfg, folder, "cpu")
    rng = fresh_rng()
    a = rng.standard_normal(4, dtype=np.float32)
    b = rng.standard_normal((2, 3), dtype=np.float32)
    out = runner(a=a, b=b)
    assert out["out"].shape == (4,)  # no batch added or removed
    np.testing.assert_allclose(out["out"], a * 2.0 + b.sum(), atol=1e-5, rtol=1e-5)
    export(Mix(), (torch.zeros(5), torch.zeros(2, 3)), folder / ONNX_FILE, ["a", "b"], ["out"], batch=False)
    with pytest.raises(ValueError, match=r"dimension 0 is 4 in the config, 5 in model.onnx"):
        load_onnx(cfg, folder, "cpu")


def test_bad_device(tiny: tuple[OnnxRunner, torch.nn.Module], tmp_path: Path) -> None:
    runner, _ = tiny
    with pytest.raises(ValueError, match=r"device must be cpu, cuda or auto"):
        load_onnx(runner.config, tmp_path / "tiny_onnx" / "1", "tpu")
    auto = load_onnx(runner.config, tmp_path / "tiny_onnx" / "1", "auto")
    assert auto.device in ("cpu", "cuda")


def test_bytes_are_onnx_strings(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])], "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, [None])])
    folder = tmp_path / "echo" / "1"
    folder.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), folder / ONNX_FILE)
    cfg = config(tmp_path, "echo", "  text: {datatype: BYTES, shape: []}", "  same: {datatype: BYTES, shape: []}")
    runner = load_onnx(cfg, folder, "cpu")
    words = [fresh_rng().bytes(6).hex().encode(), "héllo".encode()]
    out = runner(text=np.array(words, dtype=object))["same"]
    assert out.dtype == object
    assert out.tolist() == words
    assert runner(text=np.array(words[1], dtype=object))["same"] == words[1]  # one sample: unbatched


def test_onnxruntime_is_optional(tiny: tuple[OnnxRunner, torch.nn.Module], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, twinpipe.models._onnx; assert 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)  # importing the backend does not need it
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ImportError, match=r"backend onnx needs onnxruntime: pip install 'twinpipe\[onnx\]'"):
        load_onnx(tiny[0].config, tmp_path / "tiny_onnx" / "1", "cpu")


def test_sequence_state_is_an_extra_input_and_output(tmp_path: Path) -> None:
    folder = tmp_path / "acc" / "1"
    export(Accumulate(), (torch.zeros(2, 4), torch.zeros(2, 4)), folder / ONNX_FILE, ["x", "total_in"], ["mean", "total"])
    state = "sequence_batching:\n  state:\n    total: {input: total_in, output: total, datatype: FP32, shape: [4]}\n"
    cfg = config(tmp_path, "acc", "  x: {datatype: FP32, shape: [4]}", "  mean: {datatype: FP32, shape: [1]}", extra=state)
    runner = load_onnx(cfg, folder, "cpu")
    assert runner.input_names == ("x", "total_in")
    assert runner.output_names == ("mean", "total")
    rng = fresh_rng()
    total = np.zeros((3, 4), dtype=np.float32)
    for _ in range(3):
        x = rng.standard_normal((3, 4), dtype=np.float32)
        out = runner(x=x, total_in=total)
        np.testing.assert_allclose(out["total"], total + x, atol=1e-6)
        np.testing.assert_allclose(out["mean"], (total + x).mean(-1, keepdims=True), atol=1e-6)
        total = out["total"]


def test_a_repository_serves_onnx_models_and_a_corrupt_one_fails_alone(tmp_path: Path) -> None:
    net = seeded(TinyCNN())
    export(net, (torch.zeros(2, 3, 16, 16),), tmp_path / "good" / "1" / ONNX_FILE, ["x"], ["y"])
    config(tmp_path, "good", CNN_IN, CNN_OUT, extra="instances: {count: 2}\ndynamic_batching: {max_queue_delay_us: 1000}\n")
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / ONNX_FILE).write_bytes(os.urandom(300))
    config(tmp_path, "bad", CNN_IN, CNN_OUT)
    repo = load_repository(tmp_path)
    assert set(repo.models) == {"good"}
    assert "cannot load model 'bad' version 1 (onnx)" in str(repo.errors["bad"])
    rng = fresh_rng()
    xs = [rng.standard_normal((int(n), 3, 16, 16)).astype(np.float32) for n in rng.integers(1, 4, 12)]

    async def main() -> list[dict[str, np.ndarray]]:
        served = ServedModel(repo.get("good"))
        got = await asyncio.gather(*(served.infer({"pixels": x}) for x in xs))
        await served.close()
        return list(got)

    with torch.no_grad():
        for x, got in zip(xs, asyncio.run(main())):
            np.testing.assert_allclose(got["logits"], net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
