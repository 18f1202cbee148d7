"""The sidecar an engine writer records: what the engine computes, for which input, built by what.

Why its own module: every writer (ONNX/TensorRT export, the torch bundle, torch-tensorrt) fills
the same sidecar, and the writers import each other's builders; keeping the sidecar here lets
each of them import it without importing the others. Reading a sidecar back is
:func:`ros2_fed.engine.base.read_sidecar`. torch is imported inside the functions that need it.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Optional

from ros2_fed.fingerprint import FINGERPRINT_KEY, fingerprint_of

from .base import (
    ENGINE_FORMAT,
    ENGINE_FORMAT_VERSION,
    GPU_RUNTIMES,
    INPUT_NAME,
    PRECISIONS,
    RUNTIMES,
    tensor_shape,
)
from .runtimes import record

if TYPE_CHECKING:  # pragma: no cover
    from ros2_fed.detector import FusedDetector

# ONNX files carry these sidecar fields in their metadata_props under this prefix.
ONNX_META_PREFIX = "ros2_fed."
# Bump when the exported graph changes for the same detector (part of the engine cache key).
EXPORT_GRAPH_VERSION = 2  # 2: uint8 cast first, typed fp16 backbone
# What the backbone computes in, per precision (FED is float32 in every engine).
BACKBONE_DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8"}


def check_precision(precision: str) -> None:
    """ValueError for a precision the exporter cannot write."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime ("absent" when it is not installed or cannot load)."""
    module = record(runtime).package  # ValueError for an unknown runtime
    try:
        return str(__import__(module).__version__)
    except Exception:  # ImportError, or torch_tensorrt's plain Exception without libnvinfer
        return "absent"


def gpu_identity(device: int = 0) -> dict[str, Any]:
    """Name and compute capability of CUDA ``device`` (``{"name": "cpu", ...}`` without CUDA).

    Engines compiled by TensorRT are only valid on the GPU model they were built for, so both
    go into the sidecar and the cache key.
    """
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "compute_capability": None}
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "name": str(torch.cuda.get_device_name(device)),
        "compute_capability": f"{major}.{minor}",
    }


def sidecar_metadata(
    detector: FusedDetector,
    *,
    runtime: str,
    precision: str,
    height: int,
    width: int,
    batch: int = 1,
    model_hash: Optional[str] = None,
    opset: Optional[int] = None,
    extra: Optional[dict[str, Any]] = None,
    dynamic_batch: bool = False,
) -> dict[str, Any]:
    """The sidecar of an engine about to be written: everything a consumer (node, eval, cache)
    needs to know about it, JSON-able. (A built engine's sidecar is ``Engine.metadata``.)

    ``file_sha256`` / ``file_size`` are added by the writer once the file exists.
    ``dynamic_batch``: the engine runs any batch from 1 to ``batch`` (else exactly ``batch``).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    check_precision(precision)
    cfg = detector.config()
    onnx_version = _onnx_version()
    meta: dict[str, Any] = {
        **_runtime_fields(runtime, precision),
        **_io_fields(cfg, height, width, batch, dynamic_batch),
        **_model_fields(detector, cfg, model_hash),
        **_version_fields(opset, onnx_version),
    }
    meta.update(extra or {})
    return meta


def _onnx_version() -> str:
    """The onnx package version, or "absent" (the sidecar says which exporter made the graph)."""
    try:
        import onnx

        return str(onnx.__version__)
    except ImportError:  # pragma: no cover - onnx is a runtime requirement
        return "absent"


def _runtime_fields(runtime: str, precision: str) -> dict[str, Any]:
    """Format, runtime, precision and (for compiled engines) the GPU it is only valid on."""
    gpu = gpu_identity() if runtime in GPU_RUNTIMES else {"name": None, "compute_capability": None}
    return {
        "format": ENGINE_FORMAT,
        "format_version": ENGINE_FORMAT_VERSION,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "precision": precision,
        "backbone_dtype": BACKBONE_DTYPES.get(precision, "float32"),
        "fed_dtype": "float32",
        "gpu_name": gpu["name"],
        "gpu_compute_capability": gpu["compute_capability"],
    }


def _io_fields(
    cfg: dict[str, Any], height: int, width: int, batch: int, dynamic_batch: bool
) -> dict[str, Any]:
    """The input tensor and the two outputs, as a caller must feed and read them."""
    return {
        "input_name": INPUT_NAME,
        "input_dtype": "uint8",
        "input_layout": "BHWC, RGB, 0..255",
        "input_tensor_shape": tensor_shape(height, width, batch),
        "input_shape": [int(height), int(width)],
        "dynamic_batch": bool(dynamic_batch),
        "outputs": {
            "labels": {"dtype": "uint8", "shape": [int(batch), int(height), int(width)]},
            "confidence": {
                "dtype": cfg["confidence_dtype"],
                "shape": [int(batch), int(height), int(width)],
                "range": [0.0, 1.0],
                "meaning": "1 = certain",
            },
        },
    }


def _model_fields(
    detector: FusedDetector, cfg: dict[str, Any], model_hash: Optional[str]
) -> dict[str, Any]:
    """What the engine computes: model hash, score, classes and the backbone fingerprint."""
    from ros2_fed.detector import detector_hash

    return {
        "model_hash": model_hash or detector_hash(detector),
        "score": cfg["score"],
        "postprocess": cfg["postprocess"],
        "confidence_mapping": cfg["confidence_mapping"],
        "fed_variant": cfg["fed_variant"],
        "num_classes": cfg["num_classes"],
        "class_names": cfg["class_names"],
        "palette": cfg["palette"],
        "detector": cfg,
        FINGERPRINT_KEY: fingerprint_of(detector.backbone).to_json(),
    }


def _version_fields(opset: Optional[int], onnx_version: str) -> dict[str, Any]:
    """The software that built the engine, and when."""
    import torch

    from ros2_fed import __version__

    return {
        "opset": opset,
        "export_graph_version": EXPORT_GRAPH_VERSION,
        "torch_version": str(torch.__version__),
        "onnx_version": onnx_version,
        "ros2_fed_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def tensorrt_metadata(onnx_meta: dict[str, Any], device: int = 0) -> dict[str, Any]:
    """The sidecar of a TensorRT engine built from an ONNX export (before the engine exists)."""
    gpu = gpu_identity(device)
    meta = dict(onnx_meta)
    meta.update(
        runtime="tensorrt",
        runtime_version=runtime_version("tensorrt"),
        gpu_name=gpu["name"],
        gpu_compute_capability=gpu["compute_capability"],
    )
    for key in ("file_sha256", "file_size"):
        meta.pop(key, None)
    meta["onnx_sha256"] = onnx_meta["file_sha256"]
    return meta
