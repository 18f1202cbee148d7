"""`fed_eval`: Table-8-style evaluation of FED checkpoints and every baseline score.

Example (the default model on the synthroad OOD split)::

    fed_eval --backbone models/tinyseg_synthroad.json \
        --fed FED-U=models/fed_u_synthroad --fed FED-C=models/fed_c_synthroad \
        --dataset synthroad-ood --data-root runs/default_model/synthroad --out runs/eval

Writes ``results.json`` (every number, incl. histogram error bounds when not exact),
``results.md`` (the table) and ``figures.png`` (input, prediction, ground truth with blue =
correct / red = IDM or OOD / black = void, and each method's confidence normalised with
dataset-wide statistics: red = uncertain, blue = certain).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ros2_fed import stopping

stopping.install_for("fed_eval", __name__)  # first: a signal during the imports stops it

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ros2_fed.checkpoint import load_fed  # noqa: E402
from ros2_fed.fingerprint import ALLOW_FLAG, BackboneFingerprint, check_backbone, fingerprint_of  # noqa: E402
from ros2_fed.logit_statistics import read_statistics_file, statistics_from_metadata  # noqa: E402
from training.cli_errors import UsageError, one_line_warnings, report, user_errors  # noqa: E402
from training.eval_sources import COMPONENT_TRACKS, DATASETS, make_source  # noqa: E402
from training.evaluation import EvalSettings, Evaluator  # noqa: E402
from training.report import figure_row, write_figure, write_results  # noqa: E402

DATASET_LAYOUTS = """\
dataset layouts (--data-root ROOT; label = Cityscapes trainIds, 255 void; OOD = 0 / 1 / 255):
  cityscapes, cityscapes-c (split val; labels, no OOD)
      ROOT/leftImg8bit/val/CITY/*_leftImg8bit.png
      ROOT/gtFine/val/CITY/*_gtFine_labelTrainIds.png  (or *_gtFine_labelIds.png, mapped with
      the official table); cityscapes-c corrupts the images on the fly (imagecorruptions)
  fishyscapes-lf, fishyscapes-static (validation; OOD, no labels), one of:
      ROOT/original/NAME.png (or ROOT/images/) + ROOT/labels/NAME.png  (processed; ROOT may
      also hold LostAndFound/ + Static/ or fs_lost_and_found/ + fs_static/ laid out so)
      ROOT/fishyscapes_lostandfound/NNNN_ID_labels.png + ROOT/laf_images/ID_leftImg8bit.png
      ROOT/fs_val_vN/NNNN_ID_labels.png + NNNN_ID_rgb.npz (overlay on Cityscapes val images
      found in ROOT, ROOT/cityscapes or ROOT/../cityscapes), or fs_static_images_vN/*_rgb.png
  road-anomaly21, road-obstacle21 (SegmentMeIfYouCan; split val = the labelled images)
      ROOT/images/NAME.{jpg,png,webp} + ROOT/labels_masks/NAME_labels_semantic.png
      (ROOT = dataset_AnomalyTrack / dataset_ObstacleTrack, or the folder holding them)
  synthroad, synthroad-ood, synthroad-obstacle (fed_synthroad --out ROOT; splits train / val /
      ood / obstacle) the Cityscapes layout with CITY = synthroad, plus for the ood split
      ROOT/gtFine/ood/synthroad/*_gtFine_oodIds.png (0 / 1 / 255) and
      ROOT/fishyscapes_ood/{original,labels}/  (the same frames in the processed Fishyscapes
      layout)
More in training/datasets/{cityscapes,anomaly}.py and the README ("Dataset layouts").
"""
SML_NOTE = (
    "SML: no row -- no logit statistics (pass --stats from fed_stats on this backbone, or "
    "a --fed checkpoint trained with --stats, which records them)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_eval",
        description=__doc__,
        epilog=DATASET_LAYOUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(p)
    _add_data_args(p)
    _add_scoring_args(p)
    _add_run_args(p)
    return p


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """What is evaluated: the backbone and the FED checkpoints."""
    p.add_argument(
        "--backbone", required=True, help="backbone checkpoint (ours, MMSeg .pth or HF folder)"
    )
    p.add_argument(
        "--fed",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="FED checkpoint to evaluate, e.g. FED-U=models/fed_u_synthroad (repeatable)",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Which benchmark it is evaluated on, and where the results go."""
    p.add_argument(
        "--dataset",
        required=True,
        choices=sorted(DATASETS),
        help="benchmark: "
        + "; ".join(f"{name} = {what}" for name, what in sorted(DATASETS.items())),
    )
    p.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="dataset folder (Cityscapes root, Fishyscapes / SMIYC folder, fed_synthroad --out)",
    )
    p.add_argument(
        "--split", default=None, help="dataset split (default: the dataset's evaluation split)"
    )
    p.add_argument("--corruption", default="snow", help="Cityscapes-C corruption name")
    p.add_argument("--severity", type=int, default=1, help="Cityscapes-C severity 1-4")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for results.json, results.md, figures.png"
    )


def _add_scoring_args(p: argparse.ArgumentParser) -> None:
    """How the scores are computed: SML statistics, backbone checks, inference mode, FED
    post-processing, MC dropout."""
    p.add_argument(
        "--stats",
        type=Path,
        default=None,
        help="logit statistics JSON from fed_stats on this backbone (enables SML)",
    )
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="evaluate FEDs or --stats made for another backbone anyway (a warning instead of an "
        "error)",
    )
    p.add_argument(
        "--tta", action="store_true", help="scales 1, 0.5, 0.25 with FED inputs upsampled 4x"
    )
    p.add_argument(
        "--slide",
        default=None,
        metavar="CROP,STRIDE",
        help="sliding-window inference, e.g. 1024,768 (default: the checkpoint's setting)",
    )
    p.add_argument(
        "--fed-postprocess",
        choices=("gaussian", "sml", "none"),
        default="gaussian",
        help="post-processing of the FED score maps (default gaussian smoothing)",
    )
    p.add_argument(
        "--fed-extra-rates",
        default="",
        metavar="R[,R]",
        help="multi-scale FED: also run each FED at these rates of the image (0.5, 1.0) and "
        "average its scores (the fused engine's fed_extra_rates); default none",
    )
    p.add_argument("--mcd-passes", type=int, default=8, help="MC-dropout passes (0 disables)")
    p.add_argument(
        "--component-track",
        choices=("anomaly", "obstacle", "off"),
        default=None,
        help="SegmentMeIfYouCan component metrics (sIoU, PPV, mean F1) with that track's size "
        "limits: anomaly = predicted components >= 500 px, ground truth >= 100 px; obstacle = "
        "50 / 10 px (default: obstacle for road-obstacle21 and synthroad-obstacle, else anomaly)",
    )


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """How the run executes: metric mode, second pass, figures, image limit, progress bar."""
    p.add_argument(
        "--exact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exact pooled OOD metrics (default: exact when small, histograms otherwise)",
    )
    p.add_argument("--no-open-miou", action="store_true", help="skip the second (open-mIoU) pass")
    p.add_argument("--figures", type=int, default=4, help="images in figures.png")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument(
        "--save-scores",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every image's prediction and score maps, as scored, to DIR/NAME.npz "
        "(for independent checks of the metrics)",
    )
    p.add_argument(
        "--from-scores",
        type=Path,
        default=None,
        metavar="DIR",
        help="score the maps an earlier --save-scores DIR wrote (same models and flags) instead "
        "of running the models: the metrics alone, e.g. after scoring parts of a split apart",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _class_stats(
    args: argparse.Namespace, fed_meta: list[dict], backbone: BackboneFingerprint
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """SML statistics from --stats (checked against the backbone) or from a FED checkpoint that
    recorded them."""
    if args.stats is not None:
        if not args.stats.is_file():
            raise UsageError(f"--stats {args.stats}: file not found (write it with fed_stats)")
        data = read_statistics_file(args.stats)
        check_backbone(
            data, backbone, f"logit statistics {args.stats}", args.allow_backbone_mismatch
        )
        return torch.tensor(data["mean"]), torch.tensor(data["std"])
    for meta in fed_meta:
        stats = statistics_from_metadata(meta, "FED checkpoint")
        if stats is not None:
            return torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    return None, None


def _palette(backbone: torch.nn.Module) -> list:
    """The checkpoint's palette (attribute or metadata), else the Cityscapes-style default."""
    from ros2_fed.backbones.base import default_palette

    palette = getattr(backbone, "palette", None) or (getattr(backbone, "meta", None) or {}).get(
        "palette"
    )
    return palette if palette else default_palette(int(getattr(backbone, "num_classes", 19)))


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    with one_line_warnings("fed_eval"):
        try:
            stopping.started()  # a stop signal is a KeyboardInterrupt from here on
            return run(args)
        except user_errors() as exc:
            return report("fed_eval", exc)
        except KeyboardInterrupt:
            saved = (
                f"; the score maps saved so far stay in {args.save_scores}"
                if (args.save_scores)
                else ""
            )
            print(
                f"fed_eval: stopped; no results written (they are written at the end){saved}: "
                "the same command evaluates again",
                file=sys.stderr,
                flush=True,
            )
            return stopping.interrupted_exit_code()
        finally:
            stopping.stopping()


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the results; user errors raise (``main`` reports them in one line)."""
    backbone, fingerprint = _load_backbone(args)
    feds, metas = _load_feds(args, fingerprint)
    class_mean, class_std = _class_stats(args, metas, fingerprint)
    settings = _settings(args)
    source = make_source(
        args.dataset,
        args.data_root,
        args.split,
        corruption=args.corruption,
        severity=args.severity,
        limit=args.limit,
    )
    evaluator = Evaluator(
        backbone,
        feds,
        int(getattr(backbone, "num_classes", None) or backbone.meta["num_classes"]),
        settings,
        class_mean,
        class_std,
        saved_scores=_score_reader(args.from_scores),
    )
    rows: list[tuple] = []
    results = evaluator.evaluate(
        source.samples,
        len(source),
        on_figure=lambda *row: rows.append(row),
        progress=not args.no_progress,
        on_image=_score_writer(args.save_scores),
    )
    if class_mean is None:  # the SML row is missing: say why, in results.json and results.md
        results["notes"] = [SML_NOTE]
        print(f"fed_eval: note: {SML_NOTE}", file=sys.stderr)
    results.update(
        dataset=args.dataset,
        data_root=str(args.data_root),
        backbone=str(args.backbone),
        fed={n: s for n, s in zip(feds, args.fed)},
        tta=bool(args.tta),
        fed_postprocess=args.fed_postprocess,
        fed_extra_rates=list(_extra_rates(args)),
    )
    _write_outputs(args, backbone, results, rows, len(source))
    return 0


def _load_backbone(args: argparse.Namespace) -> tuple[torch.nn.Module, BackboneFingerprint]:
    """The backbone in eval mode and its fingerprint (taken before --slide changes its inference
    setting, so FEDs trained on it still match)."""
    from ros2_fed.backbones import load_backbone

    backbone = load_backbone(args.backbone).eval()
    fingerprint = fingerprint_of(backbone)
    if args.slide:
        crop, stride = (int(v) for v in args.slide.split(","))
        backbone.meta["inference"] = {
            "mode": "slide",
            "crop_size": [crop, crop],
            "stride": [stride, stride],
        }
    return backbone, fingerprint


def _load_feds(
    args: argparse.Namespace, fingerprint: BackboneFingerprint
) -> tuple[dict[str, torch.nn.Module], list[dict]]:
    """({name: FED}, their metadata) from the --fed NAME=PATH flags (a bare PATH is named after
    its file), each checked against the backbone."""
    feds, metas = {}, []
    for spec in args.fed:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).name, spec
        feds[name], meta = load_fed(path)
        check_backbone(meta, fingerprint, f"FED checkpoint {path}", args.allow_backbone_mismatch)
        metas.append(meta)
    return feds, metas


def _extra_rates(args: argparse.Namespace) -> tuple[float, ...]:
    """--fed-extra-rates as numbers; multi-scale FED and --tta are two different evaluations."""
    try:
        rates = tuple(float(r) for r in args.fed_extra_rates.split(",") if r.strip())
    except ValueError:
        raise UsageError(
            f"--fed-extra-rates {args.fed_extra_rates!r}: expected e.g. 0.5"
        ) from None
    if rates and args.tta:
        raise UsageError("--fed-extra-rates and --tta cannot be combined")
    if any(not 0 < r <= 1 for r in rates):
        raise UsageError(f"--fed-extra-rates {args.fed_extra_rates}: rates in (0, 1]")
    return rates


def _settings(args: argparse.Namespace) -> EvalSettings:
    """The evaluation settings the flags ask for."""
    return EvalSettings(
        tta_scales=(1.0, 0.5, 0.25) if args.tta else (),
        fed_postprocess=args.fed_postprocess,
        fed_extra_rates=_extra_rates(args),
        mcd_passes=args.mcd_passes,
        exact=args.exact,
        open_miou=not args.no_open_miou,
        figure_images=args.figures,
        component_track=args.component_track or COMPONENT_TRACKS.get(args.dataset, "anomaly"),
    )


def _score_file(folder: Path, sample) -> Path:
    return folder / f"{Path(sample.name).name.replace('/', '_')}.npz"


def _score_reader(folder: Optional[Path]):
    """``Evaluator(saved_scores=...)``: each image's (pred, maps) from ``folder/NAME.npz``."""
    if folder is None:
        return None
    if not folder.is_dir():
        raise UsageError(f"--from-scores {folder}: no such folder (write it with --save-scores)")

    def read(sample) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        path = _score_file(folder, sample)
        if not path.is_file():
            raise UsageError(f"--from-scores: {path} missing (not scored with --save-scores)")
        with np.load(path) as data:
            return data["pred"], {k: data[k] for k in data.files if k != "pred"}

    return read


def _score_writer(folder: Optional[Path]):
    """``on_image`` callback writing ``folder/NAME.npz`` (``pred`` + one array per method)."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)

    def write(sample, pred: np.ndarray, maps: dict[str, np.ndarray]) -> None:
        np.savez_compressed(_score_file(folder, sample), pred=pred, **maps)

    return write


def _write_outputs(
    args: argparse.Namespace,
    backbone: torch.nn.Module,
    results: dict,
    rows: list[tuple],
    images: int,
) -> None:
    """results.json, results.md, figures.png (when there are figure rows), and the table and the
    written paths on stdout."""
    title = f"{args.dataset} ({images} images{', TTA' if args.tta else ''})"
    json_path, md_path = write_results(args.out, results, title)
    if rows:
        palette = np.asarray(_palette(backbone), dtype=np.uint8)
        strips = [
            figure_row(s.image, pred, s.label, s.ood, maps, results["visual_range"], palette)
            for s, pred, maps in rows
        ]
        write_figure(args.out / "figures.png", strips)
    print(md_path.read_text())
    print(
        f"fed_eval: wrote {json_path}, {md_path}"
        + (f", {args.out / 'figures.png'}" if rows else "")
    )


if __name__ == "__main__":
    sys.exit(main())
