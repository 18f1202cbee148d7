"""Void clutter standing on the ground: street furniture outside the 19 classes and small
movable things (Cityscapes "static" and "dynamic", trainId 255).

Each family has ``sample_*(rng, scene) -> params`` (size in metres: ``w`` across the street,
``d`` along it, ``h`` up) and ``draw_*(canvas, obj, z)``. ``z`` is the near edge's depth, except
for the long planes along the street (hoarding, scaffolding), whose objects are placed and sorted
by their far end (so everything in front of any part of them is painted after them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.datasets.cityscapes import LABEL_ID_DYNAMIC, LABEL_ID_STATIC

from .canvas import _box_faces, _Canvas, _rect
from .scene import Camera, Obj, Scene
from .void_palette import FABRIC, METAL, PAINT, POSTER, STONE, WOOD, pick

_STATIC, _DYNAMIC = LABEL_ID_STATIC, LABEL_ID_DYNAMIC  # Cityscapes void classes
_FACE_GAIN = {"side": 0.78, "top": 1.12, "front": 0.95}
_DARK = np.array([28, 28, 30], np.float32)


def _base(cam: Camera, x: float, z: float) -> tuple[float, float, float]:
    """Image point of the ground under (x, z) and the scale there (pixels per metre)."""
    bx, by = cam.project(np.array([x]), np.zeros(1), np.array([z]))
    return float(bx[0]), float(by[0]), cam.focal / z


def _boxes(cv: _Canvas, boxes: list[tuple[float, ...]], colour: np.ndarray, label: int) -> None:
    """Axis-aligned boxes (x0, x1, y0, y1, z0, z1), painted in the given (far-first) order."""
    for box in boxes:
        for name, poly in _box_faces(cv.cam, *box):
            cv.poly(poly, colour * _FACE_GAIN[name], label)


# -------------------------------------------------------------------------------------- bench
def sample_bench(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A park bench along the street: slatted seat and backrest on two leg frames."""
    return {
        "w": 0.55,
        "d": float(rng.uniform(1.4, 2.1)),
        "h": float(rng.uniform(0.78, 0.9)),
        "seat": float(rng.uniform(0.4, 0.48)),
        "wood": pick(rng, WOOD if rng.random() < 0.7 else PAINT),
        "frame": pick(rng, METAL),
    }


