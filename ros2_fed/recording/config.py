"""The clip recorder's settings (node parameters ``record.*``; docs/parameters.md)."""

from __future__ import annotations

from dataclasses import dataclass

#: What ``record.min_alert_level`` may name: an alert at or above it triggers a clip; OFF: never.
ALERT_TRIGGER_LEVELS = ("WARN", "ERROR", "OFF")
#: How the confidence map goes into a clip: an 8-bit PNG (lossless, 1 = 255), a JPEG, or not.
CONFIDENCE_FORMATS = ("png", "jpeg", "off")


@dataclass(frozen=True)
class RecordConfig:
    """``record.*``: off by default; ``dir`` is required when on.

    Why these defaults: 5 s before a trigger show the object's approach (50 frames at 10 Hz),
    2 s after it what the vehicle did; 30 s between clips keep one slow drive past a hazard
    from filling the disk with near-copies (overlapping triggers extend the open clip instead).
    """

    enabled: bool = False
    dir: str = ""
    before: float = 5.0
    after: float = 2.0
    min_alert_level: str = "WARN"
    scene: bool = True
    min_interval: float = 30.0
    max_buffer_mb: float = 512.0
    max_total_mb: float = 4096.0
    confidence_format: str = "png"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Why this configuration cannot record (empty when it can)."""
        out = []
        if self.enabled and not self.dir.strip():
            out.append("record.dir is required when record.enabled is true")
        for name in ("before", "after", "min_interval"):
            if getattr(self, name) < 0:
                out.append(f"record.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_buffer_mb", "max_total_mb"):
            if not getattr(self, name) > 0:
                out.append(f"record.{name} must be > 0, got {getattr(self, name)}")
        if self.min_alert_level not in ALERT_TRIGGER_LEVELS:
            out.append(
                f"record.min_alert_level must be one of {list(ALERT_TRIGGER_LEVELS)}, "
                f"got {self.min_alert_level!r}"
            )
        if self.confidence_format not in CONFIDENCE_FORMATS:
            out.append(
                f"record.confidence_format must be one of {list(CONFIDENCE_FORMATS)}, "
                f"got {self.confidence_format!r}"
            )
        return out

    @property
    def before_ns(self) -> int:
        return round(self.before * 1e9)

    @property
    def after_ns(self) -> int:
        return round(self.after * 1e9)

    @property
    def min_interval_ns(self) -> int:
        return round(self.min_interval * 1e9)

    @property
    def max_buffer_bytes(self) -> int:
        return round(self.max_buffer_mb * 1024 * 1024)

    @property
    def max_total_bytes(self) -> int:
        return round(self.max_total_mb * 1024 * 1024)
