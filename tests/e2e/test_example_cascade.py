"""examples/cascade end to end: ``twinpipe serve`` on its repository, driven by tritonclient and by
the example's own client. The small model answers what it is sure of, the big one the rest (in
one call per request), the threshold travels as a request parameter, and both models' statistics
show the split."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg

from ._server import Server, load_example

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cascade"
classify = load_example(EXAMPLE / "client.py", "cascade_client").classify  # the example's own client

LABELS = np.array(["up", "lower-left", "lower-right", "centre"])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(EXAMPLE / "repository")
    yield s
    s.stop()


def _truth(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true label of each point, and how far it is from a class border (degrees or radius)."""
    radius = np.hypot(points[:, 0], points[:, 1])
    angle = np.degrees(np.arctan2(points[:, 1], points[:, 0])) % 360
    sector = np.select([(angle >= 30) & (angle < 150), (angle >= 150) & (angle < 270)], [0, 1], 2)
    label = np.where(radius < 0.5, 3, sector)
    to_sector_border = np.min(np.abs((angle[:, None] - [30, 150, 270] + 180) % 360 - 180), axis=1)
    to_border = np.minimum(to_sector_border, np.abs(radius - 0.5) * 100)
    return LABELS[label], to_border


def _stats(client: tg.InferenceServerClient, model: str) -> int:
    return int(client.get_inference_statistics(model).model_stats[0].inference_count)


def test_the_cascade_sends_only_unsure_points_to_the_big_model(server: Server) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    points = np.random.default_rng(seed).uniform(-2, 2, (300, 2)).astype(np.float32)
    truth, margin = _truth(points)
    with tg.InferenceServerClient(server.grpc) as client:
        small0, big0 = _stats(client, "small"), _stats(client, "big")
        out = classify(client, points)
        small1, big1 = _stats(client, "small"), _stats(client, "big")
    labels = np.array([x.decode() for x in out["label"]])
    by = np.array([x.decode() for x in out["answered_by"]])
    clear = margin > 1.0  # a degree (or 0.01 of radius) away from a border: the answer is not a coin toss
    assert (labels[clear] == truth[clear]).all(), f"seed {seed}: {list(zip(points[clear][labels[clear] != truth[clear]], labels[clear][labels[clear] != truth[clear]]))}"
    radius = np.hypot(points[:, 0], points[:, 1])
    assert (by[radius < 0.45] == "big").all(), f"seed {seed}: the small model cannot tell the centre"
    assert (by[(radius > 1.5) & (margin > 10)] == "small").all(), f"seed {seed}: far from every border the small model is sure"
    assert (out["score"][by == "small"] >= 0.9).all()
    assert small1 - small0 == len(points)  # every point asked the small model
    assert big1 - big0 == int((by == "big").sum()) > 0  # only the unsure ones asked the big one


def test_the_threshold_is_a_request_parameter(server: Server) -> None:
    points = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).uniform(-2, 2, (40, 2)).astype(np.float32)
    with tg.InferenceServerClient(server.grpc) as client:
        never = classify(client, points, threshold=0.0)
        always = classify(client, points, threshold=1.01)
    assert {x.decode() for x in never["answered_by"]} == {"small"}
    assert {x.decode() for x in always["answered_by"]} == {"big"}


def test_the_example_client_prints_its_answers(server: Server) -> None:
    run = subprocess.run([sys.executable, str(EXAMPLE / "client.py"), "--url", server.grpc, "--points", "5", "--seed", "3"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 5 and all(" by the " in line and line.split(":")[1].split()[0] in LABELS for line in lines)
