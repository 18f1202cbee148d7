"""Post-processing of per-pixel score maps: Gaussian smoothing and SML boundary suppression.

The paper smooths FED's score map before evaluation, either with a plain 7x7 Gaussian
(sigma 1) or with the boundary suppression + dilated smoothing of SML (Jung et al., ICCV
2021, "Standardized Max Logits"). Both are written here as small ``nn.Module`` s built only
from ops that export to ONNX (opset 18) and run identically in ONNX Runtime: convolutions
with fixed buffer kernels, max-pooling, replication padding, ``where``. No Python control
flow depends on tensor values, so the modules can sit inside the fused detector graph.

They are written for ONNX Runtime on a CPU, where a one-channel convolution at image
resolution is dear (its NCHWc layout pads the one channel to a block of 8 and reorders back):
the Gaussian runs as two 1-D passes (the 2-D kernel is an outer product, so the result is the
same up to float rounding), box sums as average pools (the 1/9 cancels in sum / count),
everything that depends only on the labels (band masks, neighbour counts) once per call, and
SML's repeated diamond dilations are shared between its iterations.

All modules share the call signature ``forward(score, labels=None)`` so a detector can swap
them (see :func:`make_postprocess`). They are *score-agnostic*: they only move values around
spatially and never assume which direction means "wrong". SML itself applies them to the
standardized max logit (higher = more confident); FED applies them to ``p_wrong``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "gaussian_kernel1d",
    "gaussian_kernel2d",
    "GaussianSmoothing",
    "BoundarySuppression",
    "SMLPostprocess",
    "NoPostprocess",
    "POSTPROCESS_NAMES",
    "make_postprocess",
]

_PAD_MODES = {"replicate": "replicate", "reflect": "reflect"}


def _gaussian_1d64(kernel_size: int, sigma: float) -> torch.Tensor:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def gaussian_kernel1d(kernel_size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """Normalised 1-D Gaussian (k,), summing to 1: ``cv2.getGaussianKernel(k, sigma)``.

    :func:`gaussian_kernel2d` is its outer product with itself, so smoothing with the 2-D
    kernel is a vertical then a horizontal pass with this one.
    """
    return _gaussian_1d64(kernel_size, sigma).to(torch.float32)


def gaussian_kernel2d(kernel_size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """Normalised 2-D Gaussian, shape (k, k), centred at (k-1)/2, summing to 1.

    Same kernel as SML's ``np.fromfunction`` Gaussian and as the outer product of
    ``cv2.getGaussianKernel(k, sigma)`` with itself (computed in float64, then cast).
    """
    g = _gaussian_1d64(kernel_size, sigma)
    return torch.outer(g, g).to(torch.float32)


def _as_4d(score: torch.Tensor) -> torch.Tensor:
    """Accept (B, H, W) score maps too (SML's code does); everything else must be 4-D."""
    if score.dim() == 3:
        return score.unsqueeze(1)
    if score.dim() != 4:
        raise ValueError(f"score map must be (B,C,H,W) or (B,H,W), got shape {tuple(score.shape)}")
    return score


class NoPostprocess(nn.Module):
    """Identity with the common ``forward(score, labels=None)`` signature."""

    def forward(self, score: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return score


class GaussianSmoothing(nn.Module):
    """Depthwise Gaussian blur of a score map (B, C, H, W) that keeps its size.

    Padding: ``"replicate"`` (default) repeats the edge pixel, which works for any map size
    (also when the padding exceeds the map, as with dilation 6 on small maps) and keeps a
    constant map exactly constant; ``"reflect"`` (what the FED research code's 7x7 filter
    uses) needs ``(kernel_size // 2) * dilation < min(H, W)``.

    With ``dilation > 1`` this is SML's "dilated smoothing" (7x7, sigma 1, dilation 6): the
    same 49 taps spread over a 37x37 window, a cheap wide low-pass.

    The 2-D kernel is the outer product of :func:`gaussian_kernel1d` with itself and both
    paddings are separable, so the blur runs as a horizontal then a vertical 1-D pass (2k taps
    instead of k*k; the same numbers up to float rounding, about 1e-7 on scores in [0, 1]).
    ``weight`` keeps the 2-D kernel for reference.

    Each channel is blurred independently with the same kernel: channels are folded into the
    batch so the module needs no channel count and exports with dynamic shapes.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        sigma: float = 1.0,
        dilation: int = 1,
        padding: str = "replicate",
    ) -> None:
        super().__init__()
        if padding not in _PAD_MODES:
            raise ValueError(f"padding must be one of {sorted(_PAD_MODES)}, got {padding!r}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self.dilation = int(dilation)
        self.padding = padding
        self.pad = (self.kernel_size // 2) * self.dilation
        self.register_buffer(
            "weight",
            gaussian_kernel2d(self.kernel_size, self.sigma).view(1, 1, kernel_size, kernel_size),
        )
        self.register_buffer("weight_1d", gaussian_kernel1d(self.kernel_size, self.sigma))

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, sigma={self.sigma}, dilation={self.dilation}, "
            f"padding={self.padding!r}"
        )

    def smooth(self, score: torch.Tensor) -> torch.Tensor:
        """Blur a (B, C, H, W) or (B, H, W) map; output has the input's shape (4-D for 3-D in).

        Both 1-D passes run as 1-D convolutions over rows (the vertical one on the transposed
        map): a one-channel 2-D convolution is far dearer in ONNX Runtime on a CPU.
        """
        x = _as_4d(score)
        shape = x.shape
        y = x.reshape(-1, shape[2], shape[3])
        if self.pad > 0:
            y = F.pad(y, (self.pad, self.pad, self.pad, self.pad), mode=_PAD_MODES[self.padding])
        kernel = self.weight_1d.to(device=y.device, dtype=y.dtype).view(1, 1, self.kernel_size)
        n, h, w = y.shape[0], y.shape[1], y.shape[2]
        rows = F.conv1d(y.reshape(n * h, 1, w), kernel, dilation=self.dilation)
        cols = rows.reshape(n, h, shape[3]).transpose(1, 2).reshape(n * shape[3], 1, h)
        cols = F.conv1d(cols, kernel, dilation=self.dilation)
        return cols.reshape(n, shape[3], shape[2]).transpose(1, 2).reshape(shape)

    def forward(self, score: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.smooth(score)


def _max3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 square max filter; out-of-image pixels are ignored (ONNX MaxPool pads with -inf)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _max_cross(x: torch.Tensor) -> torch.Tensor:
    """Max over the 4-connected cross (centre + N/S/E/W), out-of-image pixels ignored."""
    v = F.max_pool2d(x, kernel_size=(3, 1), stride=1, padding=(1, 0))
    h = F.max_pool2d(x, kernel_size=(1, 3), stride=1, padding=(0, 1))
    return torch.maximum(v, h)


def _box3x3_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the 3x3 neighbourhood with replication padding, per channel (same size).

    An average pool rather than a 3x3 convolution of ones: the same sums / 9 and, in ONNX
    Runtime on a CPU, several times cheaper on one-channel maps; sum / count ratios are
    unchanged because the 1/9 cancels.
    """
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel_size=3, stride=1)


class BoundarySuppression(nn.Module):
    """SML boundary suppression: replace scores near predicted-class boundaries by the
    average of their non-boundary neighbours, shrinking the band step by step.

    Why: at boundaries between two predicted classes the max logit is low for every
    network, so raw scores light up object outlines as false "anomalies"; SML propagates
    the (reliable) interior values into the boundary band instead.

    Algorithm (public SML code, ``BoundarySuppressionWithSmoothing``):

    1. ``boundaries = dilate(labels) != erode(labels)``.
    2. ``diff = width // iterations``; for ``i`` in ``range(iterations)``:
       ``r = 0`` on the last iteration (or when ``width == 0``), else ``width - diff*i - 1``;
       ``nb = 1 - dilate_r(boundaries)`` (non-boundary mask);
       ``sum = box3x3(pad1(out * nb))``, ``count = box3x3(pad1(nb))`` (replication pad);
       ``avg = where(count == 0, prev, sum / count)``; ``out = where(nb == 0, avg, prev)``.

    Computed here in an equivalent, cheaper order: the masks and counts depend on the labels
    only (the diamond dilations of radius 1..r are nested, each computed once), and each
    iteration is one masked box mean and one ``where(nb == 0 and count > 0, sum / count, prev)``.
    Box sums are average pools (:func:`_box3x3_mean`), so values agree with the reference to
    float rounding (about 1e-7 on scores in [0, 1]) rather than bit for bit.

    ``footprint`` selects the structuring elements:

    - ``"sml"`` (default, the public SML code, which uses kornia): the label dilation uses the
      4-connected cross, the label erosion the full 3x3 square, and the band expansion by ``r``
      uses the L1 diamond of radius ``r`` (``r`` cross dilations).
    - ``"square"``: 3x3 square for both and a ``(2r+1)`` square for the expansion (a
      max-pool). Slightly wider band; offered because it is the common textual description.

    Morphology ignores out-of-image pixels (kornia's "geodesic" border), implemented with
    max-pooling on ``labels`` and ``-labels``. Labels are compared as float32, exact for
    class ids below 2**24. Works for any number of score channels (mask is broadcast).
    """

    def __init__(
        self, boundary_width: int = 4, boundary_iteration: int = 4, footprint: str = "sml"
    ) -> None:
        super().__init__()
        if boundary_width < 0 or boundary_iteration < 0:
            raise ValueError("boundary_width and boundary_iteration must be >= 0")
        if boundary_iteration != 0 and boundary_width % boundary_iteration != 0:
            raise ValueError(
                f"boundary_width ({boundary_width}) must be a multiple of boundary_iteration "
                f"({boundary_iteration})"
            )
        if footprint not in ("sml", "square"):
            raise ValueError(f"footprint must be 'sml' or 'square', got {footprint!r}")
        self.boundary_width = int(boundary_width)
        self.boundary_iteration = int(boundary_iteration)
        self.footprint = footprint
        # Radii are fixed at construction: the graph unrolls into a fixed op sequence.
        diff = self.boundary_width // self.boundary_iteration if self.boundary_iteration else 0
        self.radii: list[int] = [
            0
            if (self.boundary_width == 0 or i == self.boundary_iteration - 1)
            else self.boundary_width - diff * i - 1
            for i in range(self.boundary_iteration)
        ]

    def extra_repr(self) -> str:
        return (
            f"boundary_width={self.boundary_width}, boundary_iteration={self.boundary_iteration}, "
            f"footprint={self.footprint!r}"
        )

    def find_boundaries(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, H, W) or (B, 1, H, W) integer labels -> float {0, 1} boundary map (B, 1, H, W)."""
        lab = labels.unsqueeze(1) if labels.dim() == 3 else labels
        lab = lab.to(torch.float32)
        dilated = _max_cross(lab) if self.footprint == "sml" else _max3x3(lab)
        eroded = -_max3x3(-lab)
        return (dilated != eroded).to(torch.float32)

    def expand_boundaries(self, boundaries: torch.Tensor, r: int) -> torch.Tensor:
        """Grow the band by radius ``r`` (diamond for "sml", square for "square")."""
        return self._expansions(boundaries, [r])[r]

    def _expansions(self, boundaries: torch.Tensor, radii: list[int]) -> dict[int, torch.Tensor]:
        """{r: band grown by r} for every r in ``radii``; diamonds share their cross dilations."""
        out = {0: boundaries}
        if self.footprint == "square":
            for r in radii:
                if r > 0:
                    out[r] = F.max_pool2d(boundaries, kernel_size=2 * r + 1, stride=1, padding=r)
            return out
        grown = boundaries
        for r in range(1, max(radii, default=0) + 1):
            grown = _max_cross(grown)
            out[r] = grown
        return out

    def masks(self, labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """What each iteration needs from the labels alone: its non-boundary mask (float
        {0, 1}), the 3x3 mean of that mask (count / 9, clamped to 1/9 where it is 0: those
        pixels are never replaced) and where a pixel is replaced (in the band, with at least
        one neighbour outside it)."""
        boundaries = self.find_boundaries(labels)
        grown = self._expansions(boundaries, self.radii)
        out = []
        for r in self.radii:
            non_boundary = (grown[r] == 0).to(torch.float32)
            count = _box3x3_mean(non_boundary)
            replace = (non_boundary == 0) & (count > 0)
            out.append((non_boundary, torch.clamp(count, min=1.0 / 9.0), replace))
        return out

    def forward(self, score: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("BoundarySuppression needs the predicted label map")
        out = _as_4d(score)
        if self.boundary_iteration == 0:
            return out
        for keep, count, replace in self.masks(labels):
            total = _box3x3_mean(out * keep.to(out.dtype))
            out = torch.where(replace, total / count.to(out.dtype), out)
        return out


class SMLPostprocess(nn.Module):
    """SML post-processing: boundary suppression, then dilated Gaussian smoothing.

    Defaults are SML's (boundary width 4, 4 iterations, 7x7 Gaussian with sigma 1 and
    dilation 6, replication padding of ``dilation * 3``). Score-agnostic: SML feeds the
    standardized max logit (higher = more confident) and negates afterwards; FED feeds
    ``p_wrong`` directly. Needs the predicted labels the score map belongs to, at the same
    resolution.
    """

    def __init__(
        self,
        boundary_width: int = 4,
        boundary_iteration: int = 4,
        kernel_size: int = 7,
        sigma: float = 1.0,
        dilation: int = 6,
        footprint: str = "sml",
    ) -> None:
        super().__init__()
        self.suppression = BoundarySuppression(
            boundary_width, boundary_iteration, footprint=footprint
        )
        self.smoothing = GaussianSmoothing(
            kernel_size, sigma, dilation=dilation, padding="replicate"
        )

    def forward(self, score: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("SMLPostprocess needs the predicted label map")
        return self.smoothing(self.suppression(score, labels))


POSTPROCESS_NAMES = ("none", "gaussian", "sml")


def make_postprocess(name: str, **kwargs) -> nn.Module:
    """Build a post-processor by name: ``"none"`` | ``"gaussian"`` | ``"sml"``.

    All returned modules take ``forward(score, labels=None)`` (labels ignored where unused).
    ``kwargs`` go to the constructor (e.g. ``kernel_size``, ``sigma`` for "gaussian").
    ``"gaussian"`` defaults to the paper's 7x7, sigma 1, dilation 1, replication padding.
    """
    key = name.lower().strip()
    if key == "none":
        if kwargs:
            raise TypeError(f"postprocess 'none' takes no arguments, got {sorted(kwargs)}")
        return NoPostprocess()
    if key == "gaussian":
        return GaussianSmoothing(**kwargs)
    if key == "sml":
        return SMLPostprocess(**kwargs)
    raise ValueError(f"unknown postprocess {name!r}; expected one of {POSTPROCESS_NAMES}")
