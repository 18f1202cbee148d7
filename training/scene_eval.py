"""`python -m training.scene_eval`: measure the node's scene status on corrupted synthroad drives.

What it answers (docs/scene.md is written from the result):

- how often the scene status is WARN or above for every imagecorruptions corruption at
  severities 1-5 (the project's Cityscapes-C machinery, ``training.datasets.cityscapes_c``,
  applied to every frame of a drive), and on clean drives (false alarms);
- how fast a black, a saturated, a uniform grey and a frozen camera are reported;
- whether the statistic tracks how wrong the segmentation is: per-frame mIoU against the
  statistic on the corrupted drives, with the Spearman rank correlation;
- what the scene stage costs per 512x1024 frame.

Every frame goes through the node's own frame path: the engine fed_node opens for these
checkpoints (ONNX Runtime, the cached engine) and a ``FrameProcessor`` with the node's default
parameters, one per drive and condition (fresh monitors), frames as rgb8 Image messages stamped
at 10 Hz. Drives are rendered without unknown objects from seeds no
other evaluation uses (600-609). A FED checkpoint without a scene calibration is calibrated
first (``fed_calibrate``'s record on the synthroad val split, written into a copy under
``--work``; the checkpoint itself is left alone). Results are kept per condition under
``--work``, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ros2_fed.jsonio import write_json
from ros2_fed.paths import default_models_dir
from ros2_fed.pipeline.model_spec import DEFAULT_BACKBONE, DEFAULT_FED

FPS = 10.0
START_NS = 1_700_000_000 * 1_000_000_000
#: Frame at which a fault condition starts (the frames before it are the clean drive).
FAULT_ONSET = 10
#: Camera faults injected from FAULT_ONSET on: name -> what the camera delivers.
FAULT_CONDITIONS = ("black", "saturated", "uniform", "frozen")
#: Corruptions too slow for every drive (seconds per frame): run on ``--slow-drives`` drives.
SLOW_CORRUPTIONS = ("glass_blur",)


@dataclass(frozen=True)
class Condition:
    """One row of the evaluation: clean, a corruption at a severity, or a camera fault."""

    kind: str  # "clean" | "corruption" | one of FAULT_CONDITIONS
    name: str
    severity: int
    seeds: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.name}_{self.severity}" if self.kind == "corruption" else self.name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scene_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backbone",
        default=None,
        help=f"backbone checkpoint (default: fed_node's default, models/{DEFAULT_BACKBONE})",
    )
    p.add_argument(
        "--fed", default=None, help=f"FED checkpoint (default: fed_node's, models/{DEFAULT_FED})"
    )
    p.add_argument(
        "--calibration-root",
        type=Path,
        default=Path("runs/scene_eval/synthroad"),
        help="synthroad root whose val split calibrates a FED without a scene record "
        "(rendered there when missing: the default model's val split, seed 0)",
    )
    p.add_argument("--seeds", default="600-609", help="clean drive seeds (default 600-609)")
    p.add_argument(
        "--check-seeds",
        default="5000-5019",
        help="clean drives the WARN rule was checked on before the evaluation (reported apart; "
        "default 5000-5019; empty: none)",
    )
    p.add_argument(
        "--corrupt-drives",
        type=int,
        default=4,
        help="drives (the first seeds) every corruption and severity runs on (default 4)",
    )
    p.add_argument(
        "--slow-drives",
        type=int,
        default=1,
        help=f"drives for {', '.join(SLOW_CORRUPTIONS)} (seconds per frame; default 1)",
    )
    p.add_argument("--frames", type=int, default=40, help="frames per drive at 10 Hz (40)")
    p.add_argument("--size", default="256x512", help="frame size HxW (the model's, 256x512)")
    p.add_argument("--corruptions", default="all", help="comma-separated, or all (default)")
    p.add_argument("--severities", default="1-5", help="severities (default 1-5)")
    p.add_argument("--threads", type=int, default=1, help="engine CPU threads (default 1)")
    p.add_argument("--work", type=Path, default=Path("runs/scene_eval"), help="scratch + cache")
    p.add_argument("--docs", type=Path, default=Path("docs"), help="where scene.md etc. go")
    p.add_argument("--cost-runs", type=int, default=200, help="timed runs of the scene stage")
    return p


def seed_list(text: str) -> list[int]:
    """ "600-609" or "1,2,3" -> the seeds."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def conditions(args: argparse.Namespace) -> list[Condition]:
    """Clean, every corruption x severity, every camera fault, in that order."""
    from training.datasets.cityscapes_c import CORRUPTIONS

    seeds = tuple(seed_list(args.seeds))
    names = CORRUPTIONS if args.corruptions == "all" else tuple(args.corruptions.split(","))
    out = [Condition("clean", "clean", 0, seeds)]
    if args.check_seeds:
        out.append(Condition("clean_check", "clean_check", 0, tuple(seed_list(args.check_seeds))))
    for name in names:
        drives = args.slow_drives if name in SLOW_CORRUPTIONS else args.corrupt_drives
        for severity in seed_list(args.severities):
            out.append(Condition("corruption", name, severity, seeds[:drives]))
    out += [Condition(kind, kind, 0, seeds[: args.corrupt_drives]) for kind in FAULT_CONDITIONS]
    return out


