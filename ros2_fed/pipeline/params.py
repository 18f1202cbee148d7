"""fed_node's parameters: the table, the conversions, the settings they make, ``--help``.

Why one table (:data:`PARAMETERS`: name, default, type, range, choices, description): the node
declares it, the replay reads parameter files through it, ``--help`` and ``config/fed.yaml``
are checked against it, so a parameter is said once. The ``publish.NAME`` rows come from the
outputs table (:mod:`.outputs`). Everything that turns parameters into settings lives here too:
the "from the model" fallbacks (:func:`resolve_from_model`), the alert configuration
(:func:`alert_config`), the output settings (:func:`output_settings`) and the decoder limits
(:func:`input_limits`). Pure python: no rclpy, no torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

from ros2_fed import codec
from ros2_fed.alerts import ROI_CHOICES, RULES, SIZE_REFERENCES, AlertConfig
from ros2_fed.cameras import camera_problems
from ros2_fed.engine.base import PRECISIONS, RUNTIMES
from ros2_fed.names import BASELINE_SCORES, CITYSCAPES_CLASSES
from ros2_fed.recording.config import ALERT_TRIGGER_LEVELS, CONFIDENCE_FORMATS, RecordConfig
from ros2_fed.scene import SceneConfig, calibrated_config

from .outputs import COMPRESSED_FORMATS, OUTPUTS, OutputSettings, outputs_help

ParamValue = Union[bool, int, float, str, tuple[str, ...]]

NODE_NAME = "fed_node"
RUNTIME_CHOICES = ("",) + RUNTIMES
SCORE_CHOICES = ("", "fed") + BASELINE_SCORES
TRANSPORT_CHOICES = ("raw", "compressed")
RELIABILITY_CHOICES = ("best_effort", "reliable")
FROM_MODEL = -1.0  # a threshold / colour-range parameter at this value takes the model's own
_ALERT_DEFAULTS = AlertConfig()
_SCENE_DEFAULTS = SceneConfig()
_RECORD_DEFAULTS = RecordConfig()


class StartupError(RuntimeError):
    """The pipeline cannot start (engine missing/corrupt, bad parameters, ...): one clear
    message."""


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default (which fixes the type), description, constraints."""

    name: str
    default: ParamValue
    description: str
    read_only: bool = False
    range: Optional[tuple[float, float]] = None
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return "string list" if isinstance(self.default, tuple) else type(self.default).__name__

    @property
    def is_float(self) -> bool:
        return isinstance(self.default, float)

    def coerce(self, value: Any) -> Any:
        """``value`` in this parameter's type where that loses nothing: an integer for a float
        parameter becomes a float (``ros2 param set ... 1`` and ``name: 1`` in a YAML file); a
        list for a string-list parameter becomes a tuple (rclpy hands out lists)."""
        if self.is_float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(self.default, tuple) and isinstance(value, list):
            return tuple(value)
        return value

    def check(self, value: Any) -> Optional[str]:
        """Why ``value`` (already :meth:`coerce`-d) is not acceptable, or None."""
        if type(value) is not type(self.default):
            return f"{self.name}: expected {self.type_name}, got {type(value).__name__}"
        if isinstance(value, tuple) and not all(isinstance(v, str) for v in value):
            return f"{self.name}: expected a list of strings, got {list(value)!r}"
        if self.range is not None and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name}: {value} is outside [{self.range[0]}, {self.range[1]}]"
        if self.choices and value not in self.choices:
            return f"{self.name}: {value!r} is not one of {list(self.choices)}"
        return None


