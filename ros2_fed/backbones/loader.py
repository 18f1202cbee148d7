"""One loader for every backbone checkpoint a user may bring, and the writer of our own format.

Recognised inputs (``detect_format``):

- ``"mmseg"``: an MMSegmentation 0.x ``.pth``/``.pt``/``.ckpt`` file, read with
  ``torch.load(weights_only=True)`` (no pickled code runs); ``state_dict`` is used,
  ``auxiliary_head.*`` and ``meta`` are not (``meta['CLASSES'/'PALETTE']`` fill class names
  and colours when present).
- ``"hf"``: a Hugging Face SegFormer folder (``config.json`` + ``model.safetensors``, or an older
  ``pytorch_model.bin`` read with ``weights_only=True``; optional ``preprocessor_config.json``
  for mean/std).
- ``"ros2_fed"``: ours, ``NAME.safetensors`` + ``NAME.json`` (``kind: "backbone"``), written by
  :func:`save_backbone` / ``fed_convert`` (and by ``tinyseg.save_tinyseg`` for the embedded
  model). The JSON holds ``arch`` and ``arch_config`` (architecture id and hyper-parameters),
  class names, palette, mean/std, input size, inference mode and provenance.

Every path ends in a strict load: a missing, unexpected or mis-shaped tensor raises
:class:`BackboneError` naming the key and the file.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ros2_fed.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)

from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneError,
    SegmentationBackbone,
    default_class_names,
    default_palette,
    load_strict,
)
from .convert import (
    IGNORED_MMSEG_PREFIXES,
    hf_class_names,
    hf_config_to_ours,
    hf_to_ours,
    infer_mmseg_config,
    mmseg_state_dict,
)
from .deeplabv3plus import DeepLabV3Plus
from .segformer import SegFormer

PathLike = Union[str, Path]


def _build_tinyseg(config: dict[str, Any]) -> nn.Module:
    from .tinyseg import TinySeg, TinySegConfig  # the embedded default model's small backbone

    return TinySeg(TinySegConfig.from_dict(config))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "segformer": SegFormer,
    "deeplabv3plus": DeepLabV3Plus,
    "tinyseg": _build_tinyseg,
}
MMSEG_SUFFIXES = (".pth", ".pt", ".ckpt")
CITYSCAPES_SIZE = [1024, 2048]


def default_inference(arch: str) -> dict[str, Any]:
    """The paper's test-time setting: SF-B2 1024x1024 sliding window (stride 768), DL-R101 whole
    image."""
    if arch == "segformer":
        return {"mode": "slide", "crop_size": [1024, 1024], "stride": [768, 768]}
    return {"mode": "whole"}


def build_backbone(arch: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate ``arch`` ("segformer" | "deeplabv3plus" | "tinyseg") from ``config`` (random
    weights)."""
    if arch not in ARCHITECTURES:
        raise BackboneError(
            f"unknown backbone architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}"
        )
    try:
        if arch == "tinyseg":
            return ARCHITECTURES[arch](config)
        return ARCHITECTURES[arch](**config)
    except TypeError as exc:
        raise BackboneError(f"bad {arch} hyper-parameters: {exc}") from exc