# --------------------------------------------------------------------------------------
# The model: a FED with a scene calibration
# --------------------------------------------------------------------------------------


def calibrated_fed(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """(FED checkpoint to run, its calibration, how it was obtained): the given one when it
    has a scene record, else a copy under --work with fed_calibrate's record on the val split."""
    from ros2_fed.checkpoint import load_fed
    from ros2_fed.fileio import file_sha256
    from training import calibrate

    _, meta = load_fed(args.fed)
    old = dict(meta.get("calibration") or {})
    if "scene" in old:
        return str(args.fed), old, f"the scene record in `{args.fed}` (fed_calibrate)"
    source = file_sha256(f"{args.fed}.safetensors")[:12] + file_sha256(f"{args.fed}.json")[:12]
    copy = args.work / "fed_calibrated" / source / Path(args.fed).name
    how = f"fed_calibrate's record on {args.calibration_root} (val split), written into a copy"
    if Path(f"{copy}.json").is_file():  # this very checkpoint, calibrated before
        _, meta = load_fed(copy)
        return str(copy), dict(meta["calibration"]), f"{how} ({copy})"
    root = args.calibration_root
    render_val_split(root, args.size)
    print(f"scene_eval: {args.fed} has no scene record: fed_calibrate on {root} (val)")
    record = calibrate.calibrate(
        args.backbone, Path(args.fed), root, "val", old.get("false_alarm", 0.05), progress=False
    )
    copy.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(f"{args.fed}{suffix}", f"{copy}{suffix}")
    merged = {**old, **record}
    calibrate.write_into(copy, merged)
    return str(copy), merged, f"{how} ({copy})"


def render_val_split(root: Path, size: str) -> None:
    """The default model's synthroad val split (seed 0), when ``root`` has none yet."""
    from training import cli_synthroad

    if (root / "synthroad.json").is_file():
        return
    argv = ["--out", str(root), "--train", "0", "--val", "100", "--ood", "0", "--size", size]
    if cli_synthroad.main(argv + ["--seed", "0", "--no-progress"]) != 0:
        raise RuntimeError(f"could not render the val split into {root}")


def open_node_engine(args: argparse.Namespace, fed: str) -> Any:
    """The engine fed_node opens for these checkpoints at the drives' size."""
    from ros2_fed.pipeline.model_spec import ModelSpec, open_engine

    height, width = (int(v) for v in args.size.split("x"))
    spec = ModelSpec(
        backbone=args.backbone, fed=fed, height=height, width=width, threads=args.threads
    ).resolved()
    return open_engine(spec, progress=lambda msg: print(f"scene_eval: {msg}"))


# --------------------------------------------------------------------------------------
# Drives and conditions
# --------------------------------------------------------------------------------------


def render_drive(
    seed: int, frames: int, size: tuple[int, int], cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W x 3, trainIds N x H x W) of a drive without unknown objects."""
    from training.datasets.synthroad_sequence import make_sequence

    path = cache / f"drive_{seed}_{frames}_{size[0]}x{size[1]}.npz"
    if path.is_file():
        data = np.load(path)
        return data["images"], data["labels"]
    sequence = make_sequence(frames, size, seed, ood=False)
    images = np.stack([image for image, _, _ in sequence])
    labels = np.stack([label for _, label, _ in sequence])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels)
    return images, labels


def condition_frames(condition: Condition, images: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """The frames the camera delivers under ``condition`` (corruptions seeded per frame)."""
    from training.datasets.cityscapes_c import corrupt_image

    for i, image in enumerate(images):
        if condition.kind == "corruption":
            image_id = f"scene_eval/{seed}/{i}"
            yield corrupt_image(image, condition.name, condition.severity, image_id)
        elif condition.kind in ("clean", "clean_check") or i < FAULT_ONSET:
            yield image
        elif condition.kind == "frozen":
            yield images[FAULT_ONSET]  # the same bytes again and again, stamps advancing
        else:
            value = {"black": 0, "saturated": 255, "uniform": 128}[condition.kind]
            yield np.full_like(image, value)


def frame_miou(pred: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """(mIoU over the classes in the ground truth or the prediction, pixel accuracy) on the
    labelled pixels of one frame."""
    valid = label != 255
    p, g = pred[valid].astype(np.int64), label[valid].astype(np.int64)
    if g.size == 0:
        return float("nan"), float("nan")
    n = int(max(p.max(), g.max())) + 1
    confusion = np.bincount(g * n + p, minlength=n * n).reshape(n, n)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])), float(inter.sum() / g.size)


def run_drive(
    engine: Any, frames: Iterator[np.ndarray], labels: np.ndarray
) -> list[dict[str, Any]]:
    """Every frame through a fresh frame path (the node's defaults): per frame the scene
    level, statistic and fault, the alert level, and the segmentation's mIoU / accuracy."""
    from ros2_fed.eval.replay.bagio import image_message
    from ros2_fed.pipeline.outputs import ALERT_STAGE, SCENE_STAGE
    from ros2_fed.pipeline.processor import FrameProcessor

    processor = FrameProcessor(engine, {})
    records = []
    for i, rgb in enumerate(frames):
        msg = image_message(rgb, "rgb8", START_NS + int(i * 1e9 / FPS), "camera")
        (result,) = processor.run({"": msg})
        scene, alert = result.statuses[SCENE_STAGE], result.statuses[ALERT_STAGE]
        miou, accuracy = frame_miou(result.labels, labels[i])
        records.append(
            {
                "frame": i,
                "level": int(scene.level),
                "fraction": float(scene.values["uncertain_fraction"]),
                "fault": scene.values["fault"],
                "identical_frames": int(scene.values["identical_frames"]),
                "alert_level": int(alert.level),
                "miou": miou,
                "accuracy": accuracy,
            }
        )
    return records


def run_condition(
    args: argparse.Namespace, engine: Any, condition: Condition, size: tuple[int, int]
) -> dict[str, Any]:
    """One condition on its drives, from the cache under --work when already run with this
    model (the cache is keyed by the engine's model hash: weights, graph and calibration)."""
    path = (
        args.work / "results" / str(engine.metadata["model_hash"])[:16] / f"{condition.key}.json"
    )
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.monotonic()
    drives = {}
    for seed in condition.seeds:
        images, labels = render_drive(seed, args.frames, size, args.work / "drives")
        drives[str(seed)] = run_drive(engine, condition_frames(condition, images, seed), labels)
    result = {
        "kind": condition.kind,
        "name": condition.name,
        "severity": condition.severity,
        "drives": drives,
        "seconds": time.monotonic() - t0,
    }
    write_json(path, result)
    return result


# --------------------------------------------------------------------------------------
# Cost of the scene stage per frame
# --------------------------------------------------------------------------------------


def scene_cost(calibration: dict[str, Any], runs: int) -> dict[str, Any]:
    """Milliseconds the scene stage takes per 512x1024 frame (rgb8 message + float32
    confidence), the way the frame path calls it; min / median / p95 over ``runs``."""
    from ros2_fed.eval.replay.bagio import image_message
    from ros2_fed.pipeline.processor import CameraResult
    from ros2_fed.pipeline.stages import ModelInfo, SceneStage

    rng = np.random.default_rng(0)
    stage = SceneStage(ModelInfo(calibration=calibration), [""])
    stage.apply(stage.configure({}))
    rgb = rng.integers(0, 255, (512, 1024, 3), dtype=np.uint8)
    confidence = rng.random((512, 1024), dtype=np.float32)
    labels = np.zeros((512, 1024), np.uint8)
    times = []
    for i in range(runs):
        msg = image_message(rgb, "rgb8", START_NS + i, "camera")
        frame = CameraResult("", msg, rgb=rgb, labels=labels, confidence=confidence)
        t0 = time.perf_counter()
        stage.update("", frame)
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "shape": [512, 1024],
        "runs": runs,
        "min_ms": float(np.min(times)),
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
    }


def main(argv: Optional[list[str]] = None) -> int:
    from training import scene_report

    args = build_parser().parse_args(argv)
    args.backbone = args.backbone or str(default_models_dir() / DEFAULT_BACKBONE)
    args.fed = args.fed or str(default_models_dir() / DEFAULT_FED)
    size = tuple(int(v) for v in args.size.split("x"))
    fed, calibration, how = calibrated_fed(args)
    engine = open_node_engine(args, fed)
    results = {}
    todo = conditions(args)
    for n, condition in enumerate(todo, 1):
        result = run_condition(args, engine, condition, size)
        results[condition.key] = result
        print(f"scene_eval: [{n}/{len(todo)}] {condition.key} ({result['seconds']:.0f} s)")
    engine.close()
    cost = scene_cost(calibration, args.cost_runs)
    summary = scene_report.summarise(results, calibration, cost, how, vars(args), FAULT_ONSET, FPS)
    scene_report.write(summary, results, args.docs)
    print(scene_report.headline(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
