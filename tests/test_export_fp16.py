"""Typed mixed precision: ``fed_export --precision fp16`` against the fp32 export.

The fp16 file is the one TensorRT builds strongly typed; here it runs in ONNX Runtime on CPU,
so its numerics are checked on synthroad frames with the shipped default model (whatever
weights models/ holds): labels agree on >= 99 % of pixels, mean |confidence difference|
<= 0.01. Its graph is checked for the typing TensorRT relies on: uint8 cast first, backbone
Convs in float16, FED in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ros2_fed.engine import Engine  # noqa: E402
from ros2_fed.engine.cli_export import main as fed_export  # noqa: E402
from ros2_fed.engine.mixed_precision import tensor_elem_types  # noqa: E402
from ros2_fed.engine.verify import FP16_MAX_MEAN_CONFIDENCE_DIFF, FP16_MIN_LABEL_AGREEMENT, parity  # noqa: E402
from ros2_fed.paths import default_models_dir  # noqa: E402
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED  # noqa: E402

H, W = 128, 256
FLOAT, FLOAT16, UINT8 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.UINT8
BACKBONE = (
    default_models_dir() / DEFAULT_BACKBONE
)  # the node's default model, whatever weights it has
FED = default_models_dir() / DEFAULT_FED


def _frames() -> list[np.ndarray]:
    from training.datasets.synthroad import render_indexed

    return [render_indexed(0, split, i, H, W).image for split in ("val", "ood") for i in range(3)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    if (
        not BACKBONE.with_suffix(".safetensors").is_file()
        or not FED.with_suffix(".safetensors").is_file()
    ):
        pytest.skip(f"default model not found in {default_models_dir()}")
    out = tmp_path_factory.mktemp("fp16")
    paths = {}
    for precision in ("fp32", "fp16"):
        path = out / f"{precision}.onnx"
        assert (
            fed_export(
                [
                    "--backbone",
                    str(BACKBONE),
                    "--fed",
                    str(FED),
                    "--height",
                    str(H),
                    "--width",
                    str(W),
                    "--precision",
                    precision,
                    "--out",
                    str(path),
                    "--quiet",
                ]
            )
            == 0
        )
        paths[precision] = path
    return paths


def test_fp16_export_matches_fp32_on_synthroad_frames(exports) -> None:
    with (
        Engine.open(exports["fp32"], warmup=0) as ref,
        Engine.open(exports["fp16"], warmup=0) as half,
    ):
        stats = [parity(*half.infer(f), *ref.infer(f)) for f in _frames()]
    agreement = float(np.mean([s["label_agreement"] for s in stats]))
    mean_diff = float(np.mean([s["confidence_mean_abs_diff"] for s in stats]))
    assert agreement >= FP16_MIN_LABEL_AGREEMENT, stats
    assert mean_diff <= FP16_MAX_MEAN_CONFIDENCE_DIFF, stats
    assert min(s["label_agreement"] for s in stats) >= FP16_MIN_LABEL_AGREEMENT, stats
    # Not trivially equal: the backbone really computed in float16.
    assert max(s["confidence_max_abs_diff"] for s in stats) > 0.0


def test_fp16_graph_types_backbone_half_fed_float(exports) -> None:
    proto = onnx.load(str(exports["fp16"]))
    types = tensor_elem_types(proto)
    nodes = list(proto.graph.node)
    first = [n for n in nodes if "image" in n.input]
    assert [n.op_type for n in first] == ["Cast"], "the uint8 image feeds exactly one op, a Cast"
    assert next(a.i for a in first[0].attribute if a.name == "to") == FLOAT

    convs = [n for n in nodes if n.op_type == "Conv"]
    backbone = [n for n in convs if "/backbone/" in n.name]
    fed = [n for n in convs if "/backbone/" not in n.name]
    assert backbone and fed
    for node in backbone:
        assert types[node.input[0]] == FLOAT16 and types[node.input[1]] == FLOAT16, node.name
    for node in fed:
        assert types[node.input[0]] == FLOAT and types[node.input[1]] == FLOAT, node.name
    for node in nodes:  # FED's exponentials, logs and the final sigmoid stay float32
        if node.op_type in ("Exp", "Log", "Tanh", "Sigmoid", "ReduceLogSumExp", "Softmax"):
            assert types[node.input[0]] == FLOAT, node.name
    outputs = {o.name for o in proto.graph.output}
    inner = [n for n in nodes if n.op_type == "Cast" and n.output[0] not in outputs]
    casts = {(types[n.input[0]], next(a.i for a in n.attribute if a.name == "to")) for n in inner}
    assert {(FLOAT, FLOAT16), (FLOAT16, FLOAT)} <= casts, (
        "explicit casts into and out of the backbone"
    )
    assert all(src != dst for src, dst in casts), "no identity casts left inside the graph"
    assert types["labels"] == UINT8 and types["confidence"] == FLOAT


def test_fp32_graph_has_no_float16_and_casts_uint8_first(exports) -> None:
    proto = onnx.load(str(exports["fp32"]))
    types = tensor_elem_types(proto)
    assert FLOAT16 not in types.values()
    first = [n for n in proto.graph.node if "image" in n.input]
    assert [n.op_type for n in first] == ["Cast"]


def test_fp16_sidecar_says_what_ran_in_half(exports) -> None:
    meta = json.loads(exports["fp16"].with_name("fp16.onnx.json").read_text())
    assert (
        meta["precision"] == "fp16"
        and meta["backbone_dtype"] == "float16"
        and meta["fed_dtype"] == "float32"
    )
    ref = json.loads(exports["fp32"].with_name("fp32.onnx.json").read_text())
    assert ref["precision"] == "fp32" and ref["backbone_dtype"] == "float32"
    assert meta["model_hash"] == ref["model_hash"], (
        "same weights, same model; precision is its own field"
    )


def test_export_leaves_the_callers_detector_float32(tmp_path) -> None:
    import torch

    from ros2_fed.detector import FusedDetector
    from ros2_fed.engine import export_onnx

    if not BACKBONE.with_suffix(".safetensors").is_file():
        pytest.skip("default model not found")
    det = FusedDetector.from_checkpoints(BACKBONE, FED)
    export_onnx(det, tmp_path / "m.onnx", 64, 96, precision="fp16")
    assert {p.dtype for p in det.parameters()} == {torch.float32}
