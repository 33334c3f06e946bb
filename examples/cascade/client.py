"""Classify random points through the cascade pipeline of a twinpipe server, and show which model
answered each one.

    twinpipe serve --repository examples/cascade/repository
    python examples/cascade/client.py [--url localhost:8001] [--points 12] [--threshold 0.9]

The pipeline's Python step asks the small model first and sends the points it is unsure of to
the big model, in one call; ``threshold`` travels as a request parameter that the step reads.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

__all__ = ["classify", "main"]


def classify(client: grpcclient.InferenceServerClient, points: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """Points [n, 2] → their labels, scores and the model that answered each."""
    features = grpcclient.InferInput("features", list(points.shape), "FP32")
    features.set_data_from_numpy(points.astype(np.float32))
    params = {"threshold": threshold} if threshold is not None else None
    result = client.infer("cascade", [features], parameters=params)
    return {name: result.as_numpy(name) for name in ("label", "score", "answered_by")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="localhost:8001")
    ap.add_argument("--points", type=int, default=12)
    ap.add_argument("--threshold", type=float, default=None, help="the small model's confidence needed (default: the pipeline's 0.9)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    points = np.random.default_rng(args.seed).uniform(-2, 2, (args.points, 2)).astype(np.float32)
    with grpcclient.InferenceServerClient(args.url) as client:
        out = classify(client, points, args.threshold)
    for p, label, score, who in zip(points, out["label"], out["score"], out["answered_by"]):
        print(f"({p[0]:+.2f}, {p[1]:+.2f}): {label.decode():<12} {score:.3f}  by the {who.decode()} model")


if __name__ == "__main__":
    main()
