"""How early does the alert fire? First-alert delay per object appearance, and recall by size.

A vehicle needs the warning while the unknown object is still far away, so frame recall alone
(``alert_metrics``) is not enough: a rule that alerts only on the last, largest frames of every
object can have a fair recall and still warn too late. Pure python (numpy + OpenCV).

Definitions (all sizes are OOD pixels of the drive's ground truth, 1 = OOD):

* Pixel limits are given at :data:`REFERENCE_SHAPE` (256x512) and scaled with the image area:
  :func:`scaled_pixels` (100 px at 256x512 is 400 px at 512x1024).
* An **appearance** is a maximal run of frames with at least one OOD pixel (the ground truth has
  no object ids: two objects visible together are one appearance; an object that leaves and comes
  back is a new one; a frame without OOD ground truth ends a run). Its **onset** is the first frame
  of the run whose largest 8-connected OOD component has >= ``scaled_pixels(ONSET_PIXELS)``
  pixels; a run that never gets that large is not an appearance (too small to demand an alert).
* Its **first alert** is the first frame at/after the onset, within the run, at WARN or above;
  ``delay_frames`` = its frame index minus the onset's, ``delay_s`` = the difference of their
  stamps. Without one the appearance was **never alerted** while on the road.
* At the onset the object's ``pixels`` (largest component) and ``rows_below_horizon`` =
  ``bottom row + 1 - horizon * height`` (the alert rule's distance below the horizon,
  ``AlertConfig.horizon``, before its ``min_distance`` clamp) are recorded.
* :func:`delay_summary`: median and p90 over the alerted appearances, and the same with every
  never-alerted appearance counted as an infinite delay (so a rule that never alerts cannot look
  good; written as ``"never"`` in JSON). Median: the middle value, the mean of the two middle ones
  for an even count. p90: nearest rank, the ``ceil(0.9 n)``-th smallest value.
* **Recall by size** (:data:`SIZE_BINS`, lower edge inclusive: 300 px is in 300-1,000):
  - the alert (:func:`recall_by_size`): the frames with the largest object >= the scaled 100 px,
    the first ``raise_frames`` of each run of such frames excused (at 256x512 exactly the frames
    ``alert_metrics``' headline recall counts; that one keeps 100 px at every size), binned by
    their largest object; recall = frames at WARN or above / frames;
  - the pixel detector (:func:`component_recall_by_size`): every ground-truth OOD component of
    >= the scaled 100 px in every frame; it is **detected** when at least
    :data:`DETECTED_FRACTION` of its pixels have a confidence below the node's threshold (NaN
    counts as below, as in the alert rule).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ros2_fed.alerts import AlertConfig
from ros2_fed.eval.alert_metrics import MIN_OBJECT_PIXELS, WARN, counted_frames, frame_presence

#: The image size the pixel limits are stated at (height, width).
REFERENCE_SHAPE = (256, 512)
#: An object "is there" once its largest component has this many pixels (at REFERENCE_SHAPE).
ONSET_PIXELS = MIN_OBJECT_PIXELS
#: Lower edges of the size bins at REFERENCE_SHAPE; a bin holds [edge, next edge), the last one
#: everything from its edge up.
SIZE_BINS = (100, 300, 1000, 3000)
#: A ground-truth component counts as found by the pixel detector when this share of its pixels
#: is below the confidence threshold.
DETECTED_FRACTION = 0.5
#: How never-alerted appearances' infinite delays are written in JSON.
NEVER = "never"


def scaled_pixels(pixels: float, shape: Sequence[int]) -> int:
    """``pixels`` at 256x512 for an image of ``shape`` (h, w, ...): scaled by the area, rounded."""
    h, w = int(shape[0]), int(shape[1])
    return int(round(pixels * h * w / (REFERENCE_SHAPE[0] * REFERENCE_SHAPE[1])))


def size_bin_edges(shape: Sequence[int]) -> list[int]:
    """:data:`SIZE_BINS` scaled to ``shape``."""
    return [scaled_pixels(edge, shape) for edge in SIZE_BINS]


def size_bin(pixels: int, edges: Sequence[int]) -> Optional[int]:
    """Index of the bin ``pixels`` falls in (lower edge inclusive), None below the first edge."""
    index = None
    for i, edge in enumerate(edges):
        if pixels >= edge:
            index = i
    return index


def size_bin_names() -> list[str]:
    """The bins' names at 256x512: ``100-300``, ``300-1000``, ``1000-3000``, ``>=3000``."""
    names = [f"{lo}-{hi}" for lo, hi in zip(SIZE_BINS, SIZE_BINS[1:])]
    return names + [f">={SIZE_BINS[-1]}"]


