"""Per-pixel scores of every method FED is compared with, for one image: FED-U / FED-C and the
baselines (MSP, max-logit, energy, entropy, SML, MC dropout), higher = more likely wrong.

Why here (runtime package) and not in ``training``: both ``fed_eval`` (training) and the rosbag
replay (``ros2_fed.eval.replay``) score frames with exactly this code, and the runtime never
imports the training package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from ros2_fed import scores as S
from ros2_fed.backbones.base import resize
from ros2_fed.backbones.inference import infer, multiscale
from ros2_fed.eval import metrics as M
from ros2_fed.fed.postprocess import make_postprocess
from ros2_fed.names import BASELINE_METHODS


@dataclass
class EvalSettings:
    """How fed_eval and the bag replay score and accumulate (defaults = the paper's protocol)."""

    tta_scales: Sequence[float] = ()  # e.g. (1.0, 0.5, 0.25); empty = single scale
    fed_postprocess: str = "gaussian"  # paper: 7x7 Gaussian (or "sml", "none")
    # multi-scale FED: rates of the image FED also runs at (its native 1/4 always), scores
    # averaged at 1/4; the fused engine's ``fed_extra_rates``
    fed_extra_rates: Sequence[float] = ()
    mcd_passes: int = 8  # 0 disables the MC-dropout baseline
    exact: Optional[bool] = None  # None: exact when the dataset is small, histograms otherwise
    bins: int = M.DEFAULT_BINS
    open_miou: bool = True
    # SegmentMeIfYouCan component metrics (ros2_fed.eval.component_metrics.TRACKS; "off" = none)
    component_track: str = "anomaly"
    figure_images: int = 4
    reservoir: int = 200_000  # pixels kept per method for dataset-wide visual normalisation
    seed: int = 0


class MethodScores:
    """Per-image scores of every method, higher = more likely wrong, at label resolution."""

    def __init__(
        self,
        backbone: nn.Module,
        feds: dict[str, nn.Module],
        settings: EvalSettings,
        class_mean: Optional[torch.Tensor],
        class_std: Optional[torch.Tensor],
    ) -> None:
        self.backbone = backbone
        self.feds = feds
        self.settings = settings
        self.fed_post = make_postprocess(settings.fed_postprocess)
        self.class_mean, self.class_std = class_mean, class_std
        self.mcd = settings.mcd_passes > 0 and any(
            isinstance(m, nn.modules.dropout._DropoutNd) for m in backbone.modules()
        )

    @property
    def names(self) -> list[str]:
        with_sml = self.class_mean is not None  # SML needs the per-class logit statistics
        names = list(self.feds) + [m for m in BASELINE_METHODS if m != "SML" or with_sml]
        if self.mcd:
            names.append("MCD")
        return names

    def _baselines(self, logits: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        out = {
            "MSP": S.msp_score(logits),
            "MLG": S.max_logit_score(logits),
            "ENE": S.energy_score(logits),
            "ENT": S.entropy_score(logits),
        }
        if self.class_mean is not None:
            # SML runs on logits upsampled to the image, as its reference code does: its boundary
            # band (4 px) and dilated smoothing (7x7, dilation 6) are sized in image pixels, and at
            # 1/4 resolution they blur over a quarter of the frame.
            out["SML"] = S.sml_score(
                resize(logits, size), self.class_mean, self.class_std, postprocess=True
            )
        return out

    def _fed(
        self, logits: torch.Tensor, features: torch.Tensor, size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """FED's scores; SML post-processing runs at image resolution (``size``) as the FED
        authors run it: p_wrong and logits upsampled first, boundaries from the argmax. The
        Gaussian stays at FED's resolution (the paper's 7x7 filter is sized for it)."""
        at_image = self.settings.fed_postprocess == "sml"
        labels = (resize(logits, size) if at_image else logits).argmax(dim=1)
        out = {}
        for name, fed in self.feds.items():
            p = self._p_wrong(fed, logits, features if fed.cfg.conditional else None, size)
            out[name] = self.fed_post(resize(p, size) if at_image else p, labels)
        return out

    def _p_wrong(
        self, fed: nn.Module, logits: torch.Tensor, features, size: tuple[int, int]
    ) -> torch.Tensor:
        """FED's p_wrong at the logits' resolution, averaged with its extra rates (of ``size``)."""
        p = fed.p_wrong(logits, features)
        for rate in self.settings.fed_extra_rates:
            at = (max(1, round(size[0] * rate)), max(1, round(size[1] * rate)))
            p = p + resize(fed.p_wrong(resize(logits, at), features), tuple(logits.shape[-2:]))
        return p / (1 + len(self.settings.fed_extra_rates))

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits at label resolution, {method: score (H, W)}) for one image batch of 1."""
        logits, features = infer(self.backbone, images)
        if not self.settings.tta_scales:
            maps = {**self._fed(logits, features, size), **self._baselines(logits, size)}
        else:
            # Paper TTA: scales (1, 1/2, 1/4) with FED's inputs upsampled 4x (FED at 1/4, 1/2, 1 of
            # the image resolution), every score averaged at label resolution. The segmentation
            # itself stays single-scale.
            maps = {}
            for out in multiscale(self.backbone, images, self.settings.tta_scales):
                up = tuple(4 * s for s in out.logits.shape[-2:])
                per_scale = {
                    **self._fed(resize(out.logits, up), resize(out.features, up), size),
                    **self._baselines(out.logits, size),
                }
                for k, v in per_scale.items():
                    v = resize(v, size) / len(self.settings.tta_scales)
                    maps[k] = v if k not in maps else maps[k] + v
        if self.mcd:
            maps["MCD"] = S.mc_dropout_score(
                self.backbone, images, passes=self.settings.mcd_passes, seed=self.settings.seed
            )
        full_logits = resize(logits, size)
        return full_logits, {k: resize(v, size)[0, 0] for k, v in maps.items()}
