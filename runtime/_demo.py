"""``twinpipe demo``: the shipped image ops over a real photograph, printing what each produced."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twinpipe.ops import OpError, image
from twinpipe.pipelines import asset_path

__all__ = ["run_demo"]

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    fn()  # the first call loads the kernels from Numba's cache; time the second
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def _row(name: str, value: Any, ms: float) -> str:
    a = np.asarray(value)
    stats = f"{a.min():>9.3f} {a.max():>9.3f} {a.mean():>9.3f}" if a.size else ""
    return f"{name:44s} {list(a.shape)!s:16s} {a.dtype!s:8s} {stats} {ms:8.2f}"


def _save(out_dir: Path | None, name: str, img: np.ndarray) -> None:
    if out_dir is None:
        return
    import cv2

    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip((a - a.min()) / max(float(a.max() - a.min()), 1e-12) * 255, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        a = a[:, :, ::-1]  # OpenCV writes BGR
    cv2.imwrite(str(out_dir / f"{name}.png"), a)


def run_demo(path: str | None = None, out: str | None = None) -> int:
    """Decode ``path`` (default: the shipped ``coffee.jpg``) and run the image ops over it."""
    src = Path(path) if path else asset_path("coffee.jpg")
    out_dir = Path(out) if out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    print(f"twinpipe demo: {src} ({len(data):,} bytes)\n")
    print(f"{'op':44s} {'shape':16s} {'dtype':8s} {'min':>9s} {'max':>9s} {'mean':>9s} {'ms':>8s}")
    try:
        img, ms = _timed(lambda: image.decode(data, color="rgb"))
    except OpError as e:
        print(f"cannot decode {src}: {e}")
        return 1
    print(_row("image.decode (rgb, EXIF upright)", img, ms))
    _save(out_dir, "decoded", img)
    resized, ms = _timed(lambda: image.resize(img, size=256, fit="shorter"))
    print(_row("image.resize (shorter side 256, bilinear+aa)", resized, ms))
    cropped, ms = _timed(lambda: image.center_crop(resized, size=224))
    print(_row("image.center_crop (224)", cropped, ms))
    _save(out_dir, "center_crop", cropped)
    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("flip", "image.flip (horizontal)", lambda: image.flip(cropped, axis="horizontal")),
        ("rotate90", "image.rotate90 (k=1)", lambda: image.rotate90(cropped, k=1)),
        ("gray", "image.convert_color (rgb_to_gray)", lambda: image.convert_color(cropped, conversion="rgb_to_gray")),
        ("pad", "image.pad (8 px, reflect)", lambda: image.pad(cropped, padding=8, padding_mode="reflect")),
        ("normalize", "image.normalize (ImageNet mean/std)", lambda: image.normalize(cropped, mean=MEAN, std=STD)),
        ("layout", "image.layout (HWC → CHW)", lambda: image.layout(cropped, to="CHW")),
        ("to_dtype", "image.to_dtype (float32, scaled)", lambda: image.to_dtype(cropped, dtype="float32")),
    ]
    results: dict[str, Any] = {}
    for key, label, fn in steps:
        results[key], ms = _timed(fn)
        print(_row(label, results[key], ms))
        if key in ("flip", "rotate90", "gray", "pad"):
            _save(out_dir, key, results[key])
    fused, ms = _timed(lambda: image.resize_crop_normalize(img, size=256, crop=224, mean=MEAN, std=STD))
    print(_row("image.resize_crop_normalize (fused)", fused, ms))
    chain = np.transpose(results["normalize"], (2, 0, 1))
    print(f"{'':44s} max |fused - unfused chain| = {float(np.abs(fused - chain).max()):.2e}")
    boxed, ms = _timed(lambda: image.letterbox(img, size=320))
    print(_row("image.letterbox (320) image", boxed.image, ms))
    print(f"{'':44s} scale (x, y) = ({boxed.scale[0]:.4f}, {boxed.scale[1]:.4f}), offset (x, y) = ({boxed.offset[0]:g}, {boxed.offset[1]:g})")
    _save(out_dir, "letterbox", boxed.image)
    for name, fn in [
        ("image.random_resized_crop (train, seed 7)", lambda: image.random_resized_crop(img, size=224, rng=7)),
        ("image.random_resized_crop (serve)", lambda: image.random_resized_crop(img, size=224, mode="serve")),
        ("image.random_flip (train, seed 7)", lambda: image.random_flip(cropped, rng=7)),
        ("image.color_jitter (train, seed 7)", lambda: image.color_jitter(cropped, brightness=0.4, contrast=0.4, saturation=0.4, rng=7)),
    ]:
        value, ms = _timed(fn)
        print(_row(name, value, ms))
        _save(out_dir, name.split()[0].replace("image.", "") + ("_serve" if "serve" in name else ""), value)
    if out_dir is not None:
        print(f"\nimages written to {out_dir}/")
    return 0
