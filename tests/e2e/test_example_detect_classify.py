"""The detect-then-classify example end to end: ``twinpipe serve`` on examples/detect_classify/repository,
fresh synthetic JPEG scenes through tritonclient gRPC (and through the example's own client), every drawn
rectangle found (IoU > 0.7) and named by its colour, rows tagged with their image, and the classifier
called once per image with all of that image's crops as one batch."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg

from ._server import Server, load_example

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "detect_classify"
REPOSITORY = EXAMPLE / "repository"
OUTPUTS = ("boxes", "labels", "scores", "image_index")


scene_mod = load_example(EXAMPLE / "make_scene.py", "make_scene")  # as "make_scene": client.py imports it by that name
client_mod = load_example(EXAMPLE / "client.py", "detect_classify_client")


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _check_found(objects: Sequence[Any], boxes: np.ndarray, labels: Sequence[str], why: str) -> None:
    """Each drawn object has its own row (one to one) with IoU > 0.7 and the drawn colour's label."""
    assert len(boxes) == len(objects), f"{why}: {len(boxes)} rows for {len(objects)} drawn objects"
    taken: set[int] = set()
    for obj in objects:
        ious = [_iou(obj.box, box) for box in boxes]
        k = int(np.argmax(ious))
        assert ious[k] > 0.7, f"{why}: drawn {obj} best matches {boxes[k].tolist()} with IoU {ious[k]:.2f}"
        assert labels[k] == obj.label, f"{why}: drawn {obj} found as {labels[k]!r}"
        assert k not in taken, f"{why}: row {k} matches two drawn objects"
        taken.add(k)


def _infer(client: tg.InferenceServerClient, images: Sequence[bytes]) -> dict[str, np.ndarray]:
    tensor = tg.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(list(images), dtype=object))
    result = client.infer("detect_classify", [tensor], outputs=[tg.InferRequestedOutput(n) for n in OUTPUTS])
    out = {name: result.as_numpy(name) for name in OUTPUTS}
    assert all(v is not None for v in out.values())
    return out


def _classifier_counts(client: tg.InferenceServerClient) -> tuple[int, int]:
    """(execution_count, inference_count) of the classifier: batches run, crops classified."""
    stats = client.get_inference_statistics("classifier").model_stats[0]
    return int(stats.execution_count), int(stats.inference_count)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(REPOSITORY)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(server.grpc)
    yield c
    c.close()


def test_the_repository_is_ready(client: tg.InferenceServerClient) -> None:
    index = {m["name"]: m["state"] for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index == {"detector": "READY", "classifier": "READY", "detect_classify": "READY"}


def test_every_drawn_object_is_found_and_named(client: tg.InferenceServerClient) -> None:
    counts = [0, 1, 2, 3, 5, 6, 8]
    random.shuffle(counts)
    for count in counts:
        seed = _seed()
        why = f"scene seed={seed} count={count}"
        scene = scene_mod.make_scene(seed, count)
        before = _classifier_counts(client)
        out = _infer(client, [scene.jpeg])
        after = _classifier_counts(client)
        labels = [v.decode() for v in out["labels"]]
        _check_found(scene.objects, out["boxes"], labels, why)
        assert out["boxes"].shape == (count, 4) and out["boxes"].dtype == np.float32, why
        assert out["image_index"].tolist() == [0] * count, why
        assert ((out["scores"] > 0.5) & (out["scores"] <= 1)).all(), f"{why}: scores {out['scores']}"
        # all crops of the image went to the classifier as ONE batch; an empty scene skips it
        assert after[0] - before[0] == (1 if count else 0), f"{why}: classifier stats {before} -> {after}"
        assert after[1] - before[1] == count, f"{why}: classifier stats {before} -> {after}"


@pytest.mark.parametrize("first_empty", [False, True])
def test_a_batch_of_two_images_tags_rows_with_their_image(client: tg.InferenceServerClient, first_empty: bool) -> None:
    seeds = [_seed(), _seed()]
    counts = [0 if first_empty else random.randint(1, 4), random.randint(5, 7)]
    why = f"scenes seeds={seeds} counts={counts}"
    scenes = [scene_mod.make_scene(seed, count) for seed, count in zip(seeds, counts)]
    before = _classifier_counts(client)
    out = _infer(client, [s.jpeg for s in scenes])
    after = _classifier_counts(client)
    assert out["image_index"].dtype == np.int32, why
    assert out["image_index"].tolist() == [0] * counts[0] + [1] * counts[1], why
    labels = [v.decode() for v in out["labels"]]
    for i, scene in enumerate(scenes):
        rows = np.flatnonzero(out["image_index"] == i)
        _check_found(scene.objects, out["boxes"][rows], [labels[k] for k in rows], f"{why}, image {i}")
    # one classifier batch per image that has objects, holding exactly that image's crops
    assert after[0] - before[0] == sum(1 for c in counts if c), f"{why}: classifier stats {before} -> {after}"
    assert after[1] - before[1] == sum(counts), f"{why}: classifier stats {before} -> {after}"


def test_the_example_client(server: Server, client: tg.InferenceServerClient) -> None:
    seeds = [_seed(), _seed()]
    scenes = [scene_mod.make_scene(seed, count) for seed, count in zip(seeds, (3, 5))]
    found = client_mod.detect(client, [s.jpeg for s in scenes])
    for i, scene in enumerate(scenes):
        mine = [d for d in found if d.image == i]
        _check_found(scene.objects, np.array([d.box for d in mine]).reshape(-1, 4), [d.label for d in mine],
                     f"client.detect, scene seeds={seeds}, image {i}")

    # the command line: one printed line per object, "…: box (x1, y1, x2, y2) label score"
    seed = _seed()
    scene = scene_mod.make_scene(seed, 6)
    run = subprocess.run([sys.executable, str(EXAMPLE / "client.py"), "--url", server.grpc, "--seed", str(seed), "--count", "6"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [m.groups() for m in re.finditer(r"box \((\d+), (\d+), (\d+), (\d+)\) (\w+) ([\d.]+)", run.stdout)]
    assert len(lines) == len(run.stdout.splitlines()) == 6, f"seed={seed}:\n{run.stdout}"
    _check_found(scene.objects, np.array([[float(v) for v in g[:4]] for g in lines]), [g[4] for g in lines],
                 f"client.py --seed {seed}:\n{run.stdout}")
