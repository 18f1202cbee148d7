"""Surround cameras: one fed_node, N cameras, one batched engine.

Why one process: N single-camera nodes hold N copies of the engine and N runtimes that fight
over the same cores (or GPU); one node holds one engine and runs the newest frame of every
camera that has one as a single batch. Scheduling is latest-frame-wins per camera
(:class:`CameraMailbox`): a camera that is slow or stopped simply has nothing pending, so it
never delays the others by more than the batch in flight.

Camera ``""`` is the single-camera node of before (input ``image``, outputs ``~/<output>``);
a named camera ``front`` reads ``front/image`` and writes ``~/front/<output>``. The batches
themselves run in :mod:`ros2_fed.pipeline.inference`. Pure: no rclpy, no torch (the node, the
replay and the tests share it).
"""

from __future__ import annotations

import re
import threading
from typing import Generic, Iterable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")

SINGLE_CAMERA = ""  # the name of the one camera of a node without a ``cameras`` list
MAX_CAMERAS = 16
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one ROS name token: no '/', '~' or '{'


def camera_problems(names: Sequence[str]) -> list[str]:
    """Why a ``cameras`` list is unusable (distinct ROS name tokens); empty when fine."""
    problems = [
        f"cameras: {name!r} is not a valid name (a letter, then letters, digits or '_')"
        for name in names
        if not CAMERA_NAME.match(str(name))
    ]
    duplicates = sorted({str(n) for n in names if list(names).count(n) > 1})
    if duplicates:
        problems.append(f"cameras: {', '.join(duplicates)} listed more than once")
    if len(names) > MAX_CAMERAS:
        problems.append(f"cameras: {len(names)} cameras, at most {MAX_CAMERAS}")
    return problems


def camera_names(cameras: Sequence[str]) -> tuple[str, ...]:
    """The cameras a node serves: the list, or the single unnamed camera when it is empty."""
    return tuple(str(c) for c in cameras) or (SINGLE_CAMERA,)


def input_topic(camera: str, compressed: bool) -> str:
    """The (relative, remappable) input topic of ``camera``."""
    base = f"{camera}/image" if camera else "image"
    return base + "/compressed" if compressed else base


def camera_info_topic(camera: str) -> str:
    """The (relative, remappable) CameraInfo topic next to ``camera``'s image, as camera
    drivers and image_transport name it (``camera_info``, ``front/camera_info``)."""
    return f"{camera}/camera_info" if camera else "camera_info"


def output_topic(camera: str, output: str) -> str:
    """The private topic of one output of ``camera`` (``~/overlay``, ``~/front/overlay``)."""
    return f"~/{camera}/{output}" if camera else f"~/{output}"


class CameraMailbox(Generic[T]):
    """One slot per camera: ``put`` replaces that camera's pending item, ``take_all`` blocks until
    any camera has one and takes every pending item at once (the next batch).

    Why: the engine must always work on the newest frame of each camera; anything older that
    has not started is worthless (bounded memory and latency), and a camera that stopped must
    not hold the others back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[str, T] = {}
        self._closed = False

    def put(self, camera: str, item: T) -> bool:
        """Store ``item`` for ``camera``; True when it replaced (dropped) one nobody had taken."""
        with self._cond:
            dropped = camera in self._items
            self._items[camera] = item
            self._cond.notify()
            return dropped

    def take_all(self, timeout: Optional[float] = None) -> Optional[dict[str, T]]:
        """Every pending item by camera (removing them), or None on close / timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout):
                return None
            if self._closed:
                return None
            items, self._items = self._items, {}
            return items

    def pending(self, camera: Optional[str] = None) -> bool:
        """True when ``camera`` (any camera when None) has an item waiting."""
        with self._cond:
            return bool(self._items) if camera is None else camera in self._items

    def close(self) -> None:
        """Wake the consumer for good (pending items are discarded)."""
        with self._cond:
            self._closed = True
            self._items = {}
            self._cond.notify_all()


def stamp_batches(arrivals: Iterable[tuple[str, int, T]]) -> Iterator[dict[str, T]]:
    """The batches a node's worker takes when frames arrive stamp by stamp and it is free for
    each: ``arrivals`` are ``(camera, stamp, item)`` in arrival order; the frames of one stamp
    go through one :class:`CameraMailbox` into one batch, in arrival order. A new stamp, or a
    camera's second frame of one stamp, starts the next batch (offline nothing is dropped).

    Why the mailbox: the replay forms its batches with the node's own scheduling, so a rig
    replayed offline runs the engine on the batches the node runs for the same arrivals.
    """
    mailbox: CameraMailbox[T] = CameraMailbox()
    current: Optional[int] = None
    for camera, stamp, item in arrivals:
        if mailbox.pending() and (stamp != current or mailbox.pending(camera)):
            yield mailbox.take_all(timeout=0) or {}
        current = stamp
        mailbox.put(camera, item)
    if mailbox.pending():
        yield mailbox.take_all(timeout=0) or {}
