"""Runtimes for the fused detector graph: torch (eager reference), ONNX Runtime, TensorRT.

- :class:`Engine` — ``infer(image) -> (labels, confidence)``, ``input_shape``, ``metadata``;
  :meth:`Engine.open` picks the runtime from the file (``.onnx`` / ``.engine`` / ``.plan`` /
  ``.safetensors`` bundle) and validates it against its sidecar.
- :func:`export_engine` / :func:`export_onnx` — write an engine + sidecar.
- :func:`open_cached` — the engine for (checkpoints, shape, precision, runtime, GPU), built once.

Runtime modules import their heavy dependencies lazily (TensorRT is optional).
"""
from .base import ENGINE_FORMAT, PRECISIONS, RUNTIMES, Engine, EngineError, read_sidecar, sidecar_path
from .cache import cache_dir, open_cached
from .export import engine_metadata, export_engine, export_onnx

__all__ = [
    "ENGINE_FORMAT",
    "Engine",
    "EngineError",
    "PRECISIONS",
    "RUNTIMES",
    "cache_dir",
    "engine_metadata",
    "export_engine",
    "export_onnx",
    "open_cached",
    "read_sidecar",
    "sidecar_path",
]
