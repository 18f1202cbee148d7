"""Low-confidence alerts: "something the model does not understand is on the road ahead".

Pure python (numpy + OpenCV, no rclpy). The node feeds every processed frame's confidence map
(and the model's label map, ``labels=``) to an :class:`AlertMonitor` and publishes the returned
:class:`AlertState` as a
``diagnostic_msgs/DiagnosticStatus`` (``level`` -> status level, ``message`` -> message, every
other field -> one KeyValue).

Why a region and not a fraction: an unknown object on the road is small (a few hundred pixels
of a 256x512 frame) but compact, while ordinary hard scenes spread thin uncertainty along
every object boundary. A rule on the uncertain fraction of the image cannot tell them apart;
the size of the largest compact uncertain blob inside the driving corridor can.

Per frame
---------
* A pixel is **uncertain** when its confidence is below ``confidence_threshold`` (NaN counts as
  uncertain: a broken confidence map must not look safe). The node's default threshold is the
  model's calibrated operating point (see ``training/calibrate.py``).
* Only pixels inside the **region of interest** count: ``corridor`` (the polygon of
  :data:`CORRIDOR` in image fractions: the road ahead of a forward camera, narrowing to the
  horizon, without the bottom tenth where the ego hood is), ``drivable`` (the corridor's pixels
  that the model labels one of ``drivable_classes``, default road and sidewalk, plus the holes
  they enclose -- :func:`drivable_mask`, after a closing of the class mask with a square of side
  ``max(1, round(roi_closing * h))``: an unknown object lying on the road is a hole in the road,
  a distant building or truck at the road's end is not; a frame without ``labels`` uses the
  corridor), ``full`` (the whole image), ``lower_half`` (rows ``h // 2 .. h - 1``; for an odd
  height the middle row is inside) or ``mask`` (a PNG, non-zero = inside, resized with nearest
  neighbour to the image size when it differs). With ``roi_margin > 0`` the ROI (all but
  ``full`` and ``lower_half``) loses its pixels closer than ``round(roi_margin * h)`` pixels to
  its edge (:func:`shrink`): the road's edges and kerbs, uncertain in ordinary scenes, while an
  object lying on the road is a hole inside it. In the drivable ROI, pixels the model labels one
  of ``ignore_classes`` (default sidewalk) are then left out as well: a model unsure whether a
  zebra crossing or a paving is road or sidewalk is unsure about the ground, not about an object
  on it; they still shape the road (closing, holes). Class names are the model's
  (:meth:`AlertConfig.with_class_names`), Cityscapes trainIds for a model without names.
* Thin structures are removed: a morphological opening with a square of side
  ``max(1, round(min_width * h))`` pixels drops uncertain strips narrower than that (object
  boundaries), keeping blobs (``min_width = 0``: no opening).
* The **largest uncertain region** is the biggest 8-connected component of what remains (images
  above :data:`REGION_MAX_PIXELS` pixels are any-pooled by 2 (4, ...) first, so the component
  is chosen on the pooled mask, but its bounding box and area are measured exactly at full
  resolution). ``region_bbox`` is ``(x_min, y_min, x_max, y_max)``, inclusive.
* Its **size** is ``sqrt(region_area) / h`` (``size_reference = "height"``): the side of a square
  of the same area in image heights, so the same object gives the same size at any camera
  resolution. With ``size_reference = "horizon"`` the side is divided by the region's distance
  below the horizon instead, ``max(y_max + 1 - horizon * h, min_distance * h)`` rows: on flat
  ground that is the object's size relative to the camera height, the same near and far (a far
  object is small in the image but close to the horizon); ``min_distance`` keeps regions at the
  horizon from growing without bound. The region judged is then the one with the largest such
  size (all regions measured at full resolution), not the one with the most pixels.
* ``fraction`` (uncertain ROI pixels / ROI pixels, before the opening) is reported, not judged.
* With ``rule = "track"`` the frame is not judged by its largest region alone: every remaining
  component is a candidate, followed over frames by a :class:`~ros2_fed.region_tracker.
  RegionTracker` (persistence ``track_hits`` of ``track_window`` frames, contrast against a ring
  at least ``track_min_contrast``, approach -- area grown by ``track_growth`` over
  ``track_growth_frames`` frames with the bottom not rising -- multiplying the size by
  ``track_gain``; see that module). The strongest track's **evidence** replaces the size below,
  except that ERROR also needs the track's own size above ``error_size`` (a large or close
  region): the value judged is ``min(evidence, max(size, error_size))``.
* The **candidate** level of the frame alone is ERROR when ``size > error_size``, WARN when
  ``size > warn_size``, else OK.

State machine (the level is what gets published)
------------------------------------------------
With ``limit(WARN) = warn_size``, ``limit(ERROR) = error_size`` and
``clear_limit(L) = max(limit(L) - hysteresis, 0)``, each frame first updates, for
``k`` in (WARN, ERROR)::

    above[k] = above[k] + 1  if size >  limit(k)        else 0
    below[k] = below[k] + 1  if size <= clear_limit(k)  else 0

(so a frame over the ERROR limit also counts towards WARN), then:

1. **Rise**: if some level ``k`` above the current one has ``above[k] >= raise_frames``, the level
   becomes the highest such ``k`` (OK can jump straight to ERROR).
2. **Fall** (only when nothing rose): while ``level > OK`` and
   ``below[level] >= clear_frames``, the level drops by one. Falling from ERROR therefore lands
   on WARN unless the same frames were also ``clear_frames`` in a row below WARN's clear limit,
   in which case it goes straight to OK. A size inside the band
   ``(clear_limit(L), limit(L)]`` neither raises nor clears level ``L``: it holds (hysteresis).

``<=`` (not ``<``) and the clamp at 0 make a level clearable even when its limit is at or below
the hysteresis; with ``hysteresis = 0`` "below" is exactly "not above".

Run-time changes: assigning ``monitor.config`` takes effect on the next frame. The counters and
the level are kept (a streak counted under the old limits still counts), unless the ROI changed
(``roi``, ``roi_mask_file`` or the mask's content): then the monitor starts afresh (level OK,
counters 0), because the old evidence was about a different part of the image.
"""

