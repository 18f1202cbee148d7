"""SIGINT and SIGTERM stop a command cleanly at any moment, from its first line to its exit.

Why: Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to
be (in the middle of an import that is a traceback), SIGTERM's default ends the process without
any cleanup, and a process started in the background of a non-interactive shell inherits SIGINT
as ignored, so an early Ctrl-C was lost until rclpy took the signal over. A command calls
:func:`install` as its first statement, before its heavy imports; from then on one handler
decides by phase:

- starting (imports, argument parsing, until :func:`started`): the process ends at once with
  exit code 0 (SystemExit: no traceback, and nothing has been set up that needs undoing);
- running (after :func:`started`): the first signal raises KeyboardInterrupt in the main
  thread, which the command turns into its normal shutdown. rclpy's own handler runs first
  (it chains to this one) and has shut its context down by then;
- stopping (after :func:`stopping`): signals are ignored, the process is on its way out.

Only the standard library is imported here, so installing costs nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STARTING, RUNNING, STOPPING = "starting", "running", "stopping"


class _Stop:
    phase = STARTING
    received: Optional[int] = None  # the first stop signal, if any


_STATE = _Stop()


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    first = _STATE.received is None
    if first:
        _STATE.received = signum
    if _STATE.phase == STARTING:
        raise SystemExit(0)
    if _STATE.phase == RUNNING and first:
        raise KeyboardInterrupt


def install() -> None:
    """Take SIGINT and SIGTERM over (also when the parent left SIGINT ignored: the command
    handles it later anyway, through rclpy, so it must from the start). Main thread only."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_signal)


def started() -> None:
    """From here on a stop signal is a KeyboardInterrupt for the command's own shutdown (and
    one that came before this call is raised now)."""
    _STATE.phase = RUNNING
    if _STATE.received is not None:
        raise KeyboardInterrupt


def stopping() -> None:
    """The command is shutting down: further stop signals change nothing."""
    _STATE.phase = STOPPING


def received() -> Optional[int]:
    """The first stop signal received, or None."""
    return _STATE.received
