"""The labelling queue (ros2_fed/eval/clip_queue.py): score terms from a clip's statuses, folding
of near-duplicates by time and by image, the Cityscapes layout fed_train reads, and
fed_fleet_eval --clips end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ros2_fed.eval import clip_queue as cq
from ros2_fed.health import Status
from ros2_fed.messages import image_message, serialize
from ros2_fed.recording.config import RecordConfig
from ros2_fed.recording.stage import RecordStage

S = 1_000_000_000
T0 = 1_765_000_000 * S


def texture(seed: int, shape=(32, 48)) -> np.ndarray:
    """A frame unlike another seed's (blocks of random grey levels: its hash differs)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 12, 1), dtype=np.uint8).repeat(3, axis=2)
    return np.kron(small, np.ones((4, 4, 1), np.uint8))[: shape[0], : shape[1]]


def record(
    folder: Path,
    levels: list[int],
    sizes: list[float],
    scene: list[int],
    seed: int,
    start_s: float = 0.0,
) -> None:
    """One drive through the recorder: a clip from the first WARN to the end."""
    stage = RecordStage(SimpleNamespace(metadata={"model_hash": "m"}), ("",))
    stage.apply((RecordConfig(enabled=True, dir=str(folder), before=1.0, after=10.0), 2.0))
    image = texture(seed)
    for i, (level, size, sc) in enumerate(zip(levels, sizes, scene)):
        t = T0 + int(start_s * S) + i * S // 10
        raw = serialize(image_message(image, "rgb8", t, "cam"))
        stage.observe("/camera/image_raw", "sensor_msgs/msg/Image", raw, len(raw), t)
        frame = SimpleNamespace(
            stamp=SimpleNamespace(sec=t // S, nanosec=t % S),
            message=SimpleNamespace(header=SimpleNamespace(frame_id="cam")),
            confidence=np.full(image.shape[:2], 0.5, np.float32),
            labels=np.full(image.shape[:2], seed % 19, np.uint8),
            statuses={
                "alerts": Status(
                    level, "a", {"evidence": str(size), "region_size": str(size)}, "n: alerts"
                ),
                "scene": Status(sc, "s", {}, "n: scene"),  # named as the processor names them
            },
        )
        stage.update("", frame)
    stage.close()


def test_the_score_adds_region_persistence_and_half_the_scene(tmp_path: Path) -> None:
    # 2 frames before the trigger (OK), 4 at WARN+; sizes average (0.1+0.1+0.4+0.6+1.5+0.2)/6
    # with 1.5 clipped to 1: 2.4 / 6 = 0.4; persistence 4 / 6; scene WARN at most: 0.5 / 2
    record(tmp_path, [0, 0, 1, 2, 2, 1], [0.1, 0.1, 0.4, 0.6, 1.5, 0.2], [0, 0, 0, 1, 1, 0], 1)
    (clip,) = tmp_path.glob("*.mcap")
    meta, frames = cq.read_clip(clip)
    assert sorted(frames.camera) == [T0 + k * S // 10 for k in range(6)]
    terms = cq.evidence(frames)
    assert terms == pytest.approx({"region": 0.4, "persistence": 4 / 6, "scene": 0.5})
    assert cq.score(terms) == pytest.approx(0.4 + 4 / 6 + 0.25)
    assert meta["reason"] == "alert" and cq.trigger_frame(meta, frames) == T0 + 2 * S // 10


def queue_of(tmp_path: Path, drives: dict[str, list[tuple[int, float, float]]]) -> dict:
    """drives: name -> [(image seed, start s, region size)] clips, each 5 frames at WARN."""
    folders = []
    for name, clips in drives.items():
        folder = tmp_path / name
        for seed, start, size in clips:
            record(folder, [1] * 5, [size] * 5, [0] * 5, seed, start_s=start)
        folders.append((name, folder))
    return cq.build_queue(folders, tmp_path / "queue")


def test_clips_close_in_time_on_one_drive_fold_into_the_better_one(tmp_path: Path) -> None:
    result = queue_of(tmp_path, {"a": [(1, 0.0, 0.2), (2, 5.0, 0.6), (3, 30.0, 0.3)]})
    rows = result["queue"]
    assert [round(r["region"], 2) for r in rows] == [0.6, 0.3]  # 0.2 folded into 0.6 (5 s)
    assert rows[0]["folded"] == ["clip_20251206T054640.000Z_alert.mcap"]  # triggered at 0 s
    assert (result["clips_found"], result["clips_queued"], result["clips_folded"]) == (3, 2, 1)


def test_the_same_picture_on_another_drive_folds_another_does_not(tmp_path: Path) -> None:
    result = queue_of(tmp_path, {"a": [(7, 0.0, 0.5)], "b": [(7, 0.0, 0.3)], "c": [(8, 0.0, 0.4)]})
    assert [(r["drive"], r["folded"] != []) for r in result["queue"]] == [
        ("a", True),
        ("c", False),
    ]
    assert cq.dhash(texture(7)) != cq.dhash(texture(8))


def test_the_queue_writes_a_cityscapes_layout_fed_train_reads(tmp_path: Path) -> None:
    from training.datasets.cityscapes import CityscapesDataset

    result = queue_of(tmp_path, {"a": [(3, 0.0, 0.5)], "b": [(4, 0.0, 0.9)]})
    root = tmp_path / "queue" / "labelling"
    data = CityscapesDataset(root, "train")
    # 5 frames a clip (WARN from the drive's first frame on), of which every fifth (frame 0,
    # also the trigger) goes to the labelling folder
    assert len(data) == 2 * len(range(0, 5, cq.FRAME_STEP))
    sample = data[0]
    assert sample.name.startswith("clip0001") and np.all(sample.label == 4)  # drive b first
    assert np.array_equal(sample.image, texture(4))
    saved = json.loads((tmp_path / "queue" / "clips.json").read_text())
    assert (
        [r["city"] for r in saved["queue"]]
        == ["clip0001", "clip0002"]
        == [r["city"] for r in result["queue"]]
    )
    assert (tmp_path / "queue" / "clips_mosaic.png").is_file()
    assert "| 1 | 1.90 |" in (tmp_path / "queue" / "clips.md").read_text()


@pytest.mark.slow  # a worker process (torch) over two tiny bags
def test_fleet_eval_clips_gives_one_ranked_queue(tmp_path: Path) -> None:
    """Alerts forced on a tiny random model (every pixel uncertain below confidence 1): each
    bag cuts a clip, the fleet's queue ranks them and the report links it."""
    import fleet_helpers as fh
    from ros2_fed.eval.fleet import cli as fleet_cli
    from tests.fed_helpers import private_engine_cache, save_tiny_model

    model = save_tiny_model(tmp_path, fh.SIZE)
    fleet = fh.write_fleet(tmp_path, good=2)
    forced = {
        "alerts.confidence_threshold": "1.0",
        "alerts.roi": "full",
        "alerts.size_reference": "height",
        "alerts.min_width": "0.0",
        "alerts.raise_frames": "1",
    }
    params = [x for k, v in forced.items() for x in ("-p", f"{k}:={v}")]
    out = tmp_path / "out"
    inputs = [str(fleet["fleet"] / name) for name in fleet["good"]]
    with private_engine_cache(tmp_path):
        code = fleet_cli.main(
            inputs
            + ["--out", str(out), "--quiet", "--workers", "1", "--clips"]
            + fh.model_args(model)
            + params
        )
    assert code == 0
    queue = json.loads((out / "clips" / "clips.json").read_text())
    assert sorted(r["drive"] for r in queue["queue"]) == sorted(fleet["good"])
    assert [r["rank"] for r in queue["queue"]] == [1, 2]
    scores = [r["score"] for r in queue["queue"]]
    assert scores == sorted(scores, reverse=True)
    for drive in fleet["good"]:
        assert len(list((out / "bags" / drive / "clips").glob("*.mcap"))) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == {"clips_found": 2, "clips_queued": 2, "clips_folded": 0}
    assert "## Labelling queue" in (out / "report.md").read_text()
