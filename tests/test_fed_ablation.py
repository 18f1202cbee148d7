"""fed_ablation's choice rule: selection split only, baselines as the bar."""

from __future__ import annotations

from training.fed_ablation import ROWS, choose


def _row(ap: float, fpr: float) -> dict:
    return {"ood": {"ap": ap, "fpr_at_tpr": fpr, "auroc": 0.9}, "idm": {"auroc": 0.9}}


def test_choice_prefers_rows_beating_every_baseline_on_ap_and_fpr95() -> None:
    select = {
        "MSP": _row(0.05, 0.46),
        "SML": _row(0.29, 0.47),
        "A+none": _row(0.40, 0.48),  # best AP, but loses FPR95 to MSP
        "B+gaussian": _row(0.30, 0.45),  # beats every baseline on both
        "C+sml": _row(0.20, 0.40),  # beats FPR95 only
    }
    chosen, why = choose(select, ["A+none", "B+gaussian", "C+sml"])
    assert chosen == "B+gaussian" and "AP and FPR95" in why


def test_choice_falls_back_to_fpr95_then_ap() -> None:
    select = {"MSP": _row(0.05, 0.46), "A+none": _row(0.40, 0.48), "C+sml": _row(0.03, 0.40)}
    assert choose(select, ["A+none", "C+sml"])[0] == "C+sml"
    select["C+sml"] = _row(0.03, 0.50)
    assert choose(select, ["A+none", "C+sml"]) == (
        "A+none",
        "no row beats every baseline's selection FPR95: best selection OOD AP",
    )


def test_rows_name_their_training_data() -> None:
    assert {data for _, _, data in ROWS.values()} <= {"plain", "void"}
    assert all(("--void-as-wrong" in a) == (d == "void") for _, a, d in ROWS.values())


def test_target_lines_report_met_and_missed() -> None:
    from training.fed_ablation import target_lines

    held = {
        "MSP": {"ood": {"ap": 0.05, "fpr_at_tpr": 0.44}, "idm": {"auroc": 0.93}},
        "SML": {"ood": {"ap": 0.20, "fpr_at_tpr": 0.35}, "idm": {"auroc": 0.77}},
        "X+none": {"ood": {"ap": 0.30, "fpr_at_tpr": 0.36}, "idm": {"auroc": 0.925}},
    }
    text = "\n".join(target_lines("X+none", held))
    assert "| OOD AP above every baseline | yes | 30.00 vs SML 20.00 |" in text
    assert "| OOD FPR95 below every baseline | **no** | 36.00 vs SML 35.00 |" in text
    assert "| IDM AuROC within 1 point of the best baseline | yes |" in text
