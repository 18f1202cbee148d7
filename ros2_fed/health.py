"""Keeping fed_node's trouble visible: a per-kind log throttle and an input/engine watchdog.

Why a module of its own: both are timing logic that must be right at the edges (the first line
of a kind, the moment a timeout passes, the frame that ends it), so they are pure python with an
injectable clock and tested without ROS. The node owns the logger, the timers and the
/diagnostics publisher; these classes only decide. Thread-safe: the node calls them from its
executor callbacks, its timer and its worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

__all__ = [
    "OK",
    "WARN",
    "ERROR",
    "STALE",
    "Clock",
    "Status",
    "LogDecision",
    "KindThrottle",
    "WatchdogState",
    "InputWatchdog",
    "worst_status",
]

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
Clock = Callable[[], float]


@dataclass(frozen=True)
class Status:
    """One diagnostic status without ROS: what the node publishes as a DiagnosticStatus and the
    replay writes into its output bag (``name`` and ``hardware_id`` filled in by whoever knows
    the node and the camera)."""

    level: int
    message: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    hardware_id: str = ""


# --------------------------------------------------------------------------------------
# Per-kind log throttle
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogDecision:
    """Whether to log this line, and how many lines of its kind were held back since the last
    one."""

    log: bool
    suppressed_before: int = 0

    def suffix(self) -> str:
        """Text to append to the logged line ("" when nothing was held back)."""
        if not self.log or not self.suppressed_before:
            return ""
        return f" ({self.suppressed_before} more like this since the last line)"


class KindThrottle:
    """First line of every kind at once; later lines of the same kind at most one per ``period_s``.

    Why per kind: with one throttle for all bad input a ``zero_size`` line hid a
    ``step_mismatch`` line 0.5 s later (issue 15), so an operator never learnt of the second
    problem. Held-back lines are counted (:meth:`suppressed`, and in the next logged line).
    ``period_s`` 0 logs everything; ``math.inf`` logs each kind once.
    """

    def __init__(self, period_s: float, clock: Clock = time.monotonic) -> None:
        if not period_s >= 0.0:
            raise ValueError(f"period_s must be >= 0, got {period_s}")
        self._period = float(period_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._held_back: dict[str, int] = {}  # since the last logged line, per kind
        self._suppressed: dict[str, int] = {}  # in all, per kind

    def allow(self, kind: str) -> LogDecision:
        """Decide about one line of ``kind`` now (a held-back line is counted)."""
        now = self._clock()
        with self._lock:
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._period:
                self._held_back[kind] = self._held_back.get(kind, 0) + 1
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return LogDecision(False)
            self._last_logged[kind] = now
            return LogDecision(True, self._held_back.pop(kind, 0))

    def suppressed(self) -> dict[str, int]:
        """Lines held back so far, per kind (kinds with none are absent)."""
        with self._lock:
            return dict(self._suppressed)


# --------------------------------------------------------------------------------------
# Input / engine watchdog
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchdogState:
    """The watchdog's verdict: level (OK/WARN/ERROR), a message for /diagnostics, and its
    inputs."""

    level: int
    message: str
    seconds_since_input: float  # since the last frame (or since the watchdog started)
    seconds_engine_waiting: float  # unfinished work without a finished frame; 0 when idle


class InputWatchdog:
    """WARN when no frame arrived for ``input_timeout_s``; ERROR when the engine has not finished
    a frame for ``engine_timeout_s`` while one is pending. 0 disables either check.

    Why: when the camera stops, /diagnostics used to say "OK, ready" at 0 Hz forever (issue
    15); a safety monitor must learn that the node sees nothing, or that its engine hangs.
    The node reports :meth:`frame_received` (subscription callback) and :meth:`frame_finished`
    (worker, after any outcome), and calls :meth:`check` from a fast timer and after each
    received frame: it returns the new state only when the level changed, so /diagnostics can
    go out at once instead of at the next period. The clock starts at construction (create the
    watchdog when the node is ready: a camera that never starts is "no input" too).
    """

    def __init__(
        self, input_timeout_s: float, engine_timeout_s: float, clock: Clock = time.monotonic
    ) -> None:
        for name, value in (
            ("input_timeout_s", input_timeout_s),
            ("engine_timeout_s", engine_timeout_s),
        ):
            if not value >= 0.0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {value}")
        self._input_timeout = float(input_timeout_s)
        self._engine_timeout = float(engine_timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_input: Optional[float] = None
        # unfinished work since (reset by every finished frame)
        self._waiting_since: Optional[float] = None
        self._reported_level = OK

    def frame_received(self) -> None:
        """A frame arrived (call from the subscription callback, then :meth:`check`)."""
        now = self._clock()
        with self._lock:
            self._last_input = now
            if self._waiting_since is None:
                self._waiting_since = now

    def frame_finished(self, more_pending: bool) -> None:
        """The worker finished a frame (published, skipped as bad input or failed);
        ``more_pending``: another frame is already waiting for it."""
        now = self._clock()
        with self._lock:
            self._waiting_since = now if more_pending else None

    def state(self) -> WatchdogState:
        """The verdict now (does not count as reported; see :meth:`check`)."""
        now = self._clock()
        with self._lock:
            return self._state(now)

    def check(self) -> Optional[WatchdogState]:
        """The verdict now if its level differs from the last one check returned, else None."""
        now = self._clock()
        with self._lock:
            state = self._state(now)
            if state.level == self._reported_level:
                return None
            self._reported_level = state.level
            return state

    def _state(self, now: float) -> WatchdogState:
        since_input = now - (self._last_input if self._last_input is not None else self._started)
        waiting = now - self._waiting_since if self._waiting_since is not None else 0.0
        problems: list[tuple[int, str]] = []
        if self._engine_timeout > 0.0 and waiting >= self._engine_timeout:
            problems.append((ERROR, f"engine has not finished a frame for {waiting:.1f} s"))
        if self._input_timeout > 0.0 and since_input >= self._input_timeout:
            never = " (none since start)" if self._last_input is None else ""
            problems.append((WARN, f"no input for {since_input:.1f} s{never}"))
        level, message = worst_status(*problems) if problems else (OK, "")
        return WatchdogState(level, message, since_input, waiting)


def worst_status(*statuses: tuple[int, str]) -> tuple[int, str]:
    """The highest level among ``(level, message)`` pairs, with the messages at that level joined.

    Why: /diagnostics has one status for the pipeline; a watchdog WARN must not be hidden by
    an OK pipeline, nor an engine ERROR by a bad-input WARN.
    """
    if not statuses:
        raise ValueError("worst_status needs at least one (level, message)")
    level = max(lvl for lvl, _ in statuses)
    return level, "; ".join(msg for lvl, msg in statuses if lvl == level and msg)
