"""The one check every engine build passes: its output against the float32 eager detector.

Why its own module: the ONNX export, the TensorRT build and the torch-tensorrt compile all
refuse an engine that disagrees with eager by the same rule (:func:`parity_ok`) and name the
same override; keeping the rule here lets each builder import it without importing the others.
torch and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import INPUT_NAME, OUTPUT_NAMES, EngineError, PathLike

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ros2_fed.detector import FusedDetector

# fp16 graph vs the fp32 eager detector: what an export must meet (and the tests check).
FP16_MIN_LABEL_AGREEMENT = 0.99
FP16_MAX_MEAN_CONFIDENCE_DIFF = 0.01
# int8 graph (quantised backbone, float32 FED) vs the fp32 eager detector on a calibration
# image. The default model measured 99.5 % label agreement and 0.002 mean confidence difference
# on held-out synthroad frames (docs/int8.md); the rule leaves room for harder scenes but
# refuses a broken quantisation (a wrong range or scheme flips whole regions).
INT8_MIN_LABEL_AGREEMENT = 0.98
INT8_MAX_MEAN_CONFIDENCE_DIFF = 0.02
# Every engine build compares its output with the float32 eager detector (verify_outputs);
# the override a refusal names: the CLIs' flag, or for the cache (fed_node) the environment.
NO_VERIFY_FLAG = "--no-verify"
VERIFY_ENV = "ROS2_FED_VERIFY"  # "0": the engine cache builds without the check
CACHE_OVERRIDE = (
    f"{VERIFY_ENV}=0 in the environment of fed_node / the cache's user, or "
    f"{NO_VERIFY_FLAG} for fed_export and fed_bag_eval"
)


class ExportVerificationError(EngineError):
    """A built engine's output disagrees with the float32 eager detector; nothing was installed."""


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
    if precision == "int8":
        return (
            stats["label_agreement"] >= INT8_MIN_LABEL_AGREEMENT
            and stats["confidence_mean_abs_diff"] <= INT8_MAX_MEAN_CONFIDENCE_DIFF
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
    fp16 mean confidence within 0.01 and labels 99 %, int8 mean confidence within 0.02 and
    labels 98 %). ExportVerificationError naming
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


def verify_onnx(
    onnx_path: PathLike,
    detector: FusedDetector,
    example: torch.Tensor,
    name: PathLike,
    precision: str,
    override: str = NO_VERIFY_FLAG,
) -> None:
    """:func:`verify_outputs` of an ONNX file run in ONNX Runtime (CPU)."""
    labels, confidence = run_onnx(onnx_path, example)
    verify_outputs(
        labels, confidence, detector, example, name, "ONNX Runtime", precision, override
    )
