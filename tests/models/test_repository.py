"""The repository: versions and policies, isolation of broken models, model infos for pipelines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from twinpipe.dag import PipelineError, load_pipeline
from twinpipe.models._repository import load_repository

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _config(name: str, backend: str = "torchscript", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        backend: {backend}
        max_batch_size: 4
        inputs: {{x: {{datatype: FP32, shape: [3]}}}}
        outputs: {{y: {{datatype: FP32, shape: [3]}}}}
        device: cpu
    """) + extra


def _model(root: Path, name: str, versions: dict[int, float], extra: str = "") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.yaml").write_text(_config(name, extra=extra))
    for v, factor in versions.items():
        (root / name / str(v)).mkdir()
        torch.jit.save(torch.jit.script(Scale(factor)), str(root / name / str(v) / "model.pt"))


def test_latest_version_loads_by_default_and_policies_pick_others(tmp_path: Path) -> None:
    _model(tmp_path, "latest", {1: 1.0, 2: 2.0, 10: 10.0})
    _model(tmp_path, "all", {1: 1.0, 2: 2.0}, "version_policy: all\n")
    _model(tmp_path, "pick", {1: 1.0, 2: 2.0, 3: 3.0}, "version_policy: {specific: [1, 3]}\n")
    repo = load_repository(tmp_path)
    assert repo.errors == {}
    assert {n: sorted(v) for n, v in repo.models.items()} == {"latest": [10], "all": [1, 2], "pick": [1, 3]}
    x = np.ones((1, 3), np.float32)
    assert repo.get("pick")(x=x)["y"].tolist() == [[3.0] * 3]
    assert repo.get("pick", 1)(x=x)["y"].tolist() == [[1.0] * 3]
    with pytest.raises(KeyError, match="no loaded version 2"):
        repo.get("pick", 2)
    infos = repo.model_infos()
    assert set(infos) == {"latest", "latest:10", "all", "all:1", "all:2", "pick", "pick:1", "pick:3"}
    assert infos["all"].inputs[0].shape == (-1, 3)  # the batch dim comes first for validation
    assert infos["all:1"].fn is not None and infos["all:1"].fn(x=x)["y"].tolist() == [[1.0] * 3]


def test_a_broken_or_missing_model_fails_alone(tmp_path: Path) -> None:
    _model(tmp_path, "good", {1: 2.0})
    _model(tmp_path, "broken", {})
    (tmp_path / "broken" / "1").mkdir()
    (tmp_path / "broken" / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive")
    _model(tmp_path, "nofile", {})
    (tmp_path / "nofile" / "1").mkdir()
    _model(tmp_path, "noversion", {})
    _model(tmp_path, "badconfig", {1: 1.0})
    (tmp_path / "badconfig" / "config.yaml").write_text(_config("badconfig").replace("FP32", "FLOAT", 1))
    (tmp_path / "noconfig").mkdir()
    _model(tmp_path, "missing", {1: 1.0}, "version_policy: {specific: [1, 2]}\n")

    repo = load_repository(tmp_path)
    assert sorted(repo.models) == ["good"]
    assert repo.get("good")(x=np.ones((2, 3), np.float32))["y"].tolist() == [[2.0] * 3] * 2

    def message(name: str) -> tuple[str, int, str]:
        [d] = repo.errors[name].diagnostics
        return d.location.file, d.location.line, d.message

    file, _, text = message("broken")
    assert file == str(tmp_path / "broken" / "1" / "model.pt")
    assert text.startswith("cannot load model 'broken' version 1 (torchscript): ")
    assert message("nofile") == (str(tmp_path / "nofile" / "config.yaml"), 2,
                                 f"backend torchscript needs {tmp_path / 'nofile' / '1' / 'model.pt'}, which does not exist")
    assert message("noversion")[2].startswith("model 'noversion' has no version folders")
    assert message("badconfig")[1:] == (4, "unknown datatype 'FLOAT'; did you mean 'FP32'? datatypes are: "
                                            "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES")
    assert message("noconfig")[2] == "model folder 'noconfig' has no config.yaml"
    assert message("missing")[1:] == (7, f"version_policy names version 2, but there is no folder {tmp_path / 'missing' / '2'}")
    with pytest.raises(KeyError, match="failed to load"):
        repo.get("broken")


def test_warmup_runs_at_load_and_a_failing_one_is_that_models_error(tmp_path: Path) -> None:
    _model(tmp_path, "warm", {1: 1.0}, "warmup: {batch_size: 2}\n")
    (tmp_path / "cold").mkdir()
    (tmp_path / "cold" / "1").mkdir()
    (tmp_path / "cold" / "1" / "m.py").write_text("def build():\n    def run(x):\n        raise RuntimeError('boom')\n    return run\n")
    (tmp_path / "cold" / "config.yaml").write_text(_config("cold", "python", "factory: m:build\nwarmup: true\n"))
    repo = load_repository(tmp_path)
    assert sorted(repo.models) == ["warm"]
    [d] = repo.errors["cold"].diagnostics
    assert d.message == "model 'cold' version 1 failed its warmup: RuntimeError: boom"


def test_a_pipeline_model_step_is_type_checked_against_the_config(tmp_path: Path) -> None:
    _model(tmp_path / "repo", "scale", {1: 2.0, 2: 3.0}, "version_policy: all\n")
    repo = load_repository(tmp_path / "repo")
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""\
        name: good
        inputs: {x: {datatype: FP32, shape: [-1, 3]}}
        outputs: {y: {datatype: FP32, shape: [-1, 3], from: net.y}}
        steps:
          net: {model: "scale:1", inputs: {x: x}}
    """))
    out = load_pipeline(good, models=repo.model_infos())(x=np.ones(3, np.float32))
    assert out["y"].tolist() == [2.0, 2.0, 2.0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        name: bad
        inputs: {x: {datatype: INT64, shape: [-1, 3]}}
        outputs: {y: {datatype: FP32, shape: [-1, 3], from: net.y}}
        steps:
          net: {model: scale, inputs: {x: x}}
    """))
    with pytest.raises(PipelineError) as info:
        load_pipeline(bad, models=repo.model_infos())
    [d] = info.value.diagnostics
    assert (d.location.line, d.step) == (5, "net")
    assert "input 'x' of model 'scale': expected FP32 [-1, 3], found INT64 [-1, 3]" in d.message


