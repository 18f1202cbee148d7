"""ros2_fed.viz: palettes, colorize, the red-blue confidence map, overlay, mosaic."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ros2_fed import viz


def test_cityscapes_palette() -> None:
    assert viz.CITYSCAPES_PALETTE.shape == (19, 3) and viz.CITYSCAPES_PALETTE.dtype == np.uint8
    assert tuple(viz.CITYSCAPES_PALETTE[0]) == (128, 64, 128)  # road
    assert tuple(viz.CITYSCAPES_PALETTE[13]) == (0, 0, 142)  # car
    assert tuple(viz.CITYSCAPES_PALETTE[18]) == (119, 11, 32)  # bicycle


def test_default_palette_shapes_and_determinism() -> None:
    for n in (1, 5, 19, 20, 40, 255):
        pal = viz.default_palette(n)
        assert pal.shape == (n, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(viz.default_palette(19), viz.CITYSCAPES_PALETTE)
    np.testing.assert_array_equal(viz.default_palette(7), viz.CITYSCAPES_PALETTE[:7])
    big = viz.default_palette(60)
    np.testing.assert_array_equal(big[:40], viz.default_palette(40))  # prefix-stable
    np.testing.assert_array_equal(big, viz.default_palette(60))  # deterministic
    assert len({tuple(c) for c in big}) == 60  # all distinct
    assert viz.default_palette(0).shape == (0, 3)
    viz.default_palette(3)[0] = 0  # a copy: the cache is not affected
    assert tuple(viz.default_palette(3)[0]) == (128, 64, 128)


def test_colorize_palette_and_ignore() -> None:
    palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    labels = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    out = viz.colorize(labels, palette)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], palette)
    np.testing.assert_array_equal(out[1], [[0, 0, 0], [0, 0, 0], [40, 50, 60]])
    # other integer types, including negative and > 255 ids
    wide = np.array([[0, -1, 2, 1000]], np.int64)
    np.testing.assert_array_equal(
        viz.colorize(wide, palette)[0], [[10, 20, 30], [0, 0, 0], [70, 80, 90], [0, 0, 0]]
    )
    np.testing.assert_array_equal(viz.colorize(labels.astype(np.int32), palette), out)
    # a full 256-entry palette still maps 255 to its colour; 19 classes map it to black
    assert tuple(viz.colorize(np.array([[255]], np.uint8), viz.default_palette(256))[0, 0]) != (
        0,
        0,
        0,
    )
    assert tuple(viz.colorize(np.array([[255]], np.uint8), viz.CITYSCAPES_PALETTE)[0, 0]) == (
        0,
        0,
        0,
    )


def test_colorize_labels_default_palette() -> None:
    labels = np.array([[0, 13, 255]], np.uint8)
    out = viz.colorize_labels(labels)
    np.testing.assert_array_equal(out[0], [[128, 64, 128], [0, 0, 142], [0, 0, 0]])
    palette = np.array([[1, 2, 3]] * 14, np.uint8)
    np.testing.assert_array_equal(
        viz.colorize_labels(labels, palette)[0], [[1, 2, 3], [1, 2, 3], [0, 0, 0]]
    )


def test_confidence_endpoints_and_nan() -> None:
    conf = np.array([[0.0, 1.0, np.nan, -3.0, 7.0, 0.5]], np.float32)
    rgb = viz.confidence_to_rgb(conf)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 0, 0)  # uncertain: red
    assert tuple(rgb[0, 1]) == (0, 0, 255)  # certain: blue
    assert tuple(rgb[0, 2]) == (0, 0, 0)  # NaN: black
    assert tuple(rgb[0, 3]) == (255, 0, 0)  # below vmin: clipped
    assert tuple(rgb[0, 4]) == (0, 0, 255)  # above vmax: clipped
    assert tuple(rgb[0, 5]) == (255, 255, 255)  # midpoint: white
    # custom range
    rgb = viz.confidence_to_rgb(np.array([[0.2, 0.8, 0.1, 0.5]], np.float64), vmin=0.2, vmax=0.8)
    assert [tuple(c) for c in rgb[0]] == [(255, 0, 0), (0, 0, 255), (255, 0, 0), (255, 255, 255)]
    with pytest.raises(ValueError):
        viz.confidence_to_rgb(conf, vmin=0.5, vmax=0.5)


def test_confidence_ramp_is_monotone_and_smooth() -> None:
    ramp = np.linspace(0.0, 1.0, 1001, dtype=np.float32)[None, :]
    rgb = viz.confidence_to_rgb(ramp)[0].astype(int)
    r, b = rgb[:, 0], rgb[:, 2]
    assert np.all(np.diff(r) <= 0) and np.all(np.diff(b) >= 0)  # redness falls, blueness rises
    assert np.all(np.diff(b - r) >= 0) and (b - r)[-1] - (b - r)[0] == 510
    assert np.abs(np.diff(rgb, axis=0)).max() <= 3  # no jumps
    lut = viz.confidence_lut()
    assert lut.shape == (256, 3) and tuple(lut[0]) == (0, 0, 0)
    assert tuple(lut[1]) == (255, 0, 0) and tuple(lut[255]) == (0, 0, 255)


def test_confidence_full_hd_shape() -> None:
    """1920x1080 in, one RGB image out (its speed, in copies of the same bytes, is
    benchmarks/conversion_speed.py's: tests never time themselves)."""
    conf = np.random.default_rng(0).random((1080, 1920), dtype=np.float32)
    conf[0, :3] = (0.0, 1.0, np.nan)
    out = viz.confidence_to_rgb(conf)
    assert out.shape == (1080, 1920, 3) and out.dtype == np.uint8
    assert out[0, :3].tolist() == [[255, 0, 0], [0, 0, 255], [0, 0, 0]]  # red, blue, NaN black


def test_overlay_alpha_endpoints_and_blend() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    colours = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(viz.overlay(rgb, colours, 0.0), rgb)
    np.testing.assert_array_equal(viz.overlay(rgb, colours, 1.0), colours)
    half = viz.overlay(rgb, colours, 0.5)
    expected = 0.5 * rgb.astype(float) + 0.5 * colours.astype(float)
    assert half.dtype == np.uint8 and np.abs(half - expected).max() <= 0.5 + 1e-9
    quarter = viz.overlay(rgb, colours, 0.25)
    assert np.abs(quarter - (0.75 * rgb + 0.25 * colours)).max() <= 0.5 + 1e-6
    # non-contiguous input (e.g. a view of a padded message buffer)
    padded = np.zeros((6, 9, 3), np.uint8)
    padded[:, :7] = rgb
    np.testing.assert_array_equal(viz.overlay(padded[:, :7], colours, 0.0), rgb)
    with pytest.raises(ValueError):
        viz.overlay(rgb, colours[:5], 0.5)
    with pytest.raises(ValueError):
        viz.overlay(rgb, colours, 1.5)


def test_mosaic_shape_and_placement() -> None:
    a = np.full((10, 20, 3), 50, np.uint8)
    b = np.full((8, 12), 200, np.uint8)  # gray, smaller
    c = np.ones((10, 20), np.float32)  # float in [0, 1]
    grid = viz.mosaic([a, b, c], captions=["a", "b", None], columns=2)
    assert grid.shape == (2 * (10 + 22), 2 * 20, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[22:32, 0:20], a)
    assert np.all(grid[22:30, 20:32] == 200) and np.all(grid[22:32, 32:40] == 0)  # padded cell
    assert grid[0:22, 0:20].max() == 255  # caption text drawn
    assert grid[32:54, 0:20].max() == 0  # no caption for c
    np.testing.assert_array_equal(grid[54:64, 0:20], 255)
    plain = viz.mosaic([a, a, a, a])  # 2x2, no caption strips
    assert plain.shape == (20, 40, 3)
    assert viz.mosaic([a, a, a], columns=5).shape == (10, 60, 3)
    with pytest.raises(ValueError):
        viz.mosaic([])
    with pytest.raises(ValueError):
        viz.mosaic([a, b], captions=["only one"])


def test_report_figure_row_uses_viz() -> None:
    from training.report import figure_row

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    pred = rng.integers(0, 19, (32, 64), dtype=np.uint8)
    maps = {"FED-U": rng.random((32, 64)).astype(np.float32)}
    row = figure_row(
        image,
        pred,
        pred,
        None,
        maps,
        {"FED-U": [0.0, 1.0]},
        viz.default_palette(19),
        tile_width=64,
    )
    assert row.shape == (32 + 22, 4 * 64, 3)


def test_pure_python_modules_do_not_import_rclpy() -> None:
    code = (
        "import sys; import ros2_fed.alerts, ros2_fed.viz; "
        "sys.exit(1 if any(m == 'rclpy' or m.startswith('rclpy.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
