"""`fed_bag_eval`: replay a rosbag2 through FED and score it -- output bag + report.

Examples::

    # the embedded default model, live through a real fed_node at the recorded rate
    fed_bag_eval runs/demo/synthroad_drive --live --out runs/demo/report

    # as fast as possible, in-process, with your checkpoints; ground truth on a custom topic
    fed_bag_eval drive.mcap --offline --backbone ckpt/segformer_b2 --fed ckpt/fed_u \\
        --topic /cam/front/image/compressed --gt-topic /cam/front/labels --out runs/drive_eval

Input: a rosbag2 (MCAP or sqlite3; the directory, or a bare .mcap/.db3 file). Camera topic:
sensor_msgs/Image or CompressedImage (``--topic``; default: what a synthroad bag names, else the
bag's only image topic). Ground truth (optional, sensor_msgs/Image mono8, matched to the camera by
header stamp): ``--gt-topic`` Cityscapes trainIds (255 = void), ``--ood-topic`` an OOD mask
(0 in-distribution / 1 OOD / 255 void).

Modes: ``--offline`` (default) opens the engine fed_node would open and runs it over every frame
in this process, as fast as possible. ``--live`` starts fed_node (its own ROS_DOMAIN_ID,
localhost discovery, large-data transport, the node's own QoS unless ``--reliable``),
publishes the camera messages at the recorded rate times ``--rate`` and records what the node
publishes; frames the node skips (it always works on
the newest frame) are counted as dropped -- at ``--rate 1`` with a node that keeps up, none.

Output (``--out DIR``): ``output_bag/`` (same storage as the input: the camera and ground-truth
messages as recorded plus the node's outputs under ``/fed_node/...``: segmentation,
segmentation_color, confidence, overlay, alerts) for rviz / Foxglove; ``report.md``,
``report.json`` (``"complete": true`` only when everything finished), ``mosaic_worst.png`` /
``mosaic_best.png`` (input | segmentation | confidence | ground truth) and ``alerts.png``.
Metrics: OOD and IDM AuROC / AP / FPR95 and mIoU computed exactly as ``fed_eval`` does, for the
node's confidence (score = 1 - confidence) and, when the model is given by checkpoints, for the
reference methods on the same frames (FED in torch, MSP, max-logit, energy, entropy, SML, MC
dropout); alert timeline; latency p50/p95/p99; throughput; dropped frames.

Exit codes: 0 done, 2 unusable input (bag, topics, arguments), 1 the run failed.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_bag_eval", __name__)  # first: a signal during the imports stops it

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

from ros2_fed.engine.verify import NO_VERIFY_FLAG, VERIFY_ENV  # noqa: E402
from ros2_fed.fingerprint import ALLOW_FLAG  # noqa: E402
from ros2_fed.pipeline.model_spec import DEFAULT_FED  # noqa: E402
from ros2_fed.pipeline.outputs import OUTPUT_NAMES  # noqa: E402
from ros2_fed.pipeline.params import (  # noqa: E402
    PARAMETER_NAMES,
    RUNTIME_CHOICES,
    SCORE_CHOICES,
    given_value_problems,
    unknown_parameters,
)
from ros2_fed.ros_args import params_file_problem  # noqa: E402

# rclpy declares these on every node: a parameter file for the node may set them
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_bag_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_and_mode_args(p)
    _add_topic_args(p)
    _add_model_args(p)
    _add_live_args(p)
    _add_reference_args(p)
    _add_output_args(p)
    return p


def _add_input_and_mode_args(p: argparse.ArgumentParser) -> None:
    """The bag, the output folder and offline / live: what every run needs."""
    p.add_argument("bag", type=Path, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--out", required=True, type=Path, help="output folder (report + output_bag/)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        dest="mode",
        action="store_const",
        const="offline",
        help="run the engine in-process over every frame, as fast as possible (default)",
    )
    mode.add_argument(
        "--live",
        dest="mode",
        action="store_const",
        const="live",
        help="play the bag through a running fed_node over ROS 2 topics and record its outputs",
    )
    p.set_defaults(mode="offline")


def _add_topic_args(p: argparse.ArgumentParser) -> None:
    """Which camera and ground-truth topics of the bag are read."""
    g = p.add_argument_group("topics")
    g.add_argument(
        "--topic", default=None, help="camera topic (sensor_msgs/Image or CompressedImage)"
    )
    g.add_argument(
        "--gt-topic", default=None, help="ground truth: mono8 Cityscapes trainIds (255 = void)"
    )
    g.add_argument("--ood-topic", default=None, help="ground truth: mono8 OOD mask 0 / 1 / 255")
    g.add_argument(
        "--no-gt", action="store_true", help="ignore ground truth (no detection metrics)"
    )
    g.add_argument("--limit", type=int, default=None, help="only the first N camera frames")
    g.add_argument(
        "--cameras",
        default=None,
        metavar="NAME,NAME",
        help="several cameras (default: those a fed_synthroad_bag --cameras bag "
        "lists): each evaluated into OUT/NAME/ as a complete report, plus "
        "OUT/report.md with per-camera and pooled metrics "
        "(ros2_fed/eval/replay/multicamera.py); offline only: live replay is "
        "single-camera, --live with two or more cameras is refused",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """The model, mirroring what fed_node is started with."""
    g = p.add_argument_group(
        "model (what fed_node is started with; default: the embedded default model)"
    )
    g.add_argument(
        "--engine",
        default="",
        help="engine file (fed_export: .onnx / .engine / fused .safetensors)",
    )
    g.add_argument(
        "--backbone", default="", help="backbone checkpoint (empty = the default model)"
    )
    g.add_argument(
        "--fed",
        default="",
        help=f"FED checkpoint (empty with --backbone empty = the default model's, "
        f"models/{DEFAULT_FED})",
    )
    g.add_argument(
        "--size",
        type=_size,
        default=None,
        help="engine input HxW (default: the camera frame size)",
    )
    g.add_argument("--runtime", default="", choices=RUNTIME_CHOICES)
    g.add_argument("--score", default="", choices=SCORE_CHOICES)
    g.add_argument(
        "--threads", type=int, default=0, help="runtime CPU threads (0 = runtime default)"
    )
    g.add_argument("--device", default="", help="runtime device (cpu, cuda, cuda:1)")
    g.add_argument(
        NO_VERIFY_FLAG,
        action="store_true",
        help="build the node's engine (on a cache miss) without checking it against "
        f"the float32 eager detector ({VERIFY_ENV}=0 for this run and the node)",
    )
    g.add_argument(
        "--params-file", default=None, help="fed_node parameter YAML (e.g. config/fed.yaml)"
    )
    g.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="a fed_node parameter, e.g. -p alerts.confidence_threshold:=0.6 (repeatable)",
    )


def _add_live_args(p: argparse.ArgumentParser) -> None:
    """Options that only matter when the bag is played through a running fed_node."""
    g = p.add_argument_group("live mode")
    g.add_argument(
        "--rate", type=float, default=1.0, help="playback speed x recorded rate (default 1)"
    )
    g.add_argument(
        "--reliable",
        action="store_true",
        help="start the node with reliable QoS, keep last 10, for input and outputs (default: "
        "the node's own QoS, as shipped best-effort input of depth 1: frames lost on the way "
        "count as dropped, as on the vehicle); the report's live.qos says which",
    )
    g.add_argument(
        "--node-command",
        default=None,
        help="command that starts the node instead of 'python -m ros2_fed.node' (ROS args are "
        "appended)",
    )
    g.add_argument(
        "--attach",
        default=None,
        metavar="NODE",
        help="use an already running fed_node (fully qualified name, e.g. /fed_node) instead of "
        "starting one",
    )
    g.add_argument(
        "--input-topic",
        default=None,
        help="with --attach: the node's input topic (default <ns>/image)",
    )
    g.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for the started node (default: random)",
    )
    g.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the node to be ready",
    )


def _add_reference_args(p: argparse.ArgumentParser) -> None:
    """The fed_eval reference rows computed on the same frames."""
    g = p.add_argument_group("reference methods (fed_eval on the same frames)")
    g.add_argument("--no-reference", action="store_true", help="only the node's own scores")
    g.add_argument(
        "--reference-fed",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="FED checkpoints for reference rows (default: the model's FED)",
    )
    g.add_argument(
        "--reference-postprocess",
        default=None,
        choices=("none", "gaussian", "sml"),
        help="FED post-processing of the reference rows (default: the engine's)",
    )
    g.add_argument(
        "--mcd-passes", type=int, default=8, help="MC-dropout passes (0 disables the MCD row)"
    )
    g.add_argument(
        "--stats",
        default=None,
        help="logit statistics JSON for SML (default: from the FED checkpoint)",
    )
    g.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="use reference FEDs, --stats or an --engine made for another backbone than "
        "--backbone "
        "(a warning instead of an error)",
    )
    g.add_argument(
        "--reference-threads",
        type=int,
        default=1,
        help="torch threads for the reference rows (default 1: several OpenMP threads on a busy "
        "machine are many times slower; 0 = torch's default)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """What is written to the output bag and the report folder."""
    g = p.add_argument_group("output")
    g.add_argument(
        "--record",
        default=",".join(OUTPUT_NAMES),
        help=f"node outputs written to the output bag (default all: {','.join(OUTPUT_NAMES)})",
    )
    g.add_argument(
        "--output-prefix",
        default="/fed_node",
        help="topic prefix of the outputs in the output bag",
    )
    g.add_argument(
        "--no-copy-input",
        action="store_true",
        help="do not copy camera + ground truth into the output bag",
    )
    g.add_argument(
        "--mosaic-frames", type=int, default=3, help="frames in each of the worst / best mosaics"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the report and output bag of an earlier run",
    )
    g.add_argument(
        "--clips",
        type=Path,
        default=None,
        metavar="DIR",
        help="cut the clips the node would record (record.* parameters) from this drive into DIR "
        "(MCAP files + index.jsonl; the same as -p record.enabled:=true -p record.dir:=DIR)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars, fewer messages")


def node_parameter_problems(params_file: Optional[str], overrides: list[str]) -> list[str]:
    """Why ``--params-file`` / ``-p`` would not start fed_node as meant, checked against the
    node's parameter table before any engine or worker starts: a name the node does not declare
    (with its "did you mean"; the node itself would only warn, but an evaluation of a
    misspelled setting measures another one) or a value it refuses. Each names its source."""
    from ros2_fed.eval.replay.model import parse_param, read_params_file

    sources: list[tuple[str, dict[str, Any]]] = []
    if params_file:
        problem = params_file_problem(params_file)
        if problem:
            return [problem]
        try:
            sources.append((f"--params-file {params_file}", read_params_file(params_file)))
        except ValueError as exc:
            return [str(exc)]
    for text in overrides:
        try:
            sources.append((f"-p {text}", dict([parse_param(text)])))
        except ValueError as exc:
            return [f"-p {text}: {exc}"]
    declared = [*PARAMETER_NAMES, *ROS_PARAMETERS]
    problems = []
    for source, given in sources:
        found = unknown_parameters(given, declared) + given_value_problems(given)
        problems += [f"{source}: {text}" for text in found]
    return problems


def usage_problem(args: argparse.Namespace) -> Optional[str]:
    """The first reason the arguments cannot make a run, found before anything is loaded or
    written (exit code 2, nothing in OUT); None when they can."""
    bag = getattr(args, "bag", None)
    if bag is not None and not Path(bag).exists():
        return f"{bag}: bag not found"
    problems = node_parameter_problems(args.params_file, args.param)
    return "; ".join(problems) if problems else None


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    problem = usage_problem(args)
    if problem:
        print(f"fed_bag_eval: error: {problem}", file=sys.stderr)
        return 2
    from ros2_fed.eval.replay import multicamera  # the heavy imports (torch) after the check
    from ros2_fed.eval.replay import report as rep
    from ros2_fed.eval.replay.evaluation import evaluate, report_failure

    if multicamera.wanted(args):  # several cameras: a report each + a pooled one
        return multicamera.main(args)

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"fed_bag_eval: {msg}", file=sys.stderr, flush=True)

    partial: dict[str, Any] = {
        "tool": "fed_bag_eval",
        "mode": args.mode,
        "bag": {"path": str(args.bag)},
    }
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        md, report = evaluate(args, partial, log)
    except BaseException as exc:
        return stopping.leave_if_stopped(report_failure(exc, Path(args.out), partial))
    finally:
        stopping.stopping()
    print(rep.metrics_table(report))
    for line in rep.console_summary(report):
        print(line)
    print(f"fed_bag_eval: report {md} (complete), output bag {report['files']['output_bag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
