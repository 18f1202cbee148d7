"""synthroad void clutter: kept apart from the OOD kinds, labelled void, off by default, at the
requested pixel share (docs/synthroad_void.md)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import types
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from training.datasets.base import VOID
from training.datasets.synthroad import (
    VOID_FAMILIES,
    Frame,
    VoidClutter,
    render_indexed,
    sample_indexed,
    sample_scene,
)
from training.datasets.synthroad import scene as scene_module
from training.datasets.synthroad.canvas import _Canvas
from training.datasets.synthroad.render import _draw_ood
from training.datasets.synthroad.scene import _OOD_COLOURS, _OOD_KINDS, Camera, Obj, _ood_params
from training.datasets.synthroad.void import _image_bounds
from training.datasets.synthroad.void_figure import clutter_mask, measure
from training.datasets.synthroad.void_palette import JITTER, MIN_OOD_DISTANCE, PALETTES

SYNTHROAD = Path(scene_module.__file__).parent
#: Modules that make the clutter (everything its code can reach besides numpy / OpenCV).
VOID_MODULES = ("void.py", "void_ground.py", "void_things.py", "void_palette.py", "canvas.py")
#: The OOD generators: drawers, parameter sampler, shader, colour table, placement, dispatch.
OOD_GENERATORS = {
    "_draw_cargo",
    "_draw_animal",
    "_draw_tyre",
    "_draw_cone",
    "_draw_barrel",
    "_draw_bag",
    "_draw_debris",
    "_draw_ood",
    "_ood_params",
    "_ood_shade",
    "_OOD_COLOURS",
    "_OOD_DRAW",
    "_OodPlace",
    "_place_ood",
}
#: The OOD kinds and obvious synonyms: no clutter family may be called (partly) any of these.
OOD_SYNONYMS = set(_OOD_KINDS) | {
    "box", "boxes", "crate", "parcel", "package", "luggage", "suitcase", "carton",
    "dog", "cat", "deer", "cow", "horse", "sheep", "fox", "boar", "pet",
    "tire", "tires", "tyres", "wheel", "wheels", "ring", "rim",
    "cones", "pylon", "pylons",
    "barrels", "drum", "drums", "keg", "cask", "canister",
    "bags", "sack", "sacks", "backpack", "rucksack",
    "rubble", "fragment", "fragments", "rock", "rocks", "stone", "stones", "litter", "junk",
    "scrap", "shards", "lost",
}  # fmt: skip


# ------------------------------------------------------------------------ generator separation
def _reachable_names(fn: types.FunctionType, seen: set[int]) -> set[str]:
    """Every global or attribute name ``fn`` (and nested functions, and the synthroad
    functions it calls) refers to."""
    names: set[str] = set()
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        names |= set(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for name in code.co_names:
            target = fn.__globals__.get(name)
            if isinstance(target, types.FunctionType) and "synthroad" in target.__module__:
                names |= _reachable_names(target, seen)
    return names


def _ood_references(fn: types.FunctionType) -> set[str]:
    return _reachable_names(fn, set()) & OOD_GENERATORS


def test_void_code_never_reaches_an_ood_generator() -> None:
    for name, family in VOID_FAMILIES.items():
        for fn in (family.sample, family.draw):
            assert not _ood_references(fn), (name, fn.__name__, _ood_references(fn))
    for module in VOID_MODULES:
        tree = ast.parse((SYNTHROAD / module).read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not used & OOD_GENERATORS, (module, used & OOD_GENERATORS)
        imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "render" not in imports, f"{module} imports the module of the OOD drawers"


def test_the_generator_check_catches_a_borrowed_drawer() -> None:
    """The check above can fail: a drawer that borrows an OOD drawer, directly or through a
    helper, is caught."""
    from training.datasets.synthroad import render

    def helper(cv: _Canvas, o: Obj, z: float) -> None:  # a family drawer that borrows
        return render._draw_tyre(cv, o, z, None)

    assert _ood_references(helper) == {"_draw_tyre"}
    assert _ood_references(render._draw_ood) >= {"_OOD_DRAW", "_ood_shade"}


def test_void_family_names_are_not_ood_kinds_or_synonyms() -> None:
    for name in VOID_FAMILIES:
        tokens = set(name.lower().split("_")) | {name.lower()}
        assert not tokens & OOD_SYNONYMS, (name, tokens & OOD_SYNONYMS)
    assert {"lost", "cargo"} & set("lost_cargo".split("_")) & OOD_SYNONYMS  # the check can fail


def test_void_palette_keeps_away_from_ood_colours() -> None:
    worst = MIN_OOD_DISTANCE - JITTER * np.sqrt(3)
    for name, palette in PALETTES.items():
        d = np.linalg.norm(palette[:, None, :] - _OOD_COLOURS[None, :, :], axis=2)
        assert d.min() >= MIN_OOD_DISTANCE, (name, d.min())
    assert worst > 40  # after jitter every clutter colour is still far from every OOD colour


# ----------------------------------------------------------------------------- shape separation
_CAM = Camera(256, 512, 480.0, 1.35, 110.0, 256.0)
_Z = 8.0


def _silhouette(draw: Callable[[_Canvas], None]) -> dict:
    """Normalised silhouette (32 x 32 in its bounding box), log aspect, size in metres, rows."""
    cv = _Canvas(_CAM)
    cv.lab[:] = 255
    draw(cv)
    ys, xs = np.nonzero(cv.lab != 255)
    crop = (cv.lab[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] != 255).astype(np.uint8)
    h, w = crop.shape
    scale = _CAM.focal / _Z
    mask = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA) > 0
    return {"mask": mask, "aspect": np.log(h / w), "w": w / scale, "h": h / scale, "rows": ys}


def _ood_silhouette(kind: str, seed: int) -> dict:
    """An OOD object as the OOD split draws it (its sizes as in scene._place_ood)."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0.4, 0.9) if kind in ("cone", "tyre") else rng.uniform(0.35, 1.3)
    size = float(rng.uniform(0.8, 1.8) if kind == "animal" else size)
    o = Obj(kind, 0.0, _Z, _ood_params(rng, kind, size))
    return _silhouette(lambda cv: _draw_ood(cv, o, _Z))


