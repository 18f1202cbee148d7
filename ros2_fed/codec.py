"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> numpy, zero-copy where possible.

Pure python (numpy, plus OpenCV for colour conversion and JPEG/PNG); no rclpy at import time.
The decode direction works on any object with the sensor_msgs fields (``Image``: header,
height, width, encoding, is_bigendian, step, data; ``CompressedImage``: header, format, data);
only :func:`numpy_to_image` / :func:`numpy_to_compressed` import ``sensor_msgs.msg`` (lazily).

Behaviour follows ROS 2 cv_bridge for the supported encodings: :func:`image_to_numpy` is
``imgmsg_to_cv2(msg, "passthrough")`` (an HxW or HxWxC array in the message's encoding), and
:func:`numpy_to_image` fills height/width/step/is_bigendian as ``cv2_to_imgmsg`` does. On top
of cv_bridge it validates every message before touching its data and reports what is wrong
with an :class:`ImageDecodeError` whose ``kind`` (one of :data:`KINDS`) the node counts in
/diagnostics. Frames that decode but needed a guess carry a :class:`DecodeNote` (kinds
:data:`NOTE_KINDS`) in :func:`decode_rgb8`'s result, so the node can count and log them.

Zero copy: rclpy stores ``uint8[] data`` as ``array.array('B')``, so :func:`image_to_numpy`
returns a view of the message buffer (a strided view when rows are padded, ``step`` larger
than the row) unless a byte swap is needed: ``is_bigendian`` is honoured for every
multi-byte encoding (16-bit, 32-bit, float), whatever this machine's byte order.

Size limits (:class:`InputLimits`): every frame's width x height must be within
``max_pixels`` (the node's ``max_input_pixels`` parameter, default
:data:`DEFAULT_MAX_INPUT_PIXELS`) and each side at least ``min_side`` (the node uses
:data:`MIN_USEFUL_SIDE`; smaller frames are ``too_small``, never an engine failure).

Compressed input: only **JPEG** and **PNG** are accepted, recognised by their magic bytes
(``FF D8 FF`` / ``89 50 4E 47 0D 0A 1A 0A``), whatever the ``format`` string says; everything
else (WebP, TIFF, BMP, GIF, compressedDepth, ...) is ``unknown_format``: each extra decoder is
attack surface and image_transport writes only these two. A ``format`` naming another codec
than the bytes is decoded by the bytes and noted (``format_mismatch``). Before any pixel is
decoded the header is parsed completely (PNG chunks up to IDAT, every JPEG segment up to the
first scan header, no count cut-off: cost linear in the bytes, about 0.1-0.2 s per MB of
worst-case empty segments on a loaded 2-core machine); a header that cannot be read is
``corrupt_compressed`` and is never handed to OpenCV. The array OpenCV would allocate
(height x width x channels x bytes per sample, with OpenCV's own channel rules: palette or
RGB with tRNS -> 4 channels, gray+alpha -> 4, 16-bit kept) must fit in one rgb8 frame of
``max_pixels`` (``3 * max_pixels`` bytes), and the compressed data itself too. What decoding
holds at its peak must fit in two such frames: cv2.imdecode's Python binding copies its result
(two arrays for a moment), and libjpeg keeps a progressive or multi-scan JPEG's coefficients
(2 bytes a sample) next to the array. So decoding plus the conversion to rgb8 never holds more
than two maximal frames.

Camera encodings (USB, GMSL and machine-vision cameras deliver these): YUV 4:2:2 as ``yuv422``
/ ``uyvy`` (U Y0 V Y1) and ``yuv422_yuy2`` / ``yuyv`` (Y0 U Y1 V), even width; ``nv12`` /
``nv21`` (a Y plane, then a half-height plane of interleaved chroma, ``step * height * 3/2``
bytes, even sides); Bayer mosaics ``bayer_rggb8``, ``bayer_bggr8``, ``bayer_gbrg8``,
``bayer_grbg8`` and their ``16`` forms (the high byte, then demosaiced). They pass the same size
checks as every encoding before a byte of data is read, and OpenCV converts them to RGB.
:func:`image_to_numpy` returns their raw layout (HxWx2, (H*3/2)xW, HxW).

Generic encodings (``<depth>C<n>``; the bare depth means C1) carry no colour meaning. For the
engine (:func:`to_rgb8` / :func:`decode_rgb8`) they are interpreted by channel count and
noted (``generic_encoding``) on every frame:

- accepted depths: ``8U`` (as is), ``16U`` (high byte, like mono16/rgb16), ``32F``/``64F``
  (intensity in [0, 1], clipped, NaN -> 0); C1 = gray, C3 = RGB order, C4 = RGBA (alpha
  dropped);
- refused (``unknown_encoding``): C2 (no image meaning), more than 4 channels, and the signed
  depths ``8S``/``16S``/``32S`` (no intensity scale). :func:`image_to_numpy` (passthrough)
  still returns all of them as arrays.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

__all__ = [
    "ImageDecodeError",
    "DecodeNote",
    "Decoded",
    "InputLimits",
    "CompressedHeader",
    "KINDS",
    "NOTE_KINDS",
    "COMPRESSED_FORMATS",
    "MAX_DIMENSION",
    "MAX_BYTES",
    "DEFAULT_MAX_INPUT_PIXELS",
    "MIN_USEFUL_SIDE",
    "NAMED_ENCODINGS",
    "CAMERA_ENCODINGS",
    "encoding_info",
    "image_to_numpy",
    "sniff_format",
    "read_compressed_header",
    "compressed_to_numpy",
    "decode_rgb8",
    "to_rgb8",
    "numpy_to_image",
    "numpy_to_compressed",
]

#: Largest accepted width or height (pixels); bigger messages are rejected before their
#: data is read.
MAX_DIMENSION = 16384
#: Largest accepted raw image buffer (step * height).
MAX_BYTES = 512 * 1024 * 1024
#: Default pixel budget per frame (the node's ``max_input_pixels``): 4096 x 4096, 48 MiB as rgb8.
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
#: Smallest side the node accepts: the engines work at 1/4 resolution (8 pixels left at 32) and a
#: 1x1 frame used to fail inside the alert step, counted as an engine failure (issue 15).
MIN_USEFUL_SIDE = 32
#: Compressed formats accepted (by magic bytes).
COMPRESSED_FORMATS = ("jpeg", "png")
#: Bytes per pixel of the frame the pixel budget is measured in (rgb8, what the engine takes).
_BUDGET_BYTES_PER_PIXEL = 3

#: Every value ImageDecodeError.kind can take.
KINDS = (
    "unknown_encoding",
    "step_mismatch",
    "truncated",
    "zero_size",
    "too_small",
    "too_large",
    "corrupt_compressed",
    "unknown_format",
)
#: Every value DecodeNote.kind can take (the frame was decoded, with a guess worth counting).
NOTE_KINDS = (
    "format_mismatch",
    "generic_encoding",
)

_BIG_ENDIAN_HOST = sys.byteorder == "big"


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown ImageDecodeError kind {kind!r} (one of {', '.join(KINDS)})")
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DecodeNote:
    """Something worth counting about a frame that did decode; ``kind`` is one of
    :data:`NOTE_KINDS`."""

    kind: str
    message: str

    def __post_init__(self) -> None:
        if self.kind not in NOTE_KINDS:
            raise ValueError(
                f"unknown DecodeNote kind {self.kind!r} (one of {', '.join(NOTE_KINDS)})"
            )


@dataclass(frozen=True)
class Decoded:
    """:func:`decode_rgb8`'s result: the HxWx3 uint8 RGB image and the notes about it."""

    image: np.ndarray
    notes: tuple[DecodeNote, ...] = ()


@dataclass(frozen=True)
class InputLimits:
    """Size limits applied before any pixel is decoded or converted.

    ``max_pixels``: width x height at most (and, compressed, the decoded array at most
    ``3 * max_pixels`` bytes); ``min_side``: width and height at least (1 = no minimum).
    """

    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    min_side: int = 1

    def __post_init__(self) -> None:
        if int(self.max_pixels) < 1 or int(self.min_side) < 1:
            raise ValueError(f"InputLimits needs max_pixels >= 1 and min_side >= 1, got {self}")

    @property
    def max_decoded_bytes(self) -> int:
        """Largest decoded array accepted: one rgb8 frame of ``max_pixels``."""
        return int(self.max_pixels) * _BUDGET_BYTES_PER_PIXEL

    def check(self, width: int, height: int, what: str) -> None:
        """Raise ImageDecodeError(zero_size | too_large | too_small) for a ``width`` x ``height``
        frame."""
        self.check_upper(width, height, what)
        if height < self.min_side or width < self.min_side:
            raise ImageDecodeError(
                "too_small",
                f"{what} is {width}x{height} (width x height): smaller than the minimum useful "
                f"{self.min_side}x{self.min_side}",
            )

    def check_upper(self, width: int, height: int, what: str) -> None:
        """Raise ImageDecodeError(zero_size | too_large): the checks that protect memory."""
        if height <= 0 or width <= 0:
            raise ImageDecodeError(
                "zero_size", f"{what} is {width}x{height} (width x height): zero size"
            )
        if height > MAX_DIMENSION or width > MAX_DIMENSION:
            raise ImageDecodeError(
                "too_large",
                f"{what} is {width}x{height} (width x height): larger than "
                f"MAX_DIMENSION={MAX_DIMENSION} in "
                f"{'width' if width > MAX_DIMENSION else 'height'}",
            )
        if width * height > self.max_pixels:
            raise ImageDecodeError(
                "too_large",
                f"{what} is {width}x{height} (width x height) = {width * height} pixels: more "
                f"than max_input_pixels={self.max_pixels}",
            )


_DEFAULT_LIMITS = InputLimits()


# --------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------

# name -> (numpy dtype, channels, colour layout); layout is the channel order for to_rgb8.
_NAMED: dict[str, tuple[np.dtype, int, str]] = {
    "rgb8": (np.dtype(np.uint8), 3, "rgb"),
    "bgr8": (np.dtype(np.uint8), 3, "bgr"),
    "rgba8": (np.dtype(np.uint8), 4, "rgba"),
    "bgra8": (np.dtype(np.uint8), 4, "bgra"),
    "mono8": (np.dtype(np.uint8), 1, "mono"),
    "rgb16": (np.dtype(np.uint16), 3, "rgb"),
    "bgr16": (np.dtype(np.uint16), 3, "bgr"),
    "rgba16": (np.dtype(np.uint16), 4, "rgba"),
    "bgra16": (np.dtype(np.uint16), 4, "bgra"),
    "mono16": (np.dtype(np.uint16), 1, "mono"),
}
# Camera-native encodings (USB, GMSL, machine-vision): decoded to RGB with OpenCV. YUV 4:2:2 is
# two bytes a pixel (a chroma pair shared by two pixels), so its width must be even; NV12/NV21
# are a full-size Y plane then a half-height plane of interleaved chroma (step bytes a row in
# both), so the data holds step * height * 3/2 bytes and both sides must be even.
_CAMERA: dict[str, tuple[np.dtype, int, str]] = {
    "yuv422": (np.dtype(np.uint8), 2, "uyvy"),  # sensor_msgs: U Y0 V Y1
    "uyvy": (np.dtype(np.uint8), 2, "uyvy"),
    "yuv422_yuy2": (np.dtype(np.uint8), 2, "yuyv"),  # sensor_msgs: Y0 U Y1 V
    "yuyv": (np.dtype(np.uint8), 2, "yuyv"),
    "nv12": (np.dtype(np.uint8), 1, "nv12"),  # Y plane, then U V U V ...
    "nv21": (np.dtype(np.uint8), 1, "nv21"),  # Y plane, then V U V U ...
}
for _pattern in ("rggb", "bggr", "gbrg", "grbg"):  # the colour filter's first two rows
    _CAMERA[f"bayer_{_pattern}8"] = (np.dtype(np.uint8), 1, f"bayer_{_pattern}")
    _CAMERA[f"bayer_{_pattern}16"] = (np.dtype(np.uint16), 1, f"bayer_{_pattern}")
_NAMED.update(_CAMERA)
#: Every named encoding accepted on input (the generic ``<depth>C<n>`` ones besides), and those
#: decoded on input only (no output is published in them).
NAMED_ENCODINGS = tuple(_NAMED)
CAMERA_ENCODINGS = tuple(_CAMERA)
_EVEN_WIDTH = ("uyvy", "yuyv", "nv12", "nv21")
_CHROMA_PLANE = ("nv12", "nv21")  # a half-height chroma plane below the Y plane
_GENERIC_DEPTHS = {
    "8U": np.dtype(np.uint8),
    "8S": np.dtype(np.int8),
    "16U": np.dtype(np.uint16),
    "16S": np.dtype(np.int16),
    "32S": np.dtype(np.int32),
    "32F": np.dtype(np.float32),
    "64F": np.dtype(np.float64),
}
# cv_bridge's generic encodings: "8UC3", "32FC1", ... and the bare depth ("16U" = 16UC1).
_GENERIC = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)(?:C([0-9]+))?")
_MAX_GENERIC_CHANNELS = 4
# Generic channel counts to_rgb8 interprets (C2 has no image meaning: layout "" is refused).
_GENERIC_LAYOUT = {1: "mono", 2: "", 3: "rgb", 4: "rgba"}
_LAYOUT_TEXT = {"mono": "gray", "rgb": "RGB order", "rgba": "RGBA order (alpha dropped)"}
_DEPTH_TEXT = {
    "8U": "8-bit values as is",
    "16U": "the high byte of each 16-bit value",
    "32F": "intensity in [0, 1] (clipped, NaN -> 0)",
    "64F": "intensity in [0, 1] (clipped, NaN -> 0)",
}
_SUPPORTED_TEXT = (
    ", ".join(_NAMED) + ", or generic <8U|8S|16U|16S|32S|32F|64F>C<1-4> (e.g. 8UC3, 16UC1, 32FC1)"
)


