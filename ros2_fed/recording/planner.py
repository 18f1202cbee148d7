"""Triggers -> clip windows: when a clip starts and ends, which triggers merge, which wait.

Rules (stamps in ns, the messages' header stamps: the node and the replay cut the same clips):

- A trigger at stamp ``t`` with no clip open starts a clip ``[t - before, t + after]`` with the
  buffer's entries from ``t - before`` on, unless the previous clip's first trigger was less
  than ``min_interval`` before ``t`` (rate limit; a manual trigger is never limited).
- A trigger while a clip is open merges into it: the clip's end becomes
  ``max(end, t + after)`` and the trigger is listed in the clip's metadata.
- Every entry stamped inside the open window joins the clip; the first processed frame stamped
  after its end closes it (:meth:`ClipPlanner.due`), as does :meth:`ClipPlanner.flush` when the
  stream ends (the clip is then shorter than planned, and says so). Closing on processed
  frames, not on raw messages, keeps the last frame's statuses in the clip.
- An open clip holds at most ``max_bytes`` of entries; later ones are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .buffer import Entry

REASONS = ("alert", "scene", "manual")


@dataclass(frozen=True)
class Trigger:
    """Why a clip is wanted: ``reason`` (alert, scene, manual), the camera, the stamp of the
    frame that triggered it, and the status that did (level name and message)."""

    reason: str
    camera: str
    stamp_ns: int
    level: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"trigger reason must be one of {REASONS}, got {self.reason!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "camera": self.camera,
            "stamp_ns": self.stamp_ns,
            "level": self.level,
            "message": self.message,
        }


@dataclass
class Clip:
    """An open or finished clip: its window, triggers and entries."""

    start_ns: int
    end_ns: int
    triggers: list[Trigger]
    entries: list[Entry] = field(default_factory=list)
    nbytes: int = 0
    left_out: int = 0  # entries over the memory bound
    complete: bool = False  # reached its planned end (False: the stream stopped first)
    region: dict[str, Any] = field(default_factory=dict)  # the largest uncertain region seen

    @property
    def first(self) -> Trigger:
        return self.triggers[0]


class ClipPlanner:
    """The clip state machine; not thread-safe (the stage calls it under its lock)."""

    def __init__(self, before_ns: int, after_ns: int, min_interval_ns: int, max_bytes: int):
        self.configure(before_ns, after_ns, min_interval_ns, max_bytes)
        self.open: Optional[Clip] = None
        self._last_start: Optional[int] = None  # the previous clip's first trigger stamp
        self.rate_limited = 0

    def configure(
        self, before_ns: int, after_ns: int, min_interval_ns: int, max_bytes: int
    ) -> None:
        self.before_ns, self.after_ns = int(before_ns), int(after_ns)
        self.min_interval_ns, self.max_bytes = int(min_interval_ns), int(max_bytes)

    def trigger(self, trigger: Trigger, history: list[Entry]) -> str:
        """Take ``trigger``; ``history``: the buffer's entries from ``stamp - before`` on.
        Returns "started", "merged" or "rate_limited"."""
        if self.open is not None:
            self.open.end_ns = max(self.open.end_ns, trigger.stamp_ns + self.after_ns)
            self.open.triggers.append(trigger)
            return "merged"
        last = self._last_start
        if (
            trigger.reason != "manual"
            and last is not None
            and trigger.stamp_ns - last < self.min_interval_ns
        ):
            self.rate_limited += 1
            return "rate_limited"
        start = trigger.stamp_ns - self.before_ns
        self.open = Clip(start, trigger.stamp_ns + self.after_ns, [trigger])
        self._last_start = trigger.stamp_ns
        for entry in history:
            if start <= entry.stamp_ns <= self.open.end_ns:
                self._keep(entry)
        return "started"

    def add(self, entry: Entry) -> None:
        """An entry that arrived after the trigger: kept when it is inside the open window."""
        clip = self.open
        if clip is not None and clip.start_ns <= entry.stamp_ns <= clip.end_ns:
            self._keep(entry)

    def due(self, stamp_ns: int) -> Optional[Clip]:
        """The open clip, finished, when a frame stamped ``stamp_ns`` is past its end."""
        clip = self.open
        if clip is None or stamp_ns <= clip.end_ns:
            return None
        clip.complete = True
        self.open = None
        return clip

    def flush(self) -> Optional[Clip]:
        """The open clip as it is (the stream stopped before its end), or None."""
        clip, self.open = self.open, None
        return clip

    def reset(self) -> None:
        """Time went backwards (a bag played again): the open clip is finished as it is."""
        self._last_start = None

    def _keep(self, entry: Entry) -> None:
        clip = self.open
        if clip.nbytes + entry.nbytes > self.max_bytes:
            clip.left_out += 1
            return
        clip.entries.append(entry)
        clip.nbytes += entry.nbytes
