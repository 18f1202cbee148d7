"""``fed_convert``: turn a user's backbone checkpoint into our ``NAME.safetensors`` +
``NAME.json``.

Converting once means the vehicle never unpickles a ``.pth`` nor needs ``transformers``; the
JSON carries everything the runtime needs (architecture, class names, palette, mean/std, input
size, inference mode, provenance). The converted model is loaded back and compared with the
source on a random image before the command reports success.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from ros2_fed import stopping

stopping.install_for("fed_convert", __name__)  # first: a signal during the imports stops it

import torch  # noqa: E402

from .base import BackboneError  # noqa: E402
from .loader import (  # noqa: E402
    default_inference,
    detect_format,
    load_backbone,
    model_from_source,
    read_source,
    save_backbone,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fed_convert",
        description="Convert a segmentation backbone checkpoint (MMSegmentation 0.x .pth, Hugging "
        "Face SegFormer "
        "folder, or ros2_fed safetensors+JSON) to the ros2_fed format DST.safetensors + DST.json. "
        "No network access; nothing is downloaded.",
    )
    parser.add_argument(
        "src", help="MMSeg .pth file, HF folder (config.json + model.safetensors) or ros2_fed stem"
    )
    parser.add_argument("dst", help="output stem (DST.safetensors and DST.json are written)")
    parser.add_argument(
        "--class-names",
        help="JSON file with a list of class names (default: from the source, "
        "else Cityscapes for 19 classes)",
    )
    parser.add_argument(
        "--palette", help="JSON file with a list of [r, g, b] colours, one per class"
    )
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="typical input image size recorded in the JSON (default 1024 2048)",
    )
    parser.add_argument(
        "--mode",
        choices=("whole", "slide"),
        help="inference mode (default: slide for SegFormer, whole for DeepLabV3+)",
    )
    parser.add_argument(
        "--crop-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="sliding-window crop (default 1024 1024)",
    )
    parser.add_argument(
        "--stride",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="sliding-window stride (default 768 768)",
    )
    parser.add_argument(
        "--name", help="model name recorded in the JSON (default: derived from the architecture)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the reload-and-compare check"
    )
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    return parser


def _read_json_list(path: str, what: str) -> list:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(value, list):
        raise BackboneError(f"{path}: {what} must be a JSON list")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    dst = Path(args.dst)
    dst = dst.with_suffix("") if dst.suffix in (".safetensors", ".json") else dst
    outputs = [dst.with_name(dst.name + ext) for ext in (".safetensors", ".json")]
    existed = {p for p in outputs if p.exists()}
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        if not args.force and existed:
            raise BackboneError(f"{dst}: output exists (use --force to overwrite)")
        fmt = detect_format(args.src)
        src = read_source(args.src)
        model = model_from_source(src)
        meta = _output_metadata(args, model)
        tensor_path, json_path = save_backbone(model, dst, **meta)
        if not args.no_check:
            _check_reload(model, dst)
    except BackboneError as exc:
        print(f"fed_convert: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        for path in set(outputs) - existed:  # a half-written new checkpoint is no checkpoint
            path.unlink(missing_ok=True)
        print(
            f"fed_convert: stopped; no checkpoint written at {dst} (files that were there "
            "before are left as they are): the same command converts again",
            file=sys.stderr,
            flush=True,
        )
        return stopping.interrupted_exit_code()
    finally:
        stopping.stopping()
    print(
        f"{fmt} -> ros2_fed: {model.meta.get('name', model.arch)} ({model.num_classes} classes, "
        f"features {model.feature_channels} ch) written to {tensor_path} + {json_path.name}"
    )
    warning = generic_names_warning(json.loads(json_path.read_text()).get("class_names"))
    if warning:
        print(f"fed_convert: warning: {warning}", file=sys.stderr)
    return 0


def generic_names_warning(class_names: Optional[Sequence[str]]) -> str:
    """A checkpoint whose classes are only numbered (label_0, ...) gets past conversion and
    export, and then fed_node refuses its alert classes: say so now, and how to set them."""
    from ros2_fed.pipeline.params import CLASS_PARAMETERS, GENERIC_CLASS_NAME, with_defaults

    names = [str(n) for n in class_names or []]
    if not names or not all(n.lower().startswith(GENERIC_CLASS_NAME) for n in names):
        return ""
    defaults = with_defaults({})
    refused = "; ".join(f"{key} {defaults[key]!r}" for key in CLASS_PARAMETERS)
    return (
        f"the checkpoint's {len(names)} classes have generic names ({names[0]} ... {names[-1]}), "
        f"so fed_node will not find its default alert classes ({refused}): convert again with "
        "--class-names names.json (a JSON list, one name per class), or set the alert classes "
        "by id, e.g. -p alerts.drivable_classes:=0 -p alerts.ignore_classes:=1"
    )


def _output_metadata(args: argparse.Namespace, model: Any) -> dict:
    """The sidecar fields the flags set: class names, palette, input size, name, inference."""
    meta: dict = {}
    if args.class_names:
        meta["class_names"] = [str(c) for c in _read_json_list(args.class_names, "class names")]
    if args.palette:
        meta["palette"] = [[int(v) for v in c] for c in _read_json_list(args.palette, "palette")]
    for key in ("class_names", "palette"):
        if key in meta and len(meta[key]) != model.num_classes:
            raise BackboneError(
                f"{len(meta[key])} {key} given for a {model.num_classes}-class model"
            )
    if args.input_size:
        meta["input_size"] = list(args.input_size)
    if args.name:
        meta["name"] = args.name
    inference = dict(model.meta.get("inference") or default_inference(model.arch))
    if args.mode:
        inference = {"mode": args.mode}
    if inference["mode"] == "slide":
        inference["crop_size"] = list(args.crop_size or inference.get("crop_size", [1024, 1024]))
        inference["stride"] = list(args.stride or inference.get("stride", [768, 768]))
    meta["inference"] = inference
    return meta


def _check_reload(model: Any, dst: Path) -> None:
    """The written files load back into a model that gives the source's logits."""
    reloaded = load_backbone(dst)
    image = torch.randint(
        0,
        256,
        (1, 3, 64, 96),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.inference_mode():
        ref, _ = model(image)
        got, _ = reloaded(image)
    diff = float((ref - got).abs().max())
    if not diff <= 1e-5:  # also catches NaN
        raise BackboneError(
            f"{dst}: reloaded model differs from the source (max |diff| {diff:.3g})"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
