"""The shipped default model with the default alert rule on rendered synthroad drives.

The rule's defaults were selected on drives 100-139 (docs/alerts.md); these two drives are from
the held-out set (seed 7 has no unknown object at all, seed 4 one that approaches from afar), so
this pins what a user sees with `fed_node` defaults: quiet without an object, WARN with one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ros2_fed.alerts import AlertConfig, AlertMonitor, Level
from ros2_fed.eval.alert_metrics import score_alerts
from ros2_fed.pipeline import DEFAULT_FED

MODELS = Path(__file__).resolve().parents[1] / "models"


def _drive_levels(seed: int) -> tuple[list[int], list]:
    from ros2_fed.detector import FusedDetector
    from training.alert_selection import render_drive

    fed = MODELS / DEFAULT_FED  # what fed_node runs
    threshold = json.loads(fed.with_suffix(".json").read_text())["calibration"][
        "confidence_threshold"
    ]
    detector = FusedDetector.from_checkpoints(MODELS / "tinyseg_synthroad", fed, score="fed")
    images, presence = render_drive(seed, 60, (256, 512))
    monitor = AlertMonitor(AlertConfig(confidence_threshold=threshold))
    levels = []
    with torch.no_grad():
        for image in images:
            labels, conf = detector.eval()(torch.from_numpy(image)[None])
            state = monitor.update(conf[0].numpy(), labels=labels[0].numpy())
            levels.append(int(state.level))
    return levels, presence


@pytest.mark.slow
def test_a_drive_without_an_unknown_object_stays_ok() -> None:
    levels, presence = _drive_levels(7)
    assert not any(presence) and levels == [Level.OK] * 60


@pytest.mark.slow
def test_a_drive_with_an_unknown_object_warns_while_it_is_visible() -> None:
    levels, presence = _drive_levels(4)
    score = score_alerts(levels, presence, AlertConfig().raise_frames)
    # 0.73 measured with the shipped FED-C defaults; the 0.8 recall target is missed on the
    # held-out drives too (docs/alerts.md): this pins today's level, not the target.
    assert score.positives >= 20 and score.recall >= 0.7
    assert score.false_alarm_rate == 0.0
    # quiet until the first unknown pixel shows (smaller bits before the first >= 100 px frame may
    # alert: they are neither positives nor negatives)
    first = next(i for i, p in enumerate(presence) if p is not False)
    assert first > 0 and all(level == Level.OK for level in levels[:first])
