"""``fed_export``: build the fused engine (ONNX / TensorRT / torch-tensorrt / torch bundle) for one
camera size.

Examples::

    # ONNX Runtime engine into the cache (what fed_node opens by default)
    fed_export --backbone models/tinyseg_synthroad --fed models/fed_c_synthroad \\
               --height 512 --width 1024
    # TensorRT FP16 engine (typed graph: fp16 backbone, fp32 FED) to an explicit file (minutes)
    fed_export --backbone sf_b2.pth --fed fed_c --height 1024 --width 2048 \\
               --runtime tensorrt --precision fp16 --out engines/sf_b2_fedc.engine
    # the same typed fp16 graph for ONNX Runtime (runs on CPU too)
    fed_export --backbone models/tinyseg_synthroad --fed models/fed_c_synthroad \\
               --height 512 --width 1024 --precision fp16 --out tinyseg_fp16.onnx
    # INT8: backbone quantised on calibration images (a folder, or a Cityscapes-layout root),
    # FED float32; ONNX Runtime's CPU engine, or --runtime tensorrt for TensorRT's Q/DQ scheme
    fed_export --backbone models/tinyseg_synthroad --fed models/fed_c_synthroad \\
               --height 512 --width 1024 --precision int8 --calibration-data calib/ \\
               --out tinyseg_int8.onnx
    # MSP baseline, labels from nearest-upsampled argmax, FP16 confidence
    fed_export --backbone dl_r101.pth --score msp --label-mode nearest \\
               --confidence-dtype float16 --height 1080 --width 1920 --out msp.onnx
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_export", __name__)  # first: a signal during the imports below stops it

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Optional, Sequence  # noqa: E402

from ros2_fed.detector import LABEL_MODES, SCORES  # noqa: E402
from ros2_fed.fingerprint import ALLOW_FLAG  # noqa: E402

# Runtimes whose engines are built for a GPU: FP16 is their default precision.
from .base import (  # noqa: E402
    GPU_RUNTIMES,
    PRECISIONS,
    RUNTIMES,
    SUFFIX_BY_RUNTIME,
)
from .int8 import DEFAULT_CALIBRATION_IMAGES, SCHEMES  # noqa: E402
from .metadata import check_precision  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fed_export",
        description="Export the fused segmentation + FED detector (camera pixels -> labels + "
        "confidence) "
        "as an ONNX Runtime, TensorRT or torch engine with a JSON metadata sidecar.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    _add_model_args(parser)
    _add_detector_args(parser)
    _add_engine_args(parser)
    return parser


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    """Which checkpoints (or fused bundle) the engine is built from."""
    src = parser.add_argument_group("model")
    src.add_argument(
        "--backbone",
        help="backbone checkpoint: MMSeg .pth, Hugging Face SegFormer folder, or ours "
        "(NAME[.safetensors])",
    )
    src.add_argument("--fed", help="FED checkpoint (NAME[.safetensors]); needed for --score fed")
    src.add_argument(
        "--bundle",
        help="a fused bundle (.safetensors) instead of --backbone/--fed; its detector settings "
        "are used",
    )
    src.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="build even when --fed was trained on another backbone (its fingerprint differs)",
    )


def _add_detector_args(parser: argparse.ArgumentParser) -> None:
    """What the detector graph computes: the score, its post-processing and the input size."""
    det = parser.add_argument_group("detector graph")
    det.add_argument(
        "--score",
        choices=SCORES,
        default=None,
        help="confidence source (default: fed with --fed, else required)",
    )
    det.add_argument(
        "--postprocess",
        choices=("none", "gaussian", "sml"),
        default=None,
        help="score-map post-processing (default: sml for --score sml, else none)",
    )
    det.add_argument(
        "--height", type=int, required=True, help="camera image height the engine takes"
    )
    det.add_argument(
        "--width", type=int, required=True, help="camera image width the engine takes"
    )
    det.add_argument(
        "--model-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize inside the graph to this backbone input size (default: the camera size)",
    )
    _add_resolution_and_output_args(det)


def _add_resolution_and_output_args(det: argparse._ArgumentGroup) -> None:
    """The rest of the detector graph group: FED resolution, label and confidence outputs,
    sliding-window inference."""
    det.add_argument(
        "--fed-rate",
        type=float,
        choices=(0.25, 0.5, 1.0),
        default=0.25,
        help="FED resolution relative to the model input (0.25 = native 1/4-res logits)",
    )
    det.add_argument(
        "--label-mode",
        choices=LABEL_MODES,
        default="bilinear",
        help="argmax of bilinearly upsampled logits, or nearest-upsampled 1/4-res argmax "
        "(cheaper)",
    )
    det.add_argument("--confidence-dtype", choices=("float32", "float16"), default="float32")
    det.add_argument(
        "--confidence-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="min-max map of the certainty for maxlogit/energy/sml (dataset statistics) instead "
        "of the default sigmoid",
    )
    det.add_argument(
        "--slide",
        type=int,
        nargs=4,
        metavar=("CROP_H", "CROP_W", "STRIDE_H", "STRIDE_W"),
        default=None,
        help="sliding-window backbone inference inside the graph (SegFormer: 1024 1024 768 768)",
    )


def _add_engine_args(parser: argparse.ArgumentParser) -> None:
    """How the graph is turned into an engine file: runtime, precision, batch and output."""
    out = parser.add_argument_group("engine")
    out.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime")
    out.add_argument(
        "--precision",
        default=None,
        metavar="{" + ",".join(PRECISIONS) + "}",
        help="fp16 = float16 backbone, float32 FED, typed in the graph (default for tensorrt and "
        "torch-tensorrt); fp32 = everything float32 (default otherwise); int8 = backbone "
        "quantised (Q/DQ nodes, needs --calibration-data), FED float32; onnxruntime and "
        "tensorrt only",
    )
    out.add_argument(
        "--calibration-data",
        metavar="DIR",
        help="int8: images the activation ranges are measured on, at the engine's camera size "
        "(a folder of images, or a Cityscapes-layout root: its leftImg8bit/ images)",
    )
    out.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help="int8: use at most N of the calibration images, spread evenly over the sorted list "
        "(default %(default)s)",
    )
    out.add_argument(
        "--batch",
        type=int,
        default=1,
        help="frames per run: the number of cameras of a surround-camera fed_node "
        "(cameras:=[...]). "
        "ONNX Runtime engines take any batch from 1 to N; TensorRT engines exactly N (padded)",
    )
    out.add_argument("--opset", type=int, default=18)
    out.add_argument(
        "--out",
        help="output file or folder (default: the engine cache, $ROS2_FED_CACHE, else "
        "$XDG_CACHE_HOME/ros2_fed, else ~/.cache/ros2_fed)",
    )
    out.add_argument(
        "--rebuild", action="store_true", help="ignore a cached engine and rebuild it"
    )
    out.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the check of the built engine against the float32 eager detector "
        "(done on every build, the engine cache's included)",
    )
    out.add_argument("--quiet", action="store_true")


def _detector_options(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    options: dict[str, Any] = {
        "input_size": tuple(args.model_size) if args.model_size else None,
        "fed_rate": args.fed_rate,
        "label_mode": args.label_mode,
        "confidence_dtype": torch.float16 if args.confidence_dtype == "float16" else torch.float32,
    }
    if args.confidence_range:
        options["confidence_range"] = tuple(args.confidence_range)
    if args.slide:
        options["inference"] = {
            "mode": "slide",
            "crop_size": args.slide[:2],
            "stride": args.slide[2:],
        }
    if (
        args.allow_backbone_mismatch
    ):  # only when given: cache keys of ordinary builds stay as they were
        options["allow_backbone_mismatch"] = True
    return options


def _output_path(out: str, runtime: str) -> Path:
    path = Path(out)
    suffix = SUFFIX_BY_RUNTIME[runtime]
    if path.is_dir() or not path.suffix:
        return path / f"model{suffix}"
    if runtime == "tensorrt" and path.suffix in (".engine", ".plan"):
        return path
    if path.suffix != suffix:
        raise ValueError(f"--out {out}: a {runtime} engine file ends in {suffix}")
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    precision, score = _checked_precision_and_score(parser, args)

    from ros2_fed.backbones import BackboneError
    from ros2_fed.checkpoint import CheckpointError

    from .base import EngineError

    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        if args.bundle:
            path, meta = _export_bundle(args, precision, say)
        elif args.out:
            path, meta = _export_checkpoints(args, precision, score, say)
        else:
            path, meta = _build_or_reuse_cached(args, precision, score, say)
    except (
        EngineError,
        CheckpointError,
        BackboneError,
        ValueError,
        FileNotFoundError,
        RuntimeError,
    ) as exc:
        if isinstance(exc, OSError) and _names_the_output(exc, args):  # e.g. --out /proc/x.onnx
            print(write_error_line(exc, args), file=sys.stderr)
        else:
            print(f"fed_export: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, file-size limit, read-only folder: nothing was installed
        print(write_error_line(exc, args), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fed_export: stopped; {kept_after_stop(args)}", file=sys.stderr, flush=True)
        return stopping.interrupted_exit_code()
    finally:
        stopping.stopping()
    _say_engine(say, path, meta)
    _check_alert_classes(meta)
    return 0


def _check_alert_classes(meta: dict[str, Any]) -> None:
    """fed_node would refuse this engine with its default alert classes: one line now, naming
    every class it would not find (the node says the same at start)."""
    from ros2_fed.pipeline.params import class_name_problem

    problem = class_name_problem({}, meta.get("class_names"))
    if problem:
        print(
            f"fed_export: warning: fed_node's default alert classes are {problem}",
            file=sys.stderr,
        )


def kept_after_stop(args: argparse.Namespace) -> str:
    """What a stopped export leaves: the engine files are written under temporary names and
    renamed, so nothing half-built is installed and an earlier engine stays as it was."""
    if args.out:
        target = _output_path(args.out, args.runtime)
        return f"nothing was written to {target} (an earlier file there is as it was)"
    from ros2_fed.paths import engine_cache_dir

    cache = engine_cache_dir()
    return f"nothing was added to the engine cache {cache} (its engines are as they were)"


def _names_the_output(exc: OSError, args: argparse.Namespace) -> bool:
    """Whether ``exc`` is about a file the export writes (its temporary name included), not
    about an input such as a missing checkpoint."""
    if not exc.filename:
        return False
    if args.out:
        target = _output_path(args.out, args.runtime)
    else:
        from ros2_fed.paths import engine_cache_dir

        target = engine_cache_dir() / "engine"
    name = Path(exc.filename)
    return name.parent == target.parent or target.parent in name.parents


def write_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line naming the file and the OS's reason (the engine files are written to temporary
    names and renamed, so a failed write leaves earlier files as they were)."""
    reason = exc.strerror or str(exc)
    name = Path(exc.filename) if exc.filename else None
    if args.out:
        target = _output_path(args.out, args.runtime)
        where = str(target)
    else:
        from ros2_fed.paths import engine_cache_dir

        target = engine_cache_dir()
        where = f"the engine cache {target} (ROS2_FED_CACHE or --out choose another folder)"
    ours = name is None or name.parent == target.parent or name in target.parents
    if ours or target in name.parents:
        return f"fed_export: error: cannot write {where}: {reason}"
    return f"fed_export: error: {name}: {reason}"