PARAMETERS: tuple[ParamSpec, ...] = (
    # -- engine (fixed for the life of the process) --------------------------------------
    ParamSpec(
        "engine_path",
        "",
        "Engine file: NAME.onnx (ONNX Runtime), NAME.engine|.plan (TensorRT) or a "
        "fused NAME.safetensors bundle (torch), each with its JSON sidecar (fed_export writes "
        "both). "
        "Empty: build (first start) or reuse (later starts) the cached engine for model.backbone "
        "+ "
        "model.fed at model.height x model.width.",
        read_only=True,
    ),
    ParamSpec(
        "model.backbone",
        "",
        "Backbone checkpoint used when engine_path is empty; empty = the embedded "
        "default model (share/ros2_fed/models/tinyseg_synthroad).",
        read_only=True,
    ),
    ParamSpec(
        "model.fed",
        "",
        "FED checkpoint used when engine_path is empty; empty = the default model's "
        "FED-C (models/fed_c_synthroad) when model.backbone is empty too, else none (then set "
        "score).",
        read_only=True,
    ),
    ParamSpec(
        "model.height",
        512,
        "Camera image height the cached engine is built for (engine_path empty); "
        "frames of another size are resized on the host.",
        read_only=True,
        range=(16, 8192),
    ),
    ParamSpec(
        "model.width",
        1024,
        "Camera image width the cached engine is built for (engine_path empty).",
        read_only=True,
        range=(16, 8192),
    ),
    ParamSpec(
        "runtime",
        "",
        f"Runtime: {'|'.join(RUNTIMES)}. With engine_path: must match the file "
        "(empty = from the extension); without: the cached engine's runtime (empty = "
        "onnxruntime).",
        read_only=True,
        choices=RUNTIME_CHOICES,
    ),
    ParamSpec(
        "device",
        "",
        "Runtime device, e.g. cpu, cuda, cuda:1; empty = the runtime's default.",
        read_only=True,
    ),
    ParamSpec(
        "threads",
        0,
        "CPU threads for the runtime (torch / ONNX Runtime intra-op); 0 = its default.",
        read_only=True,
        range=(0, 256),
    ),
    ParamSpec(
        "cpu_spin_wait",
        False,
        "Let ONNX Runtime's CPU threads busy-wait between operators and runs "
        "(its own default). Off: the spinning threads would take the cores that decoding, "
        "visualisation and DDS need between frames (end-to-end p50 about 120 -> 85 ms at 512x1024 "
        "on "
        "2 cores). Turn on only when the engine has cores to itself.",
        read_only=True,
    ),
    ParamSpec(
        "score",
        "",
        "Score type (fed|msp|maxlogit|energy|entropy|sml|none). With engine_path: the engine "
        "must compute it (empty = accept the engine's; a mismatch is a start-up error); without: "
        "the "
        "score the cached engine is built with (empty = fed).",
        read_only=True,
        choices=SCORE_CHOICES,
    ),
    ParamSpec(
        "precision",
        "fp32",
        f"Precision of the cached engine (engine_path empty): {'|'.join(PRECISIONS)}. int8 "
        "quantises the backbone (FED and the score stay float32) with activation ranges measured "
        "on the images in calibration_data; the first start builds it (docs/int8.md). An engine "
        "file carries its own precision.",
        read_only=True,
        choices=PRECISIONS,
    ),
    ParamSpec(
        "calibration_data",
        "",
        "precision int8: the calibration images, a folder of images or a Cityscapes-layout root "
        "(frames of this camera; resized to the engine size). Part of the cached engine's key: "
        "other images build another engine. Required for int8, empty otherwise.",
        read_only=True,
    ),
    ParamSpec(
        "cameras",
        (),
        "Surround cameras served by this one node and one batched engine, e.g. "
        "[front, left, right, rear]: camera NAME reads NAME/image (or NAME/image/compressed) and "
        "publishes ~/NAME/<output>; each batch holds the newest pending frame of every camera "
        "(latest frame wins per camera). Empty: one camera on image -> ~/<output>. A cached "
        "engine "
        "is built for batch = the number of cameras; frames of another size are resized.",
        read_only=True,
    ),
    ParamSpec(
        "warmup_runs",
        3,
        "Dummy inferences before the node reports ready (lazy init, autotuning).",
        read_only=True,
        range=(0, 100),
    ),
    ParamSpec(
        "strict_parameters",
        False,
        "A parameter name the node does not declare (a misspelling in a parameter file or -p): "
        "off = a WARN line naming the closest declared parameter, and the node starts; on = one "
        "FATAL line and exit 1.",
        read_only=True,
    ),
    # -- input ---------------------------------------------------------------------------
    ParamSpec(
        "input_transport",
        "raw",
        "raw: subscribe to 'image' (sensor_msgs/Image); compressed: subscribe "
        "to 'image/compressed' (sensor_msgs/CompressedImage, jpeg/png).",
        read_only=True,
        choices=TRANSPORT_CHOICES,
    ),
    ParamSpec(
        "max_input_pixels",
        codec.DEFAULT_MAX_INPUT_PIXELS,
        "Largest input frame, width x height, raw or "
        "compressed. A compressed frame is refused before decoding when its header says more, or "
        "when "
        "the array the decoder would allocate exceeds one rgb8 frame of this size (3 bytes a "
        "pixel: "
        "a 16-bit RGB PNG may have half as many pixels); decompression bombs cost no memory. "
        f"Frames below {codec.MIN_USEFUL_SIDE} pixels a side are refused too (too_small).",
        read_only=True,
        range=(codec.MIN_USEFUL_SIDE**2, codec.MAX_DIMENSION**2),
    ),
    ParamSpec(
        "input_qos.reliability",
        "best_effort",
        "Input reliability: best_effort (sensor-data profile, "
        "matches every camera) or reliable (matches reliable publishers only).",
        read_only=True,
        choices=RELIABILITY_CHOICES,
    ),
    ParamSpec(
        "input_qos.depth",
        1,
        "Input history depth (keep last N); the node keeps only the newest frame anyway.",
        read_only=True,
        range=(1, 100),
    ),
    ParamSpec(
        "output_qos.reliability",
        "reliable",
        "Image outputs' reliability (reliable matches both kinds "
        "of subscribers; alerts and diagnostics are always reliable).",
        read_only=True,
        choices=RELIABILITY_CHOICES,
    ),
    ParamSpec(
        "output_qos.depth", 1, "Image outputs' history depth.", read_only=True, range=(1, 100)
    ),
    # -- outputs (switchable at run time): one publish.NAME per row of the outputs table -----
    *(ParamSpec(o.parameter, o.default_on, o.parameter_description) for o in OUTPUTS),
    ParamSpec(
        "compressed.format",
        "jpeg",
        "Format of the ~/NAME/compressed image outputs (sensor_msgs/CompressedImage, "
        "image_transport's format string, e.g. 'rgb8; jpeg compressed bgr8'): jpeg (small, "
        "lossy) or png (lossless). Encoded only while someone subscribes.",
        choices=COMPRESSED_FORMATS,
    ),
    ParamSpec(
        "compressed.jpeg_quality",
        95,
        "JPEG quality of the compressed image outputs (image_transport's default 95).",
        range=(1, 100),
    ),
    # -- visualisation --------------------------------------------------------------------
    ParamSpec(
        "viz.confidence_min",
        FROM_MODEL,
        "Confidence shown fully red in the overlay; negative = from the "
        "model's calibration (its operating threshold a quarter up the red-blue scale), 0 without "
        "one.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "viz.confidence_max",
        FROM_MODEL,
        "Confidence shown fully blue in the overlay (must exceed "
        "viz.confidence_min); negative = from the model's calibration (the median confidence of "
        "correct "
        "validation pixels), 1 without one.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "viz.overlay_alpha",
        0.5,
        "Weight of the confidence colours in the overlay (0 = camera only).",
        range=(0.0, 1.0),
    ),
    # -- alerts (changeable at run time; validated together by alert_config) ----------------
    ParamSpec(
        "alerts.confidence_threshold",
        FROM_MODEL,
        "A pixel is uncertain when its confidence is below this; "
        "negative = the model's calibrated operating point (fed_calibrate: 2 % of correct "
        "validation pixels "
        f"fall below it), {_ALERT_DEFAULTS.confidence_threshold} for a model without calibration.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "alerts.warn_size",
        _ALERT_DEFAULTS.warn_size,
        "WARN when the largest uncertain region in the ROI "
        "is larger than this: sqrt(region pixels) / image height (alerts.size_reference height; "
        "0.06 = a "
        "15x15 blob in a 256-row image) or / the rows from the horizon to the region's bottom "
        "(horizon).",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.error_size",
        _ALERT_DEFAULTS.error_size,
        "ERROR when the largest uncertain region is "
        "larger than this (>= alerts.warn_size), same unit.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.hysteresis",
        _ALERT_DEFAULTS.hysteresis,
        "A level clears only when the region size falls this far below its limit.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.min_width",
        _ALERT_DEFAULTS.min_width,
        "Uncertain strips narrower than this (image heights; "
        "object boundaries) are removed before the region is measured; 0 = keep all.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.raise_frames",
        _ALERT_DEFAULTS.raise_frames,
        "Consecutive frames above a limit before the level rises.",
        range=(1, 1000),
    ),
    ParamSpec(
        "alerts.clear_frames",
        _ALERT_DEFAULTS.clear_frames,
        "Consecutive frames at or below limit - hysteresis before the level falls.",
        range=(1, 1000),
    ),
    ParamSpec(
        "alerts.roi",
        _ALERT_DEFAULTS.roi,
        "Region of interest: corridor (the road ahead: a trapezoid from "
        "the full bottom width to the middle third at 40 % of the height) | drivable (the "
        "corridor's pixels "
        "the model labels alerts.drivable_classes plus the holes they enclose, e.g. an object "
        "lying on the "
        "road; the corridor for frames without labels) | full | lower_half | mask (use "
        "alerts.roi_mask_file).",
        choices=ROI_CHOICES,
    ),
    ParamSpec(
        "alerts.roi_mask_file",
        "",
        "PNG mask (non-zero = inside the ROI), resized to the image when "
        "needed; used when alerts.roi is mask.",
    ),
    ParamSpec(
        "alerts.drivable_classes",
        _ALERT_DEFAULTS.drivable_classes,
        "Comma-separated class names (the "
        "model's, or the Cityscapes trainIds for a model without names) or ids of the drivable "
        "ROI.",
    ),
    ParamSpec(
        "alerts.ignore_classes",
        _ALERT_DEFAULTS.ignore_classes,
        "Drivable ROI: uncertain pixels the model labels one of these classes (comma-separated "
        "names or ids; empty = none) do not count: uncertainty about the ground (a zebra "
        "crossing taken for sidewalk), not about an object on it.",
    ),
    ParamSpec(
        "alerts.roi_closing",
        _ALERT_DEFAULTS.roi_closing,
        "Drivable ROI: close gaps narrower than this "
        "(image heights) in the drivable mask before its holes are filled; 0 = no closing.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.roi_margin",
        _ALERT_DEFAULTS.roi_margin,
        "Pixels closer than this (image heights) to the ROI's edge are left out: the road's "
        "edges and kerbs, where a model is uncertain in ordinary scenes; 0 = the whole ROI.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.size_reference",
        _ALERT_DEFAULTS.size_reference,
        "What a region's side (sqrt of its "
        "pixels) is divided by: height (the image height) | horizon (the rows between "
        "alerts.horizon and "
        "the region's bottom, at least alerts.min_distance: about the object's size relative to "
        "the "
        "camera height, the same near and far).",
        choices=SIZE_REFERENCES,
    ),
    ParamSpec(
        "alerts.horizon",
        _ALERT_DEFAULTS.horizon,
        "Horizon row (image heights from the top) for alerts.size_reference horizon.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.min_distance",
        _ALERT_DEFAULTS.min_distance,
        "Smallest distance below the horizon "
        "(image heights) a region is measured with (size_reference horizon): far regions are not "
        "magnified more than at this distance.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "alerts.rule",
        _ALERT_DEFAULTS.rule,
        "What a frame is judged by: region (its largest uncertain region's size) | track (every "
        "uncertain region, followed over frames: the strongest track's evidence, see "
        "alerts.track_*; ERROR still needs a region above alerts.error_size).",
        choices=RULES,
    ),
    ParamSpec(
        "alerts.track_hits",
        _ALERT_DEFAULTS.track_hits,
        "Rule track: a tracked region counts once seen in at least this many of the last "
        "alerts.track_window frames (flicker does not).",
        range=(1, 1000),
    ),
    ParamSpec(
        "alerts.track_window",
        _ALERT_DEFAULTS.track_window,
        "Rule track: the frames alerts.track_hits counts over (>= alerts.track_hits); a track "
        "unseen this long is dropped.",
        range=(1, 1000),
    ),
    ParamSpec(
        "alerts.track_min_contrast",
        _ALERT_DEFAULTS.track_min_contrast,
        "Rule track: a region counts only when its mean uncertainty (1 - confidence) exceeds "
        "that of a ring around it (half its box's longer side wide) by at least this.",
        range=(-1.0, 1.0),
    ),
    ParamSpec(
        "alerts.track_growth",
        _ALERT_DEFAULTS.track_growth,
        "Rule track: a track approaches when its area grew by at least this factor over the last "
        "alerts.track_growth_frames frames and its bottom row did not rise.",
        range=(1.0, 100.0),
    ),
    ParamSpec(
        "alerts.track_growth_frames",
        _ALERT_DEFAULTS.track_growth_frames,
        "Rule track: the frames the growth of a track is measured over.",
        range=(1, 1000),
    ),
    ParamSpec(
        "alerts.track_gain",
        _ALERT_DEFAULTS.track_gain,
        "Rule track: an approaching track's evidence is its size times this (1 = approach "
        "ignored); other tracks' evidence is their size.",
        range=(1.0, 100.0),
    ),
    ParamSpec(
        "alerts.track_match_distance",
        _ALERT_DEFAULTS.track_match_distance,
        "Rule track: a region continues the track whose last box it overlaps, else the one whose "
        "last centroid is nearest within this distance (image heights).",
        range=(0.0, 1.0),
    ),
    # -- scene health (changeable at run time; validated together by scene_config) --------
    ParamSpec(
        "scene.confidence_threshold",
        FROM_MODEL,
        "Scene health: a pixel counts as uncertain below this confidence; negative = the "
        "threshold the model's scene statistic was calibrated with (fed_calibrate: its alert "
        f"operating point), {_SCENE_DEFAULTS.confidence_threshold} for a model without "
        "calibration.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "scene.warn_fraction",
        FROM_MODEL,
        "WARN (degraded) when more than this share of the image above the hood is uncertain; "
        "negative = from the model's calibration (twice the 99th percentile of the share on "
        f"clean validation frames), {_SCENE_DEFAULTS.warn_fraction} without one.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "scene.error_fraction",
        FROM_MODEL,
        "ERROR (perception unusable) above this uncertain share (>= scene.warn_fraction); "
        "negative = from the model's calibration (0.4 of the way from its WARN limit to 1), "
        f"{_SCENE_DEFAULTS.error_fraction} without one.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "scene.hysteresis",
        _SCENE_DEFAULTS.hysteresis,
        "A scene level clears only when the uncertain share falls this far below its limit.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "scene.raise_frames",
        _SCENE_DEFAULTS.raise_frames,
        "Consecutive frames above a scene limit before the level rises.",
        range=(1, 1000),
    ),
    ParamSpec(
        "scene.clear_frames",
        _SCENE_DEFAULTS.clear_frames,
        "Consecutive frames at or below limit - hysteresis (camera faults: without a fault) "
        "before a scene level falls.",
        range=(1, 1000),
    ),
    ParamSpec(
        "scene.hood",
        FROM_MODEL,
        "Bottom share of the rows left out of the uncertain share (the ego hood); negative = "
        f"as calibrated, {_SCENE_DEFAULTS.hood} without a calibration.",
        range=(FROM_MODEL, 1.0),
    ),
    ParamSpec(
        "scene.dark_level",
        _SCENE_DEFAULTS.dark_level,
        "A pixel is dark when every channel is at or below this (0-255).",
        range=(0, 255),
    ),
    ParamSpec(
        "scene.bright_level",
        _SCENE_DEFAULTS.bright_level,
        "A pixel is saturated when every channel is at or above this (0-255).",
        range=(0, 255),
    ),
    ParamSpec(
        "scene.fault_share",
        _SCENE_DEFAULTS.fault_share,
        "A frame is black (saturated) when at least this share of its pixels is dark (saturated).",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "scene.uniform_std",
        _SCENE_DEFAULTS.uniform_std,
        "A frame is uniform (blocked lens, exposure failure) when its luminance's standard "
        "deviation (0-255) is below this; 0 = never.",
        range=(0.0, 255.0),
    ),
    ParamSpec(
        "scene.fault_frames",
        _SCENE_DEFAULTS.fault_frames,
        "Consecutive black, saturated or uniform frames before the scene status is ERROR.",
        range=(1, 1000),
    ),
    ParamSpec(
        "scene.frozen_frames",
        _SCENE_DEFAULTS.frozen_frames,
        "WARN (camera frozen) after this many frames in a row with the previous frame's exact "
        "bytes while the stamps advance; 0 = off.",
        range=(0, 100000),
    ),
    ParamSpec(
        "scene.frozen_error_frames",
        _SCENE_DEFAULTS.frozen_error_frames,
        "ERROR after this many identical frames in a row; 0 = never.",
        range=(0, 100000),
    ),
    # -- clip recording (changeable at run time; validated together by record_config) -----
    ParamSpec(
        "record.enabled",
        _RECORD_DEFAULTS.enabled,
        "Record clips around alerts, scene warnings and ~/save_clip requests into record.dir "
        "(MCAP, docs/data_engine.md).",
    ),
    ParamSpec(
        "record.dir",
        _RECORD_DEFAULTS.dir,
        "Folder of the clips and their index.jsonl; required when record.enabled is true.",
    ),
    ParamSpec(
        "record.before",
        _RECORD_DEFAULTS.before,
        "Seconds of camera messages before the trigger that a clip holds.",
        range=(0.0, 600.0),
    ),
    ParamSpec(
        "record.after",
        _RECORD_DEFAULTS.after,
        "Seconds after the (last merged) trigger that a clip holds.",
        range=(0.0, 600.0),
    ),
    ParamSpec(
        "record.min_alert_level",
        _RECORD_DEFAULTS.min_alert_level,
        "An alert rising to this level starts a clip; OFF: alerts never do.",
        choices=ALERT_TRIGGER_LEVELS,
    ),
    ParamSpec(
        "record.scene",
        _RECORD_DEFAULTS.scene,
        "A scene status rising to WARN or ERROR starts a clip.",
    ),
    ParamSpec(
        "record.min_interval",
        _RECORD_DEFAULTS.min_interval,
        "Seconds from one clip's trigger before an alert or scene trigger may start the next "
        "(a trigger inside an open clip extends it; ~/save_clip is never limited).",
        range=(0.0, 86400.0),
    ),
    ParamSpec(
        "record.max_buffer_mb",
        _RECORD_DEFAULTS.max_buffer_mb,
        "Memory bound of the rolling buffer and of one clip (MiB); the oldest messages go first.",
        range=(1.0, 65536.0),
    ),
    ParamSpec(
        "record.max_total_mb",
        _RECORD_DEFAULTS.max_total_mb,
        "Disk budget of record.dir's clips (MiB): the oldest clips are deleted first.",
        range=(1.0, 16777216.0),
    ),
    ParamSpec(
        "record.confidence_format",
        _RECORD_DEFAULTS.confidence_format,
        "How a clip holds the confidence map: an 8-bit png (lossless) or jpeg CompressedImage, "
        "or off.",
        choices=CONFIDENCE_FORMATS,
    ),
    # -- diagnostics ------------------------------------------------------------------------
    ParamSpec(
        "diagnostics.period",
        1.0,
        "Seconds between /diagnostics messages.",
        read_only=True,
        range=(0.05, 60.0),
    ),
    ParamSpec(
        "diagnostics.latency_window",
        100,
        "Frames in the latency percentile window.",
        read_only=True,
        range=(10, 100000),
    ),
    ParamSpec(
        "diagnostics.hardware_id",
        "",
        "hardware_id in the diagnostic statuses; empty = the engine's runtime and device.",
        read_only=True,
    ),
    ParamSpec(
        "diagnostics.error_log_throttle",
        2.0,
        "Seconds between error logs about bad input frames of "
        "one kind (each kind's first frame is logged at once; every frame is counted).",
        read_only=True,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "diagnostics.input_timeout",
        1.0,
        "Seconds without an input frame before the pipeline status "
        'goes WARN "no input for N s" (published at once; OK again with the next frame). 0 = off.',
        read_only=True,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "diagnostics.engine_timeout",
        5.0,
        "Seconds the engine may work on a pending frame without "
        "finishing one before the pipeline status goes ERROR (published at once). Set it above "
        "the "
        "slowest expected inference. 0 = off.",
        read_only=True,
        range=(0.0, 3600.0),
    ),
)
PARAMETER_SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
PARAMETER_NAMES: frozenset[str] = frozenset(PARAMETER_SPECS)
ALERT_PREFIX = "alerts."
SCENE_PREFIX = "scene."
#: scene.* parameters whose negative value means "from the model's calibration".
SCENE_FROM_MODEL = ("confidence_threshold", "warn_fraction", "error_fraction", "hood")


