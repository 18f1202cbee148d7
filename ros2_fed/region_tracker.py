"""Candidate uncertain regions tracked over frames: temporal evidence for the alert rule.

Why: one frame's largest uncertain region cannot tell a far, small object from a patch of
uncertain ground; the rule then needs a large region to stay quiet, and warns late. Over frames
the two differ: an object lying on the road ahead is seen in (almost) every frame, at a place
that moves smoothly, and it grows as the vehicle approaches; boundary noise and flicker jump
about and come and go. And an object stands out of its surroundings (a compact region far more
uncertain than the ring around it), while uncertain ground fades into more uncertain ground.

Pure python (numpy + OpenCV, no rclpy). :func:`candidates` measures every uncertain component
of a frame (bounding box, area, centroid, perspective size, contrast); :class:`RegionTracker`
associates them with the tracks of earlier frames and scores each track (:class:`TrackConfig`):

* **persistence**: a track counts only once it was seen in at least ``hits`` of the last
  ``window`` frames (``window >= hits``); a track not seen for ``window`` frames is dropped (an
  object that comes back starts afresh);
* **contrast**: the region's mean uncertainty (1 - confidence) minus the mean of a ring around
  its bounding box (as wide as half the box's longer side, at least 2 pixels; a region filling
  the image has no ring and counts as certain surroundings); a track counts
  only when its latest contrast is at least ``min_contrast``;
* **approach**: the track's area grew by at least the factor ``growth`` over its last
  ``growth_frames`` frames (its newest sighting against its oldest one in that span), and its
  bounding box's bottom row did not move up: then its evidence is its size times ``gain``
  (``gain = 1``: approach ignored);
* **evidence** = size (of the latest sighting) x (``gain`` when approaching, else 1) for a track
  that counts, else 0. A counting track that is not seen in this frame keeps its last evidence
  (one missed frame does not reset a rising alert) until it falls below ``hits`` of ``window``.

Association: a candidate continues the track whose last bounding box it overlaps most
(intersection over union), else the track whose last centroid is nearest, within
``match_distance`` image heights; each track takes at most one candidate, the closest pairs
first, and a candidate without a track starts a new one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

#: At most this many candidates per frame are measured and tracked (the largest by size).
MAX_CANDIDATES = 16


@dataclass(frozen=True)
class TrackConfig:
    """Track scoring settings (the ``alerts.track_*`` parameters without the prefix)."""

    # Selected on synthroad selection drives (training/track_selection.py, docs/alerts.md).
    hits: int = 5
    window: int = 6
    min_contrast: float = 0.1
    growth: float = 1.15
    growth_frames: int = 5
    gain: float = 1.5
    match_distance: float = 0.06

    def __post_init__(self) -> None:
        for name in ("hits", "window", "growth_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"track_{name} must be an integer >= 1, got {value!r}")
        if self.hits > self.window:
            raise ValueError(
                f"track_hits ({self.hits}) must not exceed track_window ({self.window})"
            )
        for name, low, high in (
            ("min_contrast", -1.0, 1.0),
            ("growth", 1.0, 100.0),
            ("gain", 1.0, 100.0),
            ("match_distance", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"track_{name} must be a number, got {value!r}")
            if not low <= float(value) <= high:  # also rejects NaN
                raise ValueError(f"track_{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class Candidate:
    """One uncertain component of a frame (image rows; bbox inclusive)."""

    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    size: float
    contrast: float


@dataclass
class Track:
    """A candidate followed over frames: its sightings (None = not seen) for the newest frames."""

    id: int
    last: Candidate  # the latest sighting
    sightings: deque = field(default_factory=deque)
    evidence: float = 0.0

    def hits(self, window: int) -> int:
        recent = list(self.sightings)[-window:]
        return sum(s is not None for s in recent)

    def approaching(self, growth: float, frames: int) -> bool:
        """Area grew by ``growth`` or more and the bottom did not rise over the last ``frames``
        frames (newest sighting against the oldest one in that span)."""
        seen = [s for s in list(self.sightings)[-frames:] if s is not None]
        if len(seen) < 2:
            return False
        first, last = seen[0], seen[-1]
        return last.area >= growth * first.area and last.bbox[3] >= first.bbox[3]


def candidates(
    mask: np.ndarray,
    confidence: np.ndarray,
    height: int,
    row0: int = 0,
    horizon: Optional[float] = 0.4,
    min_distance: float = 0.2,
) -> list[Candidate]:
    """The uncertain components of ``mask`` (uint8 0/255, rows ``row0..`` of the image), the
    :data:`MAX_CANDIDATES` largest by size.

    ``confidence`` (same shape as ``mask``, float32 without NaN) gives the contrast
    (uncertainty = 1 - confidence). Size:
    ``sqrt(area) / max(bottom + 1 - horizon * height, min_distance * height)`` with a ``horizon``
    (as the region rule's ``size_reference: horizon``), ``sqrt(area) / height`` without one.
    """
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S
    )
    if n <= 1:
        return []
    st = stats[1:].astype(np.float64)
    area = st[:, cv2.CC_STAT_AREA]
    if horizon is None:
        sizes = np.sqrt(area) / height
    else:
        bottom = row0 + st[:, cv2.CC_STAT_TOP] + st[:, cv2.CC_STAT_HEIGHT]
        sizes = np.sqrt(area) / np.maximum(bottom - horizon * height, min_distance * height)
    order = np.argsort(-sizes, kind="stable")[:MAX_CANDIDATES]
    integral = cv2.integral(confidence, sdepth=cv2.CV_64F)
    h, w = mask.shape
    out = []
    for j in order:
        x, y, bw, bh, a = (int(v) for v in stats[j + 1])
        x1, y1 = x + bw, y + bh
        inside = labels[y:y1, x:x1] == j + 1
        mean_in = 1.0 - float(confidence[y:y1, x:x1][inside].mean())
        r = max(2, max(bw, bh) // 2)
        ex0, ey0, ex1, ey1 = max(0, x - r), max(0, y - r), min(w, x1 + r), min(h, y1 + r)
        s_out = _box_sum(integral, ex0, ey0, ex1, ey1) - _box_sum(integral, x, y, x1, y1)
        n_out = (ex1 - ex0) * (ey1 - ey0) - bw * bh
        # no ring (the region fills the image): nothing around it to fade into
        mean_ring = 1.0 - s_out / n_out if n_out > 0 else 0.0
        cx, cy = centroids[j + 1]
        out.append(
            Candidate(
                bbox=(x, y + row0, x1 - 1, y1 - 1 + row0),
                area=a,
                centroid=(float(cx), float(cy) + row0),
                size=float(sizes[j]),
                contrast=mean_in - float(mean_ring),
            )
        )
    return out


def _box_sum(integral: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    """Sum over rows y0..y1-1, columns x0..x1-1 from an OpenCV integral image."""
    return float(integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


@dataclass(frozen=True)
class TrackResult:
    """This frame's strongest track: its evidence and latest sighting (None: no track counts)."""

    evidence: float
    track: Optional[Track]

    @property
    def candidate(self) -> Optional[Candidate]:
        return None if self.track is None else self.track.last


class RegionTracker:
    """Tracks of candidate regions over frames (see the module docstring for the rules)."""

    def __init__(self, config: Optional[TrackConfig] = None) -> None:
        self.config = config if config is not None else TrackConfig()
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, found: Sequence[Candidate], height: int) -> TrackResult:
        """Associate this frame's candidates with the tracks, score every track, and return the
        strongest (largest evidence; ties: the oldest track)."""
        cfg = self.config
        keep = max(cfg.window, cfg.growth_frames)
        matched = self._associate(found, height)
        for track in self.tracks:
            seen = matched.pop(track.id, None)
            track.sightings.append(seen)
            if seen is not None:
                track.last = seen
            while len(track.sightings) > keep:
                track.sightings.popleft()
        self.tracks = [t for t in self.tracks if t.hits(cfg.window) > 0]
        for cand in matched.pop(-1, []):
            track = Track(self._next_id, cand, deque([cand]))
            self._next_id += 1
            self.tracks.append(track)
        best: Optional[Track] = None
        for track in self.tracks:
            track.evidence = self._evidence(track)
            if track.evidence > 0 and (best is None or track.evidence > best.evidence):
                best = track
        return TrackResult(best.evidence if best is not None else 0.0, best)

    def _evidence(self, track: Track) -> float:
        cfg = self.config
        if track.hits(cfg.window) < cfg.hits:
            return 0.0
        last = track.last
        if last.contrast < cfg.min_contrast:
            return 0.0
        if track.sightings[-1] is None:  # not seen this frame: keeps what it had
            return track.evidence
        gain = cfg.gain if track.approaching(cfg.growth, cfg.growth_frames) else 1.0
        return last.size * gain

    def _associate(self, found: Sequence[Candidate], height: int) -> dict:
        """{track id: its candidate, -1: [candidates without a track]}; greedy, best pairs
        first: overlapping pairs by IoU, then pairs within ``match_distance`` by distance."""
        limit = self.config.match_distance * height
        pairs = []
        for i, cand in enumerate(found):
            for track in self.tracks:
                last = track.last
                iou = _iou(cand.bbox, last.bbox)
                dist = math.dist(cand.centroid, last.centroid)
                if iou > 0:
                    pairs.append((0, -iou, i, track.id))
                elif dist <= limit:
                    pairs.append((1, dist, i, track.id))
        pairs.sort()
        out: dict = {}
        used: set[int] = set()
        for _, _, i, tid in pairs:
            if i in used or tid in out:
                continue
            out[tid] = found[i]
            used.add(i)
        out[-1] = [c for i, c in enumerate(found) if i not in used]
        return out
