"""The graph that is exported: uint8 cast first, and a float16 backbone in front of a float32 FED.

Why typed in the graph: TensorRT 11 builds only strongly typed networks (the precision of
every layer is the type of its tensors; no builder flag can lower it), and TensorRT's ONNX
importer wants a uint8 input converted to float before any other layer. So ``--precision
fp16`` is written into the ONNX file itself, and the very same file runs in ONNX Runtime on a
CPU, where its numerics are tested. Only the backbone is float16: FED's exponentials,
log-dets, the Gaussian head, the softmax and the smoothing are cheap and are where float16
loses bits, so they stay float32, behind explicit Casts.

Imports torch (export time only).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from ros2_fed.detector import FusedDetector, _split_backbone_output

BACKBONE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _inputs_to_half(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: float32 activations entering a float16 layer become float16.

    Needed because backbones normalise with ``images.float()`` (or mix in float32 buffers),
    which would otherwise hand float32 tensors to float16 weights.
    """
    return tuple(
        a.half() if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a for a in args
    )


class HalfBackbone(nn.Module):
    """A float16 copy of a backbone that hands float32 ``(logits, features)`` to FED."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(backbone).half().eval()
        for module in self.inner.modules():
            if any(True for _ in module.parameters(recurse=False)):
                module.register_forward_pre_hook(_inputs_to_half)
        for name in ("arch", "meta", "num_classes", "feature_channels"):
            if hasattr(backbone, name) and not hasattr(self, name):
                setattr(self, name, getattr(backbone, name))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        logits, features = _split_backbone_output(self.inner(images))
        return logits.float(), (features.float() if features is not None else None)


class ExportGraph(nn.Module):
    """What the exporter traces: the uint8 image becomes float32 before any other op."""

    def __init__(self, detector: FusedDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.detector(images.to(torch.float32))


def export_graph(detector: FusedDetector, precision: str) -> ExportGraph:
    """The module to trace for ``precision`` ("fp32" or "fp16"); ``detector`` is not modified."""
    if precision not in BACKBONE_DTYPES:
        raise ValueError(
            f"precision {precision!r} cannot be exported: expected one of "
            f"{sorted(BACKBONE_DTYPES)} (int8 is the fp32 graph quantised afterwards: "
            "engine/int8.py)"
        )
    if precision == "fp32":
        return ExportGraph(detector).eval()
    typed = copy.copy(detector)  # shallow: shares FED and post-processing, swaps the backbone
    typed._modules = dict(detector._modules)
    typed._modules["backbone"] = HalfBackbone(detector.backbone)
    typed.freeze()
    return ExportGraph(typed).eval()


# --------------------------------------------------------------------------------------
# ONNX graph typing (onnx only, no torch)
# --------------------------------------------------------------------------------------


def tensor_elem_types(proto: Any) -> dict[str, int]:
    """``{tensor name: onnx.TensorProto element type}`` for every typed tensor of the graph."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def remove_identity_casts(proto: Any) -> int:
    """Drop Casts whose input already has the target type (the tracer records ``.to()`` no-ops).

    Returns how many were removed; the graph outputs are never rewired.
    """
    types = tensor_elem_types(proto)
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        target = (
            next((a.i for a in node.attribute if a.name == "to"), None)
            if node.op_type == "Cast"
            else None
        )
        source = node.input[0] if node.op_type == "Cast" else None
        if target is not None and types.get(source) == target and node.output[0] not in outputs:
            rename[node.output[0]] = source
            continue
        keep.append(node)
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
        info = [v for v in graph.value_info if v.name not in rename]
        del graph.value_info[:]
        graph.value_info.extend(info)
    return removed
