"""FED helpers for tests (not product code): a FED with data-initialised ActNorms."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from ros2_fed.fed import FEDConfig, FlowEneDet


def make_random_fed(
    cfg: FEDConfig, logits: torch.Tensor, features: Optional[torch.Tensor] = None
) -> FlowEneDet:
    """A FED with data-initialised ActNorms (tests with random backbones).

    Random backbones can put every pixel deep in the confident tail; with the authors' clamp of
    log P(out) that channel is then one constant, ActNorm's data init divides by its ~0 spread
    and the graph becomes ill-conditioned (rounding amplified ~1e6x). Such logits get the
    unclamped channel, as no trained backbone produces them."""
    fed = FlowEneDet(cfg)
    if cfg.out_floor > 0 and float(fed.energy_inputs(logits)[:, 1].std()) < 1e-2:
        fed = FlowEneDet(replace(cfg, out_floor=0.0))
    fed.initialize(logits, features if cfg.conditional else None)
    return fed.eval()


def save_fed_for(
    path: Path, fed: FlowEneDet, backbone: Path, metadata: Optional[dict[str, Any]] = None
) -> tuple[Path, Path]:
    """Save ``fed`` as fed_train does: with the fingerprint of the saved backbone checkpoint it
    belongs to (read back with load_backbone, as every consumer computes it), so loading it
    checks the backbone instead of warning about an older file without a fingerprint."""
    from ros2_fed.backbones import load_backbone
    from ros2_fed.checkpoint import save_fed
    from ros2_fed.fingerprint import FINGERPRINT_KEY, fingerprint_of

    with torch.random.fork_rng(devices=[]):  # building the backbone must not move the seed
        fingerprint = fingerprint_of(load_backbone(backbone))
    return save_fed(path, fed, {FINGERPRINT_KEY: fingerprint.to_json(), **(metadata or {})})


def save_tiny_model(root: Path, size: tuple[int, int]) -> dict[str, str]:
    """A small random TinySeg and a FED-U on its logits (with its fingerprint), saved under
    ``root`` (seed 0):
    {"backbone": stem, "fed": stem}, what the replay tests hand to fed_bag_eval."""
    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg

    torch.manual_seed(0)
    backbone = TinySeg(
        TinySegConfig(num_classes=19, widths=(8, 16, 32, 32), decoder_channels=16)
    ).eval()
    save_tinyseg(root / "tinyseg", backbone, size)
    with torch.no_grad():
        logits, _ = backbone(torch.rand(2, 3, *size) * 255)
    fed = make_random_fed(FEDConfig(num_classes=19), logits)
    save_fed_for(root / "fed_u", fed, root / "tinyseg")
    return {"backbone": str(root / "tinyseg"), "fed": str(root / "fed_u")}


@contextlib.contextmanager
def private_engine_cache(root: Path) -> Iterator[None]:
    """An engine cache under ``root`` and one torch thread (a busy 2-core machine), restored
    afterwards."""
    saved = os.environ.get("ROS2_FED_CACHE")
    os.environ["ROS2_FED_CACHE"] = str(root / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if saved is None:
            os.environ.pop("ROS2_FED_CACHE", None)
        else:
            os.environ["ROS2_FED_CACHE"] = saved
