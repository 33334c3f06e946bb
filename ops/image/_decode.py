"""Decoding encoded images (JPEG, PNG, BMP, WebP) to HWC uint8, with EXIF orientation.

Before any decoder sees the bytes, ``_inspect`` sniffs the format and walks its container (JPEG
markers, PNG chunks, the BMP header, the RIFF header) so that empty, truncated and unsupported
input raises ``DecodeError`` instead of a half-grey image, and finds the EXIF orientation.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import cv2
import numpy as np
import simplejpeg

from .._errors import DecodeError
from .._op import Op
from .._params import Bool, Choice, Param
from .._spec import BYTES, TensorSpec
from ._color import gray_reference
from ._common import image_spec, jit

__all__ = ["FORMATS", "decode", "with_exif_orientation"]

_NAME = "image.decode"
#: the formats decode reads.
FORMATS = ("jpeg", "png", "bmp", "webp")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_OTHER_MAGIC = {b"GIF8": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"\x00\x00\x00\x0cjP": "JPEG 2000", b"8BPS": "PSD"}
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10


def _fail(what: str) -> DecodeError:
    return DecodeError(f"{_NAME}: {what}")


# -- looking inside the container --------------------------------------------------------------


@jit
def _is_exif(buf: np.ndarray, at: int) -> bool:
    sig = (69, 120, 105, 102, 0, 0)  # b"Exif\0\0"
    same = 0
    for k in range(6):
        same += buf[at + k] == sig[k]
    return same == 6


@jit
def _jpeg_walk(buf: np.ndarray) -> tuple[int, int, int, int]:
    """(status, end, exif_at, exif_len): status 0 = ends with EOI at ``end``, 1 = truncated, 2 = bad length.

    Segments are skipped by their length, entropy-coded data up to the next marker (FF00 stuffing
    and RSTn continue it), garbage between markers is skipped as libjpeg does.
    """
    n = buf.size
    i = 2
    exif_at, exif_len = -1, 0
    while True:
        while i < n and buf[i] != 0xFF:
            i += 1
        while i < n and buf[i] == 0xFF:
            i += 1
        if i >= n:
            return 1, i, exif_at, exif_len
        m = buf[i]
        i += 1
        if m == 0xD9:
            return 0, i, exif_at, exif_len
        if m == 0x00 or m == 0x01 or 0xD0 <= m <= 0xD7 or m == 0xD8:  # stray FF00, TEM, RSTn, SOI
            continue
        if i + 2 > n:
            return 1, i, exif_at, exif_len
        length = (int(buf[i]) << 8) | int(buf[i + 1])
        if length < 2:
            return 2, i, exif_at, exif_len
        if i + length > n:
            return 1, i, exif_at, exif_len
        if m == 0xE1 and exif_at < 0 and length >= 8 and _is_exif(buf, i + 2):
            exif_at, exif_len = i + 8, length - 8
        i += length
        if m == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while True:
                if i + 1 >= n:
                    return 1, n, exif_at, exif_len
                if buf[i] == 0xFF:
                    nxt = buf[i + 1]
                    if nxt == 0 or 0xD0 <= nxt <= 0xD7:
                        i += 2
                        continue
                    if nxt != 0xFF:
                        break
                i += 1


def _png_walk(data: memoryview) -> bytes | None:
    """The eXIf payload (or None); raises unless the chunks run intact up to IEND."""
    pos, n = 8, len(data)
    exif = None
    while True:
        if pos + 8 > n:
            raise _fail(f"truncated PNG: {n} bytes end before the IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            raise _fail(f"corrupt PNG: chunk length {length} at byte {pos}")
        end = pos + 12 + length
        if end > n:
            raise _fail(f"truncated PNG: the {kind!r} chunk at byte {pos} needs {end} bytes, got {n}")
        if kind == b"IEND":
            return exif
        if kind == b"eXIf" and exif is None:
            exif = bytes(data[pos + 8 : pos + 8 + length])
        pos = end


def _bmp_check(data: memoryview) -> None:
    n = len(data)
    if n < 26:
        raise _fail(f"truncated BMP: {n} bytes, shorter than its header")
    offset, dib = struct.unpack_from("<II", data, 10)
    if dib == 12:
        w, h, _, bpp = struct.unpack_from("<hhHH", data, 18)
        compression = 0
    elif n >= 34:
        w, h, _, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        raise _fail(f"truncated BMP: {n} bytes, shorter than its header")
    if compression in (0, 3, 6):  # uncompressed (RLE is checked by the decoder itself)
        need = offset + (abs(w) * bpp + 31) // 32 * 4 * abs(h)
        if n < need:
            raise _fail(f"truncated BMP: a {abs(w)}x{abs(h)} {bpp}-bit image needs {need} bytes, got {n}")


def _webp_walk(data: memoryview) -> bytes | None:
    """The EXIF chunk's payload (or None); raises if the RIFF container is cut short."""
    size = struct.unpack_from("<I", data, 4)[0] + 8
    if len(data) < size:
        raise _fail(f"truncated WebP: the RIFF header says {size} bytes, got {len(data)}")
    pos = 12
    while pos + 8 <= size:
        kind, length = struct.unpack_from("<4sI", data, pos)
        if kind == b"EXIF":
            return bytes(data[pos + 8 : pos + 8 + length])
        pos += 8 + length + (length & 1)
    return None


