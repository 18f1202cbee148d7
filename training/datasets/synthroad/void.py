"""Void clutter for synthroad: unlabelled things of many kinds, on the road and beside it.

Why: FED learns from the backbone's mistakes with ground-truth void counted as wrong. In
Cityscapes void holds unlabelled objects of every kind (street furniture outside the 19 classes,
prams and trolleys, ground clutter, tram tracks), a free proxy for the unknown. Without it FED
only sees in-distribution mistakes and never learns that unusual low-energy things are wrong.

The families (:data:`VOID_FAMILIES`) are kept apart from the seven OOD kinds of the ``ood``
split (cargo, animal, tyre, cone, barrel, bag, debris) by one rule, enforced by
tests/test_synthroad_void.py:

1. no shared generator: void code never calls or names an OOD drawer, its parameter sampler,
   its shader or its colour table; it uses only the canvas primitives every object uses;
2. no shared kind: no family is an OOD kind or a synonym of one;
3. no shared shape: no ring or tyre, no striped cone, no banded drum, no loose box on the road,
   no sack, no scattered fragments, no animal -- rendered silhouettes are compared;
4. no shared colour: clutter colours come from :mod:`.void_palette` (muted, far from every OOD
   colour) or from the scene itself.

Clutter draws from its own random stream (:func:`clutter_rng`), after the scene is drawn, so a
scene with clutter is the same scene -- same street, objects, light and sensor noise -- with
clutter added, and a scene without it is byte-identical to one rendered before clutter existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .canvas import _Canvas
from .scene import _OOD_KINDS, Camera, Obj, Scene, _image_box
from .void_ground import (
    LABEL_ID_GROUND,
    LABEL_ID_RAIL_TRACK,
    draw_grate,
    draw_manhole,
    draw_patch,
    draw_puddle,
    draw_rails,
    sample_grate,
    sample_manhole,
    sample_patch,
    sample_puddle,
    sample_rails,
)
from .void_things import (
    _DYNAMIC,
    _STATIC,
    draw_bench,
    draw_bollards,
    draw_hoarding,
    draw_hydrant,
    draw_mailbox,
    draw_roadworks_fence,
    draw_scaffolding,
    draw_stroller,
    draw_ticket_machine,
    draw_trolley,
    sample_bench,
    sample_bollards,
    sample_hoarding,
    sample_hydrant,
    sample_mailbox,
    sample_roadworks_fence,
    sample_scaffolding,
    sample_stroller,
    sample_ticket_machine,
    sample_trolley,
)

#: Extra SeedSequence word of the clutter stream ("clutter"): independent of the scene's stream.
VOID_STREAM = 0xC1077E2
#: Splits that get clutter unless told otherwise: training only, so the evaluation splits
#: (val, ood, and selection sets rendered as ood) stay comparable with earlier results.
DEFAULT_SPLITS: tuple[str, ...] = ("train",)
#: Share of the clutter pixel budget spent on the road (the rest goes beside it).
ON_ROAD_FRACTION = 0.4
#: Calibration of the pixel budget per zone for what nearer objects hide, what the bounding-box
#: estimate misses and the budget left unspent (requested / rendered share, measured on train
#: images at 256x512 with ``python -m training.datasets.synthroad.void_figure --measure``).
_BUDGET_GAIN = {"road": 1.36, "beside": 1.76}
_MAX_OBJECTS = 30
_TRIES_PER_ZONE = 60
#: A zone is done when less than this share of its budget is left (small leftovers would cost
#: many rejected proposals).
_LEFTOVER = 0.15

Sampler = Callable[[np.random.Generator, Scene], dict[str, Any]]
Drawer = Callable[[_Canvas, Obj, float], None]


@dataclass(frozen=True)
class VoidFamily:
    """One kind of clutter: how it is drawn, labelled and placed.

    ``zones``: where it may stand ("road", "side" = sidewalk, "verge" = terrain beyond it,
    "facade" = against the buildings); ``anchor``: "free" in the zone, "kerb" at the edge next
    to the carriageway, "outer" at the far edge; ``flat``: lies on the ground (drawn before
    anything standing); ``plane``: long along the street, placed by its far end; ``fill``: share
    of its image bounding box it covers (for the pixel budget)."""

    label: int
    zones: tuple[str, ...]
    anchor: str
    flat: bool
    plane: bool
    fill: float
    sample: Sampler
    draw: Drawer
    description: str


def _family(
    label: int, zones: str, anchor: str, kind: str, fill: float, fns: tuple, text: str
) -> VoidFamily:
    return VoidFamily(
        label, tuple(zones.split()), anchor, kind == "flat", kind == "plane", fill, *fns, text
    )


# fmt: off
VOID_FAMILIES: dict[str, VoidFamily] = {
    "asphalt_patch": _family(LABEL_ID_GROUND, "road side", "free", "flat", 0.85,
                             (sample_patch, draw_patch), "repaired rectangle, tar or concrete"),
    "manhole": _family(LABEL_ID_GROUND, "road side", "free", "flat", 0.78,
                       (sample_manhole, draw_manhole), "round cover with waffle relief"),
    "drain_grate": _family(LABEL_ID_GROUND, "road", "kerb", "flat", 0.9,
                           (sample_grate, draw_grate), "gully grate with slots, at the kerb"),
    "puddle": _family(LABEL_ID_GROUND, "road side verge", "free", "flat", 0.7,
                      (sample_puddle, draw_puddle), "smooth blob mirroring the sky"),
    "tram_rails": _family(LABEL_ID_RAIL_TRACK, "road", "free", "flat", 0.7,
                          (sample_rails, draw_rails), "two rails in paving, 8-35 m long"),
    "bench": _family(_STATIC, "side verge", "outer", "solid", 0.55,
                     (sample_bench, draw_bench), "slatted seat and backrest on leg frames"),
    "bollard_row": _family(_STATIC, "side", "kerb", "solid", 0.3,
                           (sample_bollards, draw_bollards), "2-6 slender square posts"),
    "hydrant": _family(_STATIC, "side verge", "kerb", "solid", 0.6,
                       (sample_hydrant, draw_hydrant), "narrow column, domed cap, side outlets"),
    "mailbox": _family(_STATIC, "side", "free", "solid", 0.45,
                       (sample_mailbox, draw_mailbox), "letter box with rounded top on a post"),
    "ticket_machine": _family(_STATIC, "side", "outer", "solid", 0.85,
                              (sample_ticket_machine, draw_ticket_machine),
                              "tall cabinet with screen, keypad and roof"),
    "hoarding": _family(_STATIC, "side", "outer", "plane", 0.9,
                        (sample_hoarding, draw_hoarding), "site hoarding: boards and posters"),
    "scaffolding": _family(_STATIC, "facade", "free", "plane", 0.3,
                           (sample_scaffolding, draw_scaffolding),
                           "tubes and plank decks in front of a facade"),
    "stroller": _family(_DYNAMIC, "road side", "free", "solid", 0.55,
                        (sample_stroller, draw_stroller), "pram: bassinet, hood, handle"),
    "shopping_trolley": _family(_DYNAMIC, "road side", "free", "solid", 0.6,
                                (sample_trolley, draw_trolley), "see-through wire basket"),
    "roadworks_fence": _family(_STATIC, "road side", "free", "solid", 0.9,
                               (sample_roadworks_fence, draw_roadworks_fence),
                               "mesh panels in tube frames on concrete feet"),
}
# fmt: on


@dataclass(frozen=True)
class VoidClutter:
    """The clutter option of a dataset: ``share`` = target fraction of the non-hood pixels that
    are clutter void (0 = none), rendered into the ``splits`` named."""

    share: float = 0.0
    splits: tuple[str, ...] = DEFAULT_SPLITS

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 0.5:
            raise ValueError(f"void clutter share must be in [0, 0.5], got {self.share}")

    def applies(self, split: str) -> bool:
        return self.share > 0 and split in self.splits

    def meta(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "splits": list(self.splits),
            "on_road_fraction": ON_ROAD_FRACTION,
            "stream": VOID_STREAM,
            "families": sorted(VOID_FAMILIES),
        }


def clutter_rng(seed: int, split_code: int, index: int) -> np.random.Generator:
    """The clutter stream of image (seed, split, index), separate from the scene's stream."""
    return np.random.default_rng([seed, split_code, index, VOID_STREAM])


