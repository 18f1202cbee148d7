"""fed_node's pipeline without ROS: parameters, which engine to open, running it at the camera
size.

Why one module: ``fed_node`` (ros2_fed/node.py, the rclpy wiring) and ``fed_bag_eval``
(ros2_fed/eval/replay) must open the same engine, fill in the same defaults and render the
same outputs, or a replayed number would not be the node's. Everything here is said once:

- the parameter table (:data:`PARAMETERS`: name, default, type, range, choices) and the
  conversions both sides apply (an integer is a valid value for a float parameter);
- what engine the parameters select (:class:`ModelSpec`, default model in ``models/``) and
  opening it (:func:`open_engine`, with the score check);
- the camera-size handling (:func:`infer_at_camera_size`: host resize when the engine was
  built for another size), warm-up and the counters (the per-camera mailbox and batching
  live in :mod:`ros2_fed.cameras`);
- the output names and the alert configuration (:func:`alert_config`, the one place that
  maps ``alerts.*`` parameters onto :class:`ros2_fed.alerts.AlertConfig`).

Pure python: no rclpy and no torch are imported here (opening an ``.onnx`` or TensorRT engine
does not need torch; only building a missing cached engine does, inside ``ros2_fed.engine``).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from ros2_fed import codec
from ros2_fed.alerts import ROI_CHOICES, SIZE_REFERENCES, AlertConfig
from ros2_fed.cameras import camera_problems, engine_batch, infer_batch
from ros2_fed.engine.base import RUNTIMES
from ros2_fed.engine.options import runtime_options
from ros2_fed.health import ERROR, OK, WARN
from ros2_fed.names import BASELINE_SCORES
from ros2_fed.paths import default_models_dir

ParamValue = Union[bool, int, float, str, tuple[str, ...]]

NODE_NAME = "fed_node"
RUNTIME_CHOICES = ("",) + RUNTIMES
SCORE_CHOICES = ("", "fed") + BASELINE_SCORES
TRANSPORT_CHOICES = ("raw", "compressed")
RELIABILITY_CHOICES = ("best_effort", "reliable")
DEFAULT_BACKBONE = "tinyseg_synthroad"  # the embedded default model (models/)
DEFAULT_FED = "fed_u_synthroad"
DEFAULT_RUNTIME = "onnxruntime"
#: Everything the node publishes under ``~/`` (besides /diagnostics), in one order.
OUTPUT_NAMES = ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")
STALE = 3  # diagnostic status level besides OK / WARN / ERROR (ros2_fed.health)
FROM_MODEL = (
    -1.0
)  # a threshold / colour-range parameter at this value takes the model's calibrated one
_ALERT_DEFAULTS = AlertConfig()
FALLBACK_SHAPE = (480, 640)  # warm-up frame size for an engine that takes any size


class StartupError(RuntimeError):
    """The pipeline cannot start (engine missing/corrupt, bad parameters, ...): one clear
    message."""


# --------------------------------------------------------------------------------------
# Parameter table (the node declares it; replay, tests and --help read it)
# --------------------------------------------------------------------------------------


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
        "FED-U (models/fed_u_synthroad) when model.backbone is empty too, else none (then set "
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
    # -- outputs (switchable at run time) -------------------------------------------------
    ParamSpec("publish.segmentation", True, "Publish ~/segmentation (mono8 train ids)."),
    ParamSpec(
        "publish.segmentation_color", True, "Publish ~/segmentation_color (rgb8, class palette)."
    ),
    ParamSpec("publish.confidence", True, "Publish ~/confidence (32FC1, 1 = certain)."),
    ParamSpec(
        "publish.overlay",
        True,
        "Publish ~/overlay (rgb8 camera image blended with the red (uncertain) "
        "- blue (certain) confidence map, for rviz).",
    ),
    ParamSpec(
        "publish.alerts",
        True,
        "Publish ~/alerts (DiagnosticArray, one status per processed frame).",
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
        "negative = the model's calibrated operating point (fed_calibrate: 5 % of correct "
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
    return problems


def model_calibration(metadata: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The FED operating point an engine carries (``fed_calibrate``), or {} for an uncalibrated
    one."""
    detector = (metadata or {}).get("detector") or {}
    return dict(detector.get("calibration") or {})


