"""The Numba CUDA kernels of the detection ops (device code). Imported on the first GPU call only
(``cuda`` must be a global of this module for Numba's simulator).

Products that the CPU rounds on their own (box areas, intersections, the class shift) go through
``libdevice``'s round-to-nearest multiplies: the CUDA compiler would otherwise fuse them with the
following add (FMA contraction, as nvcc does in torchvision's kernel) and an IoU a rounding error
from the threshold could be decided differently from the CPU. The simulator has no libdevice; its
Python multiply rounds anyway.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numba import config, cuda

__all__ = ["WORD", "decode_anchors_kernel", "decode_grid_kernel", "decode_yolo_kernel", "nms_kernels"]

WORD = 64  # suppression bits per mask word


@cuda.jit
def decode_anchors_kernel(d: Any, a: Any, out: Any, w: Any, clip: Any, use_clip: Any, half: Any) -> None:  # pragma: no cover (device code)
    """The CPU loop's arithmetic per row of a batch ``[N, R, 4]`` (one thread per row)."""
    i, n = cuda.grid(2)
    if n < d.shape[0] and i < d.shape[1]:
        width, height = a[n, i, 2] - a[n, i, 0], a[n, i, 3] - a[n, i, 1]
        cx, cy = a[n, i, 0] + half * width, a[n, i, 1] + half * height
        dx, dy, dw, dh = d[n, i, 0] / w[0], d[n, i, 1] / w[1], d[n, i, 2] / w[2], d[n, i, 3] / w[3]
        if use_clip:
            dw = clip if dw > clip else dw
            dh = clip if dh > clip else dh
        px, py = dx * width + cx, dy * height + cy
        hw, hh = half * (math.exp(dw) * width), half * (math.exp(dh) * height)
        out[n, i, 0], out[n, i, 1], out[n, i, 2], out[n, i, 3] = px - hw, py - hh, px + hw, py + hh


@cuda.jit
def decode_yolo_kernel(p: Any, boxes: Any, scores: Any, first: Any, fmt: Any, sigmoid: Any, transposed: Any, half: Any,
                       one: Any) -> None:  # pragma: no cover (device code)
    """The CPU loop's arithmetic, one thread per box of a batch (its classes in a loop)."""
    i, n = cuda.grid(2)
    if n < scores.shape[0] and i < scores.shape[1]:
        a0 = p[n, 0, i] if transposed else p[n, i, 0]
        a1 = p[n, 1, i] if transposed else p[n, i, 1]
        a2 = p[n, 2, i] if transposed else p[n, i, 2]
        a3 = p[n, 3, i] if transposed else p[n, i, 3]
        if fmt == 0:
            boxes[n, i, 0], boxes[n, i, 1], boxes[n, i, 2], boxes[n, i, 3] = a0, a1, a2, a3
        elif fmt == 1:
            boxes[n, i, 0], boxes[n, i, 1], boxes[n, i, 2], boxes[n, i, 3] = a0, a1, a0 + a2, a1 + a3
        else:
            boxes[n, i, 0], boxes[n, i, 1] = a0 - half * a2, a1 - half * a3
            boxes[n, i, 2], boxes[n, i, 3] = a0 + half * a2, a1 + half * a3
        obj = one
        if first == 5:
            obj = p[n, 4, i] if transposed else p[n, i, 4]
            if sigmoid:
                obj = one / (one + math.exp(-obj))
        for k in range(scores.shape[2]):
            v = p[n, first + k, i] if transposed else p[n, i, first + k]
            if sigmoid:
                v = one / (one + math.exp(-v))
            scores[n, i, k] = v * obj if first == 5 else v


