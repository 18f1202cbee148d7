"""ros2_fed.eval.alert_metrics: frame presence, excused onsets, recall and false alarms by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ros2_fed.eval.alert_metrics import frame_presence, largest_object_pixels, score_alerts
from ros2_fed.pipeline import DEFAULT_FED


def test_largest_object_is_one_connected_component() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[0:5, 0:5] = 1  # 25
    mask[20:30, 20:30] = 1  # 100
    mask[30, 30] = 1  # diagonal neighbour: same object (8-connected)
    mask[35:40, 0:40] = 255  # void is not OOD
    assert largest_object_pixels(mask) == 101
    assert largest_object_pixels(np.zeros((3, 3), np.uint8)) == 0


def test_presence_classes() -> None:
    assert frame_presence([150, 100, 99, 0, None], [150, 120, 99, 0, None]) == [
        True,
        True,
        None,
        False,
        None,
    ]


def test_recall_excuses_the_first_raise_frames_of_each_run() -> None:
    presence = [False, True, True, True, True, False, True, True, True]
    levels = [0, 0, 0, 1, 2, 1, 0, 0, 1]
    score = score_alerts(levels, presence, raise_frames=2)
    # runs: frames 1-4 (1, 2 excused; 3, 4 alerted), frames 6-8 (6, 7 excused; 8 alerted)
    assert (score.positives, score.excused, score.alerted_positives) == (3, 4, 3)
    assert score.recall == 1.0
    # negatives: frames 0 (OK) and 5 (WARN: the alert still holding after the object left)
    assert (score.negatives, score.alerted_negatives, score.false_alarm_rate) == (2, 1, 0.5)


def test_missing_records_count_as_not_alerted_and_empty_classes_are_none() -> None:
    score = score_alerts([None, None, None], [True, True, True], raise_frames=1)
    assert score.recall == 0.0 and score.false_alarm_rate is None
    score = score_alerts([0, 1], [False, None], raise_frames=3)
    assert score.recall is None and score.false_alarm_rate == 0.0
    with pytest.raises(ValueError):
        score_alerts([0], [True, False], raise_frames=1)


def test_alert_selection_replays_drives_and_respects_the_false_alarm_cap() -> None:
    """training.alert_selection on two synthetic drives: an object blob from frame 5 on one of
    them."""
    from dataclasses import replace

    from ros2_fed.alerts import AlertConfig
    from training import alert_selection as sel

    def drive(with_object: bool, noise: bool) -> tuple[list[np.ndarray], list, list]:
        frames, presence = [], []
        for i in range(12):
            conf = np.ones((100, 200), np.float32)
            if noise:
                conf[60:62, :] = 0.6  # a thin uncertain strip (boundary), every frame
            if with_object and i >= 5:
                conf[70:80, 90:100] = 0.3  # a 10x10 object (size 0.1)
            frames.append(conf.astype(np.float16))
            presence.append(True if with_object and i >= 5 else False)
        return (
            frames,
            [None] * len(frames),
            presence,
        )  # no label maps: the drivable ROI is the corridor

    drives = [drive(True, True), drive(False, True)]
    base = replace(
        AlertConfig(),
        confidence_threshold=0.5,
        min_width=0.0,
        warn_size=0.05,
        error_size=0.1,
        raise_frames=2,
        roi="corridor",
        size_reference="height",
        rule="region",
    )
    result = sel.replay(base, drives)
    # object frames 5..11: the first 2 excused, 5 counted, all alerted; the strip is 2x200 = size
    # 0.2 but
    # its confidence 0.6 is above the threshold 0.5, so no false alarm
    assert (result["recall"], result["false_alarm_rate"], result["positives"]) == (1.0, 0.0, 5)
    # with the threshold above the strip's confidence every frame from the second on alerts (no
    # opening):
    # 17 negative frames (5 + 12), all but the first of each drive alerted
    noisy = sel.replay(replace(base, confidence_threshold=0.7), drives)
    assert noisy["false_alarm_rate"] == pytest.approx(15 / 17)
    rows, best = sel.select(
        {q: (0.5 if q <= 0.02 else 0.7) for q in sel.FALSE_ALARM_GRID}, drives, base
    )
    assert len(rows) == sum(
        len(qs) * len(widths) * len(sel.WARN_SIZE_GRID[ref]) * len(sel.RAISE_FRAMES_GRID)
        for _, _, _, _, ref, _, _, qs, widths in sel.MEASURE_GRID
    )
    assert {r["roi_margin"] for r in rows} == {m for _, _, m, *_ in sel.MEASURE_GRID}
    assert {r["size_reference"] for r in rows} == {"horizon"}
    chosen = sel.row_config(base, best)
    assert sel.replay(chosen, drives)["recall"] == best["recall"]
    written = json.loads(
        sel.grid_json({"selected": best}, rows)
    )  # docs/alerts_selection.json's layout
    assert written["selected"] == best and len(written["grid"]) == len(rows)
    assert (
        dict(zip(written["grid_columns"], written["grid"][-1]))["warn_size"]
        == rows[-1]["warn_size"]
    )
    assert best["false_alarm_rate"] <= sel.MAX_SELECTION_FALSE_ALARMS and best["recall"] == 1.0


@pytest.mark.slow
def test_alert_selection_scores_the_shipped_defaults_on_new_drives(tmp_path) -> None:
    """--defaults-only: no grid, the shipped AlertConfig at the FED's calibrated threshold."""
    from pathlib import Path

    from ros2_fed.alerts import AlertConfig
    from training import alert_selection as sel

    models = Path(__file__).resolve().parents[1] / "models"
    out = tmp_path / "defaults.json"
    code = sel.main(
        [
            "--backbone",
            str(models / "tinyseg_synthroad"),
            "--fed",
            str(models / DEFAULT_FED),
            "--data-root",
            str(tmp_path / "unused"),
            "--defaults-only",
            "--eval-seeds",
            "7",
            "--frames",
            "4",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    calibrated = json.loads((models / f"{DEFAULT_FED}.json").read_text())["calibration"]
    assert code == 0 and set(result["per_drive"]) == {"7"}
    assert result["config"]["confidence_threshold"] == calibrated["confidence_threshold"]
    assert result["config"]["roi_margin"] == AlertConfig().roi_margin
    assert result["pooled"]["negatives"] == 4 and result["pooled"]["positives"] == 0
    # seed 7 shows no unknown object: no appearance, no component to find
    warning = result["early_warning"]
    assert warning["pooled"]["summary"]["appearances"] == 0
    assert warning["per_drive"]["7"]["never_alerted"] == 0
    assert sum(r["components"] for r in warning["pooled"]["detector_recall_by_size"]) == 0
