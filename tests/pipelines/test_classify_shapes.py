"""The shipped classifier: shapes_net, trained by examples/shapes/train.py with the classify
pipeline as its DataLoader transform. Its files are small and committed, its two exports agree,
training is reproducible, and the train-mode transform augments while serve mode does not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.e2e._server import load_example
from twinpipe.dag import load_pipeline
from twinpipe.models import load_repository
from twinpipe.pipelines import models_dir

ROOT = Path(__file__).resolve().parents[2]


shapes = load_example(ROOT / "examples" / "shapes" / "shapes.py", "shapes")  # train.py imports it by this name
trainer = load_example(ROOT / "examples" / "shapes" / "train.py", "shapes_train")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def test_the_shipped_model_is_small_and_was_validated() -> None:
    folder = models_dir() / "shapes_net"
    assert (folder / "1" / "model.pt").stat().st_size < 1_000_000
    assert (models_dir() / "shapes_net_export" / "1" / "model.pt2").stat().st_size < 1_000_000
    record = json.loads((folder / "training.json").read_text())
    assert record["validation_accuracy"] >= 0.9 and record["validation_images"] >= 1000


def test_the_torchscript_and_torch_export_files_agree() -> None:
    repo = load_repository(models_dir())
    x = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).normal(size=(5, 3, 64, 64)).astype(np.float32)
    scripted = repo.get("shapes_net")(pixels=x)["logits"]
    exported = repo.get("shapes_net_export")(pixels=x)["logits"]
    np.testing.assert_allclose(scripted, exported, rtol=1e-5, atol=1e-5)


def test_training_is_reproducible(tmp_path: Path) -> None:
    runs = []
    for k in range(2):
        net, record = trainer.train(epochs=1, train_count=96, val_count=24, seed=5, workers=0)  # type: ignore[attr-defined]
        trainer.export(net, tmp_path / str(k), record)  # type: ignore[attr-defined]
        # (the files' bytes match across processes; within one, TorchScript numbers the second trace's class)
        runs.append(torch.jit.load(str(tmp_path / str(k) / "shapes_net" / "1" / "model.pt")).state_dict())  # type: ignore[no-untyped-call]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])  # the same weights, bit for bit
    assert any(float(w.abs().sum()) > 0 for w in runs[0].values())


def test_the_training_transform_augments_and_serving_does_not() -> None:
    pre = trainer.preprocessing()  # type: ignore[attr-defined]
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    jpeg, _ = shapes.make_image(rng)  # type: ignore[attr-defined]
    train = pre.dataset([jpeg], mode="train", seed=int(rng.integers(1 << 30)))
    draws = []
    for epoch in range(4):
        train.set_epoch(epoch)
        draws.append(train[0])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # flips and jitter differ by epoch
    served = pre.dataset([jpeg], mode="serve")[0]
    classify = load_pipeline("classify", models=load_repository(models_dir()).model_infos())
    direct = classify.select(outputs=["pre.tensor"])(image=np.array([jpeg], dtype=object))["pre.tensor"][0]
    np.testing.assert_array_equal(served.numpy(), direct)  # serve mode: exactly what the server computes


def test_training_and_serving_paths_agree_bit_for_bit(tmp_path: Path) -> None:
    from twinpipe.runtime._parity import parity

    images, _ = shapes.make_dataset(6, int.from_bytes(os.urandom(4), "little"))  # type: ignore[attr-defined]
    for k, jpeg in enumerate(images):
        (tmp_path / f"{k}.jpg").write_bytes(jpeg)
    result = parity("classify", [str(tmp_path)], workers=2)
    assert result.exit_code == 0
    compared = {row.tensor for row in result.rows}
    assert {"decode.image", "flip.image", "jitter.image", "pre.tensor", "model.logits", "names.labels"} <= compared