def non_hood_pixels(scene: Scene, cam: Camera) -> float:
    """Pixels above the ego hood (the same curve the renderer paints)."""
    frac, curve, _ = scene.hood
    t = (np.arange(cam.width) + 0.5 - cam.width / 2) / (cam.width / 2)
    top = cam.height * (1 - frac * (1 - curve * 0.5 * t**2))
    return float(np.clip(top, 0, cam.height).sum())


def _footprint(o: Obj) -> tuple[float, float, float, float]:
    """Ground area (x0, x1, z0, z1) clutter must keep off; an OOD object's covers its line of
    sight too, so clutter never hides it."""
    p = o.params
    if o.kind in ("car", "truck"):
        return o.x - p["w"] / 2, o.x + p["w"] / 2, o.z, o.z + p["l"]
    if o.kind in _OOD_KINDS:
        return o.x - p["size"] * 0.7, o.x + p["size"] * 0.7, 0.0, o.z + p["size"]
    if o.kind in VOID_FAMILIES:
        return p["extent"][:4]
    r = p["w"] / 2 if o.kind == "bin" else 0.35
    return o.x - r, o.x + r, o.z - r, o.z + r


class _Layout:
    """Where clutter can go in one scene: zones, what is taken, what must stay visible."""

    def __init__(self, scene: Scene, cam: Camera) -> None:
        self.scene, self.cam = scene, cam
        self.taken = [_footprint(o) for o in scene.objects]
        self.ood = [(o.z, _image_box(cam, o)) for o in scene.objects if o.kind in _OOD_KINDS]
        self.hood_row = cam.height * (1 - scene.hood[0])
        free_rows = self.hood_row - 4 - cam.horizon
        self.z_near = max(4.0, cam.focal * cam.cam_h / max(free_rows, 1.0))

    def span(self, zone: str, idx: int) -> Optional[tuple[float, float]]:
        """(edge next to the road, far edge) of a zone on side ``idx`` (0 left, 1 right)."""
        s = self.scene
        sign = -1.0 if idx == 0 else 1.0
        kerb = (s.x_left if idx == 0 else s.x_right) + sign * s.curb_w
        if zone == "side":
            return kerb, kerb + sign * s.sidewalk[idx]
        if zone == "verge" and s.terrain[idx] > 0:
            start = kerb + sign * s.sidewalk[idx]
            return start, start + sign * s.terrain[idx]
        if zone == "facade":
            xp = s.facade_x[idx] - sign * 0.5
            return xp, xp
        return None

    def z_in_view(self, x: float) -> float:
        """Nearest depth at which a point at lateral position ``x`` is inside the frame."""
        cam = self.cam
        room = cam.vp_x if x < 0 else cam.width - cam.vp_x
        return cam.focal * abs(x) / max(room, 1.0) * 1.05

    def free(self, box: tuple[float, ...], margin: float = 0.25) -> bool:
        x0, x1, z0, z1 = box[:4]
        return all(
            x1 + margin < a or x0 - margin > b or z1 + margin < c or z0 - margin > d
            for a, b, c, d in self.taken
        )

    def visible_area(self, box: tuple[float, ...]) -> float:
        """Pixels of the object's image bounding box inside the frame and above the hood, or 0
        when less than 60 % of it is (clutter is meant to be seen)."""
        left, right, t, b = _image_bounds(self.cam, box)
        full = (right - left) * (b - t)
        inside = max(0.0, min(right, self.cam.width) - max(left, 0.0)) * max(
            0.0, min(b, self.hood_row) - max(t, 0.0)
        )
        return float(inside) if full > 0 and inside >= 0.6 * full else 0.0

    def hides_ood(self, box: tuple[float, ...]) -> bool:
        """Would this object stand in front of (part of) an OOD object?"""
        a = _image_bounds(self.cam, box)
        return any(
            box[2] < oz and a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
            for oz, b in self.ood
        )