def _tiff_orientation(tiff: bytes | None) -> int:
    """The Orientation tag (0x0112) of IFD0 in EXIF's TIFF data; 1 if absent or malformed."""
    if tiff is None:
        return 1
    if tiff.startswith(b"Exif\x00\x00"):
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack_from(order + "I", tiff, 4)[0]
    if ifd + 2 > len(tiff):
        return 1
    (entries,) = struct.unpack_from(order + "H", tiff, ifd)
    for k in range(entries):
        p = ifd + 2 + 12 * k
        if p + 12 > len(tiff):
            break
        tag, kind, count = struct.unpack_from(order + "HHI", tiff, p)
        if tag == 0x0112:  # one SHORT or LONG, stored in the entry itself
            value = struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff, p + 8)[0] if kind in (3, 4) else 0
            return value if count == 1 and 1 <= value <= 8 else 1
    return 1


def _as_buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype == BYTES:
            data = data.item()
        else:
            return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    return np.frombuffer(data, np.uint8)


def _inspect(data: Any, exif: bool) -> tuple[np.ndarray, str, int]:
    """(the bytes as a uint8 array, the format, the EXIF orientation to apply); raises ``DecodeError``."""
    buf = _as_buffer(data)
    n = buf.size
    if n == 0:
        raise _fail("empty input (0 bytes)")
    head = buf[:16].tobytes()
    raw = None
    if head.startswith(b"\xff\xd8"):
        status, _, at, length = _jpeg_walk(buf)
        if status == 1:
            raise _fail(f"truncated JPEG: {n} bytes end before the end-of-image marker (FFD9)")
        if status == 2:
            raise _fail("corrupt JPEG: a marker segment has an invalid length")
        fmt = "jpeg"
        raw = buf[at : at + length].tobytes() if exif and at >= 0 else None
    elif head.startswith(_PNG_SIG) or (n < 8 and _PNG_SIG.startswith(head)):
        fmt = "png"
        raw = _png_walk(buf.data)
    elif head.startswith(b"BM"):
        fmt = "bmp"
        _bmp_check(buf.data)
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        fmt = "webp"
        raw = _webp_walk(buf.data)
    else:
        if n < 12 and (b"\xff\xd8".startswith(head) or b"RIFF".startswith(head[:4])):
            raise _fail(f"truncated input: {n} bytes, too short for an image header")
        known = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
        if known is None and head[4:8] == b"ftyp":
            known = "HEIF/AVIF"
        what = f"{known}, which is not supported" if known else f"not a recognised image (starts with {head[:8].hex(' ')})"
        raise _fail(f"unsupported format: {what}; image.decode reads JPEG, PNG, BMP and WebP")
    return buf, fmt, _tiff_orientation(raw) if exif else 1


def _orient_cv(image: np.ndarray, orientation: int) -> np.ndarray:
    if orientation == 1:
        return image
    if orientation in (2, 4):
        return cv2.flip(image, 1 if orientation == 2 else 0)
    if orientation in (3, 6, 8):
        codes = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}
        return cv2.rotate(image, codes[orientation])
    t = cv2.transpose(image)
    return t if orientation == 5 else cv2.rotate(t, cv2.ROTATE_180)


# -- the op ----------------------------------------------------------------------------------


