"""The shipped model repository and ``classify_color``: ``color_net`` loads, computes what its
definition says (the CIE L*a*b* distance of the average colour to 12 named colours, checked
against a NumPy reference and OpenCV's Lab), names solid colours encoded as real JPEG and PNG,
batches exactly as it runs alone, and its generator rewrites the shipped file byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from twinpipe.dag import Pipeline, load_pipeline
from twinpipe.models import Repository, load_repository
from twinpipe.ops import image
from twinpipe.pipelines import asset_path, models_dir

# CSS's named colours (brown: CSS's saddlebrown), the colours color_net is defined to name
CSS = {
    "red": (255, 0, 0), "orange": (255, 165, 0), "yellow": (255, 255, 0), "green": (0, 128, 0),
    "cyan": (0, 255, 255), "blue": (0, 0, 255), "purple": (128, 0, 128), "pink": (255, 192, 203),
    "brown": (139, 69, 19), "black": (0, 0, 0), "gray": (128, 128, 128), "white": (255, 255, 255),
}
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
PHOTOS = ["coffee.jpg", "chelsea.jpg", "astronaut.png"]
# per-channel offsets up to SHADE (plus JPEG's error at quality ≥ 90, a few levels) stay nearest
# their own colour: the 12 colours' L*a*b* cells each hold the ±16 cube around their colour
SHADE = 10


def _rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def repo() -> Repository:
    return load_repository(models_dir())


@pytest.fixture(scope="module")
def pipe(repo: Repository) -> Pipeline:
    return load_pipeline("classify_color", models=repo.model_infos())


def _labels_file() -> list[str]:
    return asset_path("color_labels.txt").read_text(encoding="utf-8").split()


def _lab(linear: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of linear sRGB ``[..., 3]``, in float64: the CIE formulas."""
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    t = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((np.maximum(srgb, 0.04045) + 0.055) / 1.055) ** 2.4)


def _reference_logits(pixels: np.ndarray) -> np.ndarray:
    """color_net's definition: un-normalise, average in linear light, -ΔE² / 200 to each colour."""
    srgb = np.clip(pixels.astype(np.float64) * STD[:, None, None] + MEAN[:, None, None], 0, 1)
    average = _linear(srgb).mean(axis=(-2, -1))
    palette = _lab(_linear(np.array([CSS[n] for n in _labels_file()], np.float64) / 255))
    return -((_lab(average)[:, None, :] - palette[None]) ** 2).sum(-1) / 200


def _solid(rgb: np.ndarray, h: int, w: int, fmt: str, rng: np.random.Generator) -> bytes:
    bgr = np.ascontiguousarray(np.broadcast_to(rgb[::-1].astype(np.uint8), (h, w, 3)))
    params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(90, 101))] if fmt == ".jpg" else []
    ok, data = cv2.imencode(fmt, bgr, params)
    assert ok
    return data.tobytes()


def test_the_shipped_repository_holds_color_net_as_its_config_declares(repo: Repository) -> None:
    assert repo.errors == {}
    model = repo.get("color_net")
    cfg = model.config
    assert (cfg.backend, cfg.max_batch_size, cfg.device) == ("torchscript", 32, "cpu")
    assert [(d.name, d.datatype, d.shape) for d in cfg.inputs] == [("pixels", "FP32", (3, 64, 64))]
    assert [(d.name, d.datatype, d.shape) for d in cfg.outputs] == [("logits", "FP32", (len(CSS),))]
    assert "issue 8" in cfg.description
    module: Any = model.runner.model
    # the label file is the model's own output order; its constants are the op's defaults
    assert list(module.labels) == _labels_file() == list(CSS)
    defaults = {p.name: p.default for p in image.resize_crop_normalize.params}
    np.testing.assert_array_equal(module.mean.numpy(), np.array(defaults["mean"]))
    np.testing.assert_array_equal(module.std.numpy(), np.array(defaults["std"]))
    assert (model.path / "model.pt").stat().st_size < 32_000


def test_the_lab_reference_is_opencvs() -> None:
    rng = _rng()
    srgb = rng.random((500, 3)).astype(np.float32)
    srgb[:12] = np.array(list(CSS.values()), np.float32) / 255
    want = cv2.cvtColor(srgb[None], cv2.COLOR_RGB2Lab)[0]  # float input: sRGB curve, D65
    # OpenCV interpolates its curves (seen up to 0.51 off, once in ~10 runs of 500 colours); a wrong
    # white point or matrix is off by several units
    np.testing.assert_allclose(_lab(_linear(srgb.astype(np.float64))), want, atol=1.0)


