"""ros2_fed.codec: sensor_msgs Image / CompressedImage <-> numpy (real rclpy message classes)."""

from __future__ import annotations

import array
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from input_bombs import (
    bombs,
    jpeg_with_comments,
    jpeg_with_size,
    png_bytes,
    progressive_jpeg,
    small_jpeg,
)
from ros2_fed import codec
from ros2_fed.codec import ImageDecodeError

HOST_BIG = sys.byteorder == "big"

# encoding -> (dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "rgb16": (np.uint16, 3),
    "bgr16": (np.uint16, 3),
    "rgba16": (np.uint16, 4),
    "bgra16": (np.uint16, 4),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "8UC4": (np.uint8, 4),
    "8SC1": (np.int8, 1),
    "16UC1": (np.uint16, 1),
    "16UC3": (np.uint16, 3),
    "16SC1": (np.int16, 1),
    "32SC1": (np.int32, 1),
    "32FC1": (np.float32, 1),
    "32FC2": (np.float32, 2),
    "32FC3": (np.float32, 3),
    "64FC1": (np.float64, 1),
}


def random_image(encoding: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def raw_msg(arr: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = HOST_BIG) -> Image:
    """A real sensor_msgs/Image built by hand (independently of codec): optional row padding
    (0xAB bytes) and byte order."""
    h, w = arr.shape[:2]
    dtype = arr.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(arr.astype(dtype)).reshape(h, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(
        height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1]
    )
    msg.data = rows.tobytes()
    return msg


def buffer_of(msg: Any) -> np.ndarray:
    return np.frombuffer(msg.data, dtype=np.uint8)


def compressed_msg(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def encode(bgr_or_gray: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, bgr_or_gray, list(params))
    assert ok
    return buf.tobytes()


def distinct_rgb(h: int = 21, w: int = 33, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 60)], axis=2).astype(
        np.uint8
    )


# --------------------------------------------------------------------------------------
# Image <-> numpy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("shape", [(6, 7), (5, 1), (1, 13)])
def test_round_trip_every_encoding(encoding: str, shape: tuple[int, int]) -> None:
    dtype, channels = ENCODINGS[encoding]
    arr = random_image(encoding, *shape, seed=len(encoding))
    msg = codec.numpy_to_image(arr, encoding)
    assert isinstance(msg, Image)
    itemsize = np.dtype(dtype).itemsize
    assert (msg.height, msg.width, msg.encoding) == (shape[0], shape[1], encoding)
    assert msg.step == shape[1] * channels * itemsize
    assert msg.is_bigendian == int(HOST_BIG)
    assert isinstance(msg.data, array.array) and len(msg.data) == msg.step * msg.height
    # the cv_bridge layout: rows back to back, native order
    assert bytes(msg.data) == arr.tobytes()
    out = codec.image_to_numpy(msg)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, buffer_of(msg))  # zero copy: a view of the message's array('B')


@pytest.mark.parametrize(
    "encoding,pad",
    [
        ("rgb8", 5),
        ("bgr8", 1),
        ("rgba8", 3),
        ("mono8", 7),
        ("mono16", 6),
        ("16UC1", 2),
        ("32FC1", 4),
        ("32FC3", 8),
        ("rgb16", 10),
        ("8UC3", 6),
    ],
)
def test_padded_step_is_a_strided_view(encoding: str, pad: int) -> None:
    arr = random_image(encoding, 9, 11, seed=pad)
    msg = raw_msg(arr, encoding, pad=pad)
    assert msg.step == arr[0].nbytes + pad
    out = codec.image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    assert out.strides[0] == msg.step and not out.flags.c_contiguous
    assert np.shares_memory(out, buffer_of(msg))


@pytest.mark.parametrize(
    "encoding", ["mono16", "16UC1", "32FC1", "16UC3", "32FC3", "rgb16", "64FC1", "32SC1"]
)
@pytest.mark.parametrize("pad", [0, 8])
def test_foreign_byte_order_is_swapped_to_native(encoding: str, pad: int) -> None:
    arr = random_image(encoding, 7, 5, seed=3)
    arr.flat[0] = 258 if arr.dtype.kind in "ui" else 1.5  # 0x0102: wrong order would read 0x0201
    msg = raw_msg(arr, encoding, pad=pad, big_endian=not HOST_BIG)
    assert bytes(msg.data)[:2] != np.ascontiguousarray(arr).tobytes()[:2]
    out = codec.image_to_numpy(msg)
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    assert out.flat[0] == arr.flat[0]
    assert not np.shares_memory(out, buffer_of(msg))  # a byte swap is a copy


def test_big_endian_mono16_and_32fc1_values() -> None:
    mono16 = Image(height=1, width=3, encoding="mono16", is_bigendian=1, step=6)
    mono16.data = bytes([0x01, 0x02, 0xFF, 0x00, 0x00, 0x01])
    np.testing.assert_array_equal(codec.image_to_numpy(mono16), [[0x0102, 0xFF00, 0x0001]])
    depth = Image(height=1, width=2, encoding="32FC1", is_bigendian=1, step=8)
    depth.data = bytes.fromhex("3fc00000c0200000")  # 1.5, -2.5 as big-endian IEEE floats
    np.testing.assert_array_equal(codec.image_to_numpy(depth), np.array([[1.5, -2.5]], np.float32))
    depth.is_bigendian = 0
    depth.data = bytes.fromhex("0000c03f000020c0")
    np.testing.assert_array_equal(codec.image_to_numpy(depth), np.array([[1.5, -2.5]], np.float32))


