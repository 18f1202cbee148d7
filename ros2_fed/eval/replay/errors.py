"""Errors of the replay tool that need no rclpy to catch.

``main`` maps them to exit codes by type: :class:`UsageError` (and ``bag.BagError``) 2,
:class:`LiveError` 1; :class:`OutputExistsError` is a usage error that must not write a
failure report (the folder holds an earlier run's).
"""

from __future__ import annotations


class LiveError(RuntimeError):
    """The live run could not be completed (node did not start, never answered, died, ...)."""


class UsageError(ValueError):
    """Bad arguments or an output folder that would be overwritten."""


class OutputExistsError(UsageError):
    """``--out`` already holds an earlier run (and ``--overwrite`` was not given)."""
