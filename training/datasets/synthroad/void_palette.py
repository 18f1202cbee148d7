"""Colours of synthroad's void clutter: muted street colours, each far from every OOD colour.

Why a palette of its own: the OOD split's objects are painted from a table of saturated colours;
clutter painted in those colours would show the detector the OOD test objects' look during
training. Every entry here stays at least ``MIN_OOD_DISTANCE`` (RGB, Euclidean) away from each
OOD colour, also after the jitter (tests/test_synthroad_void.py checks it). Clutter may also
take colours from its own scene (the asphalt of a road patch, the sky mirrored in a puddle).
"""

from __future__ import annotations

import numpy as np


def _table(rows: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(rows, np.float32)


METAL = _table([(70, 72, 75), (112, 114, 116), (150, 150, 146), (48, 50, 54), (128, 120, 106)])
WOOD = _table([(118, 84, 56), (150, 112, 72), (92, 70, 52), (168, 136, 98)])
PAINT = _table(
    [
        (42, 72, 52),
        (56, 58, 63),
        (150, 48, 42),
        (198, 158, 48),
        (52, 62, 96),
        (186, 176, 150),
        (96, 110, 122),
        (165, 92, 62),
    ]
)
FABRIC = _table(
    [(36, 36, 41), (60, 66, 92), (112, 42, 48), (150, 140, 120), (80, 96, 76), (122, 122, 128)]
)
STONE = _table([(122, 116, 108), (96, 93, 89), (142, 132, 116), (160, 158, 152)])
POSTER = _table(
    [
        (200, 186, 150),
        (72, 92, 142),
        (162, 72, 62),
        (62, 122, 102),
        (214, 200, 112),
        (122, 62, 112),
        (205, 205, 200),
    ]
)
PALETTES: dict[str, np.ndarray] = {
    "metal": METAL,
    "wood": WOOD,
    "paint": PAINT,
    "fabric": FABRIC,
    "stone": STONE,
    "poster": POSTER,
}
#: Largest change per channel :func:`pick` adds to a palette colour.
JITTER = 8.0
#: Smallest RGB distance between a palette entry and an OOD colour (before jitter).
MIN_OOD_DISTANCE = 60.0


def pick(rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    """A palette colour with a little uniform jitter (bounded, so the distance rule holds)."""
    colour = palette[rng.integers(len(palette))] + rng.uniform(-JITTER, JITTER, 3)
    return np.clip(colour, 0, 255).astype(np.float32)