def parameter_defaults() -> dict[str, ParamValue]:
    """{name: default} for every parameter."""
    return {spec.name: spec.default for spec in PARAMETERS}


def with_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over the defaults, known names coerced to their parameter's type."""
    merged: dict[str, Any] = parameter_defaults()
    for name, value in params.items():
        spec = PARAMETER_SPECS.get(name)
        merged[name] = spec.coerce(value) if spec is not None else value
    return merged


def with_changes(params: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``changes`` applied, known names coerced (a run-time change set)."""
    merged = dict(params)
    for name, value in changes.items():
        spec = PARAMETER_SPECS.get(name)
        merged[name] = spec.coerce(value) if spec is not None else value
    return merged


def parameter_problems(params: Mapping[str, Any]) -> list[str]:
    """Why a full parameter set is unusable (type, range, choices, cross-field); empty when
    fine."""
    problems = [
        p
        for p in (PARAMETER_SPECS[n].check(v) for n, v in params.items() if n in PARAMETER_SPECS)
        if p
    ]
    if not problems:
        problems += camera_problems(params.get("cameras", ()))
    low, high = (
        params.get("viz.confidence_min", FROM_MODEL),
        params.get("viz.confidence_max", FROM_MODEL),
    )
    if not problems and low >= 0 and high >= 0 and low >= high:
        problems.append("viz.confidence_min must be below viz.confidence_max")
    if not problems:
        problems += _precision_problems(params)
    if not problems:
        problems += record_config_problems(params)
    return problems


def _precision_problems(params: Mapping[str, Any]) -> list[str]:
    """int8 needs calibration images; they mean nothing to another precision."""
    precision = params.get("precision", "fp32")
    calibration = params.get("calibration_data", "")
    if precision == "int8" and not calibration and not params.get("engine_path"):
        return [
            "precision int8 needs calibration_data: a folder of this camera's images (or a "
            "Cityscapes-layout root) to measure the activation ranges on (docs/int8.md)"
        ]
    if calibration and precision != "int8":
        return [f"calibration_data is for precision int8 (precision is {precision})"]
    return []


def given_value_problems(values: Mapping[str, Any]) -> list[str]:
    """Why values given for declared parameters (parameter file, -p) are unusable, checked
    before rclpy declares them (its own refusal is a traceback, not a message)."""
    problems = []
    for name, value in values.items():
        spec = PARAMETER_SPECS.get(name)
        if spec is None or (isinstance(spec.default, tuple) and not value):
            continue  # unknown names: unknown_parameters; an empty list: any array type
        problem = spec.check(spec.coerce(value))
        if problem:
            problems.append(problem)
    return problems


def unknown_parameters(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """One message per given name that is not declared, naming the closest declared one."""
    known = sorted(set(declared))
    messages = []
    for name in sorted(set(given) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" - did you mean {close[0]}?" if close else ""
        messages.append(f"unknown parameter {name}{hint}")
    return messages


def resolve_from_model(
    params: Mapping[str, Any], calibration: Optional[Mapping[str, Any]]
) -> dict[str, Any]:
    """``params`` over the defaults with every "from the model" (negative) value replaced.

    The calibration's threshold and colour range when the model has them; otherwise the
    uncalibrated fallbacks (threshold 0.5, colour range 0..1). An explicit value always wins.
    """
    merged = with_defaults(params)
    cal = calibration or {}
    viz_range = cal.get("viz_range") or [0.0, 1.0]
    fallbacks = {
        "alerts.confidence_threshold": cal.get(
            "confidence_threshold", _ALERT_DEFAULTS.confidence_threshold
        ),
        "viz.confidence_min": viz_range[0],
        "viz.confidence_max": viz_range[1],
    }
    for name, value in fallbacks.items():
        if merged[name] < 0:
            merged[name] = float(value)
    if (
        merged["viz.confidence_min"] >= merged["viz.confidence_max"]
    ):  # one side explicit, the other from the model
        merged["viz.confidence_min"], merged["viz.confidence_max"] = 0.0, 1.0
    return merged


def alert_config(
    params: Mapping[str, Any],
    calibration: Optional[Mapping[str, Any]] = None,
    class_names: Optional[Any] = None,
) -> AlertConfig:
    """The :class:`ros2_fed.alerts.AlertConfig` for a parameter set (defaults for missing
    ``alerts.*``).

    The one mapping from parameters to alert settings (node start-up, run-time changes,
    replay); "from the model" values come from ``calibration`` (:func:`model_calibration`),
    the drivable ROI's class names from ``class_names`` (the engine metadata's ``class_names``;
    None: Cityscapes trainIds). Raises ValueError (inconsistent limits, unknown drivable class)
    or OSError (unreadable ROI mask).
    """
    merged = resolve_from_model(params, calibration)
    problem = class_name_problem(merged, class_names)
    if problem:
        raise ValueError(problem)
    config = AlertConfig(
        **{k[len(ALERT_PREFIX) :]: v for k, v in merged.items() if k.startswith(ALERT_PREFIX)}
    )
    return config.with_class_names(class_names) if class_names else config


CLASS_PARAMETERS = ("alerts.drivable_classes", "alerts.ignore_classes")
GENERIC_CLASS_NAME = "label_"  # what a checkpoint without class names calls class i


def class_name_problem(params: Mapping[str, Any], class_names: Optional[Any]) -> str:
    """Every name in ``alerts.drivable_classes`` and ``alerts.ignore_classes`` that is not one
    of the model's classes (Cityscapes trainIds for a model without names), in one line with
    how to set them; "" when all are. Ids are left to the alert configuration's own check."""
    names = [str(n).strip().lower() for n in (class_names or CITYSCAPES_CLASSES)]
    merged = with_defaults(params)
    wrong = []
    for key in CLASS_PARAMETERS:
        items = [i.strip() for i in str(merged[key]).split(",")]
        bad = [i for i in items if i and not i.isdigit() and i.lower() not in names]
        if bad:
            wrong.append(f"{key}: {', '.join(repr(b) for b in bad)}")
    if not wrong:
        return ""
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    hint = (
        " (the checkpoint has no class names: give ids, e.g. -p alerts.drivable_classes:=0 "
        "-p alerts.ignore_classes:=1, or put the names in its JSON)"
        if names and all(n.startswith(GENERIC_CLASS_NAME) for n in names)
        else " (names or ids of the model's classes)"
    )
    return f"not among the model's classes ({shown}): {'; '.join(wrong)}{hint}"


