"""synthroad scenes: drawing a random street, its camera and its objects (no pixels).

World coordinates: X right, Z forward, heights up, metres. A :class:`Scene` and its
:class:`Camera` come from one ``np.random.Generator`` (:func:`sample_scene`); the renderer
(:mod:`.render`) turns them into frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

# Cityscapes labelIds painted by the renderer.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK = 19, 20, 21, 22, 23, 24, 26, 27
_OOD_MARK = 250  # internal label for OOD pixels; becomes labelId 0 (unlabeled) on output

#: trainIds synthroad can produce (the rest of the 19 Cityscapes classes never appear).
TRAIN_IDS_USED: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14)

_CAR_COLOURS = np.array(
    [
        (225, 225, 222),
        (30, 30, 34),
        (170, 172, 176),
        (105, 108, 112),
        (35, 45, 95),
        (140, 25, 25),
        (185, 170, 135),
        (35, 62, 45),
        (80, 20, 30),
        (60, 85, 125),
    ],
    np.float32,
)
_BUILDING_COLOURS = np.array(
    [
        (200, 188, 160),
        (150, 150, 148),
        (150, 82, 62),
        (222, 220, 208),
        (118, 92, 72),
        (215, 198, 140),
        (150, 160, 176),
        (178, 150, 128),
        (110, 110, 115),
    ],
    np.float32,
)
_CLOTHES = np.array(
    [
        (30, 30, 35),
        (40, 50, 90),
        (120, 30, 30),
        (200, 200, 200),
        (90, 80, 60),
        (60, 90, 60),
        (150, 120, 90),
        (70, 70, 80),
        (170, 60, 90),
    ],
    np.float32,
)
_SKIN = np.array([(224, 180, 150), (190, 140, 110), (140, 95, 70), (95, 65, 50)], np.float32)
# Saturated colours and patterns reserved for OOD objects.
_OOD_COLOURS = np.array(
    [
        (235, 40, 205),
        (40, 225, 235),
        (150, 245, 30),
        (255, 135, 0),
        (145, 40, 225),
        (255, 80, 150),
        (250, 230, 40),
        (20, 200, 120),
        (255, 255, 255),
        (240, 20, 20),
    ],
    np.float32,
)

_OOD_KINDS = ("cargo", "animal", "tyre", "cone", "barrel", "bag", "debris")


@dataclass
class Camera:
    """Pin-hole camera over flat ground; pixel units for horizon / vanishing point / focal."""

    height: int
    width: int
    focal: float
    cam_h: float
    horizon: float
    vp_x: float

    def project(
        self, x: np.ndarray, up: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.vp_x + self.focal * x / z, self.horizon + self.focal * (self.cam_h - up) / z


@dataclass
class Obj:
    kind: str
    x: float
    z: float
    params: dict[str, Any] = field(default_factory=dict)
    speed: float = 0.0  # m/s along Z (sequences only)
    frames: Optional[tuple[int, int]] = None  # visible frame range in sequences (None = always)


@dataclass
class Scene:
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    clouds: float
    x_left: float
    x_right: float
    lane_lines: list[tuple[float, str, np.ndarray]]
    asphalt: np.ndarray
    curb_w: float
    sidewalk: tuple[float, float]
    sidewalk_colour: tuple[np.ndarray, np.ndarray]
    terrain: tuple[float, float]
    terrain_colour: np.ndarray
    facade_x: tuple[float, float]
    facades: tuple[
        np.ndarray, np.ndarray
    ]  # per side: rows of (z0, z1, kind, height, r, g, b, win_u, win_v, style)
    far_mode: str
    far_blocks: np.ndarray  # rows of (x0, x1, height, r, g, b, kind)
    far_z: float
    crosswalk: Optional[tuple[float, float]]
    shadow: Optional[tuple[float, float, float]]  # (side, x edge, strength)
    fences: list[tuple[float, float, float, float]]  # (x, z0, z1, height)
    objects: list[Obj]
    hood: tuple[float, float, np.ndarray]  # (height fraction, curvature, colour)
    light: dict[str, Any]
    tiles: dict[str, np.ndarray]


def _choice(rng: np.random.Generator, table: np.ndarray, jitter: float = 12.0) -> np.ndarray:
    colour = table[rng.integers(len(table))] + rng.normal(0, jitter, 3)
    return np.clip(colour, 0, 255).astype(np.float32)


def _noise_tile(rng: np.random.Generator, size: int, blur: float) -> np.ndarray:
    """Seamless (wrap-around) Gaussian noise, unit variance: sampled at world coordinates."""
    tile = rng.standard_normal((size, size)).astype(np.float32)
    if blur > 0:
        pad = int(math.ceil(3 * blur))
        tile = cv2.GaussianBlur(np.pad(tile, pad, mode="wrap"), (0, 0), blur)[pad:-pad, pad:-pad]
    tile -= tile.mean()
    return np.ascontiguousarray(tile / (tile.std() + 1e-6))


def _facade_row(rng: np.random.Generator, z0: float, z1: float, kind: int) -> list[float]:
    """(z0, z1, kind, height, r, g, b, window spacing, floor height, style); kind 0 building,
    1 vegetation mass, 2 wall, 3 open (nothing: sky and terrain show through)."""
    if kind == 0:
        colour = _choice(rng, _BUILDING_COLOURS, 14)
        height = float(rng.uniform(7, 26))
    elif kind == 1:
        colour = np.array(
            [rng.uniform(35, 80), rng.uniform(65, 120), rng.uniform(20, 55)], np.float32
        )
        height = float(rng.uniform(3, 11))
    elif kind == 2:
        colour = np.clip(
            np.array([rng.uniform(120, 190)] * 3, np.float32) + rng.normal(0, 8, 3), 0, 255
        )
        height = float(rng.uniform(1.9, 3.2))
    else:
        colour, height = np.zeros(3, np.float32), 0.0
    return [
        z0,
        z1,
        kind,
        height,
        *colour.tolist(),
        float(rng.uniform(1.8, 3.6)),
        float(rng.uniform(2.9, 3.6)),
        float(rng.integers(3)),
    ]


def _sample_facades(rng: np.random.Generator, z_end: float) -> np.ndarray:
    rows, z = [], -20.0
    while z < z_end:
        length = float(rng.uniform(6, 28))
        kind = int(rng.choice(4, p=[0.62, 0.2, 0.1, 0.08]))
        rows.append(_facade_row(rng, z, min(z + length, z_end), kind))
        z += length
    return np.array(rows, np.float32)


def _sample_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    focal = width * float(rng.uniform(0.75, 1.15))
    return Camera(
        height,
        width,
        focal,
        float(rng.uniform(1.2, 1.5)),
        height * float(rng.uniform(0.36, 0.5)),
        width * (0.5 + float(rng.uniform(-0.12, 0.12))),
    )


def _sample_sky(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(colour at the top, colour at the horizon): overcast grey or blue."""
    overcast = rng.random() < 0.3
    if overcast:
        g = rng.uniform(150, 205)
        sky_top = np.array([g, g + rng.uniform(0, 8), g + rng.uniform(4, 16)], np.float32)
        sky_horizon = np.clip(sky_top + rng.uniform(10, 30), 0, 255).astype(np.float32)
    else:
        sky_top = np.array(
            [rng.uniform(40, 110), rng.uniform(100, 160), rng.uniform(170, 235)], np.float32
        )
        sky_horizon = np.clip(
            sky_top + np.array([rng.uniform(60, 110), rng.uniform(50, 85), rng.uniform(10, 30)]),
            0,
            250,
        ).astype(np.float32)
    return sky_top, sky_horizon