@pytest.mark.parametrize("big_endian", [False, True])
def test_eight_bit_ignores_is_bigendian(big_endian: bool) -> None:
    arr = distinct_rgb(4, 5)
    msg = raw_msg(arr, "rgb8", big_endian=big_endian)
    out = codec.image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, buffer_of(msg))


def test_duck_typed_messages_and_data_types() -> None:
    arr = distinct_rgb(3, 4)
    fields = dict(header=None, height=3, width=4, encoding="rgb8", is_bigendian=0, step=12)
    as_bytes = SimpleNamespace(data=arr.tobytes(), **fields)
    out = codec.image_to_numpy(as_bytes)
    np.testing.assert_array_equal(out, arr)
    assert (
        np.shares_memory(out, np.frombuffer(as_bytes.data, np.uint8)) and not out.flags.writeable
    )
    for data in (
        bytearray(arr.tobytes()),
        memoryview(arr.tobytes()),
        list(arr.tobytes()),
        arr.reshape(-1),
    ):
        np.testing.assert_array_equal(
            codec.image_to_numpy(SimpleNamespace(data=data, **fields)), arr
        )
    np.testing.assert_array_equal(codec.to_rgb8(as_bytes), arr)


def test_bare_generic_depth_means_one_channel() -> None:
    assert codec.encoding_info("16U") == (np.dtype(np.uint16), 1)
    assert codec.encoding_info("32FC3") == (np.dtype(np.float32), 3)
    with pytest.raises(ImageDecodeError) as err:
        codec.encoding_info("8UC")
    assert err.value.kind == "unknown_encoding"


# --------------------------------------------------------------------------------------
# Bad input -> ImageDecodeError(kind)
# --------------------------------------------------------------------------------------


class Untouchable:
    """Data that fails the test if anyone looks at it (too_large must not read the data)."""

    def __len__(self) -> int:
        raise AssertionError("data was touched")

    def __buffer__(self, flags: int) -> memoryview:
        raise AssertionError("data was touched")

    def __iter__(self):
        raise AssertionError("data was touched")


def good_rgb_msg() -> Image:
    return raw_msg(np.zeros((8, 10, 3), np.uint8), "rgb8")


def bad_raw_messages() -> dict[str, tuple[Any, str, Optional[str]]]:
    """label -> (message, expected kind, a fragment the error message must contain)."""
    unknown = good_rgb_msg()
    unknown.encoding = "yuv_fancy42"
    nv24 = good_rgb_msg()
    nv24.encoding = "nv24"
    empty_encoding = good_rgb_msg()
    empty_encoding.encoding = ""
    too_many_channels = good_rgb_msg()
    too_many_channels.encoding = "8UC5"
    short_step = good_rgb_msg()
    short_step.step = 10 * 3 - 3  # a row shorter than width * 3 bytes (as tests/test_node_ros.py)
    # 11-byte rows of 2-byte pixels
    odd_step = raw_msg(np.zeros((4, 5), np.uint16), "mono16", pad=1)
    truncated = good_rgb_msg()
    truncated.data = bytes(truncated.data)[:-17]
    too_long = good_rgb_msg()
    too_long.data = bytes(too_long.data) + b"\0"
    zero = Image(height=0, width=0, encoding="rgb8", step=0)
    zero_height = Image(height=0, width=10, encoding="rgb8", step=30)
    absurd = Image(height=200_000, width=300_000, encoding="rgb8", step=900_000)
    absurd.data = bytes(64)
    absurd_duck = SimpleNamespace(
        header=None,
        height=200_000,
        width=300_000,
        encoding="rgb8",
        is_bigendian=0,
        step=900_000,
        data=Untouchable(),
    )
    # dimensions fine, 1 GiB in all
    gigabyte = SimpleNamespace(
        header=None,
        height=16384,
        width=16384,
        encoding="rgba8",
        is_bigendian=0,
        step=16384 * 4,
        data=Untouchable(),
    )
    huge_step = SimpleNamespace(
        header=None,
        height=1000,
        width=10,
        encoding="mono8",
        is_bigendian=0,
        step=2**31,
        data=Untouchable(),
    )
    return {
        "unknown encoding": (unknown, "unknown_encoding", "yuv_fancy42"),
        "unsupported camera encoding": (nv24, "unknown_encoding", "nv24"),
        "empty encoding": (empty_encoding, "unknown_encoding", "''"),
        "8UC5": (too_many_channels, "unknown_encoding", "8UC5"),
        "step < row": (short_step, "step_mismatch", "step 27"),
        "step not a multiple of the element size": (odd_step, "step_mismatch", "step 11"),
        "truncated data": (
            truncated,
            "truncated",
            "data is 223 bytes but step*height = 30*8 = 240",
        ),
        "too much data": (too_long, "truncated", "data is 241 bytes"),
        "zero size": (zero, "zero_size", "0x0"),
        "zero height": (zero_height, "zero_size", "10x0"),
        "absurd dimensions": (absurd, "too_large", "300000x200000"),
        "absurd dimensions, data untouched": (absurd_duck, "too_large", str(codec.MAX_DIMENSION)),
        "1 GiB": (gigabyte, "too_large", "max_input_pixels=16777216"),
        "huge step": (huge_step, "too_large", str(2**31 * 1000)),
    }