@cuda.jit
def decode_grid_kernel(f: Any, out: Any, no: Any, s: Any, v5: Any, aw: Any, ah: Any, grid_x: Any, grid_y: Any, half: Any,
                       one: Any, two: Any) -> None:  # pragma: no cover (device code)
    """The CPU loop's arithmetic, one thread per (cell, anchor, image) of a batch ``[N, A*no, H, W]``
    (``grid_x``/``grid_y``: the cell coordinates in the features' dtype, as on the CPU)."""
    x, y, z = cuda.grid(3)
    a_n = aw.shape[0]
    h, w = f.shape[2], f.shape[3]
    n, a = z // a_n, z % a_n
    if n < f.shape[0] and y < h and x < w:
        base = a * no
        row = (a * h + y) * w + x
        gx, gy = grid_x[x], grid_y[y]
        tx, ty, tw, th = f[n, base, y, x], f[n, base + 1, y, x], f[n, base + 2, y, x], f[n, base + 3, y, x]
        if v5:
            sx, sy = one / (one + math.exp(-tx)), one / (one + math.exp(-ty))
            u, v = one / (one + math.exp(-tw)) * two, one / (one + math.exp(-th)) * two
            out[n, row, 0] = (sx * two + (gx - half)) * s
            out[n, row, 1] = (sy * two + (gy - half)) * s
            out[n, row, 2] = u * u * aw[a]
            out[n, row, 3] = v * v * ah[a]
        else:
            out[n, row, 0] = (tx + gx) * s
            out[n, row, 1] = (ty + gy) * s
            out[n, row, 2] = math.exp(tw) * s
            out[n, row, 3] = math.exp(th) * s
        for k in range(4, no):
            out[n, row, k] = one / (one + math.exp(-f[n, base + k, y, x]))


def _plain_mul(a: Any, b: Any) -> Any:
    return a * b


