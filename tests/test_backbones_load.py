"""Backbone checkpoints: strict MMSeg loading against the real key lists, our format, fed_convert.

The key lists in ``shared/checkpoints/*.keys.json`` were read from the paper's two MMSeg
checkpoints (names and shapes only); a state dict with exactly those keys must load with
``strict=True`` and nothing left over, and any deviation must be reported by key name.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import torch

from ros2_fed.backbones import (
    CITYSCAPES_CLASSES,
    BackboneError,
    DeepLabV3Plus,
    SegFormer,
    backbone_from_mmseg,
    detect_format,
    load_backbone,
    mit_config,
    save_backbone,
)
from ros2_fed.backbones.cli_convert import main as fed_convert

DL_KEYS = "mmseg-deeplabv3plus_r101-d8_512x1024_cityscapes.keys.json"
SF_KEYS = "mmseg-segformer_mit-b2_1024x1024_cityscapes.keys.json"


def shared_checkpoints() -> Path:
    """The MMSeg key lists: ``$ROS2_FED_SHARED/checkpoints`` when set, else the copy in tests/data.

    The copy is byte-identical to ``shared/checkpoints/*.keys.json`` (names and shapes of the
    paper's two OpenMMLab checkpoints), so the strict-load tests always run, never skip.
    """
    if os.environ.get("ROS2_FED_SHARED"):
        env = Path(os.environ["ROS2_FED_SHARED"])
        return env / "checkpoints" if (env / "checkpoints").is_dir() else env
    return Path(__file__).resolve().parent / "data" / "mmseg"


def random_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the names and shapes of a keys.json (BN variances positive)."""
    path = shared_checkpoints() / name
    assert path.is_file(), f"{path} missing"
    # a fresh dict; the tensors are shared, never modified
    return dict(_random_state_dict(str(path)))


@functools.lru_cache(maxsize=2)
def _random_state_dict(path: str) -> dict[str, torch.Tensor]:
    keys = json.loads(Path(path).read_text())["keys"]
    g = torch.Generator().manual_seed(0)
    out = {}
    for key, shape in keys.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


def assert_loaded(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert set(loaded) == set(sd), (
        "every key of the checkpoint is used and every model tensor is set"
    )
    for key, value in sd.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize(
    "name, cls, feature_channels", [(DL_KEYS, DeepLabV3Plus, 512), (SF_KEYS, SegFormer, 256)]
)
def test_mmseg_checkpoint_file_loads_strictly(
    tmp_path: Path, name: str, cls: type, feature_channels: int
) -> None:
    sd = random_state_dict(name)
    checkpoint = {
        "meta": {
            "CLASSES": list(CITYSCAPES_CLASSES),
            "PALETTE": [[i, i, i] for i in range(19)],
            "iter": 80000,
        },
        "state_dict": {
            **sd,
            "auxiliary_head.conv_seg.weight": torch.zeros(19, 256, 1, 1),
            "auxiliary_head.conv_seg.bias": torch.zeros(19),
        },
    }
    path = tmp_path / "model.pth"
    torch.save(checkpoint, path)
    assert detect_format(path) == "mmseg"
    model = load_backbone(path)
    assert isinstance(model, cls) and not model.training
    assert model.num_classes == 19 and model.feature_channels == feature_channels
    assert_loaded(model, sd)
    assert model.meta["palette"][3] == [3, 3, 3] and model.class_names == list(CITYSCAPES_CLASSES)
    if cls is SegFormer:
        assert model.name == "segformer_mit-b2" and model.meta["inference"]["mode"] == "slide"
        assert model.backbone.layers[0][0].norm.eps == 1e-6  # MMSeg MiT LayerNorm eps
    else:
        assert model.name == "deeplabv3plus_r101-d8" and model.meta["inference"]["mode"] == "whole"


def test_segformer_errors_name_the_key() -> None:
    sd = random_state_dict(SF_KEYS)
    bad_shape = dict(sd)
    bad_shape["backbone.layers.1.1.0.attn.attn.in_proj_weight"] = torch.zeros(384, 127)
    with pytest.raises(
        BackboneError, match=r"backbone\.layers\.1\.1\.0\.attn\.attn\.in_proj_weight.*\(384, 127\)"
    ):
        backbone_from_mmseg({"state_dict": bad_shape})
    missing = {k: v for k, v in sd.items() if k != "decode_head.fusion_conv.bn.running_var"}
    with pytest.raises(
        BackboneError, match=r"missing keys \(1\): decode_head\.fusion_conv\.bn\.running_var"
    ):
        backbone_from_mmseg(missing)
    extra = {**sd, "backbone.layers.0.1.0.attn.extra.weight": torch.zeros(3)}
    with pytest.raises(
        BackboneError,
        match=r"unexpected keys \(1\): backbone\.layers\.0\.1\.0\.attn\.extra\.weight",
    ):
        backbone_from_mmseg(extra)
    no_head = {k: v for k, v in sd.items() if k != "decode_head.conv_seg.weight"}
    with pytest.raises(BackboneError, match=r"missing key decode_head\.conv_seg\.weight"):
        backbone_from_mmseg(no_head)


def test_deeplab_errors_name_the_key() -> None:
    sd = random_state_dict(DL_KEYS)
    bad = dict(sd)
    bad["decode_head.sep_bottleneck.0.depthwise_conv.conv.weight"] = torch.zeros(559, 1, 3, 3)
    with pytest.raises(
        BackboneError, match=r"decode_head\.sep_bottleneck\.0\.depthwise_conv\.conv\.weight"
    ):
        backbone_from_mmseg(bad)
    missing = {k: v for k, v in sd.items() if k != "backbone.layer3.22.bn2.running_mean"}
    with pytest.raises(BackboneError, match=r"backbone\.layer3\.22\.bn2\.running_mean"):
        backbone_from_mmseg(missing)


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": argparse.Namespace(x=1)}, path)
    with pytest.raises(BackboneError, match="weights_only"):
        load_backbone(path)


def test_unknown_paths_are_reported(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="not found or not a recognised"):
        load_backbone(tmp_path / "nothing")
    with pytest.raises(BackboneError, match="not a Hugging Face model folder"):
        load_backbone(tmp_path)


def test_our_format_round_trip_and_fed_convert(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = SegFormer(**mit_config("b0", num_classes=5)).eval()
    names = [f"c{i}" for i in range(5)]
    torch.save(
        {"state_dict": model.state_dict(), "meta": {"CLASSES": names}}, tmp_path / "src.pth"
    )
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps([[i, 2 * i, 3 * i] for i in range(5)]))
    rc = fed_convert(
        [
            str(tmp_path / "src.pth"),
            str(tmp_path / "out"),
            "--palette",
            str(palette),
            "--input-size",
            "512",
            "1024",
            "--mode",
            "whole",
        ]
    )
    assert rc == 0
    meta = json.loads((tmp_path / "out.json").read_text())
    assert (
        meta["kind"] == "backbone" and meta["arch"] == "segformer" and meta["class_names"] == names
    )
    assert meta["palette"][2] == [2, 4, 6] and meta["input_size"] == [512, 1024]
    assert meta["mean"] == [123.675, 116.28, 103.53] and meta["std"] == [58.395, 57.12, 57.375]
    assert meta["inference"] == {"mode": "whole"} and meta["feature_channels"] == 256
    assert meta["source"]["format"] == "mmseg"
    reloaded = load_backbone(tmp_path / "out.safetensors")
    assert_loaded(reloaded, model.state_dict())
    image = torch.randint(0, 256, (1, 3, 40, 56), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(reloaded(image)[0], model(image)[0])
    assert fed_convert([str(tmp_path / "src.pth"), str(tmp_path / "out")]) == 1, (
        "refuses to overwrite"
    )
    # our own format converts too (re-export), and save_backbone works on a loaded model
    save_backbone(reloaded, tmp_path / "again")
    assert load_backbone(tmp_path / "again").meta["palette"][2] == [2, 4, 6]


def test_fed_convert_help_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fed_convert(["--help"])
    assert exc.value.code == 0 and "fed_convert" in capsys.readouterr().out
    assert fed_convert([str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 1
    assert "file not found" in capsys.readouterr().err


def test_tinyseg_checkpoints_load_through_the_same_loader(tmp_path: Path) -> None:
    tinyseg = pytest.importorskip("ros2_fed.backbones.tinyseg")
    model = tinyseg.TinySeg().eval()
    tinyseg.save_tinyseg(tmp_path / "tiny", model, input_size=(64, 128))
    loaded = load_backbone(tmp_path / "tiny")
    assert isinstance(loaded, tinyseg.TinySeg) and loaded.meta["input_size"] == [64, 128]
    image = torch.randint(0, 256, (1, 3, 35, 66), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(image)[0], model(image)[0])
