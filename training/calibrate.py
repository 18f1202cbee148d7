"""`fed_calibrate`: the model's operating point, measured on the validation split.

A raw ``p_wrong = 0.5`` means different things for different models, so the node's alert
threshold and the overlay's colour range come from the model instead of fixed numbers. This
runs the same fused graph the node runs (backbone + FED + post-processing, in torch) over the
in-distribution validation images and picks:

- ``confidence_threshold``: the confidence below which only ``--false-alarm`` of the correctly
  classified validation pixels fall (a per-pixel false-alarm rate on in-distribution frames);
- ``viz_range`` ``[low, high]``: the overlay's red..blue scale; ``high`` is the median confidence
  of correct pixels (typical road = fully blue) and the threshold sits at a quarter of the
  scale, so everything the alerts count as uncertain is drawn red;
- ``scene``: the in-domain distribution of the scene-health statistic (``ros2_fed.scene``: the
  share of each frame above the ego hood whose confidence is below that threshold) over the
  same frames, and the WARN / ERROR limits the node's scene status takes from it.

The result goes into the FED checkpoint's metadata (``--into``), the engine's sidecar carries it
and ``fed_node`` uses it unless a parameter overrides it. Void pixels (the ego hood, unlabelled
clutter) are left out: they are neither correct nor wrong.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_calibrate", __name__)  # first: a signal during the imports stops it

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ros2_fed import scene  # noqa: E402
from ros2_fed.fingerprint import ALLOW_FLAG  # noqa: E402
from ros2_fed.jsonio import write_json  # noqa: E402
from training.cli_errors import one_line_warnings, report, user_errors  # noqa: E402

VOID = 255
# where the threshold lands on the overlay's 0 (red) .. 1 (blue) scale
VIZ_THRESHOLD_POSITION = 0.25


#: Share of correct validation pixels below the threshold: the shipped models' operating point,
#: at which the default alert rule was selected (docs/alerts.md).
DEFAULT_FALSE_ALARM = 0.02


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backbone", required=True, help="backbone checkpoint (stem, .json or foreign format)"
    )
    p.add_argument("--fed", required=True, type=Path, help="FED checkpoint stem")
    p.add_argument("--data-root", required=True, type=Path, help="Cityscapes-layout dataset root")
    p.add_argument(
        "--split", default="val", help="in-distribution split to calibrate on (default val)"
    )
    p.add_argument(
        "--false-alarm",
        type=float,
        default=DEFAULT_FALSE_ALARM,
        help="share of correct pixels allowed below the threshold "
        f"(default {DEFAULT_FALSE_ALARM}, as the shipped models: the default alert rule was "
        "selected at this operating point, docs/alerts.md)",
    )
    p.add_argument(
        "--postprocess",
        choices=("none", "gaussian", "sml"),
        default=None,
        help="score post-processing the node will run "
        "(default: the FED's recorded one, else none)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument(
        "--scene-hood",
        type=float,
        default=scene.SceneConfig().hood,
        help="bottom share of the rows the scene statistic leaves out (the ego hood; default "
        "%(default)s, the node's scene.hood follows the calibration)",
    )
    p.add_argument(
        "--into", action="store_true", help="write the result into the FED checkpoint's metadata"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="calibrate a FED trained on another backbone anyway (a warning instead of an error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def confidences(
    detector: torch.nn.Module,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    total: Optional[int] = None,
    progress: bool = True,
    scene_frames: Optional[list[np.ndarray]] = None,
    scene_hood: float = scene.SceneConfig().hood,
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of correct pixels, confidence of wrong pixels) over labelled, non-void
    pixels. ``scene_frames``: a list that receives each frame's
    :func:`ros2_fed.scene.confidence_histogram` (every pixel above the hood, void included)."""
    correct, wrong = [], []
    with torch.no_grad():
        for image, label in tqdm(samples, total=total, desc="fed_calibrate", disable=not progress):
            labels, conf = detector(torch.from_numpy(np.ascontiguousarray(image))[None])
            labels, conf = labels[0].numpy(), conf[0].float().numpy()
            if scene_frames is not None:
                scene_frames.append(scene.confidence_histogram(conf, scene_hood))
            valid = label != VOID
            hit = (labels == label) & valid
            correct.append(conf[hit])
            wrong.append(conf[valid & ~hit])
    return np.concatenate(correct), np.concatenate(wrong)


def operating_point(correct: np.ndarray, wrong: np.ndarray, false_alarm: float) -> dict[str, Any]:
    """Threshold at the given false-alarm rate on correct pixels, colour range, and what they
    mean."""
    if not 0.0 < false_alarm < 1.0:
        raise ValueError(f"false_alarm must be in (0, 1), got {false_alarm}")
    if correct.size == 0:
        raise ValueError("no correctly classified pixel to calibrate on")
    threshold = float(np.quantile(correct, false_alarm))
    high = max(float(np.median(correct)), min(1.0, threshold + 1e-3))
    # saturated models: still a visible ramp below the threshold
    span = max(high - threshold, 1e-2)
    low = max(0.0, threshold - span * VIZ_THRESHOLD_POSITION / (1 - VIZ_THRESHOLD_POSITION))
    flagged_wrong = int(np.count_nonzero(wrong < threshold))
    flagged_correct = int(np.count_nonzero(correct < threshold))
    return {
        "confidence_threshold": threshold,
        "viz_range": [low, high],
        "false_alarm": false_alarm,
        "wrong_recall": flagged_wrong / wrong.size if wrong.size else None,
        "precision": flagged_wrong / max(flagged_wrong + flagged_correct, 1),
        "correct_pixels": int(correct.size),
        "wrong_pixels": int(wrong.size),
    }


