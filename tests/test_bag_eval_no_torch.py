"""``fed_bag_eval --offline`` on an ONNX engine without reference rows never imports torch
(inference never needs it; importing it costs seconds and hundreds of MB)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from ros2_fed.eval.replay.cli import main
rc = main(sys.argv[1:])
print("EXIT", rc, "TORCH", "torch" in sys.modules)
"""


@pytest.mark.slow  # exports an engine (torch, in this process) and replays a drive
def test_an_onnx_engine_replays_without_torch(tmp_path: Path) -> None:
    from ros2_fed.engine.cli_export import main as fed_export
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED
    from training import synthroad_bag as sb

    engine = tmp_path / "model.onnx"
    models = REPO / "models"
    export = ["--backbone", str(models / DEFAULT_BACKBONE), "--fed", str(models / DEFAULT_FED)]
    export += ["--height", "64", "--width", "128", "--out", str(engine), "--quiet"]
    assert fed_export(export) == 0
    sb.write_synthroad_bag(tmp_path / "drive", frames=3, size=(64, 128), seed=0, ood_from_frame=1)
    argv = [str(tmp_path / "drive"), "--offline", "--engine", str(engine), "--no-reference"]
    argv += ["--out", str(tmp_path / "out"), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "EXIT 0 TORCH False" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "out" / "report.json").is_file()
