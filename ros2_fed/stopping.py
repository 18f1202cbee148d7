"""SIGINT and SIGTERM stop a command cleanly at any moment, from its first line to its exit.

Why: Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to
be (in the middle of an import that is a traceback, or, inside an extension module's
initialisation, an ImportError), SIGTERM's default ends the process without any cleanup, and a
process started in the background of a non-interactive shell inherits SIGINT as ignored, so an
early Ctrl-C was lost until rclpy took the signal over. A command calls :func:`install` as its
first statement (:func:`install_for`: only when the process runs that command, so importing it
elsewhere changes nothing), before its heavy imports; a program that calls the command's
``main`` itself may :func:`install` too. From then on one handler decides by phase:

- starting (imports, argument parsing, until :func:`started`): nothing needs undoing yet, so
  the process ends on the spot with exit code 0 (``os._exit`` after flushing its output: an
  exception raised in the middle of an import would not reach the command's own handling);
- running (after :func:`started`): the first signal raises KeyboardInterrupt in the main
  thread, which the command turns into its normal shutdown. rclpy's own handler runs first (it
  chains to this one) and has shut its context down by then;
- stopping (after :func:`stopping`): signals are ignored, the process is on its way out.

Only ``os``, ``signal`` and ``sys`` are used, so installing costs next to nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from types import FrameType
    from typing import Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STARTING, RUNNING, STOPPING = "starting", "running", "stopping"
_state = {"phase": STARTING, "received": None, "installed": False}


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    first = _state["received"] is None
    if first:
        _state["received"] = signum
    if _state["phase"] == STARTING:
        _flush()
        os._exit(0)
    if _state["phase"] == RUNNING and first:
        raise KeyboardInterrupt


def install() -> None:
    """Take SIGINT and SIGTERM over (also when the parent left SIGINT ignored: the command
    handles it later anyway, through rclpy, so it must from the start). Main thread only."""
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_signal)
        _state["installed"] = True
    except ValueError:  # not the main thread (the command is embedded): leave signals alone
        pass


def install_for(command: str, module: str) -> None:
    """:func:`install` when this process is ``command``: its console script, or ``python -m``
    of the entry module (``module`` is then ``"__main__"``). Importing the module anywhere else
    (a test, an application embedding it) leaves that process's signals alone."""
    if module == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == command:
        install()


def started() -> None:
    """From here on a stop signal is a KeyboardInterrupt for the command's own shutdown. Call
    it before anything that needs undoing (rclpy.init, output files)."""
    _state["phase"] = RUNNING


def stopping() -> None:
    """The command is shutting down: further stop signals are ignored, by the system itself
    (so also while the interpreter finalises). Call it again after ``rclpy.try_shutdown``, which
    puts back the handler it found at ``rclpy.init``. Nothing changes where :func:`install`
    was not called (a command run inside another program keeps that program's signals)."""
    _state["phase"] = STOPPING
    if not _state["installed"]:
        return
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def leave_if_stopped(code: int) -> int:
    """``code``, or, when a stop signal ended the run, the process leaves at once with it (its
    output flushed, its files closed by then): the interpreter's teardown of loaded libraries
    (torch, runtimes) can take a second and more, and a stop must be quick."""
    if _state["received"] is not None:
        stopping()
        _flush()
        os._exit(code)
    return code


def quiet_broken_pipe() -> None:
    """The reader of stdout went away (``fed_node --help | head``): what is still buffered goes
    to /dev/null, so the interpreter's last flush raises no BrokenPipeError at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def interrupted_exit_code() -> int:
    """The exit code of a command whose run a KeyboardInterrupt ended, after it said what it
    kept: 0 for a stop signal (SIGINT / SIGTERM, as every command here), 130 for an interrupt
    that was not one (a program calling the command's ``main`` without :func:`install`)."""
    return leave_if_stopped(0 if _state["received"] is not None else 130)


def received() -> Optional[int]:
    """The first stop signal received, or None."""
    return _state["received"]
