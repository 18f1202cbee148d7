"""Batched engines (surround cameras): one engine runs the newest frame of N cameras at once.

An ONNX export for batch N takes any batch from 1 to N (``dynamic_batch``), so a batch with
fewer new frames costs fewer frames; a fixed-batch engine (TensorRT, or ``dynamic_batch=False``)
takes exactly N. Each row of a batch must equal that frame run alone through the eager model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros2_fed.detector import FusedDetector
from ros2_fed.engine import Engine, export_engine
from ros2_fed.paths import default_models_dir

pytest.importorskip("onnxruntime")

H, W = 64, 128


@pytest.fixture(scope="module")
def detector() -> FusedDetector:
    models = default_models_dir()
    return FusedDetector.from_checkpoints(
        models / "tinyseg_synthroad", models / "fed_u_synthroad"
    ).freeze()


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def _eager(det: FusedDetector, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        labels, conf = det(torch.from_numpy(frames))
    return labels.numpy(), conf.float().numpy()


def test_dynamic_batch_runs_every_batch_size_like_eager(tmp_path, detector) -> None:
    path, meta = export_engine(
        detector, tmp_path / "b3.onnx", H, W, batch=3, verify=True, progress=None
    )
    assert meta["dynamic_batch"] is True and meta["input_tensor_shape"] == [3, H, W, 3]
    engine = Engine.open(path, warmup=1)
    assert engine.batch_size == 3 and engine.dynamic_batch
    frames = _frames(3)
    ref_labels, ref_conf = _eager(detector, frames)
    for n in (3, 1, 2, 3):  # sizes in any order: each has its own binding on the same buffers
        labels, conf = engine.infer(frames[:n])
        assert labels.shape == (n, H, W)
        assert (labels == ref_labels[:n]).mean() > 0.999
        assert np.abs(conf - ref_conf[:n]).max() < 1e-4
    single_labels, _ = engine.infer(frames[1])  # one HxWx3 frame
    assert single_labels.shape == (H, W) and (single_labels == ref_labels[1]).mean() > 0.999
    with pytest.raises(ValueError, match="1..3x64x128x3"):
        engine.infer(_frames(4))


def test_fixed_batch_engine_takes_exactly_its_batch(tmp_path, detector) -> None:
    path, meta = export_engine(detector, tmp_path / "fixed.onnx", H, W, batch=2, progress=None)
    assert meta["dynamic_batch"] is True  # the default for batch > 1 ...
    from ros2_fed.engine import export_onnx

    path, meta = export_onnx(
        detector, tmp_path / "fixed2.onnx", H, W, batch=2, dynamic_batch=False
    )
    assert meta["dynamic_batch"] is False  # ... unless asked (TensorRT's ONNX is always fixed)
    engine = Engine.open(path, warmup=0)
    assert not engine.dynamic_batch
    engine.infer(_frames(2))
    with pytest.raises(ValueError, match="engine built for 2x64x128x3"):
        engine.infer(_frames(1))


def test_batch_one_export_is_unchanged(tmp_path, detector) -> None:
    """Single-camera engines stay fixed batch 1 (same graph as before batching existed)."""
    _, meta = export_engine(detector, tmp_path / "b1.onnx", H, W, progress=None)
    assert meta["dynamic_batch"] is False and meta["input_tensor_shape"] == [1, H, W, 3]


def test_frame_parallel_batches_equal_one_run(tmp_path, detector) -> None:
    """On the CPU a dynamic batch runs frame by frame, side by side: same numbers as one run."""
    path, _ = export_engine(detector, tmp_path / "b4.onnx", H, W, batch=4, progress=None)
    parallel = Engine.open(path, warmup=1, intra_op_threads=2)
    whole = Engine.open(path, warmup=1, frame_parallel=False)
    assert parallel.parallel_frames == 2 and whole.parallel_frames == 1
    frames = _frames(4, seed=3)
    for n in (4, 3, 1):
        got_labels, got_conf = parallel.infer(frames[:n])
        ref_labels, ref_conf = whole.infer(frames[:n])
        np.testing.assert_array_equal(got_labels, ref_labels)
        np.testing.assert_allclose(got_conf, ref_conf, atol=1e-5, rtol=0)
    parallel.close()
    whole.close()