def _checked_precision_and_score(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, Optional[str]]:
    """Refuse inconsistent flags before anything heavy is imported; resolve the defaults."""
    precision = args.precision or ("fp16" if args.runtime in GPU_RUNTIMES else "fp32")
    try:
        check_precision(precision)
    except ValueError as exc:
        parser.error(str(exc))
    if bool(args.bundle) == bool(args.backbone):
        parser.error("give either --backbone (with --fed for FED) or --bundle")
    if args.bundle and not args.out:
        parser.error("--bundle needs --out")
    if args.height <= 0 or args.width <= 0 or args.batch <= 0:
        parser.error("--height, --width and --batch must be positive")
    score = args.score or ("fed" if args.fed else None)
    if args.backbone and score is None:
        parser.error(
            "no --fed checkpoint: pass --score msp|maxlogit|energy|entropy|sml|none for a baseline"
        )
    if score == "fed" and args.backbone and not args.fed:
        parser.error("--score fed needs --fed")
    _check_int8_flags(parser, args, precision)
    return precision, score


def _check_int8_flags(
    parser: argparse.ArgumentParser, args: argparse.Namespace, precision: str
) -> None:
    """int8 needs calibration images and a runtime with a Q/DQ path; nothing else takes them."""
    if precision != "int8":
        if args.calibration_data:
            parser.error("--calibration-data is for --precision int8")
        return
    if args.runtime not in SCHEMES:
        parser.error(f"--precision int8 is built for --runtime {' or '.join(sorted(SCHEMES))}")
    if not args.calibration_data:
        parser.error(
            "--precision int8 needs --calibration-data DIR (a folder of images, or a "
            "Cityscapes-layout root)"
        )
    if args.calibration_images < 1:
        parser.error("--calibration-images must be >= 1")