@dataclass(frozen=True)
class FrameObjects:
    """One frame's OOD ground truth as the early-warning metrics need it (:func:`frame_objects`).

    ``components``: (pixels, detected) of every OOD component of >= the scaled first bin edge;
    ``detected`` is None when no confidence map was given.
    """

    shape: tuple[int, int]
    ood_pixels: int
    object_pixels: int  # the largest 8-connected OOD component (0: none)
    object_bottom: int  # its last row (-1: none)
    components: tuple[tuple[int, Optional[bool]], ...] = ()


def frame_objects(
    ood_mask: np.ndarray,
    confidence: Optional[np.ndarray] = None,
    threshold: Optional[float] = None,
) -> FrameObjects:
    """The OOD components of one HxW ground-truth mask (1 = OOD, anything else not) and, with
    ``confidence`` (HxW, same size) and ``threshold``, whether the pixel detector finds each."""
    mask = (np.asarray(ood_mask) == 1).astype(np.uint8)
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    total = int(mask.sum())
    if not total:
        return FrameObjects(shape, 0, 0, -1, ())
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    big = int(np.argmax(areas))
    bottom = int(stats[1 + big, cv2.CC_STAT_TOP] + stats[1 + big, cv2.CC_STAT_HEIGHT] - 1)
    smallest = scaled_pixels(SIZE_BINS[0], shape)
    below = None
    if confidence is not None:
        if threshold is None:
            raise ValueError("frame_objects: a confidence map needs its threshold")
        conf = np.asarray(confidence, np.float32)
        if conf.shape != mask.shape:
            raise ValueError(f"confidence {conf.shape} and OOD mask {mask.shape} differ in size")
        below = ~(conf >= float(threshold))  # NaN counts as uncertain
    components: list[tuple[int, Optional[bool]]] = []
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < smallest:
            continue
        detected = None
        if below is not None:
            x, y = stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP]
            bw, bh = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
            inside = labels[y : y + bh, x : x + bw] == i
            hits = int(np.count_nonzero(below[y : y + bh, x : x + bw] & inside))
            detected = hits >= DETECTED_FRACTION * area
        components.append((area, detected))
    return FrameObjects(shape, total, int(areas[big]), bottom, tuple(components))


@dataclass(frozen=True)
class Appearance:
    """One object appearance (module docstring); frame numbers are the caller's indices."""

    start: int  # first frame of the run with OOD pixels
    end: int  # its last frame
    onset: int  # first frame with the object >= the scaled 100 px
    alert: Optional[int]  # first frame at WARN+ at/after the onset within the run; None: never
    delay_frames: Optional[int]
    delay_s: Optional[float]
    pixels: int  # the object's largest component at the onset
    rows_below_horizon: float  # at the onset
    frames_visible: int  # onset .. end, inclusive
    source: str = ""  # which drive / bag (set when pooling)

    @property
    def alerted(self) -> bool:
        return self.alert is not None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "alerted": self.alerted}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "Appearance":
        return Appearance(**{k: v for k, v in data.items() if k != "alerted"})


def object_runs(frames: Sequence[Optional[FrameObjects]]) -> list[tuple[int, int]]:
    """(first, last) frame of every maximal run of frames with OOD pixels."""
    runs: list[tuple[int, int]] = []
    for i, f in enumerate(frames):
        present = f is not None and f.ood_pixels > 0
        if present and runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        elif present:
            runs.append((i, i))
    return runs