@dataclass
class BackboneSource:
    """A checkpoint read into our layout, before a model is built (what ``fed_convert`` writes)."""

    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    format: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def detect_format(path: PathLike) -> str:
    """``"mmseg"``, ``"hf"`` or ``"ros2_fed"`` for a file/folder path; :class:`BackboneError`
    otherwise."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        raise BackboneError(
            f"{path}: a folder but not a Hugging Face model folder (no config.json)"
        )
    if path.suffix in MMSEG_SUFFIXES:
        return "mmseg"
    if (
        path.name in ("config.json", "model.safetensors")
        and (path.parent / "config.json").is_file()
        and (path.parent / "model.safetensors").is_file()
    ):
        return "hf"
    if path.suffix == ".json" and path.is_file():
        _check_our_sidecar(path)  # another JSON file: say so, not "NAME.safetensors missing"
    tensors, sidecar = checkpoint_paths(path)
    if tensors.is_file() or sidecar.is_file():
        return "ros2_fed"
    raise BackboneError(
        f"{path}: not found or not a recognised backbone checkpoint (expected an MMSeg .pth, "
        "a Hugging Face folder with config.json + model.safetensors, or NAME.safetensors + "
        "NAME.json)"
    )


def _check_our_sidecar(path: Path) -> None:
    """BackboneError unless ``path`` is the JSON half of a ros2_fed backbone checkpoint."""
    from ros2_fed.checkpoint import FORMAT

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = f"not readable JSON ({exc})"
    else:
        if isinstance(data, dict) and data.get("format") == FORMAT:
            if data.get("kind") in (None, "backbone"):
                return
            reason = f"the sidecar of a {data.get('kind')!r} checkpoint, not a backbone"
        else:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            reason = f'a JSON file without "format": "{FORMAT}" (found {found!r})'
    raise BackboneError(
        f"{path}: not a backbone checkpoint: {reason}; expected an MMSeg .pth, a "
        "Hugging Face folder with config.json + model.safetensors, or our "
        "NAME.safetensors + NAME.json"
    )


def read_source(path: PathLike, overrides: Optional[dict[str, Any]] = None) -> BackboneSource:
    """Read any supported checkpoint into our state-dict layout plus architecture and metadata."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "mmseg":
        src = _read_mmseg(path)
    elif fmt == "hf":
        src = _read_hf(path if path.is_dir() else path.parent)
    else:
        src = _read_ours(path)
    if overrides:
        src.config.update(overrides)
    return src


def load_backbone(
    path: PathLike,
    device: Union[str, torch.device] = "cpu",
    overrides: Optional[dict[str, Any]] = None,
) -> nn.Module:
    """Build the backbone a checkpoint describes and load it strictly; returned in eval mode.

    ``forward(images)`` takes RGB ``B x 3 x H x W`` in 0..255 and returns ``(logits, features)``
    at 1/4 resolution. ``model.meta`` holds class names, palette, mean/std, input size,
    inference setting (:func:`ros2_fed.backbones.inference.infer` follows it) and provenance
    (``sha256`` of the source tensors). ``overrides`` replaces inferred hyper-parameters.
    """
    src = read_source(path, overrides)
    return model_from_source(src).to(device)


def backbone_from_mmseg(
    checkpoint: dict[str, Any],
    source: str = "state_dict",
    overrides: Optional[dict[str, Any]] = None,
) -> nn.Module:
    """In-memory variant of loading an MMSeg checkpoint (full checkpoint dict or bare state
    dict)."""
    sd = mmseg_state_dict(checkpoint, source)
    arch, config = infer_mmseg_config(sd, source)
    config.update(overrides or {})
    return model_from_source(BackboneSource(arch, config, sd, "mmseg", Path(source)))


def model_from_source(src: BackboneSource) -> nn.Module:
    """Build ``src.arch`` and load ``src.state_dict`` strictly; fill ``meta`` defaults; eval
    mode."""
    model = build_backbone(src.arch, src.config)
    load_strict(model, src.state_dict, source=str(src.path))
    meta = dict(src.meta)
    meta.setdefault("name", str(getattr(model, "name", src.arch)))
    meta.setdefault("class_names", default_class_names(model.num_classes))
    meta.setdefault("palette", default_palette(model.num_classes))
    meta.setdefault("mean", list(IMAGENET_MEAN))
    meta.setdefault("std", list(IMAGENET_STD))
    meta.setdefault("input_size", list(CITYSCAPES_SIZE))
    meta.setdefault("inference", default_inference(src.arch))
    meta.setdefault(
        "source", {"format": src.format, "file": src.path.name, "sha256": meta.get("sha256")}
    )
    for key in ("class_names", "palette"):
        if len(meta[key]) != model.num_classes:
            raise BackboneError(
                f"{src.path}: {len(meta[key])} {key} for a {model.num_classes}-class model"
            )
    model.meta = meta
    for key in ("mean", "std"):
        buffer = getattr(model, key, None)
        if isinstance(buffer, torch.Tensor) and buffer.numel() == 3:
            buffer.copy_(
                torch.tensor([float(v) for v in meta[key]], dtype=buffer.dtype).view_as(buffer)
            )
    return model.eval()


