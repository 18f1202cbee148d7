"""Short synthroad drives for the rosbag demo: a camera moving forward through one coherent scene.

``make_sequence(n_frames, size, seed, ood_from_frame=...)`` renders ``n_frames`` frames of one
synthroad street (same renderer, palette and label conventions as the dataset, see
``training/datasets/synthroad/``) while the camera drives forward at a constant speed:

- the ground, lane marks, facades and parked cars are anchored in the world, so dashes and
  kerbs stream towards the camera and objects grow as they approach;
- moving traffic drives in its lane: vehicles sharing a lane share a speed (no one drives
  through anyone), traffic in the ego lane drives away from the camera, and nothing static
  stands in the ego lane (the camera never drives through an object);
- from frame ``ood_from_frame`` on, OOD objects (lost cargo, animals, debris, ... -- the kinds
  of the ``ood`` split, never seen in training) lie on the road ahead, first 25-40 m away, then
  closer every frame; the camera's speed is capped so that they are still in front of it, above
  the ego hood, in the last frame. Road users that would drive through them are removed.
  ``ood_kinds`` restricts them to some of the seven kinds (each object's kind redrawn from its
  own stream, ``[seed, 13]``; its place, size and colours kept): drives of one kind, e.g. to
  mine and evaluate a kind the model has never seen (docs/data_engine.md).

Each frame is ``(image uint8 HxWx3 RGB, trainIds uint8 HxW with 255 = void, ood uint8 HxW with
0 in-distribution / 1 OOD / 255 void)``; OOD pixels are void (255) in the trainIds, exactly as in
the ``ood`` split. Everything is a function of ``seed`` (and the arguments): the same call gives
byte-identical frames on every machine.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np

from training.datasets.synthroad.render import Frame, render_frame
from training.datasets.synthroad.scene import _OOD_KINDS, Camera, Obj, Scene, _extent, sample_scene

SequenceFrames = list[tuple[np.ndarray, np.ndarray, np.ndarray]]

#: Distance (m) at which OOD objects appear, at most; and the ego corridor half-width (m).
MAX_APPEAR_DISTANCE = 40.0
EGO_HALF_WIDTH = 1.15
_VEHICLES = ("car", "truck")


def _z_near(scene: Scene, cam: Camera) -> float:
    """Nearest ground distance still visible above the ego hood (same rule as the renderer's)."""
    free_rows = cam.height * (1 - scene.hood[0]) - 4 - cam.horizon
    return max(6.0, cam.focal * cam.cam_h / max(free_rows, 1.0))


def _x_range(o: Obj, margin: float = 0.0) -> tuple[float, float]:
    x0, x1, _, _, _ = _extent(o)
    return x0 - margin, x1 + margin


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _place_ood(
    objs: list[Obj],
    rng: np.random.Generator,
    cam_end: float,
    z_near: float,
    start: int,
    n_frames: int,
) -> None:
    """Put the OOD objects ahead of the camera's final position, visible from ``start`` on."""
    placed: list[tuple[tuple[float, float], float, float]] = []  # (x range, z0, z1)
    for o in objs:
        size = float(o.params["size"])
        z = cam_end + z_near + float(rng.uniform(1.5, 6.0))
        xr = _x_range(o, 0.3)
        for xr_other, z0, z1 in placed:  # keep objects in the same lane apart along the road
            if _overlap(xr, xr_other) and z < z1 + 1.5 and z + size > z0 - 1.5:
                z = z1 + 1.5 + float(rng.uniform(0.0, 3.0))
        o.z = z
        o.frames = (start, n_frames)
        placed.append((xr, z, z + size))


def _tidy_traffic(
    objs: list[Obj], ood: list[Obj], cam_speed: float, rng: np.random.Generator
) -> list[Obj]:
    """Make the traffic consistent with a moving camera and static OOD objects (module
    docstring)."""
    ood_ranges = [_x_range(o, 0.8) for o in ood]
    ego = (-EGO_HALF_WIDTH, EGO_HALF_WIDTH)
    kept: list[Obj] = []
    for o in objs:
        on_road = o.kind in _VEHICLES or (
            o.kind == "person" and o.speed == 0.0
        )  # crosswalk pedestrians
        if on_road and any(_overlap(_x_range(o), r) for r in ood_ranges):
            continue  # would stand in front of / drive through an OOD object
        if on_road and o.speed == 0.0 and _overlap(_x_range(o), ego):
            continue  # the camera would drive through it
        kept.append(o)
    # Lanes: moving vehicles whose x ranges overlap (transitively) share one speed; a lane with a
    # parked car in it keeps only the parked cars.
    vehicles = [o for o in kept if o.kind in _VEHICLES]
    groups: list[list[Obj]] = []
    for o in sorted(vehicles, key=lambda v: v.x):
        if groups and any(_overlap(_x_range(o), _x_range(g)) for g in groups[-1]):
            groups[-1].append(o)
        else:
            groups.append([o])
    drop: set[int] = set()
    for group in groups:
        moving = [o for o in group if o.speed != 0.0]
        if not moving:
            continue
        if len(moving) < len(group):
            drop.update(id(o) for o in moving)
            continue
        speed = min(moving, key=lambda o: o.z).speed  # the leader sets the pace
        if any(_overlap(_x_range(o), ego) for o in group):
            speed = max(speed, cam_speed + float(rng.uniform(1.0, 3.0)))  # ego lane: drive away
        for o in group:
            o.speed = speed
    return [o for o in kept if id(o) not in drop]


def check_ood_kinds(kinds: Sequence[str]) -> list[str]:
    """``kinds`` as a list, refused with the valid names when empty or not OOD kinds."""
    kinds = [str(k) for k in kinds]
    bad = [k for k in kinds if k not in _OOD_KINDS]
    if not kinds or bad:
        raise ValueError(f"OOD kinds must be some of {', '.join(_OOD_KINDS)}; got {kinds}")
    return kinds


def _restrict_kinds(objs: list[Obj], kinds: Sequence[str], rng: np.random.Generator) -> None:
    """Give every OOD object one of ``kinds`` (place, size and look as drawn)."""
    kinds = check_ood_kinds(kinds)
    for o in objs:
        o.kind = str(rng.choice(kinds))


def iter_sequence(
    n_frames: int,
    size: tuple[int, int],
    seed: int,
    ood_from_frame: Optional[int] = None,
    ood: bool = True,
    fps: float = 10.0,
    speed: Optional[float] = None,
    ood_kinds: Optional[Sequence[str]] = None,
) -> Iterator[Frame]:
    """Like ``make_sequence`` but yields ``synthroad.Frame`` objects (with labelIds) one by one;
    ``ood_kinds``: only these OOD kinds (module docstring; None: all seven, draws unchanged)."""
    height, width = (int(v) for v in size)
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    if height < 16 or width < 16:
        raise ValueError("frames must be at least 16 x 16")
    if fps <= 0:
        raise ValueError("fps must be > 0")
    start = n_frames // 3 if ood_from_frame is None else int(ood_from_frame)
    if start < 0:
        raise ValueError("ood_from_frame must be >= 0")
    with_ood = ood and start < n_frames
    rng = np.random.default_rng([seed, 11])
    cam_speed = float(rng.uniform(6.0, 10.0)) if speed is None else float(speed)
    if cam_speed < 0:
        raise ValueError("speed must be >= 0")
    if with_ood and n_frames - 1 > start:
        # The objects appear at most MAX_APPEAR_DISTANCE away and end above the hood (z_near
        # is at most ~10 m for synthroad cameras): cap how far the camera travels meanwhile.
        cam_speed = min(cam_speed, (MAX_APPEAR_DISTANCE - 12.0) * fps / (n_frames - 1 - start))
    travel = cam_speed * n_frames / fps
    scene, cam = sample_scene(rng, height, width, ood=with_ood, travel=travel)
    ood_objs = [o for o in scene.objects if o.kind in _OOD_KINDS]
    if ood_kinds is not None:
        _restrict_kinds(ood_objs, ood_kinds, np.random.default_rng([seed, 13]))
    if with_ood:
        _place_ood(
            ood_objs, rng, cam_speed * (n_frames - 1) / fps, _z_near(scene, cam), start, n_frames
        )
    scene.objects = ood_objs + _tidy_traffic(
        [o for o in scene.objects if o.kind not in _OOD_KINDS], ood_objs, cam_speed, rng
    )
    for i in range(n_frames):
        t = i / fps
        yield render_frame(
            scene, cam, np.random.default_rng([seed, 12, i]), cam_z=cam_speed * t, t=t, frame=i
        )


def make_sequence(
    n_frames: int,
    size: tuple[int, int],
    seed: int,
    ood_from_frame: Optional[int] = None,
    ood: bool = True,
    fps: float = 10.0,
    speed: Optional[float] = None,
) -> SequenceFrames:
    """A drive of ``n_frames`` frames of ``size`` = (height, width), deterministic by ``seed``.

    ``ood_from_frame``: first frame with OOD objects on the road (default ``n_frames // 3``;
    ``>= n_frames`` or ``ood=False``: none at all). ``fps`` sets the time step; ``speed`` the
    camera speed in m/s (default: drawn from 6-10 m/s, capped as the module docstring says).
    Returns ``[(image RGB uint8 HxWx3, trainIds uint8 HxW, ood uint8 HxW 0/1/255), ...]``.
    """
    return [
        (f.image, f.train_ids, f.ood)
        for f in iter_sequence(n_frames, size, seed, ood_from_frame, ood, fps, speed)
    ]
