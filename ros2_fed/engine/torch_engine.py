"""Torch eager engine: the reference runtime (CPU or CUDA), and the fused bundle format.

A bundle is our checkpoint (``NAME.safetensors`` + ``NAME.json``, kind ``fused_bundle``)
holding the whole FusedDetector state dict plus what is needed to rebuild it: the backbone
architecture id and hyper-parameters (``ros2_fed.backbones``), the FED config and the
detector config. Loading rebuilds the modules, loads strictly and re-hashes, so a bundle
whose tensors do not match its JSON is refused.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ros2_fed.detector import FusedDetector, detector_from_config, detector_hash

from .base import Engine, EngineError, PathLike, as_hw, check_expected

BUNDLE_KIND = "fused_bundle"


def _backbone_description(backbone: torch.nn.Module) -> dict[str, Any]:
    """arch id + hyper-parameters the backbones package rebuilds from (as save_backbone writes)."""
    arch = getattr(backbone, "arch", None)
    if hasattr(backbone, "config") and isinstance(getattr(backbone, "config"), dict):
        config = dict(backbone.config)  # type: ignore[arg-type]
    elif hasattr(backbone, "cfg") and hasattr(backbone.cfg, "to_dict"):
        config = backbone.cfg.to_dict()  # type: ignore[union-attr]
    else:
        config = None
    if not arch or config is None:
        raise EngineError(
            f"cannot bundle a {type(backbone).__name__} backbone: it has no ros2_fed.backbones "
            "architecture id/config (use an onnx/tensorrt export, or a backbone loaded with "
            "ros2_fed.backbones.load_backbone)"
        )
    meta = dict(getattr(backbone, "meta", None) or {})
    return {"arch": str(arch), "arch_config": config, "meta": meta}


def save_bundle(
    path: PathLike,
    detector: FusedDetector,
    height: int,
    width: int,
    *,
    batch: int = 1,
    precision: str = "fp32",
    model_hash: Optional[str] = None,
    extra_metadata: Optional[dict[str, Any]] = None,
) -> tuple[Path, dict[str, Any]]:
    """Write a fused bundle; returns (tensor path, metadata)."""
    import json

    from ros2_fed.checkpoint import save_checkpoint

    from .metadata import sidecar_metadata

    path = Path(path)
    if path.suffix not in ("", ".safetensors", ".json"):
        raise ValueError(f"{path}: a torch bundle is NAME.safetensors (+ NAME.json)")
    # A bundle's model_hash is always the tensor hash: load_bundle re-hashes and compares.
    meta = sidecar_metadata(
        detector,
        runtime="torch",
        precision=precision,
        height=height,
        width=width,
        batch=batch,
        model_hash=None,
        opset=None,
        extra=extra_metadata,
    )
    if model_hash and model_hash != meta["model_hash"]:
        meta["source_model_hash"] = model_hash
    meta["engine_format"] = meta.pop("format")
    meta["engine_format_version"] = meta.pop("format_version")
    meta["backbone"] = _backbone_description(detector.backbone)
    tensor_path, json_path = save_checkpoint(path, detector.state_dict(), meta, kind=BUNDLE_KIND)
    written = json.loads(json_path.read_text())
    meta["format"] = meta.pop("engine_format")
    meta["format_version"] = meta.pop("engine_format_version")
    meta["file_sha256"] = written["tensors_sha256"]
    meta["file_size"] = tensor_path.stat().st_size
    return tensor_path, meta


def load_bundle(path: PathLike) -> tuple[FusedDetector, dict[str, Any]]:
    """Rebuild the FusedDetector of a bundle (eval mode, CPU) and its metadata."""
    from ros2_fed.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint
    from ros2_fed.fed import FEDConfig, FlowEneDet

    tensor_path = checkpoint_paths(path)[0]
    try:
        tensors, meta = load_checkpoint(path, kind=BUNDLE_KIND)
    except CheckpointError as exc:
        raise EngineError(str(exc)) from exc
    try:
        from ros2_fed.backbones.loader import BackboneSource, model_from_source

        desc = meta["backbone"]
        prefix = "backbone."
        backbone_sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        backbone = model_from_source(
            BackboneSource(
                desc["arch"],
                dict(desc["arch_config"]),
                backbone_sd,
                "ros2_fed",
                tensor_path,
                dict(desc.get("meta") or {}),
            )
        )
        fed_cfg = meta["detector"].get("fed_config")
        fed = FlowEneDet(FEDConfig.from_dict(fed_cfg)).eval() if fed_cfg else None
        detector = detector_from_config(backbone, fed, meta["detector"])
        detector.load_state_dict(tensors, strict=True)
    except EngineError:
        raise
    except Exception as exc:  # KeyError, BackboneError, RuntimeError from a strict load, ...
        raise EngineError(
            f"{tensor_path}: cannot rebuild the fused detector from this bundle "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    digest = detector_hash(detector)
    if digest != meta.get("model_hash"):
        raise EngineError(
            f"{tensor_path}: model_hash mismatch: the tensors hash to {digest[:12]}..., the JSON "
            f"says {str(meta.get('model_hash'))[:12]}..."
        )
    meta["format"] = meta.pop("engine_format", None)
    meta["format_version"] = meta.pop("engine_format_version", None)
    return detector.eval(), meta


def _torch_metadata(
    detector: FusedDetector,
    metadata: Optional[dict[str, Any]],
    input_shape: Optional[Sequence[int]],
    batch: int,
    precision: str,
) -> dict[str, Any]:
    """The engine's metadata: a copy of ``metadata`` when it is for this input size, else made
    from the detector (keeping a given model hash); input size from the argument, the metadata
    or the detector, in that order."""
    from .metadata import sidecar_metadata

    if input_shape is None:
        if metadata is not None:
            input_shape = metadata["input_tensor_shape"]
        elif detector.input_size is not None:
            input_shape = detector.input_size
        else:
            raise ValueError(
                "TorchEngine needs input_shape=(H, W) when the detector has no input_size"
            )
    height, width = as_hw(input_shape)
    if metadata is None or tuple(as_hw(metadata["input_tensor_shape"])) != (height, width):
        base = metadata
        metadata = sidecar_metadata(
            detector,
            runtime="torch",
            precision=precision,
            height=height,
            width=width,
            batch=batch,
            model_hash=(base or {}).get("model_hash"),
            opset=None,
        )
    metadata = dict(metadata)
    metadata["precision"] = precision
    return metadata


class TorchEngine(Engine):
    """Eager PyTorch: the reference every other runtime is compared with.

    ``device``: "cpu" or "cuda[:i]". ``precision``: fp32, or fp16 (CUDA only, autocast; FED
    and the confidence stay float32 because autocast keeps exp/log/softmax in float32).
    CPU input is wrapped without a copy; on CUDA the frame goes through a pinned buffer.
    """

    runtime = "torch"

    def __init__(
        self,
        detector: FusedDetector,
        metadata: Optional[dict[str, Any]] = None,
        *,
        path: Optional[PathLike] = None,
        input_shape: Optional[Sequence[int]] = None,
        batch: int = 1,
        device: str = "cpu",
        precision: str = "fp32",
        threads: Optional[int] = None,
    ) -> None:
        self.device = torch.device(device)
        if precision not in ("fp32", "fp16"):
            raise EngineError(
                f"{path or 'torch engine'}: precision {precision!r} is not supported by the torch "
                "runtime (fp32, fp16)"
            )
        if precision == "fp16" and self.device.type != "cuda":
            raise EngineError(f"{path or 'torch engine'}: fp16 eager inference needs CUDA")
        metadata = _torch_metadata(detector, metadata, input_shape, batch, precision)
        metadata["device"] = str(self.device)
        super().__init__(path, metadata)
        if threads:
            torch.set_num_threads(int(threads))
        self.detector = detector.to(self.device).freeze()
        shape = self._tensor_shape
        self._autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if precision == "fp16"
            else contextlib.nullcontext()
        )
        if self.device.type == "cuda":  # frames go through pinned host buffers
            self._in_host = torch.empty(shape, dtype=torch.uint8).pin_memory()
            self._in_dev = torch.empty(shape, dtype=torch.uint8, device=self.device)
            self._labels_host = torch.empty(shape[:3], dtype=torch.uint8).pin_memory()
            self._conf_host = torch.empty(shape[:3], dtype=torch.float32).pin_memory()

    @classmethod
    def from_bundle(
        cls,
        path: PathLike,
        *,
        expect: Optional[dict[str, Any]] = None,
        device: str = "cpu",
        precision: Optional[str] = None,
        input_shape: Optional[Sequence[int]] = None,
        threads: Optional[int] = None,
    ) -> "TorchEngine":
        detector, meta = load_bundle(path)
        check_expected(path, meta, expect)
        return cls(
            detector,
            meta,
            path=path,
            input_shape=input_shape,
            batch=int(meta["input_tensor_shape"][0]),
            device=device,
            precision=precision or ("fp32" if meta.get("precision") != "fp16" else "fp16"),
            threads=threads,
        )

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), self._autocast:
            if self.device.type == "cuda":
                self._in_host.numpy()[...] = batch
                self._in_dev.copy_(self._in_host, non_blocking=True)
                labels, confidence = self.detector(self._in_dev)
                self._labels_host.copy_(labels, non_blocking=True)
                self._conf_host.copy_(confidence, non_blocking=True)
                torch.cuda.current_stream(self.device).synchronize()
                return self._labels_host.numpy(), self._conf_host.numpy()
            # a read-only frame (a ROS or bag message buffer) is copied: torch has no read-only
            # tensors and warns on every such frame
            frame = batch if batch.flags.writeable else batch.copy()
            labels, confidence = self.detector(torch.from_numpy(frame))
            return labels.numpy(), confidence.float().numpy()

    def close(self) -> None:
        self.detector = None  # type: ignore[assignment]