def scene_config(
    params: Mapping[str, Any], calibration: Optional[Mapping[str, Any]] = None
) -> SceneConfig:
    """The :class:`ros2_fed.scene.SceneConfig` of a parameter set (defaults for missing
    ``scene.*``): the model's scene calibration (``calibration["scene"]``), explicit parameters
    on top. Raises ValueError for inconsistent limits."""
    merged = with_defaults(params)
    fields = {k[len(SCENE_PREFIX) :]: v for k, v in merged.items() if k.startswith(SCENE_PREFIX)}
    explicit = {k: v for k, v in fields.items() if not (k in SCENE_FROM_MODEL and v < 0)}
    return calibrated_config(calibration, **explicit)


RECORD_PREFIX = "record."


def record_config_problems(params: Mapping[str, Any]) -> list[str]:
    """Why the ``record.*`` parameters cannot record (recording on without a folder)."""
    values = {
        name[len(RECORD_PREFIX) :]: PARAMETER_SPECS[name].coerce(value)
        for name, value in params.items()
        if name.startswith(RECORD_PREFIX) and name in PARAMETER_SPECS
    }
    try:
        RecordConfig(**values)
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return []


def record_config(params: Mapping[str, Any]) -> RecordConfig:
    """The :class:`ros2_fed.recording.config.RecordConfig` of a parameter set (defaults for
    missing ``record.*``); ValueError when it cannot record."""
    p = with_defaults(params)
    return RecordConfig(
        **{
            name[len(RECORD_PREFIX) :]: PARAMETER_SPECS[name].coerce(p[name])
            for name in PARAMETER_SPECS
            if name.startswith(RECORD_PREFIX)
        }
    )


