"""ROS 2 messages without rclpy: the ``rosbags`` kilted type store, the builders of the
messages the product writes (Image, CompressedImage, DiagnosticArray) and CDR bytes.

Why its own module: the replay's bags, the live replay and the clip recorder all write the same
messages; one set of builders keeps their encodings and layouts identical. Messages here are
``rosbags`` dataclasses with the rclpy classes' field names (``msg.header.stamp.sec``,
``msg.data``), so :mod:`ros2_fed.codec` decodes them unchanged, and their CDR bytes are what
rclpy publishes. Stamps are integer nanoseconds.
"""

from __future__ import annotations

from typing import Any, Iterable, Union

import numpy as np

from ros2_fed.pipeline.outputs import DIAGNOSTICS_MESSAGE as DIAGNOSTIC_ARRAY
from ros2_fed.pipeline.outputs import IMAGE_MESSAGE as IMAGE

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

_TYPESTORE: Any = None


def typestore() -> Any:
    """The ROS 2 kilted type store of ``rosbags`` (message classes, CDR, definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def msg_class(msgtype: str) -> Any:
    return typestore().types[msgtype]


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    return int(stamp_ns) // 1_000_000_000, int(stamp_ns) % 1_000_000_000


def header(stamp_ns: int, frame_id: str = "") -> Any:
    sec, nanosec = split_stamp(stamp_ns)
    Time = msg_class("builtin_interfaces/msg/Time")
    Header = msg_class("std_msgs/msg/Header")
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=str(frame_id))


def stamp_ns(msg: Any) -> int:
    """Header stamp of any message with a ``header`` (rosbags or rclpy) in nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


_ENCODINGS = {  # encoding -> (dtype, channels)
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "32FC1": (np.float32, 1),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono16": (np.uint16, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
}


def image_message(arr: np.ndarray, encoding: str, stamp: int, frame_id: str = "") -> Any:
    """HxW / HxWxC array -> rosbags ``sensor_msgs/msg/Image`` (little endian, unpadded rows)."""
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r} (one of {', '.join(_ENCODINGS)})")
    dtype, channels = _ENCODINGS[encoding]
    arr = np.asarray(arr)
    have = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if have != channels or arr.dtype != np.dtype(dtype):
        raise ValueError(
            f"{encoding} needs {channels} channel(s) of {np.dtype(dtype)}, got {arr.shape} "
            f"{arr.dtype}"
        )
    arr = np.ascontiguousarray(arr.astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    height, width = arr.shape[:2]
    Image = msg_class(IMAGE)
    return Image(
        header=header(stamp, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * arr.dtype.itemsize,
        data=arr.reshape(-1).view(np.uint8).copy(),
    )


def compressed_message(
    image: np.ndarray, stamp: int, frame_id: str = "", fmt: str = "jpeg", quality: int = 95
) -> Any:
    """HxWx3 RGB or HxW mono uint8 -> ``sensor_msgs/msg/CompressedImage`` the way
    image_transport writes it (see :func:`encode_compressed`)."""
    text, data = encode_compressed(image, fmt, quality)
    Compressed = msg_class(COMPRESSED_IMAGE)
    return Compressed(header=header(stamp, frame_id), format=text, data=data)


def encode_compressed(
    image: np.ndarray, fmt: str = "jpeg", quality: int = 95
) -> tuple[str, np.ndarray]:
    """HxWx3 RGB or HxW mono uint8 -> (format string, encoded bytes as uint8) the way
    image_transport's compressed plugin writes them (colour as BGR data, format
    ``"rgb8; jpeg compressed bgr8"``; mono as ``"mono8; png compressed mono8"``). The node's
    ``~/NAME/compressed`` outputs and the bags share it."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be jpeg or png, got {fmt!r}")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    mono = image.ndim == 2
    pixels = image if mono else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        if fmt == "jpeg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", pixels, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    text = f"mono8; {fmt} compressed mono8" if mono else f"rgb8; {fmt} compressed bgr8"
    return text, np.ascontiguousarray(encoded.reshape(-1), dtype=np.uint8)


def diagnostic_array(stamp: int, frame_id: str, statuses: Iterable[dict[str, Any]]) -> Any:
    """``diagnostic_msgs/msg/DiagnosticArray``; each status a dict with level (int), name,
    message, hardware_id and values ({key: value})."""
    Status = msg_class("diagnostic_msgs/msg/DiagnosticStatus")
    KeyValue = msg_class("diagnostic_msgs/msg/KeyValue")
    Array = msg_class(DIAGNOSTIC_ARRAY)
    out = []
    for s in statuses:
        out.append(
            Status(
                level=int(s.get("level", 0)),
                name=str(s.get("name", "")),
                message=str(s.get("message", "")),
                hardware_id=str(s.get("hardware_id", "")),
                values=[
                    KeyValue(key=str(k), value=str(v)) for k, v in (s.get("values") or {}).items()
                ],
            )
        )
    return Array(header=header(stamp, frame_id), status=out)


def serialize(msg: Any) -> bytes:
    """CDR bytes of a rosbags message (what rclpy's ``serialize_message`` gives for the same
    content)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: Union[bytes, memoryview], msgtype: str) -> Any:
    return typestore().deserialize_cdr(bytes(raw) if isinstance(raw, memoryview) else raw, msgtype)
