"""ros2_fed.alerts: the alert state machine, region sizes, ROIs, largest region, validation.

The expected level sequences are written out by hand from the rules in the module docstring
(not computed by a second implementation). Frames are 100x200 confidence maps holding one
uncertain (0.0) square of side ``round(size * 100)`` pixels, so its region size is exactly
``size`` image heights; the state-machine tests use the round limits of :data:`BASE`.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from ros2_fed.alerts import (
    AlertConfig,
    AlertMonitor,
    AlertState,
    Level,
    corridor_mask,
    drivable_class_ids,
    drivable_mask,
    largest_region,
    shrink,
    stamp_to_str,
)

OK, WARN, ERROR = Level.OK, Level.WARN, Level.ERROR
H, W = 100, 200
BASE = dict(
    warn_size=0.1,
    error_size=0.25,
    hysteresis=0.02,
    raise_frames=3,
    clear_frames=5,
    roi="full",
    min_width=0.0,
    size_reference="height",
    roi_margin=0.0,  # the margin has its own tests
    rule="region",  # this file is the region rule's; tests/test_region_tracker.py the tracker's
)


def cfg(**overrides) -> AlertConfig:
    return AlertConfig(**{**BASE, **overrides})


def corridor_cfg(**overrides) -> AlertConfig:
    """The corridor measured in image heights (the defaults before the drivable ROI; no labels
    needed)."""
    return AlertConfig(
        **{
            **dict(
                roi="corridor",
                roi_margin=0.0,
                size_reference="height",
                warn_size=0.06,
                error_size=0.12,
                min_width=0.01,
                raise_frames=2,
                rule="region",
            ),
            **overrides,
        }
    )


def frame(size: float, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    conf = np.ones(shape, np.float32)
    side = int(round(size * shape[0]))
    conf[:side, :side] = 0.0
    return conf


def run(monitor: AlertMonitor, sizes: list[float]) -> list[Level]:
    return [monitor.update(frame(f), (i, 0)).level for i, f in enumerate(sizes)]


def at_level(level: Level, **config) -> AlertMonitor:
    """A monitor driven to ``level`` (BASE: raise 3, clear 5, warn .1, error .25, hysteresis
    .02)."""
    monitor = AlertMonitor(cfg(**config))
    run(monitor, [{OK: 0.0, WARN: 0.2, ERROR: 0.5}[level]] * monitor.config.raise_frames)
    assert monitor.level == level
    return monitor


# -- levels and the state machine ---------------------------------------------------------


def test_level_values_are_diagnostic_status_bytes() -> None:
    assert (int(Level.OK), int(Level.WARN), int(Level.ERROR)) == (0, 1, 2)
    assert Level.ERROR > Level.WARN > Level.OK


def test_rises_after_exactly_raise_frames() -> None:
    assert run(AlertMonitor(cfg()), [0.0, 0.2, 0.2, 0.2, 0.2]) == [OK, OK, OK, WARN, WARN]
    one = AlertMonitor(cfg(raise_frames=1))
    assert run(one, [0.0, 0.2, 0.0]) == [OK, WARN, WARN]


def test_no_rise_with_one_frame_short() -> None:
    # raise_frames - 1 over the limit, one frame under, again raise_frames - 1: never WARN.
    assert run(AlertMonitor(cfg()), [0.2, 0.2, 0.05, 0.2, 0.2, 0.0]) == [OK] * 6
    # the limit itself is not "over" it
    assert run(AlertMonitor(cfg()), [0.1] * 6) == [OK] * 6


def test_error_path_and_error_frames_count_towards_warn() -> None:
    # straight from OK to ERROR after raise_frames ERROR frames
    assert run(AlertMonitor(cfg()), [0.5, 0.5, 0.5, 0.5]) == [OK, OK, ERROR, ERROR]
    # WARN, WARN, ERROR frames: WARN on the 3rd (all three count for WARN), ERROR on the 5th
    assert run(AlertMonitor(cfg()), [0.2, 0.2, 0.3, 0.3, 0.3, 0.3]) == [
        OK,
        OK,
        WARN,
        WARN,
        ERROR,
        ERROR,
    ]
    # from WARN, one ERROR frame short does not raise
    monitor = at_level(WARN)
    assert run(monitor, [0.3, 0.3, 0.2, 0.3, 0.3, 0.2]) == [WARN] * 6


def test_hysteresis_band_holds_the_level_and_clears_after_clear_frames() -> None:
    monitor = at_level(WARN)
    # 0.09 is below warn_size 0.1 but above 0.1 - 0.02: it holds WARN however long it lasts
    assert run(monitor, [0.09] * 12) == [WARN] * 12
    # at or below 0.08: clears on the 5th frame in a row
    assert run(monitor, [0.07, 0.07, 0.0, 0.07, 0.07]) == [WARN, WARN, WARN, WARN, OK]
    assert run(monitor, [0.09, 0.0]) == [OK, OK]


def test_clear_count_restarts_when_a_frame_is_in_the_band() -> None:
    monitor = at_level(WARN)
    assert run(monitor, [0.0] * 4 + [0.09] + [0.0] * 5) == [WARN] * 9 + [OK]


def test_error_clears_to_warn_then_to_ok() -> None:
    monitor = at_level(ERROR)
    # 0.2 <= 0.25 - 0.02: clears ERROR after 5 frames; 0.2 > WARN's limit keeps WARN
    assert run(monitor, [0.2] * 6) == [ERROR] * 4 + [WARN, WARN]
    assert run(monitor, [0.0] * 5) == [WARN] * 4 + [OK]


def test_error_clears_straight_to_ok_when_warn_is_cleared_too() -> None:
    monitor = at_level(ERROR)
    assert run(monitor, [0.0] * 5) == [ERROR] * 4 + [OK]
    monitor = at_level(ERROR)
    # 0.24 is in ERROR's band (0.23, 0.25]: restarts both clear counts
    assert run(monitor, [0.0] * 4 + [0.24] + [0.0] * 5) == [ERROR] * 9 + [OK]
    monitor = at_level(ERROR)
    # in WARN's band: ERROR clears to WARN, which holds
    assert run(monitor, [0.09] * 7) == [ERROR] * 4 + [WARN] * 3


def test_falling_error_can_rise_again() -> None:
    monitor = at_level(ERROR)
    assert run(monitor, [0.2] * 5 + [0.5] * 3) == [ERROR] * 4 + [WARN, WARN, WARN, ERROR]


def test_zero_hysteresis_and_zero_warn_size() -> None:
    monitor = AlertMonitor(cfg(hysteresis=0.0, clear_frames=2, raise_frames=2))
    assert run(monitor, [0.2, 0.2, 0.1, 0.1, 0.11, 0.1, 0.1]) == [OK, WARN, WARN, OK, OK, OK, OK]
    # warn_size 0: any uncertain pixel counts; WARN still clears on fully certain frames
    monitor = AlertMonitor(cfg(warn_size=0.0, raise_frames=1, clear_frames=2))
    assert run(monitor, [0.0, 0.01, 0.0, 0.01, 0.0, 0.0]) == [OK, WARN, WARN, WARN, WARN, OK]


def test_nan_confidence_counts_as_uncertain() -> None:
    conf = np.ones((H, W), np.float32)
    conf[:10] = np.nan
    state = AlertMonitor(cfg(raise_frames=1)).update(conf, (0, 0))
    assert state.fraction == pytest.approx(0.1) and state.level == ERROR
    assert state.region_area == 10 * W and state.region_size == pytest.approx(np.sqrt(10 * W) / H)


def test_state_fields_and_message() -> None:
    monitor = AlertMonitor(cfg())
    states = [monitor.update(frame(0.234), SimpleNamespace(sec=12, nanosec=5)) for _ in range(3)]
    assert [s.level for s in states] == [OK, OK, WARN]
    s = states[-1]
    # side round(23.4) = 23: 529 px, size 0.23
    assert (
        s.region_size == pytest.approx(0.23)
        and s.uncertain_pixels == 529
        and s.roi_pixels == H * W
    )
    assert s.fraction == pytest.approx(529 / (H * W))
    assert s.candidate == "WARN" and s.consecutive == 3 and s.clearing == 0
    assert s.stamp == "12.000000005"
    assert s.region_bbox == (0, 0, 22, 22) and s.region_area == 529
    assert s.message.startswith(
        "WARN: largest uncertain region in the full ROI 23.0% of the image height "
        "(confidence < 0.50) for 3 frames"
    )
    assert "region bbox=(0,0,22,22) area=529 px" in s.message
    assert (
        states[1].message.startswith("OK: largest uncertain region")
        and "WARN after 2/3 frames" in states[1].message
    )
    # the node turns every other field into a KeyValue: keep them plain
    for name, value in vars(s).items():
        if name not in ("level", "message"):
            assert value is None or isinstance(value, (int, float, str, tuple)), name
    assert {f.name for f in dataclasses.fields(AlertState)} >= {
        "level",
        "message",
        "region_size",
        "fraction",
        "region_bbox",
        "region_area",
        "stamp",
        "consecutive",
    }
    clearing = monitor.update(frame(0.0), (13, 0))
    assert clearing.level == WARN and clearing.clearing == 1 and clearing.region_bbox is None
    assert "clearing 1/5" in clearing.message and clearing.region_area == 0


def test_stamp_forms() -> None:
    assert stamp_to_str((5, 7)) == "5.000000007"
    assert stamp_to_str(SimpleNamespace(sec=1, nanosec=500_000_000)) == "1.500000000"
    assert stamp_to_str(SimpleNamespace(nanoseconds=3_000_000_001)) == "3.000000001"
    assert stamp_to_str(2.25) == "2.250000000"
    assert stamp_to_str(None) == ""
    assert stamp_to_str((1, 1_500_000_000)) == "2.500000000"


# -- run-time configuration ------------------------------------------------------------------


def test_config_change_takes_effect_next_frame_and_keeps_the_streak() -> None:
    monitor = AlertMonitor(cfg(warn_size=0.2))
    assert run(monitor, [0.15] * 4) == [OK] * 4
    monitor.config = cfg(warn_size=0.1)
    # the 0.15 frames counted under the old limit were not over it: the streak starts now
    assert run(monitor, [0.15] * 3) == [OK, OK, WARN]

    monitor = AlertMonitor(cfg(raise_frames=3))
    assert run(monitor, [0.2, 0.2]) == [OK, OK]
    monitor.config = cfg(raise_frames=5)  # two frames already counted
    assert run(monitor, [0.2, 0.2, 0.2]) == [OK, OK, WARN]

    monitor = at_level(WARN)
    monitor.config = cfg(confidence_threshold=0.4)  # same ROI: level kept
    assert run(monitor, [0.09]) == [WARN]
    # threshold raised: the same 0.7-confidence map becomes all uncertain
    monitor = AlertMonitor(cfg(raise_frames=2))
    conf = np.full((H, W), 0.7, np.float32)
    assert [monitor.update(conf, (0, 0)).level for _ in range(3)] == [OK] * 3
    monitor.config = cfg(raise_frames=2, confidence_threshold=0.9)
    assert [monitor.update(conf, (0, 0)).level for _ in range(3)] == [OK, ERROR, ERROR]


def test_roi_change_resets_the_state() -> None:
    monitor = at_level(ERROR)
    monitor.config = cfg(roi="lower_half")
    assert monitor.level == OK
    conf = np.zeros((H, W), np.float32)
    assert [monitor.update(conf, (0, 0)).level for _ in range(3)] == [OK, OK, ERROR]
    with pytest.raises(TypeError):
        monitor.config = {"roi": "full"}  # type: ignore[assignment]


# -- regions of interest -----------------------------------------------------------------------


def test_lower_half_ignores_the_top() -> None:
    conf = np.ones((21, W), np.float32)
    conf[:10] = 0.0  # rows 0-9: the upper half of 21 rows
    lower = AlertMonitor(cfg(roi="lower_half", raise_frames=1))
    state = lower.update(conf, (0, 0))
    assert (state.level, state.fraction, state.roi_pixels, state.region_bbox) == (
        OK,
        0.0,
        11 * W,
        None,
    )
    full = AlertMonitor(cfg(roi="full", raise_frames=1))
    assert full.update(conf, (0, 0)).level == ERROR
    # uncertain pixels in the lower half: full-image coordinates
    conf[:] = 1.0
    conf[15:18, 4:9] = 0.0
    state = lower.update(conf, (0, 0))
    assert state.region_bbox == (4, 15, 8, 17) and state.region_area == 15
    assert state.fraction == pytest.approx(15 / (11 * W))
    # the middle row (10 of 0..20) is inside, the one above is not
    conf[:] = 1.0
    conf[9:11] = 0.0
    state = lower.update(conf, (0, 0))
    assert state.uncertain_pixels == W and state.region_bbox == (0, 10, W - 1, 10)


def test_mask_roi_from_png(tmp_path) -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[:, :100] = 255  # left half inside
    path = tmp_path / "roi.png"
    assert cv2.imwrite(str(path), mask)
    monitor = AlertMonitor(cfg(roi="mask", roi_mask_file=str(path), raise_frames=1))
    right = np.ones((H, W), np.float32)
    right[:, 100:] = 0.0
    state = monitor.update(right, (0, 0))
    assert (state.level, state.fraction, state.roi_pixels, state.region_bbox) == (
        OK,
        0.0,
        10000,
        None,
    )
    quarter = np.ones((H, W), np.float32)
    quarter[:, :50] = 0.0
    state = monitor.update(quarter, (1, 0))
    assert state.fraction == pytest.approx(0.5) and state.level == ERROR
    assert state.region_bbox == (0, 0, 49, 99) and state.region_area == 5000


def test_mask_roi_is_resized_to_the_image(tmp_path) -> None:
    small = np.zeros((10, 25), np.uint8)
    small[5:, :] = 1  # lower half, any non-zero value is inside
    path = tmp_path / "small.png"
    assert cv2.imwrite(str(path), small)
    monitor = AlertMonitor(cfg(roi="mask", roi_mask_file=str(path), raise_frames=1))
    conf = np.ones((H, W), np.float32)
    conf[:50] = 0.0
    state = monitor.update(conf, (0, 0))
    assert state.roi_pixels == 10000 and state.fraction == 0.0
    conf[50:75] = 0.0
    assert monitor.update(conf, (0, 0)).fraction == pytest.approx(0.5)


def test_mask_roi_file_change_resets(tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), np.full((H, W), 255, np.uint8))
    cv2.imwrite(str(b), np.full((H, W), 255, np.uint8))
    monitor = at_level(WARN, roi="mask", roi_mask_file=str(a))
    monitor.config = cfg(roi="mask", roi_mask_file=str(a), warn_size=0.15)
    assert monitor.level == WARN  # same mask: kept
    monitor.config = cfg(roi="mask", roi_mask_file=str(b))
    assert monitor.level == OK  # another file: reset


# -- the region rule: corridor, thin strips, resolution ----------------------------------------


def test_corridor_is_the_road_ahead() -> None:
    mask = corridor_mask((100, 300))
    assert mask[85, 0] and mask[85, 299] and mask[85, 150]  # low rows: full width
    assert not mask[92:].any()  # the bottom tenth (hood): outside
    assert (
        mask[45, 150] and not mask[45, 20] and not mask[45, 280]
    )  # near the horizon: the centre only
    assert not mask[:39].any()  # above 40 % of the height: outside
    state = AlertMonitor(AlertConfig(raise_frames=1)).update(
        np.ones((100, 300), np.float32), (0, 0)
    )
    assert state.roi == "corridor" and state.roi_pixels == int(np.count_nonzero(mask))


def test_objects_outside_the_corridor_do_not_alert() -> None:
    conf = np.ones((100, 300), np.float32)
    conf[5:25, 10:40] = 0.0  # sky / facade in the top-left corner
    monitor = AlertMonitor(corridor_cfg(raise_frames=1))
    assert monitor.update(conf, (0, 0)).level == OK
    conf[60:75, 140:160] = 0.0  # on the road ahead
    state = monitor.update(conf, (1, 0))
    assert state.level == ERROR and state.region_bbox == (140, 60, 159, 74)


def test_thin_uncertain_strips_are_ignored_but_blobs_are_not() -> None:
    """Object boundaries give thin strips of uncertainty; an unknown object gives a blob."""
    conf = np.ones((100, 200), np.float32)
    for x in range(10, 190, 12):  # 2-pixel wide, 60-pixel tall "boundaries" (120 px each)
        conf[40:100, x : x + 2] = 0.0
    conf[60, 10:190] = 0.0  # joined by a 1-pixel line into one ~1,950 pixel region
    thin = AlertMonitor(cfg(min_width=0.03, raise_frames=1))
    state = thin.update(conf, (0, 0))
    assert state.region_area == 0 and state.level == OK and state.uncertain_pixels > 1900
    # without the opening the joined strips are one big region
    assert AlertMonitor(cfg(min_width=0.0, raise_frames=1)).update(conf, (0, 0)).level == ERROR
    conf[70:82, 100:112] = 0.0  # a 12x12 object (size 0.12 > warn 0.1)
    state = thin.update(conf, (1, 0))
    assert state.level == WARN and state.region_bbox[0] >= 98 and state.region_area >= 144


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_region_size_does_not_depend_on_the_camera_resolution(scale: int) -> None:
    conf = np.ones((100 * scale, 200 * scale), np.float32)
    conf[60 * scale : 72 * scale, 90 * scale : 102 * scale] = 0.0
    state = AlertMonitor(corridor_cfg(raise_frames=1)).update(conf, (0, 0))
    assert state.region_size == pytest.approx(0.12, abs=0.005)


def test_hard_scene_stays_ok_and_an_object_raises_and_clears() -> None:
    """Noisy, boundary-like uncertainty everywhere for 20 frames: OK; a compact object for 5:
    WARN+."""
    rng = np.random.default_rng(0)
    monitor = AlertMonitor(corridor_cfg(confidence_threshold=0.5))
    levels = []
    for i in range(30):
        conf = np.ones((256, 512), np.float32)
        edges = cv2.Canny((rng.random((256, 512)) * 255).astype(np.uint8), 250, 255) > 0
        conf[edges] = 0.2  # scattered 1-pixel uncertainty
        if 20 <= i < 25:
            conf[150:170, 240:265] = 0.1  # a 20x25 object on the road
        levels.append(monitor.update(conf, (i, 0)).level)
    assert levels[:20] == [OK] * 20
    assert levels[21:25] == [WARN] * 4  # raise_frames 2 by default; size 0.087
    assert levels[25:29] == [WARN] * 4 and levels[29] == OK  # clear_frames 5


# -- largest region ------------------------------------------------------------------------------


def two_blobs(shape: tuple[int, int], small: tuple[int, int], big: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    y, x = small
    mask[y : y + 4, x : x + 5] = True  # 20 px
    y, x = big
    mask[y : y + 10, x : x + 7] = True  # 70 px
    mask[y + 10, x + 7] = True  # diagonal neighbour: same region (8-conn.)
    return mask


def test_largest_region_two_blobs() -> None:
    mask = two_blobs((40, 60), small=(2, 3), big=(20, 30))
    assert largest_region(mask) == ((30, 20, 37, 30), 71)
    assert largest_region(np.zeros((5, 5), bool)) == (None, 0)
    state = AlertMonitor(cfg()).update(np.where(mask, 0.1, 0.9).astype(np.float32), (0, 0))
    assert state.region_bbox == (30, 20, 37, 30) and state.region_area == 71
    assert state.uncertain_pixels == 91


@pytest.mark.parametrize("max_pixels", [100, 1000])
def test_largest_region_on_the_pooled_mask_is_exact_at_full_size(max_pixels: int) -> None:
    # odd sizes and offsets: the pooled grid does not line up with the blobs or the image edge
    mask = two_blobs((41, 63), small=(1, 1), big=(29, 55))
    assert largest_region(mask, max_pixels=max_pixels) == ((55, 29, 62, 39), 71)


def test_largest_region_full_hd() -> None:
    mask = two_blobs((1080, 1920), small=(101, 201), big=(1069, 1911))
    mask[501:700, 301:1001] = True  # 199 x 700, the largest
    mask[600, 600] = False
    assert largest_region(mask) == ((301, 501, 1000, 699), 199 * 700 - 1)


def stats_oracle(mask: np.ndarray) -> tuple[list[tuple[int, int, int, int]], int]:
    """All largest regions' bboxes (ties) and the area, from OpenCV's own per-component
    statistics."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(areas.max())
    boxes = [
        (int(x), int(y), int(x + w - 1), int(y + h - 1))
        for x, y, w, h, a in stats[1:]
        if a == best
    ]
    return boxes, best


