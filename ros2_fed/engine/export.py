"""Export a FusedDetector: ONNX (+ sidecar), TensorRT engine (+ sidecar), or a torch bundle.

ONNX: ``torch.onnx.export(dynamo=False, opset_version=18)`` of the whole fused graph with a
fixed input shape (B, H, W, 3) uint8 and outputs ``labels`` (B, H, W) uint8 and
``confidence`` (B, H, W) float32/float16. The TorchScript exporter is used because it is fast
and handles FED and our post-processing exactly (see docs/architecture.md, Export notes).
The first op casts the uint8 image to float (TensorRT's importer wants that before any other
layer). ``precision="fp16"`` writes a typed mixed-precision graph: the backbone computes in
float16, FED and everything after it in float32, with explicit Casts between
(:mod:`.mixed_precision`); TensorRT builds it strongly typed and ONNX Runtime runs it on CPU.
INT8 is not supported. The ONNX file carries the model hash in its ``metadata_props`` too, so
a sidecar paired with the wrong file is caught on open. Files are written to a temporary name
and renamed, so a crash never leaves a half-written engine under the final name.

torch is imported inside the functions: ``onnx_engine`` imports this module, and opening an
ONNX engine must not load torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ros2_fed.fileio import temporary_sibling
from ros2_fed.fingerprint import FINGERPRINT_KEY, fingerprint_of

from .base import (
    ENGINE_FORMAT,
    ENGINE_FORMAT_VERSION,
    INPUT_NAME,
    OUTPUT_NAMES,
    PRECISIONS,
    RUNTIMES,
    EngineError,
    PathLike,
    install_engine_file,
    sidecar_path,
    tensor_shape,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ros2_fed.detector import FusedDetector

DEFAULT_OPSET = 18
ONNX_META_PREFIX = "ros2_fed."
# Bump when the exported graph changes for the same detector (part of the engine cache key).
EXPORT_GRAPH_VERSION = 2  # 2: uint8 cast first, typed fp16 backbone
# fp16 graph vs the fp32 eager detector: what an export must meet (and the tests check).
FP16_MIN_LABEL_AGREEMENT = 0.99
FP16_MAX_MEAN_CONFIDENCE_DIFF = 0.01
# Every engine build compares its output with the float32 eager detector (verify_outputs);
# the override a refusal names: the CLIs' flag, or for the cache (fed_node) the environment.
NO_VERIFY_FLAG = "--no-verify"
VERIFY_ENV = "ROS2_FED_VERIFY"  # "0": the engine cache builds without the check
CACHE_OVERRIDE = (
    f"{VERIFY_ENV}=0 in the environment of fed_node / the cache's user, or "
    f"{NO_VERIFY_FLAG} for fed_export and fed_bag_eval"
)
INT8_UNSUPPORTED = (
    "INT8 is not supported: TensorRT 11 takes INT8 only as Q/DQ nodes in the graph, which "
    "ros2_fed "
    "does not write; use fp16"
)


class ExportVerificationError(EngineError):
    """A built engine's output disagrees with the float32 eager detector; nothing was installed."""


def check_precision(precision: str) -> None:
    """ValueError for a precision the exporter cannot write (INT8 named plainly)."""
    if precision == "int8":
        raise ValueError(INT8_UNSUPPORTED)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime ("absent" when it is not installed or cannot load)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    module = {
        "onnxruntime": "onnxruntime",
        "tensorrt": "tensorrt",
        "torch": "torch",
        "torch-tensorrt": "torch_tensorrt",
    }.get(runtime, runtime)
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


