"""Strict JSON: every JSON file we write parses with a strict reader (NaN / inf -> null)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros2_fed.jsonio import dumps, strict, write_json

NAN_ROW = {
    "auroc": float("nan"),
    "ap": np.float32("inf"),
    "n": np.int64(3),
    "bounds": (np.nan, 1.5),
    "arr": np.array([0.5, np.nan]),
    "path": Path("a/b"),
    7: -float("inf"),
}


def strict_load(path: Path) -> Any:
    """json.loads that fails on NaN / Infinity, as jq or a browser would."""

    def reject(token: str) -> None:
        raise ValueError(f"{path}: non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_strict_converts_non_finite_numbers_to_null() -> None:
    assert strict(NAN_ROW) == {
        "auroc": None,
        "ap": None,
        "n": 3,
        "bounds": [None, 1.5],
        "arr": [0.5, None],
        "path": "a/b",
        "7": None,
    }
    assert json.loads(dumps(NAN_ROW))["auroc"] is None
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_write_json(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", NAN_ROW)
    assert strict_load(tmp_path / "r.json")["bounds"] == [None, 1.5]


def test_checkpoint_and_engine_sidecars_are_strict(tmp_path: Path) -> None:
    import torch

    from ros2_fed.checkpoint import checkpoint_paths, save_checkpoint
    from ros2_fed.engine.base import write_json_atomic

    save_checkpoint(
        tmp_path / "c", {"w": torch.zeros(2)}, {"final_loss": float("nan")}, kind="fed"
    )
    assert strict_load(checkpoint_paths(tmp_path / "c")[1])["final_loss"] is None
    write_json_atomic(tmp_path / "e.json", {"x": float("inf")})
    assert strict_load(tmp_path / "e.json")["x"] is None


def test_bag_eval_report_is_strict(tmp_path: Path) -> None:
    from ros2_fed.eval.replay import report

    path = report.write_failure(
        tmp_path, "boom", {"latency": float("nan"), "fps": np.float64("inf")}
    )
    data = strict_load(path)
    assert data["latency"] is None and data["fps"] is None and data["complete"] is False


def test_every_json_file_goes_through_the_strict_writer() -> None:
    """No module writes JSON files with json.dump(s) directly (they would write NaN)."""
    import re

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(
        r"write_text\(json\.dumps|json\.dump\(|atomic_write_bytes\([^\n]*json\.dumps"
    )
    offenders = [
        str(path.relative_to(root))
        for folder in ("ros2_fed", "training", "benchmarks")
        for path in sorted((root / folder).rglob("*.py"))
        if pattern.search(path.read_text())
    ]
    assert not offenders, offenders
