"""The default model's scene status on a rendered synthroad drive, through the node's frame
path (the engine fed_node opens for its default checkpoints, torch runtime here; the node's
default parameters, so the model's own scene calibration; frames as rgb8 messages at 10 Hz): the
clean drive stays OK, the same drive under severity-5 fog (imagecorruptions) goes WARN or worse
from its second frame on.

Drive seed 690: not one of the evaluation's (docs/scene.md) nor the alert rule's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ros2_fed.pipeline.model_spec import DEFAULT_BACKBONE, DEFAULT_FED
from training import scene_eval

MODELS = Path(__file__).resolve().parents[1] / "models"
SEED, FRAMES = 690, 12


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from ros2_fed.pipeline.model_spec import ModelSpec, open_engine
    from tests.fed_helpers import private_engine_cache

    root = tmp_path_factory.mktemp("scene_default")
    with private_engine_cache(root):
        spec = ModelSpec(
            backbone=str(MODELS / DEFAULT_BACKBONE),
            fed=str(MODELS / DEFAULT_FED),
            height=256,
            width=512,
            runtime="torch",
            threads=1,
        ).resolved()
        engine = open_engine(spec)
        images, labels = scene_eval.render_drive(SEED, FRAMES, (256, 512), root)
        yield {"engine": engine, "images": images, "labels": labels}
        engine.close()


def _levels(drive: dict, condition: scene_eval.Condition) -> list[dict]:
    frames = scene_eval.condition_frames(condition, drive["images"], SEED)
    return scene_eval.run_drive(drive["engine"], frames, drive["labels"])


@pytest.mark.slow
def test_a_clean_drive_stays_ok(drive: dict) -> None:
    records = _levels(drive, scene_eval.Condition("clean", "clean", 0, (SEED,)))
    assert [r["level"] for r in records] == [0] * FRAMES
    assert min(r["miou"] for r in records) > 0.4


@pytest.mark.slow
def test_a_severity_5_fog_drive_goes_warn_or_worse(drive: dict) -> None:
    records = _levels(drive, scene_eval.Condition("corruption", "fog", 5, (SEED,)))
    assert all(r["level"] >= 1 for r in records[1:]), [r["level"] for r in records]


@pytest.mark.slow
def test_the_engine_fed_node_opens_carries_the_pinned_scene_limits(drive: dict) -> None:
    """The calibration the frame path reads from the opened engine gives the limits pinned in
    tests/test_scene.py (numbers, not re-derived from the rule)."""
    from ros2_fed.pipeline import params as P
    from ros2_fed.pipeline.model_spec import model_calibration
    from tests.test_scene import SHIPPED_ERROR, SHIPPED_WARN

    cfg = P.scene_config({}, model_calibration(drive["engine"].metadata))
    assert cfg.limits_from == "model"
    assert (cfg.warn_fraction, cfg.error_fraction) == pytest.approx(
        (SHIPPED_WARN, SHIPPED_ERROR), rel=1e-12
    )
