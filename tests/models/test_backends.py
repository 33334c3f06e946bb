"""Backends: a real tiny CNN saved as TorchScript, as torch.export and built by a Python factory,
served through each and compared to calling the module; a pipeline with a model step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from twinpipe.dag import load_pipeline
from twinpipe.models._backends import TorchRunner
from twinpipe.models._repository import load_repository
from twinpipe.ops import classify, image
from twinpipe.pipelines import asset_path

# saving TorchScript is deprecated in torch ≥ 2.9 but still what deployed .pt files are
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

CONFIG = """\
name: {name}
backend: {backend}
max_batch_size: 8
inputs:
  pixels: {{datatype: FP32, shape: [3, 32, 32]}}
outputs:
  logits: {{datatype: FP32, shape: [5]}}
device: cpu
{extra}"""

FACTORY = """\
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
"""


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    return net.eval()


def write_model(repo: Path, name: str, backend: str, net: torch.nn.Module, extra: str = "") -> None:
    folder = repo / name / "1"
    folder.mkdir(parents=True)
    (repo / name / "config.yaml").write_text(CONFIG.format(name=name, backend=backend, extra=extra))
    example = torch.zeros(2, 3, 32, 32)
    if backend == "torchscript":
        torch.jit.save(torch.jit.trace(net, example), str(folder / "model.pt"))
    elif backend == "torch_export":
        batch = torch.export.Dim("batch", min=1, max=8)
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(folder / "model.pt2"))
    else:
        (folder / "tiny_factory.py").write_text(FACTORY)


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    net = tiny_cnn()
    write_model(root, "ts", "torchscript", net)
    write_model(root, "ex", "torch_export", net)
    write_model(root, "py", "python", net, extra="factory: tiny_factory:build\n")
    return root


@pytest.mark.parametrize("name", ["ts", "ex", "py"])
def test_each_backend_matches_the_module(repo_path: Path, name: str) -> None:
    repo = load_repository(repo_path)
    assert repo.errors == {}
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = tiny_cnn()(torch.from_numpy(x)).numpy()
    got = repo.get(name)(pixels=x)
    assert set(got) == {"logits"} and isinstance(got["logits"], np.ndarray)
    np.testing.assert_allclose(got["logits"], want, rtol=1e-5, atol=1e-6)


def test_a_single_sample_gets_a_batch_of_one_and_back(repo_path: Path) -> None:
    model = load_repository(repo_path).get("ts")
    x = np.random.default_rng(2).standard_normal((3, 32, 32)).astype(np.float32)
    got = model(pixels=x)["logits"]
    assert got.shape == (5,)
    np.testing.assert_allclose(got, model(pixels=x[None])["logits"][0], rtol=1e-6)


def test_a_batch_beyond_max_batch_size_is_refused(repo_path: Path) -> None:
    model = load_repository(repo_path).get("ts")
    with pytest.raises(ValueError, match="exceeds max_batch_size 8"):
        model(pixels=np.zeros((9, 3, 32, 32), np.float32))


def test_outputs_are_named_from_a_tuple_or_a_dict(tmp_path: Path) -> None:
    root = tmp_path / "two"
    (root / "1").mkdir(parents=True)
    (root / "1" / "heads.py").write_text(textwrap.dedent("""\
        def as_tuple():
            return lambda x: (x * 2, x + 1)
        def as_dict():
            return lambda x: {"plus": x + 1, "double": x * 2}
    """))
    for factory in ("heads:as_tuple", "heads:as_dict"):
        (root / "config.yaml").write_text(textwrap.dedent(f"""\
            name: two
            backend: python
            factory: {factory}
            inputs: {{x: {{datatype: INT64, shape: [2]}}}}
            outputs: {{double: {{datatype: INT64, shape: [2]}}, plus: {{datatype: INT64, shape: [2]}}}}
        """))
        repo = load_repository(tmp_path)
        out = repo.get("two")(x=np.array([1, 2]))
        assert out["double"].tolist() == [2, 4] and out["plus"].tolist() == [2, 3], factory


def test_inputs_reach_torch_without_a_copy(repo_path: Path) -> None:
    seen: list[tuple[torch.Tensor, bool]] = []

    def model(t: torch.Tensor) -> torch.Tensor:
        seen.append((t, torch.is_inference_mode_enabled()))
        return t.sum(dim=(2, 3))[:, :1].repeat(1, 5)

    runner = load_repository(repo_path).get("ts").runner
    x = np.ones((2, 3, 32, 32), np.float32)
    out = TorchRunner(runner.config, model, runner.device)(pixels=x)
    assert seen[0][0].data_ptr() == x.ctypes.data  # torch.from_numpy shares the buffer
    assert seen[0][1] is True  # run under torch.inference_mode()
    assert out["logits"].tolist() == [[1024.0] * 5] * 2


def test_pipeline_with_a_model_step_runs_on_the_photo(repo_path: Path, tmp_path: Path) -> None:
    repo = load_repository(repo_path)
    path = tmp_path / "classify.yaml"
    path.write_text(textwrap.dedent("""\
        name: classify
        inputs:
          image: {datatype: BYTES, shape: [-1]}
        outputs:
          probs: {datatype: FP32, shape: [-1, 5], from: soft.probs}
        steps:
          decode: {op: image.decode, inputs: {data: image}}
          pre:
            op: image.resize_crop_normalize
            inputs: {image: decode.image}
            params: {size: 40, crop: 32}
          net: {model: ex, inputs: {pixels: pre.tensor}}
          soft: {op: classify.softmax, inputs: {logits: net.logits}}
    """))
    pipe = load_pipeline(path, models=repo.model_infos())
    data = asset_path("coffee.jpg").read_bytes()
    probs = pipe(image=data)["probs"]
    pixels = image.resize_crop_normalize(image.decode(data), size=40, crop=32)
    with torch.no_grad():
        logits = tiny_cnn()(torch.from_numpy(np.ascontiguousarray(pixels))[None]).numpy()[0]
    np.testing.assert_allclose(probs, classify.softmax(logits), rtol=1e-5, atol=1e-7)
    assert probs.shape == (5,) and abs(float(probs.sum()) - 1) < 1e-5
