"""Learning-rate schedule of the FED supplementary: linear warm-up, then x gamma every step."""

from __future__ import annotations


def lr_at(
    iteration: int, base_lr: float, warmup_iters: int, warmup_start: float, step: int, gamma: float
) -> float:
    """Learning rate for a 0-based iteration.

    Linear warm-up from ``warmup_start`` to ``base_lr`` over ``warmup_iters`` iterations, then
    ``base_lr * gamma ** (iteration // step)`` (the paper: 1e-6 -> 1e-3 over 4,000 iterations,
    x0.1 every 15,000). ``step <= 0`` disables the decay.
    """
    if iteration < warmup_iters:
        return warmup_start + (base_lr - warmup_start) * iteration / warmup_iters
    decay = gamma ** (iteration // step) if step > 0 else 1.0
    return base_lr * decay


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024) (height x width, as the paper writes crops)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"size must look like HEIGHTxWIDTH, got {text!r}") from exc
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width
