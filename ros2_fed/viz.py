"""Visualisation: class palettes, the red (uncertain) - blue (certain) confidence map, overlays,
mosaics.

Pure python (numpy + OpenCV, no rclpy); every per-pixel step is a table look-up or one OpenCV
call, so a 1920x1080 frame costs a few milliseconds. All images are RGB, HxWx3 uint8.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import Optional, Sequence

import cv2
import numpy as np

from ros2_fed import names

# Cityscapes trainId colours (RGB), trainIds 0..18.
CITYSCAPES_PALETTE: np.ndarray = np.array(names.CITYSCAPES_PALETTE, dtype=np.uint8)
CITYSCAPES_PALETTE.setflags(write=False)

UNCERTAIN_RGB = (255, 0, 0)  # confidence at or below vmin
MIDDLE_RGB = (255, 255, 255)  # halfway between vmin and vmax
CERTAIN_RGB = (0, 0, 255)  # confidence at or above vmax
NAN_RGB = (0, 0, 0)


def _extra_colour(k: int) -> tuple[int, int, int]:
    """The k-th colour after the Cityscapes ones: golden-ratio hue steps, three brightness
    bands."""
    hue = (0.13 + k * 0.6180339887498949) % 1.0
    sat = (0.95, 0.65, 0.8)[k % 3]
    val = (0.95, 0.75, 0.55)[(k // 3) % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


@functools.lru_cache(maxsize=16)
def _default_palette(n: int) -> np.ndarray:
    out = np.empty((n, 3), np.uint8)
    k = min(n, len(CITYSCAPES_PALETTE))
    out[:k] = CITYSCAPES_PALETTE[:k]
    for i in range(k, n):
        out[i] = _extra_colour(i - k)
    out.setflags(write=False)
    return out


def default_palette(n: int) -> np.ndarray:
    """(n, 3) uint8: the Cityscapes colours for the first 19 classes, then deterministic extra
    colours (well-spread hues). Prefix-stable: ``default_palette(n)[:m] == default_palette(m)``."""
    n = int(n)
    if n < 0:
        raise ValueError(f"palette size must be >= 0, got {n}")
    return _default_palette(n).copy()


def _as_palette(palette: np.ndarray) -> np.ndarray:
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"palette must be (N, 3), got shape {pal.shape}")
    return pal.astype(np.uint8, copy=False)


def _lut_rgb(index: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """HxW uint8 index + (256, 3) uint8 table -> HxWx3 uint8 (three 1-channel LUTs + merge)."""
    index = np.ascontiguousarray(index)
    return cv2.merge([cv2.LUT(index, np.ascontiguousarray(lut[:, c])) for c in range(3)])


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 RGB with ``palette[id]``; ids outside the palette
    (negative, ``>= len(palette)``, e.g. 255 = ignore) are black."""
    lab = np.asarray(labels)
    if lab.ndim == 3 and lab.shape[2] == 1:
        lab = lab[..., 0]
    if lab.ndim != 2:
        raise ValueError(f"labels must be HxW, got shape {lab.shape}")
    pal = _as_palette(palette)
    n = min(len(pal), 256)
    lut = np.zeros((256, 3), np.uint8)
    lut[:n] = pal[:n]
    if lab.dtype == np.uint8:
        return _lut_rgb(lab, lut)
    if lab.dtype == bool:
        return _lut_rgb(lab.view(np.uint8), lut)
    if lab.size and (lab.min() < 0 or lab.max() >= n):
        outside = (lab < 0) | (lab >= n)
        out = _lut_rgb(np.where(outside, 0, lab).astype(np.uint8), lut)
        out[outside] = 0
        return out
    return _lut_rgb(lab.astype(np.uint8), lut)