_SCENE = sample_scene(np.random.default_rng(0), 256, 512)[0]


def _void_object(name: str, seed: int) -> tuple[Obj, float]:
    family = VOID_FAMILIES[name]
    p = family.sample(np.random.default_rng(seed), _SCENE)
    z = _Z + p["d"] if family.plane else _Z
    return Obj(name, -4.0 if family.plane else 0.0, z, p), z


def _void_silhouette(name: str, seed: int) -> dict:
    o, z = _void_object(name, seed)
    return _silhouette(lambda cv: VOID_FAMILIES[name].draw(cv, o, z))


def _same_shape(a: dict, b: dict) -> bool:
    """Same outline (IoU of the normalised silhouettes), proportions and size (within 1.5x)."""
    iou = (a["mask"] & b["mask"]).sum() / max((a["mask"] | b["mask"]).sum(), 1)
    ratio = max(a["w"] / b["w"], b["w"] / a["w"], a["h"] / b["h"], b["h"] / a["h"])
    return iou >= 0.85 and abs(a["aspect"] - b["aspect"]) < 0.25 and ratio < 1.5


_N = 12


@pytest.fixture(scope="module")
def ood_silhouettes() -> dict[str, list[dict]]:
    return {k: [_ood_silhouette(k, s) for s in range(2 * _N)] for k in _OOD_KINDS}


def test_standing_void_families_have_no_ood_shape(ood_silhouettes: dict) -> None:
    for name, family in VOID_FAMILIES.items():
        if family.flat:
            continue
        mine = [_void_silhouette(name, s) for s in range(_N)]
        for kind, theirs in ood_silhouettes.items():
            clashes = sum(_same_shape(a, b) for a in mine for b in theirs)
            assert clashes == 0, f"void family {name} has the shape of OOD kind {kind}"


