"""Scene health: is the whole picture something the model can segment at all?

``~/alerts`` answers "is something unknown on the road ahead?" and judges compact regions on
purpose; a frame that is uncertain *everywhere* (fog, snow, a dirty or blocked lens, night, a
camera pointed where the model was never trained) or a camera that is broken is a different
question, answered here per camera, per frame. Pure python (numpy, OpenCV, zlib; no rclpy, no
torch): the frame path's scene stage (:class:`ros2_fed.pipeline.stages.SceneStage`) feeds each
frame to a :class:`SceneMonitor`, and ``fed_calibrate`` measures the statistic's in-domain
distribution with the same functions.

Judged per frame
----------------
* **The model's confidence as a whole**: the *uncertain fraction*, the share of the image
  above the ego hood (the bottom ``hood`` of the rows is left out) whose confidence is below
  the model's calibrated operating threshold (NaN counts as uncertain). By construction about
  2 % of correct in-domain pixels fall below that threshold, so the fraction already means the
  same for every model; its per-frame distribution on clean validation frames
  (``fed_calibrate`` stores it in the FED checkpoint) sets the limits when the node starts
  (:func:`limits_from_distribution`): WARN above :data:`WARN_HEADROOM` times the in-domain 99th
  percentile (footage from the same kind of world as the validation split still spreads wider
  than the split itself), ERROR ("perception unusable") :data:`ERROR_SHARE` of the way from
  there to a fully uncertain image. The limits follow the two-level rule of the alerts: a level
  rises after ``raise_frames`` frames in a row above its limit and falls after
  ``clear_frames`` frames in a row at or below ``limit - hysteresis``.
* **Camera faults that need no model**, on a small subsample of the RGB frame: *black* (at
  least ``fault_share`` of the pixels have every channel at or below ``dark_level``),
  *saturated* (every channel at or above ``bright_level``), *uniform* (the luminance's standard
  deviation below ``uniform_std``: a grey cap, an exposure failure). ERROR after
  ``fault_frames`` faulty frames in a row; cleared after ``clear_frames`` clean frames.
* **A frozen camera**: the frame's raw bytes (the message's data, not the decoded image; hashed
  with CRC-32, about 0.25 ms for a 512x1024 rgb8 frame) equal the previous frame's while its
  stamp advanced. WARN after ``frozen_frames`` such frames in a row (0.5 s at 10 Hz by default),
  ERROR after ``frozen_error_frames``; cleared by the first new image.

The published level is the worst of the three, the message names every active reason, and
every number it was judged on is a key-value (:meth:`SceneState.values`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

import cv2
import numpy as np

from ros2_fed.alerts import Level, stamp_to_str
from ros2_fed.viz import confidence_map

#: The statistic's name (key-values, calibration record, reports).
STATISTIC = "uncertain_fraction"
#: ERROR limit = WARN limit + ERROR_SHARE x (1 - WARN limit): 0.16 -> 0.50.
ERROR_SHARE = 0.4
#: The in-domain quantile the WARN limit is measured from, and the headroom above it: the
#: smallest of 1, 1.25, 1.5, 1.75, 2, 2.5, 3 that kept clean check drives (synthroad seeds
#: 5000-5019, never reported as results) at <= 1 % WARN with the default model (docs/scene.md).
WARN_QUANTILE = 0.99
WARN_HEADROOM = 2.0
#: Quantiles of the in-domain distribution a calibration records.
QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
#: Limits for a model without a scene calibration (no in-domain distribution known).
UNCALIBRATED_WARN, UNCALIBRATED_ERROR = 0.35, 0.6
#: Bins of the per-frame confidence histograms fed_calibrate keeps (threshold resolution).
HISTOGRAM_BINS = 4096
#: Camera-fault measures look at about this many rows (the frame is subsampled evenly).
FAULT_SAMPLE_ROWS = 64
FAULTS = ("black", "saturated", "uniform")
LIMITS_FROM = ("model", "parameters", "uncalibrated")


# --------------------------------------------------------------------------------------
# Per-frame measures
# --------------------------------------------------------------------------------------


def rows_above_hood(height: int, hood: float) -> int:
    """Rows of an image ``height`` rows high that are judged (at least one)."""
    return max(1, height - int(round(hood * height)))


def uncertain_fraction(confidence: np.ndarray, threshold: float, hood: float) -> float:
    """Share of the rows above the hood whose confidence is below ``threshold`` (NaN counts)."""
    conf = confidence_map(confidence)
    kept = conf[: rows_above_hood(conf.shape[0], hood)]
    return 1.0 - np.count_nonzero(kept >= threshold) / kept.size if kept.size else 0.0


def confidence_histogram(confidence: np.ndarray, hood: float) -> np.ndarray:
    """The rows above the hood as a :data:`HISTOGRAM_BINS`-bin histogram of confidence over
    [0, 1] (NaN in bin 0): fed_calibrate keeps one per frame, since the threshold the fraction
    is judged with is known only after the last frame."""
    conf = confidence_map(confidence)
    kept = conf[: rows_above_hood(conf.shape[0], hood)].ravel()
    index = np.nan_to_num(kept * HISTOGRAM_BINS, nan=0.0)
    index = np.clip(index, 0, HISTOGRAM_BINS - 1).astype(np.int64)
    return np.bincount(index, minlength=HISTOGRAM_BINS)


def fraction_below(histogram: np.ndarray, threshold: float) -> float:
    """:func:`uncertain_fraction` from a :func:`confidence_histogram` (linear within the bin
    holding the threshold: off by less than that bin's pixels)."""
    total = float(histogram.sum())
    if total <= 0:
        return 0.0
    position = min(max(float(threshold), 0.0), 1.0) * HISTOGRAM_BINS
    whole = int(math.floor(position))
    below = float(histogram[:whole].sum())
    if whole < HISTOGRAM_BINS:
        below += float(histogram[whole]) * (position - whole)
    return below / total


@dataclass(frozen=True)
class FaultMeasures:
    """What the camera-fault checks see of one frame (shares of the subsampled pixels)."""

    dark_share: float
    bright_share: float
    luma_std: float


def fault_measures(rgb: np.ndarray, dark_level: int, bright_level: int) -> FaultMeasures:
    """Dark / bright pixel shares and luminance spread of an HxWx3 uint8 frame, on an even
    subsample of about :data:`FAULT_SAMPLE_ROWS` rows (a few thousand pixels: about 0.05 ms
    for a 512x1024 frame)."""
    step = max(1, rgb.shape[0] // FAULT_SAMPLE_ROWS)
    sample = np.ascontiguousarray(rgb[::step, ::step])
    if sample.size == 0:
        return FaultMeasures(0.0, 0.0, 0.0)
    r, g, b = sample[..., 0], sample[..., 1], sample[..., 2]
    brightest = np.maximum(np.maximum(r, g), b)
    darkest = np.minimum(np.minimum(r, g), b)
    pixels = brightest.size
    dark = np.count_nonzero(brightest <= dark_level) / pixels
    bright = np.count_nonzero(darkest >= bright_level) / pixels
    _, std = cv2.meanStdDev(cv2.cvtColor(sample, cv2.COLOR_RGB2GRAY))
    return FaultMeasures(float(dark), float(bright), float(std[0, 0]))


def frame_digest(message: Any, rgb: Optional[np.ndarray] = None) -> int:
    """CRC-32 of the frame's raw bytes: the message's ``data`` (raw or compressed, as
    received), else the decoded ``rgb`` array (a bare frame)."""
    data = getattr(message, "data", None) if not isinstance(message, np.ndarray) else message
    if data is None:
        data = rgb
    if data is None:
        return 0
    try:
        view = memoryview(data)
        if not view.c_contiguous:
            raise TypeError
    except TypeError:
        view = memoryview(np.ascontiguousarray(data))
    return zlib.crc32(view.cast("B"))


def stamp_ns(stamp: Any) -> Optional[int]:
    """A header stamp in nanoseconds (None without one)."""
    if stamp is None:
        return None
    sec, nanosec = stamp_to_str(stamp).split(".")
    return int(sec) * 1_000_000_000 + int(nanosec)


# --------------------------------------------------------------------------------------
# In-domain distribution (fed_calibrate) and the limits it gives
# --------------------------------------------------------------------------------------


def limits_from_distribution(
    quantiles: Mapping[str, float], headroom: float = WARN_HEADROOM
) -> tuple[float, float]:
    """(WARN, ERROR) limits of the uncertain fraction from its in-domain quantiles."""
    warn = min(max(headroom * float(quantiles[str(WARN_QUANTILE)]), 0.0), 1.0)
    return warn, warn + ERROR_SHARE * (1.0 - warn)


def scene_record(fractions: Any, threshold: float, hood: float) -> dict[str, Any]:
    """The calibration record of the statistic over clean validation frames: its quantiles,
    mean and spread (the node takes its limits from them, :func:`limits_from_distribution`)."""
    values = np.asarray(fractions, np.float64)
    if values.size == 0:
        raise ValueError("no frame to measure the scene statistic on")
    quantiles = {str(q): float(np.quantile(values, q)) for q in QUANTILES}
    return {
        "statistic": STATISTIC,
        "confidence_threshold": float(threshold),
        "hood": float(hood),
        "frames": int(values.size),
        "quantiles": quantiles,
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def _check(name: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= float(value) <= high:  # also rejects NaN
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    if integer and float(value) != int(value):
        raise ValueError(f"{name} must be an integer, got {value}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class SceneConfig:
    """Scene-health settings; field names equal the node's ``scene.*`` parameters. Validated
    on construction (ValueError naming the field). ``limits_from`` and ``in_domain`` say where
    the limits came from (for the status' key-values only)."""

    confidence_threshold: float = 0.5
    warn_fraction: float = UNCALIBRATED_WARN
    error_fraction: float = UNCALIBRATED_ERROR
    hysteresis: float = 0.02
    raise_frames: int = 2
    clear_frames: int = 5
    hood: float = 0.1
    dark_level: int = 20
    bright_level: int = 235
    fault_share: float = 0.95
    uniform_std: float = 3.0
    fault_frames: int = 3
    frozen_frames: int = 5
    frozen_error_frames: int = 30
    limits_from: str = "uncalibrated"
    in_domain: Mapping[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        fractions = ("confidence_threshold", "warn_fraction", "error_fraction", "hysteresis")
        for name in fractions + ("hood", "fault_share"):
            object.__setattr__(self, name, _check(name, getattr(self, name), 0.0, 1.0))
        for name in ("raise_frames", "clear_frames", "fault_frames"):
            object.__setattr__(self, name, _check(name, getattr(self, name), 1, 1e6, True))
        for name in ("frozen_frames", "frozen_error_frames"):
            object.__setattr__(self, name, _check(name, getattr(self, name), 0, 1e6, True))
        for name in ("dark_level", "bright_level"):
            object.__setattr__(self, name, _check(name, getattr(self, name), 0, 255, True))
        object.__setattr__(self, "uniform_std", _check("uniform_std", self.uniform_std, 0, 255))
        if self.warn_fraction > self.error_fraction:
            raise ValueError(
                f"warn_fraction ({self.warn_fraction:g}) must not exceed error_fraction "
                f"({self.error_fraction:g}, {self.limits_from})"
            )
        if self.limits_from not in LIMITS_FROM:
            raise ValueError(f"limits_from must be one of {LIMITS_FROM}, got {self.limits_from}")

    def limit(self, level: Level) -> float:
        return self.error_fraction if level == Level.ERROR else self.warn_fraction

    def clear_limit(self, level: Level) -> float:
        return max(self.limit(level) - self.hysteresis, 0.0)


def calibrated_config(calibration: Optional[Mapping[str, Any]], **overrides: Any) -> SceneConfig:
    """The configuration a model's calibration gives (``calibration["scene"]``: threshold,
    hood and in-domain quantiles, the limits from :func:`limits_from_distribution`; without one
    the alert threshold and the uncalibrated limits), then ``overrides`` (explicit parameters)
    on top; ``limits_from`` says which."""
    cal = dict(calibration or {})
    scene = dict(cal.get("scene") or {})
    base: dict[str, Any] = {"confidence_threshold": cal.get("confidence_threshold", 0.5)}
    if scene:
        warn, error = limits_from_distribution(scene["quantiles"])
        base.update(
            confidence_threshold=scene["confidence_threshold"],
            hood=scene["hood"],
            warn_fraction=warn,
            error_fraction=error,
            limits_from="model",
            in_domain=dict(scene.get("quantiles") or {}),
        )
    if {"warn_fraction", "error_fraction"} & set(overrides):
        base["limits_from"] = "parameters"
    return SceneConfig(**{**base, **overrides})


# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneState:
    """One frame's scene verdict: the level, why, and every number it was judged on."""

    level: Level
    message: str
    fraction: float
    candidate: Level  # the level the statistic alone supports on this frame
    consecutive: int  # frames in a row (ending here) with that candidate
    clearing: int  # frames in a row at/below the statistic's clear limit (0 at OK)
    fault: str  # this frame's camera fault ("" none)
    fault_frames: int  # faulty frames in a row
    identical_frames: int  # frames in a row with the previous frame's bytes, stamps advancing
    measures: FaultMeasures
    config: SceneConfig
    stamp: str = ""

    def values(self) -> dict[str, str]:
        """The diagnostic key-values (all strings)."""
        cfg = self.config
        values = {
            "statistic": STATISTIC,
            STATISTIC: f"{self.fraction:.4f}",
            "warn_fraction": f"{cfg.warn_fraction:.4f}",
            "error_fraction": f"{cfg.error_fraction:.4f}",
            "limits_from": cfg.limits_from,
            "confidence_threshold": f"{cfg.confidence_threshold:.4f}",
            "hood": f"{cfg.hood:g}",
            "candidate": self.candidate.name,
            "consecutive": str(self.consecutive),
            "clearing": str(self.clearing),
            "fault": self.fault,
            "fault_frames": str(self.fault_frames),
            "dark_share": f"{self.measures.dark_share:.3f}",
            "bright_share": f"{self.measures.bright_share:.3f}",
            "luma_std": f"{self.measures.luma_std:.2f}",
            "identical_frames": str(self.identical_frames),
            "stamp": self.stamp,
        }
        for q, v in sorted(cfg.in_domain.items()):
            values[f"in_domain_q{q}"] = f"{float(v):.4f}"
        return values


@dataclass
class _Counters:
    above: dict[Level, int] = field(default_factory=lambda: {Level.WARN: 0, Level.ERROR: 0})
    below: dict[Level, int] = field(default_factory=lambda: {Level.WARN: 0, Level.ERROR: 0})
    level: Level = Level.OK
    candidate: Level = Level.OK
    streak: int = 0
    fault_run: int = 0
    clean_run: int = 0
    fault_level: Level = Level.OK
    identical: int = 0
    digest: Optional[int] = None
    stamp: Optional[int] = None


class SceneMonitor:
    """One camera's scene health over its frames. ``config`` may be replaced between frames
    (run-time parameter changes); counters and levels are kept."""

    def __init__(self, config: Optional[SceneConfig] = None) -> None:
        self.config = config or SceneConfig()
        self._c = _Counters()

    def update(
        self,
        rgb: np.ndarray,
        confidence: np.ndarray,
        stamp: Any = None,
        digest: Optional[int] = None,
    ) -> SceneState:
        """Judge one frame: its RGB image, the model's confidence, the header stamp and the
        :func:`frame_digest` of its raw bytes (None: not checked for a frozen camera)."""
        cfg = self.config
        fraction = uncertain_fraction(confidence, cfg.confidence_threshold, cfg.hood)
        measures = fault_measures(rgb, cfg.dark_level, cfg.bright_level)
        fault = self._fault(measures)
        self._step_statistic(fraction)
        self._step_fault(fault)
        self._step_frozen(digest, stamp_ns(stamp))
        c = self._c
        frozen = self._frozen_level()
        level = max(c.level, c.fault_level, frozen)
        clearing = c.below[c.level] if c.level > Level.OK else 0
        state = SceneState(
            level=Level(level),
            message="",
            fraction=fraction,
            candidate=c.candidate,
            consecutive=c.streak,
            clearing=clearing,
            fault=fault,
            fault_frames=c.fault_run,
            identical_frames=c.identical,
            measures=measures,
            config=cfg,
            stamp=stamp_to_str(stamp),
        )
        return replace(state, message=self._message(state, frozen))

    def step_statistic(self, fraction: float) -> Level:
        """Advance only the statistic's two-level rule by one recorded uncertain fraction;
        returns its level (for replaying recorded fractions under other limits)."""
        self._step_statistic(fraction)
        return self._c.level

    def _fault(self, m: FaultMeasures) -> str:
        cfg = self.config
        if m.dark_share >= cfg.fault_share:
            return "black"
        if m.bright_share >= cfg.fault_share:
            return "saturated"
        if m.luma_std < cfg.uniform_std:
            return "uniform"
        return ""

    def _step_statistic(self, fraction: float) -> None:
        """The alerts' two-level rule on the uncertain fraction."""
        cfg, c = self.config, self._c
        for k in (Level.WARN, Level.ERROR):
            c.above[k] = c.above[k] + 1 if fraction > cfg.limit(k) else 0
            c.below[k] = c.below[k] + 1 if fraction <= cfg.clear_limit(k) else 0
        candidate = next(
            (k for k in (Level.ERROR, Level.WARN) if fraction > cfg.limit(k)), Level.OK
        )
        c.streak = c.streak + 1 if candidate == c.candidate else 1
        c.candidate = candidate
        risen = [
            k for k in (Level.ERROR, Level.WARN) if k > c.level and c.above[k] >= cfg.raise_frames
        ]
        if risen:
            c.level = risen[0]
            return
        while c.level > Level.OK and c.below[c.level] >= cfg.clear_frames:
            c.level = Level(c.level - 1)

    def _step_fault(self, fault: str) -> None:
        cfg, c = self.config, self._c
        c.fault_run = c.fault_run + 1 if fault else 0
        c.clean_run = 0 if fault else c.clean_run + 1
        if c.fault_run >= cfg.fault_frames:
            c.fault_level = Level.ERROR
        elif c.clean_run >= cfg.clear_frames:
            c.fault_level = Level.OK

    def _step_frozen(self, digest: Optional[int], stamp: Optional[int]) -> None:
        c = self._c
        if digest is None:
            c.identical, c.digest, c.stamp = 0, None, stamp
            return
        advanced = stamp is None or c.stamp is None or stamp > c.stamp
        if digest != c.digest:
            c.identical = 0
        elif advanced:
            c.identical += 1
        c.digest, c.stamp = digest, stamp if stamp is not None else c.stamp

    def _frozen_level(self) -> Level:
        cfg, n = self.config, self._c.identical
        if cfg.frozen_error_frames and n >= cfg.frozen_error_frames:
            return Level.ERROR
        if cfg.frozen_frames and n >= cfg.frozen_frames:
            return Level.WARN
        return Level.OK

    def _message(self, s: SceneState, frozen: Level) -> str:
        """The verdict first ("perception unusable" / "degraded" / "ok"), then every reason,
        worst first."""
        cfg, c = self.config, self._c
        reasons: list[tuple[int, str]] = []
        if c.fault_level > Level.OK:
            what = {"black": "dark", "saturated": "saturated", "uniform": ""}.get(s.fault, "")
            detail = (
                f"luminance spread {s.measures.luma_std:.1f} < {cfg.uniform_std:g}"
                if s.fault == "uniform"
                else f"{100 * max(s.measures.dark_share, s.measures.bright_share):.0f} % of "
                f"pixels {what}"
            )
            reasons.append(
                (Level.ERROR, f"{s.fault} frame ({detail}) for {c.fault_run} frames")
                if s.fault
                else (Level.ERROR, f"camera fault clearing ({c.clean_run}/{cfg.clear_frames})")
            )
        if frozen > Level.OK:
            reasons.append(
                (frozen, f"camera frozen: identical image for {s.identical_frames} frames")
            )
        uncertain = f"{100 * s.fraction:.1f} % of the image uncertain"
        if c.level > Level.OK:
            limit = 100 * cfg.limit(c.level)
            text = f"{uncertain} (> {limit:.1f} % {c.level.name} limit, {cfg.limits_from})"
            reasons.append((c.level, text))
        reasons.sort(key=lambda r: -r[0])
        verdict = {Level.OK: "ok", Level.WARN: "degraded", Level.ERROR: "perception unusable"}
        if not reasons:
            return (
                f"ok: {uncertain} (WARN above {100 * cfg.warn_fraction:.1f} %, {cfg.limits_from})"
            )
        return f"{verdict[s.level]}: " + "; ".join(text for _, text in reasons)
