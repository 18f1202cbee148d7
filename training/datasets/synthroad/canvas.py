"""synthroad drawing primitives: the canvas (image + labelIds painted together) and the
geometry helpers every object drawer shares (in-distribution objects, OOD objects, void clutter).
"""

from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from .scene import ROAD, SIDEWALK, TERRAIN, Camera


class _Canvas:
    """uint8 RGB image + labelIds, painted far-to-near."""

    def __init__(self, cam: Camera) -> None:
        self.cam = cam
        self.img = np.zeros((cam.height, cam.width, 3), np.uint8)
        self.lab = np.zeros((cam.height, cam.width), np.uint8)

    def poly(self, pts: np.ndarray, colour: np.ndarray, label: int) -> None:
        p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.img, [p], tuple(float(c) for c in colour), cv2.LINE_AA, 4)
        cv2.fillPoly(self.lab, [p], int(label), cv2.LINE_8, 4)

    def ellipse(
        self,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        colour: np.ndarray,
        label: int,
        angle: float = 0.0,
    ) -> None:
        if ax < 0.3 and ay < 0.3:
            return
        c = (int(round(cx * 16)), int(round(cy * 16)))
        axes = (max(1, int(round(ax * 16))), max(1, int(round(ay * 16))))
        cv2.ellipse(
            self.img, c, axes, angle, 0, 360, tuple(float(v) for v in colour), -1, cv2.LINE_AA, 4
        )
        cv2.ellipse(self.lab, c, axes, angle, 0, 360, int(label), -1, cv2.LINE_8, 4)

    def _bbox_mask(self, pts: Any) -> Optional[tuple[int, int, np.ndarray]]:
        polys = [
            np.asarray(p, np.float64).reshape(-1, 2)
            for p in (pts if isinstance(pts, list) else [pts])
        ]
        every = np.concatenate(polys)
        x0, y0 = np.floor(every.min(0)).astype(int)
        x1, y1 = np.ceil(every.max(0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.cam.width), min(y1, self.cam.height)
        if x1 <= x0 or y1 <= y0:
            return None
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for p in polys:  # one call per polygon: a single call would XOR the overlaps
            cv2.fillPoly(
                mask,
                [np.round((p - (x0, y0)) * 16).astype(np.int32).reshape(-1, 1, 2)],
                1,
                cv2.LINE_8,
                4,
            )
        return x0, y0, mask

    def darken(
        self,
        pts: np.ndarray,
        factor: float,
        on_labels: tuple[int, ...] = (ROAD, SIDEWALK, TERRAIN),
    ) -> None:
        """Cast a shadow: scale image pixels inside ``pts`` whose label is one of ``on_labels``."""
        found = self._bbox_mask(pts)
        if found is None:
            return
        x0, y0, mask = found
        h, w = mask.shape
        region = self.img[y0 : y0 + h, x0 : x0 + w]
        sel = (mask > 0) & np.isin(self.lab[y0 : y0 + h, x0 : x0 + w], on_labels)
        region[sel] = (region[sel] * factor).astype(np.uint8)

    def darken_ellipse(self, cx: float, cy: float, ax: float, ay: float, factor: float) -> None:
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        self.darken(np.stack([cx + np.cos(t) * ax, cy + np.sin(t) * ay], 1), factor)

    def textured(self, pts: Any, label: int, shade: Any) -> None:
        """Fill a polygon (or a list of polygons, as one union) with per-pixel colours:
        ``shade(xs, ys) -> (N, 3)`` in pixel coordinates."""
        found = self._bbox_mask(pts)
        if found is None:
            return
        x0, y0, mask = found
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return
        colours = np.clip(shade(xs + x0 + 0.5, ys + y0 + 0.5), 0, 255).astype(np.uint8)
        self.img[ys + y0, xs + x0] = colours
        self.lab[ys + y0, xs + x0] = label


def _sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest lookup in a wrap-around power-of-two tile (bit mask = modulo, also for
    negatives)."""
    m = tile.shape[0] - 1
    return tile[v.astype(np.int32) & m, u.astype(np.int32) & m]


def _box_faces(
    cam: Camera, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float
) -> list[tuple[str, np.ndarray]]:
    """Visible faces of an axis-aligned box, far faces first (side/top), then the near face."""
    faces = []
    if x0 > 0:  # camera sees the left side face
        faces.append(("side", np.array([[x0, y0, z0], [x0, y0, z1], [x0, y1, z1], [x0, y1, z0]])))
    elif x1 < 0:
        faces.append(("side", np.array([[x1, y0, z0], [x1, y0, z1], [x1, y1, z1], [x1, y1, z0]])))
    if y1 < cam.cam_h:
        faces.append(("top", np.array([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]])))
    faces.append(("front", np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0]])))
    out = []
    for name, f in faces:
        px, py = cam.project(f[:, 0], f[:, 1], f[:, 2])
        out.append((name, np.stack([px, py], 1)))
    return out


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners of an axis-aligned image rectangle, clockwise from the top left."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
