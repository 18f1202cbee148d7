"""The one check every engine build passes: its output against the float32 eager detector.

Why its own module: the ONNX export, the TensorRT build and the torch-tensorrt compile all
refuse an engine that disagrees with eager by the same rule (:func:`parity_ok`, thresholds
below), on the same seeded example (:func:`verification_example`), and name the same override;
keeping the rule here lets each builder import it without importing the others. torch and
onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import INPUT_NAME, OUTPUT_NAMES, EngineError, PathLike

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ros2_fed.detector import FusedDetector

# fp32 graph vs the fp32 eager detector. Both compute in float32 but not in the same order, so
# a pixel whose two best classes tie to ~1e-6 can take the other label; SML's boundary
# suppression and dilated smoothing at image resolution then move the confidence of a band
# around it (one such flip on a 512x1024 frame: up to 355 pixels, 0.07 %, by more than 1e-3,
# the largest by 0.03). The rule reads a share of the pixels, not the single worst one: labels
# agree on >= 99.9 % of them and at most 0.1 % differ in confidence by more than 1e-3 (the
# 99.9th percentile of |confidence diff| <= 1e-3); the maximum is reported, not judged.
FP32_MIN_LABEL_AGREEMENT = 0.999
FP32_MAX_P999_CONFIDENCE_DIFF = 1e-3
# The percentile every rule reports (and the fp32 rule reads), as the inverted CDF: a value
# some pixel has, at or above that of 99.9 % of the pixels.
CONFIDENCE_QUANTILE = 0.999
# fp16 graph vs the fp32 eager detector: what an export must meet (and the tests check).
FP16_MIN_LABEL_AGREEMENT = 0.99
FP16_MAX_MEAN_CONFIDENCE_DIFF = 0.01
# int8 graph (quantised backbone, float32 FED) vs the fp32 eager detector on a calibration
# image. The default model measured 99.5 % label agreement and 0.002 mean confidence difference
# on held-out synthroad frames (docs/int8.md); the rule leaves room for harder scenes but
# refuses a broken quantisation (a wrong range or scheme flips whole regions).
INT8_MIN_LABEL_AGREEMENT = 0.98
INT8_MAX_MEAN_CONFIDENCE_DIFF = 0.02
# The example an fp32/fp16 build is traced and verified on: uniform noise from this seed (every
# class and many class boundaries; the same frames on every start, so a verdict repeats).
VERIFY_SEED = 0
# ONNX Runtime's verification session: deterministic kernels and a fixed thread count.
VERIFY_THREADS = 2
# How many pixel coordinates a refusal names.
NAMED_PIXELS = 5
# Every engine build compares its output with the float32 eager detector (verify_outputs);
# the override a refusal names: the CLIs' flag, or for the cache (fed_node) the environment.
NO_VERIFY_FLAG = "--no-verify"
VERIFY_ENV = "ROS2_FED_VERIFY"  # "0": the engine cache builds without the check
CACHE_OVERRIDE = (
    f"{VERIFY_ENV}=0 in the environment of fed_node / the cache's user, or "
    f"{NO_VERIFY_FLAG} for fed_export and fed_bag_eval"
)


@dataclass(frozen=True)
class Rule:
    """What one precision's output must meet against the float32 reference, per frame."""

    min_label_agreement: float
    statistic: str  # the parity() figure bounded by ``limit``
    limit: float
    text: str  # the rule as a refusal states it


RULES = {
    "fp32": Rule(
        FP32_MIN_LABEL_AGREEMENT,
        "confidence_p999_abs_diff",
        FP32_MAX_P999_CONFIDENCE_DIFF,
        f"labels agree on >= {FP32_MIN_LABEL_AGREEMENT:.1%} of pixels and the "
        f"{CONFIDENCE_QUANTILE * 100:g}th percentile of |confidence diff| <= "
        f"{FP32_MAX_P999_CONFIDENCE_DIFF:g}",
    ),
    "fp16": Rule(
        FP16_MIN_LABEL_AGREEMENT,
        "confidence_mean_abs_diff",
        FP16_MAX_MEAN_CONFIDENCE_DIFF,
        f"labels agree on >= {FP16_MIN_LABEL_AGREEMENT:.0%} of pixels and the mean "
        f"|confidence diff| <= {FP16_MAX_MEAN_CONFIDENCE_DIFF:g}",
    ),
    "int8": Rule(
        INT8_MIN_LABEL_AGREEMENT,
        "confidence_mean_abs_diff",
        INT8_MAX_MEAN_CONFIDENCE_DIFF,
        f"labels agree on >= {INT8_MIN_LABEL_AGREEMENT:.0%} of pixels and the mean "
        f"|confidence diff| <= {INT8_MAX_MEAN_CONFIDENCE_DIFF:g}",
    ),
}


class ExportVerificationError(EngineError):
    """A built engine's output disagrees with the float32 eager detector; nothing was installed."""


def confidence_quantile(diff: np.ndarray) -> float:
    """The :data:`CONFIDENCE_QUANTILE` of ``diff`` (inverted CDF, no interpolation): ``<= t``
    exactly when at most 0.1 % of the values exceed ``t``."""
    flat = np.asarray(diff).ravel()
    return float(np.quantile(flat, CONFIDENCE_QUANTILE, method="inverted_cdf"))