@pytest.mark.parametrize(
    "shape, density", [((37, 53), 0.3), ((200, 301), 0.45), ((512, 1024), 0.2), ((480, 640), 0.55)]
)
def test_largest_region_equals_opencv_statistics_on_random_masks(
    shape: tuple[int, int], density: float
) -> None:
    rng = np.random.default_rng(shape[0])
    mask = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2.0) > np.float32(
        0.5 + (0.5 - density) / 8
    )
    boxes, area = stats_oracle(mask)
    bbox, got = largest_region(mask)
    assert got == area and bbox in boxes


def test_largest_region_with_more_components_than_16_bit_labels() -> None:
    # isolated pixels on a 2-pixel grid: 90000 components of area 1 (too many for 16-bit labels)
    # ...
    mask = np.zeros((600, 600), bool)
    mask[::2, ::2] = True
    # ... but for one: (401, 400) and (401, 401) join the grid pixels at rows 400/402, columns
    # 400/402
    mask[401, 400] = mask[401, 401] = True
    boxes, area = stats_oracle(mask)
    assert boxes == [(400, 400, 402, 402)] and area == 6
    assert largest_region(mask) == ((400, 400, 402, 402), 6)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_threshold": -0.1}, "confidence_threshold"),
        ({"confidence_threshold": float("nan")}, "confidence_threshold"),
        ({"confidence_threshold": "0.5"}, "confidence_threshold"),
        ({"warn_size": 0.3, "error_size": 0.2}, "warn_size"),
        ({"error_size": 1.2}, "error_size"),
        ({"min_width": -0.1}, "min_width"),
        ({"hysteresis": -0.01}, "hysteresis"),
        ({"raise_frames": 0}, "raise_frames"),
        ({"raise_frames": 2.5}, "raise_frames"),
        ({"raise_frames": True}, "raise_frames"),
        ({"clear_frames": 0}, "clear_frames"),
        ({"roi": "upper_half"}, "roi"),
        ({"roi": "mask"}, "roi_mask_file"),
        ({"roi": "mask", "roi_mask_file": "/nonexistent/roi.png"}, "does not exist"),
    ],
)
def test_invalid_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AlertConfig(**kwargs)


