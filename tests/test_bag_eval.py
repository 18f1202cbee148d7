"""fed_bag_eval (ros2_fed/eval/replay): output bags, the report's numbers, offline vs live, bad
bags.

A 6-frame 64x128 synthroad drive (training/synthroad_bag.py) and a random-weights TinySeg +
FED-U saved to a temp folder (torch runtime: no export) are shared by the module.

- the output bag is read back with ``mcap`` + ``mcap-ros2-support`` (CRC-checked) and every
  output equals the engine run directly on the frames; the camera / ground-truth copies are
  byte-identical to the input bag;
- the report's numbers equal ``training.evaluation.Evaluator`` (what ``fed_eval`` runs) on the
  same frames, decoded by the independent reader: reference rows exactly, the node's row (its
  float32 confidence; 1 - (1 - p) rounds the smallest p) within 2e-3;
- ``ros``: ``--live`` through a real ``fed_node`` process at the recorded rate gives the same
  metrics as ``--offline`` and drops nothing; played 20x faster into a slow node it drops frames
  and says how many;
- a missing topic, a wrong type, a corrupt chunk, a truncated file, a dead node: a clear error
  naming it, exit code 2 (1 for the node), ``report.json`` with ``complete: false``, no
  ``report.md``, no output bag.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay import cli as bag_eval
from training import synthroad_bag as sb

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "node_harness.py"
FRAMES, SIZE = 6, (64, 128)
MCD = "2"  # MC-dropout passes (the baseline row exists, cheaply)


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Bag + random model + engine cache, shared by the module."""
    from tests.fed_helpers import private_engine_cache, save_tiny_model

    root = tmp_path_factory.mktemp("bag_eval")
    model = save_tiny_model(root, SIZE)
    sb.write_synthroad_bag(
        root / "drive", frames=FRAMES, size=SIZE, fps=10.0, seed=0, ood_from_frame=1
    )
    with private_engine_cache(root):
        yield {"root": root, "bag": root / "drive", **model}


def model_args(work: dict[str, Any]) -> list[str]:
    # one thread: on a busy 2-core machine two OpenMP threads per process are many times slower
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
        MCD,
    ]


@pytest.fixture(scope="module")
def offline(work: dict[str, Any]) -> dict[str, Any]:
    out = work["root"] / "offline"
    code = bag_eval.main(
        [str(work["bag"]), "--offline", "--out", str(out), "--quiet"] + model_args(work)
    )
    assert code == 0
    return {"out": out, "report": json.loads((out / "report.json").read_text())}


