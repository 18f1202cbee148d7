"""Score-map post-processing: Gaussian smoothing and SML boundary suppression.

Oracles: OpenCV / SciPy Gaussians, and a naive loop-based numpy implementation of the public
SML algorithm (kornia morphology semantics: zero kernel entries excluded, geodesic border).
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from ros2_fed.fed.postprocess import (
    BoundarySuppression,
    GaussianSmoothing,
    NoPostprocess,
    SMLPostprocess,
    gaussian_kernel1d,
    gaussian_kernel2d,
    make_postprocess,
)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------
# naive numpy reference of SML's BoundarySuppressionWithSmoothing
# ----------------------------------------------------------------------------------------


def _offsets(kind: str, r: int) -> list[tuple[int, int]]:
    rng = range(-r, r + 1)
    if kind == "diamond":
        return [(a, b) for a in rng for b in rng if abs(a) + abs(b) <= r]
    return [(a, b) for a in rng for b in rng]


def _morph(x: np.ndarray, offsets, op) -> np.ndarray:
    """Max/min over in-image neighbours only (kornia's geodesic border)."""
    h, w = x.shape
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            vals = [x[i + a, j + b] for a, b in offsets if 0 <= i + a < h and 0 <= j + b < w]
            out[i, j] = op(vals)
    return out


def _box3_sum(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="edge")
    h, w = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            out[i, j] = p[i : i + 3, j : j + 3].sum()
    return out


def ref_boundary_suppression(score, labels, width=4, iters=4, footprint="sml"):
    score = score.astype(np.float64)
    lab = labels.astype(np.float64)
    dil = _morph(lab, _offsets("diamond" if footprint == "sml" else "square", 1), max)
    ero = _morph(lab, _offsets("square", 1), min)
    boundaries = (dil != ero).astype(np.float64)
    out = score
    diff = width // iters
    for it in range(iters):
        prev = out
        r = 0 if (width == 0 or it == iters - 1) else width - diff * it - 1
        expanded = (
            boundaries
            if r == 0
            else _morph(
                boundaries, _offsets("diamond" if footprint == "sml" else "square", r), max
            )
        )
        nb = (expanded == 0).astype(np.float64)
        total = _box3_sum(out * nb)
        count = _box3_sum(nb)
        avg = np.where(count == 0, prev, total / np.where(count == 0, 1, count))
        out = np.where(nb == 0, avg, prev)
    return out


def ref_dilated_gaussian(x, k=7, sigma=1.0, dilation=6):
    g = np.exp(-((np.arange(k) - (k - 1) / 2) ** 2) / (2 * sigma**2))
    kern = np.outer(g, g)
    kern /= kern.sum()
    pad = (k // 2) * dilation
    p = np.pad(x.astype(np.float64), pad, mode="edge")
    h, w = x.shape
    out = np.zeros((h, w))
    for a in range(k):
        for b in range(k):
            out += kern[a, b] * p[a * dilation : a * dilation + h, b * dilation : b * dilation + w]
    return out


def _blob_labels(
    rng: np.random.Generator, h: int, w: int, classes: int = 3, cell: int = 4
) -> np.ndarray:
    coarse = rng.integers(0, classes, size=(-(-h // cell), -(-w // cell)))
    return np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:h, :w]


# ----------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,sigma", [(7, 1.0), (5, 0.8), (11, 2.0)])
def test_gaussian_kernel_matches_opencv(k, sigma):
    kern = gaussian_kernel2d(k, sigma)
    assert kern.shape == (k, k)
    assert abs(float(kern.double().sum()) - 1.0) < 1e-6
    g = cv2.getGaussianKernel(k, sigma, ktype=cv2.CV_64F)
    np.testing.assert_allclose(kern.numpy(), g @ g.T, atol=1e-7)


def test_gaussian_kernel1d_is_the_separable_factor():
    g = gaussian_kernel1d(7, 1.0)
    np.testing.assert_allclose(g.numpy(), cv2.getGaussianKernel(7, 1.0, ktype=cv2.CV_64F)[:, 0])
    outer = torch.outer(g, g).numpy()
    np.testing.assert_allclose(outer, gaussian_kernel2d(7, 1.0).numpy(), atol=1e-8)


@pytest.mark.parametrize("dilation,padding", [(1, "replicate"), (6, "replicate"), (2, "reflect")])
def test_separable_gaussian_equals_the_2d_convolution(dilation, padding):
    """Two 1-D passes are the 2-D kernel's convolution up to float rounding (pad included)."""
    x = torch.from_numpy(np.random.default_rng(7).random((2, 2, 31, 45)).astype(np.float32))
    m = GaussianSmoothing(7, 1.0, dilation=dilation, padding=padding)
    pad = 3 * dilation
    y2d = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x.reshape(-1, 1, 31, 45), (pad,) * 4, mode=padding),
        gaussian_kernel2d(7, 1.0).view(1, 1, 7, 7),
        dilation=dilation,
    ).reshape(x.shape)
    torch.testing.assert_close(m(x), y2d, atol=1e-6, rtol=0)


def test_gaussian_smoothing_matches_scipy_and_cv2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 20, 26)).astype(np.float32)
    y = GaussianSmoothing(7, 1.0)(torch.from_numpy(x)).numpy()
    assert y.shape == x.shape
    # replicate padding == scipy's "nearest" border; 7 taps == truncate 3 sigma
    ref = ndi.gaussian_filter(
        x.astype(np.float64), sigma=(0, 0, 1.0, 1.0), mode="nearest", truncate=3.0
    )
    np.testing.assert_allclose(y, ref, atol=1e-5)
    ref_cv = cv2.GaussianBlur(x[0, 1], (7, 7), 1.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(y[0, 1, 3:-3, 3:-3], ref_cv[3:-3, 3:-3], atol=1e-5)  # interior only
    # reflect padding == OpenCV's BORDER_REFLECT_101 everywhere
    y_ref = GaussianSmoothing(7, 1.0, padding="reflect")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y_ref[0, 1], ref_cv, atol=1e-5)