def _encoding(encoding: str) -> tuple[np.dtype, int, str]:
    named = _NAMED.get(encoding)
    if named is not None:
        return named
    match = _GENERIC.fullmatch(encoding)
    if match is not None:
        channels = int(match.group(2)) if match.group(2) else 1
        if 1 <= channels <= _MAX_GENERIC_CHANNELS:
            return _GENERIC_DEPTHS[match.group(1)], channels, _GENERIC_LAYOUT[channels]
    raise ImageDecodeError(
        "unknown_encoding",
        f"unsupported image encoding {encoding!r} (supported: {_SUPPORTED_TEXT})",
    )


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """``(dtype, channels)`` of a supported encoding; ImageDecodeError("unknown_encoding")
    otherwise."""
    dtype, channels, _ = _encoding(str(encoding))
    return dtype, channels


def _generic_note(encoding: str, layout: str) -> Optional[DecodeNote]:
    """How to_rgb8 reads a generic encoding (None for named ones, which say what they hold)."""
    match = _GENERIC.fullmatch(encoding)
    if match is None or match.group(1) not in _DEPTH_TEXT or layout not in _LAYOUT_TEXT:
        return None
    return DecodeNote(
        "generic_encoding",
        f"{encoding} carries no colour meaning: read as {_LAYOUT_TEXT[layout]}, "
        f"{_DEPTH_TEXT[match.group(1)]}",
    )


