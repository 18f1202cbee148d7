"""External oracle: our SegFormer vs transformers' ``SegformerForSemanticSegmentation``.

A randomly initialised transformers model (B0 and B2 hyper-parameters, 19 labels; built
locally, nothing downloaded) is converted to our layout; both must produce the same 1/4
resolution logits (max |diff| < 1e-4, float32) on random images, including sizes that are not
multiples of 32. transformers is a test-only dependency.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ros2_fed.backbones import CITYSCAPES_CLASSES, SegFormer, detect_format, load_backbone
from ros2_fed.backbones.base import load_strict
from ros2_fed.backbones.cli_convert import main as fed_convert
from ros2_fed.backbones.convert import hf_config_to_ours, hf_to_ours
from ros2_fed.backbones.loader import build_backbone

# ros2_fed never imports transformers: only this oracle needs it
transformers = pytest.importorskip("transformers")

SIZES = [(64, 96), (70, 130), (128, 128)]
HF_VARIANTS = {
    "b0": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b2": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
}


@functools.lru_cache(maxsize=2)
def random_hf_model(variant: str) -> torch.nn.Module:
    """transformers SegFormer with O(1) activations: fan-in scaled weights, random norms and BN
    stats.

    The library's own init (std 0.02) gives near-zero logits that would hide mistakes; this one
    makes every tensor matter (a wrong fusion order or q/k/v packing shows up as O(1) errors).
    """
    config = transformers.SegformerConfig(
        num_labels=19,
        id2label=dict(enumerate(CITYSCAPES_CLASSES)),
        label2id={n: i for i, n in enumerate(CITYSCAPES_CLASSES)},
        **HF_VARIANTS[variant],
    )
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


@pytest.fixture(scope="module", params=["b0", "b2"])
def pair(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, SegFormer]:
    hf = random_hf_model(request.param)
    config = hf_config_to_ours(hf.config.to_dict())
    ours = build_backbone("segformer", config)
    load_strict(
        ours,
        hf_to_ours(hf.state_dict(), len(config["embed_dims"])),
        source="transformers state dict",
    )
    return request.param, hf, ours.eval()


def hf_logits(hf: torch.nn.Module, images: torch.Tensor, ours: SegFormer) -> torch.Tensor:
    """transformers expects normalised ``pixel_values``; ours normalises 0..255 RGB itself."""
    return hf(pixel_values=(images.float() - ours.mean) / ours.std).logits


def test_logits_match_transformers(pair: tuple[str, torch.nn.Module, SegFormer]) -> None:
    variant, hf, ours = pair
    assert ours.feature_channels == HF_VARIANTS[variant]["decoder_hidden_size"]
    g = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        batch = 2 if variant == "b0" else 1
        images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
        with torch.no_grad():
            expected = hf_logits(hf, images, ours)
            logits, features = ours(images)
        assert logits.shape == (batch, 19, math.ceil(h / 4), math.ceil(w / 4)) == expected.shape
        assert features.shape == (batch, ours.feature_channels, math.ceil(h / 4), math.ceil(w / 4))
        assert expected.abs().max() > 0.5, "oracle logits are not degenerate"
        diff = (logits - expected).abs().max().item()
        assert diff < 1e-4, f"{variant} {h}x{w}: max |diff| {diff}"


def test_float_input_equals_uint8(pair: tuple[str, torch.nn.Module, SegFormer]) -> None:
    _, _, ours = pair
    images = torch.randint(0, 256, (1, 3, 36, 52), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(ours(images)[0], ours(images.float())[0])


def test_hf_folder_round_trip(tmp_path: Path) -> None:
    """save_pretrained folder (the on-disk names of hub checkpoints) -> load_backbone ->
    fed_convert.

    (The oracle test above converts the in-memory state dict, which transformers 5 names
    differently, so both spellings are covered.)
    """
    hf = random_hf_model("b0")
    hf.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file() and detect_format(
        tmp_path / "hf"
    ) == "hf"
    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as handle:
        assert "segformer.encoder.block.0.0.attention.self.query.weight" in set(handle.keys())
    model = load_backbone(tmp_path / "hf")
    assert model.class_names == list(CITYSCAPES_CLASSES) and model.meta["source"]["format"] == "hf"
    # transformers' LayerNorms use the torch default
    assert model.backbone.layers[0][0].norm.eps == 1e-5
    images = torch.randint(0, 256, (1, 3, 70, 130), dtype=torch.uint8)
    with torch.no_grad():
        expected = hf_logits(hf, images, model)
        assert (model(images)[0] - expected).abs().max() < 1e-4
    assert fed_convert([str(tmp_path / "hf"), str(tmp_path / "sf_b0")]) == 0
    converted = load_backbone(tmp_path / "sf_b0")
    with torch.no_grad():
        assert (converted(images)[0] - expected).abs().max() < 1e-4
    assert (
        converted.meta["source"]["format"] == "hf"
        and converted.meta["inference"]["mode"] == "slide"
    )