@pytest.mark.parametrize("label", list(bad_raw_messages()))
def test_bad_raw_input_kinds(label: str) -> None:
    msg, kind, fragment = bad_raw_messages()[label]
    for decode in (codec.image_to_numpy, codec.to_rgb8):
        with pytest.raises(ImageDecodeError) as err:
            decode(msg)
        assert err.value.kind == kind, (label, err.value.kind, str(err.value))
        assert isinstance(err.value, ValueError) and err.value.kind in codec.KINDS
        if fragment:
            assert fragment in str(err.value), str(err.value)


def bad_compressed_messages() -> dict[str, tuple[CompressedImage, str]]:
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[:, :64] = (3, 255, 0)
    jpeg = encode(frame[..., ::-1], ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    png = encode(frame[..., ::-1], ".png")
    corrupt = bytearray(jpeg)
    # header intact, scan data zeroed
    corrupt[len(corrupt) // 3 :] = bytes(len(corrupt) - len(corrupt) // 3)
    wide_png = bytearray(png)
    # IHDR width (CRC now wrong: must not get as far as decoding)
    wide_png[16:20] = (100_000).to_bytes(4, "big")
    return {
        "corrupt jpeg": (
            compressed_msg(bytes(corrupt[: len(corrupt) // 2]), "jpeg"),
            "corrupt_compressed",
        ),
        "not an image": (
            compressed_msg(b"\xff\xd8\xff\xe0 definitely not a jpeg", "jpeg"),
            "corrupt_compressed",
        ),
        "empty": (compressed_msg(b"", "jpeg"), "corrupt_compressed"),
        "truncated png": (
            compressed_msg(png[: len(png) // 2], "rgb8; png compressed bgr8"),
            "corrupt_compressed",
        ),
        "garbage png": (compressed_msg(b"\x00" * 100, "png"), "corrupt_compressed"),
        "tiff data": (compressed_msg(b"II*\0" + png, "tiff"), "unknown_format"),
        "webp data": (
            compressed_msg(b"RIFF\0\0\0\0WEBPVP8 " + png, "rgb8; webp compressed bgr8"),
            "unknown_format",
        ),
        "bmp data sent as png": (compressed_msg(b"BM" + png, "png"), "corrupt_compressed"),
        "compressedDepth": (
            compressed_msg(bytes(12) + png, "16UC1; compressedDepth png"),
            "unknown_format",
        ),
        "empty format, unknown magic": (
            compressed_msg(b"GIF89a" + bytes(40), ""),
            "unknown_format",
        ),
        "huge png header": (compressed_msg(bytes(wide_png), "png"), "too_large"),
    }


@pytest.mark.parametrize("label", list(bad_compressed_messages()))
def test_bad_compressed_input_kinds(label: str) -> None:
    msg, kind = bad_compressed_messages()[label]
    for decode in (codec.compressed_to_numpy, codec.to_rgb8):
        with pytest.raises(ImageDecodeError) as err:
            decode(msg)
        assert err.value.kind == kind, (label, err.value.kind, str(err.value))


def test_error_kind_is_validated() -> None:
    err = ImageDecodeError("truncated", "data is 1 bytes but step*height = 2")
    assert err.kind == "truncated" and str(err) == "data is 1 bytes but step*height = 2"
    with pytest.raises(ValueError):
        ImageDecodeError("no_such_kind", "x")


# --------------------------------------------------------------------------------------
# CompressedImage
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_png_round_trip_is_exact(encoding: str) -> None:
    rgb = distinct_rgb(17, 23)
    arr = rgb if encoding == "rgb8" else rgb[..., ::-1]
    msg = codec.numpy_to_compressed(arr, "png", encoding=encoding)
    assert isinstance(msg, CompressedImage)
    assert msg.format == f"{encoding}; png compressed bgr8"  # what image_transport writes
    assert bytes(msg.data[:8]) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(codec.compressed_to_numpy(msg), rgb)
    np.testing.assert_array_equal(codec.to_rgb8(msg), rgb)
    # and OpenCV (a C++ image_transport subscriber) sees true colours in BGR order
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED), rgb[..., ::-1]
    )


@pytest.mark.parametrize("fmt", ["jpeg", "jpg"])
def test_jpeg_round_trip_within_tolerance(fmt: str) -> None:
    rgb = smooth_rgb()
    msg = codec.numpy_to_compressed(rgb, fmt, encoding="rgb8", jpeg_quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:3]) == b"\xff\xd8\xff"
    out = codec.compressed_to_numpy(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - rgb)
    assert diff.mean() < 2.0 and diff.max() < 24, (diff.mean(), diff.max())


def test_grayscale_and_16_bit_png() -> None:
    gray = np.random.default_rng(2).integers(0, 256, size=(9, 14), dtype=np.uint8)
    msg = codec.numpy_to_compressed(gray, "png", encoding="mono8")
    assert msg.format == "mono8; png compressed "
    np.testing.assert_array_equal(codec.compressed_to_numpy(msg), gray)
    np.testing.assert_array_equal(codec.to_rgb8(msg), np.repeat(gray[..., None], 3, axis=2))
    deep = np.random.default_rng(3).integers(0, 65536, size=(9, 14), dtype=np.uint16)
    msg = codec.numpy_to_compressed(deep, "png", encoding="mono16")
    out = codec.compressed_to_numpy(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, deep)
    np.testing.assert_array_equal(codec.to_rgb8(msg)[..., 1], (deep >> 8).astype(np.uint8))
    with pytest.raises(ValueError):
        codec.numpy_to_compressed(deep, "jpeg", encoding="mono16")


@pytest.mark.parametrize(
    "fmt,rgb_data",
    [
        ("bgr8; jpeg compressed bgr8", False),
        ("rgb8; jpeg compressed bgr8", False),
        ("rgb8; png compressed bgr8", False),
        ("jpeg", False),
        ("png", False),
        ("JPEG", False),
        ("", False),  # sniffed from the magic bytes
        ("rgb8; png compressed rgb8", True),  # the data itself is in RGB order
        ("bgr8; jpeg compressed rgb8", True),
    ],
)
def test_format_strings_colour_order(fmt: str, rgb_data: bool) -> None:
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :8] = (250, 10, 10)  # red | green | blue stripes: a channel swap cannot hide
    rgb[:, 8:16] = (10, 250, 10)
    rgb[:, 16:] = (10, 10, 250)
    ext = ".png" if "png" in fmt.lower() else ".jpg"
    stored = rgb if rgb_data else rgb[..., ::-1]  # what OpenCV's imencode receives
    msg = compressed_msg(encode(np.ascontiguousarray(stored), ext), fmt)
    interior = np.r_[2:6, 10:14, 18:22]  # JPEG chroma subsampling blurs the stripe edges
    for out in (codec.compressed_to_numpy(msg), codec.to_rgb8(msg)):
        assert out.shape == rgb.shape and out.dtype == np.uint8
        diff = int(np.abs(out.astype(int) - rgb)[:, interior].max())
        assert diff <= (0 if ext == ".png" else 30), diff  # a channel swap would be 240


def test_png_with_alpha_drops_it() -> None:
    rgb = distinct_rgb(5, 6)
    bgra = np.concatenate([rgb[..., ::-1], np.full((5, 6, 1), 77, np.uint8)], axis=2)
    msg = compressed_msg(encode(np.ascontiguousarray(bgra), ".png"), "bgra8; png compressed bgra8")
    np.testing.assert_array_equal(codec.compressed_to_numpy(msg), rgb)


def test_numpy_to_compressed_header_and_errors() -> None:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = codec.numpy_to_compressed(distinct_rgb(4, 4), "png", header, "rgb8")
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("cam", 12, 34)
    assert codec.numpy_to_compressed(distinct_rgb(4, 4), "png").header.frame_id == ""
    for args in [
        (distinct_rgb(4, 4), "webp"),
        (distinct_rgb(4, 4).astype(np.float32), "png"),
        (distinct_rgb(4, 4)[..., 0], "jpeg"),
        (distinct_rgb(4, 4), "png", None, "rgba8"),
    ]:
        with pytest.raises(ValueError):
            codec.numpy_to_compressed(*args)


# --------------------------------------------------------------------------------------
# numpy -> Image (outputs): cv_bridge's cv2_to_imgmsg fields
# --------------------------------------------------------------------------------------


def test_numpy_to_image_fields_like_cv_bridge() -> None:
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 5, 6
    conf = np.linspace(0, 1, 3 * 7, dtype=np.float32).reshape(3, 7)
    msg = codec.numpy_to_image(conf, "32FC1", header)
    # cv_bridge: height/width from the shape, step = len(data) // height,
    # is_bigendian from the byte order
    assert (msg.height, msg.width, msg.encoding, msg.step) == (3, 7, "32FC1", 28)
    assert msg.step == len(msg.data) // msg.height
    assert msg.is_bigendian == (1 if HOST_BIG else 0)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        "camera_optical",
        5,
        6,
    )
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.float32).reshape(3, 7), conf)
    labels = np.arange(5 * 9, dtype=np.uint8).reshape(5, 9)
    seg = codec.numpy_to_image(labels, "mono8")
    assert (seg.step, seg.is_bigendian, seg.header.frame_id) == (9, int(HOST_BIG), "")
    assert codec.numpy_to_image(labels[..., None], "mono8").step == 9  # HxWx1 is one channel too


