"""Backbone shapes (odd sizes included), whole / sliding-window / multi-scale inference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ros2_fed.backbones import (
    DeepLabV3Plus,
    SegFormer,
    infer,
    mit_config,
    multiscale,
    slide_inference,
    tta_inference,
    whole_inference,
)
from ros2_fed.backbones.inference import window_starts


@pytest.fixture(scope="module")
def segformer_b0() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer(**mit_config("b0")).eval()


class LocalModel(nn.Module):
    """A "backbone" whose outputs depend only on each 4x4 cell: slide must equal whole exactly."""

    output_stride = 4

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.avg_pool2d(images.float(), 4, ceil_mode=True)
        return pooled, torch.cat([pooled, pooled**2], dim=1)


def test_deeplab_r101_shapes_and_structure() -> None:
    torch.manual_seed(0)
    model = DeepLabV3Plus().eval()
    assert model.name == "deeplabv3plus_r101-d8" and model.feature_channels == 512
    layer3, layer4 = model.backbone.layer3, model.backbone.layer4
    assert (
        len(layer3) == 23
        and layer3[0].conv2.dilation == (1, 1)
        and layer3[1].conv2.dilation == (2, 2)
    )
    assert layer4[0].conv2.dilation == (2, 2) and layer4[2].conv2.dilation == (4, 4)
    assert model.backbone.layer2[0].conv2.stride == (2, 2) and model.backbone.layer3[
        0
    ].conv2.stride == (1, 1)
    for size in [(70, 130), (33, 47)]:
        images = torch.randint(0, 256, (1, 3, *size), dtype=torch.uint8)
        with torch.no_grad():
            logits, features = model(images)
        expected = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
        assert logits.shape == (1, 19, *expected) and features.shape == (1, 512, *expected), size
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", [(64, 96), (70, 130), (31, 33)])
def test_segformer_shapes(segformer_b0: SegFormer, size: tuple[int, int]) -> None:
    images = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    with torch.no_grad():
        logits, features = segformer_b0(images)
    expected = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert logits.shape == (2, 19, *expected) and features.shape == (2, 256, *expected)


def test_all_mit_variants_build() -> None:
    """Parameter counts of the SegFormer paper's Table 1 (encoder / decoder, millions)."""
    reference = {
        "b0": (3.4, 0.4),
        "b1": (13.1, 0.5),
        "b2": (24.2, 3.2),
        "b3": (44.0, 3.2),
        "b4": (60.8, 3.2),
        "b5": (81.4, 3.2),
    }
    for variant, (encoder, decoder) in reference.items():
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = SegFormer(
                **mit_config(variant, channels=256 if variant in ("b0", "b1") else 768)
            )
        assert model.name == f"segformer_mit-{variant}"
        assert abs(sum(p.numel() for p in model.backbone.parameters()) / 1e6 - encoder) < 0.15, (
            variant
        )
        assert (
            abs(sum(p.numel() for p in model.decode_head.parameters()) / 1e6 - decoder) < 0.15
        ), variant