def test_invalid_mask_files(tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not be read"):
        AlertConfig(roi="mask", roi_mask_file=str(bad))
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no pixel inside"):
        AlertConfig(roi="mask", roi_mask_file=str(empty))
    # a mask file is only read for roi == "mask"
    assert AlertConfig(roi="full", roi_mask_file=str(bad)).roi_mask is None


def test_valid_configs_and_coercion() -> None:
    config = AlertConfig(
        warn_size=0.2, error_size=0.2, hysteresis=0, raise_frames=2.0, clear_frames=1
    )
    assert (
        config.raise_frames == 2
        and isinstance(config.raise_frames, int)
        and config.hysteresis == 0.0
    )
    assert (
        AlertConfig(confidence_threshold=1, warn_size=0, error_size=1).confidence_threshold == 1.0
    )
    with pytest.raises(ValueError, match="HxW"):
        AlertMonitor(config).update(np.zeros((2, 3, 3), np.float32), (0, 0))


def test_config_fields_are_the_node_alert_parameters() -> None:
    """The node builds AlertConfig(**{alerts.* parameters without prefix}); same defaults but the
    threshold, whose parameter default means "from the model"."""
    from ros2_fed import pipeline

    specs = {
        s.name[len("alerts.") :]: s for s in pipeline.PARAMETERS if s.name.startswith("alerts.")
    }
    fields = {f.name: f for f in dataclasses.fields(AlertConfig) if f.init}
    assert set(specs) == set(fields)
    for name, spec in specs.items():
        if name != "confidence_threshold":
            assert spec.default == fields[name].default, name
    assert specs["confidence_threshold"].default == pipeline.FROM_MODEL


# -- the drivable ROI (the model's road/sidewalk and the holes they enclose)
# -----------------------

ROAD, SIDEWALK, BUILDING, SKY, CAR = 0, 1, 2, 10, 13


def street(shape: tuple[int, int] = (256, 512)) -> np.ndarray:
    """A label map: sky on top, buildings to 45 % of the height, road below (sidewalk at the
    sides)."""
    h, w = shape
    labels = np.full(shape, ROAD, np.uint8)
    labels[: int(0.3 * h)] = SKY
    labels[int(0.3 * h) : int(0.45 * h)] = BUILDING
    labels[int(0.45 * h) :, : w // 10] = SIDEWALK
    labels[int(0.45 * h) :, -w // 10 :] = SIDEWALK
    return labels


def drivable_cfg(**overrides) -> AlertConfig:
    return AlertConfig(
        **{
            **dict(
                roi="drivable",
                roi_margin=0.0,
                ignore_classes="",
                size_reference="height",
                warn_size=0.06,
                error_size=0.12,
                min_width=0.01,
                raise_frames=1,
                confidence_threshold=0.5,
                rule="region",
            ),
            **overrides,
        }
    )


def test_drivable_mask_is_the_road_and_its_holes() -> None:
    labels = street()
    labels[150:170, 240:260] = CAR  # something on the road: a hole in the road mask
    labels[100:120, 0:30] = CAR  # a car at the left border, touching the buildings: not a hole
    mask = drivable_mask(labels, (ROAD, SIDEWALK))
    assert mask[160, 250] and mask[200, 10] and mask[200, 250]
    assert not mask[110, 10] and not mask[50, 250] and not mask[100, 250]
    # joined to the buildings by a 2-pixel pole: not enclosed; a 5-pixel closing of the road closes
    # it off
    labels[120:140, 300:320] = CAR
    labels[110:120, 309:311] = 5
    assert not drivable_mask(labels, (ROAD, SIDEWALK))[130, 310]
    closed = drivable_mask(labels, (ROAD, SIDEWALK), closing_side=5)
    assert closed[130, 310] and closed[118, 309] and not closed[100, 310]


def test_drivable_roi_alerts_on_an_object_on_the_road() -> None:
    labels = street()
    labels[150:170, 240:262] = CAR  # labelled car, uncertain: an unknown object lying on the road
    conf = np.ones(labels.shape, np.float32)
    conf[150:170, 240:262] = 0.1
    state = AlertMonitor(drivable_cfg()).update(conf, (0, 0), labels=labels)
    assert (
        state.level == WARN
        and state.roi == "drivable"
        and state.region_bbox == (240, 150, 261, 169)
    )
    # the same object labelled road (the model took it for road) is inside the ROI as well
    state = AlertMonitor(drivable_cfg()).update(conf, (0, 0), labels=street())
    assert state.level == WARN


def test_drivable_roi_ignores_uncertain_buildings_and_sky_in_the_corridor() -> None:
    """The false alarms of the corridor: distant in-distribution things near the horizon."""
    labels = street()
    conf = np.ones(labels.shape, np.float32)
    conf[103:115, 200:300] = 0.1  # a distant building inside the corridor's top, uncertain
    corridor = AlertMonitor(drivable_cfg(roi="corridor")).update(conf, (0, 0), labels=labels)
    assert corridor.level >= WARN
    state = AlertMonitor(drivable_cfg()).update(conf, (0, 0), labels=labels)
    assert state.level == OK and state.region_area == 0 and state.roi == "drivable"
    assert state.roi_pixels == int(
        np.count_nonzero(corridor_mask(labels.shape) & (labels <= SIDEWALK))
    )


def test_drivable_roi_without_labels_is_the_corridor() -> None:
    conf = np.ones((256, 512), np.float32)
    conf[105:118, 200:300] = 0.1
    monitor = AlertMonitor(drivable_cfg())
    state = monitor.update(conf, (0, 0))
    assert state.level >= WARN and state.roi == "corridor"
    assert state.roi_pixels == int(np.count_nonzero(corridor_mask((256, 512))))
    assert "corridor ROI" in state.message
    # labels of another size are resized (nearest neighbour) to the confidence map
    small = cv2.resize(street(), (256, 128), interpolation=cv2.INTER_NEAREST)
    assert monitor.update(conf, (1, 0), labels=small).roi == "drivable"
    with pytest.raises(ValueError, match="labels"):
        monitor.update(conf, (2, 0), labels=np.zeros((256, 512, 3), np.uint8))


def test_a_drive_without_an_unknown_object_stays_ok_with_the_defaults() -> None:
    """Default settings, 40 frames of a street with boundary noise and uncertain buildings: OK
    throughout."""
    rng = np.random.default_rng(1)
    labels = street()
    monitor = AlertMonitor(AlertConfig(confidence_threshold=0.5))
    levels = []
    for i in range(40):
        conf = np.ones(labels.shape, np.float32)
        conf[rng.random(labels.shape) < 0.05] = 0.2  # scattered 1-pixel uncertainty
        conf[100:116, 180:330] = 0.2  # the buildings at the road's end, uncertain
        conf[114:116, :] = 0.3  # the road/building boundary (2 px)
        levels.append(monitor.update(conf, (i, 0), labels=labels).level)
    assert levels == [OK] * 40


def test_drivable_classes_by_name_or_id_and_for_the_models_names() -> None:
    assert drivable_class_ids("road,sidewalk") == (0, 1)
    assert drivable_class_ids(" Road , 7") == (0, 7)
    assert drivable_class_ids("lane", ["background", "lane", "car"]) == (1,)
    with pytest.raises(ValueError, match="not one of"):
        drivable_class_ids("lane")
    with pytest.raises(ValueError, match="at least one"):
        drivable_class_ids(" , ")
    with pytest.raises(ValueError, match="0..254"):
        drivable_class_ids("255")
    config = AlertConfig(roi="drivable")
    assert config.drivable_ids == (0, 1)
    custom = config.with_class_names(["sky", "sidewalk", "road"])
    assert custom.drivable_ids == (1, 2) and custom.class_names == ("sky", "sidewalk", "road")
    with pytest.raises(ValueError, match="drivable_classes"):
        config.with_class_names(["background", "lane"])
    with pytest.raises(ValueError, match="drivable_classes"):
        AlertConfig(roi="drivable", drivable_classes="lane")
    # an unknown class does not matter while the drivable ROI is not used
    assert AlertConfig(roi="corridor").with_class_names(["background", "lane"]).drivable_ids == ()


def test_drivable_change_resets_the_state() -> None:
    labels = street()
    conf = np.ones(labels.shape, np.float32)
    conf[150:170, 240:262] = 0.1
    monitor = AlertMonitor(drivable_cfg())
    assert monitor.update(conf, (0, 0), labels=labels).level == WARN
    monitor.config = drivable_cfg(warn_size=0.07)  # same ROI: the level is kept
    assert monitor.level == WARN
    monitor.config = drivable_cfg(roi_closing=0.02)  # another ROI: afresh
    assert monitor.level == OK


def test_roi_margin_drops_the_roads_edges_but_keeps_an_object_on_it() -> None:
    """The false alarms left by the drivable ROI: uncertain strips along its outer edge."""
    labels = street()
    labels[115:, :40] = BUILDING  # the sidewalk ends at a wall 40 px from the left border
    conf = np.ones(labels.shape, np.float32)
    conf[190:230, 40:43] = 0.1  # a 3-px uncertain strip along the wall, 120 px
    conf[150:160, 240:250] = 0.1  # a 10x10 object in the middle of the road, 100 px
    config = drivable_cfg(min_width=0.0, warn_size=0.01, error_size=0.5)
    plain = AlertMonitor(config).update(conf, (0, 0), labels=labels)
    assert plain.region_bbox == (40, 190, 42, 229)  # the strip is the largest region
    margin = AlertMonitor(dataclasses.replace(config, roi_margin=3 / 256)).update(
        conf, (0, 0), labels=labels
    )
    assert margin.region_bbox == (240, 150, 249, 159) and margin.region_area == 100
    assert margin.roi_pixels < plain.roi_pixels
    # the margin is in image heights: the same scene at twice the size gives the same result
    big = cv2.resize(conf, (1024, 512), interpolation=cv2.INTER_NEAREST)
    big_labels = cv2.resize(labels, (1024, 512), interpolation=cv2.INTER_NEAREST)
    state = AlertMonitor(dataclasses.replace(config, roi_margin=3 / 256)).update(
        big, (0, 0), labels=big_labels
    )
    assert state.region_bbox == (480, 300, 499, 319)
    # the image border is not an edge: the corridor's bottom rows stay in the ROI
    assert shrink(np.full((20, 20), 255, np.uint8), 3).all()
    # a margin change is another ROI: the monitor starts afresh
    monitor = AlertMonitor(config)
    assert monitor.update(conf, (0, 0), labels=labels).level == WARN
    monitor.config = dataclasses.replace(config, roi_margin=0.01)
    assert monitor.level == OK
    with pytest.raises(ValueError, match="roi_margin"):
        AlertConfig(roi_margin=1.5)


def test_ignored_classes_do_not_count_but_still_shape_the_road() -> None:
    """A zebra crossing the model takes for sidewalk, uncertain, inside the road: ground the model
    is unsure about, not an object on it."""
    labels = street()
    labels[150:160, 200:300] = SIDEWALK  # the crossing, labelled sidewalk
    labels[200:215, 240:255] = CAR  # an object on the road, labelled car
    conf = np.ones(labels.shape, np.float32)
    conf[150:160, 200:300] = 0.1  # 1,000 uncertain crossing pixels
    conf[200:215, 240:255] = 0.1  # 225 uncertain object pixels
    config = drivable_cfg(warn_size=0.01, error_size=0.5)
    counted = AlertMonitor(config).update(conf, (0, 0), labels=labels)
    assert counted.region_bbox == (200, 150, 299, 159)
    ignoring = dataclasses.replace(config, ignore_classes="sidewalk")
    state = AlertMonitor(ignoring).update(conf, (0, 0), labels=labels)
    assert state.region_bbox == (240, 200, 254, 214) and state.region_area == 225
    # the sidewalk still makes the road's shape: an object on the sidewalk strip is still a hole
    assert ignoring.ignore_ids == (SIDEWALK,) and ignoring.drivable_ids == (ROAD, SIDEWALK)
    # by the model's own names, or none at all
    named = AlertConfig(ignore_classes="terrain")
    assert named.with_class_names(["road", "sidewalk", "terrain"]).ignore_ids == (2,)
    with pytest.raises(ValueError, match="ignore_classes"):
        named.with_class_names(["road", "sidewalk"])
    assert AlertConfig(ignore_classes=" ").ignore_ids == ()
    # another set of ignored classes is another ROI: the monitor starts afresh
    monitor = AlertMonitor(config)
    assert monitor.update(conf, (0, 0), labels=labels).level == WARN
    monitor.config = ignoring
    assert monitor.level == OK


def test_roi_margin_shrinks_the_corridor_once() -> None:
    conf = np.ones((256, 512), np.float32)
    config = AlertConfig(roi="corridor", roi_margin=0.02)
    state = AlertMonitor(config).update(conf, (0, 0))
    corridor = corridor_mask((256, 512))
    assert state.roi_pixels == int(np.count_nonzero(shrink(corridor, 5)))
    assert state.roi_pixels < int(np.count_nonzero(corridor))


def test_horizon_size_reference_measures_far_regions_as_near_ones() -> None:
    """sqrt(area) / (bottom row + 1 - horizon row), at least min_distance: the same object near and
    far."""
    config = AlertConfig(
        rule="region",
        roi="full",
        size_reference="horizon",
        horizon=0.4,
        min_distance=0.1,
        min_width=0.0,
        warn_size=0.2,
        error_size=0.5,
        raise_frames=1,
        confidence_threshold=0.5,
    )
    conf = np.ones((100, 200), np.float32)
    conf[70:80, 20:30] = 0.0  # 10x10, bottom row 79: 40 rows below the horizon -> 0.25
    conf[44:50, 100:106] = (
        0.0  # 6x6, bottom row 49: 10 rows below -> 0.6 (the far one is the largest)
    )
    state = AlertMonitor(config).update(conf, (0, 0))
    assert state.region_size == pytest.approx(0.6) and state.region_bbox == (100, 44, 105, 49)
    assert state.level == ERROR and "below the horizon" in state.message
    conf[40:43, 150:153] = 0.0  # 3x3 at the horizon: measured at min_distance (10 rows): 0.3
    assert AlertMonitor(config).update(conf, (0, 0)).region_size == pytest.approx(0.6)
    far = np.ones((100, 200), np.float32)
    far[38:41, 150:153] = 0.0
    assert AlertMonitor(config).update(far, (0, 0)).region_size == pytest.approx(0.3)
    # lower_half: rows are counted in the image, not in the half
    half = AlertMonitor(dataclasses.replace(config, roi="lower_half")).update(conf, (0, 0))
    assert half.region_size == pytest.approx(0.25) and half.region_bbox == (20, 70, 29, 79)
    for bad in (
        {"size_reference": "width"},
        {"min_distance": 0.0},
        {"horizon": 1.5},
        {"roi_closing": -0.1},
    ):
        with pytest.raises(ValueError):
            AlertConfig(**bad)