def _decode_reference(data: Any, *, color: str, exif: bool) -> np.ndarray:
    """Pillow's decode and ``ImageOps.exif_transpose`` (Pillow is a dev dependency: tests only)."""
    buf, fmt, _ = _inspect(data, exif)  # the same checks as the kernel
    from PIL import Image, ImageOps

    im: Image.Image
    try:
        im = Image.open(io.BytesIO(buf.tobytes()))
        im.load()
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, …
        raise _fail(f"Pillow could not decode the {fmt.upper()} data: {e}") from None
    if exif:
        im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I"):  # 16-bit gray PNG: the high byte
        rgb = np.repeat((np.asarray(im) >> 8).astype(np.uint8)[..., None], 3, axis=2)
    else:
        rgb = np.asarray(im.convert("RGB"))
    if color == "gray":
        return gray_reference(rgb)
    return np.ascontiguousarray(rgb[..., ::-1]) if color == "bgr" else rgb


decode = Op(
    _NAME,
    doc="""Decode one encoded image (or a batch, giving a list) to an ``H W C`` uint8 array.

Formats: JPEG (baseline and progressive, any chroma subsampling, gray, CMYK), PNG (all bit depths
and colour types; 16-bit samples keep their high byte, ``v >> 8``, as libpng's ``strip_16``), BMP
and WebP (lossy and lossless). Alpha is dropped, not composited. Other formats (GIF, TIFF, HEIF, …)
raise ``DecodeError``.

``color``: ``rgb`` or ``bgr`` give 3 channels; ``gray`` gives ``H W 1``, the ITU-R BT.601 luma of the
RGB decode, exactly ``image.convert_color(decode(x), conversion="rgb_to_gray")`` (OpenCV's
``COLOR_RGB2GRAY``; for a gray JPEG or PNG that is the stored gray value itself).

``exif``: apply the EXIF Orientation tag (values 1–8, from a JPEG's APP1 segment, a PNG's eXIf
chunk or a WebP's EXIF chunk) so the image comes out upright, exactly as
``PIL.ImageOps.exif_transpose``; with ``exif=False`` the stored pixel grid is returned.

JPEG is decoded by libjpeg-turbo through ``simplejpeg`` in strict mode: any libjpeg warning (such as
"premature end of data segment", which other decoders paper over with grey rows) is an error. PNG,
BMP and WebP go through OpenCV's ``cv2.imdecode`` (libpng, libwebp) with
``IMREAD_IGNORE_ORIENTATION``. Both release the GIL; the orientation is read and applied by twinpipe. The reference is
Pillow (``Image.open`` + ``ImageOps.exif_transpose``; 16-bit gray PNG: the high byte). Decoders built
on libjpeg-turbo agree bit-exactly (OpenCV, Pillow and torchvision give identical pixels for YCbCr
and gray JPEGs of any subsampling, baseline or progressive, and for PNG, WebP, BMP); the declared
tolerance is 2 (uint8 levels) to cover CMYK JPEGs, whose conversion differs by up to 2. Unlike
Pillow, an orientation given only in XMP metadata is not applied.

Errors, all ``DecodeError`` naming the op: empty input, an unsupported or unrecognised format, a
truncated file (a JPEG without its end-of-image marker or with scan data cut short, a PNG without
IEND, a BMP or WebP shorter than its header says), and data the decoder rejects or warns about. In a batch the
error says which item failed.""",
    inputs=[TensorSpec("data", (BYTES,), "", "one encoded image: bytes, or a uint8 1-D array of the file's bytes")],
    outputs=[image_spec(dtypes=(np.uint8,), doc="the decoded image, height × width × (3, or 1 for gray)")],
    params=[
        Param("color", Choice(("rgb", "bgr", "gray")), "rgb", "channel layout of the output"),
        Param("exif", Bool(), True, "apply the EXIF orientation tag so the image is upright"),
    ],
    reference=_decode_reference,
    tolerance={"uint8": 2},
    example_inputs=lambda rng, dtype: (_example_bytes(rng),),
    example_params=lambda rng, data: {"color": str(rng.choice(["rgb", "bgr", "gray"])), "exif": bool(rng.random() < 0.8)},
)


@decode.kernel("cpu")
def _decode_cpu(data: Any, *, color: str, exif: bool) -> np.ndarray:
    buf, fmt, orientation = _inspect(data, exif)
    image = _decode_jpeg(buf, color) if fmt == "jpeg" else _decode_cv(buf, fmt, color)
    if color == "gray":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    image = _orient_cv(image, orientation)
    return image[..., None] if image.ndim == 2 else image