def test_dilated_gaussian_matches_reference_and_3d_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 13)).astype(np.float32)  # smaller than the 18-pixel padding
    m = GaussianSmoothing(7, 1.0, dilation=6)
    y = m(torch.from_numpy(x)[None])  # (B, H, W) accepted
    assert y.shape == (1, 1, 9, 13)
    np.testing.assert_allclose(y[0, 0].numpy(), ref_dilated_gaussian(x), atol=1e-5)


@pytest.mark.parametrize(
    "module",
    [
        GaussianSmoothing(7, 1.0),
        GaussianSmoothing(7, 1.0, dilation=6),
        GaussianSmoothing(5, 1.0, padding="reflect"),
        SMLPostprocess(),
        BoundarySuppression(),
    ],
)
def test_constant_map_stays_constant(module):
    score = torch.full((2, 1, 15, 22), 3.25)
    labels = torch.from_numpy(_blob_labels(np.random.default_rng(2), 15, 22))[None].repeat(2, 1, 1)
    out = module(score, labels)
    assert out.shape == score.shape
    torch.testing.assert_close(out, score, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------
# SML boundary suppression
# ----------------------------------------------------------------------------------------


def test_boundaries_two_regions():
    labels = torch.zeros(1, 10, 12, dtype=torch.int64)
    labels[:, :, 6:] = 1
    b = BoundarySuppression().find_boundaries(labels)[0, 0]
    expected = torch.zeros(10, 12)
    expected[:, 5:7] = 1  # the two columns touching the other class
    assert torch.equal(b, expected)


@pytest.mark.parametrize("footprint,band", [("sml", 3), ("square", 3)])
def test_boundary_suppression_changes_only_near_boundary(footprint, band):
    torch.manual_seed(0)
    h, w, c = 16, 24, 12
    labels = torch.zeros(1, h, w, dtype=torch.int64)
    labels[:, :, c:] = 7
    score = torch.randn(1, 1, h, w)
    out = BoundarySuppression(4, 4, footprint=footprint)(score, labels)
    changed = (out != score)[0, 0]
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    # boundary columns c-1, c expanded by at most width-1 = 3
    assert cols.numel() > 0
    assert int(cols.min()) >= c - 1 - band and int(cols.max()) <= c + band
    assert torch.equal(out[..., : c - 1 - band], score[..., : c - 1 - band])
    assert torch.equal(out[..., c + band + 1 :], score[..., c + band + 1 :])
    # identity on a constant score map, whatever the labels
    const = torch.full_like(score, -1.5)
    torch.testing.assert_close(
        BoundarySuppression(footprint=footprint)(const, labels), const, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("footprint", ["sml", "square"])
@pytest.mark.parametrize("width,iters", [(4, 4), (4, 2), (2, 1)])
def test_boundary_suppression_matches_naive_reference(footprint, width, iters):
    rng = np.random.default_rng(width * 10 + iters)
    h, w = 14, 17
    labels = np.stack(
        [_blob_labels(rng, h, w, classes=4, cell=3), rng.integers(0, 3, size=(h, w))]
    )
    score = rng.normal(size=(2, 1, h, w)).astype(np.float32)
    out = BoundarySuppression(width, iters, footprint=footprint)(
        torch.from_numpy(score), torch.from_numpy(labels)
    )
    for b in range(2):
        ref = ref_boundary_suppression(score[b, 0], labels[b], width, iters, footprint)
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=1e-5)


def test_sml_postprocess_matches_naive_reference():
    rng = np.random.default_rng(5)
    h, w = 13, 19
    labels = _blob_labels(rng, h, w, classes=3, cell=4)
    score = (rng.normal(size=(1, 1, h, w)) * 3).astype(np.float32)
    out = SMLPostprocess()(torch.from_numpy(score), torch.from_numpy(labels)[None])
    ref = ref_dilated_gaussian(ref_boundary_suppression(score[0, 0], labels))
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-5)


