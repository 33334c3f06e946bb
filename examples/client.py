"""Classify images with a twinpipe server, through Triton's gRPC client.

Start a server with the shipped default repository, then run this client:

    twinpipe serve                      # serves classify (shapes_net) and more on localhost:8001
    python examples/client.py           # six fresh shape images, drawn here (examples/shapes)
    python examples/client.py a.jpg b.png --url host:8001
    python examples/client.py --model classify_color    # the shipped photos, named by colour

Each image is sent as encoded JPEG/PNG bytes — one BYTES element of the input ``image`` (shape
[1]) — and decoded and pre-processed by the pipeline inside the server. The answer is the outputs
``labels`` (BYTES [1, 3]) and ``scores`` (FP32 [1, 3]), printed as

    shape 1 (a star): star (0.998), cross (0.001), triangle (0.000)

Any Triton (KServe v2) client works the same way; this one needs ``pip install 'tritonclient[grpc]'``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from twinpipe.pipelines import asset_path

__all__ = ["DEFAULT_FILES", "classify", "main"]

#: the shipped sample photos sent to other models than classify when no file is given
DEFAULT_FILES = ("coffee.jpg", "chelsea.jpg", "astronaut.png")


def classify(client: grpcclient.InferenceServerClient, model: str, data: bytes) -> list[tuple[str, float]]:
    """One encoded image → its (label, score) pairs, best first."""
    image = grpcclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([data], dtype=object))
    outputs = [grpcclient.InferRequestedOutput("labels"), grpcclient.InferRequestedOutput("scores")]
    result = client.infer(model, [image], outputs=outputs)
    labels, scores = result.as_numpy("labels"), result.as_numpy("scores")
    if labels is None or scores is None:
        raise InferenceServerException(f"model {model!r} did not return labels and scores")
    return [(label.decode() if isinstance(label, bytes) else str(label), float(score))
            for label, score in zip(labels.reshape(-1), scores.reshape(-1))]


def _shapes(count: int, seed: int | None) -> list[tuple[str, bytes]]:
    """``count`` fresh images of examples/shapes, named with their true shape."""
    spec = importlib.util.spec_from_file_location("twinpipe_example_shapes", Path(__file__).with_name("shapes") / "shapes.py")
    assert spec is not None and spec.loader is not None
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    rng = np.random.default_rng(seed)
    images = [shapes.make_image(rng) for _ in range(count)]
    return [(f"shape {k + 1} (a {shapes.CLASSES[label]})", jpeg) for k, (jpeg, label) in enumerate(images)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help="images to classify (default: fresh shapes for classify, the shipped photos for other models)")
    port = os.environ.get("TWINPIPE_GRPC_PORT", "8001")
    parser.add_argument("--url", default=f"localhost:{port}",
                        help="the server's gRPC address (default localhost:$TWINPIPE_GRPC_PORT, else localhost:8001)")
    parser.add_argument("--model", default="classify", help="the pipeline or model to ask (default classify)")
    parser.add_argument("--count", type=int, default=6, help="how many shapes to draw when no file is given (default 6)")
    parser.add_argument("--seed", type=int, default=None, help="the shapes' seed (default: fresh)")
    args = parser.parse_args(argv)
    samples: list[tuple[str, bytes | Path]]
    if args.files:
        samples = [(str(p), p) for p in args.files]
    elif args.model == "classify":
        samples = list(_shapes(args.count, args.seed))
    else:
        samples = [(name, asset_path(name)) for name in DEFAULT_FILES]

    client = grpcclient.InferenceServerClient(url=args.url)
    failed = 0
    for shown, source in samples:
        try:
            data = source.read_bytes() if isinstance(source, Path) else source
            answer = classify(client, args.model, data)
        except OSError as e:
            print(f"{shown}: cannot read: {e.strerror or e}", file=sys.stderr)
            failed += 1
            continue
        except InferenceServerException as e:
            print(f"{shown}: request to {args.url} failed: {e.message() or e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{shown}: " + ", ".join(f"{label} ({score:.3f})" for label, score in answer))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