def mcap_messages(path: Path) -> list[tuple[str, int, bytes, Any]]:
    """(topic, log time, raw CDR, decoded) with the independent MCAP reader (CRCs validated)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
    assert len(files) == 1, files
    with open(files[0], "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()], validate_crcs=True)
        return [
            (channel.topic, message.log_time, bytes(message.data), ros)
            for _, channel, message, ros in reader.iter_decoded_messages()
        ]


def stamp(ros: Any) -> int:
    return ros.header.stamp.sec * 1_000_000_000 + ros.header.stamp.nanosec


def as_array(ros: Any) -> np.ndarray:
    dtype, channels = {"mono8": (np.uint8, 1), "rgb8": (np.uint8, 3), "32FC1": (np.float32, 1)}[
        ros.encoding
    ]
    arr = np.frombuffer(bytes(ros.data), dtype=dtype).reshape(ros.height, ros.width, channels)
    return arr[..., 0] if channels == 1 else arr


def bag_frames(bag: Path) -> list[dict[str, Any]]:
    """Camera frame + ground truth per stamp, decoded without ros2_fed."""
    frames: dict[int, dict[str, Any]] = {}
    for topic, _, _, ros in mcap_messages(bag):
        frames.setdefault(stamp(ros), {})[topic] = np.array(as_array(ros))  # writable copy
    return [frames[s] for s in sorted(frames)]


def methods_close(a: dict[str, Any], b: dict[str, Any], tol: float) -> None:
    for kind in ("ood", "idm"):
        for key in ("auroc", "ap", "fpr_at_tpr"):
            assert math.isclose(a[kind][key], b[kind][key], abs_tol=tol), (
                kind,
                key,
                a[kind][key],
                b[kind][key],
            )


# --------------------------------------------------------------------------------------
# Offline: output bag and report numbers
# --------------------------------------------------------------------------------------


def test_output_bag_read_back_independently(work: dict[str, Any], offline: dict[str, Any]) -> None:
    from ros2_fed.engine import open_cached

    out_msgs = mcap_messages(offline["out"] / "output_bag")
    in_msgs = mcap_messages(work["bag"])
    topics: dict[str, list] = {}
    for topic, log_time, raw, ros in out_msgs:
        topics.setdefault(topic, []).append((log_time, raw, ros))
    outputs = [
        f"/fed_node/{n}"
        for n in ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")
    ]
    assert sorted(topics) == sorted([sb.IMAGE_TOPIC, sb.LABELS_TOPIC, sb.OOD_TOPIC] + outputs)
    assert all(len(v) == FRAMES for v in topics.values())
    # camera + ground truth: byte-identical copies with the recorded log times
    copied = {(t, lt, raw) for t, lt, raw, _ in out_msgs if t.startswith("/camera")}
    assert copied == {(t, lt, raw) for t, lt, raw, _ in in_msgs}
    # node outputs: what the engine gives for each frame, input header copied
    engine = open_cached(
        work["backbone"],
        work["fed"],
        height=SIZE[0],
        width=SIZE[1],
        runtime="torch",
        warmup=0,
        progress=None,
    )
    cameras = {
        stamp(ros): (ros.header.frame_id, as_array(ros))
        for t, _, _, ros in in_msgs
        if t == sb.IMAGE_TOPIC
    }
    seg = {stamp(ros): ros for _, _, ros in topics["/fed_node/segmentation"]}
    conf = {stamp(ros): ros for _, _, ros in topics["/fed_node/confidence"]}
    assert set(seg) == set(conf) == set(cameras)
    for s, (frame_id, rgb) in cameras.items():
        labels, confidence = engine.infer(np.array(rgb))
        assert seg[s].header.frame_id == conf[s].header.frame_id == frame_id
        assert seg[s].encoding == "mono8" and conf[s].encoding == "32FC1"
        np.testing.assert_array_equal(as_array(seg[s]), labels)
        np.testing.assert_allclose(as_array(conf[s]), confidence, rtol=0, atol=1e-6)
    for _, _, ros in topics["/fed_node/alerts"]:
        assert [s.name for s in ros.status] == ["fed_node: alerts", "fed_node: scene"]
        assert {kv.key for kv in ros.status[0].values} >= {"fraction", "confidence_threshold"}
        assert {kv.key for kv in ros.status[1].values} >= {"uncertain_fraction", "warn_fraction"}


def test_report_numbers_equal_fed_eval(work: dict[str, Any], offline: dict[str, Any]) -> None:
    from ros2_fed.backbones import load_backbone
    from ros2_fed.checkpoint import load_fed
    from training.evaluation import EvalSample, EvalSettings, Evaluator

    report = offline["report"]
    assert report["complete"] is True and report["frames"] == {
        "in_bag": FRAMES,
        "evaluated": FRAMES,
        "bad_input": {},
        "dropped": 0,
        "with_labels": FRAMES,
        "with_ood": FRAMES,
    }
    assert report["metrics"]["images"] == FRAMES  # node and reference rows score the same frames
    frames = bag_frames(work["bag"])
    samples = [
        EvalSample(
            name=str(i), image=f[sb.IMAGE_TOPIC], label=f[sb.LABELS_TOPIC], ood=f[sb.OOD_TOPIC]
        )
        for i, f in enumerate(frames)
    ]
    backbone = load_backbone(work["backbone"])
    fed, _ = load_fed(work["fed"])
    settings = EvalSettings(
        fed_postprocess="none", mcd_passes=int(MCD), open_miou=False, figure_images=0
    )
    expected = Evaluator(backbone, {"FED-U": fed}, 19, settings).evaluate(
        lambda: iter(samples), len(samples), progress=False
    )
    got = report["metrics"]
    assert got["exact"] is expected["exact"] is True
    assert report["method_sources"]["FED-U (node)"] == "node"
    reference = {n for n, s in report["method_sources"].items() if s == "reference"}
    assert reference == set(expected["methods"]) == {"FED-U", "MSP", "MLG", "ENE", "ENT", "MCD"}
    for name in reference:  # same code path on the same frames: identical
        for kind in ("ood", "idm"):
            assert got["methods"][name][kind] == pytest.approx(
                expected["methods"][name][kind], rel=0, abs=1e-12
            ), name
    assert got["miou"]["reference"] == pytest.approx(expected["miou"], abs=1e-12)
    # the node's own row: its float32 confidence (1 - p) against FED-U computed in torch
    methods_close(got["methods"]["FED-U (node)"], expected["methods"]["FED-U"], 2e-3)
    assert got["miou"]["node"] == pytest.approx(expected["miou"], abs=1e-3)
    # the markdown says the same, and the pictures exist
    md = (offline["out"] / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| MSP |"))
    assert f"{100 * expected['methods']['MSP']['ood']['auroc']:.2f}" in row
    for name in ("mosaic_worst.png", "mosaic_best.png", "alerts.png"):
        assert (offline["out"] / name).stat().st_size > 1000
    lat = report["latency_ms"]
    assert (
        lat["n"] == FRAMES
        and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        and report["throughput_fps"] > 0
    )
    assert len(report["alerts"]["per_frame"]) == FRAMES and report["alerts"]["transitions"]
    # alert detection scored against the bag's OOD masks, by the rule in
    # ros2_fed.eval.alert_metrics
    from ros2_fed.eval.alert_metrics import detection_report

    per_frame = report["alerts"]["per_frame"]
    expected_detection = detection_report(
        [f["level"] for f in per_frame],
        [f["ood_object_pixels"] for f in per_frame],
        [f["ood_pixels"] for f in per_frame],
        report["alerts"]["config"]["alerts.raise_frames"],
    )
    assert report["alerts"]["detection"] == expected_detection
    assert (
        report["alerts"]["detection"]["positives"] + report["alerts"]["detection"]["excused"] > 0
    )
    assert "Alert detection" in md and all(f["region_size"] is not None for f in per_frame)


def test_early_warning_section_from_the_bag_and_the_node_outputs(
    work: dict[str, Any], offline: dict[str, Any]
) -> None:
    """report.json's early warning equals the metric recomputed from the bag's OOD masks, the
    output bag's confidence maps, the published levels and the stamps (10 Hz: 0.1 s a frame)."""
    from ros2_fed.eval.early_warning import early_warning_report, frame_objects

    report = offline["report"]
    ew = report["early_warning"]
    config = report["alerts"]["config"]
    threshold = float(config["alerts.confidence_threshold"])
    conf = {
        stamp(ros): as_array(ros)
        for t, _, _, ros in mcap_messages(offline["out"] / "output_bag")
        if t == "/fed_node/confidence"
    }
    oods = {
        stamp(ros): as_array(ros)
        for t, _, _, ros in mcap_messages(work["bag"])
        if t == sb.OOD_TOPIC
    }
    order = sorted(oods)
    levels = [f["level"] for f in report["alerts"]["per_frame"]]
    expected = early_warning_report(
        levels,
        [frame_objects(oods[s], conf[s], threshold) for s in order],
        [(s - order[0]) / 1e9 for s in order],
        int(config["alerts.raise_frames"]),
        horizon=float(config["alerts.horizon"]),
    )
    assert expected is not None and ew["appearances"]
    assert len(ew["appearances"]) == len(expected["appearances"])
    for got, want in zip(ew["appearances"], expected["appearances"]):
        assert {k: v for k, v in got.items() if k != "delay_s"} == {
            k: v for k, v in want.items() if k != "delay_s"
        }
        assert (got["delay_s"] is None) == (want["delay_s"] is None)
        assert got["delay_s"] == pytest.approx(want["delay_s"], abs=1e-9)
    assert ew["alert_recall_by_size"] == expected["alert_recall_by_size"]
    assert ew["detector_recall_by_size"] == expected["detector_recall_by_size"]
    # at 64x128 the 100 px onset is 6 px: the first frame whose largest object has >= 6 px
    per_frame = report["alerts"]["per_frame"]
    first = next(f["index"] for f in per_frame if (f["ood_object_pixels"] or 0) >= 6)
    assert ew["appearances"][0]["onset"] == first
    md = (offline["out"] / "report.md").read_text()
    assert "## Early warning" in md and "| object size (OOD px at 256x512) |" in md
    from ros2_fed.eval.replay.report import console_summary

    printed = [line for line in console_summary(report) if line.startswith("Early warning: ")]
    assert len(printed) == 1 and "**" not in printed[0] and "First-alert delay" in printed[0]


