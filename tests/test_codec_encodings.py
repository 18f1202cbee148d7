"""Camera encodings: YUV 4:2:2 (UYVY / YUYV), NV12 / NV21 and the four Bayer patterns at 8 and
16 bit decode to the right RGB, behind the same size checks as every encoding; the list in
docs/troubleshooting.md is the codec's.

The expected colours are not OpenCV's word for it: YUV frames are built by hand from known Y, U,
V samples and compared with the BT.601 video-range formula written out here, and the Bayer
mosaics are sampled from a known colour image with the pattern named in ROS's convention (the
filter's first two rows), so a swapped chroma order or a Bayer code one step off fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ros2_fed import codec
from ros2_fed.codec import ImageDecodeError, InputLimits

REPO = Path(__file__).resolve().parents[1]
H, W = 6, 10


def _msg(encoding: str, data: Any, step: int, height: int = H, width: int = W, big: int = 0):
    return SimpleNamespace(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=big,
        step=step,
        data=bytes(data) if isinstance(data, (bytes, bytearray)) else data.tobytes(),
    )


def _bt601(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Video-range BT.601 YCbCr -> RGB, per pixel (u, v already at full resolution)."""
    luma = 1.164 * (y.astype(float) - 16)
    cb, cr = u.astype(float) - 128, v.astype(float) - 128
    rgb = np.stack([luma + 1.596 * cr, luma - 0.813 * cr - 0.391 * cb, luma + 2.018 * cb], -1)
    return np.clip(rgb, 0, 255)