def _as_uint8(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array: a view for bytes-likes (array.array, bytes,
    ...)."""
    if isinstance(data, np.ndarray) and not data.flags.c_contiguous:
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a list / tuple of ints (slow path; rclpy never gives one)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _data_len(data: Any) -> int:
    """Byte length without converting (O(1) for buffers and sequences)."""
    try:
        with memoryview(data) as view:
            return view.nbytes
    except TypeError:
        return len(data)


# --------------------------------------------------------------------------------------
# sensor_msgs/Image -> numpy
# --------------------------------------------------------------------------------------


def _check_image(msg: Any, limits: InputLimits) -> tuple[np.dtype, int, str, int, int, int]:
    """Validate an Image's metadata against its data length, touching no pixel data; (dtype,
    channels, layout, rows of step bytes, width, step): rows is the height but for NV12/NV21,
    whose chroma plane follows the Y plane."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding)
    limits.check_upper(width, height, encoding or "image")  # before the data is looked at
    dtype, channels, layout = _encoding(encoding)
    itemsize = dtype.itemsize
    row = width * channels * itemsize
    if step < row:
        raise ImageDecodeError(
            "step_mismatch",
            f"{encoding} step {step} is smaller than the row size width*channels*bytes = "
            f"{width}*{channels}*{itemsize} = {row}",
        )
    if step % itemsize:
        raise ImageDecodeError(
            "step_mismatch",
            f"{encoding} step {step} is not a multiple of the {itemsize}-byte element size",
        )
    if layout in _EVEN_WIDTH and (width % 2 or (layout in _CHROMA_PLANE and height % 2)):
        sides = "width and height" if layout in _CHROMA_PLANE else "width"
        raise ImageDecodeError(
            "step_mismatch",
            f"{encoding} {width}x{height}: its chroma is shared by pixel pairs, so the {sides} "
            "must be even",
        )
    rows = height + height // 2 if layout in _CHROMA_PLANE else height
    expected = step * rows
    if expected > MAX_BYTES:
        raise ImageDecodeError(
            "too_large",
            f"{encoding} {width}x{height} with step {step}: step*{rows_text(layout)} = "
            f"{expected} bytes exceeds MAX_BYTES={MAX_BYTES}",
        )
    size = _data_len(msg.data)
    if size != expected:
        what = "short" if size < expected else "long"
        raise ImageDecodeError(
            "truncated",
            f"{encoding} {width}x{height}: data is {size} bytes but step*{rows_text(layout)} "
            f"= {step}*{rows} = {expected} (too {what})",
        )
    # too_small last: a malformed message is reported as such
    limits.check(width, height, encoding)
    return dtype, channels, layout, rows, width, step


