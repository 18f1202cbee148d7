"""Small compressed images that decode to huge ones, and other hostile CompressedImage payloads.

Why hand-made: the bombs must be a few KB (a test pushes them through a node between processes)
and must hit the exact holes issue 15 found: a PNG sent as "jpeg", a JPEG whose frame header
hides behind 1100 COM segments, a 1-bit PNG that is small in bytes but huge in pixels. The PNG
writer is independent of OpenCV (zlib + struct), so the header parser is tested against files
OpenCV did not write.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(
    width: int,
    height: int,
    depth: int = 8,
    colour: int = 2,
    *,
    rows: Optional[np.ndarray] = None,
    palette: Optional[bytes] = None,
    transparency: Optional[bytes] = None,
    extra_chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A valid PNG; ``rows`` (height x row bytes, uint8) or all-zero pixels, streamed so that a
    20000x20000 image costs one row of memory."""
    rowbytes = (width * _PNG_CHANNELS[colour] * depth + 7) // 8
    squeeze = zlib.compressobj(9)
    parts = []
    if rows is None:
        zero_row = bytes(1 + rowbytes)
        for _ in range(height):
            parts.append(squeeze.compress(zero_row))
    else:
        for row in rows:
            parts.append(squeeze.compress(b"\0" + bytes(row)))
    parts.append(squeeze.flush())
    out = PNG_SIGNATURE + png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    )
    for kind, data in extra_chunks:
        out += png_chunk(kind, data)
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    if transparency is not None:
        out += png_chunk(b"tRNS", transparency)
    return out + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def small_jpeg(height: int = 16, width: int = 16, channels: int = 3) -> bytes:
    import cv2

    image = np.full((height, width, channels) if channels > 1 else (height, width), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def jpeg_with_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` (a baseline or progressive JPEG) with its frame header (SOF0/SOF2) claiming height
    x width."""
    sof = min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i >= 0)
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def progressive_jpeg(height: int = 64, width: int = 64, subsampling_444: bool = True) -> bytes:
    import cv2

    image = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    factor = (
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
        if subsampling_444
        else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    )
    ok, buf = cv2.imencode(
        ".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
    )
    assert ok
    return buf.tobytes()


def jpeg_with_comments(data: bytes, count: int, payload: bytes = b"ab") -> bytes:
    """``data`` with ``count`` COM segments right after SOI (before the frame header)."""
    comment = b"\xff\xfe" + struct.pack(">H", 2 + len(payload)) + payload
    return data[:2] + comment * count + data[2:]


def bombs() -> dict[str, tuple[bytes, str]]:
    """name -> (CompressedImage data, format string): the hostile inputs of issue 15 and more."""
    png_20k = png_bytes(20000, 20000, depth=1, colour=3, palette=b"\0\0\0\xff\xff\xff")
    jpeg_20k = jpeg_with_comments(jpeg_with_size(small_jpeg(), 20000, 20000), 1100)
    png_1bit_16k = png_bytes(16000, 16000, depth=1, colour=0)
    good_png = png_bytes(64, 64)
    return {
        "png 20000x20000 sent as jpeg": (png_20k, "jpeg"),
        "jpeg 20000x20000 behind 1100 COM segments": (jpeg_20k, "rgb8; jpeg compressed bgr8"),
        "1-bit png 16000x16000": (png_1bit_16k, "png"),
        # inside max_input_pixels, but libjpeg buffers 2 bytes a sample of coefficients:
        # 9 bytes a pixel
        "progressive jpeg 4096x4096 4:4:4": (
            jpeg_with_size(progressive_jpeg(), 4096, 4096),
            "jpeg",
        ),
        "truncated png header": (good_png[:20], "png"),
        "truncated jpeg header": (small_jpeg()[:40], "jpeg"),
        "garbage": (
            np.random.default_rng(15).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
            "jpeg",
        ),
    }
