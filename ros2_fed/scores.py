"""Baseline per-pixel "is the segmentation wrong here?" scores from segmentation logits.

These are the comparison methods of the FED paper: MSP, max logit (MLG), energy (ENE),
softmax entropy, SML (standardized max logit + boundary suppression / dilated smoothing)
and MC dropout (MCD). Every score is oriented the same way as FED's ``p_wrong``:
**higher = more likely wrong** (misclassified or out-of-distribution), so the metrics in
``ros2_fed.eval`` can treat all methods alike.

Input logits are (B, C, h, w) (any (B, C, ...) works); every score returns (B, 1, h, w).
The single-pass scores use only torch tensor ops with no Python control flow on tensor
values and no numpy, so they can live inside an exported (ONNX) graph; they are written in
stable forms (``log_softmax``, ``logsumexp``, ``expm1``) and stay finite for logits of
magnitude 1e4 and more. Logits are assumed finite.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from ros2_fed.fed.postprocess import SMLPostprocess

__all__ = [
    "msp_score",
    "max_logit_score",
    "energy_score",
    "entropy_score",
    "standardized_max_logit",
    "sml_score",
    "mc_dropout_score",
    "SCORE_FUNCTIONS",
    "compute_score",
    "BaselineScore",
]


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max_c softmax(l)_c`` in [0, 1 - 1/C] (Hendrycks & Gimpel's MSP, flipped).

    ``1 - p`` rather than ``-p`` so the value reads as a probability of error; ranking is
    identical. Computed as the sum of the *other* classes' probabilities, not as ``1 - p``:
    in float32 ``1 - p`` (or ``expm1(log p)``) rounds every pixel with an error probability
    below ~6e-8 to exactly 0, collapsing the ranking of confident pixels into one tie. (No
    ``expm1``: the TorchScript ONNX exporter cannot export it.)
    """
    probs = torch.softmax(logits, dim=1)
    top = logits.argmax(dim=1, keepdim=True)
    classes = torch.arange(logits.shape[1], device=logits.device).view(
        [1, -1] + [1] * (logits.dim() - 2)
    )
    return (probs * (classes != top).to(probs.dtype)).sum(dim=1, keepdim=True)


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    """``-max_c l_c`` (Hendrycks et al.'s MaxLogit, negated)."""
    return -logits.amax(dim=1, keepdim=True)


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``E = -T * logsumexp(l / T)`` (Liu et al., 2020).

    The negative free energy ``logsumexp`` is high for in-distribution pixels, so its
    negation ``E`` is the "higher = more likely wrong" score. ``torch.logsumexp`` subtracts
    the max internally, so +-1e4 logits are fine.
    """
    if temperature == 1.0:
        return -torch.logsumexp(logits, dim=1, keepdim=True)
    return -temperature * torch.logsumexp(logits / temperature, dim=1, keepdim=True)


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy ``-sum_c p_c log p_c`` in nats, in [0, log C].

    Uses ``log_softmax`` (finite for finite logits) so saturated pixels give ``0 * (-2e4)
    = 0`` rather than ``0 * log 0 = nan``.
    """
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1, keepdim=True)