def appearance_delays(
    levels: Sequence[Optional[int]],
    frames: Sequence[Optional[FrameObjects]],
    stamps_s: Sequence[float],
    horizon: float = AlertConfig().horizon,
    indices: Optional[Sequence[int]] = None,
    source: str = "",
) -> list[Appearance]:
    """Every object appearance of one drive with its first-alert delay.

    ``levels``: the published alert level per frame (0 OK, 1 WARN, 2 ERROR; None = no record,
    not alerted); ``frames``: :func:`frame_objects` per frame (None = no OOD ground truth);
    ``stamps_s``: each frame's stamp in seconds (e.g. ``i / fps``); ``horizon``: the alert
    config's horizon fraction; ``indices``: the frame numbers to report (default 0..n-1; with
    dropped frames the bag's indices, so delays count the frames that passed).
    """
    n = len(levels)
    if not (len(frames) == len(stamps_s) == n):
        raise ValueError(f"{n} levels, {len(frames)} frames and {len(stamps_s)} stamps")
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"{len(idx)} indices for {n} frames")
    out: list[Appearance] = []
    for start, end in object_runs(frames):
        onset = next(
            (
                k
                for k in range(start, end + 1)
                if frames[k].object_pixels >= scaled_pixels(ONSET_PIXELS, frames[k].shape)
            ),
            None,
        )
        if onset is None:
            continue
        alert = next(
            (k for k in range(onset, end + 1) if levels[k] is not None and int(levels[k]) >= WARN),
            None,
        )
        fo = frames[onset]
        out.append(
            Appearance(
                start=idx[start],
                end=idx[end],
                onset=idx[onset],
                alert=None if alert is None else idx[alert],
                delay_frames=None if alert is None else idx[alert] - idx[onset],
                delay_s=None if alert is None else float(stamps_s[alert] - stamps_s[onset]),
                pixels=fo.object_pixels,
                rows_below_horizon=float(fo.object_bottom + 1 - horizon * fo.shape[0]),
                frames_visible=idx[end] - idx[onset] + 1,
                source=source,
            )
        )
    return out


def median(values: Sequence[float]) -> Optional[float]:
    """The middle value (mean of the two middle ones for an even count); None when empty.
    Infinite values sort last."""
    v = sorted(values)
    if not v:
        return None
    m = len(v) // 2
    if len(v) % 2:
        return float(v[m])
    if math.isinf(v[m]):
        return math.inf
    return (v[m - 1] + v[m]) / 2.0


def p90(values: Sequence[float]) -> Optional[float]:
    """Nearest-rank 90th percentile: the ``ceil(0.9 n)``-th smallest value; None when empty."""
    v = sorted(values)
    if not v:
        return None
    return float(v[math.ceil(0.9 * len(v)) - 1])


@dataclass(frozen=True)
class DelaySummary:
    """First-alert delays of a set of appearances (module docstring for the rules).

    ``*_all`` count never-alerted appearances as infinite (``math.inf``); the others use the
    alerted appearances only (None when there is none).
    """

    appearances: int
    alerted: int
    never_alerted: int
    median_frames: Optional[float]
    p90_frames: Optional[float]
    median_s: Optional[float]
    p90_s: Optional[float]
    median_frames_all: Optional[float]
    p90_frames_all: Optional[float]
    median_s_all: Optional[float]
    p90_s_all: Optional[float]

    def to_json(self) -> dict[str, Any]:
        """Infinite values as ``"never"`` (strict JSON has no infinity)."""
        return {
            k: NEVER if isinstance(v, float) and math.isinf(v) else v
            for k, v in asdict(self).items()
        }


def delay_summary(appearances: Sequence[Appearance]) -> DelaySummary:
    """Median / p90 first-alert delay (frames and seconds) and the never-alerted count."""
    alerted = [a for a in appearances if a.alerted]
    never = len(appearances) - len(alerted)
    frames = [float(a.delay_frames) for a in alerted]  # type: ignore[arg-type]
    seconds = [float(a.delay_s) for a in alerted]  # type: ignore[arg-type]
    inf = [math.inf] * never
    return DelaySummary(
        appearances=len(appearances),
        alerted=len(alerted),
        never_alerted=never,
        median_frames=median(frames),
        p90_frames=p90(frames),
        median_s=median(seconds),
        p90_s=p90(seconds),
        median_frames_all=median(frames + inf),
        p90_frames_all=p90(frames + inf),
        median_s_all=median(seconds + inf),
        p90_s_all=p90(seconds + inf),
    )


def _bins(counts: Sequence[int], hits: Sequence[int], unit: str) -> list[dict[str, Any]]:
    return [
        {"bin": name, unit: int(n), "found": int(k), "recall": (k / n if n else None)}
        for name, n, k in zip(size_bin_names(), counts, hits)
    ]