_LaneLines = list[tuple[float, str, np.ndarray]]  # (x, "solid" | "dashed", colour)


def _sample_road(
    rng: np.random.Generator,
) -> tuple[int, float, float, float, _LaneLines, np.ndarray]:
    """(lanes, lane width, left edge, right edge, lane lines, asphalt colour)."""
    n_lanes = int(rng.choice([2, 3, 4], p=[0.5, 0.25, 0.25]))
    lane_w = float(rng.uniform(2.8, 3.6))
    ego_lane = int(rng.integers(n_lanes // 2, n_lanes)) if n_lanes > 1 else 0
    x_left = -(ego_lane + 0.5) * lane_w + float(rng.uniform(-0.4, 0.4))
    x_right = x_left + n_lanes * lane_w
    white = np.array([235, 235, 230], np.float32)
    yellow = np.array([230, 190, 50], np.float32)
    lines: list[tuple[float, str, np.ndarray]] = []
    for k in range(1, n_lanes):
        centre = k == n_lanes // 2
        kind = ("solid" if rng.random() < 0.4 else "dashed") if centre else "dashed"
        colour = yellow if (centre and rng.random() < 0.25) else white
        lines.append((x_left + k * lane_w, kind, colour * float(rng.uniform(0.8, 1.0))))
    for edge, inward in ((x_left, 1), (x_right, -1)):
        if rng.random() < 0.55:
            lines.append((edge + inward * 0.35, "solid", white * float(rng.uniform(0.75, 0.95))))
    grey = float(rng.uniform(65, 115))
    asphalt = np.array([grey, grey + rng.uniform(-3, 4), grey + rng.uniform(-2, 8)], np.float32)
    return n_lanes, lane_w, x_left, x_right, lines, asphalt


def _sample_roadside(rng: np.random.Generator, x_left: float, x_right: float) -> tuple[Any, ...]:
    """(sidewalk widths and colours, terrain widths and colour, kerb width, facade x)."""
    sidewalk = (float(rng.uniform(1.8, 4.5)), float(rng.uniform(1.8, 4.5)))
    sw_colours = tuple(
        np.clip(
            np.array([rng.uniform(140, 195)] * 3, np.float32)
            + np.array([rng.uniform(0, 25), rng.uniform(-5, 10), rng.uniform(-15, 5)]),
            0,
            255,
        ).astype(np.float32)
        for _ in range(2)
    )
    terrain = tuple(float(rng.uniform(1.0, 5.0)) if rng.random() < 0.4 else 0.0 for _ in range(2))
    terrain_colour = np.array(
        [rng.uniform(85, 150), rng.uniform(115, 160), rng.uniform(50, 95)], np.float32
    )
    curb_w = 0.25
    facade_x = (
        x_left - curb_w - sidewalk[0] - terrain[0] - float(rng.uniform(0, 1.5)),
        x_right + curb_w + sidewalk[1] + terrain[1] + float(rng.uniform(0, 1.5)),
    )
    return sidewalk, sw_colours, terrain, terrain_colour, curb_w, facade_x


def _sample_far_blocks(
    rng: np.random.Generator, far_mode: str, facade_x: tuple[float, float]
) -> np.ndarray:
    """The end of the street: rows of (x0, x1, height, r, g, b, is_tree)."""
    span = max(abs(facade_x[0]), abs(facade_x[1])) * (3 if far_mode == "closed" else 60)
    blocks, x = [], -span
    while x < span:
        w = float(rng.uniform(0.08, 0.25)) * span
        is_tree = rng.random() < (0.15 if far_mode == "closed" else 0.35)
        c = (
            np.array([rng.uniform(40, 80), rng.uniform(70, 110), rng.uniform(30, 60)], np.float32)
            if is_tree
            else _choice(rng, _BUILDING_COLOURS, 14)
        )
        h = float(rng.uniform(8, 30) if far_mode == "closed" else rng.uniform(6, 45))
        blocks.append([x, x + w, h, *c.tolist(), 1.0 if is_tree else 0.0])
        x += w
    return np.array(blocks, np.float32)


def _sample_extras(
    rng: np.random.Generator,
    x_left: float,
    x_right: float,
    terrain: tuple[float, ...],
    facade_x: tuple[float, float],
) -> tuple[Any, Any, list[tuple[float, float, float, float]]]:
    """(crosswalk z range or None, shadow band or None, fences)."""
    crosswalk = None
    if rng.random() < 0.25:
        z0 = float(rng.uniform(10, 35))
        crosswalk = (z0, z0 + float(rng.uniform(3, 5)))
    shadow = None
    if rng.random() < 0.4:
        side = float(rng.choice([-1.0, 1.0]))
        shadow = (side, float(rng.uniform(x_left, x_right)), float(rng.uniform(0.45, 0.75)))
    fences = []
    for side, idx in ((-1, 0), (1, 1)):
        if terrain[idx] > 0 and rng.random() < 0.5:
            fx = facade_x[idx] - side * float(rng.uniform(0.1, 0.5))
            z0 = float(rng.uniform(5, 30))
            fences.append((fx, z0, z0 + float(rng.uniform(10, 50)), float(rng.uniform(1.0, 1.6))))
    return crosswalk, shadow, fences


def _sample_light(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "gain": float(rng.uniform(0.7, 1.25)),
        "contrast": float(rng.uniform(0.75, 1.2)),
        "cast": rng.uniform(0.88, 1.12, 3).astype(np.float32),
        "gamma": float(rng.uniform(0.8, 1.25)),
        "noise": float(rng.uniform(1.0, 6.0)),
        "blur": bool(rng.random() < 0.3),
        "vignette": float(rng.uniform(0.0, 0.35)),
    }


def _sample_far_end(
    rng: np.random.Generator, travel: float, facade_x: Any
) -> tuple[str, float, tuple[Any, Any], Any]:
    """(far mode, far distance, left/right facades, far blocks): a closed street ends in a
    wall of blocks, an open one runs to the horizon."""
    far_mode = "closed" if rng.random() < 0.35 else "open"
    if far_mode == "closed":
        far_z = float(rng.uniform(70, 130)) + travel
    else:
        far_z = float(rng.uniform(250, 450))

    def facade_end() -> float:
        return far_z if far_mode == "closed" else float(rng.uniform(80, 160)) + travel

    facades = (_sample_facades(rng, facade_end()), _sample_facades(rng, facade_end()))
    return far_mode, far_z, facades, _sample_far_blocks(rng, far_mode, facade_x)


def _sample_hood(rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """The ego vehicle's hood: height, curvature, colour."""
    return (
        float(rng.uniform(0.05, 0.1)),
        float(rng.uniform(0.3, 0.9)),
        _choice(rng, _CAR_COLOURS, 8) * 0.6,
    )


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    ood: bool = False,
    travel: float = 0.0,
    obstacle: bool = False,
) -> tuple[Scene, Camera]:
    """Draw a random scene and camera. ``travel``: metres the camera will move (sequences),
    so the street is long enough and objects are spread over it. ``obstacle``: the OOD objects
    are small and far ahead on the road (the obstacle split, :func:`_place_obstacles`) instead
    of :func:`_place_ood`'s; without it the draws are exactly those of before.

    The draws happen in a fixed order (camera, sky, road, roadside, far end, extras, hood,
    light, textures, clouds, objects): changing it changes every dataset of a seed."""
    cam = _sample_camera(rng, height, width)
    sky_top, sky_horizon = _sample_sky(rng)
    n_lanes, lane_w, x_left, x_right, lines, asphalt = _sample_road(rng)
    roadside = _sample_roadside(rng, x_left, x_right)
    sidewalk, sw_colours, terrain, terrain_colour, curb_w, facade_x = roadside
    far_mode, far_z, facades, blocks = _sample_far_end(rng, travel, facade_x)
    crosswalk, shadow, fences = _sample_extras(rng, x_left, x_right, terrain, facade_x)
    hood = _sample_hood(rng)
    light = _sample_light(rng)
    tiles = {"fine": _noise_tile(rng, 128, 0.6), "coarse": _noise_tile(rng, 64, 2.5)}
    scene = Scene(
        sky_top,
        sky_horizon,
        float(rng.uniform(0, 1)) if rng.random() < 0.6 else 0.0,
        x_left,
        x_right,
        lines,
        asphalt,
        curb_w,
        sidewalk,
        sw_colours,
        terrain,
        terrain_colour,
        facade_x,
        facades,
        far_mode,
        blocks,
        far_z,
        crosswalk,
        shadow,
        fences,
        [],
        hood,
        light,
        tiles,
    )
    scene.objects = _sample_objects(rng, scene, cam, n_lanes, lane_w, ood, travel, obstacle)
    return scene, cam


class _Placer:
    """The objects placed so far and their road footprints, for collision-free placement."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.objs: list[Obj] = []
        self.occupied: list[tuple[float, float, float, float]] = []  # (x0, x1, z0, z1) on the road

    def free(self, x0: float, x1: float, z0: float, z1: float, margin: float = 0.6) -> bool:
        return all(
            x1 + margin < a or x0 - margin > b or z1 + margin < c or z0 - margin > d
            for a, b, c, d in self.occupied
        )

    def add_vehicle(self, x: float, z: float, parked: bool, oncoming: bool) -> None:
        rng = self.rng
        truck = rng.random() < (0.05 if parked else 0.15)
        w = float(rng.uniform(2.3, 2.5) if truck else rng.uniform(1.65, 1.95))
        length = float(rng.uniform(6.5, 10) if truck else rng.uniform(3.8, 4.9))
        if not self.free(x - w / 2, x + w / 2, z, z + length, 1.0):
            return
        self.occupied.append((x - w / 2, x + w / 2, z, z + length))
        params = {
            "w": w,
            "l": length,
            "h": float(rng.uniform(2.9, 3.6) if truck else rng.uniform(1.35, 1.65)),
            "colour": _choice(rng, _CAR_COLOURS, 10),
            "truck": truck,
            "oncoming": oncoming,
            "cab_colour": _choice(rng, _CAR_COLOURS, 10),
        }
        speed = (
            0.0
            if parked
            else (float(rng.uniform(-14, -8)) if oncoming else float(rng.uniform(5, 14)))
        )
        self.objs.append(Obj("truck" if truck else "car", x, z, params, speed))


def _place_ood(pl: _Placer, s: Scene, cam: Camera, travel: float) -> None:
    """1-3 OOD objects on the road, fully in view; their line of sight is kept free."""
    rng = pl.rng
    # Nearest depth whose ground contact is still above the ego hood (OOD objects must be visible).
    free_rows = cam.height * (1 - s.hood[0]) - 4 - cam.horizon
    z_near = max(6.0, cam.focal * cam.cam_h / max(free_rows, 1.0))
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            kind = str(rng.choice(["cargo", "animal", "tyre", "cone", "barrel", "bag", "debris"]))
            size = (
                float(rng.uniform(0.35, 1.3))
                if kind not in ("cone", "tyre")
                else float(rng.uniform(0.4, 0.9))
            )
            if kind == "animal":
                size = float(rng.uniform(0.8, 1.8))
            z = z_near + 26 * float(rng.random()) ** 1.5 + travel * float(rng.uniform(0.5, 0.9))
            z_view = (
                z if travel == 0 else z_near
            )  # in a drive the camera gets close: stay in view there
            lo, hi = _road_x_range(s, cam, size, z_view)
            if hi <= lo:
                continue
            if _try_ood(pl, kind, float(rng.uniform(lo, hi)), z, size):
                break


def _road_x_range(s: Scene, cam: Camera, size: float, z: float) -> tuple[float, float]:
    """Where an object of ``size`` at depth ``z`` may stand: on the road, off its kerbs, and
    inside 5-95 % of the image width."""
    lo = max(s.x_left + size / 2 + 0.2, (0.05 * cam.width - cam.vp_x) * z / cam.focal + size / 2)
    hi = min(s.x_right - size / 2 - 0.2, (0.95 * cam.width - cam.vp_x) * z / cam.focal - size / 2)
    return lo, hi


def _try_ood(pl: _Placer, kind: str, x: float, z: float, size: float) -> bool:
    """Place an OOD object at ``(x, z)`` when the spot and the line of sight to it are free."""
    if not pl.free(x - size / 2, x + size / 2, z - 1, z + size + 1):
        return False
    pl.occupied.append((x - size / 2, x + size / 2, 0.0, z + size))  # the line of sight
    pl.objs.append(Obj(kind, x, z, _ood_params(pl.rng, kind, size)))
    return True


#: Obstacle split (RoadObstacle21-like): metres ahead of the camera the objects stand at, and
#: their sizes (m; cones and tyres a range of their own, as in the OOD split).
OBSTACLE_DEPTH = (8.0, 30.0)
OBSTACLE_SIZE = (0.35, 1.0)
OBSTACLE_SMALL_SIZE = (0.35, 0.8)
OBSTACLE_ANIMAL_SIZE = (0.7, 1.5)


def _place_obstacles(pl: _Placer, s: Scene, cam: Camera) -> None:
    """1-3 small objects of the seven OOD kinds far ahead on the road (most cover well under
    1,000 px at 256x512, as the obstacles of RoadObstacle21 do), their line of sight kept free."""
    rng = pl.rng
    near, far = OBSTACLE_DEPTH
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            kind = str(rng.choice(_OOD_KINDS))
            lo_size, hi_size = {
                "cone": OBSTACLE_SMALL_SIZE,
                "tyre": OBSTACLE_SMALL_SIZE,
                "animal": OBSTACLE_ANIMAL_SIZE,
            }.get(kind, OBSTACLE_SIZE)
            size = float(rng.uniform(lo_size, hi_size))
            z = near + (far - near) * float(rng.random())
            lo, hi = _road_x_range(s, cam, size, z)
            if hi <= lo:
                continue
            if _try_ood(pl, kind, float(rng.uniform(lo, hi)), z, size):
                break


def _place_vehicles(
    pl: _Placer, s: Scene, n_lanes: int, lane_w: float, z_max: float, travel: float
) -> None:
    """Parked cars along the kerbs (wide streets), then moving traffic in the lanes."""
    rng = pl.rng
    for side_x, inward in ((s.x_left, 1), (s.x_right, -1)):
        if n_lanes >= 3 and rng.random() < 0.6:
            z = float(rng.uniform(3, 12))
            while z < z_max:
                pl.add_vehicle(
                    side_x + inward * float(rng.uniform(1.05, 1.3)),
                    z,
                    True,
                    inward > 0 and n_lanes >= 2,
                )
                z += float(rng.uniform(5.5, 14))
    for _ in range(int(rng.poisson(4 + travel / 25)) + 1):
        lane = int(rng.integers(n_lanes))
        x = s.x_left + (lane + 0.5) * lane_w + float(rng.uniform(-0.3, 0.3))
        oncoming = n_lanes >= 2 and lane < n_lanes // 2
        pl.add_vehicle(x, float(rng.uniform(4.5, z_max)), False, oncoming)


def _place_people(
    pl: _Placer, s: Scene, sw_ranges: tuple[tuple[float, float], ...], z_max: float, travel: float
) -> None:
    """Pedestrians on the sidewalks and, with a crosswalk, on it."""
    rng = pl.rng
    for _ in range(int(rng.poisson(3 + travel / 20))):
        a, b = sw_ranges[int(rng.integers(2))]
        pl.objs.append(
            Obj(
                "person",
                float(rng.uniform(a + 0.3, b - 0.3)),
                float(rng.uniform(3, z_max * 0.7)),
                _person_params(rng),
                float(rng.choice([-1, 1])) * float(rng.uniform(0.8, 1.6)),
            )
        )
    if s.crosswalk is not None:
        for _ in range(int(rng.integers(0, 4))):
            x = float(rng.uniform(s.x_left, s.x_right))
            z = float(rng.uniform(*s.crosswalk))
            if pl.free(x - 0.3, x + 0.3, z - 0.3, z + 0.3):
                pl.objs.append(Obj("person", x, z, _person_params(rng)))


def _place_roadside(
    pl: _Placer, s: Scene, sw_ranges: tuple[tuple[float, float], ...], z_max: float
) -> None:
    """Street furniture, trees and unlabelled clutter along both kerbs."""
    rng = pl.rng
    for side, (a, b) in zip((-1, 1), sw_ranges):
        x_pole = (b - 0.35) if side < 0 else (a + 0.35)
        z = float(rng.uniform(2, 15))
        while z < z_max:
            kind = str(rng.choice(["lamp", "sign", "light", "pole"], p=[0.35, 0.35, 0.15, 0.15]))
            pl.objs.append(Obj(kind, x_pole, z, _pole_params(rng, kind, side)))
            z += float(rng.uniform(10, 30))
        idx = 0 if side < 0 else 1
        if s.terrain[idx] > 0 or rng.random() < 0.5:
            x_tree = (
                (s.facade_x[idx] - side * 1.2)
                if s.terrain[idx] > 1.5
                else (a + 0.6 if side < 0 else b - 0.6)
            )
            z = float(rng.uniform(3, 15))
            while z < z_max:
                pl.objs.append(
                    Obj(
                        "tree",
                        x_tree + float(rng.uniform(-0.3, 0.3)),
                        z,
                        {
                            "trunk_h": float(rng.uniform(1.8, 3.5)),
                            "crown": float(rng.uniform(1.5, 3.5)),
                            "colour": np.array(
                                [rng.uniform(30, 85), rng.uniform(60, 125), rng.uniform(15, 50)],
                                np.float32,
                            ),
                            "seed": int(rng.integers(1 << 30)),
                        },
                    )
                )
                z += float(rng.uniform(6, 16))
        for _ in range(
            int(rng.poisson(0.8))
        ):  # unlabelled clutter (void): bins and boxes on the sidewalk
            x, z = float(rng.uniform(a + 0.2, b - 0.2)), float(rng.uniform(4, 40))
            pl.objs.append(
                Obj(
                    "bin",
                    x,
                    z,
                    {
                        "colour": np.array(
                            [rng.uniform(30, 70), rng.uniform(50, 90), rng.uniform(30, 60)],
                            np.float32,
                        )
                        if rng.random() < 0.5
                        else np.array([rng.uniform(70, 110)] * 3, np.float32),
                        "h": float(rng.uniform(0.7, 1.1)),
                        "w": float(rng.uniform(0.45, 0.7)),
                    },
                )
            )


def _sample_objects(
    rng: np.random.Generator,
    s: Scene,
    cam: Camera,
    n_lanes: int,
    lane_w: float,
    ood: bool,
    travel: float,
    obstacle: bool = False,
) -> list[Obj]:
    pl = _Placer(rng)
    z_max = 75.0 + travel
    if obstacle:
        _place_obstacles(pl, s, cam)
        ood = True
    elif ood:  # OOD first: nothing may then be placed between the camera and them in their lane
        _place_ood(pl, s, cam, travel)
    _place_vehicles(pl, s, n_lanes, lane_w, z_max, travel)
    sw_ranges = (
        (s.x_left - s.curb_w - s.sidewalk[0], s.x_left - s.curb_w),
        (s.x_right + s.curb_w, s.x_right + s.curb_w + s.sidewalk[1]),
    )
    _place_people(pl, s, sw_ranges, z_max, travel)
    _place_roadside(pl, s, sw_ranges, z_max)
    return _unocclude(pl.objs, cam) if ood else pl.objs


def _extent(o: Obj) -> tuple[float, float, float, float, float]:
    """Generous world bounding box (x0, x1, z0, z1, height) used for occlusion tests."""
    p = o.params
    if o.kind in ("car", "truck"):
        return o.x - p["w"] / 2, o.x + p["w"] / 2, o.z, o.z + p["l"], p["h"]
    if o.kind == "person":
        return o.x - 0.45, o.x + 0.45, o.z, o.z, p["h"]
    if o.kind == "tree":
        return (
            o.x - p["crown"] * 1.2,
            o.x + p["crown"] * 1.2,
            o.z,
            o.z,
            p["trunk_h"] + 2 * p["crown"],
        )
    if o.kind == "bin":
        return o.x - p["w"] / 2, o.x + p["w"] / 2, o.z, o.z + p["w"], p["h"]
    if o.kind in _OOD_KINDS:
        return o.x - p["size"] * 0.7, o.x + p["size"] * 0.7, o.z, o.z + p["size"], p["size"] * 1.4
    return o.x - 1.6, o.x + 1.6, o.z, o.z, p["h"] + 0.5  # poles with arms, signs, lights


def _image_box(cam: Camera, o: Obj) -> tuple[float, float, float, float]:
    x0, x1, z0, z1, h = _extent(o)
    xs = np.array([x0, x1, x0, x1])
    zs = np.maximum(np.array([z0, z0, z1, z1]), 0.5)
    px, _ = cam.project(xs, np.zeros(4), zs)
    _, top = cam.project(xs, np.full(4, h), zs)
    _, bottom = cam.project(xs, np.zeros(4), zs)
    return float(px.min()), float(px.max()), float(top.min()), float(bottom.max())


def _unocclude(objs: list[Obj], cam: Camera) -> list[Obj]:
    """Drop in-distribution objects in front of an OOD object in the (first) frame, so every OOD
    object is fully visible and its ground contact is on the road."""
    boxes = [(o, _image_box(cam, o)) for o in objs if o.kind in _OOD_KINDS]
    kept = []
    for o in objs:
        if o.kind not in _OOD_KINDS:
            a = _image_box(cam, o)
            if any(
                o.z < b_obj.z and a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
                for b_obj, b in boxes
            ):
                continue
        kept.append(o)
    return kept


def _person_params(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "h": float(rng.uniform(1.55, 1.92)),
        "top": _choice(rng, _CLOTHES, 15),
        "legs": _choice(rng, _CLOTHES, 10),
        "skin": _choice(rng, _SKIN, 6),
        "hair": np.full(3, rng.uniform(15, 110), np.float32),
        "stride": float(rng.uniform(-0.25, 0.25)),
        "bag": bool(rng.random() < 0.2),
    }


def _pole_params(rng: np.random.Generator, kind: str, side: int) -> dict[str, Any]:
    p: dict[str, Any] = {
        "h": float(rng.uniform(3.0, 8.0) if kind != "sign" else rng.uniform(2.3, 3.4)),
        "w": float(rng.uniform(0.08, 0.16)),
        "side": side,
        "colour": np.full(3, rng.uniform(70, 150), np.float32),
    }
    if kind == "sign":
        p["shape"] = str(rng.choice(["circle", "triangle", "square", "diamond"]))
        p["size"] = float(rng.uniform(0.5, 0.8))
        p["fill"] = np.array(
            [(200, 30, 30), (30, 70, 170), (240, 240, 240), (230, 200, 30)][int(rng.integers(4))],
            np.float32,
        )
    if kind == "light":
        p["h"] = float(rng.uniform(2.6, 4.5))
        p["lit"] = int(rng.integers(3))
    return p


def _ood_params(rng: np.random.Generator, kind: str, size: float) -> dict[str, Any]:
    c1, c2 = _choice(rng, _OOD_COLOURS, 10), _choice(rng, _OOD_COLOURS, 10)
    return {
        "size": size,
        "c1": c1,
        "c2": c2,
        "pattern": str(rng.choice(["checker", "stripes", "dots", "plain"])),
        "period": float(rng.uniform(0.08, 0.25)),
        "seed": int(rng.integers(1 << 30)),
        "h": float(rng.uniform(0.3, 1.0)) * size,
        "yaw": float(rng.uniform(-0.6, 0.6)),
        "facing": float(rng.choice([-1.0, 1.0])),
    }
