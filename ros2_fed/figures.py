"""Report figures a reader can read without the code: the alert timeline with axes and a legend,
and the camera | overlay strip with frame numbers, a caption and a colour bar.

Why a module of its own: the replay report and the demo draw them, and a figure without a scale
(which frames? what size is the WARN limit? which confidence is red?) cannot be checked against
the numbers next to it. Pure numpy + OpenCV (no rclpy, no plotting library on a vehicle); all
images are RGB uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ros2_fed import viz
from ros2_fed.alerts import Level

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
AXIS = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Alert level colours (diagnostic_msgs levels; 3 = STALE) and the ground-truth band's.
LEVEL_COLOURS = {
    int(Level.OK): (40, 160, 60),
    int(Level.WARN): (240, 160, 0),
    int(Level.ERROR): (220, 40, 40),
    3: (120, 120, 120),
}
LEVEL_LABELS = {int(Level.OK): "OK", int(Level.WARN): "WARN", int(Level.ERROR): "ERROR"}
NO_MESSAGE = (60, 60, 60)
TRUTH_COLOURS = {True: (250, 250, 250), False: (50, 50, 50), None: (120, 120, 120)}


def put_text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float = 0.4,
    colour: tuple[int, int, int] = TEXT,
    anchor: str = "left",
) -> int:
    """Draw ``text`` with its baseline at ``org`` (x is its left, right or centre edge per
    ``anchor``); returns the text's width in pixels."""
    (w, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    x = {"left": org[0], "right": org[0] - w, "centre": org[0] - w // 2}[anchor]
    cv2.putText(img, text, (int(x), int(org[1])), FONT, scale, colour, 1, cv2.LINE_AA)
    return w


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 x 10^k) giving at most about ``ticks`` intervals."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power
    return 10.0 * power


@dataclass(frozen=True)
class _Frame:
    """The plot area of the timeline: pixel columns of the frames and rows of the size axis."""

    left: int
    right: int
    top: int
    bottom: int
    frames: int
    size_top: float

    def x_range(self, i: int) -> tuple[int, int]:
        width = self.right - self.left
        x0 = self.left + int(i * width / self.frames)
        return x0, max(self.left + int((i + 1) * width / self.frames), x0 + 1)

    def x_centre(self, i: int) -> int:
        return self.left + int((i + 0.5) * (self.right - self.left) / self.frames)

    def y_of(self, size: float) -> int:
        share = min(max(size / self.size_top, 0.0), 1.0)
        return int(round(self.bottom - share * (self.bottom - self.top)))


def alert_timeline(
    frame_numbers: Sequence[int],
    levels: Sequence[Optional[int]],
    warn_size: float,
    error_size: float,
    region_sizes: Sequence[Optional[float]],
    presence: Sequence[Optional[bool]],
    width: int = 900,
    size_unit: str = "",
    scene_levels: Optional[Sequence[Optional[int]]] = None,
) -> np.ndarray:
    """Per frame: the alert rule's largest uncertain region (white line, on a size axis with the
    WARN / ERROR limits), the published alert level (band), the scene status' level (band, when
    ``scene_levels`` are given: :mod:`ros2_fed.scene`) and, under them, the ground truth (is an
    unknown object of >= 100 px visible?), over a frame-number axis, with a legend."""
    n = max(len(frame_numbers), 1)
    sizes = [s for s in region_sizes if s is not None and math.isfinite(s)]
    step = nice_step(max([error_size * 1.5] + sizes))
    size_top = step * math.ceil(max([error_size * 1.5] + sizes) / step)
    plot = _Frame(62, width - 14, 34, 174, n, size_top)
    band, gap = 14, 4
    level_y0 = plot.bottom + 8
    scene_y0 = level_y0 + band + gap
    truth_y0 = scene_y0 + (band + gap if scene_levels is not None else 0)
    axis_y = truth_y0 + band
    img = np.full((axis_y + 64, width, 3), BACKGROUND, np.uint8)
    put_text(img, "Alert timeline: the largest uncertain region on the road, per frame", (8, 16))
    _draw_size_axis(img, plot, step, warn_size, error_size, size_unit)
    _draw_region_line(img, plot, region_sizes)
    _draw_bands(img, plot, levels, presence, level_y0, truth_y0, band)
    if scene_levels is not None:
        _draw_level_band(img, plot, scene_levels, scene_y0, band, "scene")
    _draw_frame_axis(img, plot, frame_numbers, axis_y)
    _draw_timeline_legend(img, axis_y + 46)
    return img


def _draw_size_axis(
    img: np.ndarray, plot: _Frame, step: float, warn: float, error: float, unit: str
) -> None:
    """Left axis with round ticks, light grid lines, and the WARN / ERROR limits labelled."""
    cv2.line(img, (plot.left, plot.top), (plot.left, plot.bottom), AXIS, 1)
    ticks = int(round(plot.size_top / step))
    for k in range(ticks + 1):
        value = k * step
        y = plot.y_of(value)
        cv2.line(img, (plot.left - 4, y), (plot.left, y), AXIS, 1)
        cv2.line(img, (plot.left + 1, y), (plot.right, y), (44, 44, 44), 1)
        put_text(img, f"{round(value, 6):g}", (plot.left - 7, y + 4), 0.35, AXIS, "right")
    put_text(img, "region size" + (f" ({unit})" if unit else ""), (8, plot.top - 6), 0.35, AXIS)
    for value, name in ((warn, "WARN"), (error, "ERROR")):
        colour = LEVEL_COLOURS[int(Level[name])]
        y = plot.y_of(value)
        cv2.line(img, (plot.left, y), (plot.right, y), colour, 1)  # exact colour, no AA
        put_text(img, f"{name} {value:g}", (plot.right - 4, y - 4), 0.35, colour, "right")


def _draw_region_line(
    img: np.ndarray, plot: _Frame, region_sizes: Sequence[Optional[float]]
) -> None:
    """The region size per frame: a white line through the frames that have one."""
    points = np.array(
        [
            [plot.x_centre(i), plot.y_of(v)]
            for i, v in enumerate(region_sizes)
            if v is not None and math.isfinite(v)
        ],
        np.int32,
    )
    if len(points) > 1:
        cv2.polylines(img, [points], False, (255, 255, 255), 1, cv2.LINE_AA)
    for x, y in points:
        cv2.circle(img, (int(x), int(y)), 2, (255, 255, 255), -1, cv2.LINE_AA)


def _draw_bands(
    img: np.ndarray,
    plot: _Frame,
    levels: Sequence[Optional[int]],
    presence: Sequence[Optional[bool]],
    level_y0: int,
    truth_y0: int,
    band: int,
) -> None:
    """The published alert level and the ground truth, one column per frame, labelled."""
    for i, level in enumerate(levels):
        x0, x1 = plot.x_range(i)
        colour = NO_MESSAGE if level is None else LEVEL_COLOURS.get(int(level), NO_MESSAGE)
        img[level_y0 : level_y0 + band, x0:x1] = colour
    for i, present in enumerate(presence):
        x0, x1 = plot.x_range(i)
        img[truth_y0 : truth_y0 + band, x0:x1] = TRUTH_COLOURS[present]
    put_text(img, "alert", (plot.left - 7, level_y0 + band - 3), 0.35, TEXT, "right")
    put_text(img, "truth", (plot.left - 7, truth_y0 + band - 3), 0.35, TEXT, "right")


def _draw_level_band(
    img: np.ndarray,
    plot: _Frame,
    levels: Sequence[Optional[int]],
    y0: int,
    band: int,
    label: str,
) -> None:
    """One labelled band of status levels, one column per frame (no status: dark grey)."""
    for i, level in enumerate(levels):
        x0, x1 = plot.x_range(i)
        colour = NO_MESSAGE if level is None else LEVEL_COLOURS.get(int(level), NO_MESSAGE)
        img[y0 : y0 + band, x0:x1] = colour
    put_text(img, label, (plot.left - 7, y0 + band - 3), 0.35, TEXT, "right")


def _draw_frame_axis(
    img: np.ndarray, plot: _Frame, frame_numbers: Sequence[int], axis_y: int
) -> None:
    """Frame-number ticks under the bands at round frame numbers, and the axis name."""
    cv2.line(img, (plot.left, axis_y), (plot.right, axis_y), AXIS, 1)
    numbers = list(frame_numbers)
    if numbers:
        step = max(1, int(nice_step(numbers[-1] - numbers[0] + 1, 10)))
        for i, number in enumerate(numbers):
            if number % step == 0:
                x = plot.x_centre(i)
                cv2.line(img, (x, axis_y), (x, axis_y + 4), AXIS, 1)
                put_text(img, str(number), (x, axis_y + 16), 0.35, AXIS, "centre")
    put_text(img, "frame", ((plot.left + plot.right) // 2, axis_y + 30), 0.4, TEXT, "centre")


def _draw_timeline_legend(img: np.ndarray, baseline: int) -> None:
    """One line of colour keys: the levels, then the ground-truth band's colours."""
    keys = [(LEVEL_COLOURS[k], name) for k, name in LEVEL_LABELS.items()]
    keys += [
        (NO_MESSAGE, "no alert"),
        (TRUTH_COLOURS[True], "truth: unknown object >= 100 px"),
        (TRUTH_COLOURS[False], "none"),
        (TRUTH_COLOURS[None], "smaller / no truth"),
    ]
    x = 8
    put_text(img, "region size", (x, baseline), 0.35)
    x += 78
    cv2.line(img, (x, baseline - 4), (x + 16, baseline - 4), (255, 255, 255), 1, cv2.LINE_AA)
    x += 26
    for colour, name in keys:
        cv2.rectangle(img, (x, baseline - 9), (x + 10, baseline + 1), colour, -1)
        cv2.rectangle(img, (x, baseline - 9), (x + 10, baseline + 1), AXIS, 1)
        x += 14 + put_text(img, name, (x + 14, baseline), 0.35) + 12


def overlay_figure(
    rows: Sequence[tuple[int, np.ndarray, np.ndarray]],
    vmin: float,
    vmax: float,
    threshold: Optional[float] = None,
) -> np.ndarray:
    """Camera | overlay side by side, one row per ``(frame number, camera, overlay)``, each row
    titled with its frame number, under a caption and beside a colour bar of the confidence
    colours (``vmin`` .. ``vmax``, the alert ``threshold`` marked)."""
    if not rows:
        raise ValueError("overlay_figure needs at least one row")
    strip, caption, bar_w = 18, 40, 120
    tiles = [np.concatenate([camera, over], axis=1) for _, camera, over in rows]
    width = max(t.shape[1] for t in tiles)
    height = caption + sum(t.shape[0] + strip for t in tiles)
    img = np.full((height, width + bar_w, 3), BACKGROUND, np.uint8)
    put_text(img, "fed_node overlay: camera | overlay (red = uncertain, blue = certain)", (8, 16))
    put_text(
        img,
        "colour bar: the confidence each colour stands for (range and alert threshold from the "
        "model's calibration unless set)",
        (8, 32),
        0.35,
    )
    y = caption
    for (number, camera, _), tile in zip(rows, tiles):
        put_text(img, f"frame {number}: camera", (6, y + strip - 5), 0.4)
        put_text(img, "overlay", (camera.shape[1] + 6, y + strip - 5), 0.4)
        img[y + strip : y + strip + tile.shape[0], : tile.shape[1]] = tile
        y += strip + tile.shape[0]
    _draw_colour_bar(img, width + 14, caption + strip, height - 8, vmin, vmax, threshold)
    return img


def _draw_colour_bar(
    img: np.ndarray,
    x: int,
    top: int,
    bottom: int,
    vmin: float,
    vmax: float,
    threshold: Optional[float],
) -> None:
    """A vertical bar of the overlay's colours, certain (vmax) at the top, with its values."""
    rows = max(bottom - top, 2)
    values = np.linspace(vmax, vmin, rows, dtype=np.float32)[:, None].repeat(16, axis=1)
    img[top : top + rows, x : x + 16] = viz.confidence_to_rgb(values, vmin, vmax)
    cv2.rectangle(img, (x - 1, top - 1), (x + 16, top + rows), AXIS, 1)  # around, not over

    def y_of(value: float) -> int:
        return int(round(top + (vmax - value) / (vmax - vmin) * (rows - 1)))

    put_text(img, "confidence", (x - 6, top - 6), 0.35)
    for value, name in ((vmax, "certain"), (vmin, "uncertain")):
        put_text(img, f"{value:.2f}", (x + 20, y_of(value) + 4), 0.35)
        put_text(img, name, (x + 20, y_of(value) + (16 if value == vmax else -10)), 0.3, AXIS)
    if threshold is not None and vmin < threshold < vmax:
        y = y_of(threshold)
        cv2.line(img, (x - 3, y), (x + 18, y), (0, 0, 0), 1)
        put_text(img, f"{threshold:.2f}", (x + 20, y + 4), 0.35)
        put_text(img, "alert threshold", (x + 20, y + 16), 0.3, AXIS)