def recall_by_size(
    levels: Sequence[Optional[int]],
    frames: Sequence[Optional[FrameObjects]],
    raise_frames: int,
) -> list[dict[str, Any]]:
    """Alert frame recall (WARN or above) per object-size bin.

    ``levels``: alert level per frame (None = not alerted); ``frames``: :func:`frame_objects` per
    frame (None = no OOD ground truth); ``raise_frames``: onset frames excused per run, as in the
    headline recall. Returns ``[{"bin", "frames", "found", "recall"}, ...]`` in
    :data:`SIZE_BINS` order (``recall`` None for an empty bin).
    """
    if len(levels) != len(frames):
        raise ValueError(f"{len(levels)} alert levels for {len(frames)} frames")
    counts, hits = [0] * len(SIZE_BINS), [0] * len(SIZE_BINS)
    presence = [
        None
        if f is None
        else frame_presence(
            [f.object_pixels], [f.ood_pixels], scaled_pixels(ONSET_PIXELS, f.shape)
        )[0]
        for f in frames
    ]
    for level, f, counted in zip(levels, frames, counted_frames(presence, raise_frames)):
        if not counted:
            continue
        assert f is not None
        b = size_bin(f.object_pixels, size_bin_edges(f.shape))
        if b is None:
            continue
        counts[b] += 1
        hits[b] += int(level is not None and int(level) >= WARN)
    return _bins(counts, hits, "frames")


def component_recall_by_size(frames: Sequence[Optional[FrameObjects]]) -> list[dict[str, Any]]:
    """Pixel-detector component recall per size bin: ``[{"bin", "components", "found",
    "recall"}, ...]`` over every ground-truth component of every frame (``frame_objects`` with a
    confidence map; components without a detection verdict are skipped)."""
    counts, hits = [0] * len(SIZE_BINS), [0] * len(SIZE_BINS)
    for f in frames:
        if f is None:
            continue
        edges = size_bin_edges(f.shape)
        for pixels, detected in f.components:
            b = size_bin(pixels, edges)
            if b is None or detected is None:
                continue
            counts[b] += 1
            hits[b] += int(detected)
    return _bins(counts, hits, "components")


def early_warning_report(
    levels: Sequence[Optional[int]],
    frames: Sequence[Optional[FrameObjects]],
    stamps_s: Sequence[float],
    raise_frames: int,
    horizon: float = AlertConfig().horizon,
    indices: Optional[Sequence[int]] = None,
    source: str = "",
) -> Optional[dict[str, Any]]:
    """One drive's early-warning JSON (appearances, delay summary, recall by size), or None when
    no frame has OOD ground truth. Arguments as :func:`appearance_delays` /
    :func:`recall_by_size`."""
    if all(f is None for f in frames):
        return None
    found = appearance_delays(levels, frames, stamps_s, horizon, indices, source)
    return {
        "appearances": [a.to_json() for a in found],
        "summary": delay_summary(found).to_json(),
        "alert_recall_by_size": recall_by_size(levels, frames, raise_frames),
        "detector_recall_by_size": component_recall_by_size(frames),
        **definitions(),
    }


def definitions() -> dict[str, Any]:
    """The rules a report's numbers follow (written next to them)."""
    return {
        "onset_pixels": ONSET_PIXELS,
        "size_bins": size_bin_names(),
        "reference_shape": list(REFERENCE_SHAPE),
        "detected_fraction": DETECTED_FRACTION,
    }


def pool_early_warning(
    reports: Sequence[Optional[dict[str, Any]]], sources: Optional[Sequence[str]] = None
) -> Optional[dict[str, Any]]:
    """Several drives' / bags' :func:`early_warning_report` JSONs as one: appearances
    concatenated (in the given order), the delay summary recomputed over the pooled list, the
    per-bin counts added. Exactly what one report over all frames gives (per-drive runs).
    ``sources`` (one per report) names the appearances that do not name their drive yet."""
    if sources is not None and len(sources) != len(reports):
        raise ValueError(f"{len(sources)} sources for {len(reports)} reports")
    names = list(sources) if sources is not None else [""] * len(reports)
    got = [(r, name) for r, name in zip(reports, names) if r]
    if not got:
        return None
    appearances = [
        replace(a, source=a.source or name)
        for r, name in got
        for a in (Appearance.from_json(d) for d in r["appearances"])
    ]
    got = [r for r, _ in got]  # type: ignore[misc]

    def added(key: str, unit: str) -> list[dict[str, Any]]:
        counts = [sum(int(r[key][b][unit]) for r in got) for b in range(len(SIZE_BINS))]
        hits = [sum(int(r[key][b]["found"]) for r in got) for b in range(len(SIZE_BINS))]
        return _bins(counts, hits, unit)

    return {
        "appearances": [a.to_json() for a in appearances],
        "summary": delay_summary(appearances).to_json(),
        "alert_recall_by_size": added("alert_recall_by_size", "frames"),
        "detector_recall_by_size": added("detector_recall_by_size", "components"),
        **definitions(),
        "drives": len(got),
    }