def rows_text(layout: str) -> str:
    """How many rows of ``step`` bytes an encoding's data holds, as its messages say it."""
    return "height*3/2" if layout in _CHROMA_PLANE else "height"


def _view(
    msg: Any, dtype: np.dtype, channels: int, height: int, width: int, step: int
) -> np.ndarray:
    """The data as an array of the encoding (``height``: the rows of ``step`` bytes, for
    NV12/NV21 the Y rows then the chroma rows, as OpenCV takes them)."""
    buf = _as_uint8(msg.data)
    big = bool(msg.is_bigendian)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if big else "<")
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (
        (step, dtype.itemsize)
        if channels == 1
        else (step, channels * dtype.itemsize, dtype.itemsize)
    )
    arr = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    if not arr.dtype.isnative:  # byte swap only when the message's byte order is not ours
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def image_to_numpy(msg: Any, limits: InputLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """``sensor_msgs/Image`` -> HxW (one channel) or HxWxC array in the message's encoding.

    Like cv_bridge's ``imgmsg_to_cv2(msg, "passthrough")``. Native byte order; a view of
    ``msg.data`` (zero copy; strided when ``step`` pads the rows) unless a byte swap is needed.
    Raises :class:`ImageDecodeError` for unknown encodings, inconsistent step/size, zero or
    absurd dimensions, and sizes outside ``limits``.
    """
    dtype, channels, _, height, width, step = _check_image(msg, limits)
    return _view(msg, dtype, channels, height, width, step)


# --------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage: format, header, budget, decode
# --------------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Frame headers (SOFn): baseline, extended, progressive, lossless, hierarchical, arithmetic.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))  # TEM, RST0-7: no length field
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


@dataclass(frozen=True)
class CompressedHeader:
    """What a JPEG/PNG header promises, and the array OpenCV's IMREAD_UNCHANGED allocates for
    it."""

    format: str  # "jpeg" | "png"
    width: int
    height: int
    channels: int  # of the decoded array
    bytes_per_sample: int  # 1 or 2 (16-bit PNG, 12/16-bit JPEG)
    working_bytes: int = 0  # held by the decoder next to the array (a JPEG's coefficient buffer)

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * self.bytes_per_sample

    @property
    def peak_bytes(self) -> int:
        """Most memory decoding holds at once: cv2.imdecode's Python binding copies its result
        (two arrays for a moment), and a buffered JPEG keeps its coefficients next to the array."""
        return max(2 * self.decoded_bytes, self.decoded_bytes + self.working_bytes)


def sniff_format(data: Any) -> Optional[str]:
    """``"jpeg"`` | ``"png"`` from the magic bytes, or None (the only formats accepted)."""
    head = bytes(_as_uint8(data)[:8])
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head == _PNG_MAGIC:
        return "png"
    return None


def _cut_magic(head: bytes) -> Optional[str]:
    """``"jpeg"`` | ``"png"`` when ``head`` (all the data there is) is the start of that magic:
    a file cut off before its signature ended, not another format."""
    for fmt, magic in (("jpeg", _JPEG_MAGIC), ("png", _PNG_MAGIC)):
        if 0 < len(head) < len(magic) and magic.startswith(head):
            return fmt
    return None


def _corrupt(fmt: str, why: str) -> ImageDecodeError:
    return ImageDecodeError(
        "corrupt_compressed", f"{fmt} header cannot be read: {why}; not decoded"
    )


def _png_header(data: memoryview) -> CompressedHeader:
    """IHDR, then every chunk up to the first IDAT (a tRNS chunk adds an alpha channel)."""
    n = len(data)
    if n < 33 or data[12:16] != b"IHDR" or int.from_bytes(data[8:12], "big") != 13:
        raise _corrupt("png", f"no complete IHDR chunk in the first 33 bytes ({n} bytes of data)")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise _corrupt(
            "png", f"bit depth {depth} with colour type {colour} is not a valid combination"
        )
    transparency = False
    pos = 33
    while True:  # bounded by the data: every chunk is at least 12 bytes
        if pos + 8 > n:
            raise _corrupt("png", f"no IDAT chunk in the {n} bytes of data")
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if length >= 1 << 31:
            raise _corrupt("png", f"chunk {bytes(kind)!r} at byte {pos} claims {length} bytes")
        if kind == b"IDAT":
            break
        transparency |= kind == b"tRNS"
        pos += 12 + length
    # OpenCV's rules (checked against cv2.imdecode in tests/test_codec.py): gray stays one
    # channel (tRNS ignored); palette and RGB give 3 channels, 4 with tRNS; gray+alpha and RGBA 4.
    if colour == 0:
        channels = 1
    elif colour in (2, 3):
        channels = 4 if transparency else 3
    else:
        channels = 4
    return CompressedHeader("png", width, height, channels, 2 if depth == 16 else 1)


def _jpeg_segments(data: memoryview) -> Iterator[tuple[int, int, int]]:
    """(marker, payload offset, payload length) of every marker segment from SOI up to the first
    SOS (scan data follows it, not segments); no count cut-off, bounded by the data."""
    n = len(data)
    i = 2
    while True:  # every step moves at least one byte forward
        if i >= n or data[i] != 0xFF:
            raise _corrupt(
                "jpeg",
                f"no scan header (SOS) in the {n} bytes of data"
                if i >= n
                else f"byte {i} is 0x{data[i]:02x}, not a marker",
            )
        while i < n and data[i] == 0xFF:  # a marker may be preceded by fill bytes
            i += 1
        if i + 2 >= n:
            raise _corrupt("jpeg", f"the segment at byte {i - 1} is cut off")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9):
            raise _corrupt("jpeg", f"marker 0x{marker:02x} at byte {i - 2} before any scan")
        length = (data[i] << 8) | data[i + 1]
        if length < 2 or i + length > n:
            raise _corrupt(
                "jpeg",
                f"segment 0x{marker:02x} at byte {i - 2} has length {length} ({n - i} bytes left)",
            )
        yield marker, i + 2, length - 2
        if marker == 0xDA:
            return
        i += length


