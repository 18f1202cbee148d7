"""training/data_engine_loop.py: the FEDs' pooled figures side by side, from hand-made reports."""

from __future__ import annotations

import json
from pathlib import Path

from training import data_engine_loop as loop


def _report(ap: float, recall: float, alerted: int, median: float, complete: bool = True) -> dict:
    return {
        "complete": complete,
        "tool": "fed_fleet_eval",
        "models": [{"description": "tinyseg + fed_c", "engine": {"model_hash": "abc"}}],
        "pooled": {
            "bags": 2,
            "frames": {"evaluated": 120, "in_bag": 120},
            "node": {"ood_ap": ap, "ood_fpr95": 0.5, "ood_auroc": 0.9, "idm_ap": 0.2, "miou": 0.6},
            "alerts": {"detection": {"recall": recall, "false_alarm_rate": 0.025}},
            "early_warning": {
                "summary": {
                    "appearances": 2,
                    "alerted": alerted,
                    "median_s": median,
                    "p90_s": None,
                }
            },
        },
    }


def _write(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_both_arms_in_one_table_and_json(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a", _report(0.3125, 0.5, 1, 0.8))
    b = _write(tmp_path / "b", _report(0.4375, 0.75, 2, 0.4))
    out = tmp_path / "docs" / "loop.json"
    code = loop.main(["--arm", f"without={a}", "--arm", f"with 10 = mined={b}", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert list(data["arms"]) == ["without", "with 10 = mined"]  # the last '=' splits
    without, with_ = data["arms"]["without"], data["arms"]["with 10 = mined"]
    assert (without["OOD AP"], with_["OOD AP"]) == (0.3125, 0.4375)
    assert (without["OOD FPR95"], without["OOD AUROC"], without["mIoU"]) == (0.5, 0.9, 0.6)
    assert (without["alert recall"], with_["objects alerted"]) == (0.5, 2)
    assert with_["false alarms"] == 0.025 and with_["median delay (s)"] == 0.4
    assert with_["bags"] == 2 and with_["frames"] == 120 and with_["model_hash"] == "abc"
    assert with_["report"] == str(b / "report.json")
    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("| FED | OOD AP % | OOD FPR95 % |")
    assert table[2].split(" | ")[:3] == ["| without", "31.25", "50.00"]
    row = table[3].split(" | ")
    assert row[:2] == ["| with 10 = mined", "43.75"]
    assert row[6:8] == ["75.00", "2.50"]  # alert recall, false alarms
    assert row[-4:] == ["2", "2", "0.4", "- |"]  # alerted, objects, median, p90 missing
    assert capsys.readouterr().out.splitlines() == table


def test_an_unfinished_or_missing_report_is_refused(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", _report(0.3, 0.5, 1, 0.8, complete=False))
    out = tmp_path / "loop.json"
    assert loop.main(["--arm", f"a={a}", "--out", str(out)]) == 2
    assert loop.main(["--arm", f"a={tmp_path / 'none'}", "--out", str(out)]) == 2
    assert not out.exists()


def test_the_data_engine_page_shows_the_measured_figures() -> None:
    """docs/data_engine.md's table and sentence against docs/data_engine_loop.json."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "data_engine.md").read_text()
    arms = json.loads((root / "docs" / "data_engine_loop.json").read_text())["arms"]
    assert loop.markdown(arms) in page
    a = arms["A: without the mined frames"]
    b = arms["B: with the 103 mined frames"]
    for name in ("OOD AP", "OOD FPR95"):
        assert f"{100 * a[name]:.2f} % to {100 * b[name]:.2f} %" in page
    delays = f"{a['median delay (s)']:.1f} s to {b['median delay (s)']:.1f} s"
    assert f"median first-alert delay {delays}" in page
    recall = f"{100 * a['alert recall']:.2f} % to {100 * b['alert recall']:.2f} %"
    assert f"frame recall {recall}" in page
    assert b["OOD AP"] > a["OOD AP"] and b["OOD FPR95"] < a["OOD FPR95"]  # what the page says
    assert a["bags"] == b["bags"] == 6 and a["frames"] == b["frames"] == 360