def _decode_jpeg(buf: np.ndarray, color: str) -> np.ndarray:
    # libjpeg-turbo through simplejpeg in strict mode: a warning (e.g. "premature end of data
    # segment", which OpenCV and Pillow turn into grey rows) is an error; twice OpenCV's speed
    try:
        return simplejpeg.decode_jpeg(buf, colorspace="BGR" if color == "bgr" else "RGB", strict=True)
    except ValueError as e:
        raise _fail(f"corrupt JPEG data ({buf.size} bytes): {str(e).strip()}") from None


def _decode_cv(buf: np.ndarray, fmt: str, color: str) -> np.ndarray:
    rgb_flag = _IMREAD_RGB if color != "bgr" and _IMREAD_RGB is not None else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(buf, rgb_flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:
        raise _fail(f"OpenCV could not decode the {fmt.upper()} data ({buf.size} bytes): {str(e).strip()}") from None
    if image is None or image.ndim != 3 or image.dtype != np.uint8:
        raise _fail(f"corrupt {fmt.upper()} data ({buf.size} bytes): the decoder rejected it")
    if color != "bgr" and rgb_flag == cv2.IMREAD_COLOR:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


# -- example inputs: real-ish random content, encoded ----------------------------------------


def with_exif_orientation(jpeg_or_png: bytes, orientation: int, *, little_endian: bool = False, pad: bytes = b"") -> bytes:
    """``jpeg_or_png`` with an EXIF block holding only ``Orientation = orientation`` (and ``pad`` after it)."""
    e = "<" if little_endian else ">"
    tiff = (b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(e + "IH", 8, 1)
    tiff += struct.pack(e + "HHIH2x", 0x0112, 3, 1, orientation) + struct.pack(e + "I", 0) + pad
    if jpeg_or_png.startswith(_PNG_SIG):  # an eXIf chunk right after IHDR
        chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
        at = 8 + 12 + struct.unpack_from(">I", jpeg_or_png, 8)[0]
        return jpeg_or_png[:at] + chunk + jpeg_or_png[at:]
    app1 = b"\xff\xe1" + struct.pack(">H", 8 + len(tiff)) + b"Exif\x00\x00" + tiff
    return jpeg_or_png[:2] + app1 + jpeg_or_png[2:]


def _content(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """Photo-like pixels: a colour, two smooth waves and some grain per channel."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w, 8)
    out = np.empty((h, w, c))
    for k in range(c):
        f = rng.uniform(0.5, 6, (2, 2))
        waves = sum(rng.uniform(20, 70) * np.sin(2 * np.pi * (f[j, 0] * xx + f[j, 1] * yy) + rng.uniform(0, 6)) for j in range(2))
        out[..., k] = rng.uniform(40, 215) + waves + rng.normal(0, rng.uniform(1, 12), (h, w))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _example_bytes(rng: np.random.Generator) -> bytes:
    # (the shipped photos are decoded in tests/ops/image/test_decode.py: ops never import pipelines)
    kind = str(rng.choice(["jpeg", "jpeg", "jpeg", "png", "png", "bmp", "webp"]))
    h, w = (int(rng.integers(1, 48)) if rng.random() > 0.2 else 1 for _ in range(2))
    c = int(rng.choice({"jpeg": [1, 3, 3], "png": [1, 3, 4], "bmp": [1, 3], "webp": [3, 4]}[kind]))
    pixels = _content(rng, h, w, c)
    params: list[int] = []
    if kind == "jpeg":
        factors = [cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 101)), cv2.IMWRITE_JPEG_PROGRESSIVE, int(rng.random() < 0.3)]
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, int(rng.choice(factors))]
    elif kind == "png" and rng.random() < 0.3:
        pixels = pixels.astype(np.uint16) * 256 + rng.integers(0, 256, pixels.shape, dtype=np.uint16)
    elif kind == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(rng.choice([60, 90, 101]))]  # 101: lossless
    ok, enc = cv2.imencode("." + kind.replace("jpeg", "jpg"), pixels, params)
    assert ok, kind
    data = enc.tobytes()
    if kind in ("jpeg", "png") and rng.random() < 0.4:
        data = with_exif_orientation(data, int(rng.integers(1, 9)), little_endian=bool(rng.random() < 0.5))
    return data
