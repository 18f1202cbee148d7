"""Evaluation of FED and the baseline scores on one dataset split (the engine of `fed_eval`).

For every image: backbone logits (whole image, sliding window or TTA), the per-pixel score of
every method (FED-U / FED-C and MSP, max-logit, energy, entropy, SML, MC dropout), resized to
label resolution. Accumulated:

- OOD (label source with an OOD mask): positives = OOD pixels, void ignored, pooled over the
  dataset (exact for small sets, histogram with computed error bounds for large ones);
- IDM (label source with trainIds): positives = in-distribution pixels whose predicted label
  is wrong, void and OOD ignored, metrics per image and averaged over images;
- closed mIoU, and open-mIoU with each method's threshold = mean over images of the
  F1-optimal threshold for "prediction is wrong" (OOD pixels included); a second pass;
- SegmentMeIfYouCan's component metrics (sIoU, PPV, mean F1; ros2_fed.eval.component_metrics)
  at the split's best pixel-F1 threshold, from the exact accumulator's kept scores and each
  image's OOD mask (exact mode only: histograms keep no per-pixel scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ros2_fed.eval import metrics as M
from ros2_fed.eval.component_metrics import method_components, track_of
from ros2_fed.eval.method_scores import EvalSettings, MethodScores
from ros2_fed.eval.score_scale import PROBABILITY_METHODS, unit_scores

VOID = 255


@dataclass
class EvalSample:
    """What one dataset item contributes: image, trainIds and/or OOD mask (0/1/255)."""

    name: str
    image: np.ndarray
    label: Optional[np.ndarray] = None
    ood: Optional[np.ndarray] = None


@dataclass
class Accumulators:
    ood: dict[str, Any] = field(default_factory=dict)
    idm: dict[str, M.PerImageAverager] = field(default_factory=dict)
    f1: dict[str, list[float]] = field(default_factory=dict)
    reservoir: dict[str, list[np.ndarray]] = field(default_factory=dict)
    ood_truth: list[np.ndarray] = field(default_factory=list)  # every image's OOD mask, in order


class Evaluator:
    """Runs the two passes over a dataset and produces the Table-8-style results."""

    def __init__(
        self,
        backbone: nn.Module,
        feds: dict[str, nn.Module],
        num_classes: int,
        settings: EvalSettings,
        class_mean: Optional[torch.Tensor] = None,
        class_std: Optional[torch.Tensor] = None,
        saved_scores: Optional[Callable[[EvalSample], tuple[np.ndarray, dict]]] = None,
    ) -> None:
        """``saved_scores``: where each image's (prediction, score maps) come from instead of
        running the models (``fed_eval --from-scores``: the maps ``--save-scores`` wrote)."""
        self.saved_scores = saved_scores
        self.backbone = backbone.eval()
        self.num_classes = num_classes
        self.settings = settings
        self.methods = MethodScores(
            self.backbone, {k: v.eval() for k, v in feds.items()}, settings, class_mean, class_std
        )
        self.rng = np.random.default_rng(settings.seed)

    def _make_ood_accumulator(self, exact: bool):
        if exact:
            return M.ExactAccumulator(ignore_index=VOID)
        return M.HistogramAccumulator(bins=self.settings.bins, scale="logit", ignore_index=VOID)

    def evaluate(
        self,
        samples: Callable[[], Iterable[EvalSample]],
        count: int,
        on_figure: Optional[
            Callable[[EvalSample, np.ndarray, dict[str, np.ndarray]], None]
        ] = None,
        progress: bool = True,
        on_image: Optional[Callable[[EvalSample, np.ndarray, dict[str, np.ndarray]], None]] = None,
    ) -> dict[str, Any]:
        """``samples`` is called once per pass and must yield the same images each time;
        ``on_image`` sees every image's prediction and score maps exactly as they are scored."""
        names = self.methods.names
        acc = Accumulators()
        conf = M.ConfusionMatrix(self.num_classes, ignore_index=VOID)
        figures: list[tuple[EvalSample, np.ndarray, dict[str, np.ndarray]]] = []
        exact, has_ood, has_label = self._first_pass(
            samples, count, progress, acc, conf, figures, on_image
        )
        results: dict[str, Any] = {"images": count, "exact": bool(exact), "methods": {}}
        thresholds = {
            n: float(np.nanmean(v)) if v and not np.all(np.isnan(v)) else float("nan")
            for n, v in acc.f1.items()
        }
        for name in names:
            results["methods"][name] = self._method_row(
                acc, name, has_ood, has_label, exact, thresholds
            )
            components = self._components(acc, name, exact)
            if components is not None:
                results["methods"][name]["components"] = components
        if has_ood and not exact and track_of(self.settings.component_track) is not None:
            results.setdefault("notes", []).append(
                "component metrics: not computed (they need the exact mode, --exact)"
            )
        if has_label:
            miou, per_class = conf.miou()
            results["miou"] = float(miou)
            results["per_class_iou"] = [None if math.isnan(v) else float(v) for v in per_class]
            if self.settings.open_miou:
                results["open_miou"] = self._open_miou(samples, count, names, thresholds, progress)
        results["visual_range"] = {n: self._visual_range(acc, n) for n in names}
        if on_figure is not None:
            for sample, pred, maps in figures:
                on_figure(sample, pred, maps)
        return results

    def _first_pass(
        self,
        samples: Callable[[], Iterable[EvalSample]],
        count: int,
        progress: bool,
        acc: Accumulators,
        conf: M.ConfusionMatrix,
        figures: list[tuple[EvalSample, np.ndarray, dict[str, np.ndarray]]],
        on_image: Optional[Callable[[EvalSample, np.ndarray, dict[str, np.ndarray]], None]],
    ) -> tuple[Optional[bool], bool, bool]:
        """Score every image once into the accumulators, the closed-set confusion matrix and the
        figure list; returns (exact, has_ood, has_label). Unset --exact is decided at the first
        image: exact when the whole set is small enough to keep every pixel."""
        exact = self.settings.exact
        has_ood = has_label = False
        for index, sample in enumerate(
            tqdm(samples(), total=count, desc="fed_eval", disable=not progress, dynamic_ncols=True)
        ):
            if exact is None:
                exact = count * sample.image.shape[0] * sample.image.shape[1] <= 40_000_000
            pred, maps = self._run(sample)
            has_ood |= sample.ood is not None
            if sample.ood is not None:
                acc.ood_truth.append(sample.ood)
            has_label |= sample.label is not None
            for name in self.methods.names:
                self._accumulate(acc, name, sample, pred, maps[name], exact)
            if sample.label is not None:
                conf.update(pred, sample.label)
            if index < self.settings.figure_images:
                figures.append((sample, pred, maps))
            if on_image is not None:
                on_image(sample, pred, maps)
        return exact, has_ood, has_label

    def _accumulate(
        self,
        acc: Accumulators,
        name: str,
        sample: EvalSample,
        pred: np.ndarray,
        score: np.ndarray,
        exact: bool,
    ) -> None:
        """One method's score map on one image: the figure reservoir, the pooled OOD metric (OOD
        pixels positive, void ignored), the per-image IDM metric (wrong in-distribution pixels
        positive, void and OOD ignored) and the image's F1-optimal threshold for open-mIoU."""
        self._reserve(acc, name, score)
        if sample.ood is not None:
            acc.ood.setdefault(name, self._make_ood_accumulator(exact)).update(
                unit_scores(score, name in PROBABILITY_METHODS),
                (sample.ood == 1).astype(np.uint8),
                ignore_mask=sample.ood == VOID,
            )
        if sample.label is not None:
            idm_valid = sample.label != VOID
            if sample.ood is not None:
                idm_valid &= sample.ood != 1
            acc.idm.setdefault(name, M.PerImageAverager(ignore_index=VOID)).update(
                score, (pred != sample.label).astype(np.uint8), ignore_mask=~idm_valid
            )
            wrong, valid = self._wrong(sample, pred)
            if valid.any():
                acc.f1.setdefault(name, []).append(
                    M.f1_optimal_threshold(score[valid], wrong[valid])
                )

    @staticmethod
    def _method_row(
        acc: Accumulators,
        name: str,
        has_ood: bool,
        has_label: bool,
        exact: Optional[bool],
        thresholds: dict[str, float],
    ) -> dict[str, Any]:
        """One method's results: OOD metrics (with error bounds when histogrammed), IDM metrics
        and its open-mIoU threshold."""
        row: dict[str, Any] = {}
        if has_ood and name in acc.ood:
            summary = acc.ood[name].summary()
            row["ood"] = {k: summary[k] for k in ("auroc", "ap", "fpr_at_tpr")}
            if not exact:
                row["ood"]["error_bounds"] = {
                    k: v for k, v in summary.items() if k.endswith("error_bound")
                }
        if has_label and name in acc.idm:
            summary = acc.idm[name].summary()
            row["idm"] = {
                k: summary[k] for k in ("auroc", "ap", "fpr_at_tpr", "n_images", "n_skipped")
            }
        row["open_threshold"] = thresholds.get(name, float("nan"))
        return row

    def _components(self, acc: Accumulators, name: str, exact: Optional[bool]) -> Optional[dict]:
        """SegmentMeIfYouCan's component metrics of one method (exact mode): its kept scores
        thresholded at the split's best pixel F1, with the images' OOD masks."""
        if not exact or name not in acc.ood:
            return None
        track = track_of(self.settings.component_track)
        return method_components(acc.ood[name], acc.ood_truth, track, name in PROBABILITY_METHODS)

    def _run(self, sample: EvalSample) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.saved_scores is not None:
            pred, maps = self.saved_scores(sample)
            missing = [n for n in self.methods.names if n not in maps]
            if missing:
                raise ValueError(f"{sample.name}: no saved scores of {', '.join(missing)}")
            return pred, maps
        images = (
            torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)[None].float()
        )
        size = tuple(sample.image.shape[:2])
        logits, maps = self.methods(images, size)
        pred = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        return pred, {k: v.float().numpy() for k, v in maps.items()}

    @staticmethod
    def _wrong(sample: EvalSample, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """'Prediction is wrong' incl. OOD pixels, and where that is defined."""
        ood = sample.ood == 1 if sample.ood is not None else np.zeros(pred.shape, bool)
        valid = (sample.label != VOID) | ood
        return ((pred != sample.label) | ood).astype(np.uint8), valid

    def _open_miou(
        self, samples, count: int, names: list[str], thresholds: dict[str, float], progress: bool
    ) -> dict[str, float]:
        matrices = {
            n: M.ConfusionMatrix(self.num_classes, ignore_index=VOID, open_set=True) for n in names
        }
        for sample in tqdm(
            samples(),
            total=count,
            desc="fed_eval open-mIoU",
            disable=not progress,
            dynamic_ncols=True,
        ):
            if sample.label is None:
                continue
            pred, maps = self._run(sample)
            gt = sample.label.copy()
            if sample.ood is not None:
                gt[sample.ood == 1] = self.num_classes
            for name in names:
                if not math.isnan(thresholds.get(name, float("nan"))):
                    matrices[name].update_open(pred, gt, maps[name], thresholds[name])
        return {
            n: float(matrices[n].miou()[0])
            if not math.isnan(thresholds.get(n, float("nan")))
            else float("nan")
            for n in names
        }

    def _reserve(self, acc: Accumulators, name: str, score: np.ndarray) -> None:
        per_image = max(1, self.settings.reservoir // 50)
        flat = score.reshape(-1)
        pick = self.rng.choice(flat.size, size=min(per_image, flat.size), replace=False)
        acc.reservoir.setdefault(name, []).append(flat[pick])

    @staticmethod
    def _visual_range(acc: Accumulators, name: str) -> list[float]:
        """Dataset-wide 1st/99th percentile of a method's score (figure normalisation)."""
        values = np.concatenate(acc.reservoir[name]) if acc.reservoir.get(name) else np.zeros(1)
        lo, hi = np.percentile(values, [1, 99])
        return [float(lo), float(hi if hi > lo else lo + 1e-6)]
