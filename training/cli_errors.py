"""User errors of the training CLIs: one line on stderr and exit code 2, never a traceback.

A wrong path, a missing file, a checkpoint of the wrong kind or backbone, or a malformed flag
is the user's to fix, so the CLI says what and where in one line (``PROG: error: ...``, as
argparse does) instead of a traceback that buries it. Programming errors still raise.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional

from ros2_fed.checkpoint import CheckpointError

EXIT_USAGE = 2  # argparse's code for bad arguments


class UsageError(ValueError):
    """Contradictory or malformed arguments, found after argparse (message is shown as is)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user's input is wrong" (one definition for every CLI)."""
    # torch: only the CLIs that load models import this
    from ros2_fed.backbones.base import (
        BackboneError,
    )

    return (
        UsageError,
        BackboneError,
        CheckpointError,
        FileNotFoundError,
        NotADirectoryError,
        ValueError,
    )


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (multi-line messages joined)."""
    return (
        " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        or type(exc).__name__
    )


def report(prog: str, exc: BaseException) -> int:
    """Print ``PROG: error: MESSAGE`` to stderr; returns the usage exit code."""
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return EXIT_USAGE


@contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block, warnings shown on stderr read ``PROG: warning: MESSAGE`` (not file:line
    + source).

    Only the formatting changes, so recorders (``warnings.catch_warnings(record=True)``) still
    see them.
    """

    def formatted(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: Optional[str] = None,
    ) -> str:
        return f"{prog}: warning: {one_line(message)}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = formatted
    try:
        yield
    finally:
        warnings.formatwarning = saved
