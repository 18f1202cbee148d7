"""Checkpoints: ``NAME.safetensors`` (tensors) + ``NAME.json`` (everything else).

One format for FED detectors, backbones and fused models. Safetensors cannot execute code
on load, unlike pickled ``.pth`` files; the JSON sidecar carries the config, class names,
normalisation, logit statistics provenance and training-run info, plus the SHA-256 of the
tensor file so a truncated or swapped file is caught with a message naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from safetensors import SafetensorError

# file_sha256: re-exported, torch-free home
from ros2_fed.fileio import (
    file_sha256,
    make_shareable,
    temporary_sibling,
)
from ros2_fed.jsonio import write_json

if (
    TYPE_CHECKING
):  # torch only where tensors are read or written: naming and hashing stay torch-free
    import torch

FORMAT = "ros2_fed/checkpoint"
FORMAT_VERSION = 1
PathLike = Union[str, Path]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not what the caller expected (message names the
    file)."""


def checkpoint_paths(path: PathLike) -> tuple[Path, Path]:
    """(tensor file, JSON file) for a stem, a ``.safetensors`` path or a ``.json`` path."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(
    path: PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], kind: str
) -> tuple[Path, Path]:
    """Write tensors + JSON metadata; returns both paths. ``kind`` is e.g. "fed" or "backbone".

    Both files go to a temporary name first and are renamed into place (tensors, then the JSON
    naming their hash): a failed write leaves an existing checkpoint as it was."""
    import os

    from safetensors.torch import save_file

    tensor_path, json_path = checkpoint_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    tmp = temporary_sibling(tensor_path)
    try:
        save_file(contiguous, str(tmp), metadata={"format": FORMAT, "kind": kind})
        make_shareable(tmp)  # safetensors creates 0600 files
        sidecar = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, **metadata}
        sidecar["tensors_sha256"] = file_sha256(tmp)
        os.replace(tmp, tensor_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(json_path, sidecar, sort_keys=True)
    return tensor_path, json_path


def load_checkpoint(
    path: PathLike, kind: Optional[str] = None, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors + metadata, checking format, kind and (by default) the tensor file hash."""
    from safetensors.torch import load_file

    tensor_path, json_path = checkpoint_paths(path)
    for required in (tensor_path, json_path):
        if not required.is_file():
            raise CheckpointError(f"checkpoint file not found: {required}")
    try:
        metadata = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{json_path}: not valid JSON ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{json_path}: not a ros2_fed checkpoint (format={metadata.get('format')!r})"
        )
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path}: format_version {metadata['format_version']} is newer than this ros2_fed"
        )
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(
            f"{json_path}: holds a {metadata.get('kind')!r} checkpoint, expected {kind!r}"
        )
    if (
        verify
        and metadata.get("tensors_sha256")
        and file_sha256(tensor_path) != metadata["tensors_sha256"]
    ):
        raise CheckpointError(
            f"{tensor_path}: SHA-256 does not match {json_path.name} (corrupt or replaced file)"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensor_path}: cannot read safetensors ({exc})") from exc
    return tensors, metadata


def save_fed(
    path: PathLike, model: torch.nn.Module, metadata: Optional[dict[str, Any]] = None
) -> tuple[Path, Path]:
    """Save a FlowEneDet with its config (and any extra metadata, e.g. training run info)."""
    meta = dict(metadata or {})
    meta["config"] = model.cfg.to_dict()
    meta.setdefault("variant", model.cfg.variant)
    return save_checkpoint(path, model.state_dict(), meta, kind="fed")


def load_fed(path: PathLike, verify: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a FlowEneDet in eval mode; strict: a missing or unexpected tensor is an error."""
    from ros2_fed.fed import FEDConfig, FlowEneDet

    tensors, metadata = load_checkpoint(path, kind="fed", verify=verify)
    try:
        cfg = FEDConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint_paths(path)[1]}: bad FED config ({exc})") from exc
    model = FlowEneDet(cfg)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{checkpoint_paths(path)[0]}: does not match its FED config: {exc}"
        ) from exc
    return model.eval(), metadata