from __future__ import annotations

import enum
import functools
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ros2_fed.names import CITYSCAPES_CLASSES
from ros2_fed.region_tracker import RegionTracker, TrackConfig, TrackResult, candidates
from ros2_fed.viz import confidence_map

#: The ``alerts.roi`` choices (the one list: the node's parameter and the selection import it).
ROI_CHOICES = ("corridor", "drivable", "full", "lower_half", "mask")
#: The ``alerts.size_reference`` choices: what a region's side is divided by (see the docstring).
SIZE_REFERENCES = ("height", "horizon")
#: The ``alerts.rule`` choices: judge each frame's largest region (``region``) or regions tracked
#: over frames (``track``, :mod:`ros2_fed.region_tracker`).
RULES = ("region", "track")
#: The AlertConfig fields that make its :class:`~ros2_fed.region_tracker.TrackConfig`.
TRACK_FIELDS = tuple(f"track_{name}" for name in TrackConfig.__dataclass_fields__)
#: The class names a model without its own (``class_names`` in the engine metadata) is read with:

# The default ROI: (x, y) corners in image fractions, clockwise from bottom left. The bottom
# spans the whole width (adjacent lanes) but stops at 90 % of the height: the last rows hold the
# ego hood and the image border, where a model is uncertain in every frame (on synthroad drives
# without any unknown object a corridor down to the last row alerted on 58 % of the frames).
# The top is a third of the width at 40 % of the height, about the horizon of a forward camera.
CORRIDOR: tuple[tuple[float, float], ...] = (
    (0.0, 0.9),
    (0.0, 0.75),
    (1 / 3, 0.4),
    (2 / 3, 0.4),
    (1.0, 0.75),
    (1.0, 0.9),
)

# Above this many pixels the region search runs on an any-pooled (2x, 4x, ...) mask.
REGION_MAX_PIXELS = 640 * 960


class Level(enum.IntEnum):
    """Alert levels; the values are diagnostic_msgs/DiagnosticStatus OK / WARN / ERROR."""

    OK = 0
    WARN = 1
    ERROR = 2


