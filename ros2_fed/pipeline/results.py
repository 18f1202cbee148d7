"""One camera's frame after the frame path: what stages judge and the node publishes.

Its own module so the per-frame stages (``stages.py``) can name it without importing the
processor that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ros2_fed import codec
from ros2_fed.health import Status


@dataclass(eq=False)
class CameraResult:
    """One camera's frame after :meth:`FrameProcessor.run`: decoded and inferred, or refused.

    ``inference_s`` is the engine time of the whole batch the frame ran in; ``statuses`` the
    per-frame stages' verdicts by stage name; ``changed``: a stage's level differs from that
    camera's previous frame (aggregators should hear of it at once).
    """

    camera: str
    message: Any
    rgb: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    confidence: Optional[np.ndarray] = None
    bad_input: Optional[codec.ImageDecodeError] = None
    bad_input_total: int = 0  # this camera's bad frames so far, this one included
    notes: tuple[codec.DecodeNote, ...] = ()
    resized: bool = False  # the frame is not the engine's size: resized on the host
    decode_s: float = 0.0
    inference_s: float = 0.0
    statuses: dict[str, Status] = field(default_factory=dict)
    changed: bool = False

    @property
    def ok(self) -> bool:
        """Decoded and run through the engine."""
        return self.labels is not None

    @property
    def stamp(self) -> Any:
        """The input message's header stamp (None for a bare frame)."""
        header = getattr(self.message, "header", None)
        return getattr(header, "stamp", None)
