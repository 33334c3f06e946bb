"""The hand-written server for bench/server.py: what a user writes without twinpipe's engine.

A bare grpc.aio KServe v2 server (bench/_floor.py's, for the metadata RPCs) whose ``classify``
ModelInfer runs, per request and on the event loop, the same code as the benchmark's classify
pipeline: ``image.decode`` → ``image.resize_crop_normalize`` (size 36, crop 32) for each JPEG,
the TorchScript CNN on the stacked batch, ``classify.softmax`` → ``classify.topk`` (k 5) — no
batching across requests, no executor, no checks beyond what the ops do. ``identity`` stays the
floor's echo.

Run: ``python bench/_handwritten.py --model REPO/cnn/1/model.pt [--host 127.0.0.1] [--port 0]``;
the last line printed is ``handwritten: listening grpc=HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import Floor, serve, split_bytes

from twinpipe.ops import classify, image
from twinpipe.runtime._proto import kserve_pb2 as pb

__all__ = ["HandWritten", "main"]


class HandWritten(Floor):
    """The floor's RPCs, and ``classify`` run by hand with twinpipe's ops and the CNN."""

    def __init__(self, model: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(model)).eval()  # type: ignore[no-untyped-call]

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.model_name != "classify":
            return await super().model_infer(request, context)
        jpegs = split_bytes(request.raw_input_contents[0])
        pixels = np.stack([image.resize_crop_normalize(image.decode(j, color="rgb"), size=36, crop=32) for j in jpegs])
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(pixels)).numpy()
        top = classify.topk(classify.softmax(logits), k=5)
        response = pb.ModelInferResponse(model_name="classify", model_version="1", id=request.id)
        for name, datatype, arr in (("scores", "FP32", top.values), ("classes", "INT64", top.indices)):
            response.outputs.add(name=name, datatype=datatype, shape=arr.shape)
            response.raw_output_contents.append(np.ascontiguousarray(arr).tobytes())
        return response


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="the TorchScript CNN (the benchmark repository's cnn)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port, HandWritten(args.model), name="handwritten"))


if __name__ == "__main__":
    main()