def test_numpy_to_image_copies_views_and_foreign_order() -> None:
    big = distinct_rgb(10, 12)
    view = big[1:9:2, ::3]  # not contiguous
    msg = codec.numpy_to_image(view, "rgb8")
    assert msg.step == view.shape[1] * 3
    np.testing.assert_array_equal(codec.image_to_numpy(msg), view)
    swapped = (
        np.arange(12, dtype=np.float32).reshape(3, 4).astype(">f4" if not HOST_BIG else "<f4")
    )
    msg = codec.numpy_to_image(swapped, "32FC1")
    assert msg.is_bigendian == int(HOST_BIG)
    np.testing.assert_array_equal(
        np.frombuffer(bytes(msg.data), np.float32).reshape(3, 4), swapped
    )
    big[:] = 0  # the message owns its data
    assert codec.image_to_numpy(msg).sum() == 66


@pytest.mark.parametrize(
    "arr,encoding",
    [
        (np.zeros((4, 5, 3), np.float32), "rgb8"),
        (np.zeros((4, 5), np.uint8), "rgb8"),
        (np.zeros((4, 5, 3), np.uint8), "mono8"),
        (np.zeros((4, 5), np.float64), "32FC1"),
        (np.zeros((4, 5), np.int64), "mono8"),
        (np.zeros((4, 5, 4), np.uint8), "bgr8"),
        (np.zeros((2, 4, 5, 3), np.uint8), "rgb8"),
        (np.zeros(5, np.uint8), "mono8"),
        (np.zeros((4, 5, 3), np.uint8), "yuv_fancy42"),
    ],
)
def test_numpy_to_image_mismatch_raises_value_error(arr: np.ndarray, encoding: str) -> None:
    with pytest.raises(ValueError):
        codec.numpy_to_image(arr, encoding)


