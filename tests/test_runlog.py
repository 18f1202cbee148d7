"""training.runlog: a resumed run's log.csv keeps its columns and its clock."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from training import runlog


def test_elapsed_continues_across_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(runlog.time, "monotonic", lambda: clock[0])
    first = runlog.RunLogger(tmp_path)
    clock[0] += 30.0
    first.log(10, loss=1.0)
    first.close()

    clock[0] = 5000.0  # a new process: its monotonic clock means nothing to the old log
    resumed = runlog.RunLogger(tmp_path)
    clock[0] += 12.0
    resumed.log(20, loss=0.5)
    resumed.close()

    with open(tmp_path / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["10", "20"]
    assert [float(r["elapsed_s"]) for r in rows] == [30.0, 42.0]
