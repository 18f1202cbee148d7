"""Which runtime opens which engine file: a loader per file suffix, each importing its runtime
lazily.

Why a registry: ``Engine.open`` (base.py) must not import its own subclasses (they import
base: a cycle), and opening an ``.onnx`` or TensorRT engine must not pay for torch, which only
the torch runtime (a fused ``.safetensors`` bundle) needs. Each loader below imports its
runtime module when a file of its suffix is opened, never before. The package imports this
module, so the loaders are registered before anyone can call ``Engine.open``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .base import RUNTIME_BY_SUFFIX, Engine, checked_sidecar, register_engine_loader


def open_onnx(path: Path, expect: Optional[dict[str, Any]], options: dict[str, Any]) -> Engine:
    """``NAME.onnx`` + sidecar -> ONNX Runtime (imports onnxruntime, never torch)."""
    from .onnx_engine import OnnxEngine

    return OnnxEngine(path, checked_sidecar(path, "onnxruntime", expect), **options)


def open_tensorrt(path: Path, expect: Optional[dict[str, Any]], options: dict[str, Any]) -> Engine:
    """``NAME.engine`` / ``NAME.plan`` + sidecar -> TensorRT."""
    from .tensorrt_engine import TensorRTEngine

    return TensorRTEngine(path, checked_sidecar(path, "tensorrt", expect), **options)


def open_torch_bundle(
    path: Path, expect: Optional[dict[str, Any]], options: dict[str, Any]
) -> Engine:
    """A fused ``NAME.safetensors`` bundle -> the torch eager runtime (imports torch)."""
    from .torch_engine import TorchEngine

    return TorchEngine.from_bundle(path, expect=expect, **options)


def open_torch_tensorrt(
    path: Path, expect: Optional[dict[str, Any]], options: dict[str, Any]
) -> Engine:
    """A torch-tensorrt ``NAME.ep`` program + sidecar -> torch-tensorrt on CUDA (imports torch)."""
    from .torch_tensorrt_engine import TorchTensorRTEngine

    return TorchTensorRTEngine(path, checked_sidecar(path, "torch-tensorrt", expect), **options)


LOADERS_BY_RUNTIME = {
    "onnxruntime": open_onnx,
    "tensorrt": open_tensorrt,
    "torch": open_torch_bundle,
    "torch-tensorrt": open_torch_tensorrt,
}

for _suffix, _runtime in RUNTIME_BY_SUFFIX.items():
    register_engine_loader(_suffix, LOADERS_BY_RUNTIME[_runtime])