def parity(
    labels: np.ndarray, confidence: np.ndarray, ref_labels: np.ndarray, ref_confidence: np.ndarray
) -> dict[str, float]:
    """Label agreement and confidence differences (mean, 99.9th percentile, max) of one output
    against a reference, over all its pixels."""
    diff = np.abs(np.asarray(confidence, np.float32) - np.asarray(ref_confidence, np.float32))
    return {
        "label_agreement": float(np.mean(np.asarray(labels) == np.asarray(ref_labels))),
        "confidence_mean_abs_diff": float(diff.mean()),
        "confidence_p999_abs_diff": confidence_quantile(diff),
        "confidence_max_abs_diff": float(diff.max()),
    }


def parity_ok(stats: dict[str, float], precision: str) -> bool:
    """The acceptance rule for ``precision`` (:data:`RULES`) against the float32 reference."""
    rule = RULES[precision]
    return (
        stats["label_agreement"] >= rule.min_label_agreement
        and stats[rule.statistic] <= rule.limit
    )


def verification_example(
    batch: int, height: int, width: int, device: Any = None, seed: int = VERIFY_SEED
) -> torch.Tensor:
    """The (batch, height, width, 3) uint8 frames a build is traced and checked on: uniform
    noise drawn on the CPU from ``seed``, so every start and device checks the same frames."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    frames = torch.randint(
        0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=generator
    )
    return frames if device is None else frames.to(device)


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
    float32 eager detector, each frame by :func:`parity_ok` (:data:`RULES`: fp32 labels
    99.9 % and 99.9th percentile of the confidence difference within 1e-3, fp16 labels 99 % and
    mean within 0.01, int8 labels 98 % and mean within 0.02). ExportVerificationError naming
    the frames and pixels that differ and ``override`` when one disagrees; returns the parity
    figures over all frames."""
    import torch

    with torch.no_grad():
        ref_labels, ref_conf = detector(example)
    frames = _as_frames(
        labels, confidence, ref_labels.cpu().numpy(), ref_conf.float().cpu().numpy()
    )
    if frames[0].shape != frames[2].shape or frames[1].shape != frames[3].shape:
        raise ExportVerificationError(
            f"{name}: {what} ({precision}) outputs shapes {frames[0].shape} and "
            f"{frames[1].shape}, the float32 eager detector {frames[2].shape}; refused, nothing "
            f"written. To use it anyway: {override}"
        )
    per_frame = [parity(*frame) for frame in zip(*frames)]
    failed = [i for i, stats in enumerate(per_frame) if not parity_ok(stats, precision)]
    if failed:
        details = "; ".join(
            _frame_report(i, per_frame[i], *(a[i] for a in frames)) for i in failed
        )
        raise ExportVerificationError(
            f"{name}: {what} ({precision}) disagrees with the float32 eager detector on "
            f"example frame(s) {', '.join(map(str, failed))} of {len(per_frame)} (rule: "
            f"{RULES[precision].text}): {details}; refused, nothing written. To use it "
            f"anyway: {override}"
        )
    return parity(*frames)


def _as_frames(*arrays: Any) -> list[np.ndarray]:
    """(labels, confidence, ref_labels, ref_confidence) as (frames, H, W) arrays."""
    out = [np.asarray(a) for a in arrays]
    return [a.reshape((-1,) + a.shape[-2:]) for a in out]


def _frame_report(
    index: int,
    stats: dict[str, float],
    labels: np.ndarray,
    confidence: np.ndarray,
    ref_labels: np.ndarray,
    ref_confidence: np.ndarray,
) -> str:
    """One refused frame in words: its figures, where its labels differ and its largest
    confidence differences are, as (row, col)."""
    diff = np.abs(np.asarray(confidence, np.float32) - np.asarray(ref_confidence, np.float32))
    flipped = np.argwhere(labels != ref_labels)
    worst = np.argsort(diff, axis=None, kind="stable")[::-1][:NAMED_PIXELS]
    where = ", ".join(
        f"({r}, {c}) {diff[r, c]:.2e}" for r, c in zip(*np.unravel_index(worst, diff.shape))
    )
    labels_at = ", ".join(f"({r}, {c})" for r, c in flipped[:NAMED_PIXELS].tolist())
    return (
        f"frame {index}: {len(flipped)} of {labels.size} labels differ"
        f"{' at (row, col) ' + labels_at if labels_at else ''}; {parity_text(stats)}; largest "
        f"confidence diffs at (row, col) {where}"
    )


def parity_text(stats: dict[str, Any]) -> str:
    """:func:`parity` figures in words (refusals and the cache's build log)."""
    return (
        f"labels agree {stats['label_agreement']:.4%}, confidence diff mean "
        f"{stats['confidence_mean_abs_diff']:.2e}, p99.9 {stats['confidence_p999_abs_diff']:.2e}, "
        f"max {stats['confidence_max_abs_diff']:.2e}"
    )


def verification_session_options() -> Any:
    """ONNX Runtime session options of the check: deterministic kernels where ONNX Runtime has
    them, a fixed number of threads (not the machine's core count), sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.use_deterministic_compute = True
    options.intra_op_num_threads = VERIFY_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def run_onnx(onnx_path: PathLike, example: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, confidence)`` of an ONNX file for ``example`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(onnx_path), verification_session_options(), providers=["CPUExecutionProvider"]
    )
    labels, confidence = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.cpu().numpy()})
    return labels, confidence


def verify_onnx(
    onnx_path: PathLike,
    detector: FusedDetector,
    example: torch.Tensor,
    name: PathLike,
    precision: str,
    override: str = NO_VERIFY_FLAG,
) -> dict[str, float]:
    """:func:`verify_outputs` of an ONNX file run in ONNX Runtime (CPU); its figures."""
    labels, confidence = run_onnx(onnx_path, example)
    return verify_outputs(
        labels, confidence, detector, example, name, "ONNX Runtime", precision, override
    )