def mmseg_windows(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """MMSeg 0.x ``slide_inference`` window placement along one axis, verbatim."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    spans = []
    for idx in range(grids):
        start = idx * stride
        end = min(start + crop, size)
        spans.append((max(end - crop, 0), end))
    return spans


def test_window_placement_matches_mmseg() -> None:
    for size in (2048, 1024, 1000, 512, 2052, 100):
        assert window_starts(size, 1024, 768) == mmseg_windows(size, 1024, 768)
    assert window_starts(2048, 1024, 768) == [(0, 1024), (768, 1792), (1024, 2048)]
    for size in (1027, 1999, 2050):  # not a multiple of 4: last window starts on the 1/4 grid
        spans = window_starts(size, 1024, 768)
        assert spans[-1][1] == size and spans[-1][0] % 4 == 0 and size - spans[-1][0] < 1024 + 4
        assert len(spans) == len(mmseg_windows(size, 1024, 768))


@pytest.mark.parametrize("size", [(70, 130), (64, 96), (37, 41)])
def test_slide_stitching_is_exact_for_a_local_model(size: tuple[int, int]) -> None:
    model = LocalModel()
    images = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    whole = whole_inference(model, images)
    slid = slide_inference(model, images, crop_size=(32, 48), stride=(16, 24))
    for a, b in zip(whole, slid):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4)


def test_slide_equals_whole_when_the_window_covers_the_image(segformer_b0: SegFormer) -> None:
    images = torch.randint(0, 256, (1, 3, 70, 130), dtype=torch.uint8)
    with torch.no_grad():
        whole = segformer_b0(images)
        for crop in ((1024, 1024), (72, 132)):
            slid = slide_inference(segformer_b0, images, crop_size=crop, stride=(64, 64))
            assert torch.equal(whole[0], slid[0]) and torch.equal(whole[1], slid[1])
        slid = slide_inference(segformer_b0, images, crop_size=(64, 96), stride=(48, 64))
    assert slid[0].shape == whole[0].shape and slid[1].shape == whole[1].shape
    assert torch.isfinite(slid[0]).all()
    with pytest.raises(ValueError, match="multiples of the output stride"):
        slide_inference(segformer_b0, images, crop_size=(30, 30), stride=(20, 20))


def test_infer_follows_checkpoint_setting() -> None:
    model = LocalModel()
    model.meta = {"inference": {"mode": "slide", "crop_size": [32, 32], "stride": [16, 16]}}
    images = torch.randint(0, 256, (1, 3, 70, 130), dtype=torch.uint8)
    assert torch.allclose(infer(model, images)[0], model(images)[0], atol=1e-4)


def test_tta_single_scale_equals_plain_inference(segformer_b0: SegFormer) -> None:
    images = torch.randint(0, 256, (1, 3, 70, 130), dtype=torch.uint8)
    with torch.no_grad():
        plain = segformer_b0(images)[0]
        assert torch.equal(
            tta_inference(segformer_b0, images, scales=(1.0,), infer_fn=whole_inference), plain
        )


def test_multiscale_outputs_per_scale(segformer_b0: SegFormer) -> None:
    # MiT needs >= 29 px at scale 1/4
    images = torch.randint(0, 256, (1, 3, 130, 198), dtype=torch.uint8)
    with torch.no_grad():
        outs = list(multiscale(segformer_b0, images, infer_fn=whole_inference))
        assert [o.scale for o in outs] == [1.0, 0.5, 0.25]
        assert [o.image_size for o in outs] == [(130, 198), (65, 99), (33, 50)]
        assert [tuple(o.logits.shape[2:]) for o in outs] == [(33, 50), (17, 25), (9, 13)]
        assert all(o.features.shape[1] == 256 for o in outs)
        # the paper's FED TTA: inputs upsampled 4x, so FED runs at 1, 1/2, 1/4 of the
        # image resolution
        up = list(multiscale(segformer_b0, images, infer_fn=whole_inference, upsample=4))
        assert [tuple(o.logits.shape[2:]) for o in up] == [(132, 200), (68, 100), (36, 52)]
        averaged = tta_inference(segformer_b0, images, infer_fn=whole_inference)
        assert averaged.shape == (1, 19, 33, 50)
        manual = (
            sum(
                F.interpolate(o.logits, size=(33, 50), mode="bilinear", align_corners=False)
                for o in outs
            )
            / 3
        )
        assert torch.allclose(averaged, manual, atol=1e-6)
        # any per-scale score can be averaged, e.g. a FED probability map at the image resolution
        scores = tta_inference(
            segformer_b0,
            images,
            infer_fn=whole_inference,
            upsample=4,
            size=(130, 198),
            score_fn=lambda o: o.logits.softmax(1)[:, :1],
        )
        assert scores.shape == (1, 1, 130, 198) and bool(((scores >= 0) & (scores <= 1)).all())


def test_heads_keep_mmseg_dropout_for_mc_dropout(segformer_b0: SegFormer) -> None:
    """MMSeg applies Dropout2d(0.1) before conv_seg: identity in eval, the layer MC dropout
    samples."""
    assert isinstance(segformer_b0.decode_head.dropout, nn.Dropout2d) and not segformer_b0.training
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        eval_logits, features = segformer_b0(images)
        segformer_b0.decode_head.dropout.train()
        try:
            sampled, sampled_features = segformer_b0(images)
        finally:
            segformer_b0.decode_head.dropout.eval()
    assert torch.equal(features, sampled_features) and not torch.equal(eval_logits, sampled)
