"""How each runtime opens its engine file: the ``open`` of the runtime records (runtimes.py).

Why its own module: ``Engine.open`` (base.py) must not import its own subclasses (they import
base: a cycle), and opening an ``.onnx`` or TensorRT engine must not pay for torch, which only
the torch runtime (a fused ``.safetensors`` bundle) needs. Each record names its loader here by
dotted name; ``base.ENGINE_LOADERS`` imports this module, and the loader its runtime module,
only when a file of its suffix is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .base import Engine, checked_sidecar


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
