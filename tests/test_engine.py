"""Engines: ONNX Runtime equals eager, files validate, bad files fail loudly, the cache caches.

Parity criterion (issue 5): confidence max abs diff <= 1e-4 in fp32 and labels equal on
>= 99.99 % of pixels, for several image sizes, every score type and both FED variants.
A tiny random stand-in backbone keeps the file fast; ``gpu`` tests (TensorRT, CUDA EP,
torch CUDA) are real and skip without CUDA / tensorrt.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ros2_fed.detector import FusedDetector, detector_hash
from ros2_fed.engine import (
    Engine,
    EngineError,
    export_engine,
    export_onnx,
    open_cached,
    read_sidecar,
    sidecar_path,
)
from ros2_fed.engine.cli_export import main as fed_export
from ros2_fed.engine.onnx_engine import OnnxEngine
from ros2_fed.engine.torch_engine import TorchEngine
from ros2_fed.fed import FEDConfig
from tests.fed_helpers import make_random_fed, save_fed_for

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

C = 19
CONF_TOL = 1e-4  # fp32 confidence, ONNX Runtime vs eager
LABEL_AGREEMENT = 0.9999


class StandIn(nn.Module):
    """Tiny random backbone with the real contract (see tests/test_detector.py)."""

    def __init__(self, num_classes: int = C, feat: int = 16, scale: float = 20.0) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, feat, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(feat, feat, 3, stride=2, padding=1)
        self.head = nn.Conv2d(feat, num_classes, 1)
        self.scale = scale

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.c2(torch.relu(self.c1(images.float() / 64.0 - 2.0))))
        return self.head(f) * self.scale, f


def _lively_fed(backbone: nn.Module, cond_dim: int):
    """A data-initialised random FED whose p_wrong is not saturated (fixed seeds)."""
    with torch.no_grad():
        logits, feats = backbone(torch.rand(2, 3, 64, 96) * 255)
        probe_l, probe_f = backbone(torch.randint(0, 256, (1, 3, 40, 56)).float())
    cfg = FEDConfig(cond_dim=cond_dim, feat_channels=16 if cond_dim else 0)
    for seed in range(20):
        torch.manual_seed(2000 + seed)
        fed = make_random_fed(cfg, logits, feats)
        with torch.no_grad():
            p = fed.p_wrong(probe_l, probe_f if cond_dim else None)
        if float(p.std()) > 0.05 and 0.02 < float(p.mean()) < 0.98:
            return fed
    raise AssertionError("no seed gave a non-degenerate FED")


@pytest.fixture(scope="module")
def backbone() -> StandIn:
    torch.manual_seed(7)
    return StandIn().eval()


@pytest.fixture(scope="module")
def feds(backbone: StandIn) -> dict[int, object]:
    return {0: _lively_fed(backbone, 0), 16: _lively_fed(backbone, 16)}


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _eager(det: FusedDetector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        labels, conf = det(torch.from_numpy(image)[None])
    return labels[0].numpy(), conf[0].float().numpy()


# (score, FED-C?, (H, W), extra detector options) — sizes rotate so every score meets a
# non-multiple-of-4 size and FED meets several sizes; options cover resize, FED rate,
# post-processing, nearest labels and float16 confidence.
PARITY_CASES = [
    ("fed", 0, (48, 64), {}),
    ("fed", 0, (61, 83), {}),
    ("fed", 0, (97, 130), {"input_size": (64, 96)}),
    ("fed", 16, (48, 64), {}),
    ("fed", 16, (61, 83), {"fed_rate": 0.5}),
    ("fed", 16, (97, 130), {"postprocess": "sml"}),
    ("fed", 0, (50, 70), {"postprocess": "gaussian", "fed_rate": 1.0}),
    ("fed", 0, (45, 66), {"label_mode": "nearest", "confidence_dtype": torch.float16}),
    ("msp", 0, (61, 83), {}),
    ("maxlogit", 0, (48, 64), {}),
    ("energy", 0, (97, 130), {"input_size": (48, 64)}),
    ("entropy", 0, (50, 70), {}),
    ("sml", 0, (61, 83), {}),  # SML with its boundary suppression + dilated smoothing
    ("maxlogit", 0, (45, 66), {"confidence_range": (0.0, 40.0), "postprocess": "gaussian"}),
    ("none", 0, (48, 64), {}),
]


@pytest.mark.parametrize(
    "score,cond,size,options",
    PARITY_CASES,
    ids=[
        f"{s}-{'C' if c else 'U'}-{h}x{w}-{'-'.join(o) or 'plain'}"
        for s, c, (h, w), o in PARITY_CASES
    ],
)
def test_onnxruntime_equals_eager(tmp_path, backbone, feds, score, cond, size, options) -> None:
    fed = feds[cond] if score in ("fed", "sml") else None
    kwargs = dict(options)
    if score == "sml" and fed is None:
        kwargs.update(class_mean=torch.randn(C), class_std=torch.rand(C) + 0.5)
    det = FusedDetector(backbone, fed, score=score, **kwargs)
    h, w = size
    path, meta = export_onnx(det, tmp_path / "model.onnx", h, w)
    engine = Engine.open(path, warmup=1, intra_op_threads=2)
    assert isinstance(engine, OnnxEngine) and engine.input_shape == (h, w)
    tol = (
        1e-3 if options.get("confidence_dtype") == torch.float16 else CONF_TOL
    )  # one float16 ulp near 1
    for seed in (0, 1):
        image = _image(h, w, seed)
        labels, conf = engine.infer(image)
        ref_labels, ref_conf = _eager(det, image)
        assert labels.dtype == np.uint8 and labels.shape == (h, w)
        assert conf.dtype == np.float32 and conf.shape == (h, w)
        assert 0.0 <= conf.min() and conf.max() <= 1.0
        diff = float(np.abs(conf - ref_conf).max())
        assert diff <= tol, f"confidence differs by {diff:.2e}"
        assert float(np.mean(labels == ref_labels)) >= LABEL_AGREEMENT
    if score == "fed":
        assert float(ref_conf.std()) > 1e-3, "degenerate parity case: constant confidence"


def test_export_artifacts_checker_and_sidecar(tmp_path, backbone, feds) -> None:
    det = FusedDetector(backbone, feds[16], class_names=[f"k{i}" for i in range(C)])
    path, meta = export_onnx(det, tmp_path / "fedc.onnx", 40, 56, verify=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 18
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["labels", "confidence"]
    assert {p.key: p.value for p in proto.metadata_props}["ros2_fed.model_hash"] == detector_hash(
        det
    )
    side = json.loads(sidecar_path(path).read_text())
    assert side == meta and side == read_sidecar(path)
    for key, value in {
        "runtime": "onnxruntime",
        "precision": "fp32",
        "opset": 18,
        "score": "fed",
        "fed_variant": "FED-C",
        "input_tensor_shape": [1, 40, 56, 3],
        "input_shape": [40, 56],
        "model_hash": detector_hash(det),
        "runtime_version": ort.__version__,
    }.items():
        assert side[key] == value, key
    assert side["class_names"][3] == "k3" and side["confidence_mapping"]["kind"] == "one_minus"
    assert side["file_size"] == path.stat().st_size
    # the fused FED is compact: no slogdet/inverse, and far fewer nodes than the layer-by-layer
    # flow
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Inverse", "Det"}
    assert not list(tmp_path.glob("*.tmp*")), "temporary files left behind"


def test_iobinding_reuses_buffers_and_batches(tmp_path, backbone, feds) -> None:
    det = FusedDetector(backbone, feds[0])
    path, _ = export_onnx(det, tmp_path / "b2.onnx", 32, 48, batch=2)
    engine = Engine.open(path, warmup=2)
    assert engine.batch_size == 2 and engine.input_shape == (32, 48)
    batch = np.stack([_image(32, 48, 3), _image(32, 48, 4)])
    l1, c1 = engine.infer(batch, copy=False)
    first = c1.copy()
    l2, c2 = engine.infer(batch[::-1].copy(), copy=False)
    assert l2 is l1 and c2 is c1, "outputs are the engine's pre-bound buffers"
    np.testing.assert_array_equal(c2[0], first[1])  # and ONNX Runtime wrote into them in place
    ref_l, ref_c = _eager(det, batch[0])
    np.testing.assert_allclose(c2[1], ref_c, atol=CONF_TOL, rtol=0)
    copied = engine.infer(batch)[1]
    assert copied is not c1
    with pytest.raises(ValueError, match="32x48"):
        engine.infer(_image(40, 48))
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(batch.astype(np.float32))


def _exported(tmp_path: Path, backbone, fed, name: str = "m.onnx", size=(32, 40)) -> Path:
    path, _ = export_onnx(FusedDetector(backbone, fed), tmp_path / name, *size)
    return path


def test_corrupt_onnx_is_refused_with_the_file_named(tmp_path, backbone, feds) -> None:
    path = _exported(tmp_path, backbone, feds[0])
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # likely inside a weight tensor
    path.write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"m\.onnx.*SHA-256"):
        Engine.open(path)
    # the protobuf framing at the start: a file onnx cannot read even when a sidecar vouches
    data = bytearray(original)
    data[8:72] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"m\.onnx.*SHA-256"):
        Engine.open(path)
    # the same bytes with a sidecar that vouches for them: onnx itself must refuse
    side = json.loads(sidecar_path(path).read_text())
    from ros2_fed.checkpoint import file_sha256

    side["file_sha256"] = file_sha256(path)
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(EngineError, match=r"m\.onnx"):
        Engine.open(path)
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    side.update(file_sha256=file_sha256(garbage), file_size=garbage.stat().st_size)
    sidecar_path(garbage).write_text(json.dumps(side))
    with pytest.raises(
        EngineError, match=r"g\.onnx: (not a readable ONNX model|fails onnx.checker)"
    ):
        Engine.open(garbage)


def test_truncated_onnx_and_engine_files(tmp_path, backbone, feds) -> None:
    path = _exported(tmp_path, backbone, feds[0])
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(EngineError, match=r"m\.onnx.*truncated"):
        Engine.open(path)
    # a TensorRT engine file cut short: refused by size before TensorRT (if any) reads it
    engine = tmp_path / "fed.engine"
    engine.write_bytes(b"\x00" * 5000)
    meta = read_sidecar(_exported(tmp_path, backbone, feds[0], "x.onnx"))
    meta.update(runtime="tensorrt", file_size=20000, file_sha256="0" * 64, precision="fp16")
    sidecar_path(engine).write_text(json.dumps(meta))
    with pytest.raises(EngineError, match=r"fed\.engine.*5000 bytes.*truncated"):
        Engine.open(engine)


def test_sidecar_mismatch_shape_hash_and_expectations(tmp_path, backbone, feds) -> None:
    path = _exported(tmp_path, backbone, feds[0])
    original = sidecar_path(path).read_text()
    side = json.loads(original)
    side["input_tensor_shape"] = [1, 64, 80, 3]
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(EngineError, match=r"m\.onnx: input shape mismatch.*\[1, 32, 40, 3\]"):
        Engine.open(path)
    side = json.loads(original)
    side["model_hash"] = "f" * 64
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(EngineError, match=r"m\.onnx: model_hash mismatch"):
        Engine.open(path)
    sidecar_path(path).write_text(original)
    side = json.loads(original)
    with pytest.raises(EngineError, match=r"m\.onnx: precision mismatch.*'fp16'"):
        Engine.open(path, expect={"precision": "fp16"})
    with pytest.raises(EngineError, match=r"m\.onnx: input_shape mismatch"):
        Engine.open(path, expect={"input_shape": [64, 80]})
    assert Engine.open(
        path, expect={"input_shape": [32, 40], "model_hash": side["model_hash"]}, warmup=0
    )
    side["runtime"] = "tensorrt"
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(EngineError, match=r"m\.onnx: sidecar says runtime 'tensorrt'"):
        Engine.open(path)
    sidecar_path(path).write_text("{broken")
    with pytest.raises(EngineError, match=r"m\.onnx\.json: sidecar is not valid JSON"):
        Engine.open(path)
    sidecar_path(path).unlink()
    with pytest.raises(EngineError, match=r"m\.onnx: metadata sidecar m\.onnx\.json not found"):
        Engine.open(path)
    with pytest.raises(EngineError, match=r"model\.pt: unknown engine file type"):
        Engine.open(tmp_path / "model.pt")
    with pytest.raises(EngineError, match="not found"):
        Engine.open(tmp_path / "missing.onnx")


# ------------------------------------------------------------------------------ checkpoints,
# cache, bundle, CLI


@pytest.fixture()
def checkpoints(tmp_path):
    """A tiny real TinySeg backbone + FED-C, saved in our formats."""
    backbones = pytest.importorskip("ros2_fed.backbones")
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig

    torch.manual_seed(3)
    tiny = TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval()
    with (
        torch.no_grad()
    ):  # trained-like logit spread (random init: logsumexp std ~1e-3, see StandIn)
        tiny.conv_seg.weight.mul_(100.0)
        tiny.conv_seg.bias.mul_(100.0)
    backbones.save_backbone(tiny, tmp_path / "ckpt" / "bb", input_size=[32, 48])
    with torch.no_grad():
        logits, feats = tiny(torch.rand(1, 3, 32, 48) * 255)
    fed = make_random_fed(FEDConfig(cond_dim=4, feat_channels=8), logits, feats)
    save_fed_for(tmp_path / "ckpt" / "fed", fed, tmp_path / "ckpt" / "bb")
    return tmp_path / "ckpt" / "bb", tmp_path / "ckpt" / "fed", fed


def test_open_cached_reuses_the_cache(tmp_path, checkpoints, monkeypatch) -> None:
    import ros2_fed.engine.export as export_module

    backbone_path, fed_path, fed = checkpoints
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []
    real = export_module.export_engine

    def spy(*args, **kwargs):
        calls.append(Path(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "export_engine", spy)
    messages: list[str] = []
    first = open_cached(
        backbone_path, fed_path, height=36, width=50, progress=messages.append, warmup=1
    )
    assert first.cache_hit is False and len(calls) == 1
    assert first.path is not None and first.path.is_relative_to(tmp_path / "cache")
    assert any("cache miss" in m for m in messages)
    mtime = first.path.stat().st_mtime_ns
    image = _image(36, 50)
    out_first = first.infer(image)

    second = open_cached(
        backbone_path, fed_path, height=36, width=50, progress=messages.append, warmup=1
    )
    assert second.cache_hit is True and len(calls) == 1, "second open must not re-export"
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.infer(image)[1], out_first[1])

    # anything in the key changes -> a new entry: shape, score, weights
    other_shape = open_cached(
        backbone_path, fed_path, height=40, width=50, progress=None, warmup=0
    )
    assert other_shape.cache_hit is False and len(calls) == 2
    msp = open_cached(
        backbone_path, None, height=36, width=50, score="msp", progress=None, warmup=0
    )
    assert msp.cache_hit is False and msp.metadata["score"] == "msp" and len(calls) == 3
    with torch.no_grad():
        fed.head.beta.add_(0.5)
    save_fed_for(fed_path, fed, backbone_path)
    retrained = open_cached(backbone_path, fed_path, height=36, width=50, progress=None, warmup=0)
    assert retrained.cache_hit is False and retrained.path != first.path and len(calls) == 4

    # a corrupted cache entry is rebuilt (with a message), never used
    data = bytearray(retrained.path.read_bytes())
    data[-10] ^= 0xFF
    retrained.path.write_bytes(bytes(data))
    messages.clear()
    healed = open_cached(
        backbone_path, fed_path, height=36, width=50, progress=messages.append, warmup=0
    )
    assert healed.cache_hit is False and len(calls) == 5
    assert any("cached engine unusable" in m and "SHA-256" in m for m in messages)


def test_torch_bundle_round_trip(tmp_path, checkpoints) -> None:
    backbone_path, fed_path, _ = checkpoints
    det = FusedDetector.from_checkpoints(backbone_path, fed_path, postprocess="gaussian").eval()
    path, meta = export_engine(
        det, tmp_path / "bundle.safetensors", 32, 48, runtime="torch", progress=None
    )
    engine = Engine.open(path, warmup=1)
    assert isinstance(engine, TorchEngine) and engine.input_shape == (32, 48)
    assert engine.metadata["model_hash"] == detector_hash(det) == meta["model_hash"]
    image = _image(32, 48)
    labels, conf = engine.infer(image)
    ref_labels, ref_conf = _eager(det, image)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(conf, ref_conf, atol=1e-6, rtol=0)
    # a read-only frame (a ROS or bag message buffer): the same output, and no torch warning
    frozen = image.copy()
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(engine.infer(frozen)[0], ref_labels)
    # and the bundle exports to ONNX with identical results (what fed_export --bundle does)
    onnx_path, _ = export_engine(
        engine.detector, tmp_path / "from_bundle.onnx", 32, 48, progress=None
    )
    assert np.abs(Engine.open(onnx_path).infer(image)[1] - ref_conf).max() <= CONF_TOL
    # corrupt bundle: refused, file named
    tensors = path
    data = bytearray(tensors.read_bytes())
    data[-7] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"bundle\.safetensors"):
        Engine.open(path)


def test_torch_bundle_needs_a_known_backbone(tmp_path, backbone, feds) -> None:
    with pytest.raises(EngineError, match="cannot bundle a StandIn backbone"):
        export_engine(
            FusedDetector(backbone, feds[0]),
            tmp_path / "x.safetensors",
            32,
            32,
            runtime="torch",
            progress=None,
        )


def test_fed_export_cli(tmp_path, checkpoints, capsys, monkeypatch) -> None:
    backbone_path, fed_path, _ = checkpoints
    with pytest.raises(SystemExit) as exc:
        fed_export(["--help"])
    assert exc.value.code == 0
    assert "--runtime" in capsys.readouterr().out
    out = tmp_path / "cli" / "engine.onnx"
    rc = fed_export(
        [
            "--backbone",
            str(backbone_path),
            "--fed",
            str(fed_path),
            "--height",
            "30",
            "--width",
            "44",
            "--postprocess",
            "gaussian",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.is_file() and sidecar_path(out).is_file()
    engine = Engine.open(out, warmup=0)
    assert engine.metadata["postprocess"] == "gaussian" and engine.input_shape == (30, 44)
    # torch bundle, then ONNX from the bundle: same numbers as the direct export
    bundle = tmp_path / "cli" / "fused.safetensors"
    assert (
        fed_export(
            [
                "--backbone",
                str(backbone_path),
                "--fed",
                str(fed_path),
                "--height",
                "30",
                "--width",
                "44",
                "--postprocess",
                "gaussian",
                "--runtime",
                "torch",
                "--out",
                str(bundle),
            ]
        )
        == 0
    )
    assert (
        fed_export(
            [
                "--bundle",
                str(bundle),
                "--height",
                "30",
                "--width",
                "44",
                "--out",
                str(tmp_path / "b.onnx"),
            ]
        )
        == 0
    )
    image = _image(30, 44)
    np.testing.assert_allclose(
        Engine.open(tmp_path / "b.onnx", warmup=0).infer(image)[1],
        engine.infer(image)[1],
        atol=1e-6,
        rtol=0,
    )
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    assert (
        fed_export(
            [
                "--backbone",
                str(backbone_path),
                "--score",
                "entropy",
                "--height",
                "30",
                "--width",
                "44",
            ]
        )
        == 0
    )
    assert (
        fed_export(
            [
                "--backbone",
                str(backbone_path),
                "--score",
                "entropy",
                "--height",
                "30",
                "--width",
                "44",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "built and cached" in printed and "cache hit" in printed
    rc = fed_export(
        [
            "--backbone",
            str(tmp_path / "nope"),
            "--fed",
            str(fed_path),
            "--height",
            "30",
            "--width",
            "44",
            "--out",
            str(tmp_path / "n.onnx"),
        ]
    )
    assert rc == 1 and "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        fed_export(["--backbone", str(backbone_path), "--height", "30", "--width", "44"])
    assert exc.value.code == 2  # no FED and no baseline score
    assert (
        fed_export(
            [
                "--backbone",
                str(backbone_path),
                "--fed",
                str(fed_path),
                "--height",
                "30",
                "--width",
                "44",
                "--precision",
                "fp16",
                "--out",
                str(tmp_path / "h.onnx"),
            ]
        )
        == 0
    )  # typed fp16 graph, ORT runs it
    assert read_sidecar(tmp_path / "h.onnx")["precision"] == "fp16"


def test_tensorrt_absent_gives_a_clear_error(tmp_path, backbone, feds) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the absent-TensorRT message cannot be observed")
    from ros2_fed.engine.tensorrt_engine import build_tensorrt_engine

    path = _exported(tmp_path, backbone, feds[0])
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        build_tensorrt_engine(path, tmp_path / "m.engine", read_sidecar(path), progress=None)
    # an intact-looking .engine on a machine without TensorRT: EngineError naming the file
    engine = tmp_path / "ok.engine"
    engine.write_bytes(b"\x01" * 64)
    from ros2_fed.checkpoint import file_sha256

    meta = read_sidecar(path)
    meta.update(runtime="tensorrt", file_size=64, file_sha256=file_sha256(engine))
    sidecar_path(engine).write_text(json.dumps(meta))
    with pytest.raises(EngineError, match=r"ok\.engine: TensorRT is not installed"):
        Engine.open(engine)


# ------------------------------------------------------------------------------ GPU (skip here)

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (no GPU on this machine)"
)
TRT_CONF_TOL = (
    2e-2  # FP16 backbone (FED float32 in the typed graph): confidence within 0.02 of fp32 eager
)
TRT_LABEL_AGREEMENT = 0.99


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cond", [0, 16])
def test_tensorrt_fp16_build_reload_and_parity(
    tmp_path, backbone, feds, cond, monkeypatch
) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT Python bindings not installed")
    from ros2_fed.engine.tensorrt_engine import TensorRTEngine

    det = FusedDetector(backbone, feds[cond])
    path, meta = export_engine(
        det, tmp_path / "fed.engine", 96, 128, runtime="tensorrt", precision="fp16", progress=None
    )
    assert meta["precision"] == "fp16" and meta["gpu_name"] == torch.cuda.get_device_name(0)
    assert (
        meta["tensorrt_strongly_typed"]
        and meta["backbone_dtype"] == "float16"
        and meta["fed_dtype"] == "float32"
    )
    major, minor = torch.cuda.get_device_capability(0)
    assert meta["gpu_compute_capability"] == f"{major}.{minor}"
    engine = Engine.open(path, warmup=2)
    assert isinstance(engine, TensorRTEngine)
    # reload without rebuilding: a second open only deserialises (the builder is never called)
    import ros2_fed.engine.tensorrt_engine as trt_module

    monkeypatch.setattr(
        trt_module, "build_tensorrt_engine", lambda *a, **k: pytest.fail("rebuilt")
    )
    again = Engine.open(path, warmup=1)
    for seed in range(3):
        image = _image(96, 128, seed)
        labels, conf = again.infer(image)
        ref_labels, ref_conf = _eager(det, image)
        assert float(np.abs(conf - ref_conf).max()) <= TRT_CONF_TOL
        assert float(np.mean(labels == ref_labels)) >= TRT_LABEL_AGREEMENT
        np.testing.assert_array_equal(engine.infer(image)[1], conf)


@pytest.mark.gpu
@needs_cuda
def test_tensorrt_cache_reload_and_stale_version(tmp_path, checkpoints, monkeypatch) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT Python bindings not installed")
    backbone_path, fed_path, _ = checkpoints
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    messages: list[str] = []
    first = open_cached(
        backbone_path,
        fed_path,
        height=64,
        width=96,
        runtime="tensorrt",
        precision="fp16",
        progress=messages.append,
    )
    assert first.cache_hit is False and any("this takes minutes" in m for m in messages)
    second = open_cached(
        backbone_path,
        fed_path,
        height=64,
        width=96,
        runtime="tensorrt",
        precision="fp16",
        progress=None,
    )
    assert second.cache_hit is True
    side = read_sidecar(second.path)
    side["runtime_version"] = "0.0.1"
    sidecar_path(second.path).write_text(json.dumps(side))
    with pytest.raises(EngineError, match="not portable across versions"):
        Engine.open(second.path)


@pytest.mark.gpu
@needs_cuda
def test_onnxruntime_cuda_provider_parity(tmp_path, backbone, feds) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without CUDAExecutionProvider (install onnxruntime-gpu)")
    det = FusedDetector(backbone, feds[16])
    path, _ = export_onnx(det, tmp_path / "cuda.onnx", 96, 128)
    engine = Engine.open(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine.providers[0] == "CUDAExecutionProvider"
    image = _image(96, 128)
    labels, conf = engine.infer(image)
    ref_labels, ref_conf = _eager(det, image)
    assert (
        float(np.abs(conf - ref_conf).max()) <= 1e-3
    )  # cuDNN convolution algorithms differ from CPU
    assert float(np.mean(labels == ref_labels)) >= 0.999


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_engine_parity(backbone, feds) -> None:
    det = FusedDetector(backbone, feds[0])
    image = _image(64, 80)
    ref_labels, ref_conf = _eager(det, image)
    engine = TorchEngine(det, input_shape=(64, 80), device="cuda")
    labels, conf = engine.infer(image)
    assert float(np.abs(conf - ref_conf).max()) <= 1e-3
    assert float(np.mean(labels == ref_labels)) >= 0.999
    half = TorchEngine(
        FusedDetector(StandIn().eval(), feds[0]),
        input_shape=(64, 80),
        device="cuda",
        precision="fp16",
    )
    assert half.infer(image)[1].dtype == np.float32


@pytest.mark.parametrize("spin", [False, True])
def test_onnx_spinning_option_reaches_the_session_and_keeps_outputs(
    tmp_path, backbone, feds, spin
) -> None:
    det = FusedDetector(backbone, feds[0], score="fed")
    path, _ = export_onnx(det, tmp_path / "model.onnx", 48, 64)
    engine = Engine.open(path, warmup=0, allow_spinning=spin)
    session_options = engine._session.get_session_options()
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert session_options.get_session_config_entry(key) == ("1" if spin else "0")
    labels, conf = engine.infer(_image(48, 64, 0))
    ref_labels, ref_conf = _eager(det, _image(48, 64, 0))
    assert (
        float(np.abs(conf - ref_conf).max()) <= CONF_TOL
        and float(np.mean(labels == ref_labels)) >= LABEL_AGREEMENT
    )


def test_requested_gpu_provider_that_did_not_load_is_an_error(tmp_path, backbone, feds) -> None:
    """A silent CPU fallback of ONNX Runtime is refused when a GPU provider was asked for."""
    from ros2_fed.engine.onnx_engine import check_providers

    check_providers(
        "m.onnx",
        [("CUDAExecutionProvider", {}), "CPUExecutionProvider"],
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    with pytest.raises(
        EngineError, match=r"m\.onnx: ONNX Runtime did not load TensorrtExecutionProvider"
    ):
        check_providers(
            "m.onnx",
            ["TensorrtExecutionProvider", "CPUExecutionProvider"],
            ["CPUExecutionProvider"],
        )
    with pytest.warns(RuntimeWarning, match="did not load CUDAExecutionProvider"):
        check_providers(
            "m.onnx", ["CUDAExecutionProvider"], ["CPUExecutionProvider"], strict=False
        )
    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        pytest.skip("the CUDA provider works here: no fallback to observe")
    path = _exported(tmp_path, backbone, feds[0])
    with (
        pytest.raises(EngineError, match="did not load CUDAExecutionProvider"),
        warnings.catch_warnings(),
    ):
        # asking a CPU-only ONNX Runtime for CUDA on purpose: its own UserWarning says so too
        warnings.filterwarnings(
            "ignore", "Specified provider 'CUDAExecutionProvider'", UserWarning
        )
        Engine.open(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], warmup=0)
    assert Engine.open(path, providers=["CPUExecutionProvider"], warmup=0).providers == [
        "CPUExecutionProvider"
    ]
