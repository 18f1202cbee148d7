"""benchmarks/gpu_check.py: the one GPU command, kept from rotting by its CPU mode.

``--device cpu --tiny`` runs the same steps (CPU fp32 reference, timing, parity per runtime,
tables to --out) on the shipped default model; the ``gpu`` test runs the real thing small.
Timings are not asserted (tests never judge speed); parity is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_gpu_check(out: Path, *args: str) -> dict:
    env = dict(
        os.environ, PYTHONPATH=str(REPO)
    )  # what the GPU machines do: a checkout, no install
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--out",
            str(out),
            "--quiet",
            *args,
        ],
        cwd=str(out.parent),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, (
        f"gpu_check failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    assert (out / "gpu_check.md").read_text() in proc.stdout
    return json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_cpu_tiny_runs_every_step_and_writes_both_tables(tmp_path) -> None:
    report = run_gpu_check(
        tmp_path / "out",
        "--device",
        "cpu",
        "--tiny",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--frames",
        "1",
    )
    rows = report["rows"]
    detectors = {r["detector"] for r in rows}
    assert detectors == {"backbone only", "+ FED-U", "+ FED-C"}
    runtimes = {(r["runtime"], r["precision"]) for r in rows}
    assert runtimes == {
        ("torch", "fp32"),
        ("torch typed", "fp16"),
        ("onnxruntime CPU", "fp32"),
        ("onnxruntime CPU typed", "fp16"),
    }
    for row in rows:
        assert row["median_ms"] > 0 and row["parity_ok"] is True, row
        if row["detector"] != "backbone only":
            assert (
                row["fed_share"] is not None and row["parity"]["confidence_mean_abs_diff"] <= 0.01
            ), row
    assert "TensorRT" in report["skipped"] and "torch-tensorrt" in report["skipped"]
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    batch_rows = report["batch_rows"]  # surround cameras: batch 1 vs 4 on what runs here
    assert {(r["runtime"], r["batch"]) for r in batch_rows} == {
        ("torch typed", 4),
        ("onnxruntime CPU", 4),
    }
    for row in batch_rows:
        assert row["batch_ms"] > 0 and row["single_ms"] > 0 and row["label_agreement"] > 0.99, row
    assert md.count("\n| default (TinySeg) |") == len(rows) + len(batch_rows) and "Skipped:" in md
    assert "## Surround cameras" in md


def test_gpu_check_never_imports_rclpy() -> None:
    """The GPU machines have no ROS: the script and what it imports must not need rclpy."""
    code = (
        "import sys, runpy; sys.argv = ['gpu_check.py', '--help']\n"
        "try:\n    runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import ros2_fed.engine.export, ros2_fed.engine.mixed_precision, "
        "ros2_fed.engine.tensorrt_engine\n"
        "import ros2_fed.engine.torch_tensorrt_engine\n"
        "assert 'rclpy' not in sys.modules, 'rclpy imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs CUDA (no GPU on this machine)"
)
def test_cuda_tiny_rows_meet_their_parity_rule(tmp_path) -> None:
    report = run_gpu_check(
        tmp_path / "out", "--device", "cuda", "--tiny", "--runs", "3", "--warmup", "1"
    )
    runtimes = {(r["runtime"], r["precision"]) for r in report["rows"]}
    assert {("torch", "fp32"), ("torch typed", "fp16"), ("torch autocast", "fp16")} <= runtimes
    for row in report["rows"]:
        assert row["parity_ok"] is True, row