def _as_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _as_frames(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def load_roi_mask(path: str) -> np.ndarray:
    """A ROI mask PNG (any image OpenCV reads, as grayscale) -> HxW bool, True = inside."""
    if not path:
        raise ValueError("roi 'mask' needs roi_mask_file (a PNG, non-zero = inside the ROI)")
    if not os.path.isfile(path):
        raise ValueError(f"roi_mask_file {path!r} does not exist or is not a file")
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise ValueError(f"roi_mask_file {path!r} could not be read as an image")
    mask = image != 0
    if not mask.any():
        raise ValueError(f"roi_mask_file {path!r} has no pixel inside the ROI (all zero)")
    return mask


def _as_size(name: str, value: Any) -> float:
    """A size or width in image heights: a number in [0, 1]."""
    return _as_fraction(name, value)


@dataclass(frozen=True)
class AlertConfig:
    """Alert settings; field names equal the node's ``alerts.*`` parameters (without prefix).

    Validated on construction (``ValueError`` naming the offending field); with
    ``roi == "mask"`` the mask file is read here, so an unreadable file fails at once.
    The defaults are the ones selected on synthroad selection drives (docs/alerts.md);
    ``confidence_threshold``'s default is only the fallback for a model without calibration.
    """

    confidence_threshold: float = 0.5
    warn_size: float = 0.35
    error_size: float = 0.7
    hysteresis: float = 0.01
    min_width: float = 0.02
    raise_frames: int = 3
    clear_frames: int = 5
    roi: str = "drivable"
    roi_mask_file: str = ""
    drivable_classes: str = "road,sidewalk"
    ignore_classes: str = "sidewalk"
    roi_closing: float = 0.06
    roi_margin: float = 0.012
    size_reference: str = "horizon"
    horizon: float = 0.4
    min_distance: float = 0.2
    rule: str = "region"
    # the tracker's defaults are TrackConfig's (one definition)
    track_hits: int = TrackConfig.hits
    track_window: int = TrackConfig.window
    track_min_contrast: float = TrackConfig.min_contrast
    track_growth: float = TrackConfig.growth
    track_growth_frames: int = TrackConfig.growth_frames
    track_gain: float = TrackConfig.gain
    track_match_distance: float = TrackConfig.match_distance
    # Loaded from roi_mask_file when roi == "mask" (HxW bool), else None.
    roi_mask: Optional[np.ndarray] = field(default=None, init=False, repr=False, compare=False)
    # The model's class names (None: Cityscapes trainIds, CITYSCAPES_CLASSES); set by
    # with_class_names.
    class_names: Optional[tuple[str, ...]] = field(default=None, init=False, compare=False)
    # drivable_classes resolved to class ids (sorted, unique).
    drivable_ids: tuple[int, ...] = field(default=(), init=False)
    # ignore_classes resolved to class ids (sorted, unique; empty: none ignored).
    ignore_ids: tuple[int, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self,
            "confidence_threshold",
            _as_fraction("confidence_threshold", self.confidence_threshold),
        )
        for name in ("warn_size", "error_size", "hysteresis", "min_width"):
            set_(self, name, _as_size(name, getattr(self, name)))
        if self.warn_size > self.error_size:
            raise ValueError(
                f"warn_size ({self.warn_size}) must not exceed error_size ({self.error_size})"
            )
        set_(self, "raise_frames", _as_frames("raise_frames", self.raise_frames))
        set_(self, "clear_frames", _as_frames("clear_frames", self.clear_frames))
        if not isinstance(self.roi, str) or self.roi not in ROI_CHOICES:
            raise ValueError(f"roi must be one of {', '.join(ROI_CHOICES)}, got {self.roi!r}")
        if not isinstance(self.roi_mask_file, str):
            raise ValueError(f"roi_mask_file must be a path string, got {self.roi_mask_file!r}")
        if self.roi == "mask":
            mask = load_roi_mask(self.roi_mask_file)
            mask.setflags(write=False)
            set_(self, "roi_mask", mask)
        set_(self, "roi_closing", _as_size("roi_closing", self.roi_closing))
        set_(self, "roi_margin", _as_size("roi_margin", self.roi_margin))
        if not isinstance(self.size_reference, str) or self.size_reference not in SIZE_REFERENCES:
            raise ValueError(
                f"size_reference must be one of {', '.join(SIZE_REFERENCES)}, got "
                f"{self.size_reference!r}"
            )
        set_(self, "horizon", _as_fraction("horizon", self.horizon))
        set_(self, "min_distance", _as_fraction("min_distance", self.min_distance))
        if self.min_distance <= 0:
            raise ValueError(
                "min_distance must be above 0 (a region at the horizon would be infinitely large)"
            )
        if not isinstance(self.drivable_classes, str):
            raise ValueError(
                "drivable_classes must be a string of class names or ids, got "
                f"{self.drivable_classes!r}"
            )
        if not isinstance(self.ignore_classes, str):
            raise ValueError(
                "ignore_classes must be a string of class names or ids, got "
                f"{self.ignore_classes!r}"
            )
        if not isinstance(self.rule, str) or self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        self.track_config  # validates the track_* fields (ValueError naming the field)
        set_(self, "drivable_ids", self._drivable_ids(self.class_names))
        set_(self, "ignore_ids", self._ignore_ids(self.class_names))

    @property
    def track_config(self) -> TrackConfig:
        """The ``track_*`` fields as the region tracker's settings."""
        return TrackConfig(**{name[len("track_") :]: getattr(self, name) for name in TRACK_FIELDS})

    def _drivable_ids(self, class_names: Optional[tuple[str, ...]]) -> tuple[int, ...]:
        """drivable_classes as ids; an unknown class is an error only when the drivable ROI is
        used."""
        try:
            return drivable_class_ids(self.drivable_classes, class_names)
        except ValueError:
            if self.roi == "drivable":
                raise
            return ()

    def _ignore_ids(self, class_names: Optional[tuple[str, ...]]) -> tuple[int, ...]:
        """ignore_classes as ids (may be empty); like drivable_classes, only the drivable ROI
        reads labels, so only there is an unknown class an error."""
        if not self.ignore_classes.strip():
            return ()
        try:
            return drivable_class_ids(self.ignore_classes, class_names, "ignore_classes")
        except ValueError:
            if self.roi == "drivable":
                raise
            return ()

    def with_class_names(self, class_names: Optional[Any]) -> "AlertConfig":
        """This config for a model with these class names (None or empty: Cityscapes trainIds)."""
        names = tuple(str(n) for n in class_names) if class_names else None
        ids, ignored = self._drivable_ids(names), self._ignore_ids(names)
        out = replace(self)
        object.__setattr__(out, "class_names", names)
        object.__setattr__(out, "drivable_ids", ids)
        object.__setattr__(out, "ignore_ids", ignored)
        return out

    def limit(self, level: Level) -> float:
        """The region size a frame must exceed to count towards ``level``."""
        return self.error_size if level == Level.ERROR else self.warn_size

    def clear_limit(self, level: Level) -> float:
        """The region size a frame must be at or below to count towards clearing ``level``."""
        return max(self.limit(level) - self.hysteresis, 0.0)

    def same_roi(self, other: "AlertConfig") -> bool:
        if self.roi != other.roi or self.roi_margin != other.roi_margin:
            return False
        if self.roi == "drivable":
            return (
                self.drivable_ids == other.drivable_ids
                and self.roi_closing == other.roi_closing
                and self.ignore_ids == other.ignore_ids
            )
        if self.roi != "mask":
            return True
        return self.roi_mask_file == other.roi_mask_file and np.array_equal(
            self.roi_mask, other.roi_mask
        )


def drivable_class_ids(
    spec: str, class_names: Optional[Sequence[str]] = None, name: str = "drivable_classes"
) -> tuple[int, ...]:
    """``"road,sidewalk"`` (names, case-insensitive, or integer ids) -> sorted unique class ids.

    Names are looked up in ``class_names`` (the model's), or in :data:`CITYSCAPES_CLASSES` when
    the model has none. Raises ValueError for an unknown name, an id outside 0..254 or an empty
    list.
    """
    names = [str(n).strip().lower() for n in (class_names or CITYSCAPES_CLASSES)]
    ids = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item.isdigit():
            value = int(item)
            if value > 254:
                raise ValueError(f"{name}: class id {value} is outside 0..254")
            ids.add(value)
        elif item.lower() in names:
            ids.add(names.index(item.lower()))
        else:
            raise ValueError(
                f"{name}: {item!r} is not one of the model's classes ({', '.join(names)})"
            )
    if not ids:
        raise ValueError(f"{name} must name at least one class, got {spec!r}")
    return tuple(sorted(ids))


def drivable_mask(
    labels: np.ndarray, class_ids: Sequence[int], closing_side: int = 1
) -> np.ndarray:
    """uint8 0/255: pixels labelled one of ``class_ids`` plus the holes they enclose.

    The class mask is first closed with a ``closing_side`` square (1: not at all), so that an
    object whose outline almost closes (a gap of a few pixels to the next lane) still counts as
    enclosed; a hole is a 4-connected group of other pixels that does not touch the image border.
    An unknown object lying on the road is such a hole; a car at the far end of the road, where
    the road meets the facades, is not.
    """
    lut = np.zeros(256, np.uint8)
    lut[list(class_ids)] = 255
    drivable = cv2.LUT(np.ascontiguousarray(labels, dtype=np.uint8), lut)
    if closing_side > 1 and min(drivable.shape) >= closing_side:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (closing_side, closing_side))
        drivable = cv2.morphologyEx(drivable, cv2.MORPH_CLOSE, kernel)
    outside = cv2.copyMakeBorder(
        cv2.bitwise_not(drivable), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255
    )
    cv2.floodFill(outside, None, (0, 0), 0)  # what is left of the non-drivable pixels: the holes
    return cv2.bitwise_or(drivable, outside[1:-1, 1:-1])


