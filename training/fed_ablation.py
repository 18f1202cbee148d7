"""FED ablation on the default backbone: which FED the node ships, chosen on validation data.

Each row trains one FED on the frozen default backbone (same schedule for all) and is scored
twice by ``fed_eval``: on a *selection* OOD split rendered from another seed
(``--select-root``, never used for reporting) and on the held-out synthroad OOD split
(``--eval-root``). Post-processing rows re-score the selected FED. The node's default is the
row with the best selection OOD AP among those whose selection OOD FPR95 beats every baseline
(else simply the best selection AP); the table in ``--doc`` shows both splits so the choice can
be checked, and which row was chosen and why.

Resumable: a row whose checkpoint exists is not retrained; evaluations are re-run.

    python -m training.fed_ablation --backbone runs/default_model/tinyseg_synthroad \\
        --data-root runs/default_model/synthroad \\
        --select-root runs/default_model/synthroad_oodval \\
        --work runs/default_model/ablation --doc docs/fed_ablation.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from ros2_fed.jsonio import write_json
from ros2_fed.names import BASELINE_METHODS as BASELINES

POSTPROCESS = ("none", "gaussian", "sml")

# name -> (what changes, fed_train arguments beyond the shared schedule)
ROWS: dict[str, tuple[str, list[str]]] = {
    "U-ignore": (
        "FED-U, void ignored (round-1 recipe)",
        ["--variant", "fed-u", "--no-void-as-wrong"],
    ),
    "U-void": (
        "FED-U, void = wrong, ego hood excluded",
        ["--variant", "fed-u", "--void-as-wrong"],
    ),
    "C-ignore": ("FED-C (P=32), void ignored", ["--variant", "fed-c", "--no-void-as-wrong"]),
    "C-void": (
        "FED-C (P=32), void = wrong, ego hood excluded",
        ["--variant", "fed-c", "--void-as-wrong"],
    ),
    "C-void-std": (
        "FED-C, void = wrong, + per-class logit standardisation",
        ["--variant", "fed-c", "--void-as-wrong", "--stats", "{stats}"],
    ),
    "C-void-L4K3": (
        "FED-C, void = wrong, L=4 blocks, K=3",
        ["--variant", "fed-c", "--void-as-wrong", "--blocks", "4", "--kernel", "3"],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbone", required=True, help="backbone checkpoint stem")
    p.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="synthroad root: train split, held-out ood split",
    )
    p.add_argument(
        "--select-root", required=True, type=Path, help="synthroad root of the selection OOD split"
    )
    p.add_argument("--work", required=True, type=Path, help="run folder (one sub-folder per row)")
    p.add_argument("--doc", required=True, type=Path, help="markdown table to write")
    p.add_argument("--rows", default=",".join(ROWS), help="rows to run (default all)")
    p.add_argument("--iters", type=int, default=1200, help="FED iterations per row (default 1200)")
    p.add_argument("--crop", default="192x384", help="FED training crop (default 192x384)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="data-loader processes (default 0: a forked worker deadlocked once after two rows)",
    )
    return p


def checkpoint(work: Path, row: str) -> Path:
    name = "fed_c" if "fed-c" in ROWS[row][1] else "fed_u"
    return work / row / name


def train_row(args: argparse.Namespace, row: str, stats: Path) -> None:
    from training import train_fed

    if checkpoint(args.work, row).with_suffix(".safetensors").is_file():
        return
    extra = [a.replace("{stats}", str(stats)) for a in ROWS[row][1]]
    # no final checkpoint: an interrupted row starts afresh
    code = train_fed.main(
        [
            "--backbone",
            args.backbone,
            "--data-root",
            str(args.data_root),
            "--out",
            str(args.work / row),
            *extra,
            "--max-iters",
            str(args.iters),
            "--batch-size",
            "4",
            "--crop",
            args.crop,
            "--scale-range",
            "0.75,1.25",
            "--lr",
            "1e-2",
            "--warmup-iters",
            str(max(1, args.iters // 20)),
            "--lr-step",
            str(int(args.iters * 0.7)),
            "--ckpt-every",
            str(args.iters),
            "--workers",
            str(args.workers),
            "--no-progress",
            "--overwrite",
        ]
    )
    if code != 0:
        raise SystemExit(f"fed_ablation: training row {row} failed ({code})")


def evaluate(
    args: argparse.Namespace, rows: list[str], root: Path, out: Path, postprocess: str, stats: Path
) -> dict[str, Any]:
    from training import cli_eval

    feds = [a for row in rows for a in ("--fed", f"{row}={checkpoint(args.work, row)}")]
    code = cli_eval.main(
        [
            "--backbone",
            args.backbone,
            *feds,
            "--dataset",
            "synthroad-ood",
            "--data-root",
            str(root),
            "--out",
            str(out),
            "--stats",
            str(stats),
            "--fed-postprocess",
            postprocess,
            "--mcd-passes",
            "0",
            "--no-open-miou",
            "--no-progress",
            "--figures",
            "0",
        ]
    )
    if code != 0:
        raise SystemExit(f"fed_ablation: fed_eval on {root} failed ({code})")
    return json.loads((out / "results.json").read_text())["methods"]


def choose(select: dict[str, Any], rows: list[str]) -> tuple[str, str]:
    """(row, why): best selection OOD AP among rows beating every baseline's selection FPR95."""
    best_fpr = min(select[b]["ood"]["fpr_at_tpr"] for b in BASELINES if b in select)
    beating = [r for r in rows if select[r]["ood"]["fpr_at_tpr"] < best_fpr]
    pool = beating or rows
    row = max(pool, key=lambda r: select[r]["ood"]["ap"])
    why = (
        "best selection OOD AP among the rows whose selection FPR95 beats every baseline"
        if beating
        else "no row beats every baseline's selection FPR95: best selection OOD AP"
    )
    return row, why


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def table(
    rows: list[tuple[str, str]], select: dict[str, Any], held_out: dict[str, Any]
) -> list[str]:
    lines = [
        "| row | change | sel. OOD AP | sel. OOD FPR95 | sel. IDM AuROC | OOD AuROC | OOD AP | "
        "OOD FPR95 | IDM AuROC | IDM AP | IDM FPR95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, change in rows:
        s, h = select[key], held_out[key]
        lines.append(
            f"| {key} | {change} | {_pct(s['ood']['ap'])} | {_pct(s['ood']['fpr_at_tpr'])} | "
            f"{_pct(s['idm']['auroc'])} | {_pct(h['ood']['auroc'])} | {_pct(h['ood']['ap'])} | "
            f"{_pct(h['ood']['fpr_at_tpr'])} | {_pct(h['idm']['auroc'])} | {_pct(h['idm']['ap'])} "
            f"| {_pct(h['idm']['fpr_at_tpr'])} |"
        )
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(f"fed_ablation: unknown rows {unknown}; known: {list(ROWS)}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    stats = args.work / "logit_stats.json"
    if not _ensure_stats(args, stats):
        return 1
    for row in rows:
        print(f"fed_ablation: row {row}: {ROWS[row][0]}", flush=True)
        train_row(args, row, stats)
    select = evaluate(args, rows, args.select_root, args.work / "eval_select", "none", stats)
    held_out = evaluate(args, rows, args.data_root, args.work / "eval_ood", "none", stats)
    chosen, why = choose(select, rows)
    entries = [(r, ROWS[r][0]) for r in rows]
    entries += _score_postprocessing(args, chosen, select, held_out, stats)
    post_choice = max(
        ["none", *POSTPROCESS[1:]],
        key=lambda p: select[chosen if p == "none" else f"{chosen}+{p}"]["ood"]["ap"],
    )
    entries += [(b, "baseline") for b in BASELINES if b in select]
    lines = _doc_lines(args, entries, select, held_out, chosen, why, post_choice)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(lines) + "\n")
    write_json(
        args.work / "choice.json",
        {"row": chosen, "postprocess": post_choice, "why": why, "args": ROWS[chosen][1]},
    )
    print("\n".join(lines))
    return 0


def _ensure_stats(args: argparse.Namespace, stats: Path) -> bool:
    """The backbone's logit statistics (the std row and SML need them), computed once: a resumed
    ablation reuses the file."""
    from training import stats as stats_cli

    return (
        stats.is_file()
        or stats_cli.main(
            [
                "--backbone",
                args.backbone,
                "--data-root",
                str(args.data_root),
                "--out",
                str(stats),
                "--no-progress",
            ]
        )
        == 0
    )


def _score_postprocessing(
    args: argparse.Namespace,
    chosen: str,
    select: dict[str, Any],
    held_out: dict[str, Any],
    stats: Path,
) -> list[tuple[str, str]]:
    """Re-score the chosen row with each post-processing on both splits (added to ``select`` and
    ``held_out`` as ``ROW+POST``); returns their table entries."""
    entries = []
    for post in POSTPROCESS[1:]:
        select.update(
            {
                f"{chosen}+{post}": v
                for k, v in evaluate(
                    args,
                    [chosen],
                    args.select_root,
                    args.work / f"eval_select_{post}",
                    post,
                    stats,
                ).items()
                if k == chosen
            }
        )
        held_out.update(
            {
                f"{chosen}+{post}": v
                for k, v in evaluate(
                    args, [chosen], args.data_root, args.work / f"eval_ood_{post}", post, stats
                ).items()
                if k == chosen
            }
        )
        entries.append((f"{chosen}+{post}", f"{chosen} with {post} post-processing"))
    return entries


def _doc_lines(
    args: argparse.Namespace,
    entries: list[tuple[str, str]],
    select: dict[str, Any],
    held_out: dict[str, Any],
    chosen: str,
    why: str,
    post_choice: str,
) -> list[str]:
    """The markdown written to --doc (and printed): the setup, the table, the choice."""
    return [
        f"# FED ablation on the default backbone ({args.backbone})",
        "",
        f"Every row: same schedule ({args.iters} iterations, batch 4, crop {args.crop}, "
        "AdamW lr 1e-2). "
        f"`sel.` columns: the selection OOD split ({args.select_root}, another seed, "
        "used only to choose); "
        f"the other columns: the held-out synthroad OOD split ({args.data_root}), values in %. "
        "Post-processing rows re-score the chosen row's checkpoint.",
        "",
        *table(entries, select, held_out),
        "",
        f"**Chosen for the node: {chosen}** ({why}); post-processing **{post_choice}** (best "
        "selection OOD AP).",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
