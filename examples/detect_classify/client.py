"""Find and name the coloured objects of an image with a twinpipe server, through Triton's gRPC client.

Serve the example repository, then run this client:

    twinpipe serve --repository examples/detect_classify/repository
    python examples/detect_classify/client.py --url localhost:8001             # a synthetic scene
    python examples/detect_classify/client.py --seed 3 --count 6              # another one
    python examples/detect_classify/client.py photo.jpg other.jpg             # your own images

The images go as encoded bytes, one BYTES element each of the input ``image`` (shape [n]), to the
``detect_classify`` pipeline: its python step decodes each, asks the ``detector`` model for boxes,
and sends every box's crop of an image to the ``classifier`` model as one batch. The answer has one
row per object — ``boxes`` (FP32 [m, 4]), ``labels`` (BYTES [m]), ``scores`` (FP32 [m]) and
``image_index`` (INT32 [m], which image the row belongs to) — printed as

    scene (seed 3): box (41, 17, 92, 60) red 0.998

Needs ``pip install 'tritonclient[grpc]'`` (and OpenCV for the synthetic scene).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tritonclient.grpc as grpcclient
from make_scene import make_scene
from tritonclient.utils import InferenceServerException

__all__ = ["OUTPUTS", "Detection", "detect", "main"]

OUTPUTS = ("boxes", "labels", "scores", "image_index")


class Detection(NamedTuple):
    image: int  #: the index of the image in the request
    box: tuple[float, float, float, float]  #: x1, y1, x2, y2 in pixels
    label: str
    score: float


def detect(client: grpcclient.InferenceServerClient, images: Sequence[bytes],
           model: str = "detect_classify") -> list[Detection]:
    """Send encoded images in one request; one :class:`Detection` per object found, in the server's order."""
    tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(list(images), dtype=object))
    result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput(name) for name in OUTPUTS])
    boxes, labels, scores, index = (result.as_numpy(name) for name in OUTPUTS)
    if boxes is None or labels is None or scores is None or index is None:
        raise InferenceServerException(f"model {model!r} did not return {', '.join(OUTPUTS)}")
    return [Detection(int(i), tuple(float(v) for v in box), label.decode() if isinstance(label, bytes) else str(label),  # type: ignore[arg-type]
                      float(score))
            for box, label, score, i in zip(boxes.reshape(-1, 4), labels.reshape(-1), scores.reshape(-1), index.reshape(-1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="images to send (default: a synthetic scene)")
    parser.add_argument("--url", default="localhost:8001", help="the server's gRPC address (default localhost:8001)")
    parser.add_argument("--model", default="detect_classify", help="the pipeline to ask (default detect_classify)")
    parser.add_argument("--seed", type=int, default=None, help="the synthetic scene's seed (default: a fresh one)")
    parser.add_argument("--count", type=int, default=None, help="objects in the synthetic scene (default: from the seed)")
    args = parser.parse_args(argv)

    if args.files:
        try:
            images = [(str(p), p.read_bytes()) for p in args.files]
        except OSError as e:
            print(f"cannot read: {e}", file=sys.stderr)
            return 1
    else:
        seed = int.from_bytes(os.urandom(4), "little") if args.seed is None else args.seed
        images = [(f"scene (seed {seed})", make_scene(seed, args.count).jpeg)]

    client = grpcclient.InferenceServerClient(url=args.url)
    try:
        found = detect(client, [data for _, data in images], args.model)
    except InferenceServerException as e:
        print(f"request to {args.url} failed: {e.message() or e}", file=sys.stderr)
        return 1
    for i, (shown, _) in enumerate(images):
        mine = [d for d in found if d.image == i]
        if not mine:
            print(f"{shown}: nothing found")
        for d in mine:
            box = ", ".join(f"{v:.0f}" for v in d.box)
            print(f"{shown}: box ({box}) {d.label} {d.score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
