"""Scoring replayed frames exactly the way ``fed_eval`` scores a dataset.

:class:`Scorer` is the single pass of ``training.evaluation.Evaluator.evaluate`` (without the
open-mIoU second pass), fed with score maps from anywhere:

- the node's own output: score = ``1 - confidence`` (higher = more likely wrong), labels = the
  node's segmentation;
- the reference methods (FED from the checkpoints in torch, MSP, max-logit, energy, entropy,
  SML, MC dropout) from ``ros2_fed.eval.method_scores.MethodScores`` on the decoded bag frames
  (:class:`ReferenceScores`).

Same accumulators, same masks, same rules: OOD pooled over pixels (void ignored; exact when
frames x pixels <= 4e7, else histograms), IDM per image (void and OOD ignored; images without
a wrong pixel skipped) and averaged, closed mIoU from the confusion matrix, and (exact mode)
SegmentMeIfYouCan's component metrics at the best pixel-F1 threshold
(``ros2_fed.eval.component_metrics``). So a report's numbers equal ``fed_eval``'s on the same
frames (the tests check it against the Evaluator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ros2_fed.eval import metrics as M
from ros2_fed.eval.alert_metrics import largest_object_pixels
from ros2_fed.eval.component_metrics import method_components, track_of
from ros2_fed.eval.score_scale import PROBABILITY_METHODS, unit_scores
from ros2_fed.fingerprint import check_backbone, fingerprint_of
from ros2_fed.logit_statistics import read_statistics_file, statistics_from_metadata

VOID = 255
EXACT_PIXEL_LIMIT = 40_000_000  # Evaluator's rule: exact pooled OOD metrics up to this many pixels


@dataclass
class FrameStat:
    """Per-frame numbers for the timeline and for picking the best / worst frames."""

    index: int
    stamp_ns: int
    mean_confidence: float
    uncertain_fraction: float  # confidence < the alert threshold, whole frame
    wrong_fraction: Optional[float] = None  # IDM or OOD among valid pixels
    ood_pixels: int = 0
    ood_object_pixels: Optional[int] = (
        None  # largest OOD object (8-connected); None: no OOD ground truth
    )
    auroc: Optional[float] = None  # node score vs "prediction wrong" (IDM or OOD), this frame
    ood_auroc: Optional[float] = None


class Scorer:
    """Accumulates OOD / IDM / mIoU for several methods over a stream of frames.

    ``probability``: names whose scores are probabilities (no squashing for histograms);
    ``exact``: None = exact when ``frames * pixels`` is small (Evaluator's rule).
    """

    def __init__(
        self,
        num_classes: int,
        frames: int,
        frame_pixels: int,
        exact: Optional[bool] = None,
        bins: int = M.DEFAULT_BINS,
        probability: Sequence[str] = (),
        component_track: str = "anomaly",
    ) -> None:
        self.num_classes = int(num_classes)
        self.component_track = component_track  # component_metrics.TRACKS name, or "off"
        self.ood_truth: dict[str, list[np.ndarray]] = {}  # per method: each frame's OOD mask
        self._last_ood: Optional[tuple[np.ndarray, np.ndarray]] = None  # (given, kept copy)
        self.frames = int(frames)
        self.exact = (
            bool(frames * frame_pixels <= EXACT_PIXEL_LIMIT) if exact is None else bool(exact)
        )
        self.bins = bins
        self.probability = set(PROBABILITY_METHODS) | set(probability)
        self.ood: dict[str, Any] = {}
        self.idm: dict[str, M.PerImageAverager] = {}
        self.conf: dict[str, M.ConfusionMatrix] = {}
        self.names: list[str] = []
        self.has_ood = False
        self.has_label = False
        self.frames_by_key: dict[str, int] = {}  # node and reference each score every frame once

    def _ood_accumulator(self) -> Any:
        if self.exact:
            return M.ExactAccumulator(ignore_index=VOID)
        return M.HistogramAccumulator(bins=self.bins, scale="logit", ignore_index=VOID)

    def update(
        self,
        pred: np.ndarray,
        maps: dict[str, np.ndarray],
        label: Optional[np.ndarray],
        ood: Optional[np.ndarray],
        pred_key: str = "node",
    ) -> None:
        """One frame: ``pred`` labels, ``maps`` {method: score HxW, higher = more likely wrong}.

        ``pred_key`` names whose segmentation ``pred`` is (one confusion matrix per key).
        """
        self.frames_by_key[pred_key] = self.frames_by_key.get(pred_key, 0) + 1
        self.has_ood |= ood is not None
        self.has_label |= label is not None
        truth = self._kept_truth(ood)
        for name, score in maps.items():
            if name not in self.names:
                self.names.append(name)
            if ood is not None:
                self.ood_truth.setdefault(name, []).append(truth)
                self.ood.setdefault(name, self._ood_accumulator()).update(
                    unit_scores(score, name in self.probability),
                    (ood == 1).astype(np.uint8),
                    ignore_mask=ood == VOID,
                )
            if label is not None:
                idm_valid = label != VOID
                if ood is not None:
                    idm_valid &= ood != 1
                self.idm.setdefault(name, M.PerImageAverager(ignore_index=VOID)).update(
                    score, (pred != label).astype(np.uint8), ignore_mask=~idm_valid
                )
        if label is not None:
            self.conf.setdefault(
                pred_key, M.ConfusionMatrix(self.num_classes, ignore_index=VOID)
            ).update(pred, label)

    def _kept_truth(self, ood: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """A copy of the frame's OOD mask for the component metrics, one per frame (the node's
        and the reference's updates of a frame pass the same array)."""
        if ood is None or not self.exact:
            return None
        if self._last_ood is None or self._last_ood[0] is not ood:
            self._last_ood = (ood, np.array(ood, copy=True))
        return self._last_ood[1]

    def merge(self, other: "Scorer") -> "Scorer":
        """Add ``other``'s frames (e.g. another camera's): the results then equal one scorer fed
        both streams. Exact OOD pairs are concatenated, histograms summed (an exact scorer's
        pairs binned into a histogram one); IDM per-image lists and confusion matrices added."""
        if (other.num_classes, other.bins) != (self.num_classes, self.bins):
            raise ValueError("cannot merge scorers with different classes or bins")
        if self.exact and not other.exact:
            raise ValueError("an exact scorer cannot take a histogram scorer's counts")
        self.frames += other.frames
        self.probability |= other.probability
        self.names += [name for name in other.names if name not in self.names]
        self.has_ood |= other.has_ood
        self.has_label |= other.has_label
        for key, count in other.frames_by_key.items():
            self.frames_by_key[key] = self.frames_by_key.get(key, 0) + count
        for name, acc in other.ood.items():
            self.ood.setdefault(name, self._ood_accumulator()).merge(acc)
        for name, truths in other.ood_truth.items():
            self.ood_truth.setdefault(name, []).extend(truths)
        for name, avg in other.idm.items():
            self.idm.setdefault(name, M.PerImageAverager(ignore_index=VOID)).merge(avg)
        for key, matrix in other.conf.items():
            empty = M.ConfusionMatrix(self.num_classes, ignore_index=VOID)
            self.conf.setdefault(key, empty).merge(matrix)
        return self

    @property
    def images(self) -> int:
        """Frames scored (not update calls: the node and the reference each score every frame)."""
        return max(self.frames_by_key.values(), default=0)

    def results(self) -> dict[str, Any]:
        """``Evaluator.evaluate``'s result layout: images, exact, methods{name: {ood, idm}},
        miou."""
        out: dict[str, Any] = {"images": self.images, "exact": self.exact, "methods": {}}
        for name in self.names:
            row: dict[str, Any] = {}
            if self.has_ood and name in self.ood:
                summary = self.ood[name].summary()
                row["ood"] = {k: _num(summary[k]) for k in ("auroc", "ap", "fpr_at_tpr")}
                if not self.exact:
                    row["ood"]["error_bounds"] = {
                        k: _num(v) for k, v in summary.items() if k.endswith("error_bound")
                    }
                components = method_components(
                    self.ood[name],
                    self.ood_truth.get(name, []),
                    track_of(self.component_track) if self.exact else None,
                    name in self.probability,
                )
                if components is not None:
                    row["components"] = components
            if self.has_label and name in self.idm:
                summary = self.idm[name].summary()
                row["idm"] = {
                    k: _num(summary[k])
                    for k in ("auroc", "ap", "fpr_at_tpr", "n_images", "n_skipped")
                }
            out["methods"][name] = row
        if self.has_label:
            out["miou"] = {}
            out["per_class_iou"] = {}
            for key, matrix in self.conf.items():
                miou, per_class = matrix.miou()
                out["miou"][key] = _num(miou)
                out["per_class_iou"][key] = [
                    None if math.isnan(v) else float(v) for v in per_class
                ]
        return out


def _num(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def frame_stat(
    index: int,
    stamp_ns: int,
    pred: np.ndarray,
    confidence: np.ndarray,
    label: Optional[np.ndarray],
    ood: Optional[np.ndarray],
    threshold: float,
) -> FrameStat:
    """Per-frame summary of the node's output against the ground truth (if any)."""
    stat = FrameStat(
        index=index,
        stamp_ns=stamp_ns,
        mean_confidence=float(np.mean(confidence)),
        uncertain_fraction=float(np.mean(confidence < threshold)),
    )
    if label is None and ood is None:
        return stat
    wrong = np.zeros(pred.shape, bool)
    valid = np.zeros(pred.shape, bool)
    if label is not None:
        valid |= label != VOID
        wrong |= (pred != label) & (label != VOID)
    if ood is not None:
        is_ood = ood == 1
        wrong |= is_ood
        valid |= is_ood
        stat.ood_pixels = int(is_ood.sum())
        stat.ood_object_pixels = largest_object_pixels(ood)
        if label is None:
            valid &= ood != VOID
    score = 1.0 - confidence.astype(np.float64)
    if valid.any():
        stat.wrong_fraction = float(wrong[valid].mean())
        y = wrong[valid]
        if 0 < y.sum() < y.size:
            stat.auroc = float(M.auroc(score[valid], y))
    if ood is not None:
        v = ood != VOID
        y = ood[v] == 1
        if 0 < y.sum() < y.size:
            stat.ood_auroc = float(M.auroc(score[v], y))
    return stat


# --------------------------------------------------------------------------------------
# Reference methods (FED in torch and the baselines), computed like fed_eval
# --------------------------------------------------------------------------------------


@dataclass
class ReferenceModel:
    """Checkpoints for the reference rows: backbone + named FED checkpoints."""

    backbone: str
    feds: dict[str, str] = field(default_factory=dict)  # name (FED-U / FED-C) -> checkpoint
    fed_postprocess: str = "none"  # must match the engine's post-processing to compare rows
    mcd_passes: int = 8
    stats: Optional[str] = None  # logit statistics JSON (SML); default: from a FED checkpoint
    allow_backbone_mismatch: bool = (
        False  # FEDs / statistics / engine made for another backbone: warn only
    )


class ReferenceScores:
    """``ros2_fed.eval.method_scores.MethodScores`` on camera frames: ``(pred, {method: score})``.

    Lazy: loads the torch models only when the report asks for reference rows.
    """

    def __init__(
        self,
        model: ReferenceModel,
        seed: int = 0,
        engine_metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        """``engine_metadata``: the sidecar of the engine the node rows come from; its backbone
        must be the reference backbone, or the two rows compare different models."""

        import torch

        from ros2_fed.backbones import load_backbone
        from ros2_fed.checkpoint import load_fed
        from ros2_fed.eval.method_scores import EvalSettings, MethodScores

        self.model = model
        self.backbone = load_backbone(model.backbone).eval()
        fingerprint = fingerprint_of(self.backbone)
        allow = model.allow_backbone_mismatch
        if engine_metadata:
            check_backbone(engine_metadata, fingerprint, "the engine", allow)
        feds, metas = {}, []
        for name, path in model.feds.items():
            fed, meta = load_fed(path)
            check_backbone(meta, fingerprint, f"FED checkpoint {path}", allow)
            feds[name] = fed.eval()
            metas.append(meta)
        class_mean = class_std = None
        if model.stats:
            data = read_statistics_file(model.stats)
            check_backbone(data, fingerprint, f"logit statistics {model.stats}", allow)
            class_mean, class_std = torch.tensor(data["mean"]), torch.tensor(data["std"])
        else:
            for meta in metas:
                stats = statistics_from_metadata(meta, "FED checkpoint")
                if stats is not None:
                    class_mean = torch.tensor(stats["mean"])
                    class_std = torch.tensor(stats["std"])
                    break
        self.settings = EvalSettings(
            fed_postprocess=model.fed_postprocess,
            mcd_passes=model.mcd_passes,
            open_miou=False,
            seed=seed,
        )
        self.methods = MethodScores(self.backbone, feds, self.settings, class_mean, class_std)
        self.num_classes = int(getattr(self.backbone, "num_classes", 0) or 0)

    @property
    def names(self) -> list[str]:
        return self.methods.names

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``Evaluator._run`` for one RGB frame."""
        import torch

        images = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        size = tuple(rgb.shape[:2])
        logits, maps = self.methods(images, size)
        pred = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        return pred, {k: v.float().numpy() for k, v in maps.items()}
