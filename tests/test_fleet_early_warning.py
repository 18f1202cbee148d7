"""The fleet report's early warning: every bag's appearances pooled in bag-id order, the delays'
median / p90 over the pooled list (never a mean of the bags' medians), the per-size counts added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ros2_fed.eval.early_warning import FrameObjects, early_warning_report, pool_early_warning
from ros2_fed.eval.fleet.report import pooled_early_warning

SHAPE = (256, 512)


def _report(pixels: list[int], levels: list[int]) -> dict[str, Any]:
    frames = [FrameObjects(SHAPE, p, p, 150 if p else -1) for p in pixels]
    out = early_warning_report(levels, frames, [i / 10 for i in range(len(pixels))], 3)
    assert out is not None
    return out


def test_pooled_early_warning_is_the_median_of_all_appearances_in_bag_id_order() -> None:
    # bag "b": delays 1 and 9 (its median 5); bag "a": delay 2; bag "c": never alerted;
    # bag "d": no OOD ground truth
    b = _report(
        [0, 150, 150, 0] + [0] + [200] * 12,
        [0, 0, 1, 0] + [0] + [0] * 9 + [1] * 3,
    )
    a = _report([0, 0, 120, 130, 140], [0, 0, 0, 0, 1])
    c = _report([0, 300, 300, 300], [0, 0, 0, 0])
    summaries = [
        {"id": "b", "early_warning": b},
        {"id": "d", "early_warning": None},
        {"id": "c", "early_warning": c},
        {"id": "a", "early_warning": a},
    ]
    got = pooled_early_warning(summaries)
    assert got is not None and got["drives"] == 3
    assert [(x["source"], x["delay_frames"]) for x in got["appearances"]] == [
        ("a", 2),
        ("b", 1),
        ("b", 9),
        ("c", None),
    ]
    s = got["summary"]
    # pooled alerted delays 1, 2, 9: median 2 (the bags' medians 2 and 5 average to 3.5,
    # the mean is 4); with the never-alerted one: (2 + 9) / 2
    assert (s["median_frames"], s["p90_frames"], s["never_alerted"]) == (2, 9, 1)
    assert s["median_frames_all"] == 5.5 and s["p90_frames_all"] == "never"
    frames = [r["frames"] for r in got["alert_recall_by_size"]]
    want = [sum(r["alert_recall_by_size"][i]["frames"] for r in (a, b, c)) for i in range(4)]
    assert frames == want and sum(frames) > 0
    # whatever order the workers finished in
    assert pooled_early_warning(list(reversed(summaries))) == got
    assert pooled_early_warning([{"id": "d", "early_warning": None}]) is None


def test_fleet_markdown_lists_the_never_alerted_first_when_the_table_is_cut() -> None:
    from ros2_fed.eval.early_warning_markdown import early_warning_lines

    reports = [_report([0, 150, 150, 150, 150], [0, 0, 1, 1, 1]) for _ in range(3)]
    reports.append(_report([0, 400, 400], [0, 0, 0]))
    pooled = pool_early_warning(reports, ["r0", "r1", "r2", "late"])
    text = "\n".join(early_warning_lines(pooled, "## Early warning (pooled)", limit=2))
    assert "## Early warning (pooled)" in text and "(2 of 4, never-alerted first" in text
    rows = [line for line in text.splitlines() if line.startswith("| late ")]
    assert len(rows) == 1 and "**never**" in rows[0]
    assert "Never alerted while on the road: late frames 1-2" in text
    assert "**median 1 frames (0.10 s)**" in text
    assert "counted as never: median 1 frames (0.10 s), p90 never." in text


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_fleet_run_pools_the_bags_early_warning(tmp_path: Path) -> None:
    from ros2_fed.eval.fleet import cli as fleet_cli
    from tests import fleet_helpers as fh
    from tests.fed_helpers import private_engine_cache, save_tiny_model
    from training import synthroad_bag as sb

    model = save_tiny_model(tmp_path, fh.SIZE)
    fleet = tmp_path / "fleet"
    for i, frames in enumerate((5, 8)):
        sb.write_synthroad_bag(
            fleet / f"drive_{i:02d}", frames=frames, size=fh.SIZE, seed=i, ood_from_frame=1
        )
    out = tmp_path / "out"
    with private_engine_cache(tmp_path):
        argv = [str(fleet), "--out", str(out), "--quiet", "--workers", "1"]
        assert fleet_cli.main(argv + fh.model_args(model)) == 0
    report = fh.read_report(out)
    bags = {
        bag: json.loads((out / "bags" / bag / "report.json").read_text())["early_warning"]
        for bag in ("drive_00", "drive_01")
    }
    assert all(bags.values())
    want = pool_early_warning(list(bags.values()), list(bags))
    assert report["pooled"]["early_warning"] == want
    assert {a["source"] for a in want["appearances"]} <= set(bags)
    assert "## Early warning (pooled)" in (out / "report.md").read_text()
