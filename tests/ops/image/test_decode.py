"""image.decode: the kit, agreement with Pillow and torchvision, EXIF orientation, and bad bytes."""

from __future__ import annotations

import io
import os
import struct
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image

from twinpipe.ops import DecodeError, InputError, ParamError
from twinpipe.ops.image._color import convert_color
from twinpipe.ops.image._decode import decode, with_exif_orientation
from twinpipe.ops.testing import check_op
from twinpipe.pipelines import asset_path

PHOTOS = ["coffee.jpg", "chelsea.jpg", "astronaut.jpg", "astronaut.png", "coffee_exif6.jpg"]
TOL = decode.tolerance_for(np.dtype(np.uint8))  # declared: 2 levels between decoders


def _rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def _content(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    """Smooth gradients plus grain (not white noise, which no codec sees in photos)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(30, 220, c) + rng.uniform(-3, 3, c) * xx[..., None] + rng.uniform(-3, 3, c) * yy[..., None]
    return np.clip(base + rng.normal(0, 8, (h, w, c)), 0, 255).astype(np.uint8).squeeze(-1 if c == 1 else ())


def _pil_bytes(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _pil_rgb(data: bytes, exif: bool = True) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    if exif:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"))


def _close(got: np.ndarray, expected: np.ndarray, atol: float = TOL) -> None:
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= atol


def test_check_op() -> None:
    report = check_op(decode, cases=24)
    assert report.cases["cpu/object"] == 24


def test_assets_are_small_real_photos() -> None:
    for name in PHOTOS:
        data = asset_path(name).read_bytes()
        assert len(data) < 80_000, name
        assert 100 <= min(Image.open(io.BytesIO(data)).size) <= 600
    assert "Orientation" in asset_path("SOURCES.md").read_text()


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision 0.29+
@pytest.mark.parametrize("name", PHOTOS)
def test_photos_match_pillow_and_torchvision(name: str) -> None:
    data = asset_path(name).read_bytes()
    rgb = decode(data)
    _close(rgb, _pil_rgb(data))
    tv = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    _close(rgb, tv.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(decode(data, color="bgr"), rgb[..., ::-1])
    gray = decode(data, color="gray")
    np.testing.assert_array_equal(gray, convert_color(rgb, conversion="rgb_to_gray"))
    _close(gray[..., 0], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), atol=1)


def test_exif6_photo_is_upright() -> None:
    upright = decode(asset_path("coffee.jpg").read_bytes())
    stored = decode(asset_path("coffee_exif6.jpg").read_bytes(), exif=False)
    shown = decode(asset_path("coffee_exif6.jpg").read_bytes())
    assert upright.shape == shown.shape == (267, 400, 3)
    assert stored.shape == (400, 267, 3)
    # two separate JPEG encodings of the same photo: close, and far from the wrong rotation
    assert np.abs(shown.astype(int) - upright).mean() < 3
    assert np.abs(np.rot90(shown, 2).astype(int) - upright).mean() > 20


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_random_jpegs_match_pillow(subsampling: int) -> None:
    rng = _rng()
    for progressive in (False, True):
        for _ in range(4):
            h, w = (int(v) for v in rng.choice([1, 2, 3, 7, 16, 17, 33, 61], 2))
            data = _pil_bytes(Image.fromarray(_content(rng, h, w)), "JPEG", quality=int(rng.integers(40, 100)),
                              subsampling=subsampling, progressive=progressive)  # fmt: skip
            _close(decode(data), _pil_rgb(data))


@pytest.mark.parametrize(
    ("fmt", "mode", "kw"),
    [
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "L", {}),
        ("PNG", "LA", {}),
        ("PNG", "P", {}),
        ("PNG", "1", {}),
        ("BMP", "RGB", {}),
        ("BMP", "L", {}),
        ("BMP", "P", {}),
        ("BMP", "1", {}),
        ("WEBP", "RGB", {"quality": 80}),
        ("WEBP", "RGBA", {"lossless": True}),
    ],
)
def test_formats_match_pillow(fmt: str, mode: str, kw: dict[str, object]) -> None:
    rng = _rng()
    for h, w in [(1, 1), (5, 3), (int(rng.integers(1, 50)), int(rng.integers(1, 50)))]:
        c = {"L": 1, "1": 1, "LA": 2, "RGBA": 4, "CMYK": 4}.get(mode, 3)
        src = Image.fromarray(_content(rng, h, w, c), {2: "LA", 4: "RGBA"}.get(c, "L" if c == 1 else "RGB"))
        im = src.convert(mode) if mode not in ("LA", "RGBA") else src
        if mode == "CMYK":
            im = Image.frombytes("CMYK", im.size, im.tobytes())
        data = _pil_bytes(im, fmt, **kw)
        _close(decode(data), _pil_rgb(data))
        if mode in ("L", "1"):  # a gray file decoded gray is its stored gray value
            _close(decode(data, color="gray")[..., 0], np.asarray(Image.open(io.BytesIO(data)).convert("L")), atol=0)


def test_16bit_png_keeps_the_high_byte() -> None:
    rng = _rng()
    for c in (1, 3):
        src = rng.integers(0, 65536, (int(rng.integers(1, 30)), int(rng.integers(1, 30)), c), dtype=np.uint16)
        ok, enc = cv2.imencode(".png", src)  # cv2 writes BGR(A) order
        assert ok
        expected = (src >> 8).astype(np.uint8)
        expected = np.repeat(expected, 3, axis=2) if c == 1 else expected[..., ::-1]
        np.testing.assert_array_equal(decode(enc.tobytes()), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int) -> None:
    rng = _rng()
    h, w = int(rng.integers(5, 30)), int(rng.integers(31, 60))  # not square, odd sizes possible
    im = Image.fromarray(_content(rng, h, w))
    exif = Image.Exif()
    exif[0x0112] = orientation
    # Pillow writes the tag (JPEG APP1, PNG eXIf, WebP EXIF); twinpipe's own writer, both byte orders
    files = [_pil_bytes(im, fmt, exif=exif.tobytes(), **kw) for fmt, kw in
             [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})]]  # fmt: skip
    plain = _pil_bytes(im, "JPEG", quality=90)
    files += [with_exif_orientation(plain, orientation, little_endian=le) for le in (False, True)]
    files.append(with_exif_orientation(_pil_bytes(im, "PNG"), orientation))
    for data in files:
        _close(decode(data), _pil_rgb(data, exif=True))
        _close(decode(data, exif=False), _pil_rgb(data, exif=False))
        np.testing.assert_array_equal(decode(data, color="gray"), convert_color(decode(data), conversion="rgb_to_gray"))


def test_input_forms() -> None:
    data = asset_path("chelsea.jpg").read_bytes()
    expected = decode(data)
    arr = np.frombuffer(data, np.uint8)
    for form in (bytearray(data), memoryview(data), np.bytes_(data), arr, arr.copy()[::1], np.array(data, dtype=object)):
        np.testing.assert_array_equal(decode(form), expected)
    t = decode(torch.from_numpy(arr.copy()))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), expected)
    png = asset_path("astronaut.png").read_bytes()
    for batch in ([data, png], np.array([data, png], dtype=object)):
        out = decode(batch, color="gray")
        assert isinstance(out, list)
        assert [o.shape for o in out] == [(300, 451, 1), (160, 160, 1)]
    # bytes after the end-of-image marker are ignored, as every decoder does
    np.testing.assert_array_equal(decode(data + b"trailing junk"), expected)


def _raises(data: object, *words: str) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data)
    msg = str(info.value)
    assert "image.decode" in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_empty_and_non_image() -> None:
    _raises(b"", "empty")
    _raises(np.zeros(0, np.uint8), "empty")
    _raises(b"hello, world! " * 20, "unsupported format", "JPEG, PNG, BMP and WebP")
    _raises(np.random.default_rng().integers(1, 255, 500, dtype=np.uint8).tobytes(), "unsupported format")
    gif = _pil_bytes(Image.new("RGB", (4, 4)), "GIF")
    _raises(gif, "GIF", "not supported")
    tiff = _pil_bytes(Image.new("RGB", (4, 4)), "TIFF")
    _raises(tiff, "TIFF", "not supported")


def _encodings(rng: np.random.Generator) -> dict[str, bytes]:
    img = _content(rng, int(rng.integers(20, 40)), int(rng.integers(20, 40)))
    im = Image.fromarray(img)
    # a JPEG whose EXIF block contains an end-of-image marker (as an embedded thumbnail does)
    thumb = with_exif_orientation(_pil_bytes(im, "JPEG"), 1, pad=b"\xff\xd8\xff\xd9" * 4)
    return {
        "JPEG": _pil_bytes(im, "JPEG", quality=90),
        "progressive JPEG": _pil_bytes(im, "JPEG", progressive=True),
        "thumbnail JPEG": thumb,
        "PNG": _pil_bytes(im, "PNG"),
        "BMP": _pil_bytes(im, "BMP"),
        "WebP": _pil_bytes(im, "WEBP", quality=80),
    }


def test_truncated_raises() -> None:
    rng = _rng()
    for name, data in _encodings(rng).items():
        decode(data)  # the whole file decodes
        n = len(data)
        cuts = {1, 2, 5, 9, 20, n // 10, n // 2, (9 * n) // 10, n - 3, n - 2, n - 1, *rng.integers(1, n, 5)}
        for cut in sorted(cuts):
            with pytest.raises(DecodeError) as info:
                decode(data[: int(cut)])
            msg = str(info.value)
            assert "image.decode" in msg
            assert "truncated" in msg or "unsupported" in msg, (name, cut, msg)


@pytest.mark.parametrize("name", PHOTOS[:3])
def test_scan_data_cut_short_but_ending_in_eoi_raises(name: str) -> None:
    # libjpeg only warns here ("premature end of data segment") and fills the rest with grey;
    # the file still ends with the end-of-image marker, so the marker walk alone cannot see it
    data = asset_path(name).read_bytes()
    for keep in (len(data) // 3, len(data) // 2, (4 * len(data)) // 5):
        with pytest.raises(DecodeError, match=r"image.decode: corrupt JPEG data .*premature end of data segment"):
            decode(data[:keep] + b"\xff\xd9")


def test_random_corruption_raises_or_gives_a_whole_image() -> None:
    rng = _rng()
    errors = []
    for name, data in _encodings(rng).items():
        for _ in range(25):
            bad = bytearray(data)
            for pos in rng.integers(0, len(bad), int(rng.integers(1, 5))):
                bad[int(pos)] = int(rng.integers(0, 256))
            try:
                out = decode(bytes(bad))
            except DecodeError as e:
                errors.append(str(e))
                continue
            assert out.dtype == np.uint8
            assert out.ndim == 3
            assert out.shape[2] == 3
            try:  # the size the (possibly corrupted) header declares
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    w, h = Image.open(io.BytesIO(bytes(bad))).size
            except Exception:
                continue
            assert out.shape[:2] in ((h, w), (w, h)), name
    assert all(m.startswith("image.decode: ") for m in errors)


def test_bad_item_in_a_batch_is_named() -> None:
    good = asset_path("coffee.jpg").read_bytes()
    batch = [good, good, good[: len(good) // 2], good]
    with pytest.raises(DecodeError) as info:
        decode(batch)
    msg = str(info.value)
    assert "image.decode" in msg
    assert "truncated JPEG" in msg
    assert "batch item 2 of 4" in msg
    with pytest.raises(DecodeError, match="batch item 1 of 2"):
        decode(np.array([good, b""], dtype=object))


def test_bad_inputs_and_params() -> None:
    data = asset_path("coffee.jpg").read_bytes()
    with pytest.raises(InputError, match=r"image\.decode: input 'data' must be encoded bytes"):
        decode(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="must be encoded bytes"):
        decode(np.zeros(10, np.float32))
    with pytest.raises(ParamError) as info:
        decode(data, color="hsv")
    assert "image.decode" in str(info.value)
    assert "'color'" in str(info.value)
    assert "'gray'" in str(info.value)
    with pytest.raises(ParamError, match="'exif'.*true or false"):
        decode(data, exif="yes")
    with pytest.raises(ParamError, match="unknown parameter 'colour'.*'color'"):
        decode(data, colour="rgb")


def test_corrupt_jpeg_segment_length() -> None:
    data = bytearray(asset_path("coffee.jpg").read_bytes())
    assert data[2:4] == b"\xff\xe0"
    data[4:6] = struct.pack(">H", 1)  # a marker segment length below 2
    _raises(bytes(data), "corrupt JPEG")
