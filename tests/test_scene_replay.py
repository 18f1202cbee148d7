"""fed_bag_eval reports the scene status: the timeline (level per frame, under the alert
timeline), a ``scene`` summary in report.json (share of frames per level per camera), the
level changes in report.md, both statuses on ``~/alerts`` in the output bag; and (``ros``) the
replay's scene timeline equals the one a running fed_node publishes for the same bag.

The bag: 16 textured 64x128 frames at 10 Hz, frames 5-9 black, frames 10-15 one frame's bytes
repeated (a frozen camera); a random TinySeg + FED-U (torch runtime), no scene calibration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros2_fed.eval.replay import bagio
from ros2_fed.eval.replay import cli as bag_eval

REPO = Path(__file__).resolve().parents[1]
H, W, FRAMES, BLACK, FROZEN = 64, 128, 16, range(5, 10), 10
TOPIC = "/camera/image_raw"
START_NS = 1_700_000_000 * 1_000_000_000


def camera_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(FRAMES)]
    for i in BLACK:
        frames[i] = np.zeros((H, W, 3), np.uint8)
    for i in range(FROZEN + 1, FRAMES):
        frames[i] = frames[FROZEN]
    return frames


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.fed_helpers import private_engine_cache, save_tiny_model

    root = tmp_path_factory.mktemp("scene_replay")
    model = save_tiny_model(root, (H, W))
    with bagio.BagWriter(root / "drive") as writer:
        writer.add_topic(TOPIC, bagio.IMAGE)
        for i, rgb in enumerate(camera_frames()):
            stamp = START_NS + i * 100_000_000
            writer.write(TOPIC, stamp, bagio.image_message(rgb, "rgb8", stamp, "camera"))
    with private_engine_cache(root):
        yield {"root": root, "bag": root / "drive", **model}


def model_args(work: dict[str, Any]) -> list[str]:
    return ["--backbone", work["backbone"], "--fed", work["fed"], "--runtime", "torch"] + [
        "--threads",
        "1",
        "--no-reference",
        "--topic",
        TOPIC,
    ]


@pytest.fixture(scope="module")
def offline(work: dict[str, Any]) -> dict[str, Any]:
    out = work["root"] / "offline"
    argv = [str(work["bag"]), "--offline", "--out", str(out), "--quiet"] + model_args(work)
    assert bag_eval.main(argv) == 0
    return {"out": out, "report": json.loads((out / "report.json").read_text())}


def test_report_has_the_scene_timeline_and_summary(offline: dict[str, Any]) -> None:
    scene = offline["report"]["scene"]
    levels = [t["level"] for t in scene["per_frame"]]
    assert len(levels) == FRAMES and scene["frames"] == FRAMES
    assert levels[BLACK[0] + 2] == 2  # ERROR by the third black frame
    first_repeat = FROZEN + 1
    assert max(levels[first_repeat : first_repeat + 5]) >= 1  # frozen: WARN within 5 frames
    assert scene["per_frame"][BLACK[0] + 2]["fault"] == "black"
    share = scene["per_camera"]["camera"]["share"]
    assert sum(share.values()) == pytest.approx(1.0)
    assert scene["counts"]["ERROR"] == sum(1 for lv in levels if lv == 2)
    assert scene["transitions"][0]["index"] == 0
    md = (offline["out"] / "report.md").read_text()
    assert "## Scene health" in md and "perception unusable: black frame" in md
    assert (offline["out"] / "alerts.png").is_file()


def test_alerts_in_the_output_bag_carry_the_scene_status(offline: dict[str, Any]) -> None:
    from ros2_fed.eval.replay import bag as bagmod
    from ros2_fed.eval.replay.outputs import alert_from_message

    info = bagmod.open_info(offline["out"] / "output_bag")
    records = [
        alert_from_message(msg)
        for _, _, _, _, msg in bagmod.read_messages(info, ["/fed_node/alerts"])
    ]
    assert len(records) == FRAMES and all(r.scene is not None for r in records)
    levels = [t["level"] for t in offline["report"]["scene"]["per_frame"]]
    assert [r.scene.level for r in records] == levels


@pytest.mark.ros
def test_the_replay_scene_timeline_equals_the_node(
    work: dict[str, Any], offline: dict[str, Any]
) -> None:
    out = work["root"] / "live"
    cmd = [sys.executable, "-m", "ros2_fed.eval.replay.cli", str(work["bag"]), "--live"]
    cmd += ["--out", str(out), "--quiet", "--ready-timeout", "120"] + model_args(work)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    live = json.loads((out / "report.json").read_text())
    assert live["frames"]["evaluated"] == FRAMES and live["frames"]["dropped"] == 0
    keys = ("index", "level", "uncertain_fraction", "fault", "identical_frames")
    node = [{k: t[k] for k in keys} for t in live["scene"]["per_frame"]]
    replay = [{k: t[k] for k in keys} for t in offline["report"]["scene"]["per_frame"]]
    assert node == replay


def test_a_rig_report_lists_every_camera_scene_share(work: dict[str, Any]) -> None:
    from training import synthroad_bag as sb

    rig = work["root"] / "rig"
    sb.write_synthroad_bag(rig, frames=4, size=(H, W), fps=10.0, seed=3, cameras=2)
    out = work["root"] / "rig_out"
    args = ["--backbone", work["backbone"], "--fed", work["fed"], "--runtime", "torch"]
    args += ["--threads", "1", "--no-reference"]
    assert bag_eval.main([str(rig), "--offline", "--out", str(out), "--quiet"] + args) == 0
    scene = json.loads((out / "report.json").read_text())["scene"]
    assert set(scene["per_camera"]) == {"cam0", "cam1"} and scene["pooled"]["frames"] == 8
    for name, camera in scene["per_camera"].items():
        assert camera["frames"] == 4 and sum(camera["share"].values()) == pytest.approx(1.0)
        own = json.loads((out / name / "report.json").read_text())["scene"]
        assert own["per_camera"] == {name: camera}
    assert "Scene status, share of frames OK / WARN / ERROR" in (out / "report.md").read_text()