def spec_calibration(spec: "ModelSpec") -> dict[str, Any]:
    """The operating point the engine for a resolved ``spec`` carries, read from its files
    (engine sidecar, else the FED checkpoint's JSON) without opening anything."""
    import json

    if spec.engine_path:
        from ros2_fed.engine.base import read_sidecar

        return model_calibration(read_sidecar(spec.engine_path))
    if not spec.fed or spec.score != "fed":
        return {}
    path = Path(spec.fed)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    sidecar = stem.with_name(stem.name + ".json")
    if not sidecar.is_file():
        return {}
    return dict(json.loads(sidecar.read_text()).get("calibration") or {})


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
) -> Any:
    """The :class:`ros2_fed.alerts.AlertConfig` for a parameter set (defaults for missing
    ``alerts.*``).

    The one mapping from parameters to alert settings (node start-up, run-time changes,
    replay); "from the model" values come from ``calibration`` (:func:`model_calibration`),
    the drivable ROI's class names from ``class_names`` (the engine metadata's ``class_names``;
    None: Cityscapes trainIds). Raises ValueError (inconsistent limits, unknown drivable class)
    or OSError (unreadable ROI mask).
    """
    from ros2_fed import alerts

    merged = resolve_from_model(params, calibration)
    config = alerts.AlertConfig(
        **{k[len(ALERT_PREFIX) :]: v for k, v in merged.items() if k.startswith(ALERT_PREFIX)}
    )
    return config.with_class_names(class_names) if class_names else config


def changes_alerts(names: Any) -> bool:
    """Whether a change of these parameter names touches the alert configuration."""
    return any(str(name).startswith(ALERT_PREFIX) for name in names)


@dataclass(frozen=True)
class OutputSettings:
    """The run-time switchable output settings, swapped as a whole so a frame sees one consistent
    set."""

    publish: tuple[tuple[str, bool], ...] = tuple((name, True) for name in OUTPUT_NAMES)
    viz_min: float = 0.0
    viz_max: float = 1.0
    overlay_alpha: float = 0.5

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], calibration: Optional[Mapping[str, Any]] = None
    ) -> "OutputSettings":
        p = resolve_from_model(params, calibration)
        return cls(
            publish=tuple((name, bool(p[f"publish.{name}"])) for name in OUTPUT_NAMES),
            viz_min=float(p["viz.confidence_min"]),
            viz_max=float(p["viz.confidence_max"]),
            overlay_alpha=float(p["viz.overlay_alpha"]),
        )

    def enabled(self, name: str) -> bool:
        return dict(self.publish)[name]


