"""Runtimes for the fused detector graph: torch (eager reference), ONNX Runtime, TensorRT.

- :class:`Engine` — ``infer(image) -> (labels, confidence)``, ``input_shape``, ``metadata``;
  :meth:`Engine.open` picks the runtime from the file (``.onnx`` / ``.engine`` / ``.plan`` /
  ``.safetensors`` bundle / ``.ep``: the runtime records of :mod:`.runtimes`) and validates it
  against its sidecar.
- :func:`export_engine` / :func:`export_onnx` — write an engine + sidecar.
- :func:`open_cached` — the engine for (checkpoints, shape, precision, runtime, GPU), built once.

Importing this package loads neither torch nor a runtime: ``Engine.open`` imports only the
runtime of the file it opens, and the names that need torch (export, cache) are imported on
first use (module ``__getattr__``), so a node running an ONNX or TensorRT engine never loads it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    ENGINE_FORMAT,
    PRECISIONS,
    RUNTIMES,
    Engine,
    EngineError,
    read_sidecar,
    sidecar_path,
)

#: Public names whose modules import torch (or may): imported when first used.
LAZY_NAMES = {
    "cache_dir": ".cache",
    "open_cached": ".cache",
    "sidecar_metadata": ".metadata",
    "export_engine": ".export",
    "export_onnx": ".export",
}

__all__ = [
    "ENGINE_FORMAT",
    "Engine",
    "EngineError",
    "PRECISIONS",
    "RUNTIMES",
    "cache_dir",
    "export_engine",
    "export_onnx",
    "open_cached",
    "read_sidecar",
    "sidecar_metadata",
    "sidecar_path",
]


def __getattr__(name: str) -> Any:
    module = LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_NAMES))
