"""Export a FusedDetector: ONNX (+ sidecar), TensorRT engine (+ sidecar), or a torch bundle.

ONNX: ``torch.onnx.export(dynamo=False, opset_version=18)`` of the whole fused graph with a
fixed input shape (B, H, W, 3) uint8 and outputs ``labels`` (B, H, W) uint8 and
``confidence`` (B, H, W) float32/float16. The TorchScript exporter is used because it is fast
and handles FED and our post-processing exactly (see docs/architecture.md, Export notes).
The ONNX file carries the model hash in its ``metadata_props`` too, so a sidecar paired with
the wrong file is caught on open. Files are written to a temporary name and renamed, so a
crash never leaves a half-written engine under the final name.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ros2_fed.detector import FusedDetector, detector_hash
from ros2_fed.fileio import temporary_sibling

from .base import (
    ENGINE_FORMAT,
    ENGINE_FORMAT_VERSION,
    INPUT_NAME,
    OUTPUT_NAMES,
    PRECISIONS,
    RUNTIMES,
    EngineError,
    PathLike,
    sidecar_path,
    tensor_shape,
    write_json_atomic,
)

DEFAULT_OPSET = 18
ONNX_META_PREFIX = "ros2_fed."


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime ("absent" when it is not installed)."""
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return str(onnxruntime.__version__)
        if runtime == "tensorrt":
            import tensorrt  # type: ignore[import-not-found]

            return str(tensorrt.__version__)
        if runtime == "torch":
            return str(torch.__version__)
    except ImportError:
        return "absent"
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")


def gpu_name() -> str:
    """Name of CUDA device 0, or "cpu": TensorRT engines are only valid on the GPU they were built for."""
    if torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return "cpu"


def engine_metadata(
    detector: FusedDetector,
    *,
    runtime: str,
    precision: str,
    height: int,
    width: int,
    batch: int = 1,
    model_hash: Optional[str] = None,
    opset: Optional[int] = DEFAULT_OPSET,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Everything a consumer (node, eval, cache) needs to know about an engine, JSON-able.

    ``file_sha256`` / ``file_size`` are added by the writer once the file exists.
    """
    from ros2_fed import __version__

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    cfg = detector.config()
    try:
        import onnx

        onnx_version = str(onnx.__version__)
    except ImportError:  # pragma: no cover - onnx is a runtime requirement
        onnx_version = "absent"
    meta: dict[str, Any] = {
        "format": ENGINE_FORMAT,
        "format_version": ENGINE_FORMAT_VERSION,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "precision": precision,
        "gpu_name": gpu_name() if runtime == "tensorrt" else None,
        "input_name": INPUT_NAME,
        "input_dtype": "uint8",
        "input_layout": "BHWC, RGB, 0..255",
        "input_tensor_shape": tensor_shape(height, width, batch),
        "input_shape": [int(height), int(width)],
        "outputs": {
            "labels": {"dtype": "uint8", "shape": [int(batch), int(height), int(width)]},
            "confidence": {"dtype": cfg["confidence_dtype"], "shape": [int(batch), int(height), int(width)],
                           "range": [0.0, 1.0], "meaning": "1 = certain"},
        },
        "model_hash": model_hash or detector_hash(detector),
        "score": cfg["score"],
        "postprocess": cfg["postprocess"],
        "confidence_mapping": cfg["confidence_mapping"],
        "fed_variant": cfg["fed_variant"],
        "num_classes": cfg["num_classes"],
        "class_names": cfg["class_names"],
        "palette": cfg["palette"],
        "detector": cfg,
        "opset": opset,
        "torch_version": str(torch.__version__),
        "onnx_version": onnx_version,
        "ros2_fed_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra or {})
    return meta


def _export_to_proto(detector: FusedDetector, example: torch.Tensor, opset: int) -> Any:
    """Trace + export with the TorchScript exporter; returns the ONNX ModelProto."""
    import io

    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python ints: shapes are fixed
        with torch.no_grad():
            torch.onnx.export(
                detector,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                do_constant_folding=True,
            )
    return onnx.load_from_string(buffer.getvalue())


def export_onnx(
    detector: FusedDetector,
    path: PathLike,
    height: int,
    width: int,
    *,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    model_hash: Optional[str] = None,
    extra_metadata: Optional[dict[str, Any]] = None,
    verify: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export the fused graph to ``path`` (.onnx) and write ``path.json``; returns (path, metadata).

    The file is checked with ``onnx.checker`` before it is moved into place. ``verify`` also
    runs it once in ONNX Runtime (CPU) against eager on a random image and refuses an export
    that disagrees (confidence > 1e-3 or labels < 99.9 %).
    """
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX exports must end in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    detector = detector.freeze()
    device = next(iter(detector.parameters()), torch.empty(0)).device
    example = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, device=device)
    metadata = engine_metadata(
        detector, runtime="onnxruntime", precision=precision, height=height, width=width, batch=batch,
        model_hash=model_hash, opset=opset, extra=extra_metadata,
    )
    try:
        proto = _export_to_proto(detector, example, opset)
    except Exception as exc:
        raise EngineError(f"{path}: torch.onnx.export of the fused detector failed: {exc}") from exc
    del proto.metadata_props[:]
    for key, value in (
        ("model_hash", metadata["model_hash"]),
        ("input_tensor_shape", json.dumps(metadata["input_tensor_shape"])),
        ("detector", json.dumps(metadata["detector"], sort_keys=True)),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_META_PREFIX + key, value
    proto.producer_name = "ros2_fed"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise EngineError(f"{path}: exported graph fails onnx.checker: {exc}") from exc

    tmp = temporary_sibling(path)
    try:
        onnx.save(proto, str(tmp))
        if verify:
            _verify_onnx(tmp, detector, example, path)
        from ros2_fed.checkpoint import file_sha256

        metadata["file_sha256"] = file_sha256(tmp)
        metadata["file_size"] = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(sidecar_path(path), metadata)
    return path, metadata


def _verify_onnx(onnx_path: Path, detector: FusedDetector, example: torch.Tensor, name: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels, confidence = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.cpu().numpy()})
    with torch.no_grad():
        ref_labels, ref_conf = detector(example)
    diff = float(np.max(np.abs(confidence.astype(np.float32) - ref_conf.float().cpu().numpy())))
    agree = float(np.mean(labels == ref_labels.cpu().numpy()))
    if diff > 1e-3 or agree < 0.999:
        raise EngineError(f"{name}: ONNX Runtime disagrees with eager (confidence max diff {diff:.2e}, labels agree {agree:.4%})")