def gpu_name(device: int = 0) -> str:
    """Name of CUDA ``device``, or "cpu"."""
    return str(gpu_identity(device)["name"])


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
    dynamic_batch: bool = False,
) -> dict[str, Any]:
    """Everything a consumer (node, eval, cache) needs to know about an engine, JSON-able.

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
    gpu = (
        gpu_identity()
        if runtime in ("tensorrt", "torch-tensorrt")
        else {"name": None, "compute_capability": None}
    )
    return {
        "format": ENGINE_FORMAT,
        "format_version": ENGINE_FORMAT_VERSION,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "precision": precision,
        "backbone_dtype": "float16" if precision == "fp16" else "float32",
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


def _export_to_proto(
    graph: Any, example: torch.Tensor, opset: int, dynamic_batch: bool = False
) -> Any:
    """Trace + export with the TorchScript exporter; returns the ONNX ModelProto.

    ``dynamic_batch``: the batch dimension of the input and outputs is symbolic.
    """
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # TracerWarnings about shape-dependent Python ints: shapes are fixed
        with torch.no_grad():
            torch.onnx.export(
                graph,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                do_constant_folding=True,
                dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)}
                if dynamic_batch
                else None,
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
    verify: bool = True,
    dynamic_batch: Optional[bool] = None,
    override: str = NO_VERIFY_FLAG,
) -> tuple[Path, dict[str, Any]]:
    """Export the fused graph to ``path`` (.onnx) and write ``path.json``; returns (path,
    metadata).

    ``batch`` > 1 (one frame per camera): by default the graph takes any batch from 1 to
    ``batch`` (``dynamic_batch``), so a batch with fewer new frames costs fewer frames, not
    padding (ONNX Runtime on a CPU: batching saves nothing per frame, padding costs in full).

    ``precision``: "fp32", or "fp16" (float16 backbone, float32 FED; see :mod:`.mixed_precision`).
    The file is checked with ``onnx.checker`` before it is moved into place. ``verify``
    (default) also runs it once in ONNX Runtime (CPU) against the float32 eager detector on a
    random image and refuses an export that disagrees (:func:`verify_outputs`; the error names
    ``override``, how to skip the check). The sidecar records ``"verified"``.
    """
    import torch

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX exports must end in .onnx")
    check_precision(precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    detector = detector.freeze()
    device = next(iter(detector.parameters()), torch.empty(0)).device
    example = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, device=device)
    dynamic = batch > 1 if dynamic_batch is None else bool(dynamic_batch)
    metadata = engine_metadata(
        detector,
        runtime="onnxruntime",
        precision=precision,
        height=height,
        width=width,
        batch=batch,
        model_hash=model_hash,
        opset=opset,
        extra=extra_metadata,
        dynamic_batch=dynamic,
    )
    metadata["verified"] = bool(verify)
    proto = _checked_onnx_proto(detector, example, path, precision, opset, dynamic, metadata)
    _write_verified_onnx(
        proto, path, metadata, detector, example, precision, override, verify, dynamic
    )
    return path, metadata


def _checked_onnx_proto(
    detector: FusedDetector,
    example: torch.Tensor,
    path: Path,
    precision: str,
    opset: int,
    dynamic: bool,
    metadata: dict[str, Any],
) -> Any:
    """The exported graph with its metadata properties, refused unless onnx.checker passes."""
    import onnx

    from .mixed_precision import export_graph, remove_identity_casts

    try:
        proto = _export_to_proto(export_graph(detector, precision), example, opset, dynamic)
        remove_identity_casts(proto)
    except Exception as exc:
        raise EngineError(
            f"{path}: torch.onnx.export of the fused detector failed: {exc}"
        ) from exc
    del proto.metadata_props[:]
    for key, value in (
        ("model_hash", metadata["model_hash"]),
        ("input_tensor_shape", json.dumps(metadata["input_tensor_shape"])),
        ("precision", precision),
        ("detector", json.dumps(metadata["detector"], sort_keys=True)),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_META_PREFIX + key, value
    proto.producer_name = "ros2_fed"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise EngineError(f"{path}: exported graph fails onnx.checker: {exc}") from exc
    return proto


def _write_verified_onnx(
    proto: Any,
    path: Path,
    metadata: dict[str, Any],
    detector: FusedDetector,
    example: torch.Tensor,
    precision: str,
    override: str,
    verify: bool,
    dynamic: bool,
) -> None:
    """Save to a temporary sibling, check it there, and only then move it (and its sidecar)
    into place: a refused export leaves nothing behind."""
    import onnx

    batch = int(example.shape[0])
    tmp = temporary_sibling(path)
    try:
        onnx.save(proto, str(tmp))
        if verify:
            _verify_onnx(tmp, detector, example, path, precision, override)
            if dynamic and batch > 1:  # a backbone that bakes the traced batch in fails here
                _verify_onnx(tmp, detector, example[:1], path, precision, override)
        install_engine_file(tmp, path, metadata)
    finally:
        tmp.unlink(missing_ok=True)


def parity(
    labels: np.ndarray, confidence: np.ndarray, ref_labels: np.ndarray, ref_confidence: np.ndarray
) -> dict[str, float]:
    """Label agreement and confidence differences of one output against a reference."""
    diff = np.abs(np.asarray(confidence, np.float32) - np.asarray(ref_confidence, np.float32))
    return {
        "label_agreement": float(np.mean(np.asarray(labels) == np.asarray(ref_labels))),
        "confidence_mean_abs_diff": float(diff.mean()),
        "confidence_max_abs_diff": float(diff.max()),
    }


def parity_ok(stats: dict[str, float], precision: str) -> bool:
    """The acceptance rule for ``precision`` against the float32 reference."""
    if precision == "fp16":
        return (
            stats["label_agreement"] >= FP16_MIN_LABEL_AGREEMENT
            and stats["confidence_mean_abs_diff"] <= FP16_MAX_MEAN_CONFIDENCE_DIFF
        )
    return stats["label_agreement"] >= 0.999 and stats["confidence_max_abs_diff"] <= 1e-3


def verify_outputs(
    labels: Any,
    confidence: Any,
    detector: FusedDetector,
    example: torch.Tensor,
    name: PathLike,
    what: str,
    precision: str,
    override: str,
) -> dict[str, float]:
    """The one export check: an engine's ``(labels, confidence)`` for ``example`` against the
    float32 eager detector (:func:`parity_ok`: fp32 confidence within 1e-3 and labels 99.9 %,
    fp16 mean confidence within 0.01 and labels 99 %). ExportVerificationError naming
    ``override`` when it disagrees; returns the parity figures."""
    import torch

    with torch.no_grad():
        ref_labels, ref_conf = detector(example)
    stats = parity(
        np.asarray(labels),
        np.asarray(confidence, np.float32),
        ref_labels.cpu().numpy(),
        ref_conf.float().cpu().numpy(),
    )
    if not parity_ok(stats, precision):
        raise ExportVerificationError(
            f"{name}: {what} ({precision}) disagrees with the float32 eager detector "
            f"(confidence mean diff {stats['confidence_mean_abs_diff']:.2e}, max "
            f"{stats['confidence_max_abs_diff']:.2e}, labels agree "
            f"{stats['label_agreement']:.4%}); "
            f"refused, nothing written. To use it anyway: {override}"
        )
    return stats


def run_onnx(onnx_path: PathLike, example: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, confidence)`` of an ONNX file for ``example`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels, confidence = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.cpu().numpy()})
    return labels, confidence


def _verify_onnx(
    onnx_path: Path,
    detector: FusedDetector,
    example: torch.Tensor,
    name: Path,
    precision: str,
    override: str = NO_VERIFY_FLAG,
) -> None:
    labels, confidence = run_onnx(onnx_path, example)
    verify_outputs(
        labels, confidence, detector, example, name, "ONNX Runtime", precision, override
    )


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
    extra_metadata: Optional[dict[str, Any]] = None,
    verify: bool = True,
    progress: Optional[Callable[[str], None]] = print,
    workspace_gib: float = 4.0,
    device: int = 0,
    override: str = NO_VERIFY_FLAG,
) -> tuple[Path, dict[str, Any]]:
    """Build the engine for ``runtime`` at ``path`` with its sidecar; returns (path, metadata).

    onnxruntime: ``path`` is the .onnx (fp32, or the typed fp16 graph). tensorrt: the ONNX
    of the same precision goes next to it (``path.with_suffix(".onnx")``) and TensorRT builds
    it strongly typed into ``path`` (.engine/.plan). torch-tensorrt: the detector compiled by
    torch-tensorrt's dynamo path, saved as an exported program (.ep). torch: ``path`` is a
    fused bundle ``NAME.safetensors`` + ``NAME.json``.

    ``verify`` (default): the built output is compared with the float32 eager detector before
    anything is moved into place (:func:`verify_outputs`; ONNX Runtime for the onnxruntime and
    tensorrt ONNX, the compiled module for torch-tensorrt; the torch bundle is the eager
    detector). A refusal names ``override``.
    """
    path = Path(path)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    check_precision(precision)
    # What every builder takes, and what the verifying ones (all but the torch bundle) add.
    common: dict[str, Any] = {"batch": batch, "precision": precision, "model_hash": model_hash}
    common["extra_metadata"] = extra_metadata
    checked = {"verify": verify, "override": override}
    if runtime == "onnxruntime":
        if progress:
            progress(f"exporting {precision} ONNX ({height}x{width}) to {path}")
        return export_onnx(detector, path, height, width, opset=opset, **common, **checked)
    if runtime == "tensorrt":
        trt = {"opset": opset, "progress": progress, "workspace_gib": workspace_gib}
        return _export_tensorrt(
            detector, path, height, width, device=device, **trt, **common, **checked
        )
    if runtime == "torch-tensorrt":
        from .torch_tensorrt_engine import build_torch_tensorrt

        return build_torch_tensorrt(
            detector, path, height, width, progress=progress, device=device, **common, **checked
        )
    from .torch_engine import save_bundle

    if progress:
        progress(f"writing torch bundle to {path}")
    return save_bundle(path, detector, height, width, **common)


def _export_tensorrt(
    detector: FusedDetector,
    path: Path,
    height: int,
    width: int,
    *,
    opset: int,
    progress: Optional[Callable[[str], None]],
    workspace_gib: float,
    device: int,
    batch: int,
    precision: str,
    model_hash: Optional[str],
    extra_metadata: Optional[dict[str, Any]],
    verify: bool,
    override: str,
) -> tuple[Path, dict[str, Any]]:
    """The ONNX of the same precision next to ``path``, then TensorRT's engine built from it."""
    from .tensorrt_engine import build_tensorrt_engine

    onnx_path = path.with_suffix(".onnx")
    if progress:
        progress(f"exporting {precision} ONNX ({height}x{width}) for {onnx_path}")
    # The ONNX goes to a staged name and replaces an existing onnx_path only once the
    # engine is built: a failed build leaves the user's files as they were.
    staged = temporary_sibling(onnx_path.with_name(f".{onnx_path.stem}.staged.onnx"))
    try:
        # TensorRT builds for one fixed shape (no optimisation profiles): batch N pads.
        _, onnx_meta = export_onnx(
            detector,
            staged,
            height,
            width,
            batch=batch,
            opset=opset,
            precision=precision,
            model_hash=model_hash,
            extra_metadata=extra_metadata,
            verify=verify,
            dynamic_batch=False,
            override=override,
        )
        result = build_tensorrt_engine(
            staged,
            path,
            tensorrt_metadata(onnx_meta, device),
            workspace_gib=workspace_gib,
            progress=progress,
            device=device,
        )
        os.replace(staged, onnx_path)  # the file, then its sidecar (as install_engine_file)
        os.replace(sidecar_path(staged), sidecar_path(onnx_path))
    finally:
        staged.unlink(missing_ok=True)
        sidecar_path(staged).unlink(missing_ok=True)
    return result


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