def _image_bounds(cam: Camera, box: tuple[float, ...]) -> tuple[float, float, float, float]:
    """(left, right, top, bottom) in pixels of a world box (x0, x1, z0, z1, height)."""
    x0, x1, z0, z1, h = box
    xs = np.array([x0, x1, x0, x1])
    zs = np.maximum(np.array([z0, z0, z1, z1]), 0.5)
    px, bottom = cam.project(xs, np.zeros(4), zs)
    _, top = cam.project(xs, np.full(4, h), zs)
    return float(px.min()), float(px.max()), float(top.min()), float(bottom.max())


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(max(hi, lo * 1.01)))))


def _place_x(rng: np.random.Generator, fam: VoidFamily, span: tuple[float, float], w: float):
    """Centre X of an object of width ``w`` in a zone span (near edge, far edge)."""
    near, far = span
    lo, hi = min(near, far) + w / 2 + 0.05, max(near, far) - w / 2 - 0.05
    if hi <= lo:
        return (near + far) / 2
    if fam.anchor == "free":
        return float(rng.uniform(lo, hi))
    at_near = fam.anchor == "kerb"
    return (lo if near < far else hi) if at_near else (hi if near < far else lo)


def _propose(rng: np.random.Generator, lay: _Layout, zone: str, name: str) -> Optional[Obj]:
    """A candidate object of family ``name`` in ``zone``, with its box stored in its params."""
    fam, s = VOID_FAMILIES[name], lay.scene
    p = fam.sample(rng, s)
    if zone == "road":
        span = (s.x_left, s.x_right) if rng.random() < 0.5 else (s.x_right, s.x_left)
    else:
        span = lay.span(zone, int(rng.integers(2)))
        if span is None:
            return None
    if p["w"] > abs(span[1] - span[0]) + 0.2:
        return None  # does not fit across this zone
    x = _place_x(rng, fam, span, p["w"])
    z = _log_uniform(rng, max(lay.z_near, lay.z_in_view(x)), 50.0)
    p["extent"] = (x - p["w"] / 2, x + p["w"] / 2, z, z + p["d"], p["h"])
    p["zone"] = "road" if zone == "road" else "beside"
    return Obj(name, x, z + p["d"] if fam.plane else z, p)