@pytest.fixture(scope="module")
def yuv() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luma per pixel, chroma per horizontal pair; values spread over the legal ranges."""
    rng = np.random.default_rng(34)
    y = rng.integers(16, 236, (H, W)).astype(np.uint8)
    u = rng.integers(16, 241, (H, W // 2)).astype(np.uint8)
    v = rng.integers(16, 241, (H, W // 2)).astype(np.uint8)
    return y, u, v


def _wide(chroma: np.ndarray) -> np.ndarray:
    return np.repeat(chroma, 2, axis=1)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy"])
def test_uyvy_decodes_to_bt601_rgb(yuv: tuple, encoding: str) -> None:
    y, u, v = yuv
    step = W * 2 + 6  # padded rows
    raw = np.zeros((H, step), np.uint8)
    raw[:, 0 : 2 * W : 4], raw[:, 1 : 2 * W : 2], raw[:, 2 : 2 * W : 4] = u, y, v
    out = codec.to_rgb8(_msg(encoding, raw, step))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.abs(out - _bt601(y, _wide(u), _wide(v))).max() <= 1.0
    assert codec.image_to_numpy(_msg(encoding, raw, step)).shape == (H, W, 2)


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "yuyv"])
def test_yuyv_decodes_to_bt601_rgb(yuv: tuple, encoding: str) -> None:
    y, u, v = yuv
    raw = np.zeros((H, W * 2), np.uint8)
    raw[:, 0::2], raw[:, 1::4], raw[:, 3::4] = y, u, v
    out = codec.to_rgb8(_msg(encoding, raw, W * 2))
    assert np.abs(out - _bt601(y, _wide(u), _wide(v))).max() <= 1.0


@pytest.mark.parametrize(("encoding", "first"), [("nv12", "u"), ("nv21", "v")])
def test_nv12_and_nv21_decode_to_bt601_rgb(yuv: tuple, encoding: str, first: str) -> None:
    y, u, v = yuv
    u2, v2 = u[0::2], v[0::2]  # 4:2:0: one chroma row for two luma rows
    step = W + 2
    raw = np.zeros((H + H // 2, step), np.uint8)
    raw[:H, :W] = y
    raw[H:, 0:W:2], raw[H:, 1:W:2] = (u2, v2) if first == "u" else (v2, u2)
    out = codec.to_rgb8(_msg(encoding, raw, step))
    full = lambda c: np.repeat(_wide(c), 2, axis=0)  # noqa: E731
    assert out.shape == (H, W, 3)
    assert np.abs(out - _bt601(y, full(u2), full(v2))).max() <= 1.0
    assert codec.image_to_numpy(_msg(encoding, raw, step)).shape == (H + H // 2, W)


@pytest.mark.skipif(not hasattr(__import__("cv2"), "COLOR_RGB2YUV_UYVY"), reason="OpenCV < 4.7")
@pytest.mark.parametrize(("encoding", "code"), [("uyvy", "UYVY"), ("yuyv", "YUYV")])
def test_opencv_round_trip(encoding: str, code: str) -> None:
    """RGB -> OpenCV's own UYVY / YUYV -> our decode: back to the RGB (pixel pairs share their
    chroma, so the image repeats each colour twice)."""
    import cv2

    rng = np.random.default_rng(1)
    rgb = np.repeat(rng.integers(40, 216, (H, W // 2, 3)).astype(np.uint8), 2, axis=1)
    packed = cv2.cvtColor(rgb, getattr(cv2, f"COLOR_RGB2YUV_{code}"))
    out = codec.to_rgb8(_msg(encoding, packed, W * 2))
    assert np.abs(out.astype(int) - rgb).max() <= 3


# --------------------------------------------------------------------------------- Bayer

COLOUR = {"r": 200, "g": 100, "b": 30}


def _mosaic(pattern: str, height: int = 8, width: int = 12) -> np.ndarray:
    """A uniform (200, 100, 30) scene seen through the ``pattern`` filter (ROS naming: the first
    row's first two filters, then the second row's)."""
    out = np.zeros((height, width), np.uint8)
    for index, filt in enumerate(pattern):
        out[index // 2 :: 2, index % 2 :: 2] = COLOUR[filt]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer8_demosaics_to_the_scene_colour(pattern: str) -> None:
    mosaic = _mosaic(pattern)
    out = codec.to_rgb8(_msg(f"bayer_{pattern}8", mosaic, 12, 8, 12))
    assert out.shape == (8, 12, 3)
    inner = out[2:-2, 2:-2].reshape(-1, 3)  # away from the borders' extrapolation
    assert (inner == [200, 100, 30]).all(), np.unique(inner, axis=0)
    assert codec.image_to_numpy(_msg(f"bayer_{pattern}8", mosaic, 12, 8, 12)).shape == (8, 12)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("big", [0, 1])
def test_bayer16_uses_the_high_byte(pattern: str, big: int) -> None:
    mosaic = _mosaic(pattern).astype(np.uint16) * 256 + 0x7F  # the low byte must not matter
    data = mosaic.astype(">u2" if big else "<u2")
    out = codec.to_rgb8(_msg(f"bayer_{pattern}16", data, 24, 8, 12, big=big))
    assert (out[2:-2, 2:-2].reshape(-1, 3) == [200, 100, 30]).all()


# --------------------------------------------------------------------------- size checks


@pytest.mark.parametrize(
    ("encoding", "width", "height", "step", "size", "kind", "needle"),
    [
        ("yuv422", 9, 4, 18, 72, "step_mismatch", "width must be even"),
        ("yuyv", 10, 4, 19, 76, "step_mismatch", "step 19 is smaller than the row size"),
        ("uyvy", 10, 4, 20, 79, "truncated", "data is 79 bytes but step*height"),
        ("nv12", 10, 5, 10, 75, "step_mismatch", "width and height must be even"),
        ("nv12", 10, 4, 10, 40, "truncated", "step*height*3/2 = 10*6 = 60 (too short)"),
        ("nv21", 10, 4, 10, 61, "truncated", "(too long)"),
        ("bayer_rggb16", 10, 4, 21, 84, "step_mismatch", "not a multiple of the 2-byte"),
        ("bayer_grbg8", 10, 4, 10, 39, "truncated", "data is 39 bytes"),
    ],
)
def test_malformed_camera_frames_are_refused_by_kind(
    encoding: str, width: int, height: int, step: int, size: int, kind: str, needle: str
) -> None:
    msg = _msg(encoding, b"\x80" * size, step, height, width)
    with pytest.raises(ImageDecodeError) as refused:
        codec.to_rgb8(msg)
    assert refused.value.kind == kind and needle in str(refused.value), str(refused.value)


class _NoTouch:
    """Data that fails any read: a refused header must not look at it."""

    def __len__(self) -> int:
        raise AssertionError("the data was looked at")

    def __buffer__(self, flags: int) -> memoryview:  # pragma: no cover - must not happen
        raise AssertionError("the data was read")


@pytest.mark.parametrize("encoding", ["uyvy", "nv12", "bayer_bggr16"])
def test_a_bomb_header_is_refused_before_the_data(encoding: str) -> None:
    msg = SimpleNamespace(
        height=4000, width=4000, encoding=encoding, is_bigendian=0, step=8000, data=_NoTouch()
    )
    with pytest.raises(ImageDecodeError) as refused:
        codec.to_rgb8(msg, InputLimits(max_pixels=1000 * 1000))
    assert refused.value.kind == "too_large"


def test_a_step_that_would_need_too_many_bytes_is_refused_before_the_data() -> None:
    """NV12's chroma rows count: 1000 rows of 400,000 bytes plus 500 more exceed MAX_BYTES."""
    msg = SimpleNamespace(
        height=1000, width=1000, encoding="nv12", is_bigendian=0, step=400_000, data=_NoTouch()
    )
    with pytest.raises(ImageDecodeError, match=r"step\*height\*3/2 = 600000000 bytes") as refused:
        codec.to_rgb8(msg)
    assert refused.value.kind == "too_large"


def test_camera_encodings_are_input_only() -> None:
    pytest.importorskip("sensor_msgs")
    with pytest.raises(ValueError, match="input only"):
        codec.numpy_to_image(np.zeros((4, 4, 2), np.uint8), "yuv422")


# ------------------------------------------------------------------------- the docs' list


def test_the_troubleshooting_list_is_the_codecs() -> None:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    section = text.split("## Image encodings", 1)[1].split("\n## ", 1)[0]
    bullets = section.split("`sensor_msgs/Image` inputs:", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`([a-z0-9_]+)`", bullets))
    assert listed == set(codec.NAMED_ENCODINGS), listed ^ set(codec.NAMED_ENCODINGS)
    for name in codec.NAMED_ENCODINGS:
        codec.encoding_info(name)  # each one decodes
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "docs/troubleshooting.md#image-enc" in line)
    for family in ("YUV422", "NV12", "Bayer"):
        assert family in row