def test_a_model_without_a_batch_dimension_takes_pipeline_tensors_whole(tmp_path: Path) -> None:
    (tmp_path / "repo" / "lin" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "lin" / "1" / "m.py").write_text("def build():\n    return lambda x: (x * 2, x.sum())\n")
    (tmp_path / "repo" / "lin" / "config.yaml").write_text(textwrap.dedent("""\
        name: lin
        backend: python
        factory: m:build
        max_batch_size: 0
        inputs: {x: {datatype: FP32, shape: [-1, 4]}}
        outputs: {y: {datatype: FP32, shape: [-1, 4]}, total: {datatype: FP32, shape: []}}
        """))
    pipe_text = textwrap.dedent("""\
        name: p
        inputs: {x: {datatype: FP32, shape: [-1, 4]}}
        outputs: {y: {datatype: FP32, shape: [-1, 4], from: lin.y}}
        steps:
          lin: {model: lin, inputs: {x: x}}
        """)
    (tmp_path / "p.yaml").write_text(pipe_text)
    repo = load_repository(tmp_path / "repo")
    pipe = load_pipeline(tmp_path / "p.yaml", models=repo.model_infos())
    x = np.random.default_rng().standard_normal((3, 4)).astype(np.float32) + 5
    np.testing.assert_array_equal(pipe(x=x)["y"], x * 2)  # the batch of 3 as one tensor
    # declared per sample ([4]) it cannot take the pipeline's batch: a clear type error at load
    (tmp_path / "repo" / "lin" / "config.yaml").write_text(
        (tmp_path / "repo" / "lin" / "config.yaml").read_text().replace("shape: [-1, 4]", "shape: [4]"))
    with pytest.raises(PipelineError, match=r"step 'lin': input 'x' of model 'lin': expected FP32 \[4\], found FP32 \[-1, 4\]"):
        load_pipeline(tmp_path / "p.yaml", models=load_repository(tmp_path / "repo").model_infos())


def test_a_sequence_models_state_is_wired_by_a_pipeline_step_itself(tmp_path: Path) -> None:
    (tmp_path / "repo" / "acc" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "acc" / "1" / "m.py").write_text("def build():\n    return lambda x, h: (x + h, x + h)\n")
    (tmp_path / "repo" / "acc" / "config.yaml").write_text(textwrap.dedent("""\
        name: acc
        backend: python
        factory: m:build
        max_batch_size: 4
        inputs: {x: {datatype: FP32, shape: [2]}}
        outputs: {y: {datatype: FP32, shape: [2]}}
        sequence_batching:
          state: {h: {input: h_in, output: h_out, datatype: FP32, shape: [2], initial: 1}}
        """))
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""\
        name: p
        inputs: {x: {datatype: FP32, shape: [-1, 2]}, h: {datatype: FP32, shape: [-1, 2]}}
        outputs: {y: {datatype: FP32, shape: [-1, 2], from: acc.y}, h: {datatype: FP32, shape: [-1, 2], from: acc.h_out}}
        steps:
          acc: {model: acc, inputs: {x: x, h_in: h}}
        """))
    pipe = load_pipeline(tmp_path / "p.yaml", models=load_repository(tmp_path / "repo").model_infos())
    x, h = np.full((2, 2), 3, np.float32), np.full((2, 2), 4, np.float32)
    out = pipe(x=x, h=h)
    np.testing.assert_array_equal(out["y"], x + h)
    np.testing.assert_array_equal(out["h"], x + h)
