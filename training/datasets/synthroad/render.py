"""synthroad rendering: a :class:`~.scene.Scene` seen by its camera -> RGB + labels.

Ground, facades and lane marks are computed per pixel with numpy from their world
coordinates; objects are painted far-to-near with OpenCV; a labelIds map is painted alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Optional

import cv2
import numpy as np

from training.datasets.base import VOID
from training.datasets.cityscapes import (
    LABEL_ID_EGO_VEHICLE,
    LABEL_ID_STATIC,
    LABEL_ID_UNLABELED,
    label_ids_to_train_ids,
)

from .canvas import _box_faces, _Canvas, _rect, _sample_tile
from .scene import (
    _OOD_KINDS,
    _OOD_MARK,
    BUILDING,
    CAR,
    FENCE,
    LIGHT,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRUCK,
    VEGETATION,
    WALL,
    Camera,
    Obj,
    Scene,
    sample_scene,
)
from .void import VOID_FAMILIES


def _draw_sky(cv: _Canvas, s: Scene) -> None:
    """Vertical gradient plus soft clouds; only the rows above the horizon can show sky."""
    cam = cv.cam
    rows = min(cam.height, int(math.ceil(cam.horizon)) + 1)
    cv.lab[:] = SKY
    if rows <= 0:
        return
    t = np.clip(np.arange(rows, dtype=np.float32) / max(cam.horizon, 1.0), 0, 1)[:, None]
    grad = s.sky_top[None] * (1 - t) + s.sky_horizon[None] * t  # (rows, 3)
    if s.clouds > 0:
        cloud = cv2.resize(
            s.tiles["coarse"][:8, :16], (cam.width, cam.height), interpolation=cv2.INTER_CUBIC
        )[:rows]
        amount = np.clip((cloud - (1.2 - s.clouds)) * 0.8, 0, 0.85)[:, :, None]
        sky = grad[:, None, :] + (np.float32(238) - grad[:, None, :]) * amount
    else:
        sky = np.broadcast_to(grad[:, None, :], (rows, cam.width, 3))
    cv.img[:rows] = sky.astype(np.uint8)


# Ground region codes -> colour rows of a per-scene palette and labelIds.
_G_ROAD, _G_SW_L, _G_SW_R, _G_CURB_L, _G_CURB_R, _G_TERRAIN, _G_ZEBRA, _G_LINE0 = range(8)


def _ground_codes(s: Scene, x: np.ndarray, zw: np.ndarray) -> np.ndarray:
    """Region code per ground pixel from its world (X, Z): kerbs, sidewalks, terrain, road,
    zebra and lane marks (``_G_LINE0 + k`` for lane line k)."""
    left_curb, right_curb = s.x_left - s.curb_w, s.x_right + s.curb_w
    code = np.where(x > 0, np.uint8(_G_SW_R), np.uint8(_G_SW_L))
    code[(x < s.x_left) & (x >= left_curb)] = _G_CURB_L
    code[(x > s.x_right) & (x <= right_curb)] = _G_CURB_R
    if s.terrain[0] > 0:
        code[x < left_curb - s.sidewalk[0]] = _G_TERRAIN
    if s.terrain[1] > 0:
        code[x > right_curb + s.sidewalk[1]] = _G_TERRAIN
    road = (x >= s.x_left) & (x <= s.x_right)
    code[road] = _G_ROAD
    if s.crosswalk is not None:
        z0, z1 = s.crosswalk
        zrows = (zw[:, 0] >= z0) & (zw[:, 0] <= z1)
        code[zrows] = np.where(
            road[zrows] & (np.mod(x[zrows] - s.x_left, 1.0) < 0.5), np.uint8(_G_ZEBRA), code[zrows]
        )
    dash = np.mod(zw + 1.3, 9.0) < 3.0  # (rows, 1)
    for k, (lx, kind, _) in enumerate(s.lane_lines):
        near = np.abs(x - lx) < 0.075
        if kind == "dashed":
            near &= dash
        code[near] = _G_LINE0 + k
    return code


def _ground_palette(s: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region code: (colour, texture amplitude, labelId)."""
    palette = np.empty((_G_LINE0 + len(s.lane_lines), 3), np.float32)
    amp = np.empty(len(palette), np.float32)
    palette[_G_ROAD], amp[_G_ROAD] = s.asphalt, 9
    palette[_G_SW_L], palette[_G_SW_R], amp[[_G_SW_L, _G_SW_R]] = (
        s.sidewalk_colour[0],
        s.sidewalk_colour[1],
        7,
    )
    palette[_G_CURB_L] = np.clip(s.sidewalk_colour[0] * 1.12 + 8, 0, 255)
    palette[_G_CURB_R] = np.clip(s.sidewalk_colour[1] * 1.12 + 8, 0, 255)
    amp[[_G_CURB_L, _G_CURB_R]] = 7
    palette[_G_TERRAIN], amp[_G_TERRAIN] = s.terrain_colour, 16
    palette[_G_ZEBRA], amp[_G_ZEBRA] = 225, 8
    for k, (_, _, colour) in enumerate(s.lane_lines):
        palette[_G_LINE0 + k], amp[_G_LINE0 + k] = colour, 6
    labels = np.full(len(palette), ROAD, np.uint8)
    labels[[_G_SW_L, _G_SW_R, _G_CURB_L, _G_CURB_R]] = SIDEWALK
    labels[_G_TERRAIN] = TERRAIN
    return palette, amp, labels


def _ground_gain(
    s: Scene, code: np.ndarray, x: np.ndarray, z: np.ndarray, zw: np.ndarray
) -> np.ndarray:
    """Scalar shading: paving joints every 0.5 m on sidewalks (not where sub-pixel), shadow."""
    gain = np.ones(x.shape, np.float32)
    sidewalk = (code == _G_SW_L) | (code == _G_SW_R)
    joint = (np.abs(x * 2 - np.round(x * 2)) < 0.07) | (
        (np.abs(zw * 2 - np.round(zw * 2)) < 0.07 * (1 + z / 8)) & (z < 40)
    )
    gain[sidewalk & joint] = 0.82
    if s.shadow is not None:
        side, edge, strength = s.shadow
        gain[((x - edge) * side > 0) & (code != _G_TERRAIN)] *= strength
    return gain


