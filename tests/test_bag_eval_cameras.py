"""fed_bag_eval on a multi-camera bag (ros2_fed/eval/replay/multicamera.py).

A 3-camera 4-frame 64x128 synthroad rig (``fed_synthroad_bag --cameras 3``) and a random TinySeg +
FED-U (torch runtime, no export):

- OUT/<camera>/ holds each camera's complete report and output bag, equal to fed_bag_eval run on
  that camera's topics alone (metrics, alert timeline, detection, ranked frames);
- the POOLED pixel metrics equal one ``Scorer`` fed every frame of every camera (node outputs
  read back from the output bags, reference rows recomputed); pooled alert counts are the
  cameras' counts added;
- ``Scorer.merge`` equals one scorer fed both streams (exact, histogram, exact into histogram);
- a one-camera bag still gives today's single report (no camera folders); ``--live`` with
  several cameras is refused with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay import cli as bag_eval
from ros2_fed.eval.replay import multicamera
from ros2_fed.eval.replay.scoring import ReferenceModel, ReferenceScores, Scorer
from training import synthroad_bag as sb

FRAMES, SIZE, CAMERAS = 4, (64, 128), ("cam0", "cam1", "cam2")
#: what a single run's report must equal between the rig run and the camera run alone
SAME = ("frames", "method_sources", "node_method", "output_prefix")
#: ... and what only within float tolerance: the rig runs one engine batch of 3 frames (as a
#: ``cameras:=[...]`` fed_node does), the camera alone batches of 1; the engine's arithmetic
#: differs in the last bits between batch sizes
CLOSE = ("metrics", "frames_ranked")
TOLERANCE = 1e-4


def assert_close(a: Any, b: Any, where: tuple = (), tol: float = TOLERANCE) -> None:
    """Equal structure, strings and integers; floats within ``tol`` (NaN, a metric without
    components, equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], where + (key,), tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, where + (i,), tol)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=tol, nan_ok=True), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.fed_helpers import private_engine_cache, save_tiny_model

    root = tmp_path_factory.mktemp("bag_eval_cameras")
    model = save_tiny_model(root, SIZE)
    sb.write_synthroad_bag(
        root / "rig", frames=FRAMES, size=SIZE, seed=0, ood_from_frame=1, cameras=len(CAMERAS)
    )
    with private_engine_cache(root):
        yield {"root": root, "bag": root / "rig", **model}


