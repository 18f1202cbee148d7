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
