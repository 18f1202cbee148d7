"""The bags of a fleet run: paths, folders and list files -> one task per bag (per camera of a
rig).

A rosbag2 is a folder with a ``metadata.yaml``, or a bare ``.mcap`` / ``.db3`` file outside such
a folder. An argument can be a bag, a folder (every bag below it, at any depth) or a list file
(one path per line, ``#`` comments; relative paths are relative to the list file). Each bag gets
an id that names its folder under ``OUT/bags/``: its path relative to the folder it was found
in (``/`` -> ``__``), made unique with a short hash of its absolute path when two bags would
share one; the same inputs always give the same ids (that is what resume relies on).

A rig bag (a ``fed_synthroad_bag --cameras N`` bag, or any bag with ``--cameras``) is one task
per camera, id ``<bag id>--<camera>``, with that camera's topics, as ``fed_bag_eval --cameras``
finds them. A bag whose metadata cannot be read is a failed task from the start.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ros2_fed.eval.replay import bag as bagmod
from ros2_fed.eval.replay.errors import UsageError
from ros2_fed.eval.replay.multicamera import find_cameras

STORAGE_SUFFIXES = (".mcap", ".db3")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BagTask:
    """One unit of work: a bag, or one camera of a rig bag (``camera`` set, topics given)."""

    id: str
    bag: str
    camera: str = ""
    topic: Optional[str] = None
    gt_topic: Optional[str] = None
    ood_topic: Optional[str] = None
    error: str = ""  # set when the bag could not even be opened: a failed row, never run


@dataclass(frozen=True)
class FoundBag:
    path: Path
    root: Path  # the folder it was found in (its id is relative to it), or its own parent


def find_bags(arguments: Iterable[str]) -> list[FoundBag]:
    """Every bag the arguments name, in a stable order, each once."""
    found: list[FoundBag] = []
    for text in arguments:
        path = Path(text).expanduser()
        if not path.exists():
            raise UsageError(f"{path}: no such bag, folder or list file")
        if _is_bag(path):
            found.append(FoundBag(path, path.parent))
        elif path.is_dir():
            found += [FoundBag(bag, path) for bag in _bags_below(path)]
        else:
            found += [FoundBag(bag, bag.parent) for bag in _read_list(path)]
    unique: dict[Path, FoundBag] = {}
    for item in found:
        unique.setdefault(item.path.resolve(), item)
    return list(unique.values())


def _is_bag(path: Path) -> bool:
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix in STORAGE_SUFFIXES


def _bags_below(folder: Path) -> list[Path]:
    """Bag folders (not descended into) and bare storage files below ``folder``, sorted."""
    bags: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        if "metadata.yaml" in files:
            bags.append(Path(here))
            dirs.clear()
            continue
        bags += [Path(here) / f for f in sorted(files) if Path(f).suffix in STORAGE_SUFFIXES]
    return bags


def _read_list(path: Path) -> list[Path]:
    """The bags of a list file (a line may also name a folder of bags)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a bag, folder or readable list file ({exc})") from None
    bags: list[Path] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        entry = Path(text).expanduser()
        entry = entry if entry.is_absolute() else path.parent / entry
        if _is_bag(entry):
            bags.append(entry)
        elif entry.is_dir():
            bags += _bags_below(entry)
        else:
            raise UsageError(f"{path}:{number}: {entry} is neither a bag nor a folder")
    return bags


def bag_ids(bags: list[FoundBag]) -> list[str]:
    """A folder-safe id per bag (see the module docstring)."""
    names = []
    for item in bags:
        try:
            rel = item.path.relative_to(item.root)
        except ValueError:
            rel = Path(item.path.name)
        if item.path.is_file():
            rel = rel.with_suffix("")
        names.append(_UNSAFE.sub("_", "__".join(rel.parts) or item.path.name).strip("_") or "bag")
    counts = {name: names.count(name) for name in names}
    return [
        name
        if counts[name] == 1
        else f"{name}-{hashlib.sha1(str(item.path.resolve()).encode()).hexdigest()[:8]}"
        for name, item in zip(names, bags)
    ]


def make_tasks(
    arguments: Iterable[str], cameras: Optional[str] = None, ground_truth: bool = True
) -> list[BagTask]:
    """The tasks for the arguments: a bag each, a camera each for rig bags (``cameras``: the
    ``--cameras NAME,NAME`` of every bag, else what each bag lists)."""
    bags = find_bags(arguments)
    names = [n.strip().strip("/") for n in str(cameras or "").split(",") if n.strip().strip("/")]
    tasks: list[BagTask] = []
    for item, bag_id in zip(bags, bag_ids(bags)):
        tasks += _bag_tasks(item.path, bag_id, names, ground_truth)
    return tasks


def _bag_tasks(path: Path, bag_id: str, names: list[str], ground_truth: bool) -> list[BagTask]:
    try:
        info = bagmod.open_info(path)
        listed = info.synthroad.get("cameras")
        rig = (
            [c for c in listed if isinstance(c, dict) and c.get("name")]
            if isinstance(listed, list)
            else []
        )
        if len(rig) < 2 and not names:
            return [BagTask(bag_id, str(path))]
        cams = find_cameras(info, names, ground_truth)
    except (bagmod.BagError, UsageError) as exc:
        return [BagTask(bag_id, str(path), error=one_line(str(exc)))]
    return [
        BagTask(f"{bag_id}--{cam.name}", str(path), cam.name, cam.image, cam.labels, cam.ood)
        for cam in cams
    ]


def one_line(text: str, limit: int = 400) -> str:
    """A reason as one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
