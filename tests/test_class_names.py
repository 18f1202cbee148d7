"""A checkpoint without class names (label_0, ...) and the alert classes: fed_convert warns and
says how to set them, fed_export warns at once, and fed_node names every alert class it cannot
find in one FATAL line (before: two FATALs, one per start, and nothing before the node)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ros2_fed.backbones.cli_convert import main as fed_convert
from ros2_fed.backbones.segformer import SegFormer, mit_config
from ros2_fed.engine.cli_export import main as fed_export

REPO = Path(__file__).resolve().parents[1]
GENERIC = [f"label_{i}" for i in range(5)]


@pytest.fixture(scope="module")
def generic_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SegFormer converted from an mmseg file whose classes are label_0 .. label_4."""
    root = tmp_path_factory.mktemp("generic")
    torch.manual_seed(1)
    model = SegFormer(**mit_config("b0", num_classes=5)).eval()
    torch.save({"state_dict": model.state_dict(), "meta": {"CLASSES": GENERIC}}, root / "src.pth")
    assert fed_convert([str(root / "src.pth"), str(root / "bb")]) == 0
    return root / "bb"


def test_fed_convert_warns_about_generic_names(tmp_path: Path, capsys) -> None:
    torch.manual_seed(1)
    model = SegFormer(**mit_config("b0", num_classes=5)).eval()
    src = tmp_path / "g.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"CLASSES": GENERIC}}, src)
    assert fed_convert([str(tmp_path / "g.pth"), str(tmp_path / "g")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "fed_convert: warning: the checkpoint's 5 classes have generic names (label_0 ... "
        "label_4), so fed_node will not find its default alert classes (alerts.drivable_classes "
        "'road,sidewalk'; alerts.ignore_classes 'sidewalk'): convert again with --class-names "
        "names.json (a JSON list, one name per class), or set the alert classes by id, e.g. "
        "-p alerts.drivable_classes:=0 -p alerts.ignore_classes:=1"
    ]
    # with names given there is nothing to warn about
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["road", "sidewalk", "car", "sky", "person"]))
    argv = [str(tmp_path / "g.pth"), str(tmp_path / "named"), "--class-names", str(names)]
    assert fed_convert(argv) == 0
    assert capsys.readouterr().err == ""


def test_fed_export_names_every_missing_alert_class(
    generic_backbone: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "e.onnx"
    argv = ["--backbone", str(generic_backbone), "--score", "msp", "--height", "64"]
    assert fed_export([*argv, "--width", "64", "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "fed_export: warning: fed_node's default alert classes are not among the model's "
        "classes (label_0, label_1, label_2, label_3, label_4): alerts.drivable_classes: 'road', "
        "'sidewalk'; alerts.ignore_classes: 'sidewalk' (the checkpoint has no class names: give "
        "ids, e.g. -p alerts.drivable_classes:=0 -p alerts.ignore_classes:=1, or put the names "
        "in its JSON)"
    ]


@pytest.mark.ros
def test_fed_node_names_every_missing_alert_class_in_one_line(generic_backbone: Path) -> None:
    """The node with the generic engine: one FATAL line naming both parameters, exit 1; with
    the classes given by id it starts."""
    pytest.importorskip("rclpy")
    from test_node_ros import ros_environment

    engine = generic_backbone.with_name("node.onnx")
    argv = ["--backbone", str(generic_backbone), "--score", "msp", "--height", "64"]
    assert fed_export([*argv, "--width", "64", "--out", str(engine)]) == 0
    cmd = [sys.executable, "-m", "ros2_fed.node", "--ros-args", "-p", f"engine_path:={engine}"]
    proc = subprocess.run(
        cmd, env=ros_environment(), capture_output=True, text=True, timeout=120, cwd=str(REPO)
    )
    out = proc.stdout + proc.stderr
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert proc.returncode == 1, out
    assert len(fatal) == 1, out
    assert "alerts.drivable_classes: 'road', 'sidewalk'" in fatal[0]
    assert "alerts.ignore_classes: 'sidewalk'" in fatal[0]
    assert "-p alerts.drivable_classes:=0" in fatal[0]
