"""Void clutter lying flat on the ground: road patches, manholes, gully grates, puddles, rails.

Each family has ``sample_*(rng, scene) -> params`` (size in metres: ``w`` across the street,
``d`` along it, ``h`` = 0) and ``draw_*(canvas, obj, z)`` with ``z`` the near edge's depth. They
are drawn as polygons on the ground plane, projected by the scene's camera, with textures
anchored in the world (so they shrink and foreshorten like the road around them). Labels are the
Cityscapes void classes "ground" and "rail track" (trainId 255).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .canvas import _Canvas
from .scene import Camera, Obj, Scene
from .void_palette import METAL, STONE, pick

#: Cityscapes labelIds (cityscapesScripts names) of the flat void classes; both are trainId 255.
LABEL_ID_GROUND = 6
LABEL_ID_RAIL_TRACK = 10
#: Standard rail gauge (m): tram rails sit this far apart.
_GAUGE = 1.435

#: Largest radius factor of a puddle's outline (harmonic amplitudes below add up to it).
_WOBBLE = 1 + 0.22 + 0.22 + 0.3 * 0.22 * 2
Shade = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _ground_points(cam: Camera, gx: np.ndarray, gz: np.ndarray) -> np.ndarray:
    """World ground points (X, Z) -> image points (N, 2)."""
    px, py = cam.project(gx, np.zeros_like(gx), np.maximum(gz, 0.5))
    return np.stack([px, py], 1)


def _ground_xz(cam: Camera, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image pixels -> the world ground point (X, Z) they see."""
    z = cam.focal * cam.cam_h / np.maximum(ys - cam.horizon, 0.05)
    return (xs - cam.vp_x) * z / cam.focal, z


def _rotated_rect(o: Obj, zc: float, w: float, d: float, yaw: float) -> tuple[np.ndarray, ...]:
    """Ground corners of a w x d rectangle centred at depth ``zc``, turned by ``yaw``."""
    u = np.array([-w / 2, w / 2, w / 2, -w / 2])
    v = np.array([-d / 2, -d / 2, d / 2, d / 2])
    c, s = np.cos(yaw), np.sin(yaw)
    return o.x + u * c - v * s, zc + u * s + v * c


def _noise_shade(cam: Camera, p: dict[str, Any], x0: float, z0: float, period: float) -> Shade:
    """Base colour with world-anchored noise of ``period`` metres (grain, stains)."""
    tile, colour, grain = p["tile"], p["colour"], p["grain"]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        gx, gz = _ground_xz(cam, xs, ys)
        n = tile[
            np.floor((gz - z0) / period).astype(np.int64) & 15,
            np.floor((gx - x0) / period).astype(np.int64) & 15,
        ]
        return colour[None] * (1 + grain * n)[:, None]

    return shade


