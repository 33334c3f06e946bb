"""CPU op benchmark: twinpipe vs torchvision v2, OpenCV, torch, tokenizers, measured in one run.

    .venv/bin/python bench/ops_cpu.py [--repeat N] [--threads 1 2] [--only image|families]

Prints per-image median times (ms) and ratios, for each thread count, for: decoding a 1080p
JPEG; resizing 1080p → shorter side 256; and the classifier chain (resize 256, center-crop 224,
normalize, CHW float32) as twinpipe's fused op, as torchvision v2 on a uint8 tensor, as
OpenCV + NumPy, and the floor: a bare ``cv2.resize`` to 256 (one pass over the pixels).
The input is a real photograph (shipped with twinpipe) scaled to 1920×1080 and JPEG-encoded.
Then the other families' rows (bench/_classify.py, _detect.py — NMS vs torchvision
batched_nms —, _text.py — WordPiece vs tokenizers —, _tabular.py), one thread.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from _table import print_table
from torchvision.io import decode_jpeg
from torchvision.transforms import v2

from twinpipe.ops import image, set_num_threads
from twinpipe.pipelines import asset_path

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _photo_1080p() -> tuple[np.ndarray, bytes]:
    src = cv2.imread(str(asset_path("coffee.jpg")), cv2.IMREAD_COLOR_RGB)
    big = cv2.resize(src, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    ok, jpg = cv2.imencode(".jpg", big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return big, jpg.tobytes()


def _opencv_chain(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = 256 / min(h, w)
    nw, nh = (256, int(h * s)) if w <= h else (int(w * s), 256)
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    c = r[top : top + 224, left : left + 224].astype(np.float32) * np.float32(1 / 255)
    c = (c - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(c.transpose(2, 0, 1))


def run(repeat: int, threads: list[int]) -> None:
    img, jpg = _photo_1080p()
    # torchvision gets both layouts: contiguous CHW (what decode_jpeg gives) and a channels-last
    # view of the HWC array (its fastest uint8 path); the better one is the peer to beat
    tensor = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    tensor_cl = torch.from_numpy(img).permute(2, 0, 1)
    jpg_t = torch.frombuffer(bytearray(jpg), dtype=torch.uint8)
    tv_resize = v2.Resize(256, antialias=True)
    tv_chain = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    fused = image.resize_crop_normalize.bind(size=256, crop=224, mean=MEAN, std=STD)
    resize = image.resize.bind(size=256, fit="shorter", interpolation="bilinear", antialias=True)
    decode = image.decode.bind(color="rgb")
    h, w = img.shape[:2]
    nw = int(w * 256 / h)

    rows: list[tuple[str, str, Callable[[], Any]]] = [
        ("decode 1080p JPEG", "twinpipe image.decode", lambda: decode(jpg)),
        ("decode 1080p JPEG", "OpenCV imdecode", lambda: cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR_RGB)),
        ("decode 1080p JPEG", "torchvision decode_jpeg", lambda: decode_jpeg(jpg_t)),
        ("resize 1080p → 256", "twinpipe image.resize (bilinear, antialias)", lambda: resize(img)),
        ("resize 1080p → 256", "torchvision v2 Resize (antialias), CHW tensor", lambda: tv_resize(tensor)),
        ("resize 1080p → 256", "torchvision v2 Resize (antialias), channels-last view", lambda: tv_resize(tensor_cl)),
        ("resize 1080p → 256", "OpenCV INTER_AREA", lambda: cv2.resize(img, (nw, 256), interpolation=cv2.INTER_AREA)),
        ("resize 1080p → 256", "OpenCV INTER_LINEAR (no antialias)", lambda: cv2.resize(img, (nw, 256), interpolation=cv2.INTER_LINEAR)),
        ("classifier chain", "twinpipe resize_crop_normalize (fused)", lambda: fused(img)),
        ("classifier chain", "torchvision v2 chain, CHW tensor", lambda: tv_chain(tensor)),
        ("classifier chain", "torchvision v2 chain, channels-last view", lambda: tv_chain(tensor_cl)),
        ("classifier chain", "OpenCV INTER_AREA + NumPy", lambda: _opencv_chain(img)),
        ("classifier chain", "floor: bare cv2.resize INTER_LINEAR to 256", lambda: cv2.resize(img, (nw, 256), interpolation=cv2.INTER_LINEAR)),
    ]
    for n in threads:
        torch.set_num_threads(n)
        cv2.setNumThreads(n)
        set_num_threads(n)
        print_table(rows, repeat, f"image ops, {n} thread{'s' if n > 1 else ''}")


def run_families(repeat: int) -> None:
    """Post-processing, text and tabular rows (each module's own peers), on one thread."""
    import _classify
    import _detect
    import _tabular
    import _text

    torch.set_num_threads(1)
    set_num_threads(1)
    for module in (_classify, _detect, _text, _tabular):
        print_table(module.rows(), repeat, f"{module.__name__[1:]} ops, 1 thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=["image", "families"], help="run one part only")
    args = parser.parse_args()
    if args.only != "families":
        run(args.repeat, args.threads)
    if args.only != "image":
        run_families(max(10, args.repeat // 5))


if __name__ == "__main__":
    main()
