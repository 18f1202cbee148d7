"""Helpers for the fed_fleet_eval tests (not product code): a folder of tiny synthroad bags with a
corrupt one and one without the camera topic, the arguments that evaluate them with a tiny random
model, and the oracle: ONE scorer fed every frame of every bag through the frame path directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from training import synthroad_bag as sb

SIZE = (64, 128)
#: Frames of good bag i: unequal, so a per-bag mean or an unweighted share is told from
#: the fleet's own (16 frames in all).
BAG_FRAMES = (2, 4, 7, 3)


def corrupt_chunk(bag: Path) -> None:
    """Flip bytes in the middle of the first MCAP chunk (only the CRC notices)."""
    from mcap.reader import make_reader

    path = next(bag.glob("*.mcap"))
    with open(path, "rb") as handle:
        chunk = make_reader(handle).get_summary().chunk_indexes[0]
    data = bytearray(path.read_bytes())
    middle = chunk.chunk_start_offset + chunk.chunk_length // 2
    data[middle : middle + 32] = bytes(b ^ 0xFF for b in data[middle : middle + 32])
    path.write_bytes(bytes(data))


def write_fleet(root: Path, good: int) -> dict[str, Any]:
    """``root/fleet/drive_NN`` good bags (seeds 0..good-1, ``BAG_FRAMES[i % 4]`` frames each),
    ``bad_corrupt`` (a corrupt chunk) and ``bad_no_camera`` (diagnostics only: no camera
    topic)."""
    fleet = root / "fleet"
    for i in range(good):
        sb.write_synthroad_bag(
            fleet / f"drive_{i:02d}",
            frames=BAG_FRAMES[i % len(BAG_FRAMES)],
            size=SIZE,
            seed=i,
            ood_from_frame=1,
        )
    shutil.copytree(fleet / "drive_00", fleet / "bad_corrupt")
    corrupt_chunk(fleet / "bad_corrupt")
    _write_without_camera(fleet / "bad_no_camera")
    good_ids = [f"drive_{i:02d}" for i in range(good)]
    return {"fleet": fleet, "good": good_ids, "bad": ["bad_corrupt", "bad_no_camera"]}


def _write_without_camera(path: Path) -> None:
    """A bag with diagnostics only: no camera topic to evaluate."""
    from ros2_fed.eval.replay import bagio

    with bagio.BagWriter(path, "mcap") as writer:
        writer.add_topic("/diagnostics", bagio.DIAGNOSTIC_ARRAY)
        writer.write("/diagnostics", 1, bagio.diagnostic_array(1, "camera", []))


def model_args(model: dict[str, str]) -> list[str]:
    return ["--backbone", model["backbone"], "--fed", model["fed"], "--runtime", "torch"]


def read_report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def oracle_results(
    bags: list[Path], model: dict[str, str], exact: Optional[bool] = None
) -> dict[str, Any]:
    """ONE Scorer over every frame of every bag (in this order), fed straight from the frame
    path (``run_offline``), without any per-bag state, file or merge (``exact``: the Scorer's
    own rule when None)."""
    from ros2_fed.eval.replay import bag as bagmod
    from ros2_fed.eval.replay.offline import CameraStream, run_offline
    from ros2_fed.eval.replay.scoring import Scorer
    from ros2_fed.pipeline.model_spec import ModelSpec

    scans = [bagmod.scan(bag, progress=False) for bag in bags]
    frames = sum(len(s.frames) for s in scans)
    spec = ModelSpec(
        backbone=model["backbone"], fed=model["fed"], runtime="torch", threads=1
    ).resolved(*SIZE)
    scorer = Scorer(19, frames, SIZE[0] * SIZE[1], exact=exact, probability=["FED-U (node)"])
    for scan in scans:
        for _, item in run_offline([CameraStream("", scan)], spec, {}, 0, log=lambda m: None):
            scorer.update(
                item.labels,
                {"FED-U (node)": 1.0 - item.confidence},
                item.frame.label,
                item.frame.ood,
                "node",
            )
    return scorer.results()


def assert_results_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Counts exactly, derived metrics to 1e-12."""
    assert got["images"] == want["images"] and got["exact"] == want["exact"]
    assert set(got["methods"]) == set(want["methods"])
    for name, row in want["methods"].items():
        for part in ("ood", "idm"):
            for key, value in row.get(part, {}).items():
                have = got["methods"][name][part][key]
                if key.startswith("n_"):
                    assert have == value, (name, part, key)
                else:
                    assert have == pytest_approx(value), (name, part, key, have, value)
    assert got["miou"] == {k: pytest_approx(v) for k, v in want["miou"].items()}
    assert got["per_class_iou"] == {
        k: [None if v is None else pytest_approx(v) for v in vals]
        for k, vals in want["per_class_iou"].items()
    }


def pytest_approx(value: Any) -> Any:
    import pytest

    return pytest.approx(value, abs=1e-12, rel=0)