def validation_confidences(
    backbone: str,
    fed: Path,
    data_root: Path,
    split: str = "val",
    postprocess: Optional[str] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    allow_backbone_mismatch: bool = False,
    scene_frames: Optional[list[np.ndarray]] = None,
    scene_hood: float = scene.SceneConfig().hood,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(correct, wrong) pixel confidences of the node's graph over ``split``, and what was run
    (``scene_frames``: see :func:`confidences`)."""
    from ros2_fed.checkpoint import load_fed
    from ros2_fed.detector import FusedDetector
    from training.data import sample_arrays
    from training.datasets.cityscapes import CityscapesDataset

    _, meta = load_fed(fed)
    if postprocess is None:
        postprocess = (meta.get("calibration") or {}).get("postprocess", "none")
    detector = FusedDetector.from_checkpoints(
        backbone,
        fed,
        score="fed",
        postprocess=postprocess,
        allow_backbone_mismatch=allow_backbone_mismatch,
    ).eval()
    dataset = CityscapesDataset(data_root, split=split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"no images in {data_root} split {split}")
    samples = (sample_arrays(dataset[i]) for i in range(count))
    correct, wrong = confidences(
        detector, samples, count, progress, scene_frames=scene_frames, scene_hood=scene_hood
    )
    return (
        correct,
        wrong,
        {"postprocess": postprocess, "split": split, "images": count, "data_root": str(data_root)},
    )


def calibrate(
    backbone: str,
    fed: Path,
    data_root: Path,
    split: str = "val",
    false_alarm: float = DEFAULT_FALSE_ALARM,
    postprocess: Optional[str] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    allow_backbone_mismatch: bool = False,
    scene_hood: float = scene.SceneConfig().hood,
) -> dict[str, Any]:
    """Run the node's graph over ``split`` and return the calibration record (the operating
    point, the scene statistic's in-domain distribution at it, what was run)."""
    frames: list[np.ndarray] = []
    correct, wrong, run = validation_confidences(
        backbone,
        fed,
        data_root,
        split,
        postprocess,
        limit,
        progress,
        allow_backbone_mismatch,
        scene_frames=frames,
        scene_hood=scene_hood,
    )
    point = operating_point(correct, wrong, false_alarm)
    return {
        **point,
        "scene": scene_statistics(frames, point["confidence_threshold"], scene_hood),
        **run,
    }


def scene_statistics(frames: list[np.ndarray], threshold: float, hood: float) -> dict[str, Any]:
    """The scene record (:func:`ros2_fed.scene.scene_record`) from per-frame confidence
    histograms at the calibrated threshold."""
    fractions = [scene.fraction_below(histogram, threshold) for histogram in frames]
    return scene.scene_record(fractions, threshold, hood)


def write_into(fed: Path, record: dict[str, Any]) -> None:
    """Store the record as ``calibration`` in the FED checkpoint's metadata (weights unchanged)."""
    from ros2_fed.checkpoint import load_fed, save_fed

    model, meta = load_fed(fed)
    meta = {
        k: v
        for k, v in meta.items()
        if k not in ("format", "format_version", "kind", "tensors_sha256", "config")
    }
    meta["calibration"] = record
    save_fed(fed, model, meta)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        with one_line_warnings("fed_calibrate"):
            record = calibrate(
                args.backbone,
                args.fed,
                args.data_root,
                args.split,
                args.false_alarm,
                args.postprocess,
                args.limit,
                progress=not args.no_progress,
                allow_backbone_mismatch=args.allow_backbone_mismatch,
                scene_hood=args.scene_hood,
            )
    except (*user_errors(), OSError) as exc:
        return report("fed_calibrate", exc)
    except KeyboardInterrupt:
        kept = [f"{args.fed}.json"] if args.into else []
        kept += [str(args.out)] if args.out is not None else []
        where = f" ({', '.join(kept)} as they were)" if kept else ""
        print(
            f"fed_calibrate: stopped before the pass ended; nothing was written{where}: the "
            "same command starts the pass again",
            file=sys.stderr,
            flush=True,
        )
        return stopping.interrupted_exit_code()
    finally:
        stopping.stopping()  # the pass is done: the files are written whole, signals ignored
    if args.into:
        write_into(args.fed, record)
    if args.out is not None:
        write_json(args.out, record)
    low, high = record["viz_range"]
    print(
        f"fed_calibrate: confidence_threshold {record['confidence_threshold']:.4f} "
        f"({100 * args.false_alarm:g} % of correct {args.split} pixels below it; it flags "
        f"{100 * (record['wrong_recall'] or 0):.1f} % of wrong pixels), overlay range [{low:.4f}, "
        f"{high:.4f}]" + (f" -> {args.fed}.json" if args.into else "")
    )
    sc = record["scene"]
    warn, error = scene.limits_from_distribution(sc["quantiles"])
    print(
        f"fed_calibrate: scene statistic (uncertain share above the hood) on {sc['frames']} "
        f"frames: median {100 * sc['quantiles']['0.5']:.1f} %, 99th percentile "
        f"{100 * sc['quantiles']['0.99']:.1f} % -> the node's scene status WARN above "
        f"{100 * warn:.1f} %, ERROR above {100 * error:.1f} %"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