def _draw_ground(cv: _Canvas, s: Scene, cam_z: float) -> None:
    """Road, kerbs, sidewalks, terrain, lane marks and zebra, per pixel from world (X, Z).

    Each pixel gets a region code; colour = palette[code] * shading + texture * amplitude[code],
    so only a handful of full-size array operations run whatever the scene contains."""
    cam = cv.cam
    y_start = int(math.floor(cam.horizon)) + 1
    if y_start >= cam.height:
        return
    ys = np.arange(y_start, cam.height, dtype=np.float32) + 0.5
    dy = np.maximum(ys - np.float32(cam.horizon), np.float32(0.05))[:, None]
    xs = np.arange(cam.width, dtype=np.float32)[None, :] + 0.5
    z = np.float32(cam.focal * cam.cam_h) / dy  # (rows, 1)
    x = (xs - np.float32(cam.vp_x)) * (np.float32(cam.cam_h) / dy)  # (rows, W)
    zw = z + np.float32(cam_z)
    shape = x.shape
    fine = _sample_tile(s.tiles["fine"], x * 9, np.broadcast_to(zw * 9, shape))
    coarse = _sample_tile(s.tiles["coarse"], x * 0.6 + 17, np.broadcast_to(zw * 0.6, shape))
    tex = (
        fine * (0.55 * (1 - np.clip(z / 60.0, 0, 1))) + coarse * 0.45
    )  # fine grain fades with distance

    code = _ground_codes(s, x, zw)
    palette, amp, labels = _ground_palette(s)
    gain = _ground_gain(s, code, x, z, zw)
    img = palette[code] * gain[..., None] + (tex * amp[code])[..., None]
    cv.img[y_start:] = np.clip(img, 0, 255).astype(np.uint8)
    cv.lab[y_start:] = labels[code]


def _draw_far(cv: _Canvas, s: Scene, cam_z: float) -> None:
    """End of the street: a frontal row of blocks (closed) or a hazy distant skyline (open)."""
    cam = cv.cam
    z = s.far_z - cam_z if s.far_mode == "closed" else s.far_z
    if z <= 1.0:
        return
    haze = 0.25 if s.far_mode == "closed" else 0.55
    _, bottom = cam.project(np.array([0.0]), np.array([0.0]), np.array([z]))
    for i, (x0, x1, h, r, g, b, tree) in enumerate(s.far_blocks):
        colour = np.array([r, g, b], np.float32) * (1 - haze) + s.sky_horizon * haze
        px, top = cam.project(np.array([x0, x1]), np.array([h, h]), np.array([z, z]))
        if px[1] < 0 or px[0] > cam.width:
            continue
        if tree:  # a row of overlapping crowns
            n = max(2, int((px[1] - px[0]) / max(bottom[0] - top[0], 1.0) * 1.5))
            cxs = np.linspace(px[0], px[1], n)
            rad = (px[1] - px[0]) / n * 0.8
            for j, cx in enumerate(cxs):
                lift = 0.75 + 0.25 * math.sin(i * 3.1 + j * 1.7)
                cv.ellipse(
                    cx,
                    bottom[0] - (bottom[0] - top[0]) * lift * 0.6,
                    rad,
                    (bottom[0] - top[0]) * lift * 0.6,
                    colour,
                    VEGETATION,
                )
            cv.poly(
                np.array(
                    [
                        [px[0], bottom[0] - (bottom[0] - top[0]) * 0.4],
                        [px[1], bottom[0] - (bottom[0] - top[0]) * 0.4],
                        [px[1], bottom[0]],
                        [px[0], bottom[0]],
                    ]
                ),
                colour,
                VEGETATION,
            )
        else:
            cv.poly(
                np.array(
                    [[px[0], top[0]], [px[1], top[1]], [px[1], bottom[0]], [px[0], bottom[0]]]
                ),
                colour,
                BUILDING,
            )


def _facade_hits(
    cam: Camera, s: Scene, xb: float, segs: np.ndarray, cam_z: float, xs: np.ndarray
) -> Optional[tuple[np.ndarray, ...]]:
    """The image columns that see the wall plane at ``x = xb``: (columns, depth, world depth,
    segment index, segment kind, height with the vegetation's ragged crown line), or None."""
    dx = xs - np.float32(cam.vp_x)
    cols = np.nonzero(dx * np.sign(xb) > 0.5)[0]
    if len(cols) == 0:
        return None
    z = np.float32(cam.focal * xb) / dx[cols]
    zw = z + np.float32(cam_z)
    idx = np.clip(np.searchsorted(segs[:, 0], zw, side="right") - 1, 0, len(segs) - 1)
    ok = (zw >= segs[idx, 0]) & (z > 0.3) & (zw < segs[idx, 1]) & (segs[idx, 2] < 3)
    cols, z, zw, idx = cols[ok], z[ok], zw[ok], idx[ok]
    if len(cols) == 0:
        return None
    kind = segs[idx, 2].astype(np.int64)
    height = segs[idx, 3].copy()
    veg = kind == 1
    if veg.any():  # ragged crown line for vegetation masses
        height[veg] += 1.5 * _sample_tile(
            s.tiles["coarse"], zw[veg] * 1.5, np.full(int(veg.sum()), 5.0)
        )
    return cols, z, zw, idx, kind, height


