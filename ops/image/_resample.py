"""Resampling shared by ``image.resize`` and ``image.resize_crop_normalize``: tables and kernels.

Tables. Every filter is separable: output ``i`` of an axis is
``sum_k weights[i, k] * x[first[i] + k]`` over a fixed number ``T`` of taps (shorter windows are
padded with zero weights and shifted to stay inside the axis). One table per (input size, output
size, filter, antialias) serves the NumPy references and the kernels alike (``taps``, cached).

uint8 arithmetic is exact fixed point, so the references (NumPy, int64) and the kernels (int32)
agree bit for bit whatever order they sum in:

* weights are ``round(w * 2**14)``, each row nudged to sum to exactly ``2**14``;
* pass 1 keeps ``(sum + 2**6) >> 7``: the intermediate holds values with 7 fraction bits,
  clamped to ``[0, 255 << 7]`` (as torchvision's uint8 path clamps its intermediate);
* pass 2 gives ``clamp((sum + 2**20) >> 21, 0, 255)``: round half up, then saturate.

Which axis goes first is a fixed function of the sizes (``horizontal_first``), so a window of
the output (the fused crop) is bit-identical to the same pixels of the whole resize.

Kernels. Two passes per window of the output (``resample_int`` / ``resample_float``), each an
``@intrinsic`` emitting LLVM IR with vector types (SIMD wherever LLVM targets; 16 lanes):
the vertical pass sums rows 16 columns per vector, the sums held in registers across all taps;
the horizontal pass loads a pixel's taps × channels as whole vectors, weights them lane-wise
(``lane_weights``) and reduces the taps of a group of pixels with one shuffle tree. Every jitted
caller of these lives in this module: Numba's disk cache does not notice when a callee in
another module changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._threads import parallel_rows
from ._common import jit

__all__ = [
    "FRAC",
    "MID",
    "Taps",
    "horizontal_first",
    "lane_weights",
    "nearest_index",
    "resample_float",
    "resample_int",
    "resample_window",
    "taps",
]

FRAC = 14  # fraction bits of integer weights
MID = 7  # fraction bits of the integer intermediate


class Taps(NamedTuple):
    """One axis' resampling table: output ``i`` reads ``x[first[i] : first[i] + T]``."""

    first: np.ndarray  # int64 [n_out]
    weights: np.ndarray  # float64 [n_out, T], rows sum to 1
    wq: np.ndarray  # int32 [n_out, T], rows sum to exactly 2**FRAC
    wf: np.ndarray  # float32 [n_out, T]
    negative: bool  # some weight < 0 (bicubic's lobes)

    @property
    def width(self) -> int:
        """``T``, the taps per output."""
        return int(self.weights.shape[1])


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(1.0 - np.abs(x), 0.0))


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2) * x - (a + 3)) * x * x + 1
        far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return np.where(x < 1, near, np.where(x < 2, far, 0.0))

    return f


# Each filter gives a dense block: output i weights source pixels lo[i] + (0 .. K-1).


