"""The report figures carry their scale: the alert timeline has a size axis with the WARN /
ERROR limits, frame numbers and the level / truth bands; the overlay figure has frame numbers
and a colour bar in the overlay's own colours.

Why: a picture without a scale cannot be checked against the numbers beside it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ros2_fed import figures, viz
from ros2_fed.alerts import Level

N = 60
LEVELS = [0] * 40 + [1] * 8 + [2] * 12
SIZES = [0.02] * 20 + [0.02 + 0.01 * i for i in range(40)]
PRESENCE = [False] * 20 + [True] * 40


def timeline(**changes) -> np.ndarray:
    kwargs = dict(
        frame_numbers=list(range(N)),
        levels=LEVELS,
        warn_size=0.18,
        error_size=0.3,
        region_sizes=SIZES,
        presence=PRESENCE,
    )
    kwargs.update(changes)
    return figures.alert_timeline(**kwargs)


def rows_with(img: np.ndarray, colour: tuple[int, int, int], share: float) -> np.ndarray:
    """Rows in which at least ``share`` of the pixels have exactly ``colour``."""
    hits = np.all(img == np.array(colour, np.uint8), axis=2).mean(axis=1)
    return np.flatnonzero(hits >= share)


@pytest.mark.parametrize(
    "span, step", [(0.45, 0.1), (1.0, 0.2), (60, 10), (7, 2), (0.06, 0.02), (0, 1.0)]
)
def test_tick_spacing_is_round(span, step) -> None:
    assert figures.nice_step(span, 5 if span != 60 else 6) == pytest.approx(step)


def test_level_band_shows_each_frames_level_in_order() -> None:
    img = timeline()
    ok, warn, error = (figures.LEVEL_COLOURS[int(level)] for level in Level)
    band = rows_with(img, ok, 0.4)
    assert len(band) > 5  # the band: about two thirds of its width OK
    row = img[band[len(band) // 2]]
    columns = [tuple(int(v) for v in px) for px in row]
    first = {c: columns.index(c) for c in (ok, warn, error)}
    assert first[ok] < first[warn] < first[error]


def test_warn_and_error_limits_are_drawn_where_their_size_is() -> None:
    warn_colour = figures.LEVEL_COLOURS[int(Level.WARN)]
    low, high = timeline(warn_size=0.1), timeline(warn_size=0.25)
    line_low = rows_with(low, warn_colour, 0.8)
    line_high = rows_with(high, warn_colour, 0.8)
    assert len(line_low) and len(line_high)
    assert line_high.max() < line_low.min()  # a larger limit is higher up on the size axis


def test_frame_numbers_are_drawn_under_the_bands() -> None:
    """Other frame numbers change only the frame axis, under the bands."""
    a, b = timeline(), timeline(frame_numbers=list(range(100, 100 + N)))
    changed = np.flatnonzero(np.any(a != b, axis=(1, 2)))
    band_rows = rows_with(a, figures.TRUTH_COLOURS[True], 0.5)
    assert len(changed) and changed.min() > band_rows.max()


def test_size_axis_has_tick_labels() -> None:
    """Larger region sizes re-scale the axis: the tick labels left of the plot change."""
    a, b = timeline(), timeline(region_sizes=[s * 4 for s in SIZES])
    assert np.any(a[:, :60] != b[:, :60])


def overlay_rows(first: int = 15) -> list[tuple[int, np.ndarray, np.ndarray]]:
    camera = np.full((64, 128, 3), 90, np.uint8)
    conf = np.tile(np.linspace(0.7, 1.0, 128, dtype=np.float32), (64, 1))
    over = viz.overlay(camera, viz.confidence_to_rgb(conf, 0.74, 0.98), 0.6)
    return [(first, camera, over), (35, camera, over), (55, camera, over)]


def test_overlay_figure_has_a_colour_bar_in_the_overlay_colours() -> None:
    img = figures.overlay_figure(overlay_rows(), 0.74, 0.98, 0.8)
    assert img.shape[1] > 2 * 128  # camera | overlay, then the bar
    bar = img[:, 2 * 128 :]
    certain = tuple(int(v) for v in viz.confidence_to_rgb(np.array([[0.98]]), 0.74, 0.98)[0, 0])
    uncertain = tuple(int(v) for v in viz.confidence_to_rgb(np.array([[0.74]]), 0.74, 0.98)[0, 0])
    top_blue = rows_with(bar, certain, 0.05)
    bottom_red = rows_with(bar, uncertain, 0.05)
    assert len(top_blue) and len(bottom_red)
    assert top_blue.min() < bottom_red.max()  # certain at the top, uncertain at the bottom


def test_overlay_rows_are_numbered() -> None:
    a = figures.overlay_figure(overlay_rows(15), 0.74, 0.98)
    b = figures.overlay_figure(overlay_rows(16), 0.74, 0.98)
    changed = np.flatnonzero(np.any(a != b, axis=(1, 2)))
    assert len(changed) and changed.max() < 64  # only the first row's title strip


def test_overlay_figure_needs_rows() -> None:
    with pytest.raises(ValueError):
        figures.overlay_figure([], 0.0, 1.0)
