"""Export a FusedDetector: ONNX (+ sidecar), TensorRT engine (+ sidecar), or a torch bundle.

ONNX: ``torch.onnx.export(dynamo=False, opset_version=18)`` of the whole fused graph with a
fixed input shape (B, H, W, 3) uint8 and outputs ``labels`` (B, H, W) uint8 and
``confidence`` (B, H, W) float32/float16. The TorchScript exporter is used because it is fast
and handles FED and our post-processing exactly (see docs/architecture.md, Export notes).
The first op casts the uint8 image to float (TensorRT's importer wants that before any other
layer). ``precision="fp16"`` writes a typed mixed-precision graph: the backbone computes in
float16, FED and everything after it in float32, with explicit Casts between
(:mod:`.mixed_precision`); TensorRT builds it strongly typed and ONNX Runtime runs it on CPU.
``precision="int8"`` quantises the backbone of the float32 graph with ONNX Runtime's static
quantisation on calibration images (Q/DQ nodes, :mod:`.int8`): FED and everything after it stay
float32; the Q/DQ scheme is the one of the runtime the engine is for (ONNX Runtime's CPU
kernels, or TensorRT's symmetric explicit quantisation), and the export is verified on a
calibration image. The ONNX file carries the model hash in its ``metadata_props`` too, so
a sidecar paired with the wrong file is caught on open. Files are written to a temporary name
and renamed, so a crash never leaves a half-written engine under the final name. The sidecar
is filled by :mod:`.metadata`, the check against eager is :mod:`.verify`.

torch is imported inside the functions: ``onnx_engine`` imports this module, and opening an
ONNX engine must not load torch.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ros2_fed.fileio import temporary_sibling

from .base import (
    INPUT_NAME,
    OUTPUT_NAMES,
    RUNTIMES,
    EngineError,
    PathLike,
    install_engine_file,
    sidecar_path,
)
from .int8 import (
    SCHEMES,
    CalibrationSet,
    calibration_batches,
    calibration_for,
    quantize_backbone,
    scheme_for,
)
from .metadata import ONNX_META_PREFIX, check_precision, sidecar_metadata, tensorrt_metadata
from .runtimes import record, resolve
from .verify import NO_VERIFY_FLAG, verification_example, verify_onnx

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ros2_fed.detector import FusedDetector

CalibrationLike = Union[CalibrationSet, PathLike]

DEFAULT_OPSET = 18


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
    calibration: Optional[CalibrationLike] = None,
    quantize_for: str = "onnxruntime",
) -> tuple[Path, dict[str, Any]]:
    """Export the fused graph to ``path`` (.onnx) and write ``path.json``; returns (path,
    metadata).

    ``batch`` > 1 (one frame per camera): by default the graph takes any batch from 1 to
    ``batch`` (``dynamic_batch``), so a batch with fewer new frames costs fewer frames, not
    padding (ONNX Runtime on a CPU: batching saves nothing per frame, padding costs in full).

    ``precision``: "fp32", "fp16" (float16 backbone, float32 FED; :mod:`.mixed_precision`) or
    "int8" (backbone quantised on ``calibration`` -- a :class:`.int8.CalibrationSet` or a
    folder -- in the Q/DQ scheme of ``quantize_for``; :mod:`.int8`). The file is checked with
    ``onnx.checker`` before it is moved into place. ``verify`` (default) also runs it once in
    ONNX Runtime (CPU) against the float32 eager detector on the seeded noise frames it was
    traced on (:func:`.verify.verification_example`; int8: on calibration frames) and refuses
    an export that disagrees (:func:`.verify.verify_outputs`; the error names ``override``, how
    to skip the check). The sidecar records ``"verified"`` and the figures (``"verification"``).
    """
    import torch

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX exports must end in .onnx")
    check_precision(precision)
    calibration = _int8_calibration(precision, calibration, quantize_for)
    path.parent.mkdir(parents=True, exist_ok=True)
    detector = detector.freeze()
    device = next(iter(detector.parameters()), torch.empty(0)).device
    example = verification_example(batch, height, width, device)
    dynamic = batch > 1 if dynamic_batch is None else bool(dynamic_batch)
    fields = {"precision": precision, "height": height, "width": width, "batch": batch}
    fields.update(model_hash=model_hash, opset=opset, extra=extra_metadata, dynamic_batch=dynamic)
    metadata = sidecar_metadata(detector, runtime="onnxruntime", **fields)
    metadata["verified"] = bool(verify)
    proto = _checked_onnx_proto(detector, example, path, precision, opset, dynamic, metadata)
    if calibration is not None:
        proto, example = _quantized(proto, path, metadata, calibration, quantize_for, example)
    _write_verified_onnx(
        proto, path, metadata, detector, example, precision, override, verify, dynamic
    )
    return path, metadata


def _int8_calibration(
    precision: str, calibration: Optional[CalibrationLike], quantize_for: str
) -> Optional[CalibrationSet]:
    """The calibration set of an int8 export (None for fp32/fp16); ValueError when int8 has
    none or targets a runtime without a Q/DQ scheme, or a set is given for another precision."""
    if precision == "int8":
        scheme_for(quantize_for)
    return calibration_for(precision, calibration)


def _quantized(
    proto: Any,
    path: Path,
    metadata: dict[str, Any],
    calibration: CalibrationSet,
    quantize_for: str,
    example: torch.Tensor,
) -> tuple[Any, torch.Tensor]:
    """The float32 graph with its backbone quantised (the sidecar gets the ``int8`` summary and
    the calibration fingerprint), and the calibration frames the export is verified on: a
    random image is far outside the calibrated ranges, the check is about the camera's
    images."""
    import onnx
    import torch

    batch, height, width = (int(v) for v in example.shape[:3])
    quantized, summary = quantize_backbone(
        proto, calibration, height=height, width=width, batch=batch, runtime=quantize_for
    )
    quantized.producer_name = proto.producer_name
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(proto.metadata_props)
    try:
        onnx.checker.check_model(quantized, full_check=True)
    except Exception as exc:
        raise EngineError(f"{path}: the int8 graph fails onnx.checker: {exc}") from exc
    metadata["int8"] = summary
    metadata["calibration_fingerprint"] = calibration.fingerprint
    frames = next(calibration_batches(calibration, height, width, batch))
    return quantized, torch.from_numpy(frames).to(example.device)


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

    graph = export_graph(detector, "fp32" if precision == "int8" else precision)
    try:
        proto = _export_to_proto(graph, example, opset, dynamic)
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
            stats = verify_onnx(tmp, detector, example, path, precision, override)
            metadata["verification"] = {"checked_in": "onnxruntime", "frames": batch, **stats}
            if dynamic and batch > 1:  # a backbone that bakes the traced batch in fails here
                verify_onnx(tmp, detector, example[:1], path, precision, override)
        install_engine_file(tmp, path, metadata)
    finally:
        tmp.unlink(missing_ok=True)


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
    calibration: Optional[CalibrationLike] = None,
) -> tuple[Path, dict[str, Any]]:
    """Build the engine for ``runtime`` at ``path`` with its sidecar; returns (path, metadata).

    onnxruntime: ``path`` is the .onnx (fp32, the typed fp16 graph, or the int8 Q/DQ graph
    quantised on ``calibration``; int8 is built for onnxruntime and tensorrt). tensorrt: the ONNX
    of the same precision goes next to it (``path.with_suffix(".onnx")``) and TensorRT builds
    it strongly typed into ``path`` (.engine/.plan). torch-tensorrt: the detector compiled by
    torch-tensorrt's dynamo path, saved as an exported program (.ep). torch: ``path`` is a
    fused bundle ``NAME.safetensors`` + ``NAME.json``.

    ``verify`` (default): the built output is compared with the float32 eager detector before
    anything is moved into place (:func:`.verify.verify_outputs`; ONNX Runtime for the
    onnxruntime and tensorrt ONNX, the compiled module for torch-tensorrt; the torch bundle is
    the eager detector). A refusal names ``override``.
    """
    path = Path(path)
    _check_runtime_precision(runtime, precision)
    build = resolve(record(runtime).export)  # the runtime record's builder (runtimes.py)
    return build(
        detector,
        path,
        height,
        width,
        batch=batch,
        precision=precision,
        model_hash=model_hash,
        extra_metadata=extra_metadata,
        verify=verify,
        override=override,
        opset=opset,
        calibration=calibration,
        progress=progress,
        workspace_gib=workspace_gib,
        device=device,
    )


# The builders the runtime records name (``export``): each takes every export_engine argument
# and uses its own.


def build_onnx(
    detector: FusedDetector,
    path: Path,
    height: int,
    width: int,
    *,
    progress: Optional[Callable[[str], None]],
    workspace_gib: float,
    device: int,
    **onnx_args: Any,
) -> tuple[Path, dict[str, Any]]:
    """onnxruntime: ``path`` is the .onnx of ``precision`` (int8: quantised on calibration)."""
    if progress:
        progress(f"exporting {onnx_args['precision']} ONNX ({height}x{width}) to {path}")
    return export_onnx(detector, path, height, width, **onnx_args)


def build_torch_tensorrt(
    detector: FusedDetector,
    path: Path,
    height: int,
    width: int,
    *,
    opset: int,
    calibration: Optional[CalibrationLike],
    workspace_gib: float,
    **args: Any,
) -> tuple[Path, dict[str, Any]]:
    """torch-tensorrt: the detector compiled by torch-tensorrt's dynamo path (.ep)."""
    from .torch_tensorrt_engine import build_torch_tensorrt as build

    return build(detector, path, height, width, **args)