def save_backbone(model: nn.Module, path: PathLike, **meta: Any) -> tuple[Path, Path]:
    """Write ``model`` as ``NAME.safetensors`` + ``NAME.json`` (our format); ``meta`` overrides
    ``model.meta``."""
    arch = str(getattr(model, "arch", ""))
    if arch not in ARCHITECTURES:
        raise BackboneError(f"cannot save a {type(model).__name__}: unknown architecture {arch!r}")
    if isinstance(model, SegmentationBackbone):
        config = model.config
    else:
        config = model.cfg.to_dict()  # type: ignore[union-attr]
    num_classes = int(model.num_classes)  # type: ignore[arg-type]
    metadata = {**(getattr(model, "meta", None) or {}), **meta}
    metadata.pop("sha256", None)  # the JSON records tensors_sha256 of the file written instead
    metadata.update(
        arch=arch,
        arch_config=config,
        num_classes=num_classes,
        feature_channels=int(model.feature_channels),  # type: ignore[arg-type]
        output_stride=int(getattr(model, "output_stride", 4)),
    )
    for key in ("mean", "std"):
        if key not in meta:
            # from the buffer actually used, rounded back from float32 (123.67500305 -> 123.675)
            metadata[key] = [float(f"{v:.7g}") for v in getattr(model, key).flatten().tolist()]
    metadata.setdefault("name", str(getattr(model, "name", arch)))
    metadata.setdefault("class_names", default_class_names(num_classes))
    metadata.setdefault("palette", default_palette(num_classes))
    metadata.setdefault("input_size", list(CITYSCAPES_SIZE))
    metadata.setdefault("inference", default_inference(arch))
    return save_checkpoint(path, model.state_dict(), metadata, kind="backbone")


# ---------------------------------------------------------------------------------- readers
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UNPICKLING_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)


def _tensors_only(path: Path) -> Any:
    """``torch.load(weights_only=True)``: no pickled code runs. A refusal is a BackboneError
    with torch's specific reason alone: its terminal colours and its advice to load the file
    with ``weights_only=False`` or to allow-list the global are dropped (not for a file from
    an unknown source)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol ..."
            return torch.load(path, map_location="cpu", weights_only=True)
    except _UNPICKLING_ERRORS as exc:
        raise BackboneError(
            f"{path}: not loaded: torch.load(weights_only=True) refused it ({_reason(exc)}). "
            "Only checkpoints of plain tensors are accepted; where the file is trusted, re-save "
            "its state dict with torch.save(model.state_dict(), PATH)"
        ) from exc


def _reason(exc: BaseException) -> str:
    """torch's specific reason for a refused load, on one line."""
    text = _ANSI.sub("", str(exc))
    found = re.search(
        r"WeightsUnpickler error:(.*?)(?: Please use `torch\.serialization|\n\s*\n|$)", text, re.S
    )
    if found and found.group(1).strip():
        return " ".join(found.group(1).split()).rstrip(". ")
    reasons = []
    for paragraph in re.split(r"\n\s*\n", text):
        line = " ".join(paragraph.split())
        if line.startswith(("Weights only load failed", "Check the documentation")):
            continue
        line = line.split(" Please use `torch.serialization", 1)[0]
        reasons.append(line.rstrip(". "))
    return "; ".join(r for r in reasons if r) or type(exc).__name__