def test_sqlite3_compressed_bag_gives_sqlite3_output(work: dict[str, Any], tmp_path: Path) -> None:
    """CompressedImage camera in a sqlite3 bag: the output bag is sqlite3 too, read with sqlite3 +
    rclpy."""
    pytest.importorskip("rclpy")
    import sqlite3

    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    bag = tmp_path / "drive_db"
    sb.write_synthroad_bag(
        bag, frames=3, size=SIZE, seed=0, ood_from_frame=1, storage="sqlite3", compressed=True
    )
    out = tmp_path / "out"
    assert (
        bag_eval.main(
            [str(bag), "--out", str(out), "--quiet", "--no-reference"] + model_args(work)
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["bag"]["topics"]["image"] == sb.COMPRESSED_TOPIC
    assert report["frames"]["evaluated"] == 3 and "FED-U (node)" in report["metrics"]["methods"]
    db = sqlite3.connect(out / "output_bag" / "output_bag.db3")
    topics = {i: (name, kind) for i, name, kind in db.execute("SELECT id, name, type FROM topics")}
    rows = db.execute("SELECT topic_id, timestamp, data FROM messages").fetchall()
    db.close()
    counts: dict[str, int] = {}
    for topic_id, _, data in rows:
        name, kind = topics[topic_id]
        counts[name] = counts.get(name, 0) + 1
        if name == "/fed_node/confidence":
            msg = deserialize_message(bytes(data), Image)
            assert (msg.height, msg.width, msg.encoding) == (SIZE[0], SIZE[1], "32FC1")
        if name == sb.COMPRESSED_TOPIC:
            assert (
                deserialize_message(bytes(data), CompressedImage).format
                == "rgb8; jpeg compressed bgr8"
            )
    assert counts == {
        t: 3
        for t in [sb.COMPRESSED_TOPIC, sb.LABELS_TOPIC, sb.OOD_TOPIC]
        + [
            f"/fed_node/{n}"
            for n in ("segmentation", "segmentation_color", "confidence", "overlay", "alerts")
        ]
    }


def test_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ros2_fed.eval.replay.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for flag in ("--live", "--offline", "--gt-topic", "--ood-topic", "--rate", "--out"):
        assert flag in done.stdout


# --------------------------------------------------------------------------------------
# Bad bags: a clear error naming it, no report claiming completeness
# --------------------------------------------------------------------------------------


def _assert_failed(out: Path, code: int, expected_code: int, err: str, needles: list[str]) -> None:
    assert code == expected_code, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False and report["error"]
    assert not (out / "report.md").exists() and not (out / "output_bag").exists()


def _corrupt_chunk(bag: Path) -> None:
    from mcap.reader import make_reader

    path = next(bag.glob("*.mcap"))
    with open(path, "rb") as handle:
        chunk = make_reader(handle).get_summary().chunk_indexes[0]
    data = bytearray(path.read_bytes())
    middle = chunk.chunk_start_offset + chunk.chunk_length // 2
    data[middle : middle + 32] = bytes(
        b ^ 0xFF for b in data[middle : middle + 32]
    )  # pixel bytes: only the CRC knows
    path.write_bytes(bytes(data))


def test_bad_bags(
    work: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(bag: Path, name: str, *extra: str) -> tuple[Path, int, str]:
        out = tmp_path / name
        out.mkdir()
        (out / "report.md").write_text("an old report\n")  # must not survive a failed run
        (out / "report.json").write_text("{}")
        code = bag_eval.main(
            [str(bag), "--out", str(out), "--quiet", "--overwrite"]
            + model_args(work)
            + list(extra)
        )
        return out, code, capsys.readouterr().err

    out, code, err = run(work["bag"], "missing", "--topic", "/camera/front")
    _assert_failed(out, code, 2, err, ["/camera/front", "is not in the bag", sb.IMAGE_TOPIC])

    out, code, err = run(work["bag"], "gt", "--gt-topic", "/camera/nothing")
    _assert_failed(out, code, 2, err, ["/camera/nothing", "not in the bag"])

    wrong = tmp_path / "wrong_type"
    with bagio.BagWriter(wrong, "mcap") as writer:
        writer.add_topic(sb.IMAGE_TOPIC, bagio.DIAGNOSTIC_ARRAY)
        writer.write(sb.IMAGE_TOPIC, 1, bagio.diagnostic_array(1, "camera", []))
    out, code, err = run(wrong, "wrong", "--topic", sb.IMAGE_TOPIC)
    _assert_failed(
        out,
        code,
        2,
        err,
        [sb.IMAGE_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", "sensor_msgs/msg/Image"],
    )

    out, code, err = run(
        work["bag"], "labels_as_ood", "--ood-topic", sb.LABELS_TOPIC, "--gt-topic", sb.OOD_TOPIC
    )
    _assert_failed(
        out, code, 2, err, [sb.LABELS_TOPIC, "0 (in-distribution), 1 (OOD), 255 (void)"]
    )

    corrupt = tmp_path / "corrupt"
    shutil.copytree(work["bag"], corrupt)
    _corrupt_chunk(corrupt)
    out, code, err = run(corrupt, "out_corrupt")
    _assert_failed(out, code, 2, err, [str(corrupt / "drive.mcap"), "checksum", "corrupt chunk"])

    truncated = tmp_path / "truncated"
    shutil.copytree(work["bag"], truncated)
    path = truncated / "drive.mcap"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out, code, err = run(truncated, "out_truncated")
    _assert_failed(out, code, 2, err, [str(path), "truncated or corrupt"])

    # a bag that is not there is a usage error found before anything is written to OUT
    nobag = tmp_path / "nobag"
    code = bag_eval.main([str(tmp_path / "no_such_bag"), "--out", str(nobag)] + model_args(work))
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'no_such_bag'}: bag not found" in err, err
    assert not nobag.exists()


def test_resized_frames_are_said_once(
    work: dict[str, Any],
    offline: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An engine for another size than the bag's frames (issue 16, finding 9): one note on stderr
    (even with --quiet) and in the report; none when the sizes match."""
    assert offline["report"]["model"]["resized"] is None
    out = tmp_path / "resized"
    code = bag_eval.main(
        [str(work["bag"]), "--out", str(out), "--quiet", "--no-reference", "--size", "48x96"]
        + model_args(work)
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 0
    assert len(err) == 1 and "resized to the engine's input 48x96" in err[0], err
    assert f"{SIZE[0]}x{SIZE[1]}" in err[0]
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["resized"]["engine"] == "48x96"
    assert "**Resized:**" in (out / "report.md").read_text()


def test_earlier_run_is_kept(
    work: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out holding an earlier run, no --overwrite: one line, exit 2, the earlier report kept."""
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "report.json").write_text('{"complete": true}')
    code = bag_eval.main([str(work["bag"]), "--out", str(out), "--quiet"] + model_args(work))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "already holds an earlier run" in err[0], err
    assert (out / "report.json").read_text() == '{"complete": true}'


@pytest.mark.ros
def test_dead_node_is_a_failed_run(
    work: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dead"
    environ = dict(os.environ)
    code = bag_eval.main(
        [
            str(work["bag"]),
            "--live",
            "--out",
            str(out),
            "--quiet",
            "--no-reference",
            "--node-command",
            f"{sys.executable} -c 'import sys; sys.exit(3)'",
        ]
        + model_args(work)
    )
    err = capsys.readouterr().err
    _assert_failed(out, code, 1, err, ["fed_node exited with code", "before it was ready"])
    assert dict(os.environ) == environ  # the discovery settings of the live run are undone


# --------------------------------------------------------------------------------------
# Live through a real fed_node (ros)
# --------------------------------------------------------------------------------------


def _live(work: dict[str, Any], out: Path, *extra: str) -> tuple[dict[str, Any], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = (
        [
            sys.executable,
            "-m",
            "ros2_fed.eval.replay.cli",
            str(work["bag"]),
            "--live",
            "--out",
            str(out),
            "--quiet",
            "--ready-timeout",
            "120",
        ]
        + model_args(work)
        + list(extra)
    )
    done = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=240)
    node_log = (out / "node.log").read_text() if (out / "node.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + node_log
    return json.loads((out / "report.json").read_text()), done.stdout


@pytest.mark.ros
def test_live_equals_offline(work: dict[str, Any], offline: dict[str, Any]) -> None:
    report, stdout = _live(work, work["root"] / "live")
    assert report["complete"] is True and report["mode"] == "live"
    assert report["frames"]["dropped"] == 0 and report["frames"]["evaluated"] == FRAMES
    assert report["frames"]["node_dropped"] == 0
    assert report["live"]["published"] == FRAMES and report["live"]["node_exit_code"] == 0
    off = offline["report"]["metrics"]
    got = report["metrics"]
    assert set(got["methods"]) == set(off["methods"])
    for name in got["methods"]:
        methods_close(got["methods"][name], off["methods"][name], 1e-9)
    assert got["miou"] == pytest.approx(off["miou"], abs=1e-12)
    lat = report["latency_ms"]
    assert lat["n"] == FRAMES and lat["p50"] > 0 and lat["what"] == "publish -> outputs received"
    # the recorded outputs are the node's, byte for byte what the offline run rendered
    live_msgs = {
        (t, stamp(ros)): raw
        for t, _, raw, ros in mcap_messages(work["root"] / "live" / "output_bag")
        if t in ("/fed_node/segmentation", "/fed_node/confidence", "/fed_node/overlay")
    }
    off_msgs = {
        (t, stamp(ros)): raw
        for t, _, raw, ros in mcap_messages(offline["out"] / "output_bag")
        if t in ("/fed_node/segmentation", "/fed_node/confidence", "/fed_node/overlay")
    }
    assert live_msgs.keys() == off_msgs.keys() and len(live_msgs) == 3 * FRAMES
    for key, raw in live_msgs.items():
        assert (
            as_array(bagio.deserialize(raw, bagio.IMAGE)).tobytes()
            == as_array(bagio.deserialize(off_msgs[key], bagio.IMAGE)).tobytes()
        ), key
    assert "FED-U (node)" in stdout and "report" in stdout
    # every frame: the same labels, confidence within 1e-4, the same alert level and region
    live_frames, off_frames = (
        _outputs_by_stamp(work["root"] / "live"),
        _outputs_by_stamp(offline["out"]),
    )
    assert live_frames.keys() == off_frames.keys() and len(live_frames) == FRAMES
    for key, got in live_frames.items():
        want = off_frames[key]
        np.testing.assert_array_equal(got["segmentation"], want["segmentation"])
        np.testing.assert_allclose(got["confidence"], want["confidence"], rtol=0, atol=1e-4)
    live_alerts, off_alerts = (
        report["alerts"]["per_frame"],
        offline["report"]["alerts"]["per_frame"],
    )
    assert [a["level"] for a in live_alerts] == [a["level"] for a in off_alerts]
    assert [a["stamp"] for a in live_alerts] == [a["stamp"] for a in off_alerts]
    for got, want in zip(live_alerts, off_alerts):
        assert got["region_size"] == pytest.approx(want["region_size"], abs=1e-6), got


def _outputs_by_stamp(out: Path) -> dict[int, dict[str, np.ndarray]]:
    """{stamp: {"segmentation" | "confidence": array}} of a run's output bag (mcap reader)."""
    frames: dict[int, dict[str, np.ndarray]] = {}
    for topic, _, _, ros in mcap_messages(out / "output_bag"):
        name = topic.rsplit("/", 1)[-1]
        if topic.startswith("/fed_node/") and name in ("segmentation", "confidence"):
            frames.setdefault(stamp(ros), {})[name] = np.array(as_array(ros))
    return frames


@pytest.mark.ros
def test_live_faster_than_real_time_drops_and_says_so(work: dict[str, Any]) -> None:
    """A 150 ms engine fed 20x the recorded 10 Hz: the node keeps only the newest frame."""
    out = work["root"] / "fast"
    report, _ = _live(
        work,
        out,
        "--rate",
        "20",
        "--no-reference",
        "--node-command",
        f"{sys.executable} {HARNESS} --delay 0.15",
    )
    frames = report["frames"]
    assert report["complete"] is True
    assert frames["dropped"] > 0 and frames["evaluated"] + frames["dropped"] == FRAMES, frames
    assert frames["node_dropped"] == frames["dropped"], frames
    md = (out / "report.md").read_text()
    assert f"dropped: **{frames['dropped']}**" in md


# --------------------------------------------------------------------------------------
# Bad frames: refused as the node refuses them, counted under its kind names
# --------------------------------------------------------------------------------------

MAX_PIXELS = 1024 * 1024  # the node's max_input_pixels for these runs (a frame is 64x128)
RSS_MARGIN_MIB = 300  # a bag with a bomb may cost the replay at most this much more
# ... and in fact: far less than decoding the bomb would (4000 x 4000 grey + rgb: 61 MiB)
RSS_DECODE_MIB = 40

_PEAK_RSS = (
    "import runpy, sys\n"
    "try:\n"
    "    runpy.run_module('ros2_fed.eval.replay.cli', run_name='__main__')\n"
    "finally:\n"
    "    with open('/proc/self/status') as status:\n"
    "        peak = [line for line in status if line.startswith('VmHWM:')][0].split()[1]\n"
    "    print(f'PEAK_RSS_KB {peak}', file=sys.stderr)\n"
)


def _spoilt_copy(src: Path, dst: Path, topic: str, index: int, spoil: Any) -> None:
    """``src`` with camera message ``index`` on ``topic`` replaced by ``spoil(msg)``."""
    from ros2_fed.eval.replay import bag as bagmod

    info = bagmod.open_info(src)
    with bagio.BagWriter(dst, info.storage, custom_data=info.custom_data) as writer:
        for name, meta in info.topics.items():
            writer.add_topic(name, meta.msgtype)
        seen = 0
        for name, _, log_ns, raw, msg in bagmod.read_messages(info, list(info.topics)):
            if name == topic:
                if seen == index:
                    raw = bagio.serialize(spoil(msg))
                seen += 1
            writer.write(name, log_ns, raw)


def _bomb(msg: Any) -> Any:
    from tests.input_bombs import png_bytes

    msg.data = np.frombuffer(png_bytes(4000, 4000, depth=1, colour=0), np.uint8).copy()
    msg.format = "png"
    return msg


def _wrong_step(msg: Any) -> Any:
    msg.step = msg.width * 3 - 1  # rows one byte short
    return msg


def _replay_peak(work: dict[str, Any], bag: Path, out: Path) -> tuple[dict[str, Any], float]:
    """report.json and peak RSS (MiB) of fed_bag_eval --offline in a fresh process."""
    cmd = [sys.executable, "-c", _PEAK_RSS, str(bag), "--offline", "--out", str(out)]
    cmd += ["--quiet", "--no-reference", "-p", f"max_input_pixels:={MAX_PIXELS}"]
    done = subprocess.run(
        cmd + model_args(work), cwd=str(REPO), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    peak_kb = int(done.stderr.split("PEAK_RSS_KB ")[-1].split()[0])
    return json.loads((out / "report.json").read_text()), peak_kb / 1024


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["too_large", "step_mismatch"])
def test_bad_frames_are_counted_as_the_node_counts_them(
    work: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    """A decompression bomb (a PNG the codec's default limit would decode, the node's
    max_input_pixels refuses) and a frame whose rows are one byte short: the replay refuses
    them under the node's kind names, scores the other frames, and the bomb costs no memory."""
    if kind == "too_large":
        clean = tmp_path / "clean"
        sb.write_synthroad_bag(
            clean, frames=FRAMES, size=SIZE, seed=0, ood_from_frame=1, compressed=True
        )
        topic, spoil = sb.COMPRESSED_TOPIC, _bomb
    else:
        clean, topic, spoil = work["bag"], sb.IMAGE_TOPIC, _wrong_step
    spoilt = tmp_path / "spoilt"
    _spoilt_copy(clean, spoilt, topic, 2, spoil)
    report, peak = _replay_peak(work, spoilt, tmp_path / "out_spoilt")
    assert report["complete"] is True
    frames = report["frames"]
    assert frames["bad_input"] == {kind: 1}, frames
    assert frames["evaluated"] == FRAMES - 1 and frames["dropped"] == 0, frames
    assert len(report["alerts"]["per_frame"]) == FRAMES - 1
    md = (tmp_path / "out_spoilt" / "report.md").read_text()
    assert f"refused as bad input: 1 ({kind} 1)" in md
    if kind == "too_large":
        _, clean_peak = _replay_peak(work, clean, tmp_path / "out_clean")
        assert peak - clean_peak < RSS_MARGIN_MIB
        assert peak - clean_peak < RSS_DECODE_MIB, (peak, clean_peak)