def build_torch_bundle(
    detector: FusedDetector,
    path: Path,
    height: int,
    width: int,
    *,
    progress: Optional[Callable[[str], None]],
    **build: Any,
) -> tuple[Path, dict[str, Any]]:
    """torch: a fused bundle ``NAME.safetensors`` + ``NAME.json`` (the eager detector)."""
    from .torch_engine import save_bundle

    bundle = {key: build[key] for key in ("batch", "precision", "model_hash", "extra_metadata")}
    if progress:
        progress(f"writing torch bundle to {path}")
    return save_bundle(path, detector, height, width, **bundle)


def _check_runtime_precision(runtime: str, precision: str) -> None:
    """ValueError for an unknown runtime or precision, or int8 for a runtime without a Q/DQ
    scheme (torch, torch-tensorrt)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    check_precision(precision)
    if precision == "int8" and runtime not in SCHEMES:
        raise ValueError(f"int8 engines are built for {sorted(SCHEMES)}, not {runtime}")


def build_tensorrt(
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
    calibration: Optional[CalibrationLike],
) -> tuple[Path, dict[str, Any]]:
    """The ONNX of the same precision next to ``path`` (int8: TensorRT's Q/DQ scheme), then
    TensorRT's engine built from it."""
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
            calibration=calibration,
            quantize_for="tensorrt",
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
