"""``fed_bag_eval --live`` plays into the node with the node's own QoS (as shipped: best-effort
input of depth 1), ``--reliable`` with reliable QoS of depth 10, and the report says which.
Before, the replay always switched the node to reliable depth 10 without saying so, so its
"dropped 0" did not describe the shipped setup.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")

from ros2_fed.eval.replay import live
from ros2_fed.eval.replay.model import read_params_file
from ros2_fed.pipeline.model_spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
NAMES = ("input_qos.reliability", "input_qos.depth", "output_qos.reliability", "output_qos.depth")
SHIPPED = {k: v for k, v in read_params_file(REPO / "config" / "fed.yaml").items() if k in NAMES}


def test_the_shipped_qos_is_best_effort_depth_1_input() -> None:
    assert SHIPPED["input_qos.reliability"] == "best_effort" and SHIPPED["input_qos.depth"] == 1
    assert live.node_qos(None, {}, reliable=False) == SHIPPED


def test_reliable_is_depth_10_both_ways_and_explicit_values_win(tmp_path: Path) -> None:
    both = {"input_qos.reliability": "reliable", "input_qos.depth": 10}
    both.update({"output_qos.reliability": "reliable", "output_qos.depth": 10})
    assert live.node_qos(None, {}, reliable=True) == both
    assert live.node_qos(None, {"input_qos.depth": 3}, reliable=True)["input_qos.depth"] == 3
    mine = tmp_path / "mine.yaml"
    mine.write_text("fed_node:\n  ros__parameters:\n    output_qos:\n      depth: 5\n")
    assert live.node_qos(str(mine), {}, reliable=False) == {**SHIPPED, "output_qos.depth": 5}
    assert live.node_qos(str(mine), {}, reliable=True)["output_qos.depth"] == 10
    assert live.qos_text(both) == "input reliable depth 10, output reliable depth 10"


@pytest.mark.parametrize("reliable", [False, True])
def test_the_node_command_sets_qos_only_with_reliable(reliable: bool) -> None:
    session = SimpleNamespace(
        options=live.LiveOptions(reliable=reliable),
        namespace="/t",
        spec=ModelSpec.from_params({}).resolved(),
        sel=SimpleNamespace(compressed=False),
    )
    cmd = live.LiveSession.node_command(session)  # type: ignore[arg-type]
    overrides = {c.split(":=")[0] for c in cmd if ":=" in c}
    assert (set(NAMES) <= overrides) is reliable and (
        set(NAMES) & overrides == set()
    ) is not reliable


@pytest.fixture(scope="module")
def drive_and_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from ros2_fed.engine.cli_export import main as fed_export
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED
    from training import synthroad_bag as sb

    root = tmp_path_factory.mktemp("live_qos")
    bag = root / "drive"
    sb.write_synthroad_bag(bag, frames=12, size=(64, 128), fps=10.0, seed=0, ood_from_frame=1)
    engine = root / "model.onnx"
    args = ["--backbone", str(REPO / "models" / DEFAULT_BACKBONE), "--fed"]
    args += [str(REPO / "models" / DEFAULT_FED), "--height", "64", "--width", "128"]
    assert fed_export(args + ["--out", str(engine), "--quiet"]) == 0
    return bag, engine


@pytest.mark.ros
@pytest.mark.slow
def test_a_live_run_uses_and_reports_the_nodes_own_qos(
    drive_and_engine: tuple[Path, Path], tmp_path: Path
) -> None:
    bag, engine = drive_and_engine
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ros2_fed.eval.replay.cli", str(bag), "--live", "--quiet"]
    cmd += ["--engine", str(engine), "--no-reference", "--out", str(out)]
    done = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["live"]["qos"] == SHIPPED
    assert report["live"]["qos_source"] == "the node's parameters"
    assert not any("input_qos" in part for part in report["live"]["node_command"])
    assert report["frames"]["evaluated"] > 0  # the recorder matched the node's outputs