# --------------------------------------------------------------------------------------
# to_rgb8
# --------------------------------------------------------------------------------------


def test_to_rgb8_rgb8_is_a_view() -> None:
    rgb = distinct_rgb(6, 7)
    for pad in (0, 5):
        msg = raw_msg(rgb, "rgb8", pad=pad)
        out = codec.to_rgb8(msg)
        np.testing.assert_array_equal(out, rgb)
        assert out.dtype == np.uint8 and np.shares_memory(out, buffer_of(msg))


def expected_rgb(encoding: str, arr: np.ndarray) -> np.ndarray:
    """What to_rgb8 should give, computed with plain numpy."""
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = np.floor(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(
            np.uint8
        )
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if encoding.startswith("bgr"):
        return arr[..., 2::-1]
    return arr[..., :3]


@pytest.mark.parametrize(
    "encoding",
    [
        "rgb8",
        "bgr8",
        "rgba8",
        "bgra8",
        "mono8",
        "mono16",
        "16UC1",
        "32FC1",
        "rgb16",
        "bgr16",
        "rgba16",
        "bgra16",
        "8UC1",
        "8UC3",
        "8UC4",
        "32FC3",
        "64FC1",
    ],
)
@pytest.mark.parametrize("pad", [0, 8])
def test_to_rgb8_every_encoding(encoding: str, pad: int) -> None:
    arr = random_image(encoding, 8, 13, seed=7)
    if arr.dtype.kind == "f":
        arr = np.random.default_rng(7).uniform(-0.3, 1.3, size=arr.shape).astype(arr.dtype)
        arr[0, :3] = np.array([np.nan, np.inf, -np.inf]).reshape((3,) + (1,) * (arr.ndim - 2))
    out = codec.to_rgb8(raw_msg(arr, encoding, pad=pad, big_endian=encoding == "mono16"))
    assert out.shape == (8, 13, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected_rgb(encoding, arr))
    if arr.dtype.kind == "f":
        assert list(out[0, :3, 0]) == [0, 255, 0]  # NaN -> 0, +inf -> 255, -inf -> 0


def test_to_rgb8_known_values() -> None:
    def one(encoding: str, values: list) -> Any:
        dtype, channels = ENCODINGS[encoding]
        arr = np.array([values], dtype=dtype).reshape(
            (1, 1) if channels == 1 else (1, 1, channels)
        )
        return codec.to_rgb8(raw_msg(arr, encoding))[0, 0].tolist()

    assert one("bgr8", [1, 2, 3]) == [3, 2, 1]
    assert one("bgra8", [1, 2, 3, 4]) == [3, 2, 1]
    assert one("rgba8", [1, 2, 3, 4]) == [1, 2, 3]
    assert one("mono8", [9]) == [9, 9, 9]
    assert one("mono16", [0xABCD]) == [0xAB] * 3
    assert one("16UC1", [255]) == [0, 0, 0]
    assert one("32FC1", [0.5]) == [128] * 3
    assert one("32FC1", [2.0]) == [255] * 3
    assert one("32FC1", [-1.0]) == [0] * 3


@pytest.mark.parametrize("encoding", ["16SC1", "32SC1", "8SC1", "32FC2"])
def test_to_rgb8_refuses_what_has_no_rgb_meaning(encoding: str) -> None:
    msg = raw_msg(random_image(encoding, 3, 4), encoding)
    codec.image_to_numpy(msg)  # passthrough works
    with pytest.raises(ImageDecodeError) as err:
        codec.to_rgb8(msg)
    assert err.value.kind == "unknown_encoding" and encoding in str(err.value)


def test_full_hd_converts_exactly() -> None:
    """1920x1080 through the node's conversions (their speed, in copies of the same bytes, is
    benchmarks/conversion_speed.py's: tests never time themselves)."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    conf = np.random.default_rng(1).random((1080, 1920), dtype=np.float32)
    np.testing.assert_array_equal(codec.to_rgb8(raw_msg(rgb[..., ::-1], "bgr8")), rgb)
    np.testing.assert_array_equal(codec.image_to_numpy(codec.numpy_to_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(codec.image_to_numpy(codec.numpy_to_image(conf, "32FC1")), conf)


# --------------------------------------------------------------------------------------
# Hardening (issue 15): byte order, generic encodings, size limits, compressed headers, bombs
# --------------------------------------------------------------------------------------

MULTI_BYTE = sorted(e for e, (dtype, _) in ENCODINGS.items() if np.dtype(dtype).itemsize > 1)


@pytest.mark.parametrize("encoding", MULTI_BYTE)
@pytest.mark.parametrize("big_endian", [False, True])
def test_every_multi_byte_encoding_honours_is_bigendian(encoding: str, big_endian: bool) -> None:
    arr = random_image(encoding, 4, 6, seed=11)
    arr.flat[0] = 0x0102 if arr.dtype.kind in "ui" else 1.5
    msg = raw_msg(arr, encoding, big_endian=big_endian)
    np.testing.assert_array_equal(codec.image_to_numpy(msg), arr)
    # the same bytes read the other way round are other values
    msg.is_bigendian = int(not big_endian)
    assert not np.array_equal(codec.image_to_numpy(msg), arr)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "16U", "rgb16", "16UC3"])
def test_big_endian_16_bit_reaches_rgb8_as_its_high_byte(encoding: str) -> None:
    """Issue 15: mono16 with is_bigendian=1 decoded like little-endian. 0x0102 -> 1 (big) / 2
    (little)."""
    channels = codec.encoding_info(encoding)[1]
    for is_big, expected in ((1, 1), (0, 2)):
        msg = Image(height=1, width=2, encoding=encoding, is_bigendian=is_big, step=4 * channels)
        msg.data = bytes([0x01, 0x02]) * channels + bytes([0xFF, 0x00]) * channels
        out = codec.to_rgb8(msg)
        assert out[0, 0].tolist() == [expected] * 3, (encoding, is_big, out[0, 0])
        assert out[0, 1].tolist() == [0xFF if is_big else 0] * 3


GENERIC_ACCEPTED = {  # encoding -> what the note must say
    "8UC1": "gray",
    "8U": "gray",
    "8UC3": "RGB order",
    "8UC4": "RGBA order",
    "16UC1": "high byte",
    "16U": "high byte",
    "16UC3": "RGB order",
    "16UC4": "alpha dropped",
    "32FC1": "[0, 1]",
    "32FC3": "RGB order",
    "64FC1": "[0, 1]",
}


@pytest.mark.parametrize("encoding", sorted(GENERIC_ACCEPTED))
def test_generic_encodings_are_read_by_channel_count_and_noted(encoding: str) -> None:
    dtype, channels = codec.encoding_info(encoding)
    rng = np.random.default_rng(5)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    arr = (
        rng.random(shape).astype(dtype)
        if dtype.kind == "f"
        else rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    )
    decoded = codec.decode_rgb8(raw_msg(arr, encoding))
    assert [n.kind for n in decoded.notes] == ["generic_encoding"]
    assert (
        encoding in decoded.notes[0].message
        and GENERIC_ACCEPTED[encoding] in decoded.notes[0].message
    )
    high = (
        arr
        if dtype == np.uint8
        else (
            (arr >> 8).astype(np.uint8)
            if dtype == np.uint16
            else np.floor(np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
        )
    )
    # C3/C4: RGB(A) order
    expected = np.repeat(high[..., None], 3, axis=2) if channels == 1 else high[..., :3]
    np.testing.assert_array_equal(decoded.image, expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "mono16", "rgba16"])
def test_named_encodings_carry_no_note(encoding: str) -> None:
    assert codec.decode_rgb8(raw_msg(random_image(encoding, 3, 4), encoding)).notes == ()


@pytest.mark.parametrize("encoding", ["8UC2", "16UC2", "8SC1", "16SC3", "32SC1", "8UC5", "16UC7"])
def test_generic_encodings_without_image_meaning_are_refused(encoding: str) -> None:
    msg = Image(height=2, width=3, encoding=encoding, is_bigendian=0, step=3 * 8)
    if encoding not in ("8UC5", "16UC7"):
        dtype, channels = codec.encoding_info(encoding)
        msg.step = 3 * channels * dtype.itemsize
    msg.data = bytes(msg.step * 2)
    with pytest.raises(ImageDecodeError) as err:
        codec.decode_rgb8(msg)
    assert err.value.kind == "unknown_encoding" and encoding in str(err.value)


def test_decode_note_kind_is_validated() -> None:
    assert codec.DecodeNote("format_mismatch", "x").kind == "format_mismatch"
    with pytest.raises(ValueError):
        codec.DecodeNote("truncated", "an error kind is not a note kind")
    assert not set(codec.KINDS) & set(codec.NOTE_KINDS)


# -- size limits -----------------------------------------------------------------------

NODE_LIMITS = codec.InputLimits(min_side=codec.MIN_USEFUL_SIDE)


@pytest.mark.parametrize("height,width", [(1, 1), (31, 64), (64, 31), (1, 1000)])
def test_frames_below_the_useful_size_are_too_small(height: int, width: int) -> None:
    arr = np.zeros((height, width, 3), np.uint8)
    with pytest.raises(ImageDecodeError) as err:
        codec.decode_rgb8(raw_msg(arr, "rgb8"), NODE_LIMITS)
    assert err.value.kind == "too_small" and f"{width}x{height}" in str(err.value)
    png = compressed_msg(encode(arr, ".png"), "png")
    with pytest.raises(ImageDecodeError) as err:
        codec.decode_rgb8(png, NODE_LIMITS)
    assert err.value.kind == "too_small"
    # no minimum unless asked
    assert codec.decode_rgb8(raw_msg(arr, "rgb8")).image.shape == arr.shape


def test_a_malformed_small_frame_reports_what_is_wrong_with_it_not_its_size() -> None:
    msg = raw_msg(np.zeros((8, 10, 3), np.uint8), "rgb8")
    msg.encoding = "yuv_fancy42"
    with pytest.raises(ImageDecodeError) as err:
        codec.decode_rgb8(msg, NODE_LIMITS)
    assert err.value.kind == "unknown_encoding"
    msg = raw_msg(np.zeros((8, 10, 3), np.uint8), "rgb8")
    msg.step = 27
    with pytest.raises(ImageDecodeError) as err:
        codec.decode_rgb8(msg, NODE_LIMITS)
    assert err.value.kind == "step_mismatch"


def test_smallest_useful_frame_passes() -> None:
    side = codec.MIN_USEFUL_SIDE
    arr = distinct_rgb(side, side)
    np.testing.assert_array_equal(codec.to_rgb8(raw_msg(arr, "rgb8"), NODE_LIMITS), arr)
    np.testing.assert_array_equal(
        codec.to_rgb8(compressed_msg(encode(arr[..., ::-1], ".png"), "png"), NODE_LIMITS), arr
    )


def test_pixel_budget_applies_to_raw_and_compressed() -> None:
    limits = codec.InputLimits(max_pixels=40 * 50)
    at_limit, over = np.zeros((40, 50, 3), np.uint8), np.zeros((40, 51, 3), np.uint8)
    assert codec.to_rgb8(raw_msg(at_limit, "rgb8"), limits).shape == (40, 50, 3)
    assert codec.to_rgb8(compressed_msg(encode(at_limit, ".png"), "png"), limits).shape == (
        40,
        50,
        3,
    )
    for msg in (
        raw_msg(over, "rgb8"),
        compressed_msg(encode(over, ".png"), "png"),
        compressed_msg(encode(over, ".jpg"), "jpeg"),
    ):
        with pytest.raises(ImageDecodeError) as err:
            codec.to_rgb8(msg, limits)
        assert err.value.kind == "too_large" and "max_input_pixels=2000" in str(err.value)


def test_decoded_bytes_budget_counts_channels_and_depth() -> None:
    """A 16-bit RGB PNG decodes to 6 bytes a pixel: it must fit in 3 * max_pixels bytes."""
    limits = codec.InputLimits(max_pixels=40 * 50)
    deep_full = png_bytes(50, 40, depth=16, colour=2)  # 12000 bytes decoded > 6000
    deep_half = png_bytes(25, 40, depth=16, colour=2)  # 6000 bytes decoded: fits
    with pytest.raises(ImageDecodeError) as err:
        codec.to_rgb8(compressed_msg(deep_full, "png"), limits)
    assert err.value.kind == "too_large" and "12000 bytes" in str(err.value)
    assert codec.to_rgb8(compressed_msg(deep_half, "png"), limits).shape == (40, 25, 3)


# -- compressed headers against OpenCV -------------------------------------------------

PNG_VARIANTS = [
    (colour, depth, trns)
    for colour, depths in (
        (0, (1, 2, 4, 8, 16)),
        (2, (8, 16)),
        (3, (1, 2, 4, 8)),
        (4, (8, 16)),
        (6, (8, 16)),
    )
    for depth in depths
    for trns in ((False, True) if colour in (0, 2, 3) else (False,))
]


@pytest.mark.parametrize("colour,depth,trns", PNG_VARIANTS)
def test_png_header_predicts_what_opencv_allocates(colour: int, depth: int, trns: bool) -> None:
    """The oracle is cv2.imdecode itself: the header's decoded size is exactly the array's."""
    palette = bytes(range(3 * 2 ** min(depth, 4))) if colour == 3 else None
    transparency = ({0: b"\0\0", 2: bytes(6), 3: b"\x80"}[colour]) if trns else None
    data = png_bytes(
        7,
        5,
        depth,
        colour,
        palette=palette,
        transparency=transparency,
        extra_chunks=((b"tEXt", b"Comment\0x" * 50),),
    )
    header = codec.read_compressed_header(data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (header.format, header.width, header.height) == ("png", 7, 5)
    assert header.decoded_bytes == image.nbytes, (header, image.shape, image.dtype)
    assert header.channels == (image.shape[2] if image.ndim == 3 else 1)
    assert codec.to_rgb8(compressed_msg(data, "png")).shape == (5, 7, 3)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_header_predicts_what_opencv_allocates(channels: int, progressive: bool) -> None:
    image = np.zeros((9, 13, 3) if channels == 3 else (9, 13), np.uint8)
    data = encode(image, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive))
    header = codec.read_compressed_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (header.format, header.width, header.height, header.channels) == (
        "jpeg",
        13,
        9,
        channels,
    )
    assert header.decoded_bytes == decoded.nbytes


def test_cmyk_jpeg_header() -> None:
    pil = pytest.importorskip("PIL.Image")
    import io

    out = io.BytesIO()
    pil.new("CMYK", (13, 9)).save(out, "JPEG")
    header = codec.read_compressed_header(out.getvalue())
    decoded = cv2.imdecode(np.frombuffer(out.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert header.decoded_bytes == decoded.nbytes == 13 * 9 * 3


def test_jpeg_header_walk_has_no_segment_cut_off() -> None:
    """Issue 15: the walk gave up after 1024 segments and then decoded blindly."""
    rgb = smooth_rgb(40, 48)
    data = jpeg_with_comments(encode(rgb[..., ::-1], ".jpg"), 5000)
    assert codec.read_compressed_header(data).width == 48
    out = codec.to_rgb8(compressed_msg(data, "jpeg"))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 3
    with pytest.raises(
        ImageDecodeError
    ) as err:  # the same walk finds a huge frame header behind them
        codec.to_rgb8(compressed_msg(jpeg_with_size(data, 20000, 20000), "jpeg"))
    assert err.value.kind == "too_large" and "20000x20000" in str(err.value)


@pytest.mark.parametrize("cut", [2, 3, 4, 10, 20, 30, 50, 100, 150, 200, 300])
def test_every_truncated_jpeg_header_is_refused_before_decoding(
    cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_jpeg()
    sos = data.index(b"\xff\xda")
    assert cut < sos + 14  # the first scan header (3 components) is not complete
    monkeypatch.setattr(cv2, "imdecode", _no_decoding)
    with pytest.raises(ImageDecodeError) as err:
        codec.to_rgb8(compressed_msg(data[:cut], "jpeg"))
    assert err.value.kind == "corrupt_compressed", str(err.value)


def _no_decoding(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("cv2.imdecode was called for data whose header should have been refused")


def test_progressive_jpeg_counts_libjpeg_coefficient_buffer() -> None:
    """libjpeg keeps a progressive JPEG's coefficients (64 int16 a block) for the whole image."""
    # baseline: one MCU row
    assert codec.read_compressed_header(small_jpeg(16, 16)).working_bytes == 0
    assert (
        codec.read_compressed_header(progressive_jpeg(16, 16, True)).working_bytes
        == 16 * 16 * 3 * 2
    )
    assert (
        codec.read_compressed_header(progressive_jpeg(16, 16, False)).working_bytes
        == (4 + 1 + 1) * 128
    )
    limits = codec.InputLimits(max_pixels=64 * 64)
    with pytest.raises(ImageDecodeError) as err:  # 4:4:4: 3 + 6 bytes a pixel > two rgb8 frames
        codec.to_rgb8(compressed_msg(progressive_jpeg(64, 64, True), "jpeg"), limits)
    assert err.value.kind == "too_large" and "peak 36864" in str(err.value)
    assert codec.to_rgb8(
        compressed_msg(progressive_jpeg(64, 64, False), "jpeg"), limits
    ).shape == (64, 64, 3)


# -- format string vs magic bytes ------------------------------------------------------


@pytest.mark.parametrize(
    "data_format,fmt,mismatch",
    [
        ("png", "jpeg", True),
        ("png", "rgb8; jpeg compressed bgr8", True),
        ("jpeg", "png", True),
        ("png", "tiff", True),
        ("png", "rgb8; webp compressed bgr8", True),
        ("png", "png", False),
        ("jpeg", "bgr8; jpeg compressed bgr8", False),
        ("jpeg", "jpg", False),
        ("png", "", False),
    ],
)
def test_format_string_mismatch_is_decoded_by_magic_and_noted(
    data_format: str, fmt: str, mismatch: bool
) -> None:
    rgb = smooth_rgb(40, 48)
    data = encode(
        rgb[..., ::-1], ".png" if data_format == "png" else ".jpg", cv2.IMWRITE_JPEG_QUALITY, 98
    )
    decoded = codec.decode_rgb8(compressed_msg(data, fmt))
    assert decoded.image.shape == rgb.shape
    assert np.abs(decoded.image.astype(int) - rgb).max() <= (0 if data_format == "png" else 12)
    assert [n.kind for n in decoded.notes] == (["format_mismatch"] if mismatch else [])
    if mismatch:
        assert (
            repr(fmt) in decoded.notes[0].message
            and data_format.upper() in decoded.notes[0].message
        )


# -- bombs -----------------------------------------------------------------------------

BOMB_KINDS = {
    "png 20000x20000 sent as jpeg": "too_large",
    "jpeg 20000x20000 behind 1100 COM segments": "too_large",
    "1-bit png 16000x16000": "too_large",
    "progressive jpeg 4096x4096 4:4:4": "too_large",
    "truncated png header": "corrupt_compressed",
    "truncated jpeg header": "corrupt_compressed",
    "garbage": "corrupt_compressed",
}


def test_bomb_list_is_complete() -> None:
    assert set(BOMB_KINDS) == set(bombs())


@pytest.mark.parametrize("name", sorted(BOMB_KINDS))
def test_bombs_are_refused_before_decoding(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, fmt = bombs()[name]
    monkeypatch.setattr(cv2, "imdecode", _no_decoding)
    for decode in (codec.decode_rgb8, codec.compressed_to_numpy):
        with pytest.raises(ImageDecodeError) as err:
            decode(compressed_msg(data, fmt), NODE_LIMITS)
        assert err.value.kind == BOMB_KINDS[name], str(err.value)


RSS_PROBE = Path(__file__).resolve().parent / "decode_rss_probe.py"


def _probe(name: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(RSS_PROBE), name], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(BOMB_KINDS) + ["legit 4096x4096"])
def test_peak_rss_under_each_bomb(name: str) -> None:
    """Each bomb decoded in a fresh process: peak RSS < baseline + 2 x one maximal rgb8 frame.

    Before the fix (issue 15) the first three grew the peak by 2289, 2289 and 977 MB here, and
    the 9 KB progressive JPEG (inside max_input_pixels, not in the issue) by 144 MiB. The
    legit frame (a valid PNG at exactly the pixel budget, 48 MiB as rgb8) shows the probe sees
    memory: cv2.imdecode itself holds two copies of its result for a moment (the Python binding
    copies the decoded Mat into a numpy array), so a maximal frame peaks at 2 frames plus a few
    MB of decoder state; the colour swap is in place.
    """
    frame = codec.DEFAULT_MAX_INPUT_PIXELS * 3
    result = _probe(name)
    grown = result["peak"] - result["baseline"]
    if name.startswith("legit"):
        assert result["outcome"] == "decoded" and result["shape"] == [4096, 4096, 3]
        assert frame < grown < 2 * frame + 8 * 2**20, (name, grown / 2**20, result)
    else:
        assert result["outcome"] == f"refused: {BOMB_KINDS[name]}"
        assert grown < 2 * frame, (name, grown / 2**20, result)
        # in fact: nothing frame-sized at all
        assert grown < 4 * 2**20, (
            name,
            grown / 2**20,
            result,
        )