@functools.cache
def nms_kernels(dtype: str) -> tuple[Any, Any, Any, Any, Any, Any]:
    """``(prepare, rank, gather, mask, scan, select)`` for boxes of ``dtype``; see ``_cuda._nms_cuda``."""
    if config.ENABLE_CUDASIM:
        mul = _plain_mul
    else:  # pragma: no cover (GPU only)
        from numba.cuda import libdevice

        mul = libdevice.fmul_rn if dtype == "float32" else libdevice.dmul_rn
    cast = np.float32 if dtype == "float32" else np.float64

    @cuda.jit
    def prepare(boxes: Any, scores: Any, valid: Any, stats: Any, top: Any) -> None:  # pragma: no cover (device code)
        """``valid[i]``: a finite score and four finite coordinates; ``stats[0]`` counts them,
        ``top[0]`` is their largest coordinate."""
        i = cuda.grid(1)
        if i < boxes.shape[0]:
            b0, b1, b2, b3 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
            ok = math.isfinite(scores[i]) and math.isfinite(b0) and math.isfinite(b1) and math.isfinite(b2) and math.isfinite(b3)
            valid[i] = ok
            if ok:
                cuda.atomic.add(stats, 0, 1)
                hi01 = b0 if b0 > b1 else b1  # (not max(): see image._cuda_kernels.clamp)
                hi23 = b2 if b2 > b3 else b3
                cuda.atomic.max(top, 0, hi01 if hi01 > hi23 else hi23)

    @cuda.jit
    def rank(scores: Any, classes: Any, valid: Any, order: Any, end: Any, starts: Any, stats: Any) -> None:  # pragma: no cover
        """``order[p] = i`` for the valid rows sorted by (class, score descending, row): ``p``
        counts the valid rows before ``i``; ``end[p]``: where ``i``'s class ends in that order. The
        first row of each class also lists where its class starts (``starts``, ``stats[2]`` of them)."""
        i = cuda.grid(1)
        if i < scores.shape[0] and valid[i]:
            ci, si = classes[i], scores[i]
            before, upto, lower = 0, 0, 0
            for j in range(scores.shape[0]):
                if valid[j]:
                    cj = classes[j]
                    if cj < ci or (cj == ci and (scores[j] > si or (scores[j] == si and j < i))):
                        before += 1
                    if cj <= ci:
                        upto += 1
                    if cj < ci:
                        lower += 1
            order[before] = i
            end[before] = upto
            if before == lower:
                starts[cuda.atomic.add(stats, 2, 1)] = before

    @cuda.jit
    def gather(boxes: Any, classes: Any, order: Any, step: Any, shift: Any, sb: Any, area: Any) -> None:  # pragma: no cover
        """The sorted boxes, shifted by ``class * step`` when ``shift`` (torchvision's trick, in
        the boxes' dtype), and their areas."""
        p = cuda.grid(1)
        if p < order.shape[0]:
            i = order[p]
            off = mul(cast(classes[i]), step) if shift else cast(0)
            x1, y1, x2, y2 = boxes[i, 0] + off, boxes[i, 1] + off, boxes[i, 2] + off, boxes[i, 3] + off
            sb[p, 0], sb[p, 1], sb[p, 2], sb[p, 3] = x1, y1, x2, y2
            area[p] = mul(x2 - x1, y2 - y1)

    @cuda.jit
    def mask(sb: Any, area: Any, end: Any, threshold: Any, bits: Any) -> None:  # pragma: no cover (device code)
        """Bit ``q % 64`` of ``bits[p, q // 64]``: sorted box ``p`` suppresses the later box ``q``
        of its class (IoU > threshold, computed as the CPU kernel)."""
        w, p = cuda.grid(2)
        m = sb.shape[0]
        if p < m and w < bits.shape[1]:
            zero = cast(0)
            ix1, iy1, ix2, iy2, ia = sb[p, 0], sb[p, 1], sb[p, 2], sb[p, 3], area[p]
            word = np.uint64(0)
            for b in range(WORD):
                q = w * WORD + b
                if p < q < end[p]:
                    xx1 = sb[q, 0] if ix1 < sb[q, 0] else ix1
                    yy1 = sb[q, 1] if iy1 < sb[q, 1] else iy1
                    xx2 = sb[q, 2] if sb[q, 2] < ix2 else ix2
                    yy2 = sb[q, 3] if sb[q, 3] < iy2 else iy2
                    ww, hh = xx2 - xx1, yy2 - yy1
                    inter = mul(ww if ww > zero else zero, hh if hh > zero else zero)
                    union = ia + area[q] - inter
                    if union > zero and inter / union > threshold:
                        word |= np.uint64(1) << np.uint64(b)
            bits[p, w] = word

    @cuda.jit
    def scan(bits: Any, starts: Any, end: Any, removed: Any, kept: Any, stats: Any) -> None:  # pragma: no cover (device code)
        """The greedy pass, a block per class (classes never suppress each other): in sorted order,
        a box not yet removed is kept and removes the boxes its mask row names (the block's threads
        OR the row's words together; atomically, as a word may hold the next class's first boxes)."""
        b, t, threads = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        if b >= stats[2]:
            return
        first = starts[b]
        stop = end[first]
        last = (stop - 1) // WORD  # the words past the class hold no bits of its rows
        for p in range(first, stop):
            cuda.syncthreads()  # the previous row's words are in
            if not (removed[p // WORD] >> np.uint64(p % WORD)) & np.uint64(1):
                if t == 0:
                    kept[p] = 1
                    cuda.atomic.add(stats, 1, 1)
                for w in range(p // WORD + t, last + 1, threads):
                    cuda.atomic.or_(removed, w, bits[p, w])

    @cuda.jit
    def select(scores: Any, order: Any, kept: Any, out: Any) -> None:  # pragma: no cover (device code)
        """The kept rows by score descending (ties: lower row first), the first ``len(out)``."""
        p = cuda.grid(1)
        if p < order.shape[0] and kept[p]:
            i = order[p]
            si = scores[i]
            before = 0
            for q in range(order.shape[0]):
                if kept[q]:
                    j = order[q]
                    if scores[j] > si or (scores[j] == si and j < i):
                        before += 1
            if before < out.shape[0]:
                out[before] = i

    return prepare, rank, gather, mask, scan, select