def draw_bench(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    x0, x1, z1, seat = o.x - p["w"] / 2, o.x + p["w"] / 2, z + p["d"], p["seat"]
    back = (x0, x0 + 0.06) if o.x < 0 else (x1 - 0.06, x1)  # backrest on the far side
    legs = [(x0, x1, 0.0, seat - 0.04, zz, zz + 0.06) for zz in (z1 - 0.16, z + 0.1)]
    _boxes(cv, legs[:1], p["frame"], _STATIC)
    _boxes(cv, [(*back, seat + 0.06, p["h"], z, z1)], p["wood"] * 0.9, _STATIC)
    _boxes(cv, [(x0, x1, seat - 0.05, seat, z, z1)], p["wood"], _STATIC)
    _boxes(cv, legs[1:], p["frame"], _STATIC)


# -------------------------------------------------------------------------------- bollard row
def sample_bollards(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """2-6 slender square posts in a line along the kerb."""
    n, gap, size = int(rng.integers(2, 7)), float(rng.uniform(1.2, 2.4)), rng.uniform(0.12, 0.2)
    post = float(rng.uniform(0.75, 1.1))
    return {
        "w": float(size * 1.2),  # the caps overhang
        "d": float((n - 1) * gap + size),
        "h": post + 0.05,
        "post": post,
        "size": float(size),
        "n": n,
        "gap": gap,
        "colour": pick(rng, PAINT if rng.random() < 0.5 else METAL),
    }


def draw_bollards(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    half, size, post = p["size"] / 2, p["size"], p["post"]
    for k in reversed(range(p["n"])):
        zk = z + k * p["gap"]
        _boxes(cv, [(o.x - half, o.x + half, 0.0, post, zk, zk + size)], p["colour"], _STATIC)
        cap = (o.x - half * 1.2, o.x + half * 1.2, post, post + 0.05, zk, zk + size)
        _boxes(cv, [cap], p["colour"] * 0.7, _STATIC)


# ------------------------------------------------------------------------------------ hydrant
def sample_hydrant(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """An overground hydrant: narrow column, domed cap, two side outlets."""
    w = float(rng.uniform(0.2, 0.28))
    return {
        "w": w * 2.0,
        "d": w,
        "h": float(rng.uniform(0.6, 0.9)),
        "colour": pick(rng, PAINT),
        "cap": pick(rng, METAL),
    }


def draw_hydrant(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    bx, by, s = _base(cv.cam, o.x, z)
    w, h, c = p["w"] / 2 * s, p["h"] * s, p["colour"]
    cv.poly(_rect(bx - w * 0.75, by - 0.07 * h, bx + w * 0.75, by), p["cap"], _STATIC)
    column = [[bx - w / 2, by - 0.07 * h], [bx + w / 2, by - 0.07 * h]]
    column += [[bx + w * 0.42, by - 0.88 * h], [bx - w * 0.42, by - 0.88 * h]]
    cv.poly(np.array(column), c, _STATIC)
    for side in (-1, 1):
        outlet = _rect(bx, by - 0.66 * h, bx + side * w, by - 0.54 * h)
        cv.poly(outlet, c * 0.8, _STATIC)
    cv.ellipse(bx, by - 0.88 * h, w * 0.45, w * 0.3, p["cap"], _STATIC)
    cv.ellipse(bx, by - 0.45 * h, w * 0.15, w * 0.15, c * 0.6, _STATIC)


# ------------------------------------------------------------------------------------ mailbox
def sample_mailbox(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A letter box on a post: a small box with a rounded top and a slot."""
    return {
        "w": float(rng.uniform(0.35, 0.45)),
        "d": 0.3,
        "h": float(rng.uniform(1.25, 1.5)),
        "box": float(rng.uniform(0.4, 0.5)),
        "colour": pick(rng, PAINT),
        "post": pick(rng, METAL),
    }


def draw_mailbox(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    bx, by, s = _base(cv.cam, o.x, z)
    w, h, box = p["w"] * s / 2, p["h"] * s, p["box"] * s
    post = max(0.035 * s, 0.5)
    cv.poly(_rect(bx - post, by - h + box, bx + post, by), p["post"], _STATIC)
    top = by - h + w * 0.6
    cv.poly(_rect(bx - w, top, bx + w, by - h + box), p["colour"], _STATIC)
    cv.ellipse(bx, top, w, w * 0.6, p["colour"] * 1.08, _STATIC)
    slot = _rect(bx - w * 0.6, top + box * 0.12, bx + w * 0.6, top + box * 0.18)
    cv.poly(slot, _DARK, _STATIC)


# ----------------------------------------------------------------------------- ticket machine
def sample_ticket_machine(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A tall parking-ticket machine: cabinet with a screen, a keypad and a little roof."""
    body = float(rng.uniform(1.5, 1.85))
    return {
        "w": float(rng.uniform(0.45, 0.6)) + 0.08,  # the roof overhangs
        "d": 0.35,
        "h": body + 0.06,
        "body": body,
        "colour": pick(rng, PAINT if rng.random() < 0.6 else METAL),
    }


def draw_ticket_machine(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    half, h, c = p["w"] / 2 - 0.04, p["body"], p["colour"]
    x0, x1 = o.x - half, o.x + half
    _boxes(cv, [(x0, x1, 0.0, h, z, z + p["d"])], c, _STATIC)
    _boxes(cv, [(x0 - 0.04, x1 + 0.04, h, h + 0.06, z, z + p["d"])], c * 0.7, _STATIC)
    bx, by, s = _base(cv.cam, o.x, z)
    w = half * s
    screen = _rect(bx - w * 0.7, by - h * s * 0.85, bx + w * 0.7, by - h * s * 0.68)
    cv.poly(screen, _DARK + 20, _STATIC)
    keypad = _rect(bx - w * 0.5, by - h * s * 0.6, bx + w * 0.5, by - h * s * 0.45)
    cv.poly(keypad, c * 0.6 + 60, _STATIC)


# ----------------------------------------------------------------------------------- hoarding
def sample_hoarding(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A building-site hoarding along the sidewalk: vertical boards and a few posters."""
    length = float(rng.uniform(5.0, 20.0))
    posters = [
        (rng.uniform(0, length - 1.5), rng.uniform(0.8, 1.8), rng.uniform(0.4, 0.9))
        for _ in range(int(rng.integers(0, 4)))
    ]
    return {
        "w": 0.1,
        "d": length,
        "h": float(rng.uniform(2.0, 2.6)),
        "colour": pick(rng, WOOD if rng.random() < 0.5 else PAINT),
        "posters": [(float(u), float(wd), float(v)) for u, wd, v in posters],
        "poster_colours": [pick(rng, POSTER) for _ in posters],
    }


def _plane_quad(cam: Camera, xp: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
    px, py = cam.project(np.full(4, xp), np.array([y0, y0, y1, y1]), np.array([z0, z1, z1, z0]))
    return np.stack([px, py], 1)


def draw_hoarding(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    z1, z0 = z, max(z - p["d"], 1.5)
    xp, colour = o.x, p["colour"]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        zz = cam.focal * xp / np.where(np.abs(xs - cam.vp_x) < 1e-3, 1e-3, xs - cam.vp_x)
        u, v = zz - (z - p["d"]), cam.cam_h + (cam.horizon - ys) * zz / cam.focal
        out = colour[None] * np.where(np.mod(u / 0.25, 1.0) < 0.08, 0.75, 1.0)[:, None]
        for (u0, width, v0), c in zip(p["posters"], p["poster_colours"]):
            inside = (u > u0) & (u < u0 + width) & (v > v0) & (v < v0 + width * 1.3)
            out = np.where(inside[:, None], c[None], out)
        return out

    cv.textured(_plane_quad(cam, xp, z0, z1, 0.0, p["h"]), _STATIC, shade)


# -------------------------------------------------------------------------------- scaffolding
def sample_scaffolding(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """Tube scaffolding in front of a facade: standards, ledgers and plank decks."""
    top_deck = float(rng.uniform(5.0, 12.0))
    return {
        "w": 0.1,
        "d": float(rng.uniform(6.0, 20.0)),
        "h": top_deck + 1.0,  # standards and guard rail reach a metre above the top deck
        "top_deck": top_deck,
        "bay": float(rng.uniform(2.0, 2.6)),
        "lift": float(rng.uniform(1.9, 2.2)),
        "tube": pick(rng, METAL) * 0.5 + 75,
        "plank": pick(rng, WOOD),
    }


def draw_scaffolding(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    z0 = max(z - p["d"], 1.5)
    for lift in np.arange(p["lift"], p["top_deck"] + 1e-6, p["lift"]):
        deck = _plane_quad(cam, o.x, z0, z, lift - 0.2, lift)
        cv.poly(deck, p["plank"], _STATIC)
        rail = _plane_quad(cam, o.x, z0, z, lift + 0.95, lift + 1.0)
        cv.poly(rail, p["tube"], _STATIC)
    for zk in np.arange(z, z0 - 1e-6, -p["bay"]):
        for dz in (-0.03, 0.03):  # a standard seen from either side stays a few cm wide
            post = _plane_quad(cam, o.x, zk - 0.03, zk + dz + 0.03, 0.0, p["h"])
            cv.poly(post, p["tube"], _STATIC)


# ----------------------------------------------------------------------------------- stroller
def sample_stroller(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A pram in profile: small wheels, a bassinet with a folding hood, a push handle."""
    length = float(rng.uniform(0.75, 0.95))
    return {
        "w": length * 1.35,  # seen side-on: across the street, handle included
        "d": 0.6,
        "h": float(rng.uniform(1.0, 1.1)),
        "length": length,
        "facing": float(rng.choice([-1.0, 1.0])),
        "body": pick(rng, FABRIC),
        "frame": pick(rng, METAL),
    }


def draw_stroller(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    bx, by, s = _base(cv.cam, o.x, z)
    L, H, f = p["length"] * s, p["h"] * s, p["facing"]
    wheel_r = 0.1 * s
    for end in (-0.38, 0.38):
        cv.ellipse(bx + end * L, by - wheel_r, wheel_r, wheel_r, _DARK, _DYNAMIC)
    frame = [[bx - 0.4 * L, by - wheel_r * 1.2], [bx + 0.4 * L, by - wheel_r * 1.2]]
    frame += [[bx + 0.3 * L, by - 0.4 * H], [bx - 0.3 * L, by - 0.4 * H]]
    cv.poly(np.array(frame), p["frame"], _DYNAMIC)
    cv.ellipse(bx, by - 0.5 * H, 0.45 * L, 0.13 * H, p["body"], _DYNAMIC)
    cv.poly(_rect(bx - 0.45 * L, by - 0.68 * H, bx + 0.45 * L, by - 0.5 * H), p["body"], _DYNAMIC)
    cv.ellipse(bx - f * 0.2 * L, by - 0.68 * H, 0.25 * L, 0.18 * H, p["body"] * 0.8, _DYNAMIC)
    grip_x = bx + f * 0.62 * L
    handle = [[bx + f * 0.4 * L, by - 0.62 * H], [bx + f * 0.45 * L, by - 0.66 * H]]
    handle += [[grip_x + f * 0.04 * L, by - H], [grip_x - f * 0.02 * L, by - H]]
    cv.poly(np.array(handle), p["frame"], _DYNAMIC)


# --------------------------------------------------------------------------- shopping trolley
def sample_trolley(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """A supermarket trolley in profile: see-through wire basket on a wheeled frame."""
    length = float(rng.uniform(0.8, 0.95))
    return {
        "w": length * 1.3,  # seen side-on: across the street, handle included
        "d": 0.55,
        "h": float(rng.uniform(0.95, 1.05)),
        "length": length,
        "facing": float(rng.choice([-1.0, 1.0])),
        "wire": pick(rng, METAL) * 0.6 + 80,
        "handle": pick(rng, PAINT),
        "mesh": float(rng.uniform(0.04, 0.06)),
    }


def draw_trolley(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    bx, by, s = _base(cv.cam, o.x, z)
    L, H, f, wire = p["length"] * s, p["h"] * s, p["facing"], p["wire"]
    period = max(p["mesh"] * s, 1.5)
    basket = [[bx - f * 0.5 * L, by - 0.95 * H], [bx + f * 0.5 * L, by - 0.95 * H]]
    basket += [[bx + f * 0.42 * L, by - 0.45 * H], [bx - f * 0.25 * L, by - 0.45 * H]]

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        under = cv.img[ys.astype(int), xs.astype(int)].astype(np.float32)
        grid = (np.mod((xs - bx) / period, 1.0) < 0.3) | (np.mod((ys - by) / period, 1.0) < 0.3)
        return np.where(grid[:, None], wire[None], under * 0.6 + wire[None] * 0.4)

    cv.textured(np.array(basket), _DYNAMIC, shade)
    leg = max(0.025 * s, 0.6)
    for end in (-0.3, 0.4):
        cv.poly(
            _rect(bx + f * end * L - leg, by - 0.45 * H, bx + f * end * L + leg, by),
            wire,
            _DYNAMIC,
        )
        cv.ellipse(bx + f * end * L, by - 0.05 * s, 0.05 * s, 0.05 * s, _DARK, _DYNAMIC)
    grip = _rect(bx - f * 0.5 * L - 0.1 * s, by - H, bx - f * 0.5 * L + 0.02 * s, by - 0.95 * H)
    cv.poly(grip, p["handle"], _DYNAMIC)


# ---------------------------------------------------------------------------- roadworks fence
def sample_roadworks_fence(rng: np.random.Generator, scene: Scene) -> dict[str, Any]:
    """Mobile site-fence panels facing the camera: wire mesh in a tube frame on concrete feet."""
    n, panel = int(rng.integers(1, 4)), float(rng.uniform(2.2, 3.5))
    return {
        "w": n * panel + 0.6,  # the feet stick out at both ends
        "d": 0.5,
        "h": float(rng.uniform(1.8, 2.0)),
        "n": n,
        "tube": pick(rng, METAL) * 0.5 + 90,
        "foot": pick(rng, STONE),
        "mesh": float(rng.uniform(0.08, 0.12)),
    }


def draw_roadworks_fence(cv: _Canvas, o: Obj, z: float) -> None:
    p = o.params
    bx, by, s = _base(cv.cam, o.x, z)
    W, H, tube = (p["w"] - 0.6) * s, p["h"] * s, p["tube"]
    x0, period, t = bx - W / 2, max(p["mesh"] * s, 1.5), max(0.03 * s, 0.6)

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        under = cv.img[ys.astype(int), xs.astype(int)].astype(np.float32)
        grid = (np.mod((xs - x0) / period, 1.0) < 0.2) | (np.mod((ys - by) / period, 1.0) < 0.2)
        return np.where(grid[:, None], tube[None], under * 0.65 + tube[None] * 0.35)

    cv.textured(_rect(x0, by - H, x0 + W, by - 0.12 * s), _STATIC, shade)
    for k in range(p["n"] + 1):
        px = x0 + k * W / p["n"]
        cv.poly(_rect(px - t, by - H, px + t, by - 0.1 * s), tube, _STATIC)
        foot = [[px - 0.3 * s, by], [px + 0.3 * s, by], [px + 0.22 * s, by - 0.14 * s]]
        cv.poly(np.array(foot + [[px - 0.22 * s, by - 0.14 * s]]), p["foot"], _STATIC)
    for y in (by - H, by - 0.12 * s - t):
        cv.poly(_rect(x0, y, x0 + W, y + t), tube, _STATIC)
