"""Reproducible, resumable training batches from any dataset of (image, label) samples.

The sampler yields ``(index, augmentation_seed)`` pairs from a stream determined by
(seed, rank) only, so a resumed run sees exactly the batches the interrupted run would have
seen (the consumed part of the stream is skipped without loading images).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def sample_arrays(sample: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8 RGB, label HxW uint8) from a dataset sample (dict or attributes)."""
    if isinstance(sample, dict):
        return sample["image"], sample["label"]
    if isinstance(sample, (tuple, list)):
        return sample[0], sample[1]
    return sample.image, sample.label


class SeededStreamSampler(Sampler):
    """Endless shuffled epochs of ``(index, augmentation seed)``, starting at ``skip``."""

    def __init__(self, size: int, seed: int, rank: int = 0, skip: int = 0) -> None:
        if size <= 0:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.rank, self.skip = size, seed, rank, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, position = divmod(self.skip, self.size)
        while True:
            order = np.random.default_rng([self.seed, self.rank, epoch]).permutation(self.size)
            for offset in range(position, self.size):
                yield (
                    int(order[offset]),
                    (self.seed * 1_000_003 + self.rank * 7919 + epoch * self.size + offset)
                    % (2**63),
                )
            epoch, position = epoch + 1, 0


class AugmentedDataset(Dataset):
    """Applies a joint image/label augmentation with the seed the sampler hands over."""

    def __init__(self, base: Dataset, augment: Optional[Augment]) -> None:
        self.base = base
        self.augment = augment

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        image, label = sample_arrays(self.base[index])
        if self.augment is not None:
            image, label = self.augment(image, label, np.random.default_rng(seed))
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(
            np.ascontiguousarray(label)
        )


def batch_stream(
    dataset: Dataset,
    augment: Optional[Augment],
    batch_size: int,
    seed: int,
    rank: int = 0,
    skip_batches: int = 0,
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches: images (B, H, W, 3) uint8 and labels (B, H, W) uint8 (crops share a
    size)."""
    sampler = SeededStreamSampler(len(dataset), seed, rank, skip=skip_batches * batch_size)
    loader = DataLoader(
        AugmentedDataset(dataset, augment),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    return iter(loader)


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float 0..255 on the device (the backbone normalises)."""
    return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