def _read_mmseg(path: Path) -> BackboneSource:
    if not path.is_file():
        raise BackboneError(f"{path}: file not found")
    checkpoint = _tensors_only(path)
    sd = mmseg_state_dict(checkpoint, str(path))
    arch, config = infer_mmseg_config(sd, str(path))
    meta: dict[str, Any] = {"sha256": file_sha256(path)}
    ckpt_meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if isinstance(ckpt_meta, dict):
        classes, palette = ckpt_meta.get("CLASSES"), ckpt_meta.get("PALETTE")
        if classes is not None and len(classes) == config["num_classes"]:
            meta["class_names"] = [str(c) for c in classes]
        if palette is not None and len(palette) == config["num_classes"]:
            meta["palette"] = [[int(v) for v in c] for c in palette]
    return BackboneSource(arch, config, sd, "mmseg", path, meta)


def _read_hf(folder: Path) -> BackboneSource:
    from safetensors.torch import load_file

    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    try:
        hf_config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{config_path}: cannot read ({exc})") from exc
    config = hf_config_to_ours(hf_config, str(config_path))
    if weights_path.is_file():
        try:
            raw = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise BackboneError(f"{weights_path}: cannot read safetensors ({exc})") from exc
    elif (folder / "pytorch_model.bin").is_file():  # older hub folders; a plain state dict
        weights_path = folder / "pytorch_model.bin"
        raw = _tensors_only(weights_path)
    else:
        raise BackboneError(
            f"{weights_path}: not found (sharded checkpoints: re-save with save_pretrained "
            "and max_shard_size large enough for one file)"
        )
    if not isinstance(raw, dict):
        raise BackboneError(f"{weights_path}: not a state dict")
    sd = hf_to_ours(raw, len(config["embed_dims"]), str(weights_path))
    meta: dict[str, Any] = {"sha256": file_sha256(weights_path)}
    names = hf_class_names(hf_config)
    if names is not None and len(names) == config["num_classes"]:
        meta["class_names"] = names
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            proc = json.loads(pre.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BackboneError(f"{pre}: cannot read ({exc})") from exc
        if proc.get("do_normalize", True) and proc.get("image_mean") and proc.get("image_std"):
            scale = (
                1.0 / float(proc.get("rescale_factor", 1 / 255))
                if proc.get("do_rescale", True)
                else 1.0
            )
            meta["mean"] = [float(f"{float(v) * scale:.7g}") for v in proc["image_mean"]]
            meta["std"] = [float(f"{float(v) * scale:.7g}") for v in proc["image_std"]]
    return BackboneSource("segformer", config, sd, "hf", folder, meta)


def _read_ours(path: Path) -> BackboneSource:
    try:
        tensors, metadata = load_checkpoint(path, kind="backbone")
    except CheckpointError as exc:
        raise BackboneError(str(exc)) from exc
    json_path = checkpoint_paths(path)[1]
    for key in ("arch", "arch_config"):
        if key not in metadata:
            raise BackboneError(f"{json_path}: no {key!r} field")
    keep = ("name", "class_names", "palette", "mean", "std", "input_size", "inference", "source")
    meta = {k: metadata[k] for k in keep if k in metadata}
    meta["sha256"] = metadata.get("tensors_sha256") or file_sha256(checkpoint_paths(path)[0])
    return BackboneSource(
        metadata["arch"],
        dict(metadata["arch_config"]),
        tensors,
        "ros2_fed",
        checkpoint_paths(path)[0],
        meta,
    )


__all__ = [
    "ARCHITECTURES",
    "BackboneSource",
    "IGNORED_MMSEG_PREFIXES",
    "backbone_from_mmseg",
    "build_backbone",
    "default_inference",
    "detect_format",
    "load_backbone",
    "model_from_source",
    "read_source",
    "save_backbone",
]
