"""The shipped yolo_postprocess pipeline: real-shaped YOLOv5 head outputs with planted objects come
back as those objects, in the original image's pixels; through the Pipeline API and `twinpipe run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import twinpipe.ops.detect  # noqa: F401  (registers the detect ops until the package does it)
from twinpipe.dag import load_pipeline
from twinpipe.ops import image

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "yolo_postprocess.yaml"
ROWS, CLASSES = 25200, 80  # a 640 × 640 YOLOv5 COCO model: 3 levels × 3 anchors, 80 classes


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _scene(rng: np.random.Generator, height: int, width: int, objects: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A head output for a ``height × width`` photo letterboxed to 640 by ``image.letterbox``.

    Returns (prediction [25200, 85], scale, offset, boxes [objects, 4] in the photo, classes).
    Each object fires in several rows, as a detector's neighbouring cells and anchors do: the exact
    box with the best score, and jittered copies with lower scores that NMS must remove. The other
    rows are background: random boxes whose objectness × class stays under the threshold.
    """
    _, scale, offset = image.letterbox(np.zeros((height, width, 3), np.uint8), size=640)
    pred = np.empty((ROWS, 5 + CLASSES), np.float32)
    xy, wh = rng.uniform(0, 640, (ROWS, 2)), rng.uniform(2, 300, (ROWS, 2))
    pred[:, :4] = np.concatenate([xy, wh], 1)
    pred[:, 4] = rng.uniform(0, 0.4, ROWS)
    pred[:, 5:] = rng.uniform(0, 0.6, (ROWS, CLASSES))  # objectness × class ≤ 0.24 < 0.25
    # objects well apart (a grid of cells), each inside the photo
    cells = rng.permutation(16)[:objects]
    boxes = np.empty((objects, 4))
    for k, cell in enumerate(cells):
        cx, cy = (cell % 4 + 0.5) * width / 4, (cell // 4 + 0.5) * height / 4
        w, h = rng.uniform(0.3, 0.9) * width / 4, rng.uniform(0.3, 0.9) * height / 4
        boxes[k] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    classes = rng.integers(0, CLASSES, objects)
    rows = rng.permutation(ROWS)[: objects * 6].reshape(objects, 6)
    for k in range(objects):
        x1, y1, x2, y2 = boxes[k] * np.tile(scale, 2) + np.tile(offset, 2)  # into the letterboxed image
        for j, row in enumerate(rows[k]):
            jitter = rng.normal(0, 0.03, 4) * [x2 - x1, y2 - y1, x2 - x1, y2 - y1] if j else np.zeros(4)
            pred[row, :4] = [(x1 + x2) / 2 + jitter[0], (y1 + y2) / 2 + jitter[1], x2 - x1 + jitter[2], y2 - y1 + jitter[3]]
            pred[row, 4] = 0.95 - 0.05 * j
            pred[row, 5:] = rng.uniform(0, 0.2, CLASSES)
            pred[row, 5 + classes[k]] = 0.9 - 0.01 * k
    return pred, scale, offset, boxes, classes


def _check(out: dict[str, np.ndarray], boxes: np.ndarray, classes: np.ndarray, height: int, width: int, msg: str) -> None:
    n = len(boxes)
    assert int(out["num_detections"][0]) == n, msg
    assert out["boxes"].shape == (100, 4) and out["classes"].shape == (100,), msg
    # highest score first: object k has score 0.95 * (0.9 - 0.01 k)
    np.testing.assert_array_equal(out["classes"][:n], classes, err_msg=msg)
    np.testing.assert_allclose(out["scores"][:n], 0.95 * (0.9 - 0.01 * np.arange(n)), rtol=1e-6, err_msg=msg)
    # float32 round trip through the letterbox: well under a pixel
    np.testing.assert_allclose(out["boxes"][:n], boxes, atol=0.05, err_msg=msg)
    assert (out["classes"][n:] == -1).all() and not out["boxes"][n:].any(), msg
    assert (out["boxes"][:n, 0::2] <= width).all() and (out["boxes"][:n, 1::2] <= height).all(), msg


def test_planted_objects_come_back_in_the_photos_pixels() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    pipe = load_pipeline(PIPELINE)
    scenes = []
    for height, width in [(480, 640), (1080, 1920), (700, 333), (640, 640)]:
        objects = int(rng.integers(1, 9))
        pred, scale, offset, boxes, classes = _scene(rng, height, width, objects)
        out = pipe(prediction=pred, scale=scale, offset=offset, image_size=np.array([height, width]))
        _check(out, boxes, classes, height, width, f"seed={seed} photo={height}x{width}")
        scenes.append((pred, scale, offset, np.array([height, width]), boxes, classes))
    # a dense batch of the four: fixed-shape outputs, each image with its own letterbox
    batch = pipe(prediction=np.stack([s[0] for s in scenes]), scale=np.stack([s[1] for s in scenes]),
                 offset=np.stack([s[2] for s in scenes]), image_size=np.stack([s[3] for s in scenes]))
    assert batch["boxes"].shape == (4, 100, 4) and batch["num_detections"].shape == (4, 1)
    for i, s in enumerate(scenes):
        _check({k: v[i] for k, v in batch.items()}, s[4], s[5], int(s[3][0]), int(s[3][1]), f"seed={seed} batch item {i}")


def test_an_image_without_objects_gives_no_detections() -> None:
    rng = np.random.default_rng(_seed())
    pred, scale, offset, _, _ = _scene(rng, 480, 640, 1)
    pred[:, 4] = 0.1
    out = load_pipeline(PIPELINE)(prediction=pred, scale=scale, offset=offset, image_size=np.array([480, 640]))
    assert out["num_detections"].tolist() == [0] and (out["classes"] == -1).all()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("twinpipe")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_twinpipe_validate_and_run(tmp_path: Path) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    height, width = 720, 1280
    pred, scale, offset, boxes, classes = _scene(rng, height, width, 5)
    files = {"prediction": pred, "scale": scale, "offset": offset, "image_size": np.array([height, width], np.int64)}
    for name, array in files.items():
        np.save(tmp_path / f"{name}.npy", array)
    result = _cli("validate", str(PIPELINE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    inputs = [arg for name in files for arg in ("-i", f"{name}=@{tmp_path / name}.npy")]
    result = _cli("run", "yolo_postprocess", *inputs, "--output", "npz", "--out", str(tmp_path / "out.npz"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz") as npz:
        out = {k: npz[k] for k in npz.files}
    _check(out, boxes, classes, height, width, f"seed={seed}")
    np.testing.assert_array_equal(out["boxes"], load_pipeline(PIPELINE)(**files)["boxes"])