def help_text(summary: str) -> str:
    """``fed_node --help``: topics and every parameter with type, default and constraints."""
    lines = [
        "usage: ros2 run ros2_fed fed_node [--ros-args -p NAME:=VALUE ... --params-file "
        "config/fed.yaml]",
        "",
        summary,
        "",
        "topics (relative to the node namespace; remap with -r image:=/camera/image_raw):",
        "  in:  image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage)",
        "  out: ~/segmentation mono8, ~/segmentation_color rgb8, ~/confidence 32FC1, ~/overlay "
        "rgb8,",
        "       ~/alerts and /diagnostics (diagnostic_msgs/DiagnosticArray)",
        "  with cameras:=[front, left, ...]: in NAME/image (or NAME/image/compressed), out "
        "~/NAME/<output>;",
        "       /diagnostics: one pipeline status (per-camera NAME.* values) and one alert status "
        "per camera",
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


# --------------------------------------------------------------------------------------
# Which engine: parameters -> ModelSpec -> an open engine
# --------------------------------------------------------------------------------------


def checkpoint_exists(path: Union[str, Path]) -> bool:
    """A checkpoint as the loaders take it: NAME(.safetensors) + NAME.json, a file (.pth) or a
    folder."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return (
        path.is_dir()
        or (path.is_file() and path.suffix != ".json")
        or stem.with_name(stem.name + ".safetensors").is_file()
    )


@dataclass(frozen=True)
class ModelSpec:
    """The engine the parameters select: ``engine_path``, or the cached engine for
    ``backbone`` + ``fed`` at ``height`` x ``width`` (0 = the camera size, see
    :meth:`resolved`)."""

    engine_path: str = ""
    backbone: str = ""
    fed: str = ""
    height: int = 0
    width: int = 0
    runtime: str = ""
    score: str = ""
    threads: int = 0
    device: str = ""
    cpu_spin_wait: bool = False
    batch: int = 1  # of the cached engine (one frame per camera); an engine file fixes its own

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ModelSpec":
        """The node's engine parameters (defaults for those not given)."""
        p = with_defaults(params)
        return cls(
            engine_path=str(p["engine_path"]),
            backbone=str(p["model.backbone"]),
            fed=str(p["model.fed"]),
            height=int(p["model.height"]),
            width=int(p["model.width"]),
            runtime=str(p["runtime"]),
            score=str(p["score"]),
            threads=int(p["threads"]),
            device=str(p["device"]),
            cpu_spin_wait=bool(p["cpu_spin_wait"]),
            batch=max(1, len(p["cameras"])),
        )

    def resolved(self, height: int = 0, width: int = 0) -> "ModelSpec":
        """Defaults filled in (default model, camera size ``height`` x ``width`` when the spec has
        none, onnxruntime, score fed); StartupError naming the file that is missing."""
        spec = self
        if (not spec.height or not spec.width) and height and width:
            spec = replace(spec, height=int(height), width=int(width))
        if spec.engine_path:  # the file fixes the size
            if not Path(spec.engine_path).is_file():
                raise StartupError(f"engine file not found: {spec.engine_path}")
            return spec
        if not spec.height or not spec.width:
            raise StartupError("no engine input size: set model.height and model.width")
        backbone, fed = spec.backbone, spec.fed
        if not backbone:
            models = default_models_dir()
            backbone = str(models / DEFAULT_BACKBONE)
            fed = fed or str(models / DEFAULT_FED)
        for name, path in (("model.backbone", backbone), ("model.fed", fed)):
            if path and not checkpoint_exists(path):
                raise StartupError(
                    f"{name} checkpoint not found: {path} (neither a file, a folder nor "
                    f"{Path(path).name}.safetensors)"
                )
        score = spec.score or ("fed" if fed else "")
        if not score:
            raise StartupError(
                f"model.fed is empty (backbone {backbone} alone): set score to a baseline "
                f"({', '.join(BASELINE_SCORES)})"
            )
        return replace(
            spec,
            backbone=backbone,
            fed=fed if score == "fed" else "",
            score=score,
            runtime=spec.runtime or DEFAULT_RUNTIME,
        )

    def runtime_options(self) -> dict[str, Any]:
        """device / threads / spinning in the spelling of the runtime the file suffix (or runtime)
        names."""
        kind = (
            Path(self.engine_path).suffix
            if self.engine_path
            else "." + (self.runtime or DEFAULT_RUNTIME)
        )
        return runtime_options(kind, self.device, self.threads, self.cpu_spin_wait)

    def node_params(self) -> dict[str, Any]:
        """The fed_node parameters that select this engine (``-p`` for a node process)."""
        params: dict[str, Any] = {"engine_path": self.engine_path}
        if not self.engine_path:
            params.update(
                {
                    "model.backbone": self.backbone,
                    "model.fed": self.fed if self.score == "fed" else "",
                    "model.height": int(self.height),
                    "model.width": int(self.width),
                }
            )
        params.update(
            runtime=self.runtime,
            score=self.score,
            device=self.device,
            threads=int(self.threads),
            cpu_spin_wait=bool(self.cpu_spin_wait),
        )
        return params

    def describe(self) -> str:
        if self.engine_path:
            return (
                f"engine {self.engine_path} ({self.runtime or 'runtime from file'}, "
                f"score {self.score or 'from engine'})"
            )
        fed = Path(self.fed).name if self.fed and self.score == "fed" else "no FED"
        batch = f", batch {self.batch}" if self.batch > 1 else ""
        size = f"{self.height}x{self.width}{batch}"
        return f"{Path(self.backbone).name} + {fed} ({self.score}, {self.runtime}, {size})"


def engine_metadata(engine: Any) -> dict[str, Any]:
    """The engine's sidecar metadata ({} for an engine without one)."""
    meta = getattr(engine, "metadata", None)
    return dict(meta) if isinstance(meta, dict) else {}


def check_score(engine: Any, spec: ModelSpec) -> None:
    """An engine file must compute the score the parameters ask for (empty = any)."""
    have = engine_metadata(engine).get("score")
    if spec.score and have != spec.score:
        raise StartupError(
            f"engine {spec.engine_path} computes score {have!r}, parameter score asks for "
            f"{spec.score!r}: export an engine with that score or clear the parameter"
        )


def open_engine(spec: ModelSpec, progress: Optional[Callable[[str], None]] = None) -> Any:
    """The engine for a :meth:`ModelSpec.resolved` spec, without warm-up (the caller times its
    own).

    An existing ``.onnx`` / TensorRT engine opens without importing torch; only building a
    missing cached engine does. Every failure is a StartupError naming the file or model.
    """
    options = spec.runtime_options()
    if spec.engine_path:
        if not Path(spec.engine_path).is_file():
            raise StartupError(
                f"engine file not found: {spec.engine_path}"
            )  # before the runtime imports
        from ros2_fed.engine import Engine

        runtime = spec.runtime or None
        try:
            engine = Engine.open(spec.engine_path, runtime=runtime, warmup=0, **options)
        except (
            Exception
        ) as exc:  # EngineError names the file; anything else is wrapped the same way
            raise StartupError(
                f"cannot load engine {spec.engine_path} (runtime {runtime or 'from file type'}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        check_score(engine, spec)
        return engine
    from ros2_fed.engine import open_cached

    try:
        return open_cached(
            spec.backbone,
            spec.fed or None,
            height=int(spec.height),
            width=int(spec.width),
            runtime=spec.runtime,
            score=spec.score,
            batch=int(spec.batch),
            warmup=0,
            progress=progress,
            **options,
        )
    except Exception as exc:
        raise StartupError(
            f"cannot build/open the engine for {spec.describe()}: {type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------
# Running it: camera size, warm-up, palette, alerts as key/values
# --------------------------------------------------------------------------------------


def engine_shape(engine: Any) -> Optional[tuple[int, int]]:
    """(H, W) the engine takes, or None when it takes any size."""
    shape = getattr(engine, "input_shape", None)
    if shape is not None and len(tuple(shape)) >= 2:
        dims = tuple(int(v) for v in tuple(shape)[:2])
        return (dims[0], dims[1]) if all(d > 0 for d in dims) else None
    return None


def needs_resize(shape: Optional[tuple[int, int]], rgb: np.ndarray) -> bool:
    """Whether a camera frame must be resized on the host for an engine of this shape."""
    return shape is not None and tuple(shape) != tuple(rgb.shape[:2])


def infer_at_camera_size(
    engine: Any, rgb: np.ndarray, shape: Optional[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8) and confidence (float32) at the camera resolution.

    Engines are built per input size; when the camera's differs the frame is resized on the
    host (area) and the outputs back (nearest for labels, linear for confidence).
    """
    return infer_batch(engine, [rgb], shape)[0]  # any engine: batch 1, dynamic or fixed batch


def warm_up(engine: Any, runs: int, shape: Optional[tuple[int, int]]) -> float:
    """Run ``runs`` dummy batches (a full batch each) of the engine's size; mean ms per batch (nan
    when none)."""
    if runs <= 0:
        return math.nan
    h, w = shape or FALLBACK_SHAPE
    dummies = [np.full((h, w, 3), 127, dtype=np.uint8)] * engine_batch(engine)[0]  # a full batch
    t0 = time.monotonic()
    try:
        for _ in range(runs):
            infer_batch(engine, dummies, shape)
    except Exception as exc:
        raise StartupError(
            f"engine warm-up failed on a {h}x{w} frame: {type(exc).__name__}: {exc}"
        ) from exc
    return (time.monotonic() - t0) / runs * 1e3


def viz_palette(metadata: Mapping[str, Any]) -> np.ndarray:
    """The engine's palette as (N, 3) uint8, or viz's default when the engine has none."""
    from ros2_fed import viz

    palette = metadata.get("palette")
    if palette is not None:
        arr = np.asarray(palette, dtype=np.uint8)
        if arr.ndim == 2 and arr.shape[1] == 3 and len(arr):
            return arr
    return viz.default_palette(max(len(metadata.get("class_names") or []), 1))


#: Encoding of each image output (``alerts`` is a DiagnosticArray, not an image).
IMAGE_ENCODINGS = {
    "segmentation": "mono8",
    "segmentation_color": "rgb8",
    "confidence": "32FC1",
    "overlay": "rgb8",
}


def output_images(
    rgb: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    settings: OutputSettings,
    palette: np.ndarray,
    wanted: Any,
) -> dict[str, tuple[np.ndarray, str]]:
    """The image outputs named in ``wanted`` as (array, encoding): the same viz calls for the node
    and replay.

    Only what is wanted is computed (colourising and blending cost more than the engine on small
    models).
    """
    from ros2_fed import viz

    wanted = set(wanted)
    out: dict[str, tuple[np.ndarray, str]] = {}
    if "segmentation" in wanted:
        out["segmentation"] = (labels, IMAGE_ENCODINGS["segmentation"])
    if "confidence" in wanted:
        out["confidence"] = (
            confidence.astype(np.float32, copy=False),
            IMAGE_ENCODINGS["confidence"],
        )
    if "segmentation_color" in wanted:
        out["segmentation_color"] = (
            viz.colorize(labels, palette),
            IMAGE_ENCODINGS["segmentation_color"],
        )
    if "overlay" in wanted:
        colours = viz.confidence_to_rgb(confidence, settings.viz_min, settings.viz_max)
        out["overlay"] = (
            viz.overlay(rgb, colours, settings.overlay_alpha),
            IMAGE_ENCODINGS["overlay"],
        )
    return out


def hardware_id(metadata: Mapping[str, Any]) -> str:
    """The default diagnostics hardware_id: the engine's runtime and device."""
    return f"{metadata.get('runtime', 'engine')}:{metadata.get('device') or 'default'}"


def alert_values(state: Any) -> dict[str, str]:
    """An alert state's fields besides level and message, as the key/values of its status."""
    return {str(k): str(v) for k, v in vars(state).items() if k not in ("level", "message")}


def decode_error_kind(exc: Exception) -> str:
    """The bad-input counter an ``ImageDecodeError`` goes to."""
    return str(getattr(exc, "kind", None) or type(exc).__name__)


def input_limits(params: Mapping[str, Any]) -> codec.InputLimits:
    """The size limits every input frame is decoded under (``max_input_pixels``, the engines'
    minimum side)."""
    return codec.InputLimits(
        max_pixels=int(params["max_input_pixels"]), min_side=codec.MIN_USEFUL_SIDE
    )


# --------------------------------------------------------------------------------------
# Latest-frame mailbox and counters
# --------------------------------------------------------------------------------------


class PipelineStats:
    """Thread-safe counters and latency windows for /diagnostics."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad_input: collections.Counter[str] = collections.Counter()
        self.input_notes: collections.Counter[str] = (
            collections.Counter()
        )  # codec.NOTE_KINDS: decoded, noted
        self.inference_errors = 0
        self.latency_s: collections.deque[float] = collections.deque(maxlen=window)
        self.inference_s: collections.deque[float] = collections.deque(maxlen=window)
        self._last: dict[str, Any] = {
            "time": time.monotonic(),
            "received": 0,
            "processed": 0,
            "bad": 0,
            "inference_errors": 0,
        }

    def on_received(self, dropped_previous: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_previous)

    def on_processed(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.processed += 1
            self.latency_s.append(latency_s)
            self.inference_s.append(inference_s)

    def on_bad_input(self, kind: str) -> int:
        with self._lock:
            self.bad_input[kind] += 1
            return sum(self.bad_input.values())

    def on_input_note(self, kind: str) -> None:
        with self._lock:
            self.input_notes[kind] += 1

    def on_inference_error(self) -> None:
        with self._lock:
            self.inference_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """Totals, percentiles and per-period rates; starts a new period."""
        with self._lock:
            now = time.monotonic()
            last = self._last
            period = max(now - last["time"], 1e-9)
            bad_total = sum(self.bad_input.values())
            lat = np.asarray(self.latency_s, dtype=np.float64)
            inf = np.asarray(self.inference_s, dtype=np.float64)
            snap = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "bad_input": dict(self.bad_input),
                "bad_input_total": bad_total,
                "input_notes": dict(self.input_notes),
                "inference_errors": self.inference_errors,
                "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else math.nan,
                "latency_p95_ms": float(np.percentile(lat, 95) * 1e3) if lat.size else math.nan,
                "inference_p50_ms": float(np.percentile(inf, 50) * 1e3) if inf.size else math.nan,
                "inference_p95_ms": float(np.percentile(inf, 95) * 1e3) if inf.size else math.nan,
                "input_rate_hz": (self.received - last["received"]) / period,
                "output_rate_hz": (self.processed - last["processed"]) / period,
                "bad_input_in_period": bad_total - last["bad"],
                "inference_errors_in_period": self.inference_errors - last["inference_errors"],
            }
            self._last = {
                "time": now,
                "received": self.received,
                "processed": self.processed,
                "bad": bad_total,
                "inference_errors": self.inference_errors,
            }
            return snap


def pipeline_status(snap: Mapping[str, Any]) -> tuple[int, str]:
    """(level, message) of a ready pipeline from a :meth:`PipelineStats.snapshot`."""
    if snap["inference_errors_in_period"]:
        return ERROR, f"{snap['inference_errors_in_period']} frames failed in the engine"
    if snap["bad_input_in_period"]:
        return WARN, f"skipped {snap['bad_input_in_period']} bad input frames"
    if (
        snap["received"]
        and snap["dropped"]
        and snap["input_rate_hz"] > snap["output_rate_hz"] * 1.05
    ):
        return OK, (
            f"ready; dropping frames (input {snap['input_rate_hz']:.1f} Hz > "
            f"output {snap['output_rate_hz']:.1f} Hz)"
        )
    return OK, "ready"


def pipeline_values(
    snap: Mapping[str, Any], shape: Optional[tuple[int, int]], input_topic: str
) -> dict[str, str]:
    """The key/values of the pipeline status (counters, percentiles, rates, input)."""
    values: dict[str, Any] = {
        "state": "ready",
        "frames_received": snap["received"],
        "frames_processed": snap["processed"],
        "frames_dropped": snap["dropped"],
        "bad_input_total": snap["bad_input_total"],
        "inference_errors": snap["inference_errors"],
        "latency_p50_ms": f"{snap['latency_p50_ms']:.1f}",
        "latency_p95_ms": f"{snap['latency_p95_ms']:.1f}",
        "inference_p50_ms": f"{snap['inference_p50_ms']:.1f}",
        "inference_p95_ms": f"{snap['inference_p95_ms']:.1f}",
        "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
        "output_rate_hz": f"{snap['output_rate_hz']:.2f}",
        "engine_input_shape": "x".join(map(str, shape)) if shape else "any",
        "input_topic": input_topic,
    }
    for kind, count in sorted(snap["bad_input"].items()):
        values[f"bad_input.{kind}"] = count
    for kind, count in sorted(snap.get("input_notes", {}).items()):
        values[f"input_notes.{kind}"] = count
    return {k: str(v) for k, v in values.items()}