def model_args(work: dict[str, Any]) -> list[str]:
    # no MC dropout: its random passes would make the reference oracle below order-dependent
    return [
        "--backbone",
        work["backbone"],
        "--fed",
        work["fed"],
        "--runtime",
        "torch",
        "--threads",
        "1",
        "--mcd-passes",
        "0",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def rig(work: dict[str, Any]) -> dict[str, Any]:
    out = work["root"] / "rig_eval"
    assert bag_eval.main([str(work["bag"]), "--out", str(out)] + model_args(work)) == 0
    return {"out": out, "report": json.loads((out / "report.json").read_text())}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_per_camera_reports_equal_single_camera_runs(
    work: dict[str, Any], rig: dict[str, Any]
) -> None:
    out, report = rig["out"], rig["report"]
    assert report["complete"] is True and report["kind"] == "cameras"
    assert [c["name"] for c in report["cameras"]] == list(CAMERAS)
    assert sorted(p.name for p in out.iterdir()) == sorted(CAMERAS + ("report.json", "report.md"))
    for name in ("cam0", "cam2"):  # (cam1 the same way; two keep the test short)
        image, labels, ood = sb.camera_topics(name)
        alone = work["root"] / f"alone_{name}"
        code = bag_eval.main(
            [
                str(work["bag"]),
                "--out",
                str(alone),
                "--topic",
                image,
                "--gt-topic",
                labels,
                "--ood-topic",
                ood,
                "--output-prefix",
                f"/fed_node/{name}",
            ]
            + model_args(work)
        )
        assert code == 0
        mine, single = _load(out / name / "report.json"), _load(alone / "report.json")
        assert mine["complete"] is True and "kind" not in mine
        for key in SAME:
            assert mine[key] == single[key], (name, key)
        for key in CLOSE:
            assert_close(mine[key], single[key], (name, key))
        for key in ("counts", "transitions", "per_frame", "detection", "config"):
            assert_close(mine["alerts"][key], single["alerts"][key], (name, "alerts", key))
        assert (
            mine["bag"]["topics"]
            == single["bag"]["topics"]
            == {
                "image": image,
                "image_type": "sensor_msgs/msg/Image",
                "labels": labels,
                "ood": ood,
            }
        )
        assert mine["frames"]["evaluated"] == FRAMES
        for file in ("report.md", "mosaic_worst.png", "mosaic_best.png", "alerts.png"):
            assert (out / name / file).is_file()
        topics = bagmod.open_info(out / name / "output_bag").topics
        assert set(topics) == {image, labels, ood} | {
            f"/fed_node/{name}/{n}"
            for n in ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")
        }
        # the statuses are named as a cameras:=[...] fed_node names them
        info = bagmod.open_info(out / name / "output_bag")
        alerts = [m for _, _, _, _, m in bagmod.read_messages(info, [f"/fed_node/{name}/alerts"])]
        assert len(alerts) == FRAMES
        assert [s.name for s in alerts[0].status] == [
            f"fed_node: {name} alerts",
            f"fed_node: {name} scene",
        ]
        entry = next(c for c in report["cameras"] if c["name"] == name)
        node_row = mine["metrics"]["methods"]["FED-U (node)"]
        assert entry["node"]["ood_auroc"] == node_row["ood"]["auroc"]
    md = (out / "report.md").read_text()
    assert "| **POOLED** | 12 | 0 |" in md and all(f"[{n}]({n}/report.md)" in md for n in CAMERAS)


def _frames(path: Path, topics: dict[str, str]) -> dict[int, dict[str, np.ndarray]]:
    """{stamp: {role: array}} of the given topics ({topic: role}), decoded by ros2_fed.codec."""
    from ros2_fed import codec
    from ros2_fed.eval.replay import bagio

    info = bagmod.open_info(path)
    frames: dict[int, dict[str, np.ndarray]] = {}
    for topic, _, _, _, msg in bagmod.read_messages(info, list(topics)):
        arr = codec.to_rgb8(msg) if topics[topic] == "rgb" else codec.image_to_numpy(msg)
        frames.setdefault(bagio.stamp_ns(msg), {})[topics[topic]] = np.array(arr)
    return frames


def test_pooled_metrics_equal_one_scorer_over_all_frames(
    work: dict[str, Any], rig: dict[str, Any]
) -> None:
    out, report = rig["out"], rig["report"]
    pooled = report["pooled"]
    node = report["node_method"]
    reference = ReferenceScores(
        ReferenceModel(backbone=work["backbone"], feds={"FED-U": work["fed"]}, mcd_passes=0)
    )
    one = Scorer(19, FRAMES * len(CAMERAS), SIZE[0] * SIZE[1], probability=[node])
    for name in CAMERAS:  # frame-major would do as well: pooled metrics do not depend on order
        image, labels, ood = sb.camera_topics(name)
        inputs = _frames(work["bag"], {image: "rgb", labels: "label", ood: "ood"})
        outputs = _frames(
            out / name / "output_bag",
            {f"/fed_node/{name}/segmentation": "seg", f"/fed_node/{name}/confidence": "conf"},
        )
        assert sorted(inputs) == sorted(outputs) and len(inputs) == FRAMES
        for stamp in sorted(inputs):
            f, o = inputs[stamp], outputs[stamp]
            one.update(o["seg"], {node: 1.0 - o["conf"]}, f["label"], f["ood"], "node")
            pred, maps = reference(f["rgb"])
            one.update(pred, maps, f["label"], f["ood"], "reference")
    expected = one.results()
    got = pooled["metrics"]
    assert got["images"] == expected["images"] == FRAMES * len(CAMERAS)
    assert got["exact"] is expected["exact"] is True
    assert (
        set(got["methods"])
        == set(expected["methods"])
        == {node, "FED-U", "MSP", "MLG", "ENE", "ENT"}
    )
    for method, row in expected["methods"].items():
        for kind in ("ood", "idm"):
            assert got["methods"][method][kind] == pytest.approx(row[kind], rel=0, abs=1e-12), (
                method,
                kind,
            )
    assert got["miou"] == pytest.approx(expected["miou"], abs=1e-12)
    # alert counts: the cameras' counts added
    cams = [_load(out / n / "report.json")["alerts"]["detection"] for n in CAMERAS]
    det = pooled["alerts"]["detection"]
    for key in multicamera.DETECTION_COUNTS:
        assert det[key] == sum(c[key] for c in cams if c)
    assert det["negatives"] > 0 and det["positives"] + det["excused"] > 0
    assert det["false_alarm_rate"] == det["alerted_negatives"] / det["negatives"]
    assert pooled["frames"]["evaluated"] == FRAMES * len(CAMERAS)
    assert pooled["latency_ms"]["n"] == FRAMES * len(CAMERAS)
    # early warning: every camera's appearances, named by camera, delays over the pooled list
    from ros2_fed.eval.early_warning import pool_early_warning

    own = [_load(out / n / "report.json")["early_warning"] for n in CAMERAS]
    assert pooled["early_warning"] == pool_early_warning(own, list(CAMERAS))
    assert {a["source"] for a in pooled["early_warning"]["appearances"]} <= set(CAMERAS)
    assert "## Early warning (pooled over the cameras)" in (out / "report.md").read_text()


@pytest.mark.parametrize("modes", [(True, True), (False, False), (False, True)])
def test_scorer_merge_equals_one_scorer(modes: tuple[bool, bool]) -> None:
    """(pooled exact, second scorer exact): exact + exact, histogram + histogram, and exact
    pairs binned into a histogram."""
    rng = np.random.default_rng(0)
    pooled_exact, second_exact = modes
    parts = [Scorer(5, 3, 64, exact=pooled_exact), Scorer(5, 3, 64, exact=second_exact)]
    one = Scorer(5, 6, 64, exact=pooled_exact)
    for k in range(6):
        pred = rng.integers(0, 5, (8, 8)).astype(np.uint8)
        label = rng.integers(0, 5, (8, 8)).astype(np.uint8)
        label[0, :3] = 255
        ood = (rng.random((8, 8)) < 0.2).astype(np.uint8)
        ood[1, :2] = 255
        maps = {"A": rng.random((8, 8)).astype(np.float32), "B": rng.normal(size=(8, 8))}
        if k == 4:
            maps["C"] = rng.random((8, 8))  # a method only one part has
        for scorer in (parts[k % 2], one):
            scorer.update(pred, maps, label, None if k == 5 else ood, "node")
    merged = parts[0].merge(parts[1])
    got, expected = merged.results(), one.results()
    assert got.keys() == expected.keys() and got["images"] == expected["images"] == 6
    assert got["methods"].keys() == expected["methods"].keys() == {"A", "B", "C"}
    for method, row in expected["methods"].items():
        assert got["methods"][method].keys() == row.keys()
        for kind, numbers in row.items():
            bounds = numbers.pop("error_bounds", None)  # histograms only
            assert got["methods"][method][kind].pop("error_bounds", None) == bounds
            assert_close(got["methods"][method][kind], numbers, (method, kind), 1e-12)
    assert got["miou"] == expected["miou"] and got["per_class_iou"] == expected["per_class_iou"]
    if not pooled_exact and second_exact:
        with pytest.raises(ValueError):
            Scorer(5, 1, 64, exact=True).merge(Scorer(5, 1, 64, exact=False))


def test_pool_turns_to_histograms_past_the_exact_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact while all cameras' frames x pixels stay under the limit (fed_eval's rule), then
    histograms -- equal to one histogram scorer fed every frame."""
    monkeypatch.setattr(multicamera, "EXACT_PIXEL_LIMIT", 2 * 3 * 64)
    rng = np.random.default_rng(1)
    pool, one = multicamera.Pool(), Scorer(5, 9, 64, exact=False)
    for camera in range(3):
        part = Scorer(5, 3, 64, exact=True)
        for _ in range(3):
            pred, label = (rng.integers(0, 5, (8, 8)).astype(np.uint8) for _ in range(2))
            ood = (rng.random((8, 8)) < 0.3).astype(np.uint8)
            maps = {"A": rng.random((8, 8))}
            for scorer in (part, one):
                scorer.update(pred, maps, label, ood, "node")
        pool.add(part, 3, 64)
        assert pool.scorer is not None and pool.scorer.exact is (camera < 2)
    got, expected = pool.scorer.results(), one.results()
    assert got["methods"]["A"]["ood"] == expected["methods"]["A"]["ood"]
    assert got["methods"]["A"]["idm"] == pytest.approx(expected["methods"]["A"]["idm"], abs=1e-12)
    assert got["miou"] == expected["miou"] and got["images"] == 9


def test_one_camera_bag_keeps_the_single_report(work: dict[str, Any], tmp_path: Path) -> None:
    bag = tmp_path / "drive"
    sb.write_synthroad_bag(bag, frames=2, size=SIZE, seed=0, ood_from_frame=1)
    out = tmp_path / "out"
    assert bag_eval.main([str(bag), "--out", str(out), "--no-reference"] + model_args(work)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "output_bag",
            "report.json",
            "report.md",
            "mosaic_worst.png",
            "mosaic_best.png",
            "alerts.png",
        ]
    )
    report = _load(out / "report.json")
    assert "kind" not in report and "cameras" not in report and "pooled" not in report
    assert report["bag"]["topics"]["image"] == sb.IMAGE_TOPIC
    assert set(bagmod.open_info(out / "output_bag").topics) >= {sb.IMAGE_TOPIC, "/fed_node/alerts"}


def test_camera_selection_and_live_refused(
    work: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = bagmod.open_info(work["bag"])
    found = multicamera.find_cameras(info, [])
    assert [c.name for c in found] == list(CAMERAS)
    assert found[1] == multicamera.Camera("cam1", "/cam1/image_raw", "/cam1/labels", "/cam1/ood")
    info.custom_data = {}  # a bag not written by fed_synthroad_bag: topics found under /NAME/
    assert multicamera.find_cameras(info, ["cam2", "cam0"], ground_truth=False) == [
        multicamera.Camera("cam2", "/cam2/image_raw"),
        multicamera.Camera("cam0", "/cam0/image_raw"),
    ]
    with pytest.raises(bagmod.BagError, match="camera rear: no image topics under /rear/"):
        multicamera.find_cameras(info, ["rear"])
    out = tmp_path / "live"
    assert bag_eval.main([str(work["bag"]), "--live", "--out", str(out)] + model_args(work)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "live replay is single-camera" in err[0]
    assert _load(out / "report.json")["complete"] is False and not (out / "report.md").exists()
    code = bag_eval.main(
        [
            str(work["bag"]),
            "--cameras",
            "cam1",
            "--topic",
            "/cam1/image_raw",
            "--out",
            str(tmp_path / "both"),
        ]
        + model_args(work)
    )
    assert code == 2 and "do not combine it with --topic" in capsys.readouterr().err