@functools.lru_cache(maxsize=16)
def _keep_lut(ignore_ids: tuple[int, ...]) -> np.ndarray:
    """uint8 lookup table: 0 for the ignored class ids, 255 for every other label (built once per
    set of ids, not per frame)."""
    lut = np.full(256, 255, np.uint8)
    lut[list(ignore_ids)] = 0
    lut.setflags(write=False)
    return lut


def margin_pixels(margin: float, height: int) -> int:
    """``roi_margin`` (image heights) in pixels for an image ``height`` rows high."""
    return round(margin * height)


def shrink(mask255: np.ndarray, margin: int) -> np.ndarray:
    """``mask255`` (uint8 0/255) without its pixels closer than ``margin`` pixels (Chebyshev) to
    its edge: an erosion with a ``2 * margin + 1`` square. Pixels outside the image do not count as
    outside the mask (the corridor's bottom rows stay)."""
    if margin <= 0:
        return mask255
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode(mask255, kernel, borderType=cv2.BORDER_REPLICATE)


@dataclass
class AlertState:
    """One frame's alert result. Every field but ``level`` and ``message`` is a plain scalar,
    string or tuple (the node turns each into a diagnostics KeyValue)."""

    level: Level
    message: str
    region_size: float  # sqrt(largest region area) / image height, this frame
    fraction: float  # uncertain ROI pixels / ROI pixels, this frame (informative)
    confidence_threshold: float  # the threshold this frame was judged with
    candidate: str  # level name this frame alone supports (OK/WARN/ERROR)
    consecutive: int  # frames in a row (ending here) with this candidate level
    clearing: int  # frames in a row at/below the current level's clear limit (0 at OK)
    region_bbox: Optional[
        tuple[int, int, int, int]
    ]  # (x_min, y_min, x_max, y_max) inclusive, or None
    region_area: int  # pixels in that region (full resolution, after the opening)
    uncertain_pixels: int
    roi: str
    roi_pixels: int
    stamp: str  # frame stamp as "sec.nanosec" (nanosec 9 digits)
    rule: str = "region"  # the rule that judged the frame (alerts.rule)
    evidence: float = 0.0  # what the state machine was fed: region_size, or the track's evidence
    track: int = -1  # rule track: the judged track's id (-1: none counts)
    track_hits: int = 0  # rule track: frames of the last track_window the judged track was seen


