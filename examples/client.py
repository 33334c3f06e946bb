"""Name the colours of photos with a twinpipe server, through Triton's gRPC client.

Start a server with the shipped default repository, then run this client:

    twinpipe serve                      # serves classify_color (and color_net) on localhost:8001
    python examples/client.py           # the shipped sample photos
    python examples/client.py a.jpg b.png --url host:8001

Each file is sent as it is on disk — encoded JPEG/PNG bytes, one BYTES element of the input
``image`` (shape [1]) — and decoded and pre-processed by the pipeline inside the server. The
answer is the outputs ``labels`` (BYTES [1, 3]) and ``scores`` (FP32 [1, 3]), printed as

    coffee.jpg: brown (0.988), gray (0.011), pink (0.002)

Any Triton (KServe v2) client works the same way; this one needs ``pip install 'tritonclient[grpc]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from twinpipe.pipelines import asset_path

__all__ = ["DEFAULT_FILES", "classify", "main"]

#: the shipped sample photos sent when no file is given
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help=f"images to classify (default: the shipped {', '.join(DEFAULT_FILES)})")
    parser.add_argument("--url", default="localhost:8001", help="the server's gRPC address (default localhost:8001)")
    parser.add_argument("--model", default="classify_color", help="the pipeline or model to ask (default classify_color)")
    args = parser.parse_args(argv)
    files = [(str(p), p) for p in args.files] or [(name, asset_path(name)) for name in DEFAULT_FILES]

    client = grpcclient.InferenceServerClient(url=args.url)
    failed = 0
    for shown, path in files:
        try:
            answer = classify(client, args.model, path.read_bytes())
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