def _export_bundle(args: argparse.Namespace, precision: str, say: Callable[[str], None]):
    """--bundle: the fused bundle's detector settings are used as they are."""
    from .torch_engine import load_bundle

    detector, _ = load_bundle(args.bundle)
    return _export_to_out(args, detector, precision, say)


def _export_checkpoints(
    args: argparse.Namespace, precision: str, score: Optional[str], say: Callable[[str], None]
):
    """--backbone/--fed with --out: built to the given file, outside the engine cache."""
    from ros2_fed.detector import FusedDetector

    from .cache import _jsonable, source_model_hash

    options = _detector_options(args)
    options.update(score=score, postprocess=args.postprocess)
    detector = FusedDetector.from_checkpoints(args.backbone, args.fed, **options)
    model_hash = source_model_hash(args.backbone, args.fed, _jsonable(options))
    return _export_to_out(args, detector, precision, say, model_hash=model_hash)


def _export_to_out(
    args: argparse.Namespace,
    detector: Any,
    precision: str,
    say: Callable[[str], None],
    model_hash: Optional[str] = None,
):
    """Build ``detector`` into the --out file with the shared export flags (size, runtime,
    precision, batch, opset, verification)."""
    from .export import export_engine

    return export_engine(
        detector,
        _output_path(args.out, args.runtime),
        args.height,
        args.width,
        runtime=args.runtime,
        precision=precision,
        batch=args.batch,
        opset=args.opset,
        model_hash=model_hash,
        verify=not args.no_verify,
        progress=say,
        calibration=_calibration(args),
    )


