"""The synthroad-obstacle split: small objects of the seven OOD kinds far ahead on the road,
labelled the RoadObstacle21 way (void off the road), from a seed no other split uses."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import alert_selection, cli_synthroad, scene_eval
from training.datasets.synthroad import SPLITS, render_indexed, sample_indexed
from training.datasets.synthroad.scene import ROAD
from training.datasets.synthroad.seeds import DRIVE_STREAM_TAGS, OBSTACLE_SEED, SEED_TABLE

SEVEN_KINDS = {"cargo", "animal", "tyre", "cone", "barrel", "bag", "debris"}


def _object_sizes(frames: int, seed: int = OBSTACLE_SEED) -> list[int]:
    sizes = []
    for i in range(frames):
        ood = render_indexed(seed, "obstacle", i, 256, 512).ood
        _, _, stats, _ = cv2.connectedComponentsWithStats((ood == 1).astype(np.uint8), 8)
        sizes += [int(a) for a in stats[1:, cv2.CC_STAT_AREA]]
    return sizes


def test_most_objects_are_small_and_far() -> None:
    sizes = np.array(_object_sizes(24))
    assert sizes.size >= 40  # 1-3 objects a frame (59 on these frames)
    assert np.mean(sizes < 1000) >= 0.9  # most under 1,000 px at 256x512
    assert 60 <= np.median(sizes) <= 300 and np.percentile(sizes, 90) < 1000
    assert np.mean(sizes < 10) <= 0.05  # few below the obstacle track's ground-truth limit
    # the ood split's first frames: near objects too (its 90th percentile well over 1,000 px)
    ood = []
    for i in range(12):
        mask = render_indexed(0, "ood", i, 256, 512).ood
        _, _, stats, _ = cv2.connectedComponentsWithStats((mask == 1).astype(np.uint8), 8)
        ood += [int(a) for a in stats[1:, cv2.CC_STAT_AREA]]
    assert np.percentile(ood, 90) > 2 * np.percentile(sizes, 90)


def test_the_seven_kinds_on_the_road() -> None:
    kinds = set()
    for i in range(40):
        scene, _, _ = sample_indexed(OBSTACLE_SEED, "obstacle", i, 256, 512)
        for o in scene.objects:
            if o.kind in SEVEN_KINDS:
                kinds.add(o.kind)
                assert scene.x_left < o.x < scene.x_right  # on the road
                assert o.z >= 8.0  # ahead, not under the hood
    assert kinds == SEVEN_KINDS


def test_mask_is_void_off_the_road() -> None:
    for i in range(3):
        frame = render_indexed(OBSTACLE_SEED, "obstacle", i, 256, 512)
        road = frame.label_ids == ROAD
        assert set(np.unique(frame.ood).tolist()) <= {0, 1, 255}
        assert np.all(frame.ood[road] == 0)
        assert np.all(frame.ood[~road & (frame.ood != 1)] == 255)
        assert (frame.ood == 1).any() and 0.1 < road.mean() < 0.6


def test_seeds_apart_from_every_other_split() -> None:
    ranges = list(SEED_TABLE.values())
    for kind in ("dataset", "drive"):
        spans = sorted((a, b) for k, a, b in ranges if k == kind)
        assert all(b0 < a1 for (_, b0), (a1, _) in zip(spans, spans[1:])), kind
    # not a drive seed either, nor one of a rig's cameras (seed + 1000 k)
    for _, first, last in ranges:
        assert not first <= OBSTACLE_SEED <= last or (first, last) == (OBSTACLE_SEED,) * 2
        if (first, last) != (OBSTACLE_SEED, OBSTACLE_SEED):
            assert not first % 1000 <= OBSTACLE_SEED % 1000 <= last % 1000
    # its split code is its own and none of the drive streams' tags
    assert list(SPLITS.values()).count(SPLITS["obstacle"]) == 1
    assert SPLITS["obstacle"] not in DRIVE_STREAM_TAGS
    # the table holds the seeds the drive evaluations default to
    drives = [(a, b) for k, a, b in ranges if k == "drive"]
    alert = alert_selection.build_parser().parse_args(
        ["--backbone", "b", "--fed", "f", "--data-root", "d", "--out", "o"]
    )
    scene = scene_eval.build_parser().parse_args([])
    for text in (alert.select_seeds, alert.eval_seeds, scene.seeds, scene.check_seeds):
        first, last = (int(v) for v in text.split("-"))
        assert (first, last) in drives, text


def test_fed_synthroad_writes_the_obstacle_split(tmp_path: Path) -> None:
    out = tmp_path / "data"
    argv = ["--out", str(out), "--train", "0", "--val", "0", "--ood", "1", "--obstacle", "2",
            "--size", "64x128", "--seed", str(OBSTACLE_SEED), "--no-progress"]  # fmt: skip
    assert cli_synthroad.main(argv) == 0
    folder = out / "gtFine" / "obstacle" / "synthroad"
    masks = sorted(folder.glob("*_gtFine_oodIds.png"))
    assert [p.name[:23] for p in masks] == ["synthroad_000003_000000", "synthroad_000003_000001"]
    assert json.loads((out / "synthroad.json").read_text())["counts"]["obstacle"] == 2
    ood = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(ood, render_indexed(OBSTACLE_SEED, "obstacle", 0, 64, 128).ood)
    # another run without --obstacle leaves the split alone
    assert cli_synthroad.main(argv[:8] + argv[10:]) == 0
    assert sorted(folder.glob("*_gtFine_oodIds.png")) == masks


@pytest.mark.slow
def test_fed_eval_reads_it_with_the_obstacle_track(tmp_path: Path) -> None:
    from tests.fed_helpers import save_tiny_model
    from training import cli_eval

    data = tmp_path / "data"
    assert cli_synthroad.main(
        ["--out", str(data), "--train", "0", "--val", "0", "--ood", "0", "--obstacle", "3",
         "--size", "128x256", "--seed", str(OBSTACLE_SEED), "--no-progress"]
    ) == 0  # fmt: skip
    model = save_tiny_model(tmp_path / "model", (128, 256))
    out = tmp_path / "eval"
    assert cli_eval.main(
        ["--backbone", model["backbone"], "--fed", f"FED-U={model['fed']}",
         "--dataset", "synthroad-obstacle", "--data-root", str(data), "--out", str(out),
         "--mcd-passes", "0", "--no-open-miou", "--figures", "0", "--no-progress"]
    ) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 3
    row = results["methods"]["FED-U"]
    assert row["components"]["track"] == "SegEval-ObstacleTrack"
    assert row["components"]["min_pred_size"] == 50 and row["components"]["min_gt_size"] == 10
    assert 0.0 <= row["ood"]["ap"] <= 1.0
