"""The GPU benchmark of issue 10, run by ``bench/gpu_check.sh`` on a machine with an NVIDIA GPU.

Rows, each measured in the same run on the same GPU (CUDA events, warm-up first, the median of
``--repeats`` timed calls):

* **normalize → CHW, batch of 64 1080p uint8 images** (torch CUDA tensors in and out, one launch
  each): its throughput in bytes read and written, as a fraction of a device-to-device copy of the
  same number of bytes (the bandwidth floor). Target ≥ 0.70. Also ``image.layout`` alone on float32.
* **resize + centre crop + normalize, 64 × 1080p → 224** (the classifier chain): twinpipe's fused
  ``image.resize_crop_normalize`` against torchvision v2 on CUDA tensors (``Resize(256, antialias)``,
  ``CenterCrop(224)``, ``ToDtype(float32, scale)``, ``Normalize``). Target ≥ 2×.
* **the same on a ragged batch** of 16 images of different sizes: twinpipe's batched ("varshape")
  kernels, one launch per pass for the batch, against torchvision v2 image by image.
* **NMS, 5000 boxes × 80 classes**: twinpipe's ``detect.nms`` against ``torchvision.ops.batched_nms``.

A row whose twinpipe op has no CUDA kernel yet says so and still times the peer. The table is
printed last. Run: ``python bench/gpu.py [--batch 64] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def _time(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn`` on the GPU (CUDA events around each call, after two warm-ups)."""
    import torch

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _has_cuda_kernel(op: Any) -> bool:
    return op.kernel_for("cuda") is not None or op.kernel_for("cuda", batched=True) is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU here; nothing to measure (run it through bench/gpu_check.sh on a GPU machine)")
        return 2
    from twinpipe.ops import detect, image

    rows: list[tuple[str, str, str, str, str]] = []
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    batch = torch.randint(0, 256, (args.batch, 1080, 1920, 3), dtype=torch.uint8, device=dev, generator=gen)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    # -- elementwise: normalize (uint8 → float32) and layout (HWC → CHW) against a device copy --
    moved = batch.numel() * (1 + 4)  # read uint8, write float32
    floor_src = torch.empty(moved // 2, dtype=torch.uint8, device=dev)
    floor_dst = torch.empty_like(floor_src)
    t_copy = _time(lambda: floor_dst.copy_(floor_src), args.repeats)  # reads and writes moved // 2 each
    copy_bw = moved / t_copy
    t_norm = _time(lambda: image.normalize(batch, mean=mean, std=std), args.repeats)
    rows.append((f"normalize uint8 → float32, {args.batch} × 1080p", f"{t_norm * 1e3:.2f} ms ({moved / t_norm / 1e9:.0f} GB/s)",
                 f"device copy of the same bytes: {copy_bw / 1e9:.0f} GB/s", f"{moved / t_norm / copy_bw:.2f}", "≥ 0.70"))
    normalized = image.normalize(batch, mean=mean, std=std)
    moved_l = normalized.numel() * 4 * 2
    t_layout = _time(lambda: image.layout(normalized), args.repeats)
    rows.append((f"layout HWC → CHW float32, {args.batch} × 1080p", f"{t_layout * 1e3:.2f} ms ({moved_l / t_layout / 1e9:.0f} GB/s)",
                 f"device copy: {copy_bw / 1e9:.0f} GB/s", f"{moved_l / t_layout / copy_bw:.2f}", "≥ 0.70"))

    # -- the classifier chain: fused vs torchvision v2 on CUDA tensors --
    from torchvision.transforms import v2

    chw = batch.permute(0, 3, 1, 2)
    tv = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    t_tv = _time(lambda: tv(chw), args.repeats)
    fused = image.resize_crop_normalize
    if _has_cuda_kernel(fused):
        t_fused = _time(lambda: fused(batch, size=256, crop=224, mean=mean, std=std, layout="CHW"), args.repeats)
        rows.append((f"resize+crop+normalize, {args.batch} × 1080p → 224", f"{t_fused * 1e3:.2f} ms", f"torchvision v2: {t_tv * 1e3:.2f} ms",
                     f"{t_tv / t_fused:.2f}", "≥ 2"))
    else:
        rows.append((f"resize+crop+normalize, {args.batch} × 1080p → 224", "no CUDA kernel yet", f"torchvision v2: {t_tv * 1e3:.2f} ms", "—", "≥ 2"))

    # -- a ragged batch (images of different sizes): one launch per pass vs torchvision image by image --
    sizes = [(int(h), int(w)) for h, w in torch.randint(360, 1081, (16, 2), generator=torch.Generator().manual_seed(1))]
    ragged = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, device=dev, generator=gen) for h, w in sizes]
    ragged_chw = [x.permute(2, 0, 1) for x in ragged]
    t_tv_r = _time(lambda: [tv(x) for x in ragged_chw], args.repeats)
    t_r = _time(lambda: fused(ragged, size=256, crop=224, mean=mean, std=std, layout="CHW"), args.repeats)
    rows.append(("resize+crop+normalize, a ragged batch of 16 (360–1080 px sides) → 224", f"{t_r * 1e3:.2f} ms",
                 f"torchvision v2, image by image: {t_tv_r * 1e3:.2f} ms", f"{t_tv_r / t_r:.2f}", "> 1"))
    got = fused(batch[:4], size=256, crop=224, mean=mean, std=std, layout="CHW")
    diff = (got - tv(chw[:4])).abs().max().item()
    print(f"bench/gpu.py: fused vs torchvision v2 on 4 images: max |difference| {diff:.4f} (documented bound: one uint8 step / std = 0.0175)")

    # -- NMS: 5000 boxes × 80 classes --
    import torchvision

    xy = torch.rand(5000, 2, device=dev, generator=gen) * 600
    wh = torch.rand(5000, 2, device=dev, generator=gen) * 100 + 4
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(5000, device=dev, generator=gen)
    classes = torch.randint(0, 80, (5000,), device=dev, generator=gen)
    t_tvnms = _time(lambda: torchvision.ops.batched_nms(boxes, scores, classes, 0.5), args.repeats)
    if _has_cuda_kernel(detect.nms):
        t_nms = _time(lambda: detect.nms(boxes, scores, classes, iou_threshold=0.5), args.repeats)
        rows.append(("NMS 5000 boxes × 80 classes", f"{t_nms * 1e3:.3f} ms", f"batched_nms: {t_tvnms * 1e3:.3f} ms", f"{t_tvnms / t_nms:.2f}", "> 1"))
    else:
        rows.append(("NMS 5000 boxes × 80 classes", "no CUDA kernel yet", f"batched_nms: {t_tvnms * 1e3:.3f} ms", "—", "> 1"))

    print(f"\n## GPU benchmark: {torch.cuda.get_device_name()}, torch {torch.__version__}, median of {args.repeats}\n")
    print("| task | twinpipe | peer (same run) | ratio (> 1: twinpipe better) | target |")
    print("|---|---|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
