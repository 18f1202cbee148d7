"""Inference helpers matching the paper's test-time settings, at the backbone's 1/4 resolution.

Every helper takes a backbone ``model`` (``forward(images) -> (logits, features)``, RGB 0..255
input) and returns / yields tensors at the decode head's resolution, because that is where
FED runs. None of them changes grad mode: wrap calls in ``torch.inference_mode()`` for
evaluation (training FED keeps the backbone frozen the same way).

- :func:`whole_inference`: one forward pass on the full image (DL-R101).
- :func:`slide_inference`: MMSeg's ``slide_inference`` (SF-B2: 1024x1024 windows, stride 768),
  overlap-averaging logits *and* features.
- :func:`multiscale`: generator of per-scale :class:`ScaleOutput` for TTA, so FED can run on
  each scale's ``(logits, features)`` at its own rate; :func:`tta_inference` averages any
  per-scale score (the logits by default) at one common resolution.
- :func:`infer`: whole or slide, as the checkpoint's ``meta["inference"]`` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from .base import resize

Output = tuple[torch.Tensor, torch.Tensor]
InferFn = Callable[[nn.Module, torch.Tensor], Output]
Pair = Union[int, Sequence[int]]


def _pair(value: Pair) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def whole_inference(model: nn.Module, images: torch.Tensor) -> Output:
    """``model(images)``: logits and decoder features at ``ceil(H/4) x ceil(W/4)``."""
    return model(images)


def window_starts(size: int, crop: int, stride: int, align: int = 4) -> list[tuple[int, int]]:
    """``(start, end)`` of each sliding window along one axis, as MMSeg places them.

    MMSeg: ``n = max(size - crop + stride - 1, 0) // stride + 1`` windows at ``i * stride``, the
    last pulled back to end at the border; a window never exceeds the image (a crop larger
    than the image becomes the whole image, no padding). Here the start is additionally
    rounded down to a multiple of ``align`` (the output stride) so every window lands on the
    1/4 grid; this only ever enlarges the last window by < ``align`` pixels and changes nothing
    when ``size`` is a multiple of ``align`` (e.g. Cityscapes 1024x2048 -> x at 0, 768, 1024).
    """
    n = max(size - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(n):
        start = i * stride
        end = min(start + crop, size)
        start = max(end - crop, 0)
        start -= start % align
        spans.append((start, end))
    return spans


def slide_inference(
    model: nn.Module,
    images: torch.Tensor,
    crop_size: Pair = 1024,
    stride: Pair = 768,
    output_stride: Optional[int] = None,
) -> Output:
    """Sliding-window inference with overlap averaging of logits and features (MMSeg ``slide``).

    Windows follow :func:`window_starts`; each window's 1/4-resolution outputs are added into
    the full image's 1/4 grid and divided by the per-cell window count. MMSeg upsamples every
    window's logits to pixels before averaging; averaging on the 1/4 grid instead keeps the
    logits at the resolution FED works on (the two differ only by bilinear interpolation at
    window seams). When one window covers the image the result is exactly ``model(images)``.
    """
    crop_h, crop_w = _pair(crop_size)
    stride_h, stride_w = _pair(stride)
    r = int(output_stride or getattr(model, "output_stride", 4))
    if min(crop_h, crop_w, stride_h, stride_w) <= 0 or any(
        v % r for v in (crop_h, crop_w, stride_h, stride_w)
    ):
        raise ValueError(
            f"crop {crop_size} and stride {stride} must be positive multiples of the output "
            f"stride {r}"
        )
    b, _, h, w = images.shape
    out_h, out_w = math.ceil(h / r), math.ceil(w / r)
    ys, xs = window_starts(h, crop_h, stride_h, r), window_starts(w, crop_w, stride_w, r)
    if len(ys) == 1 and len(xs) == 1:
        return model(images)
    logits_sum: Optional[torch.Tensor] = None
    feats_sum: Optional[torch.Tensor] = None
    count = images.new_zeros((1, 1, out_h, out_w), dtype=torch.float32)
    for y0, y1 in ys:
        for x0, x1 in xs:
            logits, feats = model(images[:, :, y0:y1, x0:x1])
            if logits_sum is None or feats_sum is None:
                logits_sum = logits.new_zeros((b, logits.shape[1], out_h, out_w))
                feats_sum = feats.new_zeros((b, feats.shape[1], out_h, out_w))
            oy, ox = y0 // r, x0 // r
            th, tw = logits.shape[2], logits.shape[3]
            logits_sum[:, :, oy : oy + th, ox : ox + tw] += logits
            feats_sum[:, :, oy : oy + th, ox : ox + tw] += feats
            count[:, :, oy : oy + th, ox : ox + tw] += 1
    assert logits_sum is not None and feats_sum is not None and bool((count > 0).all())
    return logits_sum / count.to(logits_sum.dtype), feats_sum / count.to(feats_sum.dtype)


def inference_fn(setting: Optional[dict] = None) -> InferFn:
    """The inference callable for a checkpoint's ``meta["inference"]`` (default: whole image)."""
    setting = setting or {"mode": "whole"}
    mode = setting.get("mode", "whole")
    if mode == "whole":
        return whole_inference
    if mode == "slide":
        return partial(
            slide_inference,
            crop_size=tuple(setting.get("crop_size", (1024, 1024))),
            stride=tuple(setting.get("stride", (768, 768))),
        )
    raise ValueError(f"unknown inference mode {mode!r} (expected 'whole' or 'slide')")