def changes_alerts(names: Any) -> bool:
    """Whether a change of these parameter names touches the alert configuration."""
    return any(str(name).startswith(ALERT_PREFIX) for name in names)


def output_settings(
    params: Mapping[str, Any], calibration: Optional[Mapping[str, Any]] = None
) -> OutputSettings:
    """The output settings of a parameter set ("from the model" colour range from
    ``calibration``)."""
    p = resolve_from_model(params, calibration)
    return OutputSettings(
        publish=tuple((o.name, bool(p[o.parameter])) for o in OUTPUTS),
        viz_min=float(p["viz.confidence_min"]),
        viz_max=float(p["viz.confidence_max"]),
        overlay_alpha=float(p["viz.overlay_alpha"]),
        compressed_format=str(p["compressed.format"]),
        jpeg_quality=int(p["compressed.jpeg_quality"]),
    )


def input_limits(params: Mapping[str, Any]) -> codec.InputLimits:
    """The size limits every input frame is decoded under (``max_input_pixels``, the engines'
    minimum side)."""
    return codec.InputLimits(
        max_pixels=int(with_defaults(params)["max_input_pixels"]), min_side=codec.MIN_USEFUL_SIDE
    )


def help_text(summary: str, executable: str = NODE_NAME) -> str:
    """``fed_node --help`` (or ``executable``'s): topics and every parameter with type, default
    and constraints."""
    lines = [
        f"usage: ros2 run ros2_fed {executable} [--ros-args -p NAME:=VALUE ... --params-file "
        "config/fed.yaml]",
        "",
        summary,
        "",
        "topics (relative to the node namespace; remap with -r image:=/camera/image_raw):",
        "  in:  image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage)",
        "  out: (each switchable with its publish.NAME parameter)",
        *outputs_help(),
        "  ~/camera_info         CameraInfo: the newest on camera_info (next to image), with "
        "each frame's header; nothing until one arrives",
        "  ~/debug/processing_time_ms, ~/debug/pipeline_latency_ms  std_msgs/Float64 per frame: "
        "received -> published, header stamp -> published (ms)",
        "  and /diagnostics (diagnostic_msgs/DiagnosticArray): the pipeline status and each",
        "       camera's latest alert and scene statuses",
        "  with cameras:=[front, left, ...]: in NAME/image (or NAME/image/compressed), out "
        "~/NAME/<output>;",
        "       /diagnostics: one pipeline status (per-camera NAME.* values) and one alert and "
        "one scene status per camera",
        "services: ~/save_clip (std_srvs/Trigger): a clip around the newest frame "
        "(record.*; docs/data_engine.md)",
        "",
        "parameters (ro = read-only after start-up; integers are accepted for float parameters):",
    ]
    for spec in PARAMETERS:
        extra = []
        if spec.range is not None:
            extra.append(f"range [{spec.range[0]}, {spec.range[1]}]")
        if spec.choices:
            extra.append("one of " + "|".join(c or "''" for c in spec.choices))
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        lines.append(
            f"  {spec.name} ({spec.type_name}, default "
            f"{default!r}{', ro' if spec.read_only else ''})"
        )
        lines.append(f"      {spec.description}" + (f" [{'; '.join(extra)}]" if extra else ""))
    lines += [
        "",
        "Large images between processes need a large-data DDS transport: see "
        "config/fastdds_large_data.xml (launch/fed.launch.py sets it).",
    ]
    return "\n".join(lines)
