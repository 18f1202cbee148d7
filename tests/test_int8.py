"""INT8 engines: ``fed_export --precision int8 --calibration-data DIR`` against the fp32 export.

The default model (models/, whatever weights it holds) is exported at 128x256 twice, fp32 and
int8, the int8 one calibrated on synthroad val frames 0-11 written by ``fed_synthroad`` in the
Cityscapes layout. Checked: the graph walk (Q/DQ nodes only inside the backbone: FED's inputs,
its log-densities and the score head stay float32), the numbers on *other* synthroad val
frames (100-111: not calibrated on), the sidecar, and the command's refusals; on a tiny graph,
that onnxruntime's calibrator reads every calibration image once.

Tolerances (the default model measured 99.5 % label agreement, 0.002 mean and 0.05-0.06 max
confidence difference, mIoU unchanged to 0.001 on 24 held-out frames at 256x512):
labels agree on >= 98 % of pixels (the product goal; every frame >= 97 %), mIoU within one point
of fp32, mean |confidence difference| <= 0.01 (the fp16 rule) and max <= 0.25 (a boundary pixel
may flip its class and with it the confidence; a broken range moves whole regions).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ros2_fed.engine import Engine  # noqa: E402
from ros2_fed.engine.cli_export import main as fed_export  # noqa: E402
from ros2_fed.engine.int8 import calibration_set  # noqa: E402
from ros2_fed.engine.verify import parity  # noqa: E402
from ros2_fed.paths import default_models_dir  # noqa: E402
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED  # noqa: E402

H, W = 128, 256
BACKBONE = default_models_dir() / DEFAULT_BACKBONE
FED = default_models_dir() / DEFAULT_FED
HELD_OUT = range(100, 112)  # synthroad val frames not in the calibration set (0-11)
# Ops whose inputs are FED's log-densities, energies and the score: must read float32 tensors.
LOG_DENSITY_OPS = ("Exp", "Log", "ReduceLogSumExp", "Softmax", "Tanh", "Sigmoid", "ArgMax")


def export_argv(out: Path, precision: str, *extra: str) -> list[str]:
    return [
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
        str(out),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def calibration_root(tmp_path_factory) -> Path:
    """Synthroad val frames 0-11 at 128x256, written by the documented fed_synthroad command."""
    from training.cli_synthroad import main as fed_synthroad

    root = tmp_path_factory.mktemp("calibration")
    argv = ["--out", str(root), "--train", "0", "--val", "12", "--ood", "0", "--size", "128x256"]
    assert fed_synthroad([*argv, "--seed", "0"]) == 0
    return root


@pytest.fixture(scope="module")
def exports(tmp_path_factory, calibration_root) -> dict[str, Path]:
    if not BACKBONE.with_suffix(".safetensors").is_file():
        pytest.skip(f"default model not found in {default_models_dir()}")
    out = tmp_path_factory.mktemp("int8")
    paths = {"fp32": out / "fp32.onnx", "int8": out / "int8.onnx"}
    assert fed_export(export_argv(paths["fp32"], "fp32")) == 0
    calibration = ("--calibration-data", str(calibration_root))
    assert fed_export(export_argv(paths["int8"], "int8", *calibration)) == 0
    return paths


def graph_maps(proto) -> tuple[dict, dict]:
    producer = {out: node for node in proto.graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in proto.graph.node:
        for name in node.input:
            consumers[name].append(node)
    return producer, consumers


def is_backbone(node) -> bool:
    return node.name.startswith("/detector/backbone/")


def test_no_qdq_node_touches_fed_or_the_score_head(exports) -> None:
    """Walk the int8 graph: every Q/DQ node reads from and feeds only backbone nodes (or other
    Q/DQ nodes), so FED's inputs (the logits), its log-densities and the score are float32."""
    proto = onnx.load(str(exports["int8"]))
    producer, consumers = graph_maps(proto)
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 20, "the backbone is really quantised"
    for node in qdq:
        source = producer.get(node.input[0])
        assert (
            source is None
            or is_backbone(source)
            or source.op_type
            in (
                "QuantizeLinear",
                "DequantizeLinear",
            )
        ), f"{node.name} reads {source.name}"
        for reader in consumers[node.output[0]]:
            assert is_backbone(reader) or reader.op_type == "DequantizeLinear", (
                f"{node.name} feeds {reader.name}"
            )
    float_ops = [n for n in proto.graph.node if not is_backbone(n) and n.op_type != "Constant"]
    assert any(n.op_type == "Exp" for n in float_ops), "FED is in the graph"
    for node in float_ops:
        for name in node.input:
            source = producer.get(name)
            assert source is None or source.op_type != "DequantizeLinear", node.name
    fed_inputs = {
        name
        for node in float_ops
        for name in node.input
        if name in producer and is_backbone(producer[name])
    }
    assert fed_inputs, "FED reads the backbone's output"
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in onnx.shape_inference.infer_shapes(proto).graph.value_info
    }
    for node in float_ops:
        if node.op_type in LOG_DENSITY_OPS:
            assert types.get(node.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT


def test_backbone_convs_run_on_int8_weights(exports) -> None:
    """Every backbone Conv but the one on the camera image takes its weights through a
    DequantizeLinear of int8 per-channel weights (axis 0: one scale per output channel)."""
    proto = onnx.load(str(exports["int8"]))
    producer, _ = graph_maps(proto)
    constants = {init.name: init for init in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and is_backbone(n)]
    on_image = [c for c in convs if c.input[1] in constants and constants[c.input[1]].dims[1] == 3]
    assert len(on_image) == 1, "the stem conv on the RGB image stays float"
    convs = [c for c in convs if c not in on_image]
    assert convs
    for conv in convs:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        assert constants[dq.input[0]].data_type == onnx.TensorProto.INT8
        scales = onnx.numpy_helper.to_array(constants[dq.input[1]])
        out_channels = constants[dq.input[0]].dims[0]
        assert scales.shape == (out_channels,), "per-channel weight scales"
    fed_convs = [n for n in proto.graph.node if n.op_type == "Conv" and not is_backbone(n)]
    assert fed_convs
    for conv in fed_convs:  # FED's weights: float constants, no dequantisation on the way
        weight = producer.get(conv.input[1])
        if weight is None:
            assert constants[conv.input[1]].data_type == onnx.TensorProto.FLOAT, conv.name
        else:
            assert weight.op_type == "Constant", conv.name
            assert weight.attribute[0].t.data_type == onnx.TensorProto.FLOAT, conv.name


def _miou(pred: np.ndarray, truth: np.ndarray, classes: int = 19) -> float:
    valid = truth != 255
    ious = []
    for c in range(classes):
        p, t = (pred == c) & valid, (truth == c) & valid
        if t.any():
            ious.append((p & t).sum() / (p | t).sum())
    return float(np.mean(ious))


def test_int8_agrees_with_fp32_on_held_out_synthroad_frames(exports) -> None:
    from training.datasets.synthroad import render_indexed

    frames = [render_indexed(0, "val", i, H, W) for i in HELD_OUT]
    stats, miou = [], {"fp32": [], "int8": []}
    with Engine.open(exports["fp32"], warmup=0) as ref, Engine.open(exports["int8"]) as int8:
        for frame in frames:
            labels, confidence = int8.infer(frame.image)
            ref_labels, ref_confidence = ref.infer(frame.image)
            stats.append(parity(labels, confidence, ref_labels, ref_confidence))
            miou["fp32"].append(_miou(ref_labels, frame.train_ids))
            miou["int8"].append(_miou(labels, frame.train_ids))
    agreement = float(np.mean([s["label_agreement"] for s in stats]))
    mean_diff = float(np.mean([s["confidence_mean_abs_diff"] for s in stats]))
    max_diff = max(s["confidence_max_abs_diff"] for s in stats)
    miou_delta = float(np.mean(miou["int8"]) - np.mean(miou["fp32"]))
    print(
        f"int8 vs fp32 on {len(frames)} held-out frames: labels agree {agreement:.2%} (worst "
        f"{min(s['label_agreement'] for s in stats):.2%}), mIoU {np.mean(miou['fp32']):.4f} -> "
        f"{np.mean(miou['int8']):.4f}, confidence diff mean {mean_diff:.4f} max {max_diff:.3f}"
    )
    assert agreement >= 0.98 and min(s["label_agreement"] for s in stats) >= 0.97, stats
    assert abs(miou_delta) <= 0.01
    assert mean_diff <= 0.01 and max_diff <= 0.25
    assert max_diff > 0.0, "not trivially equal: the backbone really ran in int8"


def test_sidecar_records_precision_scheme_and_calibration_fingerprint(
    exports, calibration_root
) -> None:
    meta = json.loads(exports["int8"].with_name("int8.onnx.json").read_text())
    ref = json.loads(exports["fp32"].with_name("fp32.onnx.json").read_text())
    fingerprint = calibration_set(calibration_root).fingerprint
    assert meta["precision"] == "int8" and meta["backbone_dtype"] == "int8"
    assert meta["fed_dtype"] == "float32" and meta["verified"] is True
    assert meta["calibration_fingerprint"] == fingerprint
    assert meta["int8"]["calibration"] == {
        "root": str(calibration_root),
        "images": 12,
        "fingerprint": fingerprint,
    }
    assert meta["int8"]["scheme"] == "onnxruntime" and meta["int8"]["quantized_ops"]["Conv"] > 0
    assert meta["model_hash"] == ref["model_hash"], "same weights; precision is its own field"
    embedded = {p.key: p.value for p in onnx.load(str(exports["int8"])).metadata_props}
    assert embedded["ros2_fed.precision"] == "int8"


def test_calibration_set_finds_images_and_fingerprints_their_contents(tmp_path) -> None:
    import cv2

    root = tmp_path / "plain"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        cv2.imwrite(str(root / ("sub" if i % 2 else "") / f"f{i}.png"), image)
    (root / "notes.txt").write_text("not an image")
    full = calibration_set(root)
    assert len(full.images) == 5 and all(p.suffix == ".png" for p in full.images)
    picked = calibration_set(root, limit=3)
    assert [p.name for p in picked.images] == ["f0.png", "f4.png", "f3.png"]  # 0, 2, 4 of 5
    assert picked.fingerprint != full.fingerprint
    moved = tmp_path / "moved"
    root.rename(moved)
    assert calibration_set(moved).fingerprint == full.fingerprint, "contents, not the folder"
    cv2.imwrite(str(moved / "f0.png"), np.zeros((8, 12, 3), np.uint8))
    assert calibration_set(moved).fingerprint != full.fingerprint
    cityscapes = tmp_path / "cs"
    (cityscapes / "leftImg8bit" / "val" / "city").mkdir(parents=True)
    (cityscapes / "gtFine").mkdir()
    cv2.imwrite(str(cityscapes / "gtFine" / "label.png"), np.zeros((8, 12), np.uint8))
    cv2.imwrite(str(cityscapes / "leftImg8bit/val/city/a_leftImg8bit.png"), np.zeros((8, 12, 3)))
    assert [p.name for p in calibration_set(cityscapes).images] == ["a_leftImg8bit.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        calibration_set(tmp_path / "empty")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--precision int8 needs --calibration-data"),
        (("--calibration-data", "."), "--precision int8 is built for --runtime"),
    ],
)
def test_int8_flags_are_refused_before_anything_is_built(tmp_path, capsys, extra, message):
    argv = export_argv(tmp_path / "m.safetensors", "int8", *extra)
    if extra:
        argv += ["--runtime", "torch"]
    with pytest.raises(SystemExit) as info:
        fed_export(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fed_export(export_argv(tmp_path / "m.onnx", "fp32", "--calibration-data", "."))
    assert "--calibration-data is for --precision int8" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_engine_cache_keys_name_the_calibration_set(tmp_path) -> None:
    """An int8 cache entry is reused for the same images and rebuilt for other ones; keys of
    other precisions do not change."""
    from ros2_fed.engine.cache import cache_key, open_cached
    from tests.fed_helpers import save_tiny_model

    base = dict(
        model_hash="h", height=8, width=12, batch=1, precision="int8", runtime="onnxruntime"
    )
    base.update(runtime_version="1", gpu="any", opset=18)
    assert cache_key(**base, calibration="a") != cache_key(**base, calibration="b")
    assert cache_key(**{**base, "precision": "fp32"}) == cache_key(
        **{**base, "precision": "fp32"}, calibration=None
    )
    model = save_tiny_model(tmp_path, (32, 64))
    images = tmp_path / "images"
    images.mkdir()
    import cv2

    rng = np.random.default_rng(1)
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    common = dict(height=32, width=64, precision="int8", cache=tmp_path / "cache", warmup=0)
    common.update(progress=None, verify=False)
    first = open_cached(model["backbone"], model["fed"], calibration=images, **common)
    again = open_cached(model["backbone"], model["fed"], calibration=images, **common)
    fewer = open_cached(
        model["backbone"], model["fed"], calibration=calibration_set(images, 2), **common
    )
    assert not first.cache_hit and again.cache_hit and not fewer.cache_hit
    assert first.path == again.path != fewer.path
    assert again.metadata["calibration_fingerprint"] == calibration_set(images).fingerprint
    for engine in (first, again, fewer):
        engine.close()
    with pytest.raises(ValueError, match="int8 needs calibration images"):
        open_cached(model["backbone"], model["fed"], **common)


GREYS = (10, 60, 110, 160, 210)  # one flat grey per calibration image: which one was read


def tiny_fused_graph(height: int, width: int) -> Any:
    """A graph shaped like the export: uint8 NHWC ``image`` -> float NCHW -> a conv on the
    image and one after it under the backbone scope -> a float op outside it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w1")
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT, name="/prep/cast"),
        helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="/prep/nchw"),
        helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1] * 4, name="/detector/backbone/c0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="/detector/backbone/r0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1] * 4, name="/detector/backbone/c1"),
        helper.make_node("Sigmoid", ["c1"], ["out"], name="/detector/head/sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, height, width, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [w0, w1],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", [1, 2])
def test_the_quantiser_reads_every_calibration_image(tmp_path, monkeypatch, batch) -> None:
    """What onnxruntime's calibrator actually pulls from the data reader, counted: each of the
    5 images once, in order (batch 2: 3 batches, the last one's frame repeated to fill)."""
    import cv2
    from onnxruntime import quantization as ortq

    from ros2_fed.engine.int8 import quantize_backbone

    for i, grey in enumerate(GREYS):  # other sizes than the engine's: resized on reading
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20 + i, 30, 3), grey, np.uint8))
    calibration = calibration_set(tmp_path)
    read: list[np.ndarray] = []
    quantize_static = ortq.quantize_static

    def counting(model_input, model_output, reader, **kwargs):
        class Counting(ortq.CalibrationDataReader):
            def get_next(self):
                item = reader.get_next()
                if item is not None:
                    read.append(np.array(item["image"]))
                return item

        return quantize_static(model_input, model_output, Counting(), **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", counting)
    proto, summary = quantize_backbone(
        tiny_fused_graph(16, 24), calibration, height=16, width=24, batch=batch
    )
    assert all(b.shape == (batch, 16, 24, 3) and b.dtype == np.uint8 for b in read)
    greys = [sorted(set(frame.reshape(-1).tolist())) for b in read for frame in b]
    want = [[g] for g in GREYS] + ([[GREYS[-1]]] if batch == 2 else [])
    assert greys == want
    assert summary["calibration"]["images"] == len(GREYS)
    assert summary["quantized_ops"] == {"Conv": 1}  # the conv on the image stays float
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