def _zone_families(zone: str) -> list[str]:
    return [name for name, fam in VOID_FAMILIES.items() if zone in fam.zones]


def _fill_zone(rng: np.random.Generator, lay: _Layout, zones: list[str], budget: float) -> list:
    """Add objects to ``zones`` until their estimated pixels reach ``budget``."""
    placed: list[Obj] = []
    left = budget
    for _ in range(_TRIES_PER_ZONE):
        if left <= _LEFTOVER * budget or len(placed) >= _MAX_OBJECTS // 2:
            break
        zone = zones[int(rng.integers(len(zones)))]
        names = _zone_families(zone)
        o = _propose(rng, lay, zone, names[int(rng.integers(len(names)))])
        if o is None:
            continue
        fam, box = VOID_FAMILIES[o.kind], o.params["extent"]
        area = lay.visible_area(box) * fam.fill
        if area < 8 or area > 2 * left or not lay.free(box):
            continue
        if not fam.flat and lay.hides_ood(box):
            continue
        lay.taken.append(box[:4])
        placed.append(o)
        left -= area
    return placed


def add_void_clutter(
    scene: Scene, cam: Camera, rng: np.random.Generator, share: float
) -> list[Obj]:
    """Place clutter worth about ``share`` of the non-hood pixels into ``scene`` (appended to
    its objects; returned too). The per-image budget varies (gamma, mean 1) as real streets do;
    ``ON_ROAD_FRACTION`` of it goes on the carriageway."""
    if share <= 0:
        return []
    lay = _Layout(scene, cam)
    budget = share * non_hood_pixels(scene, cam) * float(rng.gamma(2.0, 0.5))
    beside = ["side", "side", "side", "facade"] + ["verge"] * int(max(scene.terrain) > 0)
    on_road = budget * ON_ROAD_FRACTION * _BUDGET_GAIN["road"]
    added = _fill_zone(rng, lay, ["road"], on_road)
    off_road = budget * (1 - ON_ROAD_FRACTION) * _BUDGET_GAIN["beside"]
    added += _fill_zone(rng, lay, beside, off_road)
    scene.objects.extend(added)
    return added