def test_boundary_suppression_multichannel_equals_per_channel():
    torch.manual_seed(3)
    labels = torch.from_numpy(_blob_labels(np.random.default_rng(3), 12, 12))[None]
    score = torch.randn(1, 3, 12, 12)
    m = BoundarySuppression()
    joint = m(score, labels)
    for ch in range(3):
        torch.testing.assert_close(joint[:, ch : ch + 1], m(score[:, ch : ch + 1], labels))


# ----------------------------------------------------------------------------------------
# factory
# ----------------------------------------------------------------------------------------


def test_make_postprocess_uniform_signature():
    score = torch.randn(1, 1, 10, 11)
    labels = torch.zeros(1, 10, 11, dtype=torch.int64)
    assert isinstance(make_postprocess("none"), NoPostprocess)
    assert isinstance(make_postprocess("gaussian"), GaussianSmoothing)
    assert isinstance(make_postprocess("sml"), SMLPostprocess)
    for name in ("none", "gaussian", "sml"):
        out = make_postprocess(name)(score, labels)
        assert out.shape == score.shape
    assert torch.equal(make_postprocess("none")(score, labels), score)
    assert torch.equal(
        make_postprocess("gaussian")(score), make_postprocess("gaussian")(score, labels)
    )
    assert make_postprocess("gaussian", kernel_size=3, sigma=0.5).weight.shape == (1, 1, 3, 3)
    with pytest.raises(ValueError):
        make_postprocess("median")
    with pytest.raises(ValueError):
        make_postprocess("sml")(score)  # labels required
    with pytest.raises(ValueError):
        BoundarySuppression(4, 3)


# ----------------------------------------------------------------------------------------
# ONNX export parity
# ----------------------------------------------------------------------------------------


def _export(module, path, dynamo: bool) -> None:
    score = torch.randn(2, 1, 24, 40)
    labels = torch.randint(0, 3, (2, 24, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim

            shapes = {
                "score": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},
                "labels": {0: Dim.AUTO, 1: Dim.AUTO, 2: Dim.AUTO},
            }
            torch.onnx.export(
                module,
                (score, labels),
                str(path),
                input_names=["score", "labels"],
                output_names=["out"],
                opset_version=18,
                dynamo=True,
                dynamic_shapes=shapes,
                verbose=False,
            )
        else:
            torch.onnx.export(
                module,
                (score, labels),
                str(path),
                input_names=["score", "labels"],
                output_names=["out"],
                opset_version=18,
                dynamo=False,
                dynamic_axes={
                    "score": {0: "b", 2: "h", 3: "w"},
                    "labels": {0: "b", 1: "h", 2: "w"},
                    "out": {0: "b", 2: "h", 3: "w"},
                },
            )


def _check_onnx_parity(module, path) -> float:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for b, h, w in [(2, 24, 40), (1, 33, 18)]:  # the second size was not seen at export
        score = torch.randn(b, 1, h, w, generator=gen) * 4
        labels = torch.from_numpy(
            np.stack([_blob_labels(np.random.default_rng(h + i), h, w, 5, 3) for i in range(b)])
        )
        feeds = {"score": score.numpy(), "labels": labels.numpy()}
        got = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]
        with torch.no_grad():
            want = module(score, labels).numpy()
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1e-5
    return worst


def test_sml_exports_without_two_dimensional_convolutions(tmp_path):
    """What makes SML cheap in ONNX Runtime: the Gaussian as two 7-tap 1-D convolutions (14
    taps, not 49, and no one-channel 2-D convolution), the box sums as average pools, and the
    shared diamond dilations (3 cross dilations for radii 3, 2, 1, not 3 + 2 + 1)."""
    import onnx

    module = make_postprocess("sml").eval()
    _export(module, tmp_path / "sml.onnx", dynamo=False)
    graph = onnx.load(str(tmp_path / "sml.onnx")).graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert [inits.get(n.input[1]) for n in convs] == [(1, 1, 7)] * 2
    pools = [n for n in graph.node if n.op_type == "AveragePool"]
    assert len(pools) == 8  # per iteration: the mask's count and the masked mean
    # 2 max-pools for the label dilation (cross), 1 for the erosion, 2 per shared cross dilation
    assert sum(n.op_type == "MaxPool" for n in graph.node) == 3 + 2 * 3


@pytest.mark.parametrize("name", ["gaussian", "sml"])
def test_onnx_export_torchscript_parity(name, tmp_path):
    module = make_postprocess(name).eval()
    _export(module, tmp_path / f"{name}.onnx", dynamo=False)
    _check_onnx_parity(module, tmp_path / f"{name}.onnx")


@pytest.mark.slow  # ~5 s: torch.export tracing
def test_onnx_export_dynamo_parity(tmp_path):
    pytest.importorskip("onnxscript")
    module = make_postprocess("sml").eval()
    _export(module, tmp_path / "sml_dynamo.onnx", dynamo=True)
    _check_onnx_parity(module, tmp_path / "sml_dynamo.onnx")