def _jpeg_coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """libjpeg's whole-image coefficient buffer (progressive or multi-scan JPEGs): 64 int16 a
    block."""
    h_max = max(h for h, _ in sampling)
    v_max = max(v for _, v in sampling)
    blocks = 0
    for h, v in sampling:
        wide = -(-width * h // (h_max * 8))  # ceil, as libjpeg's jdiv_round_up
        tall = -(-height * v // (v_max * 8))
        blocks += (-(-wide // h) * h) * (-(-tall // v) * v)  # rounded up to whole iMCUs
    return blocks * 64 * 2


def _jpeg_header(data: memoryview) -> CompressedHeader:
    """Frame header (SOFn) and first scan header (SOS): size, channels, and whether libjpeg must
    buffer the whole image's coefficients (progressive, or a first scan without every
    component)."""
    frame: Optional[tuple[int, int, int, int, list[tuple[int, int]]]] = None
    for marker, at, length in _jpeg_segments(data):
        if marker in _JPEG_SOF:
            if frame is not None:
                raise _corrupt("jpeg", "a second frame header")
            components = data[at + 5] if length >= 6 else 0
            if components not in (1, 3, 4) or length < 6 + 3 * components:
                raise _corrupt(
                    "jpeg",
                    f"frame header at byte {at - 4}: {components} colour components in "
                    f"{length} bytes",
                )
            sampling = [
                (data[at + 7 + 3 * c] >> 4, data[at + 7 + 3 * c] & 15) for c in range(components)
            ]
            if not all(1 <= h <= 4 and 1 <= v <= 4 for h, v in sampling):
                raise _corrupt("jpeg", f"sampling factors {sampling}")
            height, width = (data[at + 1] << 8) | data[at + 2], (data[at + 3] << 8) | data[at + 4]
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            frame = (data[at], height, width, int(progressive), sampling)
        elif marker == 0xDA:
            if frame is None or length < 1:
                raise _corrupt("jpeg", "a scan before the frame header")
            precision, height, width, progressive, sampling = frame
            buffered = progressive or data[at] < len(sampling)
            # OpenCV: one component -> gray, otherwise (YCbCr, RGB, CMYK, YCCK) -> 3-channel BGR.
            return CompressedHeader(
                "jpeg",
                width,
                height,
                1 if len(sampling) == 1 else 3,
                1 if precision <= 8 else 2,
                _jpeg_coefficient_bytes(width, height, sampling) if buffered else 0,
            )
    raise AssertionError("unreachable: _jpeg_segments ends at SOS or raises")


def read_compressed_header(data: Any) -> CompressedHeader:
    """The header of JPEG/PNG ``data`` (format by magic bytes), without decoding a pixel.

    ImageDecodeError: ``unknown_format`` (neither magic), ``corrupt_compressed`` (the header
    cannot be read completely).
    """
    fmt = sniff_format(data)
    cut = _cut_magic(bytes(_as_uint8(data)[:8])) if fmt is None else None
    if cut is not None:
        raise _corrupt(cut, f"the data is cut off inside its signature ({_data_len(data)} bytes)")
    if fmt is None:
        raise ImageDecodeError(
            "unknown_format",
            f"data is neither JPEG nor PNG (magic bytes {bytes(_as_uint8(data)[:8]).hex(' ')})",
        )
    view = memoryview(_as_uint8(data))
    return _png_header(view) if fmt == "png" else _jpeg_header(view)


def _declared_format(fmt: str) -> tuple[str, bool]:
    """(codec the format string names: "jpeg" | "png" | "" | its text, data holds RGB order).

    image_transport writes ``"<encoding>; <jpeg|png> compressed <bgr8|rgb8|...>"``; camera
    drivers often just ``"jpeg"``/``"png"``. OpenCV decodes to BGR; the data holds RGB order
    only when the part after "compressed" names an rgb encoding (what image_transport's
    subscriber also assumes).
    """
    text = fmt.strip().lower()
    if "compresseddepth" in text.replace(" ", ""):
        raise ImageDecodeError(
            "unknown_format",
            f"CompressedImage format {fmt!r}: compressedDepth is not supported "
            "(only jpeg and png)",
        )
    target = text.split("compressed", 1)[1].strip() if "compressed" in text else ""
    codec_part = text.split(";", 1)[1] if ";" in text else text
    if "jpeg" in codec_part or "jpg" in codec_part:
        named = "jpeg"
    elif "png" in codec_part:
        named = "png"
    else:
        named = codec_part.replace("compressed", "").strip() or ""
    return named, target.startswith("rgb")


def _decode_compressed(msg: Any, limits: InputLimits) -> tuple[np.ndarray, list[DecodeNote]]:
    """CompressedImage -> (HxW | HxWx3 RGB array, notes); see compressed_to_numpy."""
    fmt = str(getattr(msg, "format", ""))
    named, rgb_order = _declared_format(fmt)
    buf = _as_uint8(msg.data)
    actual, notes = _sniffed_format(buf, fmt, named)
    header = _checked_header(buf, actual, limits)
    image = _imdecode_checked(buf, actual, fmt, header)
    return _rgb_order(image, rgb_order), notes


def _sniffed_format(buf: np.ndarray, fmt: str, named: str) -> tuple[str, list[DecodeNote]]:
    """The format the magic bytes say (the data wins over the declared format, with a note)."""
    if buf.size == 0:
        raise ImageDecodeError(
            "corrupt_compressed", f"CompressedImage ({fmt!r}) has no data (0 bytes)"
        )
    actual = sniff_format(buf)
    cut = _cut_magic(bytes(buf[:8])) if actual is None else None
    if cut is not None:
        raise ImageDecodeError(
            "corrupt_compressed",
            f"CompressedImage format {fmt!r}: a truncated {cut.upper()} ({buf.size} bytes, "
            "cut off inside its signature); not decoded",
        )
    if actual is None:
        kind = "corrupt_compressed" if named in COMPRESSED_FORMATS else "unknown_format"
        raise ImageDecodeError(
            kind,
            f"CompressedImage format {fmt!r}: the data is neither JPEG nor PNG (magic bytes "
            f"{bytes(buf[:8]).hex(' ')}; only jpeg and png are accepted)",
        )
    notes = []
    if named and named != actual:
        notes.append(
            DecodeNote(
                "format_mismatch",
                f"CompressedImage format {fmt!r} but the data is {actual.upper()}: "
                f"decoded as {actual}",
            )
        )
    return actual, notes


def _checked_header(buf: np.ndarray, actual: str, limits: InputLimits) -> CompressedHeader:
    """The image header, refused before decoding when the data or the decoded frame (or the
    decoder's peak memory) would exceed the input limits."""
    if buf.size > limits.max_decoded_bytes:
        raise ImageDecodeError(
            "too_large",
            f"{actual} data is {buf.size} bytes: more than one rgb8 frame of "
            f"max_input_pixels={limits.max_pixels} ({limits.max_decoded_bytes} bytes)",
        )
    header = _png_header(memoryview(buf)) if actual == "png" else _jpeg_header(memoryview(buf))
    what = f"{actual} header: image"
    limits.check(header.width, header.height, what)
    if (
        header.decoded_bytes > limits.max_decoded_bytes
        or header.peak_bytes > 2 * limits.max_decoded_bytes
    ):
        raise ImageDecodeError(
            "too_large",
            f"{what} {header.width}x{header.height}x{header.channels} of "
            f"{header.bytes_per_sample}-byte samples decodes to {header.decoded_bytes} bytes "
            f"(peak {header.peak_bytes} while decoding): more than one rgb8 frame of "
            f"max_input_pixels={limits.max_pixels} ({limits.max_decoded_bytes} bytes; peak: two)",
        )
    return header


def _imdecode_checked(
    buf: np.ndarray, actual: str, fmt: str, header: CompressedHeader
) -> np.ndarray:
    """OpenCV's decode, refused when it fails or disagrees with the header's size."""
    import cv2

    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageDecodeError(
            "corrupt_compressed",
            f"OpenCV cannot decode the {buf.size}-byte {actual} ({fmt!r}): {str(exc).strip()}",
        ) from None
    if image is None or image.size == 0:
        raise ImageDecodeError(
            "corrupt_compressed", f"OpenCV cannot decode the {buf.size}-byte {actual} ({fmt!r})"
        )
    if image.shape[:2] != (header.height, header.width):
        raise ImageDecodeError(
            "corrupt_compressed",
            f"{actual} decoded to {image.shape[1]}x{image.shape[0]} but its "
            f"header says {header.width}x{header.height}",
        )
    return image


def _rgb_order(image: np.ndarray, rgb_order: bool) -> np.ndarray:
    """OpenCV's decoded BGR(A) array (ours) -> HxWx3 RGB (in place for 3 channels) or HxW gray."""
    import cv2

    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[..., 0]
        elif channels == 2:  # gray + alpha
            image = np.ascontiguousarray(image[..., 0])
        elif channels == 4:  # alpha dropped
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB if rgb_order else cv2.COLOR_BGRA2RGB)
        elif not rgb_order:
            # in place: no second frame-sized array
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    return image


def compressed_to_numpy(msg: Any, limits: InputLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> HxWx3 RGB, or HxW for grayscale.

    uint8 (uint16 for 16-bit PNG); alpha is dropped. The format is taken from the magic bytes;
    the colour order honours image_transport's format string ("rgb8; jpeg compressed bgr8"
    holds BGR data, like a plain "jpeg"). Nothing is decoded before the header passed ``limits``.
    """
    return _decode_compressed(msg, limits)[0]


# --------------------------------------------------------------------------------------
# Anything -> HxWx3 uint8 RGB
# --------------------------------------------------------------------------------------


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:  # the high byte of each (native-order) sample: one uint8-sized copy
        as_bytes = arr.view(np.uint8)
        return np.ascontiguousarray(
            as_bytes[..., 0::2] if _BIG_ENDIAN_HOST else as_bytes[..., 1::2]
        )
    if kind == "f":
        out = np.fmax(arr, 0.0)  # fmax/fmin ignore NaN: NaN -> 0, inf -> 1, -inf -> 0
        np.fmin(out, 1.0, out=out)
        out *= 255.0
        out += 0.5
        return out.astype(np.uint8)
    raise ImageDecodeError(
        "unknown_encoding",
        f"{what} ({arr.dtype}) cannot be converted to rgb8 "
        "(8-bit, 16-bit unsigned or float images only)",
    )


def _rgb_from(arr: np.ndarray, layout: str, what: str) -> np.ndarray:
    import cv2

    arr = _to_uint8(arr, what)
    if layout == "mono":
        if arr.ndim == 3:
            arr = arr[..., 0]
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if layout == "rgb":
        return arr
    if layout == "bgr":
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if layout == "rgba":
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2RGB)
    if layout == "bgra":
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    if layout in _CAMERA_CODES:
        return cv2.cvtColor(arr, getattr(cv2, _CAMERA_CODES[layout]))
    raise ImageDecodeError(
        "unknown_encoding", f"{what} with {arr.shape[-1]} channels cannot be converted to rgb8"
    )


# OpenCV's conversion of each camera layout to RGB. OpenCV names a Bayer code by the second
# row's second and third pixels, one step off from the ROS name (the first row's first two):
# ROS bayer_rggb8 is OpenCV's BayerBG (OpenCV 5's alias BayerRGGB is the same code; the old
# names exist in OpenCV 4 too). Checked on synthetic mosaics in tests/test_codec_encodings.py.
_CAMERA_CODES = {
    "uyvy": "COLOR_YUV2RGB_UYVY",
    "yuyv": "COLOR_YUV2RGB_YUYV",
    "nv12": "COLOR_YUV2RGB_NV12",
    "nv21": "COLOR_YUV2RGB_NV21",
    "bayer_rggb": "COLOR_BayerBG2RGB",
    "bayer_bggr": "COLOR_BayerRG2RGB",
    "bayer_gbrg": "COLOR_BayerGR2RGB",
    "bayer_grbg": "COLOR_BayerGB2RGB",
}


def decode_rgb8(msg: Any, limits: InputLimits = _DEFAULT_LIMITS) -> Decoded:
    """Any supported Image or CompressedImage (it has ``format``) -> :class:`Decoded`
    (HxWx3 uint8 RGB + notes).

    rgb8 is returned as a view of the message (strided when rows are padded); other
    encodings are converted into a new contiguous array: bgr8 channel order reversed,
    rgba8/bgra8 alpha dropped, mono replicated to three channels, 16-bit unsigned ``>> 8``,
    float ``clip(x, 0, 1) * 255`` rounded (NaN -> 0); camera encodings (YUV 4:2:2, NV12/NV21,
    Bayer) by OpenCV's conversions, 16-bit Bayer from the high byte. Generic encodings as the
    module docstring says (noted ``generic_encoding``); a compressed ``format`` that names another
    codec than the data is noted ``format_mismatch``. ``limits`` apply to every frame.
    """
    if hasattr(msg, "format"):
        image, notes = _decode_compressed(msg, limits)
        layout = "mono" if image.ndim == 2 else "rgb"
        return Decoded(_rgb_from(image, layout, f"CompressedImage {msg.format!r}"), tuple(notes))
    dtype, channels, layout, height, width, step = _check_image(msg, limits)
    encoding = str(msg.encoding)
    image = _rgb_from(_view(msg, dtype, channels, height, width, step), layout, encoding)
    note = _generic_note(encoding, layout)
    return Decoded(image, (note,) if note is not None else ())


def to_rgb8(msg: Any, limits: InputLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """:func:`decode_rgb8` without the notes: the HxWx3 uint8 RGB image."""
    return decode_rgb8(msg, limits).image


# --------------------------------------------------------------------------------------
# numpy -> messages (outputs)
# --------------------------------------------------------------------------------------


def _checked_array(arr: Any, encoding: str) -> np.ndarray:
    """``arr`` as a native-order C-contiguous array matching ``encoding`` (ValueError
    otherwise)."""
    if str(encoding) in _CAMERA:
        raise ValueError(f"{encoding} is read on input only; outputs are rgb8, mono8, ...")
    try:
        dtype, channels, _ = _encoding(str(encoding))
    except ImageDecodeError as exc:
        raise ValueError(str(exc)) from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        have = 1
    elif arr.ndim == 3:
        have = arr.shape[2]
    else:
        raise ValueError(f"{encoding} needs an HxW or HxWxC array, got shape {arr.shape}")
    if have != channels:
        raise ValueError(
            f"{encoding} has {channels} channel(s) but the array has shape {arr.shape}"
        )
    if arr.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, got {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None) -> Any:
    """HxW / HxWxC array -> ``sensor_msgs.msg.Image`` (like cv_bridge's ``cv2_to_imgmsg``).

    ``step = width * channels * bytes``, ``is_bigendian`` = this machine's byte order, data
    copied once into the message's ``array('B')``. ``header`` is used as given (default: an
    empty Header). ValueError when ``encoding`` is unknown or does not match the array's
    dtype / channel count.
    """
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    arr = _checked_array(arr, encoding)
    height, width = arr.shape[:2]
    msg = Image(
        header=header if header is not None else Header(),
        height=height,
        width=width,
        encoding=str(encoding),
        is_bigendian=int(_BIG_ENDIAN_HOST),
        step=width * (arr.shape[2] if arr.ndim == 3 else 1) * arr.dtype.itemsize,
    )
    # One memcpy straight into the message's array('B'): assigning bytes or a memoryview to
    # msg.data would copy twice (bytes) or iterate element by element (memoryview).
    msg.data.frombytes(arr.reshape(-1).view(np.uint8))
    return msg


_COMPRESSED_ENCODINGS = {
    # encoding -> (dtype, channels, convert to BGR for OpenCV, target in the format string)
    "rgb8": (np.dtype(np.uint8), 3, True, "bgr8"),
    "bgr8": (np.dtype(np.uint8), 3, False, "bgr8"),
    "mono8": (np.dtype(np.uint8), 1, False, ""),
    "rgb16": (np.dtype(np.uint16), 3, True, "bgr16"),
    "bgr16": (np.dtype(np.uint16), 3, False, "bgr16"),
    "mono16": (np.dtype(np.uint16), 1, False, ""),
}


def numpy_to_compressed(
    arr: np.ndarray,
    fmt: str = "jpeg",
    header: Any = None,
    encoding: str = "rgb8",
    *,
    jpeg_quality: int = 95,
    png_level: int = 3,
) -> Any:
    """Array -> ``sensor_msgs.msg.CompressedImage`` as image_transport's compressed publisher
    writes it.

    ``fmt``: "jpeg" (or "jpg") | "png"; ``encoding``: the array's layout, rgb8 | bgr8 | mono8
    (plus rgb16 | bgr16 | mono16 for PNG). Colour is stored BGR, format e.g.
    ``"rgb8; jpeg compressed bgr8"``; grayscale ``"mono8; png compressed "``.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    name = str(fmt).strip().lower()
    name = {"jpg": "jpeg"}.get(name, name)
    if name not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format {fmt!r} (jpeg or png)")
    spec = _COMPRESSED_ENCODINGS.get(str(encoding))
    if spec is None:
        raise ValueError(
            f"cannot compress encoding {encoding!r} (one of {', '.join(_COMPRESSED_ENCODINGS)})"
        )
    dtype, _, to_bgr, target = spec
    if name == "jpeg" and dtype != np.uint8:
        raise ValueError(f"jpeg needs an 8-bit image, got encoding {encoding}; use png for 16-bit")
    arr = _checked_array(arr, encoding)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if to_bgr:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        if name == "jpeg"
        else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
    )
    ok, encoded = cv2.imencode(".jpg" if name == "jpeg" else ".png", arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} {arr.dtype} array as {name}")
    msg = CompressedImage(
        header=header if header is not None else Header(),
        format=f"{encoding}; {name} compressed {target}",
    )
    msg.data.frombytes(encoded.reshape(-1))
    return msg
