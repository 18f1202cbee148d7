"""Pieces every dataset loader shares: the sample type, image/label I/O and a list-backed Dataset.

One convention everywhere, so trainers, statistics and evaluation never special-case a format:
``image`` is uint8 H x W x 3 **RGB**, ``label`` is uint8 H x W (Cityscapes trainIds with
255 = void, or 0 / 1 / 255 = in-distribution / OOD / void for the anomaly sets), ``name`` is
a stable image id (used for seeding, file names and reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import cv2
import numpy as np
from torch.utils.data import Dataset

VOID = 255  #: ignore / void label value in every label map we produce
PathLike = Union[str, Path]


class Sample(dict):
    """A dict (so torch's default collate and ``training.data.sample_arrays`` accept it) whose
    keys can also be read as attributes: ``s.image``, ``s.label``, ``s.name`` and, where a
    loader provides it, ``s.ood`` (0 / 1 / 255)."""

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def read_rgb(path: PathLike) -> np.ndarray:
    """uint8 H x W x 3 RGB (OpenCV reads BGR; 16-bit or grey inputs are converted)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(image[:, :, ::-1])


def read_label(path: PathLike) -> np.ndarray:
    """uint8 H x W label map, read without any colour conversion.

    Label PNGs are 8-bit grey in every published layout we read. OpenCV expands palette PNGs
    to colour, so a 3-channel result with identical channels is collapsed, and a true palette
    PNG falls back to Pillow (when installed) to recover the indices.
    """
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(f"cannot read label map {path}")
    if label.ndim == 3:
        if np.array_equal(label[:, :, 0], label[:, :, 1]) and np.array_equal(
            label[:, :, 0], label[:, :, 2]
        ):
            label = label[:, :, 0]
        else:
            label = _read_palette_indices(path)
    if label.dtype != np.uint8:
        if label.max(initial=0) > 255:
            raise ValueError(f"label map {path} has values above 255 ({label.dtype})")
        label = label.astype(np.uint8)
    return np.ascontiguousarray(label)


def _read_palette_indices(path: PathLike) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with scikit-image
        raise ValueError(
            f"label map {path} is a colour image; install Pillow to read palette PNGs"
        ) from exc
    with Image.open(str(path)) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(
                f"label map {path} is a colour image (mode {img.mode}), not class indices"
            )
        return np.asarray(img, dtype=np.uint8)


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Write uint8 grey (H x W) or RGB (H x W x 3) as PNG, creating parent folders; through a
    temporary name renamed into place (an interrupted run leaves no half-written image)."""
    from ros2_fed.fileio import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = array[:, :, ::-1] if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(data))
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic_write_bytes(path, encoded.tobytes())


def remap(label: np.ndarray, table: Sequence[int] | np.ndarray) -> np.ndarray:
    """Apply a 256-entry lookup table to a uint8 label map (vectorised, one pass)."""
    lut = np.asarray(table, dtype=np.uint8)
    if lut.shape != (256,):
        raise ValueError("lookup table must have 256 entries")
    return lut[label]


def lookup_table(mapping: dict[int, int], default: int = VOID) -> np.ndarray:
    """256-entry uint8 table: ``mapping`` where given, ``default`` elsewhere."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in mapping.items():
        if 0 <= src < 256:
            lut[src] = dst
    return lut


Transform = Callable[[Sample], Sample]


class FileListDataset(Dataset):
    """A ``torch.utils.data.Dataset`` over a fixed, sorted list of entries.

    Subclasses fill ``self.entries`` (anything picklable) and implement ``load(entry) -> Sample``;
    the list is built once at construction so ``len`` is cheap and DataLoader workers (separate
    processes) only ever read files.
    """

    def __init__(self, transform: Optional[Transform] = None) -> None:
        self.entries: list[Any] = []
        self.transform = transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self.entries)
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} samples")
        sample = self.load(self.entries[index])
        return self.transform(sample) if self.transform is not None else sample

    def load(self, entry: Any) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        """Image ids in dataset order (without loading any file)."""
        return [self.entry_name(e) for e in self.entries]

    def entry_name(self, entry: Any) -> str:  # pragma: no cover - overridden
        return str(entry)


def require_dir(path: PathLike, what: str) -> Path:
    """Fail early with a message naming the dataset, instead of silently yielding nothing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: directory {path} does not exist")
    return path
