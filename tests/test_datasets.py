"""Dataset loaders, Cityscapes-C, synthroad (+ sequences), augmentation, eval sources,
fed_synthroad.

Every fixture tree is written here, in tmp_path, in the benchmark's published layout, with
Pillow (not the OpenCV code under test), and every image is tiny.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets.anomaly import (
    FishyscapesDataset,
    SMIYCDataset,
    make_anomaly_dataset,
    to_ood_labels,
)
from training.datasets.augment import JointAugment, make_train_augment
from training.datasets.base import VOID
from training.datasets.cityscapes import (
    CityscapesDataset,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
)
from training.datasets.cityscapes_c import CORRUPTIONS, CityscapesCDataset, corrupt_image
from training.datasets.synthroad import (
    FISHYSCAPES_DIR,
    TRAIN_IDS_USED,
    SynthRoadDataset,
    render_indexed,
    write_dataset,
)
from training.datasets.synthroad_sequence import make_sequence
from training.eval_sources import DATASETS, make_source

# cityscapesScripts helpers/labels.py: (name, labelId, trainId); -1 / 255 = not trained on.
OFFICIAL_LABELS = [
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
]


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
# Fixture trees in the published layouts
# ------------------------------------------------------------------------------------------------
def make_cityscapes(root: Path, split: str = "val", h: int = 32, w: int = 40) -> dict[str, tuple]:
    """aachen: *_labelTrainIds.png present; bochum: only *_labelIds.png (the fallback)."""
    rng = np.random.default_rng(1)
    label_values = np.array([lid for _, lid, _ in OFFICIAL_LABELS], np.uint8)
    expected = {}
    for city, kind in (("bochum", "labelIds"), ("aachen", "trainIds")):
        for frame in (19, 20):
            stem = f"{city}_000000_{frame:06d}"
            image = _rgb(rng, h, w)
            _save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
            label_ids = rng.choice(label_values, (h, w)).astype(np.uint8)
            train_ids = label_ids_to_train_ids(label_ids)
            gt = root / "gtFine" / split / city
            if kind == "labelIds":
                _save(gt / f"{stem}_gtFine_labelIds.png", label_ids)
            else:
                _save(gt / f"{stem}_gtFine_labelTrainIds.png", train_ids)
                _save(
                    gt / f"{stem}_gtFine_labelIds.png", np.zeros_like(label_ids)
                )  # must not be used
            expected[stem] = (image, train_ids)
    return expected


def make_fishyscapes_laf(root: Path) -> dict[str, tuple]:
    """The official release: fishyscapes_lostandfound.zip + LostAndFound leftImg8bit images."""
    rng = np.random.default_rng(2)
    expected = {}
    for fs_id, laf_id, split in (
        ("0000", "04_Maurener_Weg_8_000000_000030", "test"),
        ("0001", "13_Elberstrasse_000001_000100", "train"),
    ):
        seq = laf_id.rsplit("_", 2)[0]
        image = _rgb(rng, 16, 24)
        _save(root / "leftImg8bit" / split / seq / f"{laf_id}_leftImg8bit.png", image)
        raw = rng.choice(np.array([0, 1, 255, 2], np.uint8), (16, 24))
        _save(root / "fishyscapes_lostandfound" / f"{fs_id}_{laf_id}_labels.png", raw)
        expected[f"{fs_id}_{laf_id}"] = (image, np.where(raw == 2, 255, raw).astype(np.uint8))
    return expected


def make_fishyscapes_processed(root: Path, split: str = "Static") -> dict[str, tuple]:
    """original/ + labels/ (the layout Meta-OoD / PEBAL / SynBoost prepare)."""
    rng = np.random.default_rng(3)
    expected = {}
    for name in ("0", "1"):
        image = _rgb(rng, 12, 20)
        raw = rng.choice(np.array([0, 1, 255], np.uint8), (12, 20))
        _save(root / split / "original" / f"{name}.png", image)
        _save(root / split / "labels" / f"{name}.png", raw)
        expected[name] = (image, raw)
    return expected


def make_fishyscapes_static_official(root: Path, cityscapes_root: Path) -> dict[str, tuple]:
    """fs_val_v3.zip: NNNN_{cityscapes id}_labels.png + ..._rgb.npz overlay on Cityscapes val."""
    rng = np.random.default_rng(4)
    expected = {}
    for fs_id, cs_id in (("0000", "frankfurt_000000_000294"), ("0001", "lindau_000001_000019")):
        base = _rgb(rng, 12, 20)
        _save(
            cityscapes_root
            / "leftImg8bit"
            / "val"
            / cs_id.split("_")[0]
            / f"{cs_id}_leftImg8bit.png",
            base,
        )
        overlay = rng.integers(-300, 300, base.shape).astype(np.int16)
        (root / "fs_val_v3").mkdir(parents=True, exist_ok=True)
        np.savez(root / "fs_val_v3" / f"{fs_id}_{cs_id}_rgb.npz", rgb=overlay)
        raw = rng.choice(np.array([0, 1, 255], np.uint8), (12, 20))
        _save(root / "fs_val_v3" / f"{fs_id}_{cs_id}_labels.png", raw)
        expected[f"{fs_id}_{cs_id}"] = (
            np.clip(base.astype(int) + overlay, 0, 255).astype(np.uint8),
            raw,
        )
    return expected


def make_smiyc(root: Path) -> dict[str, dict[str, tuple]]:
    """dataset_AnomalyTrack (jpg/png) and dataset_ObstacleTrack (webp),
    labels_masks/*_labels_semantic.png."""
    rng = np.random.default_rng(5)
    out: dict[str, dict[str, tuple]] = {"anomaly": {}, "obstacle": {}}
    track = root / "dataset_AnomalyTrack"
    for name, ext in (("validation0000", "png"), ("validation0001", "jpg"), ("test0000", "jpg")):
        image = _rgb(rng, 12, 16)
        _save(track / "images" / f"{name}.{ext}", image)
        if name.startswith("validation"):
            raw = rng.choice(np.array([0, 1, 255], np.uint8), (12, 16))
            _save(track / "labels_masks" / f"{name}_labels_semantic.png", raw)
            _save(track / "labels_masks" / f"{name}_labels_semantic_color.png", _rgb(rng, 12, 16))
            out["anomaly"][name] = (image if ext == "png" else None, raw)
    track = root / "dataset_ObstacleTrack"
    for name in ("validation_1", "validation_12"):
        image = _rgb(rng, 12, 16)
        _save(track / "images" / f"{name}.webp", image, lossless=True)
        raw = rng.choice(np.array([0, 1, 255], np.uint8), (12, 16))
        _save(track / "labels_masks" / f"{name}_labels_semantic.png", raw)
        out["obstacle"][name] = (image, raw)
    return out


# ------------------------------------------------------------------------------------------------
# Cityscapes
# ------------------------------------------------------------------------------------------------
def test_official_label_table() -> None:
    label_ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = np.full(256, 255, np.uint8)
    for _, lid, tid in OFFICIAL_LABELS:
        expected[lid] = tid
    assert np.array_equal(label_ids_to_train_ids(label_ids).ravel(), expected)
    train_ids = np.array([[0, 13, 18, 255]], np.uint8)
    assert np.array_equal(label_ids_to_train_ids(train_ids_to_label_ids(train_ids)), train_ids)


def test_cityscapes_train_ids_and_label_ids_fallback(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path)
    ds = CityscapesDataset(tmp_path, split="val")
    assert ds.names == sorted(expected)  # sorted by city, then frame
    assert len(ds) == 4
    for i, name in enumerate(ds.names):
        s = ds[i]
        image, train_ids = expected[name]
        assert s.name == name and s.image.dtype == np.uint8 and s.image.shape == image.shape
        assert np.array_equal(s.image, image), "image must be RGB, byte-exact"
        assert s.label.dtype == np.uint8 and np.array_equal(s.label, train_ids)
    assert ds.label_path(0).name.endswith("_labelTrainIds.png")  # aachen: trainIds preferred
    assert ds.label_path(2).name.endswith("_gtFine_labelIds.png")  # bochum: labelIds fallback
    assert len(CityscapesDataset(tmp_path, split="val", cities=["bochum"])) == 2
    assert len(CityscapesDataset(tmp_path, split="train")) == 0
    with pytest.raises(IndexError):
        ds[4]


def test_cityscapes_missing_labels(tmp_path: Path) -> None:
    _save(
        tmp_path / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png",
        np.zeros((8, 8, 3), np.uint8),
    )
    with pytest.raises(FileNotFoundError):
        CityscapesDataset(tmp_path, split="test")
    s = CityscapesDataset(tmp_path, split="test", missing_labels="void")[0]
    assert s.label.shape == (8, 8) and (s.label == VOID).all()
    with pytest.raises(FileNotFoundError):
        CityscapesDataset(tmp_path / "nope")


def test_read_label_palette_and_grey_rgb(tmp_path: Path) -> None:
    from training.datasets.base import read_label

    indices = np.array([[0, 1, 255], [13, 2, 0]], np.uint8)
    pal = Image.fromarray(indices, mode="P")
    pal.putpalette(
        [v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)]
    )
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_label(tmp_path / "p.png"), indices)
    _save(tmp_path / "g.png", np.repeat(indices[:, :, None], 3, axis=2))  # grey stored as RGB
    assert np.array_equal(read_label(tmp_path / "g.png"), indices)


# ------------------------------------------------------------------------------------------------
# OOD benchmarks
# ------------------------------------------------------------------------------------------------
def test_ood_convention_mapping() -> None:
    raw = np.arange(256, dtype=np.uint8)
    mapped = to_ood_labels(raw)
    assert mapped[0] == 0 and mapped[1] == 1 and (mapped[2:] == VOID).all()


def _check_anomaly(ds, expected: dict[str, tuple]) -> None:
    assert ds.names == sorted(expected)
    for i, name in enumerate(ds.names):
        s = ds[i]
        image, ood = expected[name]
        if image is not None:
            assert np.array_equal(s.image, image)
        assert s.image.dtype == np.uint8 and s.image.ndim == 3
        assert np.array_equal(s.ood, ood) and np.array_equal(s.label, ood)
        assert set(np.unique(s.ood)) <= {0, 1, VOID}


def test_fishyscapes_official_lost_and_found(tmp_path: Path) -> None:
    expected = make_fishyscapes_laf(tmp_path)
    ds = FishyscapesDataset(tmp_path, "LostAndFound")
    assert ds.layout == "official"
    _check_anomaly(ds, expected)
    assert len(make_anomaly_dataset("fs-laf", tmp_path)) == 2


def test_fishyscapes_processed_and_static_overlay(tmp_path: Path) -> None:
    expected = make_fishyscapes_processed(tmp_path / "fishyscapes", "Static")
    ds = FishyscapesDataset(tmp_path / "fishyscapes", "Static")
    assert ds.layout == "processed"
    _check_anomaly(ds, expected)
    expected = make_fishyscapes_static_official(tmp_path / "fs", tmp_path / "cityscapes")
    ds = FishyscapesDataset(tmp_path / "fs", "Static", cityscapes_root=tmp_path / "cityscapes")
    assert ds.layout == "official"
    _check_anomaly(ds, expected)
    with pytest.raises(ValueError):  # overlays need the Cityscapes images
        FishyscapesDataset(tmp_path / "fs", "Static")
    # fed_eval finds a `cityscapes` folder next to the Fishyscapes one
    source = make_source("fishyscapes-static", tmp_path / "fs")
    assert [s.name for s in source.samples()] == sorted(expected)
    assert all(np.array_equal(s.image, expected[s.name][0]) for s in source.samples())
    # images already blended (fs_static_images_v3/*_rgb.png) need no Cityscapes
    for name, (image, _) in expected.items():
        _save(tmp_path / "fs" / "fs_static_images_v3" / f"{name}_rgb.png", image[::-1].copy())
    _check_anomaly(
        FishyscapesDataset(tmp_path / "fs", "Static"),
        {k: (v[0][::-1], v[1]) for k, v in expected.items()},
    )
    with pytest.raises(ValueError):
        FishyscapesDataset(tmp_path / "fs", "Web")


def test_smiyc_tracks(tmp_path: Path) -> None:
    expected = make_smiyc(tmp_path)
    _check_anomaly(SMIYCDataset(tmp_path, "RoadAnomaly21"), expected["anomaly"])
    _check_anomaly(
        SMIYCDataset(tmp_path / "dataset_ObstacleTrack", "RoadObstacle21"), expected["obstacle"]
    )
    test = SMIYCDataset(tmp_path, "RoadAnomaly21", split="test")
    assert test.names == ["test0000"] and (test[0].ood == VOID).all()
    assert len(SMIYCDataset(tmp_path, "RoadAnomaly21", split="all")) == 3
    with pytest.raises(ValueError):
        SMIYCDataset(tmp_path, "RoadAnomaly19")


# ------------------------------------------------------------------------------------------------
# Cityscapes-C
# ------------------------------------------------------------------------------------------------
def test_cityscapes_c_deterministic(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path)
    a = CityscapesCDataset(tmp_path, "gaussian_noise", 3)
    b = CityscapesCDataset(tmp_path, "gaussian_noise", 3)
    state = np.random.get_state()
    first = [a[i] for i in range(len(a))]
    assert np.array_equal(np.random.get_state()[1], state[1]), (
        "the caller's global RNG is restored"
    )
    for i in reversed(range(len(b))):  # another instance, another order: identical bytes
        s = b[i]
        assert (
            np.array_equal(s.image, first[i].image)
            and s.corruption == "gaussian_noise"
            and s.severity == 3
        )
        assert np.array_equal(s.label, expected[s.name][1])
        assert not np.array_equal(s.image, expected[s.name][0])
    assert not np.array_equal(first[0].image, first[1].image)
    other = CityscapesCDataset(tmp_path, "gaussian_noise", 3, seed=1)[0].image
    assert not np.array_equal(other, first[0].image)
    assert not np.array_equal(
        CityscapesCDataset(tmp_path, "gaussian_noise", 1)[0].image, first[0].image
    )
    with pytest.raises(ValueError):
        CityscapesCDataset(tmp_path, "rain", 1)
    with pytest.raises(ValueError):
        CityscapesCDataset(tmp_path, "snow", 0)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_corruption_runs_and_is_seeded(corruption: str) -> None:
    image = np.random.default_rng(6).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    a = corrupt_image(image, corruption, 2, "frankfurt_000000_000294")
    b = corrupt_image(image, corruption, 2, "frankfurt_000000_000294")
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, image)


# ------------------------------------------------------------------------------------------------
# synthroad
# ------------------------------------------------------------------------------------------------
def test_synthroad_render_deterministic_by_seed() -> None:
    a = render_indexed(0, "train", 0, 48, 96)
    b = render_indexed(0, "train", 0, 48, 96)
    c = render_indexed(1, "train", 0, 48, 96)
    for x, y in (
        (a.image, b.image),
        (a.label_ids, b.label_ids),
        (a.train_ids, b.train_ids),
        (a.ood, b.ood),
    ):
        assert x.tobytes() == y.tobytes()
    assert a.image.tobytes() != c.image.tobytes()
    assert (
        a.image.shape == (48, 96, 3)
        and a.image.dtype == np.uint8
        and a.train_ids.dtype == np.uint8
    )
    assert np.array_equal(label_ids_to_train_ids(a.label_ids), a.train_ids)


def _frame_digest(frame) -> str:
    digest = hashlib.sha256()
    for array in (frame.image, frame.label_ids, frame.train_ids, frame.ood):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def test_synthroad_frames_are_pinned() -> None:
    """The same seed gives the same data as the single-module synthroad.py did (before the split
    into scene / render / io): a change here changes every dataset and shipped model's data."""
    from training.datasets.synthroad_sequence import iter_sequence

    assert _frame_digest(render_indexed(0, "train", 0, 48, 96)) == "3b6e3dded7701581"
    assert _frame_digest(render_indexed(1, "ood", 2, 48, 96)) == "b3a47532657dc0ea"
    drive = list(iter_sequence(3, (48, 96), seed=5, ood_from_frame=1))
    assert _frame_digest(drive[2]) == "e7e160c23a22dc65"


def test_synthroad_all_classes_appear() -> None:
    seen: set[int] = set()
    for index in range(6):
        f = render_indexed(0, "train", index, 96, 192)
        seen |= set(np.unique(f.train_ids).tolist())
        assert not (f.ood == 1).any(), "no OOD object in training images"
    assert set(TRAIN_IDS_USED) <= seen
    assert seen <= set(TRAIN_IDS_USED) | {VOID}


def test_synthroad_ood_objects_lie_on_the_road() -> None:
    for index in range(4):
        f = render_indexed(0, "ood", index, 96, 192)
        ood = f.ood == 1
        assert ood.sum() > 0
        assert (f.train_ids[ood] == VOID).all(), "OOD pixels are void in the trainIds"
        assert ((f.ood == VOID) == ((f.train_ids == VOID) & ~ood)).all()
        assert ((f.ood == 0) == (f.train_ids != VOID)).all()
        # what lies just below each OOD column's lowest pixel: road (incl. lane marks, shadows)
        below = []
        for col in np.nonzero(ood.any(axis=0))[0]:
            row = np.nonzero(ood[:, col])[0].max() + 1
            if row < ood.shape[0] and not ood[row, col]:
                below.append(f.train_ids[row, col])
        assert below and np.mean(np.array(below) == 0) > 0.8


def test_synthroad_write_read_and_determinism(tmp_path: Path) -> None:
    counts = {"train": 2, "val": 1, "ood": 2}
    meta = write_dataset(tmp_path / "a", counts, 40, 80, seed=0)
    write_dataset(tmp_path / "b", counts, 40, 80, seed=0)
    write_dataset(tmp_path / "c", counts, 40, 80, seed=1)
    assert meta["counts"] == counts
    da, db, dc = (_tree_digest(tmp_path / k) for k in "abc")
    assert da == db, "same seed -> identical bytes"
    pngs = [k for k in da if k.endswith("_leftImg8bit.png")]
    assert len(pngs) == 5 and all(da[k] != dc[k] for k in pngs)
    train = SynthRoadDataset(tmp_path / "a", "train")
    assert len(train) == 2 and train.names[0] == "synthroad_000000_000000"
    s = train[0]
    assert (
        s.image.shape == (40, 80, 3)
        and s.label.shape == (40, 80)
        and set(np.unique(s.ood)) <= {0, VOID}
    )
    frame = render_indexed(0, "train", 0, 40, 80)
    assert np.array_equal(s.image, frame.image) and np.array_equal(s.label, frame.train_ids)
    ood = SynthRoadDataset(tmp_path / "a", "ood")
    fishy = FishyscapesDataset(tmp_path / "a" / FISHYSCAPES_DIR, "Static")
    assert fishy.layout == "processed" and fishy.names == ood.names
    for i in range(len(ood)):
        assert (ood[i].ood == 1).any() and np.array_equal(ood[i].ood, fishy[i].ood)
        assert np.array_equal(ood[i].image, fishy[i].image)
    # a smaller rerun into the same folder leaves exactly the new counts behind
    write_dataset(tmp_path / "a", {"train": 1, "val": 1, "ood": 0}, 40, 80, seed=0)
    assert (
        len(SynthRoadDataset(tmp_path / "a", "train")) == 1
        and len(SynthRoadDataset(tmp_path / "a", "ood")) == 0
    )
    assert not list((tmp_path / "a" / FISHYSCAPES_DIR).rglob("*.png"))
    assert (
        _tree_digest(tmp_path / "a")[
            "leftImg8bit/train/synthroad/synthroad_000000_000000_leftImg8bit.png"
        ]
        == db["leftImg8bit/train/synthroad/synthroad_000000_000000_leftImg8bit.png"]
    )


# ------------------------------------------------------------------------------------------------
# Sequences
# ------------------------------------------------------------------------------------------------
def test_sequence_deterministic_and_coherent() -> None:
    seq = make_sequence(12, (48, 96), seed=3, ood_from_frame=4)
    again = make_sequence(12, (48, 96), seed=3, ood_from_frame=4)
    other = make_sequence(2, (48, 96), seed=4, ood_from_frame=4)
    assert len(seq) == 12
    for (i1, t1, o1), (i2, t2, o2) in zip(seq, again):
        assert (
            i1.tobytes() == i2.tobytes()
            and t1.tobytes() == t2.tobytes()
            and o1.tobytes() == o2.tobytes()
        )
    assert seq[0][0].tobytes() != other[0][0].tobytes()
    counts = []
    for i, (image, train_ids, ood) in enumerate(seq):
        assert image.shape == (48, 96, 3) and image.dtype == np.uint8
        assert (
            train_ids.shape == ood.shape == (48, 96) and train_ids.dtype == ood.dtype == np.uint8
        )
        assert set(np.unique(ood)) <= {0, 1, VOID}
        assert (train_ids[ood == 1] == VOID).all()
        counts.append(int((ood == 1).sum()))
    assert counts[:4] == [0] * 4 and min(counts[4:]) > 0
    assert counts[-1] > counts[4], "OOD objects grow as the camera approaches"
    # one street seen from a moving camera: consecutive frames are far closer than another scene
    step = np.abs(seq[1][0].astype(int) - seq[0][0].astype(int)).mean()
    assert step < np.abs(other[0][0].astype(int) - seq[0][0].astype(int)).mean()
    assert all(not (o == 1).any() for _, _, o in make_sequence(3, (48, 96), seed=3, ood=False))


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------
def test_augment_seeded_shapes_and_ignore_padding() -> None:
    rng = np.random.default_rng(7)
    image, label = _rgb(rng, 24, 40), rng.integers(0, 19, (24, 40)).astype(np.uint8)
    aug = make_train_augment(crop=(16, 16), seed=3)
    a = [aug(image, label) for _ in range(3)]
    b = [make_train_augment(crop=(16, 16), seed=3)(image, label) for _ in range(1)]
    assert np.array_equal(a[0][0], b[0][0]) and np.array_equal(a[0][1], b[0][1])
    x = aug(image, label, np.random.default_rng(11))
    y = aug(image, label, np.random.default_rng(11))
    assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    for img, lab in a + [x]:
        assert (
            img.shape == (16, 16, 3)
            and lab.shape == (16, 16)
            and img.dtype == lab.dtype == np.uint8
        )
        assert set(np.unique(lab)) <= set(np.unique(label)) | {VOID}
    # small input, no rescale: padded bottom/right with image 0 and label 255 (never a class)
    small = JointAugment(
        crop=(20, 30), scale_range=(1.0, 1.0), flip=False, cat_max_ratio=1.0, seed=0
    )
    img, lab = small(image[:10, :12], label[:10, :12])
    assert img.shape == (20, 30, 3) and lab.shape == (20, 30)
    assert np.array_equal(img[:10, :12], image[:10, :12]) and np.array_equal(
        lab[:10, :12], label[:10, :12]
    )
    assert (lab[10:] == VOID).all() and (lab[:, 12:] == VOID).all()
    assert (img[10:] == 0).all() and (img[:, 12:] == 0).all()
    # flip only: mirrors image and label together
    flip = JointAugment(crop=None, scale_range=(1.0, 1.0), flip=True, flip_prob=1.0)
    img, lab = flip(image, label)
    assert np.array_equal(img, image[:, ::-1]) and np.array_equal(lab, label[:, ::-1])
    # rescale range honoured: output sizes lie in [0.5, 2.0] x input
    scale = JointAugment(crop=None, flip=False, seed=5)
    for _ in range(5):
        img, lab = scale(image, label)
        assert img.shape[:2] == lab.shape and 12 <= lab.shape[0] <= 48 and 20 <= lab.shape[1] <= 80


# ------------------------------------------------------------------------------------------------
# Evaluation sources
# ------------------------------------------------------------------------------------------------
def _two_passes(source) -> list:
    first, second = list(source.samples()), list(source.samples())
    assert len(first) == len(second) == len(source) > 0
    for a, b in zip(first, second):
        assert a.name == b.name and a.image.tobytes() == b.image.tobytes()
        for x, y in ((a.label, b.label), (a.ood, b.ood)):
            assert (x is None and y is None) or x.tobytes() == y.tobytes()
    return first


def test_eval_sources_cover_every_dataset(tmp_path: Path) -> None:
    assert set(DATASETS) == {
        "cityscapes",
        "cityscapes-c",
        "fishyscapes-lf",
        "fishyscapes-static",
        "road-anomaly21",
        "road-obstacle21",
        "synthroad",
        "synthroad-ood",
        "synthroad-obstacle",
    }
    make_cityscapes(tmp_path / "cs")
    make_fishyscapes_laf(tmp_path / "laf")
    make_fishyscapes_processed(tmp_path / "fs", "Static")
    make_smiyc(tmp_path / "smiyc")
    write_dataset(tmp_path / "sr", {"val": 2, "ood": 2, "obstacle": 2}, 32, 64, seed=0)
    cases = {  # name: (root, kwargs, has label, has ood)
        "cityscapes": (tmp_path / "cs", {}, True, False),
        "cityscapes-c": (
            tmp_path / "cs",
            {"corruption": "impulse_noise", "severity": 4},
            True,
            False,
        ),
        "fishyscapes-lf": (tmp_path / "laf", {}, False, True),
        "fishyscapes-static": (tmp_path / "fs", {}, False, True),
        "road-anomaly21": (tmp_path / "smiyc", {}, False, True),
        "road-obstacle21": (tmp_path / "smiyc" / "dataset_ObstacleTrack", {}, False, True),
        "synthroad": (tmp_path / "sr", {}, True, False),
        "synthroad-ood": (tmp_path / "sr", {}, True, True),
        "synthroad-obstacle": (tmp_path / "sr", {}, True, True),
    }
    from training.evaluation import EvalSample

    for name, (root, kwargs, has_label, has_ood) in cases.items():
        samples = _two_passes(make_source(name, root, None, limit=None, **kwargs))
        for s in samples:
            assert isinstance(s, EvalSample) and s.image.dtype == np.uint8 and s.image.ndim == 3
            assert (s.label is not None) == has_label and (s.ood is not None) == has_ood, name
        if name in ("synthroad-ood", "synthroad-obstacle"):
            assert all((s.ood == 1).any() for s in samples), name
        if name == "synthroad-obstacle":
            assert all("_000003_" in s.name for s in samples)
    limited = make_source("cityscapes", tmp_path / "cs", "val", limit=1)
    assert len(limited) == 1 and len(_two_passes(limited)) == 1
    clean = list(make_source("cityscapes", tmp_path / "cs", None).samples())[0]
    corrupted = list(
        make_source("cityscapes-c", tmp_path / "cs", None, corruption="fog", severity=2).samples()
    )[0]
    assert clean.name == corrupted.name and not np.array_equal(clean.image, corrupted.image)
    assert np.array_equal(clean.label, corrupted.label)
    with pytest.raises(ValueError):
        make_source("mapillary", tmp_path)
    with pytest.raises(FileNotFoundError):
        make_source("cityscapes", tmp_path / "cs", "train")
    with pytest.raises(ValueError):
        make_source("fishyscapes-lf", tmp_path / "laf", "test")


def test_cli_eval_accepts_every_dataset() -> None:
    from training.cli_eval import build_parser

    parser = build_parser()
    for name in DATASETS:
        args = parser.parse_args(
            ["--backbone", "b", "--dataset", name, "--data-root", "r", "--out", "o"]
        )
        assert args.dataset == name


# ------------------------------------------------------------------------------------------------
# fed_synthroad
# ------------------------------------------------------------------------------------------------
def test_cli_synthroad_help_and_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.cli_synthroad import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "fed_synthroad" in capsys.readouterr().out
    out = tmp_path / "sr"
    assert (
        main(
            [
                "--out",
                str(out),
                "--train",
                "2",
                "--val",
                "1",
                "--ood",
                "1",
                "--size",
                "32x64",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "wrote 4 images" in captured.out and "fed_synthroad" in captured.err
    )  # tqdm bar on stderr
    for split, n in (("train", 2), ("val", 1), ("ood", 1)):
        ds = SynthRoadDataset(out, split)
        assert len(ds) == n and ds[0].image.shape == (32, 64, 3)
    assert (out / "synthroad.json").is_file()
    assert len(list((out / FISHYSCAPES_DIR / "labels").glob("*.png"))) == 1
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--size", "16x16"])