def standardized_max_logit(
    logits: torch.Tensor, class_mean: torch.Tensor, class_std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SML's confidence ``(max_l - mu_k) / sigma_k`` for the predicted class ``k``.

    Returns ``(sml, labels)``: sml (B, 1, h, w), higher = more confident; labels (B, h, w)
    int64, the argmax the statistics were looked up with. ``class_mean``/``class_std`` (C,)
    are per-class mean and *standard deviation* (not variance). SML estimates them from the
    max logit over training pixels *predicted* as class c; the FED method text uses logit c
    over pixels whose *ground truth* is c. Either set plugs in here unchanged.
    """
    max_logit, labels = logits.max(dim=1)
    mean = class_mean.to(device=logits.device, dtype=logits.dtype)
    std = class_std.to(device=logits.device, dtype=logits.dtype)
    sml = (max_logit - mean[labels]) / std[labels]
    return sml.unsqueeze(1), labels


# Built eagerly at import, never lazily: a module first constructed while torch.export traces
# a caller would keep fake tensors as buffers. Its constant kernels follow the input's device.
_DEFAULT_SML_POST = SMLPostprocess()


def sml_score(
    logits: torch.Tensor,
    class_mean: torch.Tensor,
    class_std: torch.Tensor,
    postprocess: Union[bool, nn.Module] = True,
) -> torch.Tensor:
    """Standardized max logit (Jung et al., ICCV 2021), negated: higher = more likely wrong.

    ``postprocess``: ``True`` applies SML's boundary suppression (width 4, 4 iterations) and
    dilated smoothing (7x7 Gaussian, sigma 1, dilation 6) with the predicted labels, to the
    standardized max logit *before* negation, as SML does (the smoothing is linear, the
    boundary suppression averages: both commute with negation, but doing it in SML's order
    keeps the float ops identical). An ``nn.Module`` with ``forward(score, labels)`` is used
    instead of the default; ``False`` skips it.

    With ``class_mean = 0``, ``class_std = 1`` and no post-processing this is the max-logit
    score.
    """
    sml, labels = standardized_max_logit(logits, class_mean, class_std)
    if isinstance(postprocess, nn.Module):
        post = postprocess
    elif postprocess:
        post = _DEFAULT_SML_POST
    else:
        post = None
    if post is not None:
        sml = post(sml, labels)
    return -sml


# --------------------------------------------------------------------------------------
# Monte-Carlo dropout (not a graph op: it toggles module modes and runs the model T times)
# --------------------------------------------------------------------------------------

_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)  # Dropout, Dropout1d/2d/3d, AlphaDropout, ...
MC_KINDS = ("entropy", "msp", "mutual_info")


@contextlib.contextmanager
def _mc_dropout_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Everything in eval mode except dropout layers; every module's mode restored on exit.

    Why not ``model.train()``: that would also switch batch-norm to batch statistics and
    update its running mean/var, corrupting the frozen classifier.
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m in model.modules():
            if isinstance(m, _DROPOUT_TYPES):
                m.train()
        yield model
    finally:
        for m, mode in saved:
            m.training = mode


def _first(output: Any) -> torch.Tensor:
    """Models return logits or ``(logits, features, ...)``: take the logits."""
    if isinstance(output, (tuple, list)):
        return output[0]
    if isinstance(output, dict):
        for key in ("logits", "out"):
            if key in output:
                return output[key]
        raise TypeError(f"model returned a dict without 'logits'/'out': {sorted(output)}")
    return output


def mc_dropout_score(
    model: Union[nn.Module, Callable[..., Any]],
    inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
    passes: int = 8,
    kind: str = "entropy",
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Monte-Carlo dropout (Gal & Ghahramani, 2016): average softmax over ``passes``
    stochastic forward passes and score the mean.

    ``model``: an ``nn.Module`` (its dropout layers are switched to train mode, everything
    else — batch-norm in particular — to eval, and all modes are restored afterwards, also on
    exception) or a plain callable (called as is; it must be stochastic itself). Its output is
    logits (B, C, ...) or a tuple whose first element is the logits. Only ``nn.Dropout*``
    modules are made stochastic; ``F.dropout(x, training=self.training)`` calls inside a
    forward follow their module's (eval) mode and stay off.

    ``inputs``: a tensor, or a tuple/list of positional arguments.

    ``kind``: ``"entropy"`` (default, predictive entropy ``H[mean_t p_t]`` in nats),
    ``"msp"`` (``1 - max_c mean_t p_t``), or ``"mutual_info"`` (BALD: ``H[mean p] -
    mean_t H[p_t]``, the epistemic part only).

    Determinism: with ``seed`` (or a ``generator``, from which a seed is drawn) the passes
    run under a forked global RNG seeded with it, so results repeat and the caller's RNG
    state is left untouched. Without either, the global RNG is used (and advanced).
    Runs under ``torch.no_grad()``. Returns (B, 1, ...), higher = more likely wrong.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if kind not in MC_KINDS:
        raise ValueError(f"kind must be one of {MC_KINDS}, got {kind!r}")
    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if generator is not None and seed is None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())

    prob_sum, ent_sum = _mc_passes(model, args, passes, seed, with_entropy=kind == "mutual_info")
    return _mc_reduce(kind, prob_sum, ent_sum, passes)


def _mc_passes(
    model: Union[nn.Module, Callable[..., Any]],
    args: tuple[Any, ...],
    passes: int,
    seed: Optional[int],
    with_entropy: bool,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Sum over ``passes`` stochastic passes of the softmax (and of its entropy if asked)."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    rng_devices = [device] if device.type == "cuda" else []
    rng_ctx = (
        torch.random.fork_rng(devices=rng_devices)
        if seed is not None
        else contextlib.nullcontext()
    )
    mode_ctx = (
        _mc_dropout_mode(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
    )

    prob_sum: Optional[torch.Tensor] = None
    ent_sum: Optional[torch.Tensor] = None
    with torch.no_grad(), rng_ctx, mode_ctx:
        if seed is not None:
            torch.manual_seed(seed)
        for _ in range(passes):
            logits = _first(model(*args)).float()
            log_p = torch.log_softmax(logits, dim=1)
            p = log_p.exp()
            prob_sum = p if prob_sum is None else prob_sum + p
            if with_entropy:
                h = -(p * log_p).sum(dim=1, keepdim=True)
                ent_sum = h if ent_sum is None else ent_sum + h
    assert prob_sum is not None
    return prob_sum, ent_sum


def _mc_reduce(
    kind: str, prob_sum: torch.Tensor, ent_sum: Optional[torch.Tensor], passes: int
) -> torch.Tensor:
    """The MC-dropout score of the summed passes (see :func:`mc_dropout_score`)."""
    mean_p = prob_sum / passes
    if kind == "msp":
        return 1.0 - mean_p.amax(dim=1, keepdim=True)
    # entr(0) = 0: the mean probability can underflow to exactly 0.
    pred_entropy = torch.special.entr(mean_p).sum(dim=1, keepdim=True)
    if kind == "entropy":
        return pred_entropy
    assert ent_sum is not None
    return (pred_entropy - ent_sum / passes).clamp_min(0.0)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

SCORE_FUNCTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "msp": msp_score,
    "maxlogit": max_logit_score,
    "energy": energy_score,
    "entropy": entropy_score,
    "sml": sml_score,
}


def compute_score(name: str, logits: torch.Tensor, **kw: Any) -> torch.Tensor:
    """``SCORE_FUNCTIONS[name](logits, **kw)``; "sml" needs ``class_mean``/``class_std``."""
    try:
        fn = SCORE_FUNCTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown score {name!r}; expected one of {sorted(SCORE_FUNCTIONS)}"
        ) from None
    return fn(logits, **kw)


class BaselineScore(nn.Module):
    """A single-pass baseline score as an ``nn.Module`` (for export inside a detector graph).

    Holds the SML statistics as buffers (so they travel with ``state_dict``/``.to()``) and
    its own post-processor. ``forward(logits) -> (B, 1, h, w)``, higher = more likely wrong.
    """

    def __init__(
        self,
        name: str,
        num_classes: Optional[int] = None,
        class_mean: Optional[torch.Tensor] = None,
        class_std: Optional[torch.Tensor] = None,
        postprocess: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__()
        if name not in SCORE_FUNCTIONS:
            raise ValueError(f"unknown score {name!r}; expected one of {sorted(SCORE_FUNCTIONS)}")
        self.name = name
        self.kw = dict(kw)
        self.post: Optional[nn.Module] = None
        if name == "sml":
            if class_mean is None and num_classes is None:
                raise ValueError("'sml' needs class_mean/class_std or num_classes")
            n = (
                int(num_classes)
                if class_mean is None
                else int(torch.as_tensor(class_mean).numel())
            )
            mean = (
                torch.zeros(n)
                if class_mean is None
                else torch.as_tensor(class_mean, dtype=torch.float32).reshape(-1)
            )
            std = (
                torch.ones(n)
                if class_std is None
                else torch.as_tensor(class_std, dtype=torch.float32).reshape(-1)
            )
            self.register_buffer("class_mean", mean.clone())
            self.register_buffer("class_std", std.clone())
            self.post = SMLPostprocess() if postprocess else None

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.name == "sml":
            return sml_score(
                logits,
                self.class_mean,
                self.class_std,
                postprocess=self.post if self.post is not None else False,
            )
        return SCORE_FUNCTIONS[self.name](logits, **self.kw)
