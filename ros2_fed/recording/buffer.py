"""The rolling buffer: the last few seconds of everything a clip may need, bounded in memory.

Why bounded twice: in time, because a clip needs only ``record.before`` seconds of history; in
bytes, because a camera at 512x1024 rgb8 sends 1.5 MB a frame and several cameras (or a
higher rate than planned) must not grow the node without bound (``record.max_buffer_mb``).
The oldest entries go first either way, and the buffer counts what it dropped for its bound.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

#: Bytes counted for an entry on top of its payload: the message object, its header, the deque.
ENTRY_OVERHEAD = 256


@dataclass(frozen=True)
class Entry:
    """One message a clip may contain: its topic and ROS type, its stamp (ns), and its payload:
    CDR bytes, or an object that ``encode`` turns into CDR bytes on the writer thread (so the
    frame path never serialises or compresses for a clip that may never be written)."""

    topic: str
    msgtype: str
    stamp_ns: int
    payload: Any
    nbytes: int
    encode: Optional[Callable[[Any], bytes]] = None

    def cdr(self) -> bytes:
        return self.payload if self.encode is None else self.encode(self.payload)


class RollingBuffer:
    """Entries of the last ``window_ns`` (by stamp, against the newest one seen) within
    ``max_bytes``; any thread may :meth:`add`, :meth:`since` copies a window out."""

    def __init__(self, window_ns: int, max_bytes: int) -> None:
        self._window_ns = int(window_ns)
        self._max_bytes = int(max_bytes)
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        self._newest = None
        self._lock = threading.Lock()
        self.dropped_for_memory = 0

    def configure(self, window_ns: int, max_bytes: int) -> None:
        with self._lock:
            self._window_ns, self._max_bytes = int(window_ns), int(max_bytes)
            self._prune()

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)
            self._bytes += entry.nbytes
            if self._newest is None or entry.stamp_ns > self._newest:
                self._newest = entry.stamp_ns
            self._prune()

    def since(self, start_ns: int) -> list[Entry]:
        """The entries stamped at or after ``start_ns``, oldest first."""
        with self._lock:
            return [e for e in self._entries if e.stamp_ns >= start_ns]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes, self._newest = 0, None

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _prune(self) -> None:
        """Drop entries older than the window, then the oldest while over the memory bound."""
        oldest_kept = self._newest - self._window_ns if self._newest is not None else None
        entries = self._entries
        while entries and oldest_kept is not None and entries[0].stamp_ns < oldest_kept:
            self._bytes -= entries.popleft().nbytes
        while entries and self._bytes > self._max_bytes:
            self._bytes -= entries.popleft().nbytes
            self.dropped_for_memory += 1