def _tile(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((16, 16)).astype(np.float32)


# ------------------------------------------------------------------------------ asphalt patch
def sample_patch(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A repaired rectangle: fresh dark asphalt or grey concrete, with a tar seam."""
    fresh = rng.random() < 0.5
    colour = scene.asphalt * float(rng.uniform(0.45, 0.65)) if fresh else pick(rng, STONE)
    pw, pd, yaw = rng.uniform(0.8, 3.5), rng.uniform(0.6, 3.0), rng.uniform(-0.35, 0.35)
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    return {
        "w": float(pw * c + pd * s + 0.2),  # the turned patch and its seam
        "d": float(pw * s + pd * c + 0.2),
        "h": 0.0,
        "size": (float(pw), float(pd)),
        "yaw": float(yaw),
        "colour": np.asarray(colour, np.float32),
        "tile": _tile(rng),
        "grain": float(rng.uniform(0.05, 0.18)),
    }


def draw_patch(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    (pw, pd), zc = p["size"], z + p["d"] / 2
    gx, gz = _rotated_rect(o, zc, pw + 0.12, pd + 0.12, p["yaw"])
    cv.poly(_ground_points(cv.cam, gx, gz), p["colour"] * 0.55, LABEL_ID_GROUND)
    gx, gz = _rotated_rect(o, zc, pw, pd, p["yaw"])
    shade = _noise_shade(cv.cam, p, o.x, z, 0.2)
    cv.textured(_ground_points(cv.cam, gx, gz), LABEL_ID_GROUND, shade)


# ------------------------------------------------------------------------------------ manhole
def sample_manhole(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A round cast-iron cover with a waffle relief."""
    r = float(rng.uniform(0.3, 0.42))
    return {"w": 2 * r, "d": 2 * r, "h": 0.0, "colour": pick(rng, METAL) * 0.8, "waffle": 0.09}


def draw_manhole(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    r, t = p["w"] / 2, np.linspace(0, 2 * np.pi, 20, endpoint=False)
    cz = z + r
    colour, period = p["colour"], p["waffle"]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        gx, gz = _ground_xz(cam, xs, ys)
        fu, fv = np.mod((gx - o.x) / period, 1.0), np.mod((gz - cz) / period, 1.0)
        groove = (fu < 0.3) | (fv < 0.3)
        return colour[None] * np.where(groove, 0.7, 1.05)[:, None]

    cv.textured(
        _ground_points(cam, o.x + r * np.cos(t), cz + r * np.sin(t)), LABEL_ID_GROUND, shade
    )


# -------------------------------------------------------------------------------- drain grate
def sample_grate(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A gully grate along the kerb: dark slots parallel to the kerb."""
    return {
        "w": float(rng.uniform(0.35, 0.5)),
        "d": float(rng.uniform(0.6, 1.1)),
        "h": 0.0,
        "colour": pick(rng, METAL),
        "slot": float(rng.uniform(0.045, 0.07)),
    }


def draw_grate(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    gx, gz = _rotated_rect(o, z + p["d"] / 2, p["w"], p["d"], 0.0)
    colour, slot = p["colour"], p["slot"]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        gx_, _ = _ground_xz(cam, xs, ys)
        dark = np.mod((gx_ - o.x) / slot, 1.0) < 0.5
        return np.where(dark[:, None], colour[None] * 0.3, colour[None])

    cv.textured(_ground_points(cam, gx, gz), LABEL_ID_GROUND, shade)


# ------------------------------------------------------------------------------------- puddle
def sample_puddle(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """Standing water: a smooth blob that mirrors the sky over darkened asphalt."""
    mirror = float(rng.uniform(0.3, 0.65))
    colour = scene.sky_horizon * mirror + scene.asphalt * 0.45 * (1 - mirror)
    radii = rng.uniform(0.35, 1.1), rng.uniform(0.3, 0.95)
    return {
        "w": float(2 * radii[0] * _WOBBLE),
        "d": float(2 * radii[1] * _WOBBLE),
        "h": 0.0,
        "radii": (float(radii[0]), float(radii[1])),
        "colour": np.asarray(colour, np.float32),
        "harmonics": rng.uniform(-0.22, 0.22, (2, 2)),
        "phase": rng.uniform(0, 2 * np.pi, 2),
        "tile": _tile(rng),
        "grain": 0.04,
    }


def draw_puddle(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    (a1, b1), (a2, b2) = p["harmonics"]
    wobble = 1 + a1 * np.cos(t + p["phase"][0]) + a2 * np.cos(2 * t + p["phase"][1])
    wobble += b1 * np.sin(3 * t) * 0.3 + b2 * np.sin(2 * t) * 0.3
    (rx, rz), zc = p["radii"], z + p["d"] / 2
    gx, gz = o.x + rx * wobble * np.cos(t), zc + rz * wobble * np.sin(t)
    shade = _noise_shade(cv.cam, p, o.x, z, 0.5)
    cv.textured(_ground_points(cv.cam, gx, gz), LABEL_ID_GROUND, shade)


# --------------------------------------------------------------------------------- tram rails
def sample_rails(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A stretch of tram track set in paving: two steel rails, a gauge apart."""
    return {
        "w": float(rng.uniform(2.0, 2.4)),
        "d": float(rng.uniform(8.0, 35.0)),
        "h": 0.0,
        "bed": pick(rng, STONE),
        "steel": pick(rng, METAL) * 0.4 + 110,
        "stone": float(rng.uniform(0.12, 0.2)),
    }


def draw_rails(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    gx, gz = _rotated_rect(o, z + p["d"] / 2, p["w"], p["d"], 0.0)
    bed, steel, stone = p["bed"], p["steel"], p["stone"]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        gx_, gz_ = _ground_xz(cam, xs, ys)
        u = gx_ - o.x
        course = np.floor(gz_ / stone)
        joint = (np.mod(gz_ / stone, 1.0) < 0.12) | (np.mod(u / stone + course * 0.5, 1.0) < 0.1)
        colour = np.where(joint[:, None], bed[None] * 0.7, bed[None])
        rail = np.abs(np.abs(u) - _GAUGE / 2) < 0.035
        groove = np.abs(np.abs(u) - _GAUGE / 2 + 0.05) < 0.015
        colour = np.where(groove[:, None], np.float32(30), colour)
        return np.where(rail[:, None], steel[None], colour)

    cv.textured(_ground_points(cam, gx, gz), LABEL_ID_RAIL_TRACK, shade)
