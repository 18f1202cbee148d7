"""Everything fed_node publishes per camera frame, declared once: :data:`OUTPUTS`.

Why one table: the node's publishers, the replay's output bag, ``fed_node --help``, the
``publish.NAME`` parameters (and so ``config/fed.yaml``) and the benchmarks all read these rows,
so adding an output is one row plus its renderer. A renderer turns one processed camera frame
(:class:`RenderInput`) into the output's payload: an array for an image output (published with
the row's encoding), a list of :class:`~ros2_fed.health.Status` for a diagnostics output.
Pure: numpy and ros2_fed.viz, no rclpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ros2_fed import viz
from ros2_fed.health import Status

# ROS message types an output can have (the node and the replay each convert these two).
IMAGE_MESSAGE = "sensor_msgs/msg/Image"
DIAGNOSTICS_MESSAGE = "diagnostic_msgs/msg/DiagnosticArray"
POLYGON_MESSAGE = "geometry_msgs/msg/PolygonStamped"
COMPRESSED_SUFFIX = "compressed"  # ~/NAME/compressed: an image row's CompressedImage variant
COMPRESSED_FORMATS = ("jpeg", "png")  # what image_transport's compressed plugin writes
ALERT_STAGE = "alerts"  # the per-frame stage whose status ~/alerts carries
SCENE_STAGE = "scene"  # scene health: ~/alerts carries its status after the alert status


@dataclass(frozen=True)
class OutputSettings:
    """The run-time switchable output settings, swapped as a whole so a frame sees one
    consistent set (``publish``: (name, on) per output, in table order)."""

    publish: tuple[tuple[str, bool], ...] = ()
    viz_min: float = 0.0
    viz_max: float = 1.0
    overlay_alpha: float = 0.5
    compressed_format: str = "jpeg"  # ~/NAME/compressed: jpeg | png
    jpeg_quality: int = 95

    def enabled(self, name: str) -> bool:
        return dict(self.publish).get(name, False)


@dataclass(frozen=True)
class RenderInput:
    """What a renderer sees of one processed camera frame."""

    rgb: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    settings: OutputSettings
    palette: np.ndarray
    statuses: Mapping[str, Status] = field(default_factory=dict)


Renderer = Callable[[RenderInput], Any]


@dataclass(frozen=True)
class Output:
    """One output topic ``~/NAME`` (``~/CAMERA/NAME`` with cameras)."""

    name: str
    message: str  # IMAGE_MESSAGE | DIAGNOSTICS_MESSAGE | POLYGON_MESSAGE
    encoding: str  # image encoding; "" for a diagnostics output
    render: Renderer
    default_on: bool
    what: str  # one line for --help and the publish.NAME parameter
    compressed: bool = False  # also ~/TOPIC/compressed (CompressedImage), when listened to
    bag: bool = True  # the replay's output bag can hold it (images and diagnostics)
    topic: str = ""  # the topic under ~/ when it differs from the name

    @property
    def is_image(self) -> bool:
        return self.message == IMAGE_MESSAGE

    @property
    def topic_name(self) -> str:
        return self.topic or self.name

    @property
    def parameter(self) -> str:
        return f"publish.{self.name}"

    @property
    def parameter_description(self) -> str:
        also = f" and ~/{self.topic_name}/{COMPRESSED_SUFFIX}" if self.compressed else ""
        return f"Publish ~/{self.topic_name}{also} ({self.what})."


def _segmentation(frame: RenderInput) -> np.ndarray:
    return frame.labels


def _segmentation_color(frame: RenderInput) -> np.ndarray:
    return viz.colorize(frame.labels, frame.palette)


def _confidence(frame: RenderInput) -> np.ndarray:
    return frame.confidence.astype(np.float32, copy=False)


def _overlay(frame: RenderInput) -> np.ndarray:
    settings = frame.settings
    colours = viz.confidence_to_rgb(frame.confidence, settings.viz_min, settings.viz_max)
    return viz.overlay(frame.rgb, colours, settings.overlay_alpha)


def _alerts(frame: RenderInput) -> Optional[list[Status]]:
    """The alert status first (readers of one status take it), then the scene status."""
    status = frame.statuses.get(ALERT_STAGE)
    if status is None:
        return None
    scene = frame.statuses.get(SCENE_STAGE)
    return [status] if scene is None else [status, scene]


def _alert_region(frame: RenderInput) -> Optional[list[tuple[float, float]]]:
    """The alert's region as the four corners of its box in image pixels (x right, y down;
    the outer edges of the inclusive pixel box, clockwise from the top left); ``[]`` when the
    frame has no region, None without an alert status."""
    status = frame.statuses.get(ALERT_STAGE)
    if status is None:
        return None
    box = region_box(status.values.get("region_bbox"))
    if box is None:
        return []
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1 + 1, y0), (x1 + 1, y1 + 1), (x0, y1 + 1)]


def region_box(text: Any) -> Optional[tuple[int, int, int, int]]:
    """The alert status' ``region_bbox`` value ("(x_min, y_min, x_max, y_max)", or "None") as
    integers; None when it holds no box."""
    try:
        values = [int(v) for v in str(text).strip("()[] ").split(",")]
    except ValueError:
        return None
    return tuple(values) if len(values) == 4 else None  # type: ignore[return-value]


OUTPUTS: tuple[Output, ...] = (
    Output("segmentation", IMAGE_MESSAGE, "mono8", _segmentation, True, "mono8 train ids"),
    Output(
        "segmentation_color",
        IMAGE_MESSAGE,
        "rgb8",
        _segmentation_color,
        True,
        "rgb8, class palette",
        compressed=True,
    ),
    Output("confidence", IMAGE_MESSAGE, "32FC1", _confidence, True, "32FC1, 1 = certain"),
    Output(
        "overlay",
        IMAGE_MESSAGE,
        "rgb8",
        _overlay,
        True,
        "rgb8 camera image blended with the red (uncertain) - blue (certain) confidence map, "
        "for rviz",
        compressed=True,
    ),
    Output(
        "alerts",
        DIAGNOSTICS_MESSAGE,
        "",
        _alerts,
        True,
        "DiagnosticArray per processed frame: the alert status, then the scene status",
    ),
    Output(
        "alert_region",
        POLYGON_MESSAGE,
        "",
        _alert_region,
        True,
        "PolygonStamped per processed frame: the alert region's box in image pixels (x right, "
        "y down), no points when there is no region",
        bag=False,
        topic="alerts/region",
    ),
)
OUTPUT_BY_NAME: dict[str, Output] = {output.name: output for output in OUTPUTS}
#: The outputs the replay's output bag can hold (images and diagnostics), in table order; the
#: node publishes every row of :data:`OUTPUTS`.
OUTPUT_NAMES: tuple[str, ...] = tuple(o.name for o in OUTPUTS if o.bag)


def default_settings() -> OutputSettings:
    """Every output at its default, the full colour range."""
    return OutputSettings(publish=tuple((o.name, o.default_on) for o in OUTPUTS))


def render(frame: RenderInput, wanted: Any) -> dict[str, Any]:
    """The payload of every output named in ``wanted`` (table order); an output whose renderer
    has nothing for this frame (no alert status) is left out. Only what is wanted is computed:
    colourising and blending cost more than the engine on small models."""
    wanted = set(wanted)
    out: dict[str, Any] = {}
    for output in OUTPUTS:
        if output.name in wanted:
            payload = output.render(frame)
            if payload is not None:
                out[output.name] = payload
    return out


def viz_palette(metadata: Mapping[str, Any]) -> np.ndarray:
    """The engine's palette as (N, 3) uint8, or viz's default when the engine has none."""
    palette = metadata.get("palette")
    if palette is not None:
        arr = np.asarray(palette, dtype=np.uint8)
        if arr.ndim == 2 and arr.shape[1] == 3 and len(arr):
            return arr
    return viz.default_palette(max(len(metadata.get("class_names") or []), 1))


def outputs_help() -> list[str]:
    """``--help`` lines: one per output (topic, encoding or message type, default on/off)."""
    lines = []
    for output in OUTPUTS:
        kind = output.encoding or output.message.rsplit("/", 1)[-1]
        default = "on" if output.default_on else "off"
        lines.append(f"  ~/{output.topic_name:<19} {kind:<16} {default:<4} {output.what}")
        if output.compressed:
            topic = f"{output.topic_name}/{COMPRESSED_SUFFIX}"
            lines.append(
                f"  ~/{topic:<19} {'CompressedImage':<16} {default:<4} the same, compressed "
                "(compressed.format)"
            )
    return lines
