"""State-dict conversion: MMSegmentation 0.x and Hugging Face SegFormer -> our layout.

Our layout *is* MMSeg's naming (``backbone.*`` / ``decode_head.*``), so an MMSeg checkpoint
needs no renaming: we only drop ``auxiliary_head.*`` (training-time deep supervision) and infer
the hyper-parameters from tensor shapes. Hugging Face checkpoints are renamed tensor by tensor;
q/k/v are packed into ``in_proj_weight`` as ``nn.MultiheadAttention`` does, Linear weights get
1x1 conv shapes, and the reversed stage order of transformers' ``linear_fuse`` input is folded
into a column permutation. Nothing is left unused: an unknown key is an error that names it.

Everything here is pure tensor bookkeeping (no model construction): ``loader.py`` builds the
model and loads strictly.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import torch

from .base import BackboneError

IGNORED_MMSEG_PREFIXES = ("auxiliary_head.",)
DEFAULT_ASPP_DILATIONS = [1, 12, 24, 36]

StateDict = dict[str, torch.Tensor]


def _need(sd: StateDict, key: str, why: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise BackboneError(f"{source}: missing key {key} (needed to {why})")
    return sd[key]


def _indices(sd: StateDict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over the keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := regex.match(k))})


# ----------------------------------------------------------------------------------- MMSeg
def mmseg_state_dict(checkpoint: Any, source: str = "checkpoint") -> StateDict:
    """The model tensors of an MMSeg 0.x checkpoint: ``state_dict`` without ``auxiliary_head.*``.

    Accepts the full checkpoint dict (``meta``/``optimizer`` are ignored) or a bare state dict;
    a ``module.`` prefix (DataParallel) is stripped.
    """
    if not isinstance(checkpoint, dict):
        raise BackboneError(
            f"{source}: expected a checkpoint dict, got {type(checkpoint).__name__}"
        )
    sd = checkpoint.get("state_dict", checkpoint)
    if not isinstance(sd, dict):
        raise BackboneError(f"{source}: 'state_dict' is not a dict")
    out: StateDict = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            if key in ("meta", "optimizer"):
                continue
            raise BackboneError(f"{source}: entry {key} is not a tensor")
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith(IGNORED_MMSEG_PREFIXES):
            continue
        out[key] = value
    return out


def mmseg_architecture(sd: StateDict, source: str = "checkpoint") -> str:
    """``"segformer"`` or ``"deeplabv3plus"`` from the key names."""
    if "backbone.layers.0.0.projection.weight" in sd:
        return "segformer"
    if "backbone.stem.0.weight" in sd and any(
        k.startswith("decode_head.sep_bottleneck.") for k in sd
    ):
        return "deeplabv3plus"
    raise BackboneError(
        f"{source}: not a supported MMSegmentation model (expected SegFormer/MiT keys "
        "'backbone.layers.0.0.projection.weight' or DeepLabV3+ ResNetV1c keys "
        "'backbone.stem.0.weight' + "
        "'decode_head.sep_bottleneck.*')"
    )


def infer_mmseg_config(sd: StateDict, source: str = "checkpoint") -> tuple[str, dict[str, Any]]:
    """(architecture, hyper-parameters) from the tensor shapes of an MMSeg state dict.

    What shapes cannot tell is taken from the MMSeg configs the paper used (dropout before
    ``conv_seg`` 0.1, used only by MC dropout): MiT strides
    (4, 2, 2, 2) and ``num_heads[i] = embed_dims[i] / embed_dims[0]`` (MMSeg builds stage ``i``
    as ``embed_dims * num_heads[i]`` with ``num_heads[0] = 1`` in every MiT variant); ResNet-D8
    strides (1, 2, 1, 1) / dilations (1, 1, 2, 4) and ASPP dilations (1, 12, 24, 36).
    Pass ``overrides`` to :func:`ros2_fed.backbones.load_backbone` for anything else.
    """
    arch = mmseg_architecture(sd, source)
    seg = _need(sd, "decode_head.conv_seg.weight", "read the number of classes", source)
    num_classes, channels = int(seg.shape[0]), int(seg.shape[1])
    if arch == "segformer":
        return arch, _segformer_config(sd, source, num_classes, channels)
    return arch, _deeplab_config(sd, source, num_classes, channels)


def _segformer_config(
    sd: StateDict, source: str, num_classes: int, channels: int
) -> dict[str, Any]:
    """MiT encoder + SegFormer head: per-stage widths, depths and ratios from the shapes."""
    stages = _indices(sd, r"backbone\.layers\.(\d+)\.0\.projection\.weight$")
    embed_dims, patch_sizes, depths, sr_ratios, mlp_ratios = [], [], [], [], []
    for i in stages:
        proj = sd[f"backbone.layers.{i}.0.projection.weight"]
        embed_dims.append(int(proj.shape[0]))
        patch_sizes.append(int(proj.shape[-1]))
        depths.append(len(_indices(sd, rf"backbone\.layers\.{i}\.1\.(\d+)\.norm1\.weight$")))
        sr = sd.get(f"backbone.layers.{i}.1.0.attn.sr.weight")
        sr_ratios.append(int(sr.shape[-1]) if sr is not None else 1)
        fc1 = _need(
            sd, f"backbone.layers.{i}.1.0.ffn.layers.0.weight", "read the MLP ratio", source
        )
        mlp_ratios.append(float(fc1.shape[0]) / float(proj.shape[0]))
    if stages != list(range(len(stages))) or 0 in depths:
        raise BackboneError(f"{source}: incomplete MiT encoder (stages {stages}, depths {depths})")
    num_heads = [d // embed_dims[0] for d in embed_dims]
    return dict(
        num_classes=num_classes,
        embed_dims=embed_dims,
        depths=depths,
        num_heads=num_heads,
        patch_sizes=patch_sizes,
        strides=[4] + [2] * (len(stages) - 1),
        sr_ratios=sr_ratios,
        mlp_ratios=mlp_ratios,
        qkv_bias="backbone.layers.0.1.0.attn.attn.in_proj_bias" in sd,
        ln_eps=1e-6,
        channels=channels,
        head_norm="decode_head.convs.0.bn.weight" in sd,
        dropout_ratio=0.1,
    )


def _deeplab_config(sd: StateDict, source: str, num_classes: int, channels: int) -> dict[str, Any]:
    """ResNet-D8 encoder + DeepLabV3+ head: blocks per stage and branch widths from the shapes."""
    blocks = [
        len(_indices(sd, rf"backbone\.layer{i}\.(\d+)\.conv1\.weight$")) for i in range(1, 5)
    ]
    if 0 in blocks:
        raise BackboneError(f"{source}: incomplete ResNet encoder (blocks per stage {blocks})")
    stem = _need(sd, "backbone.stem.6.weight", "read the stem width", source)
    base = _need(sd, "backbone.layer1.0.conv1.weight", "read the ResNet base width", source)
    c1 = _need(sd, "decode_head.c1_bottleneck.conv.weight", "read the c1 branch width", source)
    num_aspp = len(_indices(sd, r"decode_head\.aspp_modules\.(\d+)\."))
    if num_aspp != len(DEFAULT_ASPP_DILATIONS):
        raise BackboneError(
            f"{source}: {num_aspp} ASPP branches; only the 4-branch (1, 12, 24, 36) head is known"
        )
    return dict(
        num_classes=num_classes,
        blocks=blocks,
        stem_channels=int(stem.shape[0]),
        base_channels=int(base.shape[0]),
        strides=[1, 2, 1, 1],
        dilations=[1, 1, 2, 4],
        contract_dilation=True,
        channels=channels,
        c1_channels=int(c1.shape[0]),
        aspp_dilations=list(DEFAULT_ASPP_DILATIONS),
        dropout_ratio=0.1,
    )


# ---------------------------------------------------------------------------- Hugging Face
# transformers >= 5 renames SegFormer modules in memory (and reverts the names on save); map the
# new names back to the on-disk (4.x) names so both spellings convert.
_HF_NEW_TO_LEGACY: list[tuple[re.Pattern[str], str]] = [
    (re.compile(a), b)
    for a, b in [
        (
            r"^segformer\.stages\.(\d+)\.patch_embeddings\.",
            r"segformer.encoder.patch_embeddings.\1.",
        ),
        (r"^segformer\.stages\.(\d+)\.blocks\.", r"segformer.encoder.block.\1."),
        (r"^segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
        (r"\.attention\.q_proj\.", ".attention.self.query."),
        (r"\.attention\.k_proj\.", ".attention.self.key."),
        (r"\.attention\.v_proj\.", ".attention.self.value."),
        (r"\.attention\.sequence_reduction\.sequence_reduction\.", ".attention.self.sr."),
        (r"\.attention\.sequence_reduction\.layer_norm\.", ".attention.self.layer_norm."),
        (r"\.attention\.o_proj\.", ".attention.output.dense."),
        (r"\.mlp\.fc1\.", ".mlp.dense1."),
        (r"\.mlp\.fc2\.", ".mlp.dense2."),
        (r"\.layernorm_before\.", ".layer_norm_1."),
        (r"\.layernorm_after\.", ".layer_norm_2."),
        (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
    ]
]

_BLOCK = r"^segformer\.encoder\.block\.(\d+)\.(\d+)\."
_HF_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(a), b)
    for a, b in [
        (
            r"^segformer\.encoder\.patch_embeddings\.(\d+)\.proj\.",
            r"backbone.layers.\1.0.projection.",
        ),
        (
            r"^segformer\.encoder\.patch_embeddings\.(\d+)\.layer_norm\.",
            r"backbone.layers.\1.0.norm.",
        ),
        (r"^segformer\.encoder\.layer_norm\.(\d+)\.", r"backbone.layers.\1.2."),
        (_BLOCK + r"layer_norm_1\.", r"backbone.layers.\1.1.\2.norm1."),
        (_BLOCK + r"layer_norm_2\.", r"backbone.layers.\1.1.\2.norm2."),
        (_BLOCK + r"attention\.self\.sr\.", r"backbone.layers.\1.1.\2.attn.sr."),
        (_BLOCK + r"attention\.self\.layer_norm\.", r"backbone.layers.\1.1.\2.attn.norm."),
        (_BLOCK + r"attention\.output\.dense\.", r"backbone.layers.\1.1.\2.attn.attn.out_proj."),
        (_BLOCK + r"mlp\.dense1\.", r"backbone.layers.\1.1.\2.ffn.layers.0."),
        (_BLOCK + r"mlp\.dwconv\.dwconv\.", r"backbone.layers.\1.1.\2.ffn.layers.1."),
        (_BLOCK + r"mlp\.dense2\.", r"backbone.layers.\1.1.\2.ffn.layers.4."),
        (r"^decode_head\.linear_c\.(\d+)\.proj\.", r"decode_head.convs.\1.conv."),
        (r"^decode_head\.linear_fuse\.", "decode_head.fusion_conv.conv."),
        (r"^decode_head\.batch_norm\.", "decode_head.fusion_conv.bn."),
        (r"^decode_head\.classifier\.", "decode_head.conv_seg."),
    ]
]
_QKV = re.compile(_BLOCK + r"attention\.self\.(query|key|value)\.(weight|bias)$")


def hf_legacy_names(sd: StateDict) -> StateDict:
    """Rename transformers >= 5 in-memory SegFormer keys to the on-disk (4.x-compatible) names."""
    out: StateDict = {}
    for key, value in sd.items():
        for pattern, repl in _HF_NEW_TO_LEGACY:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def hf_config_to_ours(hf_config: dict[str, Any], source: str = "config.json") -> dict[str, Any]:
    """Our SegFormer hyper-parameters from a transformers ``SegformerConfig`` dict.

    transformers' SegFormer uses ``nn.LayerNorm`` with the default eps (1e-5) everywhere and
    Linear (bias, no BN) head projections, hence ``ln_eps=1e-5`` and ``head_norm=False``.
    """
    model_type = hf_config.get("model_type", "segformer")
    if model_type != "segformer":
        raise BackboneError(f"{source}: model_type {model_type!r} is not 'segformer'")
    if hf_config.get("hidden_act", "gelu") != "gelu":
        raise BackboneError(
            f"{source}: hidden_act {hf_config['hidden_act']!r} unsupported (only 'gelu')"
        )
    if hf_config.get("num_channels", 3) != 3:
        raise BackboneError(f"{source}: num_channels must be 3 (RGB)")
    if hf_config.get("reshape_last_stage", True) is False:
        raise BackboneError(f"{source}: reshape_last_stage=False is not a segmentation model")
    id2label = hf_config.get("id2label") or {}
    num_classes = int(hf_config.get("num_labels") or len(id2label) or 0)
    if num_classes <= 0:
        raise BackboneError(f"{source}: no id2label/num_labels: cannot tell the number of classes")
    try:
        n = int(hf_config.get("num_encoder_blocks", 4))
        config = dict(
            num_classes=num_classes,
            embed_dims=list(hf_config["hidden_sizes"]),
            depths=list(hf_config["depths"]),
            num_heads=list(hf_config["num_attention_heads"]),
            patch_sizes=list(hf_config["patch_sizes"]),
            strides=list(hf_config["strides"]),
            sr_ratios=list(hf_config["sr_ratios"]),
            mlp_ratios=[float(r) for r in hf_config["mlp_ratios"]],
            qkv_bias=True,
            ln_eps=1e-5,
            channels=int(hf_config["decoder_hidden_size"]),
            head_norm=False,
            dropout_ratio=float(hf_config.get("classifier_dropout_prob", 0.1)),
        )
    except KeyError as exc:
        raise BackboneError(f"{source}: SegformerConfig field {exc.args[0]} missing") from exc
    if len(config["embed_dims"]) != n:
        raise BackboneError(
            f"{source}: num_encoder_blocks={n} but {len(config['embed_dims'])} hidden_sizes"
        )
    return config


def hf_class_names(hf_config: dict[str, Any]) -> Optional[list[str]]:
    id2label = hf_config.get("id2label")
    if not id2label:
        return None
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]


def hf_to_ours(sd: StateDict, num_stages: int, source: str = "model.safetensors") -> StateDict:
    """Convert a transformers ``SegformerForSemanticSegmentation`` state dict to our
    names/shapes."""
    sd = hf_legacy_names(sd)
    out: StateDict = {}
    qkv: dict[tuple[int, int, str], dict[str, torch.Tensor]] = {}
    unused: list[str] = []
    for key, value in sd.items():
        m = _QKV.match(key)
        if m:
            stage, block, which, kind = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            qkv.setdefault((stage, block, kind), {})[which] = value
            continue
        for pattern, repl in _HF_RULES:
            if pattern.match(key):
                new = pattern.sub(repl, key)
                if (
                    value.dim() == 2
                    and new.endswith(".weight")
                    and (".ffn.layers." in new or ".convs." in new)
                ):
                    value = value[:, :, None, None]  # Linear -> 1x1 conv
                out[new] = value
                break
        else:
            unused.append(key)
    if unused:
        raise BackboneError(
            f"{source}: unrecognised Hugging Face SegFormer keys: {', '.join(sorted(unused)[:8])}"
        )
    for (stage, block, kind), parts in sorted(qkv.items()):
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise BackboneError(
                f"{source}: missing key "
                f"segformer.encoder.block.{stage}.{block}.attention.self.{missing[0]}.{kind}"
            )
        out[f"backbone.layers.{stage}.1.{block}.attn.attn.in_proj_{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    fuse_key = "decode_head.fusion_conv.conv.weight"
    if fuse_key in out:
        # transformers concatenates the stage maps in reverse order (last stage first).
        w = out[fuse_key]
        d = w.shape[1] // num_stages
        out[fuse_key] = torch.cat(
            [w[:, (num_stages - 1 - k) * d : (num_stages - k) * d] for k in range(num_stages)],
            dim=1,
        )
    bn_count = "decode_head.fusion_conv.bn.num_batches_tracked"
    if "decode_head.fusion_conv.bn.running_mean" in out and bn_count not in out:
        out[bn_count] = torch.tensor(0, dtype=torch.long)
    return out
