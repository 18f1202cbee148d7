"""INT8 against float32, side by side in one run: speed, where the time goes, accuracy.

Models (each exported twice through the product's exporter, ``export_onnx``: float32, and int8
as ``fed_export --precision int8`` writes it -- backbone quantised on synthroad val frames,
FED float32 -- and both run in ONNX Runtime on the CPU with ``--threads`` threads):

- SegFormer MiT-B2 + FED-U (random weights: latency does not depend on them), the kind of
  backbone that dominates a vehicle's frame (``--arch`` picks another one);
- the default model shipped in models/ (``DEFAULT_BACKBONE`` + ``DEFAULT_FED``, the checkpoints
  fed_node loads without a model parameter), at the same size; its row is labelled with the
  checkpoints' names and the FED variant read from the loaded checkpoint.

Runs alternate between the fp32 and int8 engines of all models, so load from other processes
hits every row alike; the table gives medians and the int8 speed-up. Then a per-operator-type
profile of the default model's two engines (ONNX Runtime's profiler: where its time goes), and
the default model's accuracy on synthroad frames it was not calibrated on: labels, mIoU and
confidence against fp32 on val frames, and the confidence's OOD AP / AuROC on ood frames and
its misclassification (IDM) AuROC on val frames, for both engines.

    # the figures in docs/int8.md (tens of minutes on 2 cores), and its 128x256 table:
    python benchmarks/int8.py --json docs/int8_results.json
    python benchmarks/int8.py --size 128x256 --calibration-images 12 --eval-frames 12 \\
        --json docs/int8_results_128x256.json
    python benchmarks/int8.py --arch tiny --size 64x128 --runs 2 --calibration-images 2 \\
        --eval-frames 2                    # smoke run
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_latency import ARCHS, build_detectors, make_backbone
from machine import cpu_name
from ros2_fed.detector import FusedDetector
from ros2_fed.engine.export import export_onnx
from ros2_fed.engine.int8 import calibration_set
from ros2_fed.engine.onnx_engine import OnnxEngine
from ros2_fed.engine.options import runtime_options
from ros2_fed.eval.metrics import auroc, average_precision
from ros2_fed.jsonio import write_json
from ros2_fed.paths import default_models_dir
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED


def default_name(detector: FusedDetector) -> str:
    """The default model's row label: the shipped checkpoints fed_node loads by default and the
    FED variant of the loaded one (so a change of default cannot leave a stale label)."""
    variant = detector.fed.cfg.variant if detector.fed is not None else "no FED"
    return f"default model ({DEFAULT_BACKBONE} + {DEFAULT_FED}, {variant})"


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--arch", choices=ARCHS, default="segformer-b2", help="random-weight backbone row"
    )
    p.add_argument("--size", default="512x1024", help="HxW camera size (default 512x1024)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per engine (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per engine first")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--calibration-images",
        type=int,
        default=16,
        help="synthroad val frames 0..N-1 the int8 engines are calibrated on (default 16)",
    )
    p.add_argument(
        "--eval-frames",
        type=int,
        default=10,
        help="held-out frames per split for the accuracy table (val from 100, ood from 0)",
    )
    p.add_argument("--profile-runs", type=int, default=3, help="profiled runs per engine")
    p.add_argument("--json", help="also write every figure to this JSON file")
    return p


def write_calibration_frames(folder: Path, count: int, height: int, width: int) -> Path:
    """Synthroad val frames 0..count-1 at the engine size, as PNG files in ``folder``."""
    import cv2

    from training.datasets.synthroad import render_indexed

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = render_indexed(0, "val", i, height, width).image
        cv2.imwrite(str(folder / f"val_{i:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def make_models(arch: str, height: int, width: int) -> dict[str, tuple[FusedDetector, bool]]:
    """name -> (detector, verify the exports): the random-weight row is not verified (its
    near-tie logits are no test of quantisation), the default model (the last row) is."""
    backbone, label = make_backbone(arch, None)
    random_row = build_detectors(backbone, height, width, "bilinear")["+ FED-U"]
    models = default_models_dir()
    default = FusedDetector.from_checkpoints(models / DEFAULT_BACKBONE, models / DEFAULT_FED)
    return {f"{label} + FED-U": (random_row, False), default_name(default): (default, True)}


def export_pair(
    name: str,
    detector: FusedDetector,
    verify: bool,
    folder: Path,
    size: tuple[int, int],
    calibration: Any,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """fp32 and int8 ONNX of one detector: paths, export seconds and the int8 summary."""
    stem = folder / name.split(" ")[0].lower().replace("(", "")
    out: dict[str, Any] = {}
    for precision in ("fp32", "int8"):
        say(f"exporting {name} {precision} ...")
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path, meta = export_onnx(
                detector,
                f"{stem}_{precision}.onnx",
                *size,
                precision=precision,
                verify=verify,
                calibration=calibration if precision == "int8" else None,
            )
        out[precision] = path
        out[f"{precision}_export_s"] = time.perf_counter() - start
        out["int8_summary"] = meta.get("int8", out.get("int8_summary"))
    return out


Times = dict[tuple[str, str], dict[str, list[float]]]


def measure(
    engines: dict[tuple[str, str], Any],
    image: np.ndarray,
    runs: int,
    warmup: int,
    say: Callable[[str], None],
) -> Times:
    """Wall-clock and process CPU seconds of every engine's runs, alternating: run r of every
    engine before run r+1 of any. CPU time (all threads; the engines do not spin) is the work a
    frame takes, which load from other processes stretches less than the wall clock."""
    for engine in engines.values():
        for _ in range(warmup):
            engine.infer(image, copy=False)
    times: Times = {key: {"wall": [], "cpu": []} for key in engines}
    for r in range(runs):
        for key, engine in engines.items():
            wall, cpu = time.perf_counter(), time.process_time()
            engine.infer(image, copy=False)
            times[key]["cpu"].append(time.process_time() - cpu)
            times[key]["wall"].append(time.perf_counter() - wall)
        say(
            f"run {r + 1}/{runs}: "
            + ", ".join(f"{k[0]}/{k[1]} {1000 * v['wall'][-1]:.0f} ms" for k, v in times.items())
        )
    return times


def speed_table(times: Times, models: Sequence[str]) -> str:
    lines = [
        "| model | fp32 median ms | int8 median ms | int8 speed-up | fp32 CPU ms | int8 CPU ms "
        "| int8 speed-up (CPU time) | fp32 runs (ms) | int8 runs (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in models:
        fp32, int8 = times[(name, "fp32")], times[(name, "int8")]
        wall = [1000 * statistics.median(t["wall"]) for t in (fp32, int8)]
        cpu = [1000 * statistics.median(t["cpu"]) for t in (fp32, int8)]
        runs = [", ".join(f"{1000 * t:.0f}" for t in series["wall"]) for series in (fp32, int8)]
        lines.append(
            f"| {name} | {wall[0]:.1f} | {wall[1]:.1f} | **{wall[0] / wall[1]:.2f}x** | "
            f"{cpu[0]:.1f} | {cpu[1]:.1f} | **{cpu[0] / cpu[1]:.2f}x** | {runs[0]} | {runs[1]} |"
        )
    return "\n".join(lines)


def op_profile(path: Path, image: np.ndarray, threads: int, runs: int) -> dict[str, float]:
    """Milliseconds per run by operator type (ONNX Runtime's profiler, after one warm-up)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the node
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: image[None]}
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    warmup = len(kernels) // (runs + 1)  # every run has the same kernels; the first is warm-up
    per_op: dict[str, float] = collections.defaultdict(float)
    for event in kernels[warmup:]:
        per_op[event["args"]["op_name"]] += event["dur"] / 1000.0 / runs
    return dict(per_op)