def test_color_net_computes_its_definition(repo: Repository) -> None:
    rng = _rng()
    n = int(rng.integers(2, 9))
    # random images: noise around a random colour, so the averages cover the colour space
    base = rng.random((n, 3, 1, 1))
    srgb = np.clip(base + rng.normal(0, rng.uniform(0.01, 0.3), (n, 3, 64, 64)), 0, 1)
    pixels = ((srgb - MEAN[:, None, None]) / STD[:, None, None]).astype(np.float32)
    got = repo.get("color_net")(pixels=pixels)["logits"]
    assert got.dtype == np.float32 and got.shape == (n, len(CSS))
    np.testing.assert_allclose(got, _reference_logits(pixels), rtol=1e-6, atol=1e-5)
    # out-of-range pixels (a float32 image beyond [0, 1]) are clamped, as the reference does
    wild = (pixels * 3).astype(np.float32)
    np.testing.assert_allclose(repo.get("color_net")(pixels=wild)["logits"], _reference_logits(wild), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("fmt", [".jpg", ".png"])
def test_solid_colours_are_named(pipe: Pipeline, fmt: str) -> None:
    rng = _rng()
    names, batch = [], []
    for name, rgb in CSS.items():
        for _ in range(2):
            shade = np.clip(np.array(rgb) + rng.integers(-SHADE, SHADE + 1, 3), 0, 255)
            h, w = (int(v) | 1 for v in rng.integers(15, 152, 2))  # odd sizes, some below 64
            names.append(name.encode())
            batch.append(_solid(shade, h, w, fmt, rng))
    out = pipe(image=batch)
    assert out["labels"].shape == (len(batch), 3) and out["scores"].shape == (len(batch), 3)
    assert list(out["labels"][:, 0]) == names
    assert np.all(out["scores"][:, 0] > out["scores"][:, 1])


def test_a_batch_is_each_image_alone(pipe: Pipeline) -> None:
    rng = _rng()
    batch = [asset_path(p).read_bytes() for p in PHOTOS]
    for name in rng.choice(list(CSS), 3, replace=False):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        batch.append(_solid(np.array(CSS[str(name)]), h, w, str(rng.choice([".jpg", ".png"])), rng))
    noise = rng.integers(0, 256, (int(rng.integers(30, 120)), int(rng.integers(30, 120)), 3), dtype=np.uint8)
    batch.append(cv2.imencode(".png", noise)[1].tobytes())
    order = rng.permutation(len(batch))
    batch = [batch[i] for i in order]
    together = pipe(image=batch)
    for i, data in enumerate(batch):
        alone = pipe(image=data)
        np.testing.assert_array_equal(together["labels"][i], alone["labels"])
        np.testing.assert_allclose(together["scores"][i], alone["scores"], rtol=1e-6, atol=1e-7)


def test_the_shipped_photos_get_the_colours_nearest_their_average(pipe: Pipeline) -> None:
    batch = [asset_path(p).read_bytes() for p in PHOTOS]
    out = pipe(image=batch)
    pixels = pipe.select(outputs=["pre.tensor"])(image=batch)["pre.tensor"]
    logits = _reference_logits(pixels)
    labels = np.array([n.encode() for n in _labels_file()], dtype=object)
    for row, scores, ref in zip(out["labels"], out["scores"], logits):
        assert len(set(row)) == 3 and set(row) <= set(labels)
        assert np.all(np.diff(scores) <= 0) and np.all(scores > 0) and scores.sum() <= 1 + 1e-6
        want = np.exp(ref - ref.max()) / np.exp(ref - ref.max()).sum()
        order = np.argsort(-want, kind="stable")[:3]
        assert list(row) == list(labels[order])
        np.testing.assert_allclose(scores, want[order], atol=1e-5)


def test_the_generator_rewrites_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    # a fresh process, as the generator asks (TorchScript renames a class scripted twice in one)
    script = models_dir() / "build_color_net.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shipped = models_dir() / "color_net" / "1" / "model.pt"
    assert (tmp_path / "model.pt").read_bytes() == shipped.read_bytes(), f"{shipped} is not what {script.name} writes: rerun it"
    assert (tmp_path / "color_labels.txt").read_bytes() == asset_path("color_labels.txt").read_bytes()
