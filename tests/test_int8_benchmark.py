"""benchmarks/int8.py runs end to end on tiny settings and prints its three tables.

Why: the script is how the INT8 speed and accuracy figures in docs/int8.md are produced;
nothing else exercises it. Timings are not asserted (tests never judge speed).
"""

from __future__ import annotations

import pytest

from tests.test_benchmarks import run_script, tables


@pytest.mark.slow
def test_int8_benchmark_prints_speed_profile_and_accuracy(tmp_path) -> None:
    figures = tmp_path / "int8.json"
    out = run_script(
        "int8.py",
        "--arch",
        "tiny",
        "--size",
        "64x128",
        "--runs",
        "1",
        "--calibration-images",
        "2",
        "--eval-frames",
        "2",
        "--profile-runs",
        "1",
        "--json",
        str(figures),
    )
    speed, profile, accuracy = tables(out)
    assert [row[0] for row in speed] == [
        "TinySeg (embedded default architecture) + FED-U",
        "default model (TinySeg + FED-U)",
    ]
    for row in speed:  # wall-clock and CPU-time speed-ups
        assert all(row[i].startswith("**") and row[i].endswith("x**") for i in (3, 6)), row
    assert any(row[3] == "QLinearConv" for row in profile), "the int8 engine runs int8 convs"
    assert [row[0] for row in accuracy][:4] == [
        "mIoU (val)",
        "OOD AP of 1 - confidence (ood)",
        "OOD AuROC (ood)",
        "misclassification AuROC (val)",
    ]
    assert figures.is_file() and "accuracy" in figures.read_text()
