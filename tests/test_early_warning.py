"""ros2_fed.eval.early_warning: appearances, first-alert delays, recall by size, by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ros2_fed import jsonio
from ros2_fed.eval.alert_metrics import frame_presence, score_alerts
from ros2_fed.eval.early_warning import (
    Appearance,
    FrameObjects,
    appearance_delays,
    component_recall_by_size,
    delay_summary,
    early_warning_report,
    frame_objects,
    median,
    p90,
    pool_early_warning,
    recall_by_size,
    scaled_pixels,
    size_bin,
    size_bin_edges,
)

SHAPE = (256, 512)


def blob(pixels: int, shape: tuple[int, int] = SHAPE, top: int = 150, left: int = 100):
    """An HxW OOD mask with one 8-connected object of exactly ``pixels`` pixels (rows of 40)."""
    mask = np.zeros(shape, np.uint8)
    flat = np.zeros(40 * (pixels // 40 + 1), np.uint8)
    flat[:pixels] = 1
    rows = flat.reshape(-1, 40)
    mask[top : top + rows.shape[0], left : left + 40] = rows
    return mask


def fo(pixels: int, bottom: int = 150, shape: tuple[int, int] = SHAPE) -> FrameObjects:
    return FrameObjects(shape, pixels, pixels, bottom if pixels else -1)


def stamps(n: int, fps: float = 10.0) -> list[float]:
    return [i / fps for i in range(n)]


def test_delay_from_the_first_100_px_frame_to_the_first_warn() -> None:
    # object visible from frame 5, 99 px at frame 6, exactly 100 px at frame 7, WARN at frame 9
    pixels = [0, 0, 0, 0, 0, 40, 99, 100, 180, 300, 500, 0]
    levels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    (a,) = appearance_delays(levels, [fo(p) for p in pixels], stamps(12))
    assert (a.start, a.onset, a.alert, a.end) == (5, 7, 9, 10)
    assert a.delay_frames == 2 and a.delay_s == pytest.approx(0.2)
    assert a.pixels == 100 and a.frames_visible == 4 and a.alerted


def test_a_warn_before_the_onset_does_not_count_and_a_flicker_counts_its_first_warn() -> None:
    pixels = [0, 50, 60, 120, 150, 200, 250, 300, 0]
    # WARN at frame 2 (object still under 100 px), OK at the onset (3), then WARN-OK-WARN
    levels = [0, 0, 1, 0, 1, 0, 1, 1, 0]
    (a,) = appearance_delays(levels, [fo(p) for p in pixels], stamps(9))
    assert (a.onset, a.alert, a.delay_frames) == (3, 4, 1)
    # ERROR is "WARN or above"; a missing record (None) is not an alert
    levels = [0, 0, 0, None, 2, 0, 0, 0, 0]
    (a,) = appearance_delays(levels, [fo(p) for p in pixels], stamps(9))
    assert (a.alert, a.delay_frames) == (4, 1)


def test_every_appearance_is_listed_and_a_never_alerted_one_counts_as_infinite() -> None:
    # appearance 1: frames 1-4 (onset 2, WARN 3); the object leaves at frame 5 (0 px) and comes
    # back at 6-9 (a new appearance, onset 7) and is never alerted; the WARN at frame 5 is the
    # alert still holding after the first object left, outside both appearances
    pixels = [0, 30, 110, 200, 300, 0, 90, 120, 150, 400]
    levels = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    found = appearance_delays(levels, [fo(p) for p in pixels], stamps(10))
    assert [(a.start, a.onset, a.alert, a.end) for a in found] == [(1, 2, 3, 4), (6, 7, None, 9)]
    assert found[1].delay_frames is None and not found[1].alerted
    s = delay_summary(found)
    assert (s.appearances, s.alerted, s.never_alerted) == (2, 1, 1)
    assert s.median_frames == 1 and s.p90_frames == 1
    assert s.median_frames_all == math.inf and s.p90_s_all == math.inf
    data = json.loads(jsonio.dumps(s.to_json()))
    assert data["median_frames_all"] == "never" and data["median_s"] == pytest.approx(0.1)


def test_runs_too_small_or_without_ground_truth_are_not_appearances() -> None:
    pixels = [0, 40, 99, 0, 120, 130, 0]
    frames = [fo(p) for p in pixels]
    frames[5] = None  # no OOD ground truth: ends the run of frame 4
    found = appearance_delays([0] * 7, frames, stamps(7))
    assert [(a.start, a.onset, a.end) for a in found] == [(4, 4, 4)]


def test_indices_and_stamps_give_the_delay_when_frames_were_dropped() -> None:
    # bag frames 10, 11, 14, 15 evaluated (12 and 13 dropped), stamps at 20 Hz
    frames = [fo(150), fo(160), fo(170), fo(180)]
    found = appearance_delays(
        [0, 0, 1, 1], frames, [0.5, 0.55, 0.7, 0.75], indices=[10, 11, 14, 15]
    )
    assert found[0].delay_frames == 4 and found[0].delay_s == pytest.approx(0.2)
    assert found[0].frames_visible == 6
    with pytest.raises(ValueError):
        appearance_delays([0, 0], frames, stamps(4))


def test_median_and_p90_by_hand() -> None:
    assert median([0, 0, 9]) == 0  # not the mean (3)
    assert median([4, 1, 3, 2]) == 2.5
    assert median([1, math.inf]) == math.inf
    assert median([]) is None
    assert p90(list(range(1, 11))) == 9  # nearest rank (linear interpolation: 9.1)
    assert p90([5, 1, 3]) == 5
    assert p90([3] * 9 + [math.inf]) == 3  # ceil(0.9 * 10) = 9th of 10
    assert p90([3] * 8 + [math.inf] * 2) == math.inf


def test_pooled_drives_of_unequal_length_take_the_median_of_the_pooled_list() -> None:
    # drive A (12 frames, 10 Hz): one appearance, delay 2; drive B (30 frames, 5 Hz): delays
    # 0 and 5 and one never alerted
    a_pixels = [0] * 4 + [150] * 6 + [0] * 2
    a_levels = [0] * 6 + [1] * 4 + [0] * 2
    b_pixels = [0, 200, 200, 0] + [0] * 4 + [150] * 10 + [0] * 2 + [300] * 8 + [0, 0]
    b_levels = [0, 1, 1, 0] + [0] * 4 + [0] * 5 + [1] * 5 + [0] * 2 + [0] * 8 + [0, 0]
    a = early_warning_report(a_levels, [fo(p) for p in a_pixels], stamps(12), 3, source="A")
    b = early_warning_report(b_levels, [fo(p) for p in b_pixels], stamps(30, 5.0), 3, source="B")
    assert a is not None and b is not None
    assert [x["delay_frames"] for x in b["appearances"]] == [0, 5, None]
    pooled = pool_early_warning([a, None, b])
    assert pooled is not None and pooled["drives"] == 2
    assert [x["source"] for x in pooled["appearances"]] == ["A", "B", "B", "B"]
    b["appearances"][0]["source"] = ""  # unnamed appearances take the report's name
    named = pool_early_warning([a, None, b], sources=["x", "y", "z"])
    assert [x["source"] for x in named["appearances"]] == ["A", "z", "B", "B"]
    with pytest.raises(ValueError):
        pool_early_warning([a, b], sources=["x"])
    s = pooled["summary"]
    assert (s["appearances"], s["never_alerted"]) == (4, 1)
    assert s["median_frames"] == 2  # of 0, 2, 5 (mean 2.33)
    assert s["median_frames_all"] == 3.5  # of 0, 2, 5, inf
    assert s["p90_frames"] == 5 and s["p90_frames_all"] == "never"
    assert s["median_s"] == pytest.approx(0.2)  # 0 s, 0.2 s (10 Hz), 1.0 s (5 Hz)
    assert s["median_s_all"] == pytest.approx(0.6)
    # appearances survive the JSON round trip
    assert Appearance.from_json(pooled["appearances"][1]).alert == 1


def test_size_bins_and_their_edges() -> None:
    edges = size_bin_edges(SHAPE)
    assert edges == [100, 300, 1000, 3000]
    got = [size_bin(p, edges) for p in (99, 100, 299, 300, 999, 1000, 2999, 3000, 10**6)]
    assert got == [None, 0, 0, 1, 1, 2, 2, 3, 3]
    big = size_bin_edges((512, 1024))
    assert big == [400, 1200, 4000, 12000]
    got = [size_bin(p, big) for p in (399, 400, 1199, 1200, 3999, 4000, 11999, 12000)]
    assert got == [None, 0, 0, 1, 1, 2, 2, 3]
    assert scaled_pixels(100, (128, 256)) == 25


def test_the_onset_scales_with_the_image_area() -> None:
    shape = (512, 1024)
    pixels = [0, 120, 399, 400, 900]
    frames = [frame_objects(blob(p, shape) if p else np.zeros(shape)) for p in pixels]
    assert [f.object_pixels for f in frames] == pixels
    (a,) = appearance_delays([0, 0, 0, 0, 1], frames, stamps(5))
    assert (a.onset, a.pixels, a.delay_frames) == (3, 400, 1)


def test_frame_objects_and_the_rows_below_the_horizon() -> None:
    mask = blob(130, top=140)  # rows 140..143 (40 + 40 + 40 + 10)
    mask[10:12, 0:5] = 1  # a second, 10 px component (too small to be scored)
    mask[0:3, 500:512] = 255  # void is not OOD
    f = frame_objects(mask)
    assert (f.ood_pixels, f.object_pixels, f.object_bottom) == (140, 130, 143)
    assert f.components == ((130, None),)
    (a,) = appearance_delays([1], [f], [0.0])
    assert a.rows_below_horizon == pytest.approx(144 - 0.4 * 256)  # 41.6
    (a,) = appearance_delays([1], [f], [0.0], horizon=0.5)
    assert a.rows_below_horizon == pytest.approx(16.0)
    empty = frame_objects(np.zeros(SHAPE, np.uint8))
    assert (empty.ood_pixels, empty.object_pixels, empty.object_bottom) == (0, 0, -1)


def test_a_component_is_detected_when_half_its_pixels_are_below_the_threshold() -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:30, 10:30] = 1  # 400 px
    mask[100:120, 100:120] = 1  # 400 px
    mask[200:250, 300:400] = 1  # 5000 px
    conf = np.ones(SHAPE, np.float32)
    conf[10:20, 10:30] = 0.3  # exactly 200 of 400 below: detected
    conf[100:110, 100:120] = 0.3  # 199 of 400 below: not
    conf[100, 100] = 0.5  # at the threshold is not below
    conf[200:250, 300:400] = np.nan  # NaN counts as uncertain
    f = frame_objects(mask, conf, threshold=0.5)
    assert sorted(f.components) == [(400, False), (400, True), (5000, True)]
    rows = component_recall_by_size([f, None, frame_objects(np.zeros(SHAPE))])
    assert [(r["bin"], r["components"], r["found"]) for r in rows] == [
        ("100-300", 0, 0),
        ("300-1000", 2, 1),
        ("1000-3000", 0, 0),
        (">=3000", 1, 1),
    ]
    assert rows[1]["recall"] == 0.5 and rows[0]["recall"] is None
    with pytest.raises(ValueError):
        frame_objects(mask, conf[:10], threshold=0.5)


def test_alert_recall_by_size_excuses_the_onset_like_the_headline_recall() -> None:
    # one run of 9 positive frames (first 2 excused), sizes crossing every bin edge
    pixels = [0, 100, 120, 299, 300, 999, 1000, 2999, 3000, 5000, 0, 50]
    levels = [0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    frames = [fo(p) for p in pixels]
    rows = recall_by_size(levels, frames, raise_frames=2)
    assert [(r["frames"], r["found"]) for r in rows] == [(1, 0), (2, 2), (2, 1), (2, 1)]
    # the bins hold exactly the frames the headline recall counts
    score = score_alerts(levels, frame_presence(pixels, pixels), raise_frames=2)
    assert sum(r["frames"] for r in rows) == score.positives
    assert sum(r["found"] for r in rows) == score.alerted_positives
    with pytest.raises(ValueError):
        recall_by_size(levels[:3], frames, raise_frames=2)


def test_a_report_without_ood_ground_truth_is_none() -> None:
    assert early_warning_report([0, 0], [None, None], [0.0, 0.1], 3) is None
    assert pool_early_warning([None, None]) is None