def profile_table(fp32: dict[str, float], int8: dict[str, float], top: int = 12) -> str:
    totals = (sum(fp32.values()), sum(int8.values()))
    lines = [
        f"| fp32 op (total {totals[0]:.1f} ms) | ms | share | int8 op (total {totals[1]:.1f} ms)"
        " | ms | share |",
        "|---|---|---|---|---|---|",
    ]
    ranked = [sorted(p.items(), key=lambda kv: -kv[1])[:top] for p in (fp32, int8)]
    for i in range(max(len(r) for r in ranked)):
        cells = []
        for rows, total in zip(ranked, totals):
            op, ms = rows[i] if i < len(rows) else ("", 0.0)
            cells += [op, f"{ms:.1f}" if op else "", f"{100 * ms / total:.1f} %" if op else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _miou(pred: np.ndarray, truth: np.ndarray, classes: int) -> list[float]:
    valid = truth != 255
    return [
        float(
            ((pred == c) & (truth == c) & valid).sum()
            / (((pred == c) | (truth == c)) & valid).sum()
        )
        for c in range(classes)
        if ((truth == c) & valid).any()
    ]


def accuracy(paths: dict[str, Path], size: tuple[int, int], frames: int) -> dict[str, Any]:
    """fp32 vs int8 on synthroad frames not calibrated on (val 100.., ood 0..)."""
    from training.datasets.synthroad import render_indexed

    engines = {p: OnnxEngine(paths[p]) for p in ("fp32", "int8")}
    val = [render_indexed(0, "val", 100 + i, *size) for i in range(frames)]
    ood = [render_indexed(0, "ood", i, *size) for i in range(frames)]
    out: dict[str, Any] = {"agreement": [], "conf_mean": [], "conf_p999": [], "conf_max": 0.0}
    scores: dict[str, dict[str, list[np.ndarray]]] = {
        p: collections.defaultdict(list) for p in engines
    }
    for frame in val:
        results = {p: e.infer(frame.image) for p, e in engines.items()}
        (l32, c32), (l8, c8) = results["fp32"], results["int8"]
        out["agreement"].append(float(np.mean(l32 == l8)))
        diff = np.abs(c32 - c8)
        out["conf_mean"].append(float(diff.mean()))
        out["conf_p999"].append(float(np.quantile(diff, 0.999)))
        out["conf_max"] = max(out["conf_max"], float(diff.max()))
        valid = frame.train_ids != 255
        for p, (labels, confidence) in results.items():
            scores[p]["miou"].append(np.array(_miou(labels, frame.train_ids, 19)))
            scores[p]["idm_score"].append(1.0 - confidence[valid])
            scores[p]["idm_label"].append(labels[valid] != frame.train_ids[valid])
    for frame in ood:
        keep = frame.ood != 255
        for p, engine in engines.items():
            scores[p]["ood_score"].append(1.0 - engine.infer(frame.image)[1][keep])
            scores[p]["ood_label"].append(frame.ood[keep] == 1)
    for p, s in scores.items():
        cat = {k: np.concatenate(v) for k, v in s.items()}
        out[p] = {
            "miou": float(np.mean([m.mean() for m in s["miou"]])),
            "ood_ap": average_precision(cat["ood_score"], cat["ood_label"]),
            "ood_auroc": auroc(cat["ood_score"], cat["ood_label"]),
            "idm_auroc": auroc(cat["idm_score"], cat["idm_label"]),
        }
    for engine in engines.values():
        engine.close()
    return out


def accuracy_table(acc: dict[str, Any], frames: int) -> str:
    lines = [
        f"| default model, {frames} + {frames} held-out frames | fp32 | int8 | int8 - fp32 |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("miou", "mIoU (val)"),
        ("ood_ap", "OOD AP of 1 - confidence (ood)"),
        ("ood_auroc", "OOD AuROC (ood)"),
        ("idm_auroc", "misclassification AuROC (val)"),
    ):
        a, b = acc["fp32"][key], acc["int8"][key]
        lines.append(f"| {label} | {100 * a:.2f} | {100 * b:.2f} | {100 * (b - a):+.2f} points |")
    agreement = acc["agreement"]
    lines.append(
        f"| labels agree with fp32 (val) | | {100 * np.mean(agreement):.2f} % "
        f"(worst frame {100 * min(agreement):.2f} %) | |"
    )
    lines.append(
        f"| confidence difference (val) | | mean {np.mean(acc['conf_mean']):.4f}, 99.9th "
        f"percentile {max(acc['conf_p999']):.3f} (worst frame), max {acc['conf_max']:.3f} | |"
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="int8_bench.") as tmp:
        folder = Path(tmp)
        images = write_calibration_frames(folder / "calibration", args.calibration_images, *size)
        calibration = calibration_set(images)
        models = make_models(args.arch, *size)
        default_row = list(models)[-1]
        # the verified default model first: a refused export ends the run before the long ones
        exported = {
            name: export_pair(name, det, verify, folder, size, calibration, say)
            for name, (det, verify) in reversed(models.items())
        }
        pairs = {name: exported[name] for name in models}
        options = runtime_options(".onnx", threads=args.threads)  # what fed_node opens with
        engines = {
            (name, p): OnnxEngine(pair[p], **options)
            for name, pair in pairs.items()
            for p in ("fp32", "int8")
        }
        image = np.ascontiguousarray(images_first_frame(calibration, size))
        times = measure(engines, image, args.runs, args.warmup, say)
        for engine in engines.values():
            engine.close()
        default = pairs[default_row]
        say("profiling the default model ...")
        profiles = {
            p: op_profile(default[p], image, args.threads, args.profile_runs)
            for p in ("fp32", "int8")
        }
        say("accuracy of the default model ...")
        acc = accuracy(default, size, args.eval_frames)
    setup = report(args, size, pairs, times, profiles, acc, argv)
    if args.json:
        figures = {
            "setup": setup,
            "default_model": default_row,
            "times_s": {f"{k[0]} / {k[1]}": v for k, v in times.items()},
            "profiles_ms": profiles,
            "accuracy": acc,
            "int8": {name: pair["int8_summary"] for name, pair in pairs.items()},
        }
        write_json(args.json, figures, indent=1)
    return 0


def tables_from_json(figures: dict[str, Any]) -> tuple[str, str, str]:
    """The speed, profile and accuracy tables of a ``--json`` file, as the run printed them
    (docs/int8.md carries them verbatim; tests/test_int8_benchmark.py checks that it does)."""
    times: Times = {
        tuple(key.rsplit(" / ", 1)): value  # type: ignore[misc]
        for key, value in figures["times_s"].items()
    }
    models = list(dict.fromkeys(name for name, _ in times))
    profiles = figures["profiles_ms"]
    return (
        speed_table(times, models),
        profile_table(profiles["fp32"], profiles["int8"]),
        accuracy_table(figures["accuracy"], figures["setup"]["eval_frames"]),
    )


def images_first_frame(calibration: Any, size: tuple[int, int]) -> np.ndarray:
    """The frame every engine is timed on: the first calibration image (a real scene)."""
    from ros2_fed.engine.int8 import load_frame

    return load_frame(calibration.images[0], *size)


def report(
    args: argparse.Namespace,
    size: tuple[int, int],
    pairs: dict[str, dict[str, Any]],
    times: Times,
    profiles: dict[str, dict[str, float]],
    acc: dict[str, Any],
    argv: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Print the three tables; returns the run's setup (for the JSON file)."""
    import onnxruntime

    setup = {
        "command": "python benchmarks/int8.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "size": list(size),
        "onnxruntime": onnxruntime.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "calibration_images": args.calibration_images,
        "eval_frames": args.eval_frames,
        "load_average_at_end": list(os.getloadavg()),
    }
    print(
        f"INT8 vs FP32, fused engine (uint8 RGB {size[0]}x{size[1]} in -> labels + confidence "
        f"out), ONNX Runtime {onnxruntime.__version__} CPU, {args.threads} threads, "
        f"{cpu_name()}, no spinning (as fed_node); {args.runs} alternating runs after "
        f"{args.warmup} warm-up; int8 calibrated on {args.calibration_images} synthroad val "
        f"frames; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print(speed_table(times, list(pairs)))
    print()
    for name, pair in pairs.items():
        summary = pair["int8_summary"]
        print(
            f"- {name}: int8 quantised {summary['quantized_ops']} ({summary['qdq_nodes']} Q/DQ "
            f"nodes), FED float32; export fp32 {pair['fp32_export_s']:.1f} s, int8 "
            f"{pair['int8_export_s']:.1f} s"
        )
    print(f"\nWhere the default model's time goes ({args.profile_runs} profiled runs each):\n")
    print(profile_table(profiles["fp32"], profiles["int8"]))
    print()
    print(accuracy_table(acc, args.eval_frames))
    return setup


if __name__ == "__main__":
    sys.exit(main())