def _facade_colour(
    cam: Camera,
    s: Scene,
    segs: np.ndarray,
    z: np.ndarray,
    zw: np.ndarray,
    idx: np.ndarray,
    kind: np.ndarray,
    r_idx: np.ndarray,
    c_idx: np.ndarray,
) -> np.ndarray:
    """Colour of the facade pixels (r_idx, c_idx): windows, shop fronts, ledges, foliage, wall
    courses. Everything that depends on the column only is computed per column, then gathered."""
    u_col = zw - segs[idx, 0]
    spacing, floor_h, style, seg_h = segs[idx, 7], segs[idx, 8], segs[idx, 9], segs[idx, 3]
    fu = u_col / spacing
    fu -= np.floor(fu)
    bld_col = kind == 0
    win_col = bld_col & (np.abs(fu - 0.5) < np.where(style == 1, 0.375, 0.225))
    shop_u = u_col / 4.0
    shop_col = bld_col & (style == 2) & (np.abs(shop_u - np.floor(shop_u) - 0.5) < 0.38)
    col_gain = np.where(bld_col & (np.minimum(u_col, segs[idx, 1] - zw) < 0.25), 0.7, 1.0).astype(
        np.float32
    )
    haze = np.clip(z / 250.0, 0, 0.5)[:, None]
    col_base = segs[idx, 4:7] * (1 - haze) + s.sky_horizon * haze
    col_glass = np.float32((60, 68, 84)) * (1 - haze) + s.sky_horizon * haze
    col_wid = np.floor(fu + np.floor(u_col / spacing)) * 7 + idx * 31

    zc = z[c_idx]
    v = np.float32(cam.cam_h) + (np.float32(cam.horizon) - (r_idx.astype(np.float32) + 0.5)) * (
        zc / np.float32(cam.focal)
    )
    k = kind[c_idx]
    fh = floor_h[c_idx]
    fv_raw = v / fh
    fv = fv_raw - np.floor(fv_raw)
    window = win_col[c_idx] & (fv > 0.3) & (fv < 0.8) & (v > 3.2) & (v < seg_h[c_idx] - 0.8)
    window |= shop_col[c_idx] & (v < 2.7) & (v > 0.4)
    gain = col_gain[c_idx] * (1 + 0.05 * _sample_tile(s.tiles["fine"], u_col[c_idx] * 6, v * 6))
    ledge = (k == 0) & (np.abs(fv - 0.05) < 0.04) & (v > 3)
    gain[ledge] *= 0.88
    if window.any():  # per-window brightness from a hash of the window's grid cell
        wid = col_wid[c_idx[window]] + np.floor(fv_raw[window]) * 13
        gain[window] = 0.55 + 0.9 * np.mod(np.abs(np.sin(wid * 12.9898)) * 43758.5, 1.0)
    vv = k == 1
    if vv.any():
        uu, vvv = u_col[c_idx[vv]], v[vv]
        gain[vv] = (
            1
            + 0.2 * _sample_tile(s.tiles["fine"], uu * 12, vvv * 12)
            + 0.15 * _sample_tile(s.tiles["coarse"], uu * 2, vvv * 2)
        )
    wall = k == 2
    if wall.any():
        wv = v[wall] / 0.6
        gain[wall] *= np.where(wv - np.floor(wv) < 0.083, 0.8, 1.0)
    return np.where(window[:, None], col_glass[c_idx], col_base[c_idx]) * gain[:, None]


def _draw_facades(cv: _Canvas, s: Scene, cam_z: float) -> None:
    """Street walls on both sides: buildings (windows, shop fronts, ledges), vegetation masses,
    walls. Per column: the depth where the column meets the wall plane; per pixel: (along-street,
    height) facade coordinates for the textures."""
    cam = cv.cam
    xs = np.arange(cam.width, dtype=np.float32) + 0.5
    rows = np.arange(cam.height, dtype=np.float32)[:, None] + 0.5
    labels = np.array([BUILDING, VEGETATION, WALL, BUILDING], np.uint8)
    for xb, segs in ((s.facade_x[0], s.facades[0]), (s.facade_x[1], s.facades[1])):
        if len(segs) == 0:
            continue
        hits = _facade_hits(cam, s, xb, segs, cam_z, xs)
        if hits is None:
            continue
        cols, z, zw, idx, kind, height = hits
        top = cam.horizon - cam.focal * (height - cam.cam_h) / z
        bottom = cam.horizon + cam.focal * cam.cam_h / z
        r_idx, c_idx = np.nonzero((rows >= top[None, :]) & (rows < bottom[None, :]))
        if len(r_idx) == 0:
            continue
        colour = _facade_colour(cam, s, segs, z, zw, idx, kind, r_idx, c_idx)
        cv.img[r_idx, cols[c_idx]] = np.clip(colour, 0, 255).astype(np.uint8)
        cv.lab[r_idx, cols[c_idx]] = labels[kind[c_idx]]


def _draw_fence(cv: _Canvas, fx: float, z0: float, z1: float, h: float, cam_z: float) -> None:
    cam = cv.cam
    za, zb = max(z0 - cam_z, 1.0), z1 - cam_z
    if zb <= za:
        return
    px, top = cam.project(np.array([fx, fx]), np.array([h, h]), np.array([za, zb]))
    _, bot = cam.project(np.array([fx, fx]), np.array([0.0, 0.0]), np.array([za, zb]))
    pts = np.array([[px[0], top[0]], [px[1], top[1]], [px[1], bot[1]], [px[0], bot[0]]])

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        z = cam.focal * fx / (xs - cam.vp_x)
        bar = np.mod(z + cam_z, 0.3) < 0.07
        rail = np.abs(cam.cam_h + (cam.horizon - ys) * z / cam.focal - h * 0.9) < 0.05
        under = cv.img[ys.astype(int), xs.astype(int)].astype(np.float32)
        metal = np.array([95, 95, 100], np.float32)
        return np.where((bar | rail)[:, None], metal, under * 0.6 + metal * 0.4)

    cv.textured(pts, FENCE, shade)