def infer(model: nn.Module, images: torch.Tensor) -> Output:
    """Whole or sliding-window inference as ``model.meta["inference"]`` prescribes."""
    meta = getattr(model, "meta", None) or {}
    return inference_fn(meta.get("inference"))(model, images)


def rescale_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    """``int(x * scale + 0.5)`` per side (mmcv's ``rescale_size`` rounding), at least 1."""
    return max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5))


def resize_images(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear image resize (float, 0..255 kept); identity when the size is unchanged."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    return resize(images.float(), size)


@dataclass
class ScaleOutput:
    """One TTA scale: the backbone's outputs for the image resized by ``scale``.

    ``logits``/``features`` are at 1/4 of the resized image (``image_size``), times
    ``upsample`` if :func:`multiscale` was asked to upsample them (the paper upsamples FED's
    inputs 4x, so FED runs at ``scale`` x the image resolution).
    """

    scale: float
    image_size: tuple[int, int]
    logits: torch.Tensor
    features: torch.Tensor


def multiscale(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.5, 0.25),
    infer_fn: Optional[InferFn] = None,
    upsample: float = 1.0,
) -> Iterator[ScaleOutput]:
    """Yield a :class:`ScaleOutput` per scale (one backbone pass each, lazily, to bound memory).

    ``infer_fn`` defaults to :func:`infer` (the checkpoint's whole/slide setting). With
    ``upsample=4`` logits and features are bilinearly enlarged 4x before being yielded, which is
    the paper's FED TTA: FED then runs at 1/4, 1/2 and 1 of the image resolution for scales
    0.25, 0.5 and 1.
    """
    run = infer_fn or infer
    for scale in scales:
        size = rescale_size(images.shape[2:], scale)
        logits, features = run(model, resize_images(images, size))
        if upsample != 1:
            target = (
                int(round(logits.shape[2] * upsample)),
                int(round(logits.shape[3] * upsample)),
            )
            logits, features = resize(logits, target), resize(features, target)
        yield ScaleOutput(float(scale), size, logits, features)


ScoreFn = Callable[[ScaleOutput], torch.Tensor]


def tta_inference(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.5, 0.25),
    infer_fn: Optional[InferFn] = None,
    score_fn: Optional[ScoreFn] = None,
    size: Optional[Sequence[int]] = None,
    upsample: float = 1.0,
) -> torch.Tensor:
    """Average ``score_fn(scale_output)`` over scales, each bilinearly resized to ``size``.

    ``score_fn`` defaults to the logits; pass e.g. ``lambda o: fed.p_wrong(o.logits, o.features)``
    (with ``upsample=4``) for the paper's FED TTA. ``size`` defaults to ``ceil(H/4) x ceil(W/4)``
    of the input, so with ``scales=(1.0,)`` the result equals plain inference exactly.
    """
    fn = score_fn or (lambda out: out.logits)
    if size is None:
        r = int(getattr(model, "output_stride", 4))
        size = (math.ceil(images.shape[2] / r), math.ceil(images.shape[3] / r))
    total: Optional[torch.Tensor] = None
    for out in multiscale(model, images, scales, infer_fn, upsample):
        score = fn(out)
        if tuple(score.shape[2:]) != tuple(size):
            score = resize(score, size)
        total = score if total is None else total + score
    if total is None:
        raise ValueError("tta_inference needs at least one scale")
    return total / len(scales)