def export_engine(
    detector: FusedDetector,
    path: PathLike,
    height: int,
    width: int,
    *,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    model_hash: Optional[str] = None,
    calibration_images: Optional[Union[np.ndarray, Sequence[np.ndarray]]] = None,
    extra_metadata: Optional[dict[str, Any]] = None,
    verify: bool = False,
    progress: Optional[Callable[[str], None]] = print,
    workspace_gib: float = 4.0,
) -> tuple[Path, dict[str, Any]]:
    """Build the engine for ``runtime`` at ``path`` with its sidecar; returns (path, metadata).

    onnxruntime: ``path`` is the .onnx. tensorrt: the ONNX goes next to it
    (``path.with_suffix(".onnx")``) and the serialised engine to ``path`` (.engine/.plan).
    torch: ``path`` is a fused bundle ``NAME.safetensors`` + ``NAME.json``.
    """
    path = Path(path)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if runtime == "onnxruntime":
        if precision != "fp32":
            raise ValueError(
                "onnxruntime runs the fp32 graph (on GPUs its TensorRT execution provider picks the "
                f"precision at session start); {precision} engines: use runtime 'tensorrt'"
            )
        if progress:
            progress(f"exporting ONNX ({height}x{width}) to {path}")
        return export_onnx(detector, path, height, width, batch=batch, opset=opset, precision=precision,
                           model_hash=model_hash, extra_metadata=extra_metadata, verify=verify)
    if runtime == "tensorrt":
        from .tensorrt_engine import build_tensorrt_engine

        onnx_path = path.with_suffix(".onnx")
        if progress:
            progress(f"exporting ONNX ({height}x{width}) to {onnx_path}")
        _, onnx_meta = export_onnx(detector, onnx_path, height, width, batch=batch, opset=opset, precision="fp32",
                                   model_hash=model_hash, extra_metadata=extra_metadata, verify=verify)
        meta = dict(onnx_meta)
        meta.update(runtime="tensorrt", runtime_version=runtime_version("tensorrt"), precision=precision, gpu_name=gpu_name())
        for key in ("file_sha256", "file_size"):
            meta.pop(key, None)
        meta["onnx_sha256"] = onnx_meta["file_sha256"]
        return build_tensorrt_engine(onnx_path, path, meta, precision=precision, calibration_images=calibration_images,
                                     progress=progress, workspace_gib=workspace_gib)
    from .torch_engine import save_bundle

    if progress:
        progress(f"writing torch bundle to {path}")
    return save_bundle(path, detector, height, width, batch=batch, precision=precision, model_hash=model_hash,
                       extra_metadata=extra_metadata)
