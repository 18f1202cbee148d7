"""FusedDetector: camera pixels in, labels + confidence out, as ONE ``nn.Module``.

Why one module: the engine exports exactly this graph (ONNX Runtime, TensorRT), so the
node does nothing on the host but copy bytes. Everything is inside the graph:

    uint8 (B, H, W, 3) RGB
      -> float, HWC -> CHW                      (no normalisation: the backbone does it)
      -> bilinear resize to the model input size (``input_size``; None = camera size)
      -> backbone -> logits (1/4 res) [+ decoder features]
      -> score at FED resolution (``fed_rate`` of the model input; 0.25 = the native
         1/4-res logits, 0.5 / 1.0 = bilinearly upsampled logits, the paper's TTA trick)
      -> post-processing ("none" | "gaussian" | "sml") on the score map
      -> fixed monotone map to confidence in [0, 1] (1 = certain)
      -> bilinear upsampling back to (H, W), clamp to [0, 1]
      -> labels: argmax of the bilinearly upsampled logits (``label_mode="bilinear"``,
         what MMSeg and the paper's evaluation do) or the 1/4-res argmax upsampled with
         nearest neighbour (``"nearest"``: cheaper, blocky)
    -> (labels uint8 (B, H, W), confidence float32|float16 (B, H, W))

Confidence mappings (stored in the engine metadata as ``confidence_mapping``):

- ``fed``: ``1 - p_wrong``.
- ``msp``: ``max_c softmax`` (= 1 - the MSP score), in [1/C, 1].
- ``entropy``: ``1 - H / log C``, in [0, 1].
- ``maxlogit`` / ``energy`` / ``sml``: the certainty value ``c`` (max logit, logsumexp of
  the logits, standardised max logit = minus the score) mapped with
  ``sigmoid((c - offset) / temperature)``; defaults in :data:`DEFAULT_SIGMOID`. The defaults
  are a display scale, not a calibration: give ``confidence_range=(low, high)`` (e.g. the
  1st / 99th percentile of ``c`` over validation pixels) to use the min-max map
  ``clamp((c - low) / (high - low), 0, 1)`` with dataset statistics instead.
- ``none``: labels only; confidence is all ones (segmentation-only deployments and the
  "backbone-only" baseline of the latency benchmark).

Labels: both modes are computed identically in every runtime (the argmax sees the same
upsampled logits up to float rounding, so only exact near-ties can flip: measured 100 %
agreement eager vs ONNX Runtime in the tests).

FED runs through :func:`ros2_fed.fed.fused.fused_p_wrong`, an algebraically fused form of
``FlowEneDet.p_wrong`` (same numbers to float rounding, about half the exported nodes): the
parameter arithmetic is done once in Python (:meth:`FusedDetector.freeze`,
:func:`ros2_fed.fed.fused.fold_fed`), so exported graphs hold the folded constants.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from ros2_fed import (
    GRAPH_VERSION,
    scores,
)  # GRAPH_VERSION: in ros2_fed/__init__ (torch-free cache key)
from ros2_fed.fed import FlowEneDet
from ros2_fed.fed.fused import FoldedFED, can_fuse, fold_fed, fused_p_wrong
from ros2_fed.fed.postprocess import make_postprocess
from ros2_fed.logit_statistics import statistics_from_metadata
from ros2_fed.names import SCORES

Tensor = torch.Tensor
PathLike = Union[str, Path]


LABEL_MODES = ("bilinear", "nearest")
FED_RATES = (0.25, 0.5, 1.0)
# Display-scale sigmoid for the unbounded baselines: confidence = sigmoid((c - offset) / T).
# maxlogit / energy: Cityscapes backbones put in-distribution max logits around 5..20;
# sml: standardised, so 0 = the class mean and one std is one temperature.
DEFAULT_SIGMOID: dict[str, dict[str, float]] = {
    "maxlogit": {"offset": 5.0, "temperature": 2.0},
    "energy": {"offset": 5.0, "temperature": 2.0},
    "sml": {"offset": 0.0, "temperature": 1.0},
}


# --------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------


def _split_backbone_output(out: Any) -> tuple[Tensor, Optional[Tensor]]:
    if isinstance(out, (tuple, list)):
        return out[0], (out[1] if len(out) > 1 else None)
    if isinstance(out, dict):
        return out["logits"], out.get("features")
    return out, None


class FusedDetector(nn.Module):
    """uint8 RGB (B, H, W, 3) -> (labels uint8 (B, H, W), confidence (B, H, W) in [0, 1]).

    Args:
        backbone: ``forward(images B x 3 x H x W float 0..255) -> (logits at 1/4, features)``.
        fed: a ``FlowEneDet`` (needed for ``score="fed"``; also supplies the SML
            statistics when ``class_mean``/``class_std`` are not given).
        score: "fed" | "msp" | "maxlogit" | "energy" | "entropy" | "sml" | "none".
        postprocess: "none" | "gaussian" | "sml", applied to the "higher = wrong" score map
            at FED resolution; default ``None`` = "sml" for ``score="sml"`` (SML as
            published), "none" otherwise.
        input_size: (H, W) the backbone runs at; None = the camera resolution.
        fed_rate: resolution of FED / the score relative to the model input: 0.25 (native
            logits), 0.5 or 1.0 (logits bilinearly upsampled first). For ``score="sml"``, 1.0
            is SML as published (its post-processing is sized in image pixels).
        fed_extra_rates: multi-scale FED (the paper's "set of multi-scale FED detectors with
            aggregation"): the same FED also runs at these rates (each in ``FED_RATES``) and
            its scores are averaged at ``fed_rate``. Costs one FED pass per rate.
        label_mode: "bilinear" (argmax of upsampled logits) | "nearest".
        confidence_dtype: torch.float32 or torch.float16.
        confidence_range: (low, high) min-max map for maxlogit/energy/sml instead of the
            default sigmoid; ``sigmoid`` = {"offset", "temperature"} overrides the sigmoid.
        class_names, palette: metadata only; default: the backbone's ``meta``.
        calibration: metadata only: the FED's operating point (``training/calibrate.py``:
            confidence threshold, overlay colour range), carried into the engine sidecar.
        inference: backbone inference setting, ``{"mode": "whole"}`` (default) or
            ``{"mode": "slide", "crop_size": [h, w], "stride": [h, w]}`` (SegFormer's
            sliding window, unrolled into the graph; see ``ros2_fed.backbones.inference``).
        fuse_fed: use :func:`fused_p_wrong` (default) rather than ``fed.p_wrong``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        fed: Optional[FlowEneDet] = None,
        score: str = "fed",
        postprocess: Optional[str] = None,
        input_size: Optional[Sequence[int]] = None,
        fed_rate: float = 0.25,
        fed_extra_rates: Sequence[float] = (),
        label_mode: str = "bilinear",
        confidence_dtype: torch.dtype = torch.float32,
        confidence_range: Optional[Sequence[float]] = None,
        sigmoid: Optional[dict[str, float]] = None,
        class_mean: Optional[Tensor] = None,
        class_std: Optional[Tensor] = None,
        class_names: Optional[Sequence[str]] = None,
        palette: Optional[Sequence[Sequence[int]]] = None,
        inference: Optional[dict[str, Any]] = None,
        postprocess_kwargs: Optional[dict[str, Any]] = None,
        fuse_fed: bool = True,
        calibration: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self._check_arguments(score, fed, label_mode, fed_rate, confidence_dtype)
        if postprocess is None:
            postprocess = "sml" if score == "sml" else "none"
        self.backbone = backbone.eval()
        self.fed = fed.eval() if fed is not None else None
        self.score = score
        self.postprocess_name = postprocess
        self.postprocess_kwargs = dict(postprocess_kwargs or {})
        self.post = make_postprocess(postprocess, **self.postprocess_kwargs)
        self.input_size = (
            (int(input_size[0]), int(input_size[1])) if input_size is not None else None
        )
        self.fed_rate = float(fed_rate)
        self.fed_extra_rates = tuple(float(r) for r in fed_extra_rates)
        for rate in self.fed_extra_rates:
            if rate not in FED_RATES or score != "fed":
                raise ValueError(f"fed_extra_rates needs score 'fed' and rates in {FED_RATES}")
        self.label_mode = label_mode
        self.confidence_dtype = confidence_dtype
        self._set_labels_metadata(backbone, class_names, palette)
        self._set_inference(inference)
        self.fuse_fed = bool(fuse_fed) and fed is not None and can_fuse(fed)
        self.mapping = self._confidence_mapping(score, confidence_range, sigmoid)
        # The FED's operating point (training/calibrate.py); metadata only, valid for this score
        # and post-processing, so the engine sidecar can hand it to the node.
        self.calibration = dict(calibration) if calibration and score == "fed" else None
        self._folded: Optional[FoldedFED] = None
        if score == "sml":
            self._register_sml_statistics(fed, class_mean, class_std)

    @staticmethod
    def _check_arguments(
        score: str,
        fed: Optional[FlowEneDet],
        label_mode: str,
        fed_rate: float,
        confidence_dtype: torch.dtype,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
        if score == "fed" and fed is None:
            raise ValueError("score='fed' needs a FlowEneDet (fed=...)")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
        if float(fed_rate) not in FED_RATES:
            raise ValueError(f"fed_rate must be one of {FED_RATES}, got {fed_rate!r}")
        if confidence_dtype not in (torch.float32, torch.float16):
            raise ValueError(
                f"confidence_dtype must be float32 or float16, got {confidence_dtype}"
            )

    def _set_labels_metadata(
        self,
        backbone: nn.Module,
        class_names: Optional[Sequence[str]],
        palette: Optional[Sequence[Sequence[int]]],
    ) -> None:
        """Class names and palette: given, else the backbone's ``meta``."""
        backbone_meta = getattr(backbone, "meta", None) or {}
        if class_names is None:
            class_names = backbone_meta.get("class_names")
        if palette is None:
            palette = backbone_meta.get("palette")
        self.class_names = [str(n) for n in class_names] if class_names is not None else None
        self.palette = [[int(v) for v in c] for c in palette] if palette is not None else None

    def _set_inference(self, inference: Optional[dict[str, Any]]) -> None:
        self.inference = dict(inference) if inference else {"mode": "whole"}
        self._infer_fn: Optional[Callable[..., Any]] = None
        if self.inference.get("mode", "whole") != "whole":
            from ros2_fed.backbones.inference import inference_fn

            self._infer_fn = inference_fn(self.inference)

    def _register_sml_statistics(
        self, fed: Optional[FlowEneDet], class_mean: Optional[Tensor], class_std: Optional[Tensor]
    ) -> None:
        """SML's per-class logit mean / std as buffers: given, else the FED's standardiser."""
        if class_mean is None and fed is not None:
            class_mean, class_std = fed.standardizer.mean.clone(), fed.standardizer.std.clone()
        if class_mean is None or class_std is None:
            raise ValueError(
                "score='sml' needs class_mean/class_std (or a fed with logit statistics)"
            )
        for name, value in (("class_mean", class_mean), ("class_std", class_std)):
            tensor = torch.as_tensor(value, dtype=torch.float32).reshape(-1).clone()
            self.register_buffer(name, tensor)

    @staticmethod
    def _confidence_mapping(
        score: str,
        confidence_range: Optional[Sequence[float]],
        sigmoid: Optional[dict[str, float]],
    ) -> dict[str, Any]:
        if score == "fed":
            return {"kind": "one_minus", "of": "p_wrong"}
        if score == "msp":
            return {"kind": "one_minus", "of": "msp_score (= max softmax probability)"}
        if score == "entropy":
            return {"kind": "one_minus_normalised_entropy", "of": "entropy / log(C)"}
        if score == "none":
            return {"kind": "constant", "value": 1.0}
        if confidence_range is not None:
            low, high = float(confidence_range[0]), float(confidence_range[1])
            if not high > low:
                raise ValueError(f"confidence_range must have high > low, got {confidence_range}")
            return {"kind": "minmax", "of": f"-{score}_score", "low": low, "high": high}
        params = dict(DEFAULT_SIGMOID[score])
        params.update(sigmoid or {})
        if not params["temperature"] > 0:
            raise ValueError("sigmoid temperature must be > 0")
        return {
            "kind": "sigmoid",
            "of": f"-{score}_score",
            "offset": float(params["offset"]),
            "temperature": float(params["temperature"]),
        }

    def freeze(self) -> "FusedDetector":
        """Pre-fold FED's parameters once (inference/export); eval mode.

        Without it the fused FED re-folds its parameters on every call (correct while
        training, ~1 ms wasted per frame). Exported graphs then hold the folded constants
        only. Call :meth:`unfreeze` (or ``freeze()`` again) after changing weights.
        """
        self.eval()
        self._folded = fold_fed(self.fed) if (self.fuse_fed and self.fed is not None) else None
        return self

    def unfreeze(self) -> "FusedDetector":
        self._folded = None
        return self

    def train(self, mode: bool = True) -> "FusedDetector":
        if mode:
            self._folded = None  # weights are about to change
        return super().train(mode)

    @property
    def num_classes(self) -> Optional[int]:
        if self.fed is not None:
            return self.fed.cfg.num_classes
        for name in ("num_classes",):
            value = getattr(self.backbone, name, None)
            if isinstance(value, int):
                return value
        return None

    def config(self) -> dict[str, Any]:
        """JSON-able description of everything that shapes the graph besides the weights."""
        return {
            "score": self.score,
            "postprocess": self.postprocess_name,
            "postprocess_kwargs": self.postprocess_kwargs,
            "input_size": list(self.input_size) if self.input_size else None,
            "fed_rate": self.fed_rate,
            "fed_extra_rates": list(self.fed_extra_rates),
            "label_mode": self.label_mode,
            "confidence_dtype": "float16" if self.confidence_dtype == torch.float16 else "float32",
            "confidence_mapping": self.mapping,
            "fed_config": self.fed.cfg.to_dict() if self.fed is not None else None,
            "fed_variant": self.fed.cfg.variant if self.fed is not None else None,
            "fuse_fed": self.fuse_fed,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "palette": self.palette,
            "inference": self.inference,
            "backbone_class": type(self.backbone).__name__,
            "graph_version": GRAPH_VERSION,
            "calibration": self.calibration,
        }

    # -- graph pieces ---------------------------------------------------------------

    def _wrongness(
        self, logits: Tensor, features: Optional[Tensor]
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Score map (B, 1, h, w), higher = more likely wrong, plus argmax labels if computed."""
        if self.score == "fed":
            assert self.fed is not None
            if self.fuse_fed:
                folded = self._folded
                if folded is not None and folded.device != logits.device:
                    folded = self._folded = folded.to(logits.device)
                return fused_p_wrong(self.fed, logits, features, folded), None
            return self.fed.p_wrong(logits, features), None
        if self.score == "sml":
            sml, labels = scores.standardized_max_logit(logits, self.class_mean, self.class_std)
            return -sml, labels
        return scores.compute_score(self.score, logits), None

    def _to_confidence(self, wrong: Tensor, num_classes: int) -> Tensor:
        kind = self.mapping["kind"]
        if kind == "one_minus":
            return 1.0 - wrong
        if kind == "one_minus_normalised_entropy":
            return 1.0 - wrong / math.log(num_classes)
        certainty = -wrong
        if kind == "minmax":
            low, high = self.mapping["low"], self.mapping["high"]
            return (certainty - low) / (high - low)
        return torch.sigmoid((certainty - self.mapping["offset"]) / self.mapping["temperature"])

    @staticmethod
    def _logits_at(logits: Tensor, rate: float, base: tuple[int, int]) -> Tensor:
        """The backbone's 1/4-rate logits bilinearly resampled to ``rate`` of ``base``."""
        if rate == 0.25:
            return logits
        size = (max(1, round(base[0] * rate)), max(1, round(base[1] * rate)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, 3) uint8 RGB -> (labels uint8 (B, H, W), confidence (B, H, W))."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"FusedDetector expects (B, H, W, 3) RGB images, got {tuple(images.shape)}"
            )
        height, width = int(images.shape[1]), int(images.shape[2])
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        if self.input_size is not None and self.input_size != (height, width):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        raw = self.backbone(x) if self._infer_fn is None else self._infer_fn(self.backbone, x)
        logits, features = _split_backbone_output(raw)
        logits = logits.float()
        out_size = (height, width)

        if self.label_mode == "bilinear":
            up = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
            labels = up.argmax(dim=1)
        else:
            small = logits.argmax(dim=1, keepdim=True).to(torch.float32)
            labels = F.interpolate(small, size=out_size, mode="nearest")[:, 0]
        labels = labels.to(torch.uint8)

        if self.score == "none":
            # Computed from the labels, not a constant: the exporter would fold ones_like into
            # an H x W initializer stored in the file.
            confidence = (labels == labels).to(self.confidence_dtype)
            return labels, confidence

        base = self.input_size or out_size
        fed_logits = self._logits_at(logits, self.fed_rate, base)
        wrong, small_labels = self._wrongness(fed_logits, features)
        for rate in self.fed_extra_rates:
            extra, _ = self._wrongness(self._logits_at(logits, rate, base), features)
            wrong = wrong + F.interpolate(
                extra, size=wrong.shape[-2:], mode="bilinear", align_corners=False
            )
        if self.fed_extra_rates:
            wrong = wrong / (1 + len(self.fed_extra_rates))
        if self.postprocess_name == "sml":
            # At image resolution, as the FED authors run it: the score upsampled first, the
            # boundaries from the labels the node publishes.
            wrong = F.interpolate(wrong, size=out_size, mode="bilinear", align_corners=False)
            wrong = self.post(wrong, labels)
        elif self.postprocess_name != "none":
            wrong = self.post(wrong, small_labels)
        confidence = self._to_confidence(wrong, fed_logits.shape[1])
        if tuple(confidence.shape[-2:]) != out_size:
            confidence = F.interpolate(
                confidence, size=out_size, mode="bilinear", align_corners=False
            )
        confidence = confidence.clamp(0.0, 1.0)[:, 0]
        return labels, confidence.to(self.confidence_dtype)

    # -- construction from files ----------------------------------------------------

    @classmethod
    def from_checkpoints(
        cls,
        backbone_path: PathLike,
        fed_path: Optional[PathLike] = None,
        backbone_loader: Optional[Callable[[PathLike], nn.Module]] = None,
        **kwargs: Any,
    ) -> "FusedDetector":
        """Load a backbone (``ros2_fed.backbones.load_backbone`` unless a loader is given:
        MMSeg .pth, HF folder or ours) and an optional FED checkpoint (``load_fed``).

        The FED must have been trained on this backbone (:mod:`ros2_fed.fingerprint`):
        ``allow_backbone_mismatch=True`` turns the :class:`BackboneMismatchError` into a warning.
        """
        from ros2_fed.checkpoint import load_fed
        from ros2_fed.fingerprint import check_backbone, fingerprint_of

        allow_mismatch = bool(kwargs.pop("allow_backbone_mismatch", False))
        loader = backbone_loader or _default_backbone_loader()
        backbone = loader(backbone_path)
        fed, fed_meta = load_fed(fed_path) if fed_path is not None else (None, {})
        if fed is not None:
            check_backbone(
                fed_meta, fingerprint_of(backbone), f"FED checkpoint {fed_path}", allow_mismatch
            )
        calibration = fed_meta.get("calibration")
        if kwargs.get("score", "fed") == "fed" and calibration:
            # The operating point holds for the post-processing it was measured with: that one
            # is the default, and an explicit other choice drops the calibration.
            if kwargs.get("postprocess") is None:
                kwargs["postprocess"] = calibration.get("postprocess", "none")
            if kwargs["postprocess"] == calibration.get("postprocess", "none"):
                kwargs.setdefault("calibration", calibration)
        if kwargs.get("class_names") is None and not (getattr(backbone, "meta", None) or {}).get(
            "class_names"
        ):
            kwargs["class_names"] = fed_meta.get("class_names")
        stats = statistics_from_metadata(fed_meta, f"FED checkpoint {fed_path}")
        if kwargs.get("score") == "sml" and kwargs.get("class_mean") is None and stats:
            # A FED trained on raw logits keeps identity standardiser buffers; the statistics
            # `fed_stats --into` recorded for SML live in its metadata. Without this SML would
            # silently be max-logit.
            kwargs["class_mean"] = torch.tensor(stats["mean"], dtype=torch.float32)
            kwargs["class_std"] = torch.tensor(stats["std"], dtype=torch.float32)
        return cls(backbone, fed, **kwargs)


def _default_backbone_loader() -> Callable[[PathLike], nn.Module]:
    try:
        from ros2_fed.backbones import load_backbone  # type: ignore[attr-defined]
    except ImportError as exc:  # the backbones package may not be installed/landed yet
        raise RuntimeError(f"ros2_fed.backbones.load_backbone is not available ({exc})") from exc
    return load_backbone


# --------------------------------------------------------------------------------------
# Identity of a detector
# --------------------------------------------------------------------------------------


def detector_hash(detector: FusedDetector) -> str:
    """SHA-256 over the config and every tensor of the state dict (names, dtypes, bytes).

    Identifies "these weights in this graph": the engine cache and the engine sidecars use it.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(detector.config(), sort_keys=True).encode())
    for name, tensor in sorted(detector.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def detector_from_config(
    backbone: nn.Module, fed: Optional[FlowEneDet], config: dict[str, Any]
) -> FusedDetector:
    """Rebuild a FusedDetector from :meth:`FusedDetector.config` (bundles, caches).

    Buffers that are not part of the config (SML statistics) come from the caller's
    ``load_state_dict`` afterwards; placeholders are installed here.
    """
    mapping = config.get("confidence_mapping") or {}
    kwargs: dict[str, Any] = {}
    if mapping.get("kind") == "minmax":
        kwargs["confidence_range"] = (mapping["low"], mapping["high"])
    elif mapping.get("kind") == "sigmoid":
        kwargs["sigmoid"] = {"offset": mapping["offset"], "temperature": mapping["temperature"]}
    if config["score"] == "sml" and fed is None:
        n = int(config.get("num_classes") or getattr(backbone, "num_classes", 0) or 0)
        if n <= 0:
            raise ValueError("cannot rebuild an SML detector without num_classes")
        kwargs["class_mean"], kwargs["class_std"] = torch.zeros(n), torch.ones(n)
    dtype = torch.float16 if config.get("confidence_dtype") == "float16" else torch.float32
    return FusedDetector(
        backbone,
        fed,
        score=config["score"],
        postprocess=config.get("postprocess"),
        postprocess_kwargs=config.get("postprocess_kwargs") or None,
        input_size=config.get("input_size"),
        fed_rate=config.get("fed_rate", 0.25),
        fed_extra_rates=config.get("fed_extra_rates") or (),
        label_mode=config.get("label_mode", "bilinear"),
        confidence_dtype=dtype,
        class_names=config.get("class_names"),
        palette=config.get("palette"),
        inference=config.get("inference"),
        calibration=config.get("calibration"),
        fuse_fed=config.get("fuse_fed", True),
        **kwargs,
    )
