"""Resumable training state in safetensors + JSON (no pickles, even for our own files).

A training state holds the FED weights, the optimizer moments, the iteration and the RNG
state. Optimizer tensors are flattened as ``optim.<param>.<name>``; the param groups'
hyper-parameters go to the JSON sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from ros2_fed.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

KIND = "fed-train-state"


def save_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    metadata: dict[str, Any],
    kind: str = KIND,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    for index, state in optim_state["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(metadata)
    meta.update(
        iteration=int(iteration),
        param_groups=optim_state["param_groups"],
        config=model.cfg.to_dict(),
    )
    save_checkpoint(path, tensors, meta, kind=kind)


def saved_iteration(path: Path) -> Optional[int]:
    """The iteration the training state at ``path`` holds (from its JSON alone), None when there
    is none: what a stopped run says it kept."""
    try:
        meta = json.loads(Path(f"{path}.json").read_text())
    except (OSError, ValueError):
        return None
    iteration = meta.get("iteration") if isinstance(meta, dict) else None
    return iteration if isinstance(iteration, int) else None


def load_training_state(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, kind: str = KIND
) -> dict[str, Any]:
    """Restore model, optimizer and RNG in place; returns the metadata (with ``iteration``)."""
    tensors, meta = load_checkpoint(path, kind=kind)
    if meta.get("config") != model.cfg.to_dict():
        raise CheckpointError(
            f"{path}: {config_difference(meta.get('config') or {}, model.cfg.to_dict())}"
        )
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
    )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def config_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Why a training state does not fit this run, e.g. "made for FED-U, not FED-C (cond_dim 0 vs
    32)"."""

    def variant(cfg: dict[str, Any]) -> str:
        return "FED-C" if cfg.get("cond_dim") else "FED-U"

    keys = sorted(set(saved) | set(wanted))
    diff = ", ".join(
        f"{k} {saved.get(k)} vs {wanted.get(k)}" for k in keys if saved.get(k) != wanted.get(k)
    )
    return (
        f"training state was made for {variant(saved)}, not {variant(wanted)} ({diff}); "
        "resume with the design flags it was trained with"
    )