def _rows_antialias(n_in: int, n_out: int, support: float, filt: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    # torchvision's antialias path (= PIL): the filter is stretched by the scale when shrinking;
    # windows [trunc(center - support + 0.5), trunc(center + support + 0.5)), renormalised
    scale = n_in / n_out
    support, inv = (support * scale, 1.0 / scale) if scale >= 1.0 else (support, 1.0)
    center = scale * (np.arange(n_out) + 0.5)
    lo = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    hi = np.minimum(np.trunc(center + support + 0.5), n_in).astype(np.int64)
    j = lo[:, None] + np.arange(int((hi - lo).max()))
    w = np.where(j < hi[:, None], filt((j - center[:, None] + 0.5) * inv), 0.0)
    return lo, w / w.sum(axis=1, keepdims=True)


def _rows_classic(n_in: int, n_out: int, cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV INTER_LINEAR / torch bilinear & bicubic (a = -0.75): source x = (i + 0.5) * scale - 0.5,
    # indices clamped to the edge (bilinear also clamps x at 0)
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    if cubic:
        x0 = np.floor(x)
        t = (x - x0)[:, None]
        idx = x0.astype(np.int64)[:, None] + np.arange(-1, 3)
        cw = _cubic(-0.75)(np.concatenate([t + 1, t, 1 - t, 2 - t], axis=1))
    else:
        x = np.maximum(x, 0.0)
        x0 = np.minimum(np.floor(x), n_in - 1)
        t = np.where(x0 < n_in - 1, x - x0, 0.0)
        idx = x0.astype(np.int64)[:, None] + np.arange(2)
        cw = np.stack([1.0 - t, t], axis=1)
    idx = np.clip(idx, 0, n_in - 1)
    lo = idx.min(axis=1)
    dense = np.zeros((n_out, int((idx.max(axis=1) - lo).max()) + 1))
    np.add.at(dense, (np.arange(n_out)[:, None], idx - lo[:, None]), cw)  # clamped taps pile up
    return lo, dense


def _rows_area(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    # exact box overlap, in units of 1/n_out of a source pixel: output i covers [i*n_in, (i+1)*n_in)
    a = np.arange(n_out, dtype=np.int64) * n_in
    b = a + n_in
    lo, hi = a // n_out, -(-b // n_out)
    j = lo[:, None] + np.arange(int((hi - lo).max()))
    overlap = np.minimum(b[:, None], (j + 1) * n_out) - np.maximum(a[:, None], j * n_out)
    return lo, np.maximum(overlap, 0) / n_in


@functools.lru_cache(maxsize=128)
def taps(n_in: int, n_out: int, interpolation: str, antialias: bool) -> Taps:
    """The table resampling an axis of ``n_in`` pixels to ``n_out`` (cached; read-only arrays)."""
    if interpolation == "area":
        lo, dense = _rows_area(n_in, n_out)
    elif antialias:
        support, filt = (1.0, _triangle) if interpolation == "bilinear" else (2.0, _cubic(-0.5))
        lo, dense = _rows_antialias(n_in, n_out, support, filt)
    else:
        lo, dense = _rows_classic(n_in, n_out, cubic=interpolation == "bicubic")
    # trim zero weights at both ends, then give every window the same length t
    nz = dense != 0
    head = np.argmax(nz, axis=1)
    tail = dense.shape[1] - np.argmax(nz[:, ::-1], axis=1)
    t = int((tail - head).max())
    start = lo + head
    first = np.minimum(start, n_in - t)  # windows at the far edge shift back inside the axis
    k = np.arange(t)
    src = (first - lo)[:, None] + k  # the column of ``dense`` each tap reads
    keep = (src >= head[:, None]) & (src < tail[:, None])
    weights = np.where(keep, np.take_along_axis(dense, np.minimum(src, dense.shape[1] - 1), axis=1), 0.0)
    if np.abs(weights).sum(axis=1).max() > 4:  # the int32 bounds of the fixed-point passes assume this
        raise AssertionError(f"resampling weights too large for {n_in}->{n_out} {interpolation}")
    wq = np.floor(weights * (1 << FRAC) + 0.5).astype(np.int64)
    wq[np.arange(n_out), np.argmax(weights, axis=1)] += (1 << FRAC) - wq.sum(axis=1)
    out = Taps(first, weights, wq.astype(np.int32), weights.astype(np.float32), bool((weights < 0).any()))
    for a in out[:4]:
        a.flags.writeable = False
    return out


@functools.lru_cache(maxsize=128)
def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Pixel-centre nearest neighbour, ``min(floor((i + 0.5) * n_in / n_out), n_in - 1)``, computed
    as torch does (float32 scale, float32 product) so it equals torchvision ``NEAREST_EXACT`` even
    where the point falls exactly on a pixel border (there float error may pick the left pixel)."""
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    i = np.arange(n_out, dtype=np.float64)
    idx = np.minimum(np.floor(((i + 0.5) * scale).astype(np.float32)).astype(np.int64), n_in - 1)
    idx.flags.writeable = False
    return idx


def horizontal_first(h: int, w: int, oh: int, ow: int, ty: Taps, tx: Taps) -> bool:
    """Whether the horizontal pass runs first: always for filters with negative lobes (as
    torchvision's and PIL's uint8 path, whose clamped intermediate this reproduces), otherwise the
    cheaper order, counting a horizontal multiply-add 4× a vertical one (which vectorises)."""
    if ty.negative or tx.negative:
        return True
    v_first = oh * w * ty.width + 4 * oh * ow * tx.width
    h_first = 4 * h * ow * tx.width + oh * ow * ty.width
    return h_first < v_first


# -- Numba building blocks: LLVM IR with vector types (SIMD wherever LLVM targets) ------------

LANES = 16  # one 512-bit vector of int32/float32 (LLVM splits it where vectors are narrower)
# What a pass does with its sums (see _finish): keep (float), round to the intermediate, to uint8.
MODE_FLOAT, MODE_MID, MODE_U8 = 0, 1, 2


def taps_per_vector(c: int) -> int:
    """Taps of a ``c``-channel pixel (``c <= LANES``) per vector: as many as fit."""
    return LANES // c


def _pow2(n: int) -> int:
    """The largest power of two ``<= n``: the taps the reduction tree works on."""
    t = 1
    while 2 * t <= n:
        t *= 2
    return t


@functools.lru_cache(maxsize=128)
def lane_weights(n_in: int, n_out: int, interpolation: str, antialias: bool, c: int, exact: bool) -> np.ndarray:
    """The horizontal weights laid out as the vector pass reads them: ``[n_out, M, LANES]``, lane
    ``l`` of vector ``m`` weighting tap ``m * tpv + l // c`` (channel ``l % c``); other lanes 0.
    int32 (``exact``) or float32. (More than 4 channels: unused zeros.)"""
    t = taps(n_in, n_out, interpolation, antialias)
    w = t.wq if exact else t.wf
    if c > 4:  # such pixels take the scalar loop
        return np.zeros((n_out, 1, LANES), w.dtype)
    tpv = taps_per_vector(c)
    m = -(-t.width // tpv)
    padded = np.zeros((n_out, m * tpv), w.dtype)
    padded[:, : t.width] = w
    out = np.zeros((n_out, m, LANES), w.dtype)
    out[:, :, : tpv * c] = np.repeat(padded.reshape(n_out, m, tpv), c, axis=2)
    out.flags.writeable = False
    return out


def _mode(w: types.Array, dst: types.Array) -> str:
    if isinstance(w.dtype, types.Float):
        return "float"
    return "u8" if dst.dtype == types.uint8 else "mid"


def _const(like: ir.Type, value: int | float) -> ir.Constant:
    if isinstance(like, ir.VectorType):
        return ir.Constant(like, [value] * like.count)
    return ir.Constant(like, value)


def _acc_type(mode: str, lanes: int) -> ir.Type:
    e = ir.FloatType() if mode == "float" else ir.IntType(32)
    return ir.VectorType(e, lanes) if lanes else e


def _splat(builder: ir.IRBuilder, value: ir.Value, vt: ir.VectorType) -> ir.Value:
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count))


def _load(builder: ir.IRBuilder, context, ptr: ir.Value, src_t: Any, lanes: int, mode: str) -> ir.Value:  # type: ignore[no-untyped-def]
    """Load ``lanes`` elements (0: one scalar) as int32 (zero-extended) or float32."""
    et = context.get_data_type(src_t)
    if lanes:
        vt = ir.VectorType(et, lanes)
        v = builder.load(builder.bitcast(ptr, vt.as_pointer()), align=src_t.bitwidth // 8, typ=vt)
    else:
        v = builder.load(ptr, typ=et)
    acc_t = _acc_type(mode, lanes)
    if mode == "float":
        return builder.uitofp(v, acc_t) if isinstance(src_t, types.Integer) else v
    return builder.zext(v, acc_t) if src_t.bitwidth < 32 else v


def _finish(builder: ir.IRBuilder, v: ir.Value, mode: str, dst_t: Any) -> ir.Value:
    """Integer sums: round half up to the intermediate (``mid``: 7 fraction bits, [0, 255 << 7])
    or to uint8 (``u8``), then narrow to ``dst_t`` (int32, int16 or uint8); float sums as they
    are."""
    if mode == "float":
        return v
    sh, top = (FRAC - MID, 255 << MID) if mode == "mid" else (FRAC + MID, 255)
    v = builder.ashr(builder.add(v, _const(v.type, 1 << (sh - 1))), _const(v.type, sh))
    v = builder.select(builder.icmp_signed("<", v, _const(v.type, 0)), _const(v.type, 0), v)
    v = builder.select(builder.icmp_signed(">", v, _const(v.type, top)), _const(v.type, top), v)
    if dst_t.bitwidth < 32:
        it = ir.IntType(dst_t.bitwidth)
        v = builder.trunc(v, ir.VectorType(it, v.type.count) if isinstance(v.type, ir.VectorType) else it)
    return v


def _store(builder: ir.IRBuilder, v: ir.Value, ptr: ir.Value) -> None:
    builder.store(v, builder.bitcast(ptr, v.type.as_pointer()), align=1)


@intrinsic
def _vpass(typingctx, rows, r0, w, lo, hi, j0, n, dst):  # type: ignore[no-untyped-def]
    """``dst[j] = finish(sum_{lo <= k < hi} w[k] * rows[r0 + k, j0 + j])`` for ``j < n``: the
    vertical pass, 16 columns per vector, the sums in registers across all taps (in tap order),
    a scalar loop for the last ``n % 16``."""
    mode = _mode(w, dst)
    sig = types.void(rows, r0, w, lo, hi, j0, n, dst)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a_rows, a_w, a_dst = (context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 2, 7))
        r0_, lo_, hi_, j0_, n_ = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 3, 4, 5, 6))
        ip = context.get_value_type(types.intp)
        src_t, wt = signature.args[0].dtype, context.get_data_type(signature.args[2].dtype)
        stride = builder.sdiv(builder.extract_value(a_rows.strides, 0), ir.Constant(ip, src_t.bitwidth // 8))
        base = builder.gep(a_rows.data, [builder.add(builder.mul(r0_, stride), j0_)])
        mul, add = (builder.fmul, builder.fadd) if mode == "float" else (builder.mul, builder.add)

        def columns(j: ir.Value, lanes: int, count: int) -> None:  # count vectors side by side
            at = _acc_type(mode, lanes)
            accs = [cgutils.alloca_once_value(builder, _const(at, 0.0 if mode == "float" else 0)) for _ in range(count)]  # type: ignore[no-untyped-call]
            with cgutils.for_range_slice(builder, lo_, hi_, ir.Constant(ip, 1)) as (k, _):
                row = builder.gep(base, [builder.add(builder.mul(k, stride), j)])
                wk = builder.load(builder.gep(a_w.data, [k]), typ=wt)
                wv = _splat(builder, wk, at) if lanes else wk
                for q, acc in enumerate(accs):
                    v = _load(builder, context, builder.gep(row, [ir.Constant(ip, q * max(lanes, 1))]), src_t, lanes, mode)
                    builder.store(add(builder.load(acc, typ=at), mul(v, wv)), acc)
            for q, acc in enumerate(accs):
                out = builder.gep(a_dst.data, [builder.add(j, ir.Constant(ip, q * max(lanes, 1)))])
                _store(builder, _finish(builder, builder.load(acc, typ=at), mode, signature.args[7].dtype), out)

        # 4 vectors per sweep of the taps (independent sums, one weight broadcast), then single
        # vectors, then single columns
        wide = builder.sdiv(n_, ir.Constant(ip, 4 * LANES))
        with cgutils.for_range(builder, wide) as loop:
            columns(builder.mul(loop.index, ir.Constant(ip, 4 * LANES)), LANES, 4)
        start = builder.mul(wide, ir.Constant(ip, 4 * LANES))
        blocks = builder.sdiv(builder.sub(n_, start), ir.Constant(ip, LANES))
        with cgutils.for_range(builder, blocks) as loop:
            columns(builder.add(start, builder.mul(loop.index, ir.Constant(ip, LANES))), LANES, 1)
        start = builder.add(start, builder.mul(blocks, ir.Constant(ip, LANES)))
        with cgutils.for_range_slice(builder, start, n_, ir.Constant(ip, 1)) as (j, _):
            columns(j, 0, 1)
        return context.get_dummy_value()

    return sig, codegen


def _shuffle(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, mask: list[int]) -> ir.Value:
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


def _tap_sums(builder: ir.IRBuilder, accs: list[ir.Value], c: int, tpv: int, add: Callable[..., ir.Value]) -> ir.Value:
    """Sum the ``tpv`` taps of each channel of ``len(accs)`` pixels (1 or ``_pow2(tpv)``): one
    vector of ``len(accs) * c`` lanes, pixel-major, channel-minor, as the output is laid out.

    Taps past the largest power of two first fold onto the first ones; then a halving tree, taps
    ``[0, t/2) + [t/2, t)`` per level; with several pixels each level also merges pairs of
    vectors (pixel ``p`` of the pair's second vector becomes pixel ``g + p``), so ``t`` pixels
    share ``t - 1`` adds instead of ``log2(t)`` each. The same pairs in the same order either way:
    float sums are identical for grouped and single pixels."""
    t = _pow2(tpv)
    if t < tpv:
        width, extra = accs[0].type.count, (tpv - t) * c
        fold = [t * c + i if i < extra else width for i in range(t * c)]  # lane ``width``: a zero
        zero = _const(accs[0].type, 0.0 if isinstance(accs[0].type.element, ir.FloatType) else 0)
        accs = [add(_shuffle(builder, u, u, list(range(t * c))), _shuffle(builder, u, zero, fold)) for u in accs]
    g = 1
    while t > 1:
        half = t // 2
        if len(accs) == 1:
            u = accs[0]
            lo = [tap * c + ch for tap in range(half) for ch in range(c)]
            accs = [add(_shuffle(builder, u, u, lo), _shuffle(builder, u, u, [i + half * c for i in lo]))]
        else:
            width, merged = accs[0].type.count, []
            for u, v in zip(accs[::2], accs[1::2]):
                lo, hi = [], []
                for p in range(2 * g):
                    off, q = (0, p) if p < g else (width, p - g)
                    for tap in range(half):
                        for ch in range(c):
                            lo.append(off + (q * t + tap) * c + ch)
                            hi.append(off + (q * t + half + tap) * c + ch)
                merged.append(add(_shuffle(builder, u, v, lo), _shuffle(builder, u, v, hi)))
            accs, g = merged, 2 * g
        t = half
    return accs[0]


def _make_hpass(c: int):  # type: ignore[no-untyped-def]
    """The vector horizontal pass for ``c``-channel pixels, as an ``@intrinsic``.

    ``dst[i*c + ch] = finish(sum_k w[x, k] * src[s0 + (first[x] + k)*c + ch])``, ``x = x0 + i``:
    per output pixel, ``M`` full-vector loads of ``tpv`` consecutive taps, multiplied lane-wise
    by ``lane_weights`` and accumulated, then ``_tap_sums``; ``_pow2(tpv)`` pixels at a time
    (independent accumulators, one shared reduction), the rest one by one. Reads up to
    ``(M - 1) * tpv * c + LANES`` elements from each window start: the caller keeps that inside
    ``src``.
    """
    tpv = taps_per_vector(c)
    step, group = tpv * c, _pow2(tpv)

    @intrinsic
    def hpass_c(typingctx, src, s0, first, wl, x0, n, dst):  # type: ignore[no-untyped-def]
        mode = _mode(wl, dst)
        sig = types.void(src, s0, first, wl, x0, n, dst)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            a_src, a_first, a_w, a_dst = (context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 2, 3, 6))
            s0_, x0_, n_ = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 4, 5))
            src_t, at = signature.args[0].dtype, _acc_type(mode, LANES)
            ip = context.get_value_type(types.intp)
            m_count = builder.extract_value(a_w.shape, 1)
            add, mul = (builder.fadd, builder.fmul) if mode == "float" else (builder.add, builder.mul)

            def const(v: int) -> ir.Constant:
                return ir.Constant(ip, v)

            def block(i0: ir.Value, count: int) -> None:  # output pixels i0 .. i0 + count
                bases, wrows, accs = [], [], []
                for p in range(count):
                    x = builder.add(x0_, builder.add(i0, const(p)))
                    fx = builder.load(builder.gep(a_first.data, [x]))
                    bases.append(builder.gep(a_src.data, [builder.add(s0_, builder.mul(fx, const(c)))]))
                    wrows.append(builder.gep(a_w.data, [builder.mul(builder.mul(x, m_count), const(LANES))]))
                    accs.append(cgutils.alloca_once_value(builder, _const(at, 0.0 if mode == "float" else 0)))  # type: ignore[no-untyped-call]
                with cgutils.for_range(builder, m_count) as inner:
                    m = inner.index
                    for base, wrow, acc in zip(bases, wrows, accs):
                        v = _load(builder, context, builder.gep(base, [builder.mul(m, const(step))]), src_t, LANES, mode)
                        pw = builder.bitcast(builder.gep(wrow, [builder.mul(m, const(LANES))]), at.as_pointer())
                        builder.store(add(builder.load(acc, typ=at), mul(v, builder.load(pw, align=4, typ=at))), acc)
                total = _tap_sums(builder, [builder.load(a, typ=at) for a in accs], c, tpv, add)
                _store(builder, _finish(builder, total, mode, signature.args[6].dtype), builder.gep(a_dst.data, [builder.mul(i0, const(c))]))

            groups = builder.sdiv(n_, const(group))
            with cgutils.for_range(builder, groups) as loop:
                block(builder.mul(loop.index, const(group)), group)
            with cgutils.for_range_slice(builder, builder.mul(groups, const(group)), n_, const(1)) as (i, _):
                block(i, 1)
            return context.get_dummy_value()

        return sig, codegen

    return hpass_c


_hpass1, _hpass2, _hpass3, _hpass4 = (_make_hpass(c) for c in (1, 2, 3, 4))


@jit
def _round(v: float, mode: int) -> float:
    if mode == MODE_MID:
        return min(max((int(v) + (1 << (FRAC - MID - 1))) >> (FRAC - MID), 0), 255 << MID)
    if mode == MODE_U8:
        return min(max((int(v) + (1 << (FRAC + MID - 1))) >> (FRAC + MID), 0), 255)
    return v


@jit
def hpass(src: np.ndarray, s0: int, first: np.ndarray, w: np.ndarray, wl: np.ndarray, x0: int, n: int, c: int, mode: int, dst: np.ndarray) -> None:
    """The horizontal pass over one row (``src``, ``dst`` flat; ``mode`` a ``MODE_*``, matching
    ``w``/``dst``'s dtypes): ``dst[i*c + ch] = finish(sum_k w[x, k] * src[s0 + (first[x] + k)*c + ch])``
    for ``x = x0 + i``. The vector pass up to 4 channels; the pixels from the first whose vector
    reads would pass the end of ``src`` on, and wider pixels, take a scalar loop (the same
    integer sums; float ones may round differently)."""
    fast = 0
    if c <= 4:
        reach = (wl.shape[1] - 1) * taps_per_vector_jit(c) * c + LANES
        if s0 + first[x0 : x0 + n].max() * c + reach <= src.shape[0]:
            fast = n  # the usual case: a padded buffer, or not the image's last row
        else:
            widest = -1
            while fast < n:
                widest = max(widest, first[x0 + fast])
                if s0 + widest * c + reach > src.shape[0]:
                    break
                fast += 1
        if c == 1:
            _hpass1(src, s0, first, wl, x0, fast, dst)
        elif c == 2:
            _hpass2(src, s0, first, wl, x0, fast, dst)
        elif c == 3:
            _hpass3(src, s0, first, wl, x0, fast, dst)
        else:
            _hpass4(src, s0, first, wl, x0, fast, dst)
    t = w.shape[1]
    for i in range(fast, n):
        x = x0 + i
        for ch in range(c):
            acc = w[x, 0] * src[s0 + first[x] * c + ch]
            for k in range(1, t):
                acc += w[x, k] * src[s0 + (first[x] + k) * c + ch]
            dst[i * c + ch] = _round(acc, mode)


@jit
def taps_per_vector_jit(c: int) -> int:
    return LANES // c


@jit
def vpass(rows: np.ndarray, r0: int, w: np.ndarray, j0: int, n: int, dst: np.ndarray) -> None:
    """The vertical pass: ``dst[j] = finish(sum_k w[k] * rows[r0 + k, j0 + j])`` for ``j < n``,
    zero weights at either end skipped (the mode follows ``w``/``dst``'s dtypes)."""
    lo, hi = 0, w.shape[0]
    while lo < hi - 1 and w[lo] == 0:
        lo += 1
    while hi > lo + 1 and w[hi - 1] == 0:
        hi -= 1
    _vpass(rows, r0, w, lo, hi, j0, n, dst)  # type: ignore[call-arg]


# -- the two resampling engines: a window of the output, both passes -------------------------


@jit
def resample_int(src: np.ndarray, fy: np.ndarray, wy: np.ndarray, fx: np.ndarray, wx: np.ndarray, wl: np.ndarray, oy0: int, ox0: int, hfirst: bool, out: np.ndarray) -> None:
    """uint8 ``out[i, j] = resized[oy0 + i, ox0 + j]`` for the ``out``-sized window of the output,
    in ``_resample``'s fixed-point arithmetic (``src``, ``out``: C-contiguous uint8 H W C)."""
    h, w, c = src.shape
    ny, nx = out.shape[0], out.shape[1]
    n = nx * c
    res = out.reshape(ny, n)
    if hfirst:  # horizontal pass over every source row the window needs, then vertical
        r0 = fy[oy0 : oy0 + ny].min()  # windows are not monotonic: trimmed zero taps
        nr = fy[oy0 : oy0 + ny].max() + wy.shape[1] - r0
        mid = np.empty((nr, n), np.int16)  # the intermediate, [0, 255 << 7], fits int16
        flat = src.reshape(-1)
        for r in range(nr):
            hpass(flat, (r0 + r) * w * c, fx, wx, wl, ox0, nx, c, MODE_MID, mid[r])
        for i in range(ny):
            vpass(mid, fy[oy0 + i] - r0, wy[oy0 + i], 0, n, res[i])
    else:  # per output row: vertical over the columns the window needs, then horizontal
        xs0 = fx[ox0 : ox0 + nx].min()
        span = (fx[ox0 : ox0 + nx].max() + wx.shape[1] - xs0) * c
        mid = np.zeros(span + wl.shape[1] * LANES + LANES, np.int16)  # zero padding: vector overreach
        rows = src.reshape(h, w * c)
        for i in range(ny):
            vpass(rows, fy[oy0 + i], wy[oy0 + i], xs0 * c, span, mid)
            hpass(mid, -xs0 * c, fx, wx, wl, ox0, nx, c, MODE_U8, res[i])


@jit
def resample_float(src: np.ndarray, fy: np.ndarray, wy: np.ndarray, fx: np.ndarray, wx: np.ndarray, wl: np.ndarray, oy0: int, ox0: int, hfirst: bool, vmax: float, out: np.ndarray) -> None:
    """float32 arithmetic for a window (see ``resample_int``); ``src`` uint16 or float32. A
    float32 ``out`` takes the sums as they are; an integer one (``vmax`` > 0) rounds half to even
    and saturates to ``[0, vmax]``."""
    h, w, c = src.shape
    ny, nx = out.shape[0], out.shape[1]
    n = nx * c
    res = out.reshape(ny, n)
    acc = np.empty(n, np.float32)
    if hfirst:
        r0 = fy[oy0 : oy0 + ny].min()
        nr = fy[oy0 : oy0 + ny].max() + wy.shape[1] - r0
        mid = np.empty((nr, n), np.float32)
        flat = src.reshape(-1)
        for r in range(nr):
            hpass(flat, (r0 + r) * w * c, fx, wx, wl, ox0, nx, c, MODE_FLOAT, mid[r])
        for i in range(ny):
            vpass(mid, fy[oy0 + i] - r0, wy[oy0 + i], 0, n, acc)
            _store_row(acc, res[i], vmax)
    else:
        xs0 = fx[ox0 : ox0 + nx].min()
        span = (fx[ox0 : ox0 + nx].max() + wx.shape[1] - xs0) * c
        mid = np.zeros(span + wl.shape[1] * LANES + LANES, np.float32)  # zeros: 0 * padding must be 0
        rows = src.reshape(h, w * c)
        for i in range(ny):
            vpass(rows, fy[oy0 + i], wy[oy0 + i], xs0 * c, span, mid)
            hpass(mid, -xs0 * c, fx, wx, wl, ox0, nx, c, MODE_FLOAT, acc)
            _store_row(acc, res[i], vmax)


@jit
def _store_row(acc: np.ndarray, dst: np.ndarray, vmax: float) -> None:
    if vmax > 0:
        for j in range(dst.shape[0]):
            dst[j] = min(max(np.rint(acc[j]), 0.0), vmax)
    else:
        dst[:] = acc


def resample_window(src: np.ndarray, ty: Taps, tx: Taps, wl: np.ndarray, oy0: int, ox0: int, hfirst: bool, out: np.ndarray) -> None:
    """Resample the ``out``-sized window at ``(oy0, ox0)`` of the output, in row bands over the
    kernel threads (``twinpipe.ops.set_num_threads``). A band computes its rows exactly as the
    whole window would, so the result does not depend on the thread count."""
    if src.dtype == np.uint8:

        def band(start: int, stop: int) -> None:
            resample_int(src, ty.first, ty.wq, tx.first, tx.wq, wl, oy0 + start, ox0, hfirst, out[start:stop])
    else:
        vmax = float(np.iinfo(out.dtype).max) if out.dtype.kind == "u" else 0.0

        def band(start: int, stop: int) -> None:
            resample_float(src, ty.first, ty.wf, tx.first, tx.wf, wl, oy0 + start, ox0, hfirst, vmax, out[start:stop])

    parallel_rows(band, out.shape[0], min_rows=32)
