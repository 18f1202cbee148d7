"""Errors of the replay tool that need no rclpy to catch."""
from __future__ import annotations


class LiveError(RuntimeError):
    """The live run could not be completed (node did not start, never answered, died, ...)."""