def corridor_mask(
    shape: tuple[int, int], corners: tuple[tuple[float, float], ...] = CORRIDOR
) -> np.ndarray:
    """uint8 0/255 mask of the polygon ``corners`` (image fractions) at ``shape`` = (h, w)."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    points = np.array([[round(x * w), round(y * h)] for x, y in corners], np.int32)
    cv2.fillPoly(mask, [points], 255)
    return mask


def stamp_to_str(stamp: Any) -> str:
    """builtin_interfaces/Time-like (``sec``, ``nanosec``), ``(sec, nanosec)``, seconds or None ->
    "sec.nanosec"."""
    if stamp is None:
        return ""
    if isinstance(stamp, str):
        return stamp
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    elif hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        sec, nanosec = divmod(int(stamp.nanoseconds), 1_000_000_000)
    elif isinstance(stamp, (tuple, list)) and len(stamp) == 2:
        sec, nanosec = int(stamp[0]), int(stamp[1])
    elif isinstance(stamp, (int, float, np.integer, np.floating)) and not isinstance(stamp, bool):
        total = int(round(float(stamp) * 1e9))
        sec, nanosec = divmod(total, 1_000_000_000)
    else:
        raise TypeError(
            f"unsupported stamp {stamp!r}: expected .sec/.nanosec, (sec, nanosec) or seconds"
        )
    sec, nanosec = sec + nanosec // 1_000_000_000, nanosec % 1_000_000_000
    return f"{sec}.{nanosec:09d}"


def _component_areas(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixels per label 0..n-1 (int64).

    A histogram of 16-bit labels (OpenCV) is about 5x faster than ``np.bincount``, which first
    widens the int32 labels to int64; its float32 bins count exactly below 2**24 pixels.
    """
    if n <= 1 << 16 and labels.size < 1 << 24:
        hist = cv2.calcHist([labels.astype(np.uint16)], [0], None, [n], [0, n])
        return hist.ravel().astype(np.int64)
    return np.bincount(labels.ravel(), minlength=n)