def _draw_vehicle(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    x0, x1 = o.x - p["w"] / 2, o.x + p["w"] / 2
    # shadow on the road
    sx, sy = cam.project(
        np.array([x0 - 0.1, x1 + 0.1, x1 + 0.1, x0 - 0.1]),
        np.zeros(4),
        np.array([z - 0.2, z - 0.2, z + p["l"], z + p["l"]]),
    )
    cv.darken(np.stack([sx, sy], 1), 0.45)
    if p["truck"]:
        _draw_truck_body(cv, p, x0, x1, z)
    else:
        _draw_car_body(cv, p, x0, x1, z)
    _draw_vehicle_face(cv, o, x0, x1, z)


def _draw_truck_body(cv: _Canvas, p: dict[str, Any], x0: float, x1: float, z: float) -> None:
    """Cargo box and cab, the nearer one drawn last."""
    h, length, oncoming, cab_l = p["h"], p["l"], p["oncoming"], 2.0
    body = (x0, x1, 0.45, h, z + (cab_l if not oncoming else 0), z + length)
    cab_z = (z, z + cab_l) if not oncoming else (z + length - cab_l, z + length)
    cab = (x0 + 0.05, x1 - 0.05, 0.45, h * 0.8, *cab_z)
    parts = [(body, p["colour"]), (cab, p["cab_colour"])]
    parts = parts if not oncoming else parts[::-1]
    for (a, b, c, d, e, f), col in sorted(parts, key=lambda t: -t[0][4]):
        for name, poly in _box_faces(cv.cam, a, b, c, d, e, f):
            cv.poly(poly, col * {"side": 0.75, "top": 1.1, "front": 0.95}[name], TRUCK)


def _draw_car_body(cv: _Canvas, p: dict[str, Any], x0: float, x1: float, z: float) -> None:
    """Lower body, then the cabin with its windows."""
    h, length, colour = p["h"], p["l"], p["colour"]
    for name, poly in _box_faces(cv.cam, x0, x1, 0.3, h * 0.6, z, z + length):
        cv.poly(poly, colour * {"side": 0.78, "top": 1.12, "front": 0.95}[name], CAR)
    inset = p["w"] * 0.1
    cab = (x0 + inset, x1 - inset, h * 0.6, h, z + length * 0.25, z + length * 0.75)
    for name, poly in _box_faces(cv.cam, *cab):
        glass = np.array([40, 48, 60], np.float32) + colour * 0.1
        if name == "top":
            cv.poly(poly, colour * 1.05, CAR)
        else:
            cv.poly(poly, colour * 0.9, CAR)
            centre = poly.mean(0)
            window = centre + (poly - centre) * np.array([0.82, 0.7])
            cv.poly(window, glass * (0.9 if name == "side" else 1.0), CAR)


def _draw_vehicle_face(cv: _Canvas, o: Obj, x0: float, x1: float, z: float) -> None:
    """Wheels, lights and number plate on the near face."""
    cam, p = cv.cam, o.params
    label = TRUCK if p["truck"] else CAR
    s = cam.focal / z
    gx, gy = cam.project(np.array([x0 + 0.3, x1 - 0.3]), np.zeros(2), np.array([z, z]))
    tyre = np.array([18, 18, 20], np.float32)
    for cx in gx:
        cv.ellipse(cx, gy[0] - 0.3 * s, 0.17 * s, 0.3 * s, tyre, label)
    lamp_up = np.array([p["h"] * (0.45 if not p["truck"] else 0.25) + 0.2])
    ly = cam.project(np.array([0.0]), lamp_up, np.array([z]))[1][0]
    lamp = np.array([245, 235, 200] if p["oncoming"] else [200, 20, 25], np.float32)
    for cx in cam.project(np.array([x0 + 0.22, x1 - 0.22]), np.zeros(2), np.array([z, z]))[0]:
        cv.ellipse(cx, ly, 0.13 * s, 0.07 * s, lamp, label)
    px = cam.project(np.array([o.x]), np.zeros(1), np.array([z]))[0][0]
    plate = _rect(px - 0.26 * s, ly + 0.1 * s, px + 0.26 * s, ly + 0.22 * s)
    cv.poly(plate, np.array([225, 225, 220], np.float32), label)


def _draw_person(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    s = cam.focal / z
    fx, fy = cam.project(np.array([o.x]), np.zeros(1), np.array([z]))
    fx, fy = float(fx[0]), float(fy[0])
    h = p["h"] * s
    hip, shoulder = fy - 0.47 * h, fy - 0.82 * h
    cv.darken_ellipse(fx, fy, 0.16 * h, 0.03 * h, 0.6)
    _draw_legs(cv, p, fx, fy, h, hip)
    torso_w = 0.13 * h
    torso = [
        [fx - torso_w, shoulder],
        [fx + torso_w, shoulder],
        [fx + torso_w * 0.9, hip + 0.03 * h],
        [fx - torso_w * 0.9, hip + 0.03 * h],
    ]
    cv.poly(np.array(torso), p["top"], PERSON)
    _draw_arms(cv, p, fx, h, hip, shoulder, torso_w)
    head_r = 0.065 * h
    cv.ellipse(fx, shoulder - head_r * 1.1, head_r * 0.85, head_r, p["skin"], PERSON)
    cv.ellipse(fx, shoulder - head_r * 1.55, head_r * 0.85, head_r * 0.55, p["hair"], PERSON)
    if p["bag"]:
        bag = _rect(fx + torso_w, hip - 0.1 * h, fx + torso_w + 0.1 * h, hip + 0.05 * h)
        cv.poly(bag, p["legs"] * 0.7, PERSON)


def _draw_legs(cv: _Canvas, p: dict[str, Any], fx: float, fy: float, h: float, hip: float) -> None:
    stride, leg_w = p["stride"] * h, 0.06 * h
    for sgn in (-1, 1):
        foot = fx + sgn * stride / 2
        leg = [
            [fx + sgn * 0.02 * h - leg_w, hip],
            [fx + sgn * 0.02 * h + leg_w, hip],
            [foot + leg_w * 0.7, fy],
            [foot - leg_w * 0.7, fy],
        ]
        cv.poly(np.array(leg), p["legs"], PERSON)


def _draw_arms(
    cv: _Canvas,
    p: dict[str, Any],
    fx: float,
    h: float,
    hip: float,
    shoulder: float,
    torso_w: float,
) -> None:
    swing = p["stride"] * h * 0.3
    for sgn in (-1, 1):
        arm = [
            [fx + sgn * torso_w, shoulder],
            [fx + sgn * (torso_w + 0.05 * h), shoulder + 0.01 * h],
            [fx + sgn * (torso_w + 0.06 * h) - sgn * swing, hip],
            [fx + sgn * (torso_w + 0.01 * h) - sgn * swing, hip],
        ]
        cv.poly(np.array(arm), p["top"] * 0.9, PERSON)


def _draw_pole(cv: _Canvas, o: Obj, z: float) -> None:
    """A pole, with what it carries: a lamp arm, a sign or a traffic light."""
    cam, p = cv.cam, o.params
    s = cam.focal / z
    bx, by = cam.project(np.array([o.x]), np.zeros(1), np.array([z]))
    bx, by = float(bx[0]), float(by[0])
    top = by - p["h"] * s
    half = max(p["w"] * s / 2, 0.5)
    cv.poly(_rect(bx - half, top, bx + half, by), p["colour"], POLE)
    head = {"lamp": _draw_lamp_head, "sign": _draw_sign, "light": _draw_light_head}.get(o.kind)
    if head is not None:
        head(cv, p, bx, top, s)


def _draw_lamp_head(cv: _Canvas, p: dict[str, Any], bx: float, top: float, s: float) -> None:
    arm = -p["side"] * 1.4 * s
    outline = [
        [bx, top],
        [bx + arm, top - 0.15 * s],
        [bx + arm, top - 0.05 * s],
        [bx, top + 0.1 * s],
    ]
    cv.poly(np.array(outline), p["colour"], POLE)
    bulb = np.array([210, 210, 190], np.float32)
    cv.ellipse(bx + arm, top - 0.02 * s, 0.25 * s, 0.07 * s, bulb, POLE)


def _draw_sign(cv: _Canvas, p: dict[str, Any], bx: float, top: float, s: float) -> None:
    r = p["size"] * s / 2
    cy = top + r
    fill, white = p["fill"], np.array([235, 235, 235], np.float32)
    if p["shape"] == "circle":
        cv.ellipse(bx, cy, r, r, white, SIGN)
        cv.ellipse(bx, cy, r * 0.78, r * 0.78, fill, SIGN)
    elif p["shape"] == "triangle":
        outer = [[bx, cy - r], [bx + r, cy + r * 0.75], [bx - r, cy + r * 0.75]]
        inner = [[bx, cy - r * 0.55], [bx + r * 0.6, cy + r * 0.5], [bx - r * 0.6, cy + r * 0.5]]
        cv.poly(np.array(outer), np.array([200, 30, 30], np.float32), SIGN)
        cv.poly(np.array(inner), np.array([240, 240, 240], np.float32), SIGN)
    elif p["shape"] == "square":
        cv.poly(_rect(bx - r, cy - r, bx + r, cy + r), fill, SIGN)
        bar = _rect(bx - r * 0.6, cy - r * 0.1, bx + r * 0.6, cy + r * 0.1)
        cv.poly(bar, np.array([245, 245, 245], np.float32), SIGN)
    else:
        outer = [[bx, cy - r], [bx + r, cy], [bx, cy + r], [bx - r, cy]]
        inner = [[bx, cy - r * 0.7], [bx + r * 0.7, cy], [bx, cy + r * 0.7], [bx - r * 0.7, cy]]
        cv.poly(np.array(outer), white, SIGN)
        cv.poly(np.array(inner), np.array([235, 195, 25], np.float32), SIGN)


def _draw_light_head(cv: _Canvas, p: dict[str, Any], bx: float, top: float, s: float) -> None:
    bw, bh = 0.35 * s, 0.95 * s
    cv.poly(
        _rect(bx - bw / 2, top, bx + bw / 2, top + bh), np.array([30, 32, 30], np.float32), LIGHT
    )
    colours = [np.array(c, np.float32) for c in ((230, 40, 30), (240, 180, 30), (40, 220, 90))]
    for i, c in enumerate(colours):
        lit = c if i == p["lit"] else c * 0.25
        cv.ellipse(bx, top + bh * (0.2 + 0.3 * i), bw * 0.3, bw * 0.3, lit, LIGHT)


def _draw_tree(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    s = cam.focal / z
    bx, by = cam.project(np.array([o.x]), np.zeros(1), np.array([z]))
    bx, by = float(bx[0]), float(by[0])
    trunk_top = by - p["trunk_h"] * s
    tw = max(0.14 * s, 0.6)
    cv.poly(
        np.array(
            [[bx - tw, trunk_top], [bx + tw, trunk_top], [bx + tw * 1.3, by], [bx - tw * 1.3, by]]
        ),
        np.array([75, 58, 40], np.float32),
        VEGETATION,
    )
    r = p["crown"] * s
    if r < 0.5:
        return
    rng = np.random.default_rng(p["seed"])
    cy = trunk_top - r * 0.6
    colour = p["colour"]
    tile = s_tile = rng.standard_normal((32, 32)).astype(np.float32)
    del s_tile

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # leaf-sized noise (about 2 px) plus light from above
        n = tile[(ys * 0.5).astype(np.int32) & 31, (xs * 0.5).astype(np.int32) & 31]
        light = 1 + 0.2 * n - 0.25 * np.clip((ys - cy) / max(r, 1), -1, 1)
        return colour[None] * light[:, None]

    n_blobs = int(rng.integers(4, 8))
    angles = rng.uniform(0, 2 * np.pi, n_blobs)
    t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    blobs = []
    for a, rad in zip(angles, rng.uniform(0.45, 0.7, n_blobs)):
        cx_, cy_ = bx + np.cos(a) * r * 0.45, cy + np.sin(a) * r * 0.35
        rr = rad * r * (1 + 0.15 * rng.standard_normal(14))
        blobs.append(np.stack([cx_ + np.cos(t) * rr, cy_ + np.sin(t) * rr * 0.9], 1))
    cv.textured(blobs, VEGETATION, shade)


def _draw_bin(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    for name, poly in _box_faces(
        cam, o.x - p["w"] / 2, o.x + p["w"] / 2, 0.0, p["h"], z, z + p["w"]
    ):
        cv.poly(poly, p["colour"] * {"side": 0.8, "top": 1.2, "front": 1.0}[name], LABEL_ID_STATIC)


def _ood_shade(cam: Camera, p: dict[str, Any], x0: float, y0: float, scale: float):
    """Pattern in object-local pixel units (checker / stripes / dots / plain with noise)."""
    period = max(p["period"] * scale, 1.5)
    c1, c2 = p["c1"], p["c2"]
    tile = np.random.default_rng(p["seed"]).standard_normal((16, 16)).astype(np.float32)

    def shade(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        u, v = (xs - x0) / period, (ys - y0) / period
        if p["pattern"] == "checker":
            m = (np.floor(u) + np.floor(v)) % 2 == 0
        elif p["pattern"] == "stripes":
            m = np.floor(u + v) % 2 == 0
        elif p["pattern"] == "dots":
            m = (np.mod(u, 1) - 0.5) ** 2 + (np.mod(v, 1) - 0.5) ** 2 < 0.09
        else:
            m = np.zeros_like(u, bool)
        n = tile[np.floor(v * 2).astype(np.int64) % 16, np.floor(u * 2).astype(np.int64) % 16]
        return np.where(m[:, None], c2[None], c1[None]) * (1 + 0.12 * n)[:, None]

    return shade


class _OodPlace(NamedTuple):
    """Where an OOD object stands: ground point (bx, by) in pixels, pixels per metre, shader."""

    bx: float
    by: float
    s: float
    shade: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _draw_cargo(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    cam, p = cv.cam, o.params
    size, h, bx, s, shade = p["size"], p["h"], at.bx, at.s, at.shade
    for name, poly in _box_faces(cam, o.x - size / 2, o.x + size / 2, 0.0, h, z, z + size * 0.8):
        factor = {"side": 0.75, "top": 1.15, "front": 1.0}[name]
        cv.textured(poly, _OOD_MARK, lambda xs, ys, f=factor: shade(xs, ys) * f)
    # a strap across the near face
    _, ty = cam.project(np.array([0.0]), np.array([h * 0.5]), np.array([z]))
    cv.poly(
        np.array(
            [
                [bx - size * s / 2, ty[0] - 0.04 * s],
                [bx + size * s / 2, ty[0] - 0.04 * s],
                [bx + size * s / 2, ty[0] + 0.04 * s],
                [bx - size * s / 2, ty[0] + 0.04 * s],
            ]
        ),
        p["c2"] * 0.5,
        _OOD_MARK,
    )


def _draw_animal(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    p = o.params
    size, bx, by, s = p["size"], at.bx, at.by, at.s
    L, H = size * s, size * s * 0.55  # body length / leg+body height in pixels
    f = p["facing"]
    body_y = by - H * 0.62
    for i in range(4):
        lx = bx + f * (-L * 0.35 + L * 0.7 * i / 3)
        cv.poly(
            np.array(
                [
                    [lx - L * 0.035, body_y],
                    [lx + L * 0.035, body_y],
                    [lx + L * 0.03, by],
                    [lx - L * 0.03, by],
                ]
            ),
            p["c1"] * 0.7,
            _OOD_MARK,
        )
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    cv.textured(
        np.stack([bx + np.cos(t) * L * 0.45, body_y + np.sin(t) * H * 0.28], 1),
        _OOD_MARK,
        at.shade,
    )
    hx, hy = bx + f * L * 0.55, body_y - H * 0.35
    cv.poly(
        np.array(
            [
                [bx + f * L * 0.35, body_y - H * 0.12],
                [hx, hy - H * 0.05],
                [hx, hy + H * 0.12],
                [bx + f * L * 0.3, body_y + H * 0.05],
            ]
        ),
        p["c1"] * 0.9,
        _OOD_MARK,
    )
    cv.ellipse(hx + f * L * 0.06, hy, L * 0.11, H * 0.12, p["c1"], _OOD_MARK, angle=20 * f)
    cv.poly(
        np.array(
            [
                [bx - f * L * 0.44, body_y - H * 0.05],
                [bx - f * L * 0.6, body_y + H * 0.25],
                [bx - f * L * 0.57, body_y + H * 0.27],
                [bx - f * L * 0.42, body_y + H * 0.03],
            ]
        ),
        p["c2"],
        _OOD_MARK,
    )


def _draw_tyre(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    r = o.params["size"] * at.s / 2
    cy = at.by - r
    cv.ellipse(at.bx, cy, r * 0.45, r, np.array([22, 22, 24], np.float32), _OOD_MARK)
    cv.ellipse(at.bx, cy, r * 0.18, r * 0.45, o.params["c1"] * 0.6, _OOD_MARK)


def _draw_cone(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    bx, by = at.bx, at.by
    hh = o.params["size"] * at.s * 1.3
    w = o.params["size"] * at.s * 0.35
    cv.poly(
        np.array(
            [
                [bx - w * 1.3, by],
                [bx + w * 1.3, by],
                [bx + w * 1.3, by - 0.06 * hh],
                [bx - w * 1.3, by - 0.06 * hh],
            ]
        ),
        np.array([40, 40, 40], np.float32),
        _OOD_MARK,
    )
    cv.poly(
        np.array(
            [
                [bx - w, by - 0.05 * hh],
                [bx + w, by - 0.05 * hh],
                [bx + w * 0.15, by - hh],
                [bx - w * 0.15, by - hh],
            ]
        ),
        np.array([255, 110, 10], np.float32),
        _OOD_MARK,
    )
    for frac in (0.35, 0.65):
        y_ = by - frac * hh
        half = w * (1 - frac * 0.85)
        cv.poly(
            np.array(
                [
                    [bx - half, y_ - 0.06 * hh],
                    [bx + half, y_ - 0.06 * hh],
                    [bx + half, y_ + 0.06 * hh],
                    [bx - half, y_ + 0.06 * hh],
                ]
            ),
            np.array([245, 245, 245], np.float32),
            _OOD_MARK,
        )


def _draw_barrel(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    p, bx, by = o.params, at.bx, at.by
    w, hh = p["size"] * at.s * 0.35, p["size"] * at.s * 0.9
    cv.poly(
        np.array([[bx - w, by - hh], [bx + w, by - hh], [bx + w, by], [bx - w, by]]),
        p["c1"],
        _OOD_MARK,
    )
    for k in range(3):
        y_ = by - hh * (0.2 + 0.3 * k)
        cv.poly(
            np.array(
                [
                    [bx - w, y_ - 0.04 * hh],
                    [bx + w, y_ - 0.04 * hh],
                    [bx + w, y_ + 0.04 * hh],
                    [bx - w, y_ + 0.04 * hh],
                ]
            ),
            p["c2"],
            _OOD_MARK,
        )
    cv.ellipse(bx, by - hh, w, w * 0.25, p["c1"] * 1.15, _OOD_MARK)


def _draw_bag(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    p, bx, by = o.params, at.bx, at.by
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    rng = np.random.default_rng(p["seed"])
    rr = 1 + 0.12 * rng.standard_normal(16)
    w, hh = p["size"] * at.s * 0.5, p["size"] * at.s * 0.35
    cv.textured(
        np.stack([bx + np.cos(t) * w * rr, by - hh + np.sin(t) * hh * rr], 1), _OOD_MARK, at.shade
    )
    cv.poly(
        np.array(
            [
                [bx - w * 0.15, by - hh * 2.1],
                [bx + w * 0.15, by - hh * 2.1],
                [bx + w * 0.1, by - hh * 1.5],
                [bx - w * 0.1, by - hh * 1.5],
            ]
        ),
        p["c2"],
        _OOD_MARK,
    )


def _draw_debris(cv: _Canvas, o: Obj, z: float, at: _OodPlace) -> None:
    """An irregular, flat-ish star polygon lying on the road, plus its thickness."""
    cam, p = cv.cam, o.params
    size, h = p["size"], p["h"]
    rng = np.random.default_rng(p["seed"])
    n = int(rng.integers(5, 10))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = size / 2 * rng.uniform(0.35, 1.0, n)
    gx, gz = o.x + np.cos(t + p["yaw"]) * rad, z + size / 2 + np.sin(t + p["yaw"]) * rad
    gz = np.maximum(gz, 0.8)
    thick = max(0.05, min(h, 0.35))
    px, py = cam.project(gx, np.full(n, thick), gz)
    px0, py0 = cam.project(gx, np.zeros(n), gz)
    cv.poly(np.stack([px0, py0], 1), p["c1"] * 0.55, _OOD_MARK)  # the slab's sides
    cv.textured(np.stack([px, py], 1), _OOD_MARK, at.shade)


_OOD_DRAW = {
    "cargo": _draw_cargo,
    "animal": _draw_animal,
    "tyre": _draw_tyre,
    "cone": _draw_cone,
    "barrel": _draw_barrel,
    "bag": _draw_bag,
    "debris": _draw_debris,
}


def _draw_ood(cv: _Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.params
    s = cam.focal / z
    size = p["size"]
    bx, by = cam.project(np.array([o.x]), np.zeros(1), np.array([z]))
    bx, by = float(bx[0]), float(by[0])
    cv.darken_ellipse(bx, by, size * s * 0.6, size * s * 0.12, 0.55)  # contact shadow
    at = _OodPlace(bx, by, s, _ood_shade(cam, p, bx, by, s))
    _OOD_DRAW.get(o.kind, _draw_debris)(cv, o, z, at)


_DRAW = {
    "car": _draw_vehicle,
    "truck": _draw_vehicle,
    "person": _draw_person,
    "lamp": _draw_pole,
    "sign": _draw_pole,
    "light": _draw_pole,
    "pole": _draw_pole,
    "tree": _draw_tree,
    "bin": _draw_bin,
}


def _draw_hood(cv: _Canvas, s: Scene) -> None:
    cam = cv.cam
    frac, curve, colour = s.hood
    xs = np.arange(cam.width, dtype=np.float32) + 0.5
    t = (xs - cam.width / 2) / (cam.width / 2)
    top = cam.height * (1 - frac * (1 - curve * 0.5 * t**2))
    rows = np.arange(cam.height, dtype=np.float32)[:, None] + 0.5
    mask = rows >= top[None, :]
    r_idx, c_idx = np.nonzero(mask)
    if len(r_idx) == 0:
        return
    depth = (r_idx + 0.5 - top[c_idx]) / max(frac * cam.height, 1)
    reflection = s.sky_horizon * 0.35 * np.exp(-depth * 4)[:, None]
    cv.img[r_idx, c_idx] = np.clip(
        colour * (0.7 + 0.3 * depth)[:, None] + reflection, 0, 255
    ).astype(np.uint8)
    cv.lab[r_idx, c_idx] = LABEL_ID_EGO_VEHICLE


def _apply_lighting(
    img: np.ndarray, light: dict[str, Any], rng: np.random.Generator
) -> np.ndarray:
    """Camera response: optional blur, per-channel tone curve (gamma, contrast, gain, colour cast)
    as one lookup table, vignetting, then sensor noise (triangular, std = ``light["noise"]``).
    Integer/OpenCV arithmetic throughout: this runs on every pixel of every frame."""
    if light["blur"]:
        img = cv2.GaussianBlur(img, (3, 3), 0.7)
    v = np.arange(256, dtype=np.float32) / 255.0
    curve = (np.power(v, light["gamma"]) - 0.5) * light["contrast"] + 0.5
    lut = np.clip(curve[:, None] * light["gain"] * light["cast"][None, :] * 255.0, 0, 255)
    x = cv2.LUT(img, np.ascontiguousarray(lut.reshape(256, 1, 3).round().astype(np.uint8)))
    h, w = img.shape[:2]
    if light["vignette"] > 0:
        yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / (h / 2)
        xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / (w / 2)
        gain = np.round((1 - light["vignette"] * 0.5 * (xx**2 + yy**2)) * 255).astype(np.uint8)
        x = cv2.multiply(x, cv2.merge([gain, gain, gain]), scale=1 / 255.0)
    # Sum of two uniform bytes is triangular noise: 10x cheaper than Gaussian draws, same look.
    pair = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    total = pair[0].astype(np.uint16)
    total += pair[1]
    noise_lut = np.round(
        (np.arange(511, dtype=np.float32) - 255) * (light["noise"] / 104.5)
    ).astype(np.int16)
    out = x.astype(np.int16)
    out += noise_lut[total]
    return np.clip(out, 0, 255).astype(np.uint8)


def _draw_objects(cv: _Canvas, far_to_near: list[tuple[float, Obj]]) -> None:
    """Flat void clutter first (whatever stands on the ground hides it), then every object
    far to near."""
    for z, o in far_to_near:
        family = VOID_FAMILIES.get(o.kind)
        if family is not None and family.flat:
            family.draw(cv, o, z)
    for z, o in far_to_near:
        if o.kind in _OOD_KINDS:
            _draw_ood(cv, o, z)
        elif o.kind in VOID_FAMILIES:
            if not VOID_FAMILIES[o.kind].flat:
                VOID_FAMILIES[o.kind].draw(cv, o, z)
        else:
            _DRAW[o.kind](cv, o, z)


@dataclass
class Frame:
    """One rendered frame: RGB image, Cityscapes labelIds and trainIds, OOD mask (0 / 1 / 255)."""

    image: np.ndarray
    label_ids: np.ndarray
    train_ids: np.ndarray
    ood: np.ndarray


def render_frame(
    scene: Scene,
    cam: Camera,
    rng: np.random.Generator,
    cam_z: float = 0.0,
    t: float = 0.0,
    frame: Optional[int] = None,
) -> Frame:
    """Render ``scene`` from camera position ``cam_z`` at time ``t`` (objects move at their speed).

    ``rng`` only drives per-frame sensor noise; everything else is fixed by the scene.
    """
    cv = _Canvas(cam)
    _draw_sky(cv, scene)
    _draw_ground(cv, scene, cam_z)
    _draw_far(cv, scene, cam_z)
    _draw_facades(cv, scene, cam_z)
    for fx, z0, z1, h in scene.fences:
        _draw_fence(cv, fx, z0, z1, h, cam_z)
    placed = []
    for o in scene.objects:
        if o.frames is not None and frame is not None and not (o.frames[0] <= frame < o.frames[1]):
            continue
        z = o.z + o.speed * t - cam_z
        if z < 2.0 or z > 160:
            continue
        placed.append((z, o))
    _draw_objects(cv, sorted(placed, key=lambda item: -item[0]))
    _draw_hood(cv, scene)
    image = _apply_lighting(cv.img, scene.light, rng)
    ood_pixels = cv.lab == _OOD_MARK
    label_ids = cv.lab.copy()
    label_ids[ood_pixels] = LABEL_ID_UNLABELED
    train_ids = label_ids_to_train_ids(label_ids)
    ood = np.where(
        ood_pixels, np.uint8(1), np.where(train_ids == VOID, np.uint8(VOID), np.uint8(0))
    ).astype(np.uint8)
    return Frame(image, label_ids, train_ids, ood)


def render_scene(
    rng: np.random.Generator, height: int, width: int, ood: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random frame: (image uint8 HxWx3 RGB, trainIds uint8 HxW, ood mask uint8 HxW
    0/1/255)."""
    frame = render_scene_full(rng, height, width, ood)
    return frame.image, frame.train_ids, frame.ood


def render_scene_full(
    rng: np.random.Generator, height: int, width: int, ood: bool = False, obstacle: bool = False
) -> Frame:
    """Like ``render_scene`` but also returns the labelIds map (what the disk writer stores).
    ``obstacle``: small objects far ahead, scored on the road only (:func:`road_only`)."""
    if height < 16 or width < 16:
        raise ValueError("synthroad frames must be at least 16 x 16")
    scene, cam = sample_scene(rng, height, width, ood=ood, obstacle=obstacle)
    frame = render_frame(scene, cam, rng)
    return road_only(frame) if obstacle else frame


def road_only(frame: Frame) -> Frame:
    """The frame with its OOD mask restricted to the road, as RoadObstacle21 labels it: 1 on
    the objects, 0 on the road, 255 (void) everywhere else."""
    road = frame.label_ids == ROAD
    ood = np.where(frame.ood == 1, np.uint8(1), np.where(road, np.uint8(0), np.uint8(VOID)))
    return Frame(frame.image, frame.label_ids, frame.train_ids, ood.astype(np.uint8))


def render_sequence(
    seed: int,
    n_frames: int,
    height: int,
    width: int,
    fps: float = 10.0,
    speed: Optional[float] = None,
    ood: bool = True,
    ood_frames: Optional[tuple[int, int]] = None,
) -> Iterator[Frame]:
    """A drive: the camera moves forward at ``speed`` m/s, other cars and pedestrians move too.

    The simple variant (traffic is not made consistent with the moving camera, OOD objects show
    for a window of frames); the demo drive with consistent traffic and OOD objects that appear
    and then approach is ``training.datasets.synthroad_sequence.make_sequence``.

    With ``ood``, the scene's OOD objects (placed ahead on the road) are present only during
    ``ood_frames`` (default: the middle third), e.g. lost cargo that appears and is cleared.
    Deterministic by ``seed``; sensor noise is drawn per frame.
    """
    rng = np.random.default_rng([seed, 7])
    speed = float(rng.uniform(5, 12)) if speed is None else float(speed)
    travel = speed * n_frames / fps
    scene, cam = sample_scene(rng, height, width, ood=ood, travel=travel)
    if ood:
        start, stop = ood_frames if ood_frames is not None else (n_frames // 3, 2 * n_frames // 3)
        for o in scene.objects:
            if o.kind in _OOD_KINDS:
                o.frames = (start, stop)
                # keep the object ahead of the camera while it is visible
                o.z = max(o.z, speed * stop / fps + 8.0)
    for i in range(n_frames):
        t = i / fps
        yield render_frame(
            scene, cam, np.random.default_rng([seed, 8, i]), cam_z=speed * t, t=t, frame=i
        )
