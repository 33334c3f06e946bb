"""Benchmark rows for classification and segmentation post-processing: twinpipe first, then torch.

``rows()`` gives ``(task, implementation, fn)`` for ``bench/ops_cpu.py``; run this file on its
own (``.venv/bin/python bench/_classify.py [--repeat N] [--threads 1 2]``) to print the rows'
median times and their ratios to twinpipe. Inputs: a batch of 64 rows of 1000 float32 logits
(ImageNet-sized), and a 21-class 512 × 512 segmentation output. The twinpipe rows time the op
call as a user makes it (dispatch and batch checks included), with the kernel alone beside it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _table import print_table

from twinpipe.ops.classify import log_softmax, softmax, topk
from twinpipe.ops.classify._kernels import softmax_rows, topk_rows
from twinpipe.ops.segment import argmax


def rows() -> list[tuple[str, str, Callable[[], Any]]]:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((64, 1000)) * 3).astype(np.float32)
    t_logits = torch.from_numpy(logits)
    seg = rng.standard_normal((21, 512, 512)).astype(np.float32)
    t_seg = torch.from_numpy(seg)
    t_seg_hwc = t_seg.permute(1, 2, 0).contiguous()  # classes innermost: torch's fast reduction
    sm, lsm, top5 = softmax.bind(), log_softmax.bind(), topk.bind(k=5)
    probs = np.empty_like(logits)
    values, indices = np.empty((64, 5), np.float32), np.empty((64, 5), np.int64)
    return [
        ("softmax [64, 1000] f32", "twinpipe classify.softmax", lambda: sm(logits)),
        ("softmax [64, 1000] f32", "twinpipe kernel alone (no dispatch)", lambda: softmax_rows(logits, probs, False)),
        ("softmax [64, 1000] f32", "torch.softmax", lambda: torch.softmax(t_logits, -1)),
        ("log_softmax [64, 1000] f32", "twinpipe classify.log_softmax", lambda: lsm(logits)),
        ("log_softmax [64, 1000] f32", "torch.log_softmax", lambda: torch.log_softmax(t_logits, -1)),
        ("top-5 [64, 1000] f32", "twinpipe classify.topk", lambda: top5(logits)),
        ("top-5 [64, 1000] f32", "twinpipe kernel alone (no dispatch)", lambda: topk_rows(logits, values, indices, 5)),
        ("top-5 [64, 1000] f32", "torch.topk", lambda: torch.topk(t_logits, 5, dim=-1)),
        ("argmax [21, 512, 512] f32", "twinpipe segment.argmax", lambda: argmax(seg)),
        ("argmax [21, 512, 512] f32", "torch.argmax(dim=0)", lambda: torch.argmax(t_seg, dim=0)),
        ("argmax [21, 512, 512] f32", "torch.argmax(dim=2) of an HWC copy", lambda: torch.argmax(t_seg_hwc, dim=2)),
    ]


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print_table(rows(), args.repeat, "1 thread")


if __name__ == "__main__":
    main()