def _largest_component(
    m: np.ndarray,
) -> Optional[tuple[np.ndarray, int, tuple[int, int, int, int], int]]:
    """(labels, id, inclusive bbox, area) of the largest 8-connected component of a uint8 mask.

    Labels only, then areas by a label histogram and the bbox from the one component: about 3x
    faster than
    connectedComponentsWithStats, whose per-component statistics dominate its cost.
    """
    n, labels = cv2.connectedComponents(m, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return None
    areas = _component_areas(labels, n)
    areas[0] = 0
    i = int(np.argmax(areas))  # ties: the lowest label, i.e. the first in raster order
    component = labels == i
    rows = np.flatnonzero(component.any(axis=1))
    cols = np.flatnonzero(component.any(axis=0))
    return labels, i, (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), int(areas[i])


def largest_region(
    mask: np.ndarray, max_pixels: int = REGION_MAX_PIXELS
) -> tuple[Optional[tuple[int, int, int, int]], int]:
    """Largest 8-connected non-zero region of ``mask`` (HxW bool/uint8): (bbox, area) or (None, 0).

    ``bbox = (x_min, y_min, x_max, y_max)`` inclusive. Masks over ``max_pixels`` are any-pooled by
    a power of two first; the region is picked there and then measured exactly at full size.
    """
    m = np.ascontiguousarray(mask)
    if m.dtype == bool:
        m = m.view(np.uint8)
    elif m.dtype != np.uint8:
        m = (m != 0).view(np.uint8)
    h, w = m.shape
    if h == 0 or w == 0:
        return None, 0
    f = 1
    while -(-h // f) * -(-w // f) > max_pixels and f < min(h, w):
        f *= 2
    if f == 1:
        found = _largest_component(m)
        return (None, 0) if found is None else (found[2], found[3])

    # Any-pool by f: 0/255 mask, zero-padded to a multiple of f, block-averaged (INTER_AREA with an
    # integer factor is an exact block mean; any non-zero pixel leaves a non-zero mean).
    hp, wp = -(-h // f) * f, -(-w // f) * f
    m255 = cv2.compare(m, 0, cv2.CMP_NE)
    if (hp, wp) != (h, w):
        m255 = cv2.copyMakeBorder(m255, 0, hp - h, 0, wp - w, cv2.BORDER_CONSTANT, value=0)
    small = cv2.resize(m255, (wp // f, hp // f), interpolation=cv2.INTER_AREA)
    found = _largest_component(small)
    if found is None:
        return None, 0
    labels, i, (x, y, xe, ye), _ = found
    bw, bh = xe - x + 1, ye - y + 1
    component = (labels[y : y + bh, x : x + bw] == i).view(np.uint8)
    up = cv2.resize(component, (bw * f, bh * f), interpolation=cv2.INTER_NEAREST)
    y0, x0 = y * f, x * f
    y1, x1 = min((y + bh) * f, h), min((x + bw) * f, w)
    exact = np.logical_and(up[: y1 - y0, : x1 - x0], m[y0:y1, x0:x1])
    area = int(np.count_nonzero(exact))
    if area == 0:  # cannot happen (a pooled pixel is non-zero only over a non-zero pixel)
        return None, 0
    rows = np.flatnonzero(exact.any(axis=1))
    cols = np.flatnonzero(exact.any(axis=0))
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1])), area


def _largest_below_horizon(
    mask: np.ndarray, height: int, row0: int, horizon: float, min_distance: float
) -> tuple[Optional[tuple[int, int, int, int]], int, float]:
    """The 8-connected region of ``mask`` (rows ``row0..``) with the largest perspective size
    ``sqrt(area) / max(bottom row + 1 - horizon * height, min_distance * height)``."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return None, 0, 0.0
    stats = stats[1:].astype(np.float64)
    bottom = row0 + stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT]
    distance = np.maximum(bottom - horizon * height, min_distance * height)
    sizes = np.sqrt(stats[:, cv2.CC_STAT_AREA]) / distance
    i = int(np.argmax(sizes))
    x, y, bw, bh, area = (int(v) for v in stats[i])
    return (x, y + row0, x + bw - 1, y + row0 + bh - 1), area, float(sizes[i])


def track_value(evidence: float, size: float, error_size: float) -> float:
    """What rule ``track`` feeds the state machine: the strongest track's ``evidence``, but
    above ``error_size`` (ERROR) only when the track's own ``size`` is (a large or close region),
    however strong a smaller track's evidence."""
    return min(evidence, max(size, error_size))


def label_map(labels: Optional[np.ndarray], shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The model's class ids as HxW uint8 at ``shape`` (nearest neighbour), or None."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be HxW class ids, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        labels = np.clip(labels, 0, 255).astype(np.uint8)
    if labels.shape != shape:
        labels = cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return labels


class AlertMonitor:
    """The alert state machine (see the module docstring for the exact rules).

    ``update(confidence, stamp)`` once per frame; ``config`` may be replaced at any time.
    """

    def __init__(self, config: Optional[AlertConfig] = None) -> None:
        self._config = config if config is not None else AlertConfig()
        self.reset()

    @property
    def config(self) -> AlertConfig:
        return self._config

    @config.setter
    def config(self, config: AlertConfig) -> None:
        if not isinstance(config, AlertConfig):
            raise TypeError(f"config must be an AlertConfig, got {type(config).__name__}")
        roi_changed = not config.same_roi(self._config)
        self._config = config
        if roi_changed:
            self.reset()
        else:
            self._tracker.config = config.track_config

    @property
    def level(self) -> Level:
        return self._level

    def reset(self) -> None:
        """Back to OK with all counters at 0 (and the ROI cache dropped)."""
        self._level = Level.OK
        self._above = {Level.WARN: 0, Level.ERROR: 0}
        self._below = {Level.WARN: 0, Level.ERROR: 0}
        self._candidate: Optional[Level] = None
        self._streak = 0
        self._roi_cache: Optional[tuple[tuple[int, int], Optional[np.ndarray], int]] = None
        self._tracker = RegionTracker(self._config.track_config)

    # -- per frame ------------------------------------------------------------------------

    def _roi_mask(self, shape: tuple[int, int]) -> tuple[Optional[np.ndarray], int]:
        """(uint8 0/255 mask or None for the row-slice ROIs, ROI pixel count) for this image
        size."""
        cfg = self._config
        h, w = shape
        if cfg.roi == "full":
            return None, h * w
        if cfg.roi == "lower_half":
            return None, (h - h // 2) * w
        cache = self._roi_cache
        if cache is None or cache[0] != shape:
            if cfg.roi in ("corridor", "drivable"):
                mask255 = corridor_mask(shape)
            else:
                mask = cfg.roi_mask
                assert mask is not None
                if mask.shape != shape:
                    mask = cv2.resize(
                        mask.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
                    ).astype(bool)
                mask255 = np.where(mask, np.uint8(255), np.uint8(0))
            if cfg.roi != "drivable":  # the drivable ROI is shrunk per frame, after the labels
                mask255 = shrink(mask255, margin_pixels(cfg.roi_margin, h))
            cache = (shape, mask255, int(np.count_nonzero(mask255)))
            self._roi_cache = cache
        return cache[1], cache[2]

    def _uncertain(
        self, conf: np.ndarray, labels: Optional[np.ndarray]
    ) -> tuple[Optional[np.ndarray], int, int, int]:
        """(0/255 uncertain ROI mask of rows row0.., its pixel count, ROI pixels, row0)."""
        cfg = self._config
        h, w = conf.shape
        mask255, roi_pixels = self._roi_mask((h, w))
        if labels is not None:  # roi == "drivable": the corridor's drivable pixels and their holes
            side = max(1, round(cfg.roi_closing * h))
            mask255 = cv2.bitwise_and(mask255, drivable_mask(labels, cfg.drivable_ids, side))
            mask255 = shrink(mask255, margin_pixels(cfg.roi_margin, h))
            if cfg.ignore_ids:  # after the margin: ignored classes still make the road's shape
                kept = cv2.LUT(np.ascontiguousarray(labels), _keep_lut(cfg.ignore_ids))
                mask255 = cv2.bitwise_and(mask255, kept)
            roi_pixels = int(cv2.countNonZero(mask255))
        row0 = h // 2 if cfg.roi == "lower_half" else 0
        view = np.ascontiguousarray(conf[row0:])
        if not view.size:
            return None, 0, roi_pixels, row0
        # 255 where NOT (confidence >= threshold): below the threshold, or NaN.
        uncertain = cv2.bitwise_not(cv2.compare(view, cfg.confidence_threshold, cv2.CMP_GE))
        if mask255 is not None:
            uncertain = cv2.bitwise_and(uncertain, mask255)
        return uncertain, int(cv2.countNonZero(uncertain)), roi_pixels, row0

    def _opened(self, uncertain: np.ndarray, height: int) -> np.ndarray:
        """``uncertain`` without strips thinner than ``min_width``."""
        side = max(1, round(self._config.min_width * height))
        if side > 1 and min(uncertain.shape) >= side:
            kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
            uncertain = cv2.morphologyEx(uncertain, cv2.MORPH_OPEN, kernel)
        return uncertain

    def _largest_blob(
        self, uncertain: np.ndarray, height: int, row0: int
    ) -> tuple[Optional[tuple[int, int, int, int]], int, float]:
        """The uncertain region judged (after removing strips thinner than ``min_width``):
        (bbox in image rows, area, size)."""
        cfg = self._config
        uncertain = self._opened(uncertain, height)
        if cfg.size_reference == "horizon":
            return _largest_below_horizon(uncertain, height, row0, cfg.horizon, cfg.min_distance)
        bbox, area = largest_region(uncertain)
        if bbox is not None and row0:
            bbox = (bbox[0], bbox[1] + row0, bbox[2], bbox[3] + row0)
        return bbox, area, (math.sqrt(area) / height if height else 0.0)

    def update(
        self, confidence: np.ndarray, stamp: Any = None, labels: Optional[np.ndarray] = None
    ) -> AlertState:
        """Judge one HxW confidence map (values in [0, 1]); returns the state after this frame.

        ``labels`` (the model's per-pixel class ids, HxW integers; resized with nearest neighbour
        when its size differs) is used by ``roi == "drivable"`` only; without it that ROI is the
        corridor (``AlertState.roi`` then says ``corridor``).
        """
        cfg = self._config
        conf = confidence_map(confidence)
        h, w = conf.shape
        labels = label_map(labels, (h, w)) if cfg.roi == "drivable" else None
        roi = cfg.roi if cfg.roi != "drivable" or labels is not None else "corridor"
        uncertain, count, roi_pixels, row0 = self._uncertain(conf, labels)
        fraction = count / roi_pixels if roi_pixels else 0.0
        bbox: Optional[tuple[int, int, int, int]] = None
        area = 0
        size = 0.0
        track, hits = -1, 0
        if cfg.rule == "track":
            judged = self._tracked(conf, uncertain if count else None, h, row0)
            evidence = judged.evidence
            if judged.track is not None:
                last = judged.track.last
                bbox, area, size = last.bbox, last.area, last.size
                track, hits = judged.track.id, judged.track.hits(cfg.track_window)
            evidence = track_value(evidence, size, cfg.error_size)
        else:
            if count:
                bbox, area, size = self._largest_blob(uncertain, h, row0)
            evidence = size
        level, candidate, clearing = self._step(evidence)
        return AlertState(
            level=level,
            message=self._message(level, candidate, evidence, clearing, bbox, area, roi, track),
            region_size=float(size),
            fraction=float(fraction),
            confidence_threshold=cfg.confidence_threshold,
            candidate=candidate.name,
            consecutive=self._streak,
            clearing=clearing,
            region_bbox=bbox,
            region_area=area,
            uncertain_pixels=count,
            roi=roi,
            roi_pixels=int(roi_pixels),
            stamp=stamp_to_str(stamp),
            rule=cfg.rule,
            evidence=float(evidence),
            track=track,
            track_hits=hits,
        )

    def _tracked(
        self, conf: np.ndarray, uncertain: Optional[np.ndarray], height: int, row0: int
    ) -> TrackResult:
        """Rule ``track``: this frame's candidate regions into the tracker (none when nothing is
        uncertain: the tracks still age); the strongest track."""
        cfg = self._config
        found = []
        if uncertain is not None:
            opened = self._opened(uncertain, height)
            view = np.array(conf[row0:], np.float32)  # a copy: NaN patched
            view[np.isnan(view)] = 0.0  # NaN confidence: fully uncertain
            horizon = cfg.horizon if cfg.size_reference == "horizon" else None
            found = candidates(opened, view, height, row0, horizon, cfg.min_distance)
        return self._tracker.update(found, height)

    def step(self, size: float) -> Level:
        """Advance the state machine by one frame whose region size is ``size`` (what ``update``
        does after measuring the frame); returns the level. For replaying recorded sizes."""
        return self._step(size)[0]

    def _step(self, size: float) -> tuple[Level, Level, int]:
        """Advance the state machine by one frame: (level, this frame's candidate, clearing
        count)."""
        cfg = self._config
        for k in (Level.WARN, Level.ERROR):
            self._above[k] = self._above[k] + 1 if size > cfg.limit(k) else 0
            self._below[k] = self._below[k] + 1 if size <= cfg.clear_limit(k) else 0
        candidate = (
            Level.ERROR
            if size > cfg.error_size
            else Level.WARN
            if size > cfg.warn_size
            else Level.OK
        )
        self._streak = self._streak + 1 if candidate == self._candidate else 1
        self._candidate = candidate
        risen = [
            k
            for k in (Level.ERROR, Level.WARN)
            if k > self._level and self._above[k] >= cfg.raise_frames
        ]
        if risen:
            self._level = risen[0]
        else:
            while self._level > Level.OK and self._below[self._level] >= cfg.clear_frames:
                self._level = Level(self._level - 1)
        clearing = self._below[self._level] if self._level > Level.OK else 0
        return self._level, candidate, clearing

    def _message(
        self,
        level: Level,
        candidate: Level,
        size: float,
        clearing: int,
        bbox: Optional[tuple[int, int, int, int]],
        area: int,
        roi: str,
        track: int = -1,
    ) -> str:
        cfg = self._config
        unit = (
            "the image height"
            if cfg.size_reference == "height"
            else "its distance below the horizon"
        )
        if cfg.rule == "track":
            what = f"tracked uncertain region {track}" if track >= 0 else "no tracked region"
            text = (
                f"{level.name}: {what} in the {roi} ROI, evidence {100 * size:.1f}% of {unit} "
                f"(confidence < {cfg.confidence_threshold:.2f})"
            )
        else:
            text = (
                f"{level.name}: largest uncertain region in the {roi} ROI {100 * size:.1f}% of "
                f"{unit} (confidence < {cfg.confidence_threshold:.2f})"
            )
        if level > Level.OK and self._above[level]:
            n = self._above[level]
            text += f" for {n} frame{'s' if n != 1 else ''}"
        if candidate > level:
            text += f"; {candidate.name} after {self._above[candidate]}/{cfg.raise_frames} frames"
        if level > Level.OK and clearing:
            limit = 100 * cfg.clear_limit(level)
            text += f"; clearing {clearing}/{cfg.clear_frames} frames at or below {limit:.1f}%"
        if bbox is not None and area:
            text += f"; region bbox=({bbox[0]},{bbox[1]},{bbox[2]},{bbox[3]}) area={area} px"
        return text