def _calibration(args: argparse.Namespace) -> Any:
    """The int8 calibration set the flags name (None without --calibration-data)."""
    from .int8 import calibration_set

    if not args.calibration_data:
        return None
    return calibration_set(args.calibration_data, args.calibration_images)


def _build_or_reuse_cached(
    args: argparse.Namespace, precision: str, score: Optional[str], say: Callable[[str], None]
):
    """No --out: the engine cache, the same entry fed_node would open."""
    from .cache import open_cached

    engine = open_cached(
        args.backbone,
        args.fed,
        height=args.height,
        width=args.width,
        runtime=args.runtime,
        precision=precision,
        batch=args.batch,
        score=score,
        postprocess=args.postprocess,
        detector_options=_detector_options(args),
        rebuild=args.rebuild,
        opset=args.opset,
        warmup=0,
        progress=say,
        verify=not args.no_verify,
        override="--no-verify",
        calibration=_calibration(args),
    )
    path, meta = engine.path, engine.metadata
    say("cache hit: reused the cached engine" if engine.cache_hit else "built and cached")
    engine.close()
    return path, meta


def _say_engine(say: Callable[[str], None], path, meta: dict[str, Any]) -> None:
    """The one-line summary of what was built (or reused)."""
    say(f"engine: {path}")
    say(
        f"  runtime {meta['runtime']} {meta['runtime_version']}, precision {meta['precision']}, "
        f"input {'x'.join(map(str, meta['input_tensor_shape']))} uint8 RGB, score "
        f"{meta['score']}, "
        f"model hash {str(meta['model_hash'])[:12]}"
    )
    if "int8" in meta:
        int8 = meta["int8"]
        calibration = int8["calibration"]
        say(
            f"  int8 ({int8['scheme']} scheme): quantised {int8['quantized_ops']} in the "
            f"backbone, FED float32; calibrated on {calibration['images']} images of "
            f"{calibration['root']} (fingerprint {calibration['fingerprint'][:12]})"
        )


if __name__ == "__main__":
    sys.exit(main())
