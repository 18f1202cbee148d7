"""Every synthroad seed the project's figures are rendered from, in one table.

Why: a split reported as held out must share no scene with the data a choice was made on.
Two kinds of seed exist and draw from different random streams: *dataset* seeds
(``fed_synthroad --seed``; frame ``i`` of split ``s`` comes from ``[seed, SPLITS[s], i]``) and
*drive* seeds (``fed_synthroad_bag``, ``training.alert_selection``, ``training.scene_eval``;
``[seed, 7]``, ``[seed, 8, i]``, ``[seed, 11]``, ``[seed, 12, i]``, ``[seed, 13]``,
``[seed, 99]``; camera ``k`` of a rig adds ``1000 k``). The obstacle split has a split code of
its own (3) and a seed no other entry uses, not even modulo the camera stride
(tests/test_synthroad_obstacle.py).
"""

from __future__ import annotations

#: The obstacle split's dataset seed: ``fed_synthroad --obstacle 100 --seed 9901``.
OBSTACLE_SEED = 9901

#: The stream tags after a drive seed (training.datasets.synthroad.render / synthroad_sequence,
#: training.alert_selection): a dataset split code must be none of them.
DRIVE_STREAM_TAGS = (7, 8, 11, 12, 13, 99)

#: What each seed range renders: (kind, first, last) with kind "dataset" or "drive".
SEED_TABLE: dict[str, tuple[str, int, int]] = {
    "default model: train / val / held-out OOD and void-clutter training data": ("dataset", 0, 0),
    "default model: selection OOD split (seed + 1)": ("dataset", 1, 1),
    "fresh OOD split of the post-processing study": ("dataset", 17, 17),
    "obstacle split (synthroad-obstacle)": ("dataset", OBSTACLE_SEED, OBSTACLE_SEED),
    "held-out alert drives, the demo drive (seed 0)": ("drive", 0, 7),
    "alert selection drives": ("drive", 100, 139),
    "held-out alert drives 200": ("drive", 200, 219),
    "held-out alert drives 300": ("drive", 300, 319),
    "alert drives rendered after the choice": ("drive", 400, 419),
    "reserved drives": ("drive", 500, 519),
    "scene health: clean drives": ("drive", 600, 609),
    "scene health: check drives": ("drive", 5000, 5019),
    "data engine: mined drives, animals only (docs/data_engine.md)": ("drive", 7700, 7709),
    "data engine: held-out drives, animals only": ("drive", 7750, 7759),
}