def test_the_shape_check_catches_a_copy_of_an_ood_kind(ood_silhouettes: dict) -> None:
    """A family that drew an OOD kind again (other sizes and colours) would be caught -- for
    every kind with a fixed outline. Debris outlines are random polygons: a copy of the debris
    generator is caught by the generator check and the flatness rule instead."""
    for kind, silhouettes in ood_silhouettes.items():
        copies = silhouettes[_N:]
        caught = sum(_same_shape(a, b) for a in silhouettes[:_N] for b in copies)
        assert caught > 0 or kind == "debris", kind


def _solidity(mask: np.ndarray) -> float:
    """Pixels over the convex hull's area (half the hull outline added: pixel edges)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours))
    return float(mask.sum() / (cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1))


def _full_mask(draw: Callable[[_Canvas], None], cam: Camera = _CAM) -> np.ndarray:
    cv = _Canvas(cam)
    cv.lab[:] = 255
    draw(cv)
    return cv.lab != 255


def test_flat_void_is_flush_with_the_ground_and_unlike_debris() -> None:
    """Flat families have no thickness -- raising the camera twice as high moves every pixel
    of a ground-plane shape twice as far below the horizon -- and compact outlines; debris (the
    one flat-ish OOD kind) is a jagged slab, which the solidity bound would catch."""
    high = dataclasses.replace(_CAM, cam_h=2 * _CAM.cam_h, height=4 * _CAM.height)
    for name, family in VOID_FAMILIES.items():
        if not family.flat:
            continue
        for seed in range(6):
            o, z = _void_object(name, seed)
            mask = _full_mask(lambda cv: family.draw(cv, o, z))
            rows = np.nonzero(mask)[0] - _CAM.horizon
            rows_high = np.nonzero(_full_mask(lambda cv: family.draw(cv, o, z), high))[0]
            rows_high = rows_high - _CAM.horizon
            assert o.params["h"] == 0, name
            assert abs(rows_high.min() - 2 * rows.min()) <= 2.5, name
            assert abs(rows_high.max() - 2 * rows.max()) <= 2.5, name
            assert _solidity(mask) > 0.7, name
    debris = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        o = Obj("debris", 0.0, _Z, _ood_params(rng, "debris", float(rng.uniform(0.35, 1.3))))
        debris.append(_solidity(_full_mask(lambda cv: _draw_ood(cv, o, _Z))))
    assert np.mean(np.array(debris) <= 0.7) >= 0.9, debris


# --------------------------------------------------------------------------------- rendering
def _digest(frame: Frame) -> str:
    digest = hashlib.sha256()
    for array in (frame.image, frame.label_ids, frame.train_ids, frame.ood):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


#: Frames (seed 3, 64 x 128) rendered before void clutter existed.
_BEFORE_CLUTTER = {
    ("train", 0): "8ee05cbf0dd010bc",
    ("train", 1): "08f547a07a3d4465",
    ("train", 2): "b2ff9f9f24352c3b",
    ("val", 0): "cd70adfd77083d46",
    ("ood", 0): "5084636ebcf2d4cb",
    ("ood", 1): "bb3f12ad6118a231",
}


def test_without_clutter_every_frame_is_byte_identical_to_before() -> None:
    on_train = VoidClutter(0.04)  # the default splits: train only
    for (split, index), digest in _BEFORE_CLUTTER.items():
        assert _digest(render_indexed(3, split, index, 64, 128)) == digest
        assert _digest(render_indexed(3, split, index, 64, 128, VoidClutter(0.0))) == digest
        if split != "train":
            assert _digest(render_indexed(3, split, index, 64, 128, on_train)) == digest


def test_clutter_changes_only_its_own_pixels_and_they_are_void() -> None:
    clutter = VoidClutter(0.06, ("train", "ood"))
    for split, index in (("train", 0), ("train", 1), ("train", 5), ("ood", 0), ("ood", 3)):
        plain = render_indexed(0, split, index, 128, 256)
        full = render_indexed(0, split, index, 128, 256, clutter)
        changed = full.label_ids != plain.label_ids
        assert changed.any(), (split, index)
        assert (full.train_ids[changed] == VOID).all(), "clutter pixels are void"
        assert (full.ood[changed] == VOID).all(), "clutter is void in the OOD image, never 1"
        assert np.array_equal(full.ood == 1, plain.ood == 1), "clutter never hides OOD pixels"
        assert np.array_equal(clutter_mask(full, plain), changed & (plain.train_ids != VOID))
        # the same scene, light and sensor noise: the image only differs where clutter stands
        # (its image boxes, plus a few pixels of anti-aliasing and the optional lens blur)
        scene, cam, _ = sample_indexed(0, split, index, 128, 256, clutter)
        near = np.zeros(changed.shape, np.uint8)
        for o in scene.objects:
            if o.kind in VOID_FAMILIES:
                left, right, top, bottom = _image_bounds(cam, o.params["extent"])
                corners = np.round([left - 5, top - 5, right + 5, bottom + 5]).astype(int)
                x0, y0, x1, y1 = np.clip(corners, 0, [256, 128, 256, 128])
                near[y0:y1, x0:x1] = 1
        assert (changed <= near.astype(bool)).all()
        far = ~near.astype(bool)
        assert np.array_equal(full.image[far], plain.image[far]), (split, index)


def test_clutter_share_is_near_the_request_with_some_on_the_road() -> None:
    m = measure(VoidClutter(0.04), 24, size=(128, 256))
    assert 0.025 < m["share"] < 0.06, m
    assert 0.2 < m["on_road_fraction"] < 0.7, m
    assert m["images_with_road_clutter"] >= 0.6, m


def test_every_family_is_placed_and_drawn() -> None:
    seen: set[str] = set()
    for index in range(40):
        scene, _, _ = sample_indexed(0, "train", index, 128, 256, VoidClutter(0.08))
        seen |= {o.kind for o in scene.objects if o.kind in VOID_FAMILIES}
    assert seen == set(VOID_FAMILIES)


# --------------------------------------------------------------------------------------- CLI
def test_cli_void_clutter_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.cli_synthroad import main

    base = ["--train", "3", "--val", "1", "--ood", "1", "--size", "48x96", "--no-progress"]
    assert main(["--out", str(tmp_path / "plain"), *base]) == 0
    assert main(["--out", str(tmp_path / "void"), *base, "--void-clutter", "0.05"]) == 0
    meta = json.loads((tmp_path / "void" / "synthroad.json").read_text())["void_clutter"]
    assert meta["share"] == 0.05 and meta["splits"] == ["train"]
    assert set(meta["families"]) == set(VOID_FAMILIES)
    plain_meta = json.loads((tmp_path / "plain" / "synthroad.json").read_text())
    assert plain_meta["void_clutter"]["share"] == 0.0

    def void_share(root: Path, split: str) -> float:
        pngs = sorted((root / "gtFine" / split).rglob("*_labelTrainIds.png"))
        labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs]
        return float(np.mean([np.mean(lab == VOID) for lab in labels]))

    assert void_share(tmp_path / "void", "train") > void_share(tmp_path / "plain", "train")
    for split in ("val", "ood"):  # evaluation splits are untouched by default
        for path in sorted((tmp_path / "plain").rglob(f"*/{split}/*/*.png")):
            twin = tmp_path / "void" / path.relative_to(tmp_path / "plain")
            assert path.read_bytes() == twin.read_bytes(), path.name
    for bad in (["--void-clutter", "0.9"], ["--void-clutter-splits", "test"]):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "bad"), *base, *bad])
    assert "void" in capsys.readouterr().err


def test_void_figure_writes_the_picture(tmp_path: Path) -> None:
    from training.datasets.synthroad.void_figure import main

    out = tmp_path / "void.png"
    assert main(["--out", str(out), "--images", "0,1", "--size", "48x96"]) == 0
    image = cv2.imread(str(out))
    assert image.shape == (2 * 48, 2 * 96, 3)
