"""Does the alert fire when it should? Frame-level recall and false-alarm rate of a drive.

A frame is **positive** when an unknown (OOD) object of at least ``min_object_pixels`` pixels
is visible: its largest 8-connected OOD component. It is **negative** when no OOD pixel is
visible at all. Frames that show only smaller OOD bits are neither (too small to demand an
alert, too real to call an alert on them false).

``recall`` = alerted positive frames / positive frames, where the first ``raise_frames`` frames
of every run of positive frames are excused (the alert waits that many frames on purpose);
``false_alarm_rate`` = alerted negative frames / negative frames. "Alerted" = level WARN or
above. Frames without an alert record (dropped) count as not alerted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

MIN_OBJECT_PIXELS = 100
WARN = 1


def largest_object_pixels(ood_mask: np.ndarray) -> int:
    """Pixels of the largest 8-connected OOD component (mask: 1 = OOD, anything else not)."""
    m = (np.asarray(ood_mask) == 1).astype(np.uint8)
    if not m.any():
        return 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


@dataclass
class AlertScore:
    recall: Optional[float]  # None without positive frames
    false_alarm_rate: Optional[float]  # None without negative frames
    positives: int  # positive frames counted (after the excused ones)
    excused: int
    negatives: int
    alerted_positives: int
    alerted_negatives: int
    presence: list[Optional[bool]]  # per frame: True positive, False negative, None neither

    def to_json(self) -> dict:
        return {k: v for k, v in vars(self).items()}


def frame_presence(
    object_pixels: Sequence[Optional[int]],
    ood_pixels: Sequence[Optional[int]],
    min_object_pixels: int = MIN_OBJECT_PIXELS,
) -> list[Optional[bool]]:
    """Per frame True (object >= min), False (no OOD pixel), None (smaller bits, or no ground
    truth)."""
    out: list[Optional[bool]] = []
    for obj, total in zip(object_pixels, ood_pixels):
        if obj is None or total is None:
            out.append(None)
        elif obj >= min_object_pixels:
            out.append(True)
        elif total == 0:
            out.append(False)
        else:
            out.append(None)
    return out


def counted_frames(presence: Sequence[Optional[bool]], raise_frames: int) -> list[bool]:
    """Per frame: does the recall count it? Positive frames after the first ``raise_frames`` of
    their run of positive frames (the alert waits that many frames on purpose)."""
    out, run = [], 0
    for present in presence:
        run = run + 1 if present else 0
        out.append(bool(present) and run > raise_frames)
    return out


def score_alerts(
    levels: Sequence[Optional[int]], presence: Sequence[Optional[bool]], raise_frames: int
) -> AlertScore:
    """Recall over positive frames (first ``raise_frames`` of each run excused) and false-alarm
    rate."""
    if len(levels) != len(presence):
        raise ValueError(f"{len(levels)} alert levels for {len(presence)} frames")
    positives = excused = negatives = hit = false = 0
    for level, present, counted in zip(levels, presence, counted_frames(presence, raise_frames)):
        alerted = level is not None and level >= WARN
        if present:
            if not counted:
                excused += 1
                continue
            positives += 1
            hit += alerted
        elif present is False:
            negatives += 1
            false += alerted
    return AlertScore(
        recall=hit / positives if positives else None,
        false_alarm_rate=false / negatives if negatives else None,
        positives=positives,
        excused=excused,
        negatives=negatives,
        alerted_positives=hit,
        alerted_negatives=false,
        presence=list(presence),
    )


def detection_report(
    levels: Sequence[Optional[int]],
    object_pixels: Sequence[Optional[int]],
    ood_pixels: Sequence[Optional[int]],
    raise_frames: int,
    min_object_pixels: int = MIN_OBJECT_PIXELS,
) -> Optional[dict]:
    """The JSON a replay report carries, or None when no frame has OOD ground truth."""
    if all(p is None for p in object_pixels):
        return None
    presence = frame_presence(object_pixels, ood_pixels, min_object_pixels)
    score = score_alerts(levels, presence, raise_frames)
    return {
        **score.to_json(),
        "min_object_pixels": min_object_pixels,
        "excused_onset_frames": raise_frames,
    }
