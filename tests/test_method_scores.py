"""fed_eval's per-method scores: FED's SML post-processing at image resolution."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ros2_fed.eval.method_scores import EvalSettings, MethodScores
from ros2_fed.fed import FEDConfig, FlowEneDet
from ros2_fed.fed.postprocess import make_postprocess


class QuarterLogits(nn.Module):
    """A stand-in backbone: smooth random logits at 1/4 of the image, no features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = F.avg_pool2d(images / 64.0, 4)
        return 4 * self.proj(small), small


def test_fed_sml_postprocess_runs_at_image_resolution() -> None:
    torch.manual_seed(0)
    backbone = QuarterLogits().eval()
    fed = FlowEneDet(FEDConfig(num_classes=5, blocks=2, kernel=3)).eval()
    images = torch.rand(1, 3, 64, 96) * 255
    settings = EvalSettings(fed_postprocess="sml", mcd_passes=0)
    _, maps = MethodScores(backbone, {"FED-U": fed}, settings, None, None)(images, (64, 96))
    with torch.no_grad():
        logits, _ = backbone(images)
        up = F.interpolate(logits, size=(64, 96), mode="bilinear", align_corners=False)
        p = F.interpolate(fed.p_wrong(logits), size=(64, 96), mode="bilinear", align_corners=False)
        expected = make_postprocess("sml")(p, up.argmax(1))[0, 0]
    torch.testing.assert_close(maps["FED-U"], expected, rtol=0, atol=1e-6)


def test_multi_scale_fed_averages_its_rates() -> None:
    """fed_extra_rates=(0.5,): FED also runs on logits upsampled to half the image, its score
    resampled to 1/4 and averaged with the native one."""
    torch.manual_seed(1)
    backbone = QuarterLogits().eval()
    fed = FlowEneDet(FEDConfig(num_classes=5, blocks=2, kernel=3)).eval()
    images = torch.rand(1, 3, 64, 96) * 255
    settings = EvalSettings(fed_postprocess="none", mcd_passes=0, fed_extra_rates=(0.5,))
    _, maps = MethodScores(backbone, {"FED-U": fed}, settings, None, None)(images, (64, 96))
    with torch.no_grad():
        logits, _ = backbone(images)
        half = F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
        p_half = F.interpolate(fed.p_wrong(half), size=(16, 24), mode="bilinear")
        p = (fed.p_wrong(logits) + p_half) / 2
        expected = F.interpolate(p, size=(64, 96), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(maps["FED-U"], expected, rtol=0, atol=1e-6)