def colorize_labels(labels: np.ndarray, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`colorize` with ``palette`` or, when None, ``default_palette(255)`` (255 = ignore is
    black)."""
    return colorize(labels, _default_palette(255) if palette is None else palette)


@functools.lru_cache(maxsize=1)
def confidence_lut() -> np.ndarray:
    """(256, 3) uint8: entry 0 = NaN (black); entries 1..255 = the ramp from vmin to vmax.

    The ramp is diverging: pure red (255, 0, 0) -> white (255, 255, 255) at the middle -> pure
    blue (0, 0, 255), linear in each half. Red never increases and blue never decreases along it.
    """
    t = np.linspace(0.0, 1.0, 255)
    lo, mid, hi = (np.array(c, np.float64) for c in (UNCERTAIN_RGB, MIDDLE_RGB, CERTAIN_RGB))
    first = lo + np.clip(2 * t, 0, 1)[:, None] * (mid - lo)
    ramp = np.where(
        (t <= 0.5)[:, None], first, mid + np.clip(2 * t - 1, 0, 1)[:, None] * (hi - mid)
    )
    lut = np.empty((256, 3), np.uint8)
    lut[0] = NAN_RGB
    lut[1:] = np.round(ramp).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def confidence_map(confidence: np.ndarray) -> np.ndarray:
    """HxW (or HxWx1) confidence as a float32/float64 HxW array; anything else is a ValueError."""
    conf = np.asarray(confidence)
    if conf.ndim == 3 and conf.shape[2] == 1:
        conf = conf[..., 0]
    if conf.ndim != 2:
        raise ValueError(f"confidence must be HxW, got shape {conf.shape}")
    if conf.dtype not in (np.float32, np.float64):
        conf = conf.astype(np.float32)
    return conf


def confidence_to_rgb(confidence: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """HxW confidence -> HxWx3 uint8 RGB: red = uncertain (<= vmin), white halfway, blue = certain
    (>= vmax), NaN black. 255 levels (see :func:`confidence_lut`)."""
    vmin, vmax = float(vmin), float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmax <= vmin:
        raise ValueError(f"need finite vmin < vmax, got vmin={vmin} vmax={vmax}")
    conf = confidence_map(confidence)
    clipped = np.clip(conf, vmin, vmax)  # NaN stays NaN
    scale = 254.0 / (vmax - vmin)
    # 1 + round((c - vmin) * scale) in 1..255; OpenCV's saturating conversion turns NaN into 0.
    index = cv2.convertScaleAbs(clipped, alpha=scale, beta=1.0 - vmin * scale)
    return _lut_rgb(index, confidence_lut())


def overlay(rgb: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * colours`` as uint8 (rounded); alpha 0 / 1 give exact
    copies."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = np.asarray(rgb)
    if base.ndim == 2:
        base = cv2.cvtColor(np.ascontiguousarray(base, dtype=np.uint8), cv2.COLOR_GRAY2RGB)
    top = np.asarray(colours)
    if base.shape != top.shape:
        raise ValueError(f"overlay needs equal shapes, got {base.shape} and {top.shape}")
    base = np.ascontiguousarray(base, dtype=np.uint8)
    top = np.ascontiguousarray(top, dtype=np.uint8)
    if alpha == 0.0:
        return base.copy()
    if alpha == 1.0:
        return top.copy()
    return cv2.addWeighted(base, 1.0 - alpha, top, alpha, 0.0)


def _as_rgb_tile(tile: np.ndarray) -> np.ndarray:
    t = np.asarray(tile)
    if t.dtype == bool:
        t = t.astype(np.uint8) * 255
    elif t.dtype != np.uint8:
        if np.issubdtype(t.dtype, np.floating):  # floats are taken as [0, 1]
            t = np.round(np.clip(np.nan_to_num(t), 0.0, 1.0) * 255)
        t = np.clip(t, 0, 255).astype(np.uint8)
    if t.ndim == 3 and t.shape[2] == 1:
        t = t[..., 0]
    if t.ndim == 2:
        t = cv2.cvtColor(np.ascontiguousarray(t), cv2.COLOR_GRAY2RGB)
    elif t.ndim == 3 and t.shape[2] == 4:
        t = t[..., :3]
    if t.ndim != 3 or t.shape[2] != 3:
        raise ValueError(f"tile must be HxW, HxWx3 or HxWx4, got shape {t.shape}")
    return t


def mosaic(
    tiles: Sequence[np.ndarray],
    captions: Optional[Sequence[Optional[str]]] = None,
    columns: Optional[int] = None,
    caption_height: int = 22,
) -> np.ndarray:
    """Tiles in a grid (row-major), each cell as big as the largest tile (tiles top-left, black
    padding); with ``captions`` every cell gets a black strip of ``caption_height`` rows above the
    tile with its caption in white. ``columns`` defaults to ceil(sqrt(len(tiles))). Gray (HxW),
    RGBA, bool and float ([0, 1]) tiles are accepted; the result is RGB uint8 of shape
    ``(rows * (cell_h + strip), columns * cell_w, 3)``."""
    images = [_as_rgb_tile(t) for t in tiles]
    if not images:
        raise ValueError("mosaic needs at least one tile")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} tiles")
    n = len(images)
    cols = int(columns) if columns is not None else math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    cell_h = max(t.shape[0] for t in images)
    cell_w = max(t.shape[1] for t in images)
    strip = int(caption_height) if captions is not None else 0
    out = np.zeros((rows * (cell_h + strip), cols * cell_w, 3), np.uint8)
    for i, tile in enumerate(images):
        r, c = divmod(i, cols)
        y, x = r * (cell_h + strip), c * cell_w
        out[y + strip : y + strip + tile.shape[0], x : x + tile.shape[1]] = tile
        if strip and captions is not None and captions[i]:
            bar = np.zeros((strip, cell_w, 3), np.uint8)
            scale = max(0.3, min(0.5, strip / 44.0))
            cv2.putText(
                bar,
                str(captions[i]),
                (4, max(strip - 6, 8)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
            out[y : y + strip, x : x + cell_w] = bar
    return out


def ground_truth_view(
    pred: np.ndarray, label: Optional[np.ndarray], ood: Optional[np.ndarray]
) -> np.ndarray:
    """The paper's ground-truth view (fed_eval figures, replay mosaics): blue = correctly
    classified, red = misclassified (IDM) or OOD, black = void / no ground truth. 255 = void."""
    h, w = pred.shape
    view = np.zeros((h, w, 3), np.uint8)
    wrong = np.zeros((h, w), bool)
    valid = np.zeros((h, w), bool)
    if label is not None:
        valid |= label != 255
        wrong |= (pred != label) & (label != 255)
    if ood is not None:
        valid |= ood != 255
        wrong |= ood == 1
        if label is None:
            valid &= ood != 255
    view[valid & ~wrong] = (0, 0, 255)
    view[wrong] = (255, 0, 0)
    return view
