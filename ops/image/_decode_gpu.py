"""``image.decode`` onto the GPU: JPEGs through nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``,
one call for a batch), everything else — PNG, BMP, WebP, a JPEG nvJPEG refuses, a machine whose
torch has no GPU — through the CPU decoder, then uploaded. The same checks first (``_inspect``:
empty, truncated or unsupported input is a ``DecodeError``), the same EXIF orientation, the same
``color`` handling (gray through ``image.convert_color``'s CUDA kernel, OpenCV's fixed point).

nvJPEG and libjpeg-turbo upsample chroma differently (libjpeg-turbo's "fancy" triangle filter for
4:2:0 and 4:2:2; nvJPEG's own), so the GPU decode of a subsampled JPEG may differ from the CPU's
near colour edges; luma-only and 4:4:4 JPEGs agree to rounding. The bound is tested on a GPU
(tests/ops/image/test_decode_gpu.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _device
from .._errors import DecodeError
from ._color import convert_color
from ._decode import _decode_cpu, _inspect, decode


def _nvjpeg() -> Any:
    """``torchvision.io`` when torch has a GPU (else None: the CPU decoder and an upload)."""
    if not _device.gpu_present():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    import torchvision.io

    return torchvision.io


def _oriented(t: Any, orientation: int) -> Any:
    """A torch HWC image turned upright as ``_orient_cv`` turns a NumPy one (EXIF orientations 1–8)."""
    if orientation in (2, 4):
        return t.flip(1 if orientation == 2 else 0)
    if orientation == 3:
        return t.flip(0).flip(1)
    if orientation in (5, 6, 7, 8):
        t = t.transpose(0, 1)  # 5: the transpose; 6 = transpose + flip x; 8 = transpose + flip y; 7: both
        if orientation in (6, 7):
            t = t.flip(1)
        if orientation in (7, 8):
            t = t.flip(0)
    return t.contiguous()


def _one(item: Any) -> bool:
    return isinstance(item, (bytes, bytearray, memoryview, np.bytes_)) or (isinstance(item, np.ndarray) and item.dtype != object)


@decode.kernel("cuda", host_inputs=True)
def _decode_cuda(data: Any, *, color: str, exif: bool) -> Any:
    single = _one(data) or (isinstance(data, np.ndarray) and data.ndim == 0)
    items = [data.item() if isinstance(data, np.ndarray) and data.ndim == 0 else data] if single else list(data)
    io = _nvjpeg()
    found: list[tuple[np.ndarray, str, int]] = []
    for i, item in enumerate(items):
        try:
            found.append(_inspect(item, exif))
        except DecodeError as e:
            if single:
                raise
            raise DecodeError(f"{e} (batch item {i} of {len(items)})") from e  # as the CPU path says it
    out: list[Any] = [None] * len(items)
    jpegs = [i for i, (_, fmt, _) in enumerate(found) if fmt == "jpeg"] if io is not None else []
    if jpegs:
        import torch

        try:
            frames = io.decode_jpeg([torch.from_numpy(found[i][0].copy()) for i in jpegs], mode=io.ImageReadMode.RGB, device="cuda")
        except RuntimeError:  # nvJPEG refuses some files (e.g. CMYK): those go through the CPU
            frames = [None] * len(jpegs)
        for i, chw in zip(jpegs, frames):
            if chw is not None:
                hwc = _oriented(chw.permute(1, 2, 0), found[i][2])
                out[i] = convert_color(hwc, conversion="rgb_to_gray") if color == "gray" else hwc.flip(2).contiguous() if color == "bgr" else hwc
    for i, item in enumerate(items):
        if out[i] is None:
            out[i] = _device.upload(_decode_cpu(item, color=color, exif=exif))
    return out[0] if single else out
