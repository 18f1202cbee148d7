"""INT8 engines: the exported float32 graph with its backbone quantised by ONNX Runtime.

Why: on CPUs with VNNI and on every Jetson, 8-bit integer convolutions and matrix products are
the biggest speed lever left, and TensorRT 11 takes INT8 only as QuantizeLinear /
DequantizeLinear (Q/DQ) nodes in the ONNX graph -- which is what ONNX Runtime's static
quantisation writes (``onnxruntime.quantization.quantize_static``, QDQ format).

What is quantised: the backbone's weighted operators -- Conv (but the first one, on the camera
image), Gemm and MatMul with a constant weight (:func:`nodes_to_quantize`) -- with int8 weights
per output channel and activations per tensor, their ranges measured (MinMax) by running the
float graph on calibration images (:func:`calibration_set`: a folder of images, or a
Cityscapes-layout root). For ONNX Runtime the Resize and Concat
between backbone convolutions are quantised too, so int8 tensors flow into the next
convolution instead of being dequantised and quantised again.

What is not: FED and the score head, i.e. every node outside the backbone's scope
(:data:`BACKBONE_SCOPE`). FED scores a pixel from the logits' energy (a log-sum-exp) and its
flow's exponentials and log-determinants; an 8-bit grid on those inputs or on the
log-densities would show directly in p_wrong, while FED is a small share of the frame's time.
The quantiser wires a quantised tensor into *every* consumer, so a backbone output that FED
also reads (the logits, FED-C's features) would reach FED dequantised: :func:`quantize_backbone`
rewires such consumers back to the float tensor, and :func:`qdq_outside_backbone` refuses a
graph where any Q/DQ node still touches a node outside the backbone.

Two schemes, both QDQ (:data:`SCHEMES`), chosen by the runtime the engine is for:

- ``onnxruntime``: uint8 asymmetric activations, int8 symmetric weights, int32 bias, outputs of
  quantised ops quantised too, so ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv (the
  VNNI path; onnxruntime's own advice for x86 with VNNI). Symmetric int8 activations ran
  slower than float32 on this CPU.
- ``tensorrt``: what TensorRT's explicit quantisation accepts: int8 activations with zero
  point 0 (TensorRT quantisation is symmetric), float bias (its ONNX parser takes no int32
  DequantizeLinear), and only the inputs of weighted ops quantised (its placement
  recommendation; TensorRT propagates and fuses the rest). It runs on ONNX Runtime's CPU too
  (that is how every export is verified), just not faster.

numpy and OpenCV only at import (the engine cache fingerprints calibration sets without
loading onnxruntime or torch); onnx and onnxruntime.quantization are imported inside.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from ros2_fed.fileio import file_sha256

from .base import INPUT_NAME, EngineError, PathLike
from .runtimes import RECORDS, QuantScheme

if TYPE_CHECKING:  # pragma: no cover
    from onnxruntime.quantization import CalibrationDataReader

#: Every node of the exported graph under this name scope belongs to the backbone
#: (``torch.onnx.export`` names nodes after the module path: ExportGraph.detector.backbone).
BACKBONE_SCOPE = "/detector/backbone/"
#: Calibration images a set keeps at most (spread evenly over the sorted file list): MinMax
#: ranges settle within a few dozen frames, and every image is one float run of the graph.
DEFAULT_CALIBRATION_IMAGES = 64
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
#: A Cityscapes-layout root: the camera images live under this folder.
CITYSCAPES_IMAGE_DIR = "leftImg8bit"
Q_OPS = ("QuantizeLinear", "DequantizeLinear")
#: Input channels up to which a convolution reads the camera image (RGB, RGBA), kept float.
IMAGE_CHANNELS = 4


# --------------------------------------------------------------------------------------
# Calibration images
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSet:
    """The images an INT8 engine's activation ranges are measured on, and their fingerprint.

    ``fingerprint``: SHA-256 over the chosen files' names (relative to ``root``) and contents:
    the same images give the same engine cache key wherever the folder lives.
    """

    root: Path
    images: tuple[Path, ...]
    fingerprint: str = field(default="")

    def describe(self) -> dict[str, Any]:
        """What the sidecar records about the set."""
        return {
            "root": str(self.root),
            "images": len(self.images),
            "fingerprint": self.fingerprint,
        }


def calibration_set(path: PathLike, limit: int = DEFAULT_CALIBRATION_IMAGES) -> CalibrationSet:
    """The calibration images under ``path``: a Cityscapes-layout root (its ``leftImg8bit/``
    images, every split found) or any folder of images (searched recursively); at most
    ``limit``, spread evenly over the sorted list. ValueError when there are none."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"calibration data {root}: not a folder of images")
    if limit < 1:
        raise ValueError(f"calibration image limit must be >= 1, got {limit}")
    search = root / CITYSCAPES_IMAGE_DIR if (root / CITYSCAPES_IMAGE_DIR).is_dir() else root
    found = sorted(
        p for p in search.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not found:
        raise ValueError(f"calibration data {root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    if len(found) > limit:
        picks = np.unique(np.linspace(0, len(found) - 1, limit).round().astype(int))
        found = [found[i] for i in picks]
    digest = hashlib.sha256()
    for image in found:
        digest.update(image.relative_to(root).as_posix().encode())
        digest.update(file_sha256(image).encode())
    return CalibrationSet(root, tuple(found), digest.hexdigest())


def calibration_for(
    precision: str, calibration: Optional[CalibrationSet | PathLike]
) -> Optional[CalibrationSet]:
    """The calibration set an engine of ``precision`` is built with: a set or a folder for
    int8 (ValueError without one), None otherwise (ValueError when one is given)."""
    if precision != "int8":
        if calibration is not None:
            raise ValueError(f"calibration data is for int8 engines, not {precision}")
        return None
    if calibration is None:
        raise ValueError(
            "int8 needs calibration images: fed_export --calibration-data DIR (a folder of "
            "images, or a Cityscapes-layout root)"
        )
    if isinstance(calibration, CalibrationSet):
        return calibration
    return calibration_set(calibration)


def load_frame(path: PathLike, height: int, width: int) -> np.ndarray:
    """One calibration image as the engine's input takes it: (H, W, 3) uint8 RGB, resized to
    the engine's camera size."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"calibration image {path}: cannot be read")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[:2] != (height, width):
        shrink = image.shape[0] > height or image.shape[1] > width
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(image)


def calibration_batches(
    calibration: CalibrationSet, height: int, width: int, batch: int = 1
) -> Iterator[np.ndarray]:
    """(batch, H, W, 3) uint8 inputs over the set; the last batch repeats its frames to fill."""
    frames: list[np.ndarray] = []
    for path in calibration.images:
        frames.append(load_frame(path, height, width))
        if len(frames) == batch:
            yield np.stack(frames)
            frames = []
    if frames:
        yield np.stack([frames[i % len(frames)] for i in range(batch)])


def _data_reader(batches: Iterator[np.ndarray]) -> CalibrationDataReader:
    """The calibration batches as onnxruntime's CalibrationDataReader."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            image = next(batches, None)
            return None if image is None else {INPUT_NAME: image}

    return _Reader()


# --------------------------------------------------------------------------------------
# Schemes and node selection
# --------------------------------------------------------------------------------------


#: A view of the runtime records (runtimes.py): runtime -> its Q/DQ scheme, for those with int8.
SCHEMES: dict[str, QuantScheme] = {r.name: r.int8 for r in RECORDS.values() if r.int8}


def scheme_for(runtime: str) -> QuantScheme:
    """The Q/DQ scheme of an engine for ``runtime`` (onnxruntime or tensorrt)."""
    if runtime not in SCHEMES:
        raise ValueError(
            f"int8 engines are built for {sorted(SCHEMES)}; runtime {runtime!r} has no int8 path"
        )
    return SCHEMES[runtime]


def in_backbone(name: str) -> bool:
    """Whether an exported node belongs to the backbone (by its name scope)."""
    return name.startswith(BACKBONE_SCOPE)


def nodes_to_quantize(proto: Any, op_types: Sequence[str]) -> list[str]:
    """Backbone nodes of ``op_types``, but not

    - a MatMul of two activations (attention): its int8 softmax path is slower than float on
      a CPU, and its ranges are the least stable;
    - a convolution on the camera image (at most :data:`IMAGE_CHANNELS` input channels): its
      int8 input would be the normalised full-resolution image, quantised separately, which
      costs more than the small conv saves (measured on the default model: 1.5x -> 1.8x with it
      float), and it is the layer quantisation hurts most (TensorRT has no int8 kernel for it).
    """
    constants = {init.name: init for init in proto.graph.initializer}

    def on_image(node: Any) -> bool:
        weight = constants.get(node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return weight is not None and weight.dims[1] * group <= IMAGE_CHANNELS

    return [
        node.name
        for node in proto.graph.node
        if in_backbone(node.name)
        and node.op_type in op_types
        and not (node.op_type == "MatMul" and node.input[1] not in constants)
        and not (node.op_type == "Conv" and on_image(node))
    ]


def inline_constant_identities(proto: Any) -> int:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer under the output's
    name; returns how many.

    The TorchScript exporter shares equal parameters (e.g. the all-zero biases of BN-folded
    convs) through Identity nodes; a conv whose bias comes from a node is left unfused by
    ONNX Runtime's QDQ rules, so it would run in float.
    """
    import onnx

    initializers = {init.name: init for init in proto.graph.initializer}
    keep, added = [], []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(initializers[node.input[0]])
            tensor.name = node.output[0]
            added.append(tensor)
        else:
            keep.append(node)
    if added:
        del proto.graph.node[:]
        proto.graph.node.extend(keep)
        proto.graph.initializer.extend(added)
    return len(added)


# --------------------------------------------------------------------------------------
# Float outside the backbone
# --------------------------------------------------------------------------------------


def keep_float_outside_backbone(proto: Any) -> int:
    """Rewire every node outside the backbone that reads a DequantizeLinear output to the
    float tensor that QuantizeLinear took; returns how many inputs were rewired.

    Only a Q -> DQ pair on an activation is undone this way (its float input still exists);
    Q/DQ nodes left without a consumer are dropped.
    """
    producer = {out: node for node in proto.graph.node for out in node.output}
    rewired = 0
    for node in proto.graph.node:
        if in_backbone(node.name) or node.op_type in Q_OPS:
            continue
        for i, name in enumerate(node.input):
            float_name = _float_source(name, producer)
            if float_name is not None:
                node.input[i] = float_name
                rewired += 1
    _drop_dead_qdq(proto)
    return rewired


def _float_source(name: str, producer: dict[str, Any]) -> Optional[str]:
    """The float tensor behind a DQ(Q(x)) output, or None when ``name`` is not one."""
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        raise EngineError(
            f"int8 export: node outside the backbone reads the dequantised constant {name!r}"
        )
    return str(q.input[0])


def _drop_dead_qdq(proto: Any) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads (repeated until none is left), then the
    scales and zero points only they used."""
    graph_outputs = {out.name for out in proto.graph.output}
    dropped_inputs: set[str] = set()
    while True:
        read = {name for node in proto.graph.node for name in node.input} | graph_outputs
        dead = [
            node
            for node in proto.graph.node
            if node.op_type in Q_OPS and not any(out in read for out in node.output)
        ]
        if not dead:
            break
        for node in dead:
            dropped_inputs.update(node.input)
            proto.graph.node.remove(node)
    unused = [i for i in proto.graph.initializer if i.name in dropped_inputs - read]
    for init in unused:
        proto.graph.initializer.remove(init)


def qdq_outside_backbone(proto: Any) -> list[str]:
    """Every Q/DQ node that touches a node outside the backbone (reads its output or feeds
    it), as "Q/DQ name -> node name" lines; empty for a graph whose FED and head are float."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    problems = []
    for node in proto.graph.node:
        if node.op_type in Q_OPS:
            source = producer.get(node.input[0])
            if source is not None and source.op_type not in Q_OPS and not in_backbone(source.name):
                problems.append(f"{node.name} reads {source.name}")
            continue
        if in_backbone(node.name):
            continue
        for name in node.input:
            source = producer.get(name)
            if source is not None and source.op_type in Q_OPS:
                problems.append(f"{source.name} feeds {node.name}")
    return problems


# --------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------


def quantize_backbone(
    proto: Any,
    calibration: CalibrationSet,
    *,
    height: int,
    width: int,
    batch: int = 1,
    runtime: str = "onnxruntime",
) -> tuple[Any, dict[str, Any]]:
    """The float32 fused graph ``proto`` with its backbone quantised for ``runtime``; returns
    (quantised ModelProto, summary for the sidecar). EngineError when quantisation fails or
    leaves a Q/DQ node on FED or the score head."""
    import onnx

    scheme = scheme_for(runtime)
    inline_constant_identities(proto)
    selected = nodes_to_quantize(proto, scheme.op_types)
    if not selected:
        raise EngineError(
            f"int8 export: no {'/'.join(scheme.op_types)} node under {BACKBONE_SCOPE}"
        )
    with tempfile.TemporaryDirectory(prefix="ros2_fed_int8.") as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save(proto, str(source))
        batches = calibration_batches(calibration, height, width, batch)
        _run_quantizer(source, target, batches, selected, scheme)
        quantized = onnx.load(str(target))
    keep_float_outside_backbone(quantized)
    problems = qdq_outside_backbone(quantized)
    if problems:
        raise EngineError(
            "int8 export: Q/DQ nodes touch FED or the score head: " + "; ".join(problems[:5])
        )
    return quantized, _summary(quantized, scheme, calibration, selected)


def _run_quantizer(
    source: Path,
    target: Path,
    batches: Iterator[np.ndarray],
    selected: list[str],
    scheme: QuantScheme,
) -> None:
    """``quantize_static`` in QDQ format, per-channel weights, MinMax calibration."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    activations = QuantType.QInt8 if scheme.symmetric_activations else QuantType.QUInt8
    logging.disable(logging.WARNING)  # its advice to pre-process: the graph is exported clean
    try:
        quantize_static(
            str(source),
            str(target),
            _data_reader(batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(scheme.op_types),
            nodes_to_quantize=selected,
            per_channel=True,
            reduce_range=False,
            activation_type=activations,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=dict(scheme.extra_options),
        )
    except (ValueError, OSError) as exc:  # e.g. an unreadable calibration image
        raise EngineError(f"int8 export: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise EngineError(f"int8 export: onnxruntime quantisation failed: {exc}") from exc
    finally:
        logging.disable(logging.NOTSET)


def _summary(
    proto: Any, scheme: QuantScheme, calibration: CalibrationSet, selected: list[str]
) -> dict[str, Any]:
    """The sidecar's ``int8`` entry: scheme, calibration set and what was quantised."""
    kinds: dict[str, int] = {}
    by_name = {node.name: node.op_type for node in proto.graph.node}
    for name in selected:
        op = by_name.get(name)
        if op is not None:
            kinds[op] = kinds.get(op, 0) + 1
    return {
        "scheme": scheme.name,
        "activations": "int8 symmetric" if scheme.symmetric_activations else "uint8 asymmetric",
        "weights": "int8 symmetric, per output channel",
        "calibration_method": "MinMax",
        "calibration": calibration.describe(),
        "quantized_ops": dict(sorted(kinds.items())),
        "float_scope": f"everything outside {BACKBONE_SCOPE} (FED, score head, upsampling)",
        "qdq_nodes": sum(1 for node in proto.graph.node if node.op_type in Q_OPS),
    }
