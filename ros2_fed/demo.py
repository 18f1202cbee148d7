"""`make demo`: the main job end to end on the embedded default model, in a few minutes on 2 CPU
cores.

1. renders a short synthroad drive (60 frames, 256x512, 10 fps; OOD objects appear on the road
   from frame 20 on) into an MCAP rosbag2 with ground-truth topics (``fed_synthroad_bag``);
2. starts the real ``fed_node`` with the shipped default model (TinySeg + FED-C from models/;
   the first start exports and caches the ONNX engine), plays the bag into it over ROS 2 at the
   recorded rate and records everything it publishes (``fed_bag_eval --live``);
3. prints where the report is, and its metrics table.

Everything lands in ``runs/demo/`` (``--out``): ``synthroad_drive/`` (the input bag) and
``report/`` (report.md, report.json, mosaic_worst.png / mosaic_best.png, alerts.png,
overlay.png: camera | overlay at three frames with a colour bar, summary.md / summary.json: the
run's figures and the machine, output_bag/ for Foxglove or ``ros2 bag play``, node.log).
Re-running replaces them.
``--offline`` runs the engine in-process instead of through the node (no ROS 2 graph).
``--docs docs`` (``make demo-docs``) also writes the figures into the documentation:
docs/demo.md, docs/demo_results.json and docs/demo_{alerts,overlay,mosaic_worst}.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ros2_fed.paths import default_models_dir
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ros2_fed.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)"
    )
    p.add_argument("--frames", type=int, default=60)
    p.add_argument(
        "--size", default="256x512", help="frame size HxW (the default model's input size)"
    )
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=1.0, help="playback speed x recorded rate")
    p.add_argument(
        "--offline", action="store_true", help="engine in-process instead of the live fed_node"
    )
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder with tinyseg_synthroad / fed_u_synthroad / fed_c_synthroad checkpoints "
        "(default: the "
        "embedded default model, which the node then finds by itself)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="also write the run's figures page, JSON and pictures into this docs folder",
    )
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    models = args.models or default_models_dir()
    missing = _missing_default_model(models)
    if missing:
        print(
            "ros2_fed demo: the embedded default model is missing (" + ", ".join(missing) + "); "
            "`make default-model` rebuilds it.",
            file=sys.stderr,
        )
        return 1
    out = args.out
    bag = out / "synthroad_drive"
    report_dir = out / "report"
    out.mkdir(parents=True, exist_ok=True)
    if bag.exists():
        shutil.rmtree(bag)

    def step(text: str) -> None:
        print(f"\n== ros2_fed demo: {text} ({time.monotonic() - start:.0f} s)", flush=True)

    step(f"rendering a {args.frames}-frame {args.size} synthroad drive into {bag}")
    if not _render_bag(args, bag):
        print("ros2_fed demo: writing the bag failed", file=sys.stderr)
        return 1
    timings = {"render": time.monotonic() - start}
    code = _evaluate_bag(args, models, bag, report_dir, step)
    if code != 0:
        print(
            f"ros2_fed demo: fed_bag_eval failed (exit code {code}); see "
            f"{report_dir / 'report.json'}",
            file=sys.stderr,
        )
        return code
    timings["evaluate"] = time.monotonic() - start - timings["render"]
    _write_figures(args, models, report_dir, timings, start)
    step("done")
    _print_outputs(report_dir, start)
    return 0


def _write_figures(
    args: argparse.Namespace,
    models: Path,
    report_dir: Path,
    timings: dict[str, float],
    start: float,
) -> None:
    """Step 3: the overlay picture, the run's summary (and, with --docs, the docs' copies)."""
    from ros2_fed import demo_results
    from ros2_fed.eval.replay.report import metrics_table

    report = json.loads((report_dir / "report.json").read_text())
    vmin, vmax, threshold = colour_scale(models, report)
    overlay_strip(
        report_dir / "output_bag",
        report_dir / "overlay.png",
        [round(args.frames * f) for f in (0.25, 0.58, 0.92)],
        scale=(vmin, vmax, threshold),
    )
    timings["total"] = time.monotonic() - start
    summary = demo_results.summarize(report, timings)
    table = metrics_table(report)
    demo_results.write_summary(report_dir, summary, table)
    if args.docs is not None:
        for path in demo_results.publish(report_dir, args.docs, summary, table):
            print(f"docs:       {path}")


def colour_scale(models: Path, report: dict[str, Any]) -> tuple[float, float, float]:
    """The overlay's colour range and the alert threshold the run used: its parameters over
    the default FED's calibration (what fed_node resolves the same way)."""
    from ros2_fed.pipeline import resolve_from_model

    fed_json = models / f"{DEFAULT_FED}.json"
    calibration = (
        json.loads(fed_json.read_text()).get("calibration") if fed_json.is_file() else None
    )
    merged = resolve_from_model(report.get("params") or {}, calibration)
    return (
        float(merged["viz.confidence_min"]),
        float(merged["viz.confidence_max"]),
        float(merged["alerts.confidence_threshold"]),
    )


