"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> numpy, zero-copy where possible.

Pure python (numpy, plus OpenCV for colour conversion and JPEG/PNG); no rclpy at import time.
The decode direction works on any object with the sensor_msgs fields (``Image``: header,
height, width, encoding, is_bigendian, step, data; ``CompressedImage``: header, format, data);
only :func:`numpy_to_image` / :func:`numpy_to_compressed` import ``sensor_msgs.msg`` (lazily).

Behaviour follows ROS 2 cv_bridge for the supported encodings: :func:`image_to_numpy` is
``imgmsg_to_cv2(msg, "passthrough")`` (an HxW or HxWxC array in the message's encoding), and
:func:`numpy_to_image` fills height/width/step/is_bigendian as ``cv2_to_imgmsg`` does. On top
of cv_bridge it validates every message before touching its data and reports what is wrong
with an :class:`ImageDecodeError` whose ``kind`` the node counts in /diagnostics.

Zero copy: rclpy stores ``uint8[] data`` as ``array.array('B')``, so :func:`image_to_numpy`
returns a view of the message buffer (a strided view when rows are padded, ``step`` larger
than the row) unless a byte swap is needed (``is_bigendian`` differs from this machine).
"""
from __future__ import annotations

import re
import sys
from typing import Any, Optional

import numpy as np

__all__ = [
    "ImageDecodeError",
    "KINDS",
    "MAX_DIMENSION",
    "MAX_BYTES",
    "encoding_info",
    "image_to_numpy",
    "compressed_to_numpy",
    "to_rgb8",
    "numpy_to_image",
    "numpy_to_compressed",
]

#: Largest accepted width or height (pixels); bigger messages are rejected before their data is read.
MAX_DIMENSION = 16384
#: Largest accepted image buffer (step * height for raw images, decoded size for compressed ones).
MAX_BYTES = 512 * 1024 * 1024

#: Every value ImageDecodeError.kind can take.
KINDS = (
    "unknown_encoding",
    "step_mismatch",
    "truncated",
    "zero_size",
    "too_large",
    "corrupt_compressed",
    "unknown_format",
)

_BIG_ENDIAN_HOST = sys.byteorder == "big"


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown ImageDecodeError kind {kind!r} (one of {', '.join(KINDS)})")
        super().__init__(message)
        self.kind = kind


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
_GENERIC_LAYOUT = {1: "mono", 2: "", 3: "rgb", 4: "rgba"}
_SUPPORTED_TEXT = (", ".join(_NAMED) + ", or generic <8U|8S|16U|16S|32S|32F|64F>C<1-4> (e.g. 8UC3, 16UC1, 32FC1)")


def _encoding(encoding: str) -> tuple[np.dtype, int, str]:
    named = _NAMED.get(encoding)
    if named is not None:
        return named
    match = _GENERIC.fullmatch(encoding)
    if match is not None:
        channels = int(match.group(2)) if match.group(2) else 1
        if 1 <= channels <= _MAX_GENERIC_CHANNELS:
            return _GENERIC_DEPTHS[match.group(1)], channels, _GENERIC_LAYOUT[channels]
    raise ImageDecodeError("unknown_encoding", f"unsupported image encoding {encoding!r} (supported: {_SUPPORTED_TEXT})")


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """``(dtype, channels)`` of a supported encoding; ImageDecodeError("unknown_encoding") otherwise."""
    dtype, channels, _ = _encoding(str(encoding))
    return dtype, channels


def _as_uint8(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array: a view for bytes-likes (array.array, bytes, ...)."""
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


def _check_image(msg: Any) -> tuple[np.dtype, int, str, int, int, int]:
    """Validate an Image's metadata against its data length, touching no pixel data."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding)
    if height <= 0 or width <= 0:
        raise ImageDecodeError("zero_size", f"{encoding or 'image'} is {width}x{height} (width x height): zero size")
    if height > MAX_DIMENSION or width > MAX_DIMENSION:
        raise ImageDecodeError(
            "too_large", f"{encoding or 'image'} is {width}x{height} (width x height): larger than "
            f"MAX_DIMENSION={MAX_DIMENSION} in {'width' if width > MAX_DIMENSION else 'height'}")
    dtype, channels, layout = _encoding(encoding)
    itemsize = dtype.itemsize
    row = width * channels * itemsize
    if step < row:
        raise ImageDecodeError(
            "step_mismatch", f"{encoding} step {step} is smaller than the row size width*channels*bytes = "
            f"{width}*{channels}*{itemsize} = {row}")
    if step % itemsize:
        raise ImageDecodeError(
            "step_mismatch", f"{encoding} step {step} is not a multiple of the {itemsize}-byte element size")
    expected = step * height
    if expected > MAX_BYTES:
        raise ImageDecodeError(
            "too_large", f"{encoding} {width}x{height} with step {step}: step*height = {expected} bytes exceeds "
            f"MAX_BYTES={MAX_BYTES}")
    size = _data_len(msg.data)
    if size != expected:
        what = "short" if size < expected else "long"
        raise ImageDecodeError(
            "truncated", f"{encoding} {width}x{height}: data is {size} bytes but step*height = "
            f"{step}*{height} = {expected} (too {what})")
    return dtype, channels, layout, height, width, step


def _view(msg: Any, dtype: np.dtype, channels: int, height: int, width: int, step: int) -> np.ndarray:
    buf = _as_uint8(msg.data)
    big = bool(msg.is_bigendian)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if big else "<")
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (step, dtype.itemsize) if channels == 1 else (step, channels * dtype.itemsize,
                                                                             dtype.itemsize)
    arr = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    if not arr.dtype.isnative:  # byte swap only when the message's byte order is not ours
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def image_to_numpy(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> HxW (one channel) or HxWxC array in the message's encoding.

    Like cv_bridge's ``imgmsg_to_cv2(msg, "passthrough")``. Native byte order; a view of
    ``msg.data`` (zero copy; strided when ``step`` pads the rows) unless a byte swap is needed.
    Raises :class:`ImageDecodeError` for unknown encodings, inconsistent step/size, zero or
    absurd dimensions.
    """
    dtype, channels, _, height, width, step = _check_image(msg)
    return _view(msg, dtype, channels, height, width, step)


# --------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage -> numpy
# --------------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _compressed_kind(fmt: str, buf: np.ndarray) -> tuple[str, bool]:
    """(``"jpeg"`` | ``"png"``, decoded channels are RGB) from an image_transport format string.

    image_transport writes ``"<encoding>; <jpeg|png> compressed <bgr8|rgb8|...>"``; camera
    drivers often just ``"jpeg"``/``"png"``. OpenCV decodes to BGR; the data holds RGB order
    only when the part after "compressed" names an rgb encoding (what image_transport's
    subscriber also assumes). An empty format is sniffed from the magic bytes.
    """
    text = fmt.strip().lower()
    if "compresseddepth" in text.replace(" ", ""):
        raise ImageDecodeError("unknown_format", f"CompressedImage format {fmt!r}: compressedDepth is not supported "
                                                 "(only jpeg and png)")
    target = text.split("compressed", 1)[1].strip() if "compressed" in text else ""
    rgb_order = target.startswith("rgb")
    codec_part = text.split(";", 1)[1] if ";" in text else text
    if "jpeg" in codec_part or "jpg" in codec_part:
        return "jpeg", rgb_order
    if "png" in codec_part:
        return "png", rgb_order
    if not text:
        head = buf[:8].tobytes()
        if head[:3] == b"\xff\xd8\xff":
            return "jpeg", False
        if head == _PNG_MAGIC:
            return "png", False
    raise ImageDecodeError("unknown_format", f"unsupported CompressedImage format {fmt!r} (only jpeg and png)")


def _sniff_size(kind: str, buf: np.ndarray) -> Optional[tuple[int, int, int]]:
    """(width, height, decoded bytes) from the PNG/JPEG header, or None when it cannot tell."""
    view = memoryview(buf)
    n = len(view)
    if kind == "png":
        if n < 26 or view[:8].tobytes() != _PNG_MAGIC:
            return None
        width = int.from_bytes(view[16:20], "big")
        height = int.from_bytes(view[20:24], "big")
        depth, colour = view[24], view[25]
        channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(colour, 4)
        return width, height, width * height * channels * (2 if depth == 16 else 1)
    i = 2
    if n < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    for _ in range(1024):  # bounded walk over the marker segments up to the frame header
        if i + 4 > n or view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:  # stand-alone markers
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 10 > n:
                return None
            height = int.from_bytes(view[i + 5:i + 7], "big")
            width = int.from_bytes(view[i + 7:i + 9], "big")
            return width, height, width * height * max(1, view[i + 9])
        i += 2 + int.from_bytes(view[i + 2:i + 4], "big")
    return None


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> HxWx3 RGB, or HxW for grayscale.

    uint8 (uint16 for 16-bit PNG); alpha is dropped. The colour order honours image_transport's
    format string ("rgb8; jpeg compressed bgr8" holds BGR data, like a plain "jpeg").
    """
    import cv2

    fmt = str(getattr(msg, "format", ""))
    buf = _as_uint8(msg.data)
    kind, rgb_order = _compressed_kind(fmt, buf)
    if buf.size == 0:
        raise ImageDecodeError("corrupt_compressed", f"CompressedImage ({fmt!r}) has no data (0 bytes)")
    size = _sniff_size(kind, buf)
    if size is not None:
        width, height, nbytes = size
        if width > MAX_DIMENSION or height > MAX_DIMENSION or nbytes > MAX_BYTES:
            raise ImageDecodeError(
                "too_large", f"{kind} header says {width}x{height} (width x height), {nbytes} bytes decoded: larger "
                f"than MAX_DIMENSION={MAX_DIMENSION} / MAX_BYTES={MAX_BYTES}")
        if width == 0 or height == 0:
            raise ImageDecodeError("zero_size", f"{kind} header says {width}x{height} (width x height): zero size")
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageDecodeError("corrupt_compressed", f"OpenCV cannot decode the {buf.size}-byte {kind} "
                                                     f"({fmt!r}): {str(exc).strip()}") from None
    if image is None or image.size == 0:
        raise ImageDecodeError("corrupt_compressed", f"OpenCV cannot decode the {buf.size}-byte {kind} ({fmt!r})")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[..., 0]
        elif channels == 2:  # gray + alpha
            image = np.ascontiguousarray(image[..., 0])
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB if rgb_order else cv2.COLOR_BGRA2RGB)
        elif not rgb_order:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


# --------------------------------------------------------------------------------------
# Anything -> HxWx3 uint8 RGB
# --------------------------------------------------------------------------------------


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if kind == "f":
        out = np.fmax(arr, 0.0)  # fmax/fmin ignore NaN: NaN -> 0, inf -> 1, -inf -> 0
        np.fmin(out, 1.0, out=out)
        out *= 255.0
        out += 0.5
        return out.astype(np.uint8)
    raise ImageDecodeError("unknown_encoding", f"{what} ({arr.dtype}) cannot be converted to rgb8 "
                                               "(8-bit, 16-bit unsigned or float images only)")


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
    raise ImageDecodeError("unknown_encoding", f"{what} with {arr.shape[-1]} channels cannot be converted to rgb8")


def to_rgb8(msg: Any) -> np.ndarray:
    """Any supported Image or CompressedImage (it has ``format``) -> HxWx3 uint8 RGB.

    rgb8 is returned as a view of the message (strided when rows are padded); other
    encodings are converted into a new contiguous array: bgr8 channel order reversed,
    rgba8/bgra8 alpha dropped, mono replicated to three channels, 16-bit unsigned ``>> 8``,
    float ``clip(x, 0, 1) * 255`` rounded (NaN -> 0). Generic 3/4-channel encodings (8UC3,
    ...) carry no colour order and are taken as RGB(A).
    """
    if hasattr(msg, "format"):
        image = compressed_to_numpy(msg)
        return _rgb_from(image, "mono" if image.ndim == 2 else "rgb", f"CompressedImage {msg.format!r}")
    dtype, channels, layout, height, width, step = _check_image(msg)
    return _rgb_from(_view(msg, dtype, channels, height, width, step), layout, str(msg.encoding))


# --------------------------------------------------------------------------------------
# numpy -> messages (outputs)
# --------------------------------------------------------------------------------------


def _checked_array(arr: Any, encoding: str) -> np.ndarray:
    """``arr`` as a native-order C-contiguous array matching ``encoding`` (ValueError otherwise)."""
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
        raise ValueError(f"{encoding} has {channels} channel(s) but the array has shape {arr.shape}")
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
    msg = Image(header=header if header is not None else Header(), height=height, width=width,
                encoding=str(encoding), is_bigendian=int(_BIG_ENDIAN_HOST),
                step=width * (arr.shape[2] if arr.ndim == 3 else 1) * arr.dtype.itemsize)
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


def numpy_to_compressed(arr: np.ndarray, fmt: str = "jpeg", header: Any = None, encoding: str = "rgb8", *,
                        jpeg_quality: int = 95, png_level: int = 3) -> Any:
    """Array -> ``sensor_msgs.msg.CompressedImage`` as image_transport's compressed publisher writes it.

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
        raise ValueError(f"cannot compress encoding {encoding!r} (one of {', '.join(_COMPRESSED_ENCODINGS)})")
    dtype, _, to_bgr, target = spec
    if name == "jpeg" and dtype != np.uint8:
        raise ValueError(f"jpeg needs an 8-bit image, got encoding {encoding}; use png for 16-bit")
    arr = _checked_array(arr, encoding)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if to_bgr:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if name == "jpeg"
              else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    ok, encoded = cv2.imencode(".jpg" if name == "jpeg" else ".png", arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} {arr.dtype} array as {name}")
    msg = CompressedImage(header=header if header is not None else Header(),
                          format=f"{encoding}; {name} compressed {target}")
    msg.data.frombytes(encoded.reshape(-1))
    return msg