def _missing_default_model(models: Path) -> list[str]:
    """The default model's files that are not there (the demo needs both checkpoints)."""
    return [
        str(models / f"{name}{suffix}")
        for name in (DEFAULT_BACKBONE, DEFAULT_FED)
        for suffix in (".safetensors", ".json")
        if not (models / f"{name}{suffix}").is_file()
    ]


def _render_bag(args: argparse.Namespace, bag: Path) -> bool:
    """Step 1: the synthroad drive, written by fed_synthroad_bag in a child process."""
    cmd = [
        sys.executable,
        "-m",
        "training.synthroad_bag",
        "--out",
        str(bag),
        "--frames",
        str(args.frames),
        "--size",
        args.size,
        "--fps",
        str(args.fps),
        "--seed",
        str(args.seed),
    ] + (["--quiet"] if args.quiet else [])
    return subprocess.run(cmd).returncode == 0


def _evaluate_bag(
    args: argparse.Namespace,
    models: Path,
    bag: Path,
    report_dir: Path,
    step: Callable[[str], None],
) -> int:
    """Step 2: fed_bag_eval over the bag (live through fed_node, or --offline); its exit code."""
    from ros2_fed.eval.replay import cli as bag_eval

    mode = "--offline" if args.offline else "--live"
    step(
        (
            "running the default model over the bag in-process"
            if args.offline
            else "starting fed_node with the default model and playing the bag into it live"
        )
    )
    extra = ["--quiet"] if args.quiet else []
    extra += _model_args(args, models)
    return bag_eval.main(
        [str(bag), mode, "--out", str(report_dir), "--overwrite", "--rate", str(args.rate)] + extra
    )


def _model_args(args: argparse.Namespace, models: Path) -> list[str]:
    """fed_bag_eval's model and reference-row flags for the demo's checkpoints."""
    extra: list[str] = []
    if (
        args.models is not None
    ):  # else fed_node opens the embedded default model on its own (empty model.*)
        extra += ["--backbone", str(models / DEFAULT_BACKBONE), "--fed", str(models / DEFAULT_FED)]
    # Reference rows: both shipped FEDs (the node runs DEFAULT_FED) next to the baselines.
    feds = {"FED-U": models / "fed_u_synthroad", "FED-C": models / "fed_c_synthroad"}
    if all(p.with_suffix(".json").is_file() for p in feds.values()):
        for name, path in feds.items():
            extra += ["--reference-fed", f"{name}={path}"]
    stats = sorted(
        models.glob("*logit_stat*.json")
    )  # per-class logit statistics: the SML baseline row
    if stats:
        extra += ["--stats", str(stats[0])]
    return extra


def _print_outputs(report_dir: Path, start: float) -> None:
    """Step 3: where the report, mosaics, overlay and output bag are."""
    md = report_dir / "report.md"
    print(f"report:     {md.resolve()}")
    print(
        f"mosaics:    {(report_dir / 'mosaic_worst.png').resolve()}, "
        f"{(report_dir / 'mosaic_best.png').resolve()}"
    )
    print(f"overlay:    {(report_dir / 'overlay.png').resolve()}")
    print(
        f"output bag: {(report_dir / 'output_bag').resolve()} (Foxglove Studio, or `ros2 bag "
        "play`)"
    )
    print(f"total:      {time.monotonic() - start:.0f} s")


def overlay_strip(
    output_bag: Path,
    out: Path,
    frames: list[int],
    camera: str = "/camera/image_raw",
    overlay: str = "/fed_node/overlay",
    scale: tuple[float, float, Optional[float]] = (0.0, 1.0, None),
) -> None:
    """Camera | overlay side by side for the given frame indices, one row each, with frame
    numbers, a caption and a colour bar for ``scale`` = (vmin, vmax, alert threshold) (the
    picture the README shows: red = uncertain, blue = certain)."""
    import cv2
    import numpy as np
    from rosbags.highlevel import AnyReader

    from ros2_fed import codec
    from ros2_fed.figures import overlay_figure

    images: dict[str, list[np.ndarray]] = {camera: [], overlay: []}
    with AnyReader([output_bag]) as reader:
        wanted = [c for c in reader.connections if c.topic in images]
        for connection, _, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, connection.msgtype)
            images[connection.topic].append(codec.decode_rgb8(msg).image)
    pairs = list(zip(images[camera], images[overlay]))
    rows = [(i, *pairs[i]) for i in frames if i < len(pairs)]
    if rows:
        figure = overlay_figure(rows, *scale)
        cv2.imwrite(str(out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    sys.exit(main())
