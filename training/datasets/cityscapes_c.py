"""Cityscapes-C: a Cityscapes split corrupted on the fly with the ``imagecorruptions`` package.

The paper's IDM benchmark (Cityscapes val, corruptions of the public imagecorruptions package,
severities 1-4). Nothing is written to disk: every image is corrupted when it is loaded.

Determinism: imagecorruptions draws from numpy's *global* RNG. Each image is corrupted with
that RNG seeded from a hash of (image id, corruption, severity, seed), inside a context that
restores the previous global state afterwards, so the same image always gets identical bytes
(whatever the loading order or worker) and callers' RNG streams are left untouched. The global
RNG is process-wide: do not corrupt images from several *threads* at once (DataLoader workers
are processes and are fine).

Compatibility: imagecorruptions 1.1.2 (the latest release) predates NumPy 2, scikit-image's
removal of ``multichannel=`` and setuptools' removal of ``pkg_resources``.
``load_imagecorruptions`` patches only the package's own module namespace (never numpy or
skimage themselves) so that all 19 corruptions run on the pinned stack, and so that
``impulse_noise`` (scikit-image's ``random_noise``, which no longer reads the global RNG) is
seeded like the others. It must be installed with ``--no-deps`` because it declares
``opencv-python``, which would clash with ``opencv-python-headless``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
import warnings
from typing import Any, Iterator, Optional

import numpy as np

from training.datasets.base import PathLike, Sample, Transform
from training.datasets.cityscapes import CityscapesDataset

#: Every corruption imagecorruptions provides (15 benchmark + 4 validation ones).
# fmt: off
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
# fmt: on
#: The severities the paper evaluates (the package also accepts 5).
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4)

_MODULE: Optional[types.ModuleType] = None


class _NumpyCompat(types.ModuleType):
    """numpy as seen by imagecorruptions: everything forwarded, plus aliases NumPy 2 removed."""

    float_ = np.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


class _Forward(types.ModuleType):
    """A module proxy: attributes set on it win, everything else comes from ``target``."""

    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name)
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _skimage_compat(skimage_module: Any) -> types.ModuleType:
    """skimage as seen by imagecorruptions, with ``util.random_noise`` drawing its seed from
    numpy's global RNG. Since scikit-image 0.19 ``random_noise`` uses a fresh, unseeded
    ``np.random.default_rng()`` when no ``rng`` is given, which made ``impulse_noise`` the one
    corruption that ignored the per-image seed."""
    util = skimage_module.util
    original = util.random_noise

    def random_noise(image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        if kwargs.get("rng") is None and kwargs.get("seed") is None:
            kwargs.pop("seed", None)
            kwargs["rng"] = int(np.random.randint(0, 2**31 - 1))  # the seeded global stream
        return original(image, *args, **kwargs)

    util_proxy = _Forward("skimage.util", util)
    util_proxy.random_noise = random_noise  # type: ignore[attr-defined]
    proxy = _Forward("skimage", skimage_module)
    proxy.util = util_proxy  # type: ignore[attr-defined]
    return proxy


def load_imagecorruptions() -> types.ModuleType:
    """Import imagecorruptions with the compatibility shims described in the module docstring."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    stub = None
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401  (old setuptools still has it)
        except ImportError:
            stub = types.ModuleType("pkg_resources")

            def resource_filename(package: str, resource: str) -> str:
                return os.path.join(os.path.dirname(sys.modules[package].__file__), resource)

            stub.resource_filename = resource_filename  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = stub
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import imagecorruptions
            import imagecorruptions.corruptions as corruptions
    except ImportError as exc:
        raise ImportError(
            "Cityscapes-C needs the imagecorruptions package: "
            "pip install --no-deps imagecorruptions==1.1.2 scikit-image"
        ) from exc
    finally:
        if stub is not None:
            # the name stays bound inside imagecorruptions only
            sys.modules.pop("pkg_resources", None)

    original_gaussian = corruptions.gaussian

    def gaussian(
        image: np.ndarray, *args: Any, multichannel: Optional[bool] = None, **kwargs: Any
    ) -> np.ndarray:
        if multichannel is not None and "channel_axis" not in kwargs:
            kwargs["channel_axis"] = -1 if multichannel else None
        return original_gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian
    corruptions.np = _NumpyCompat("numpy")
    corruptions.sk = _skimage_compat(corruptions.sk)
    _MODULE = imagecorruptions
    return imagecorruptions


def corruption_seed(image_id: str, corruption: str, severity: int, seed: int = 0) -> int:
    """32-bit seed from a stable hash (Python's ``hash`` is salted per process, so not that)."""
    digest = hashlib.sha256(f"{image_id}|{corruption}|{severity}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextlib.contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the duration of the block, then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def corrupt_image(
    image: np.ndarray, corruption: str, severity: int, image_id: str, seed: int = 0
) -> np.ndarray:
    """Deterministically corrupt one uint8 RGB image (at least 32 x 32); returns uint8 RGB."""
    check_corruption(corruption, severity)
    module = load_imagecorruptions()
    with (
        seeded_global_numpy(corruption_seed(image_id, corruption, severity, seed)),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, RuntimeWarning))
        out = module.corrupt(
            np.ascontiguousarray(image), corruption_name=corruption, severity=severity
        )
    return np.ascontiguousarray(out, dtype=np.uint8)


def check_corruption(corruption: str, severity: int) -> None:
    if corruption not in CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}"
        )
    if int(severity) != severity or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer 1-5 (the paper uses 1-4), got {severity}")


class CityscapesCDataset(CityscapesDataset):
    """``CityscapesDataset`` whose images are corrupted on load; labels are unchanged.

    Samples carry ``corruption`` and ``severity`` besides ``image``, ``label`` and ``name``.
    ``seed`` offsets every per-image seed (another draw of the same benchmark). Note that
    ``glass_blur`` is very slow (seconds per small image, minutes per full-size one).
    """

    def __init__(
        self,
        root: PathLike,
        corruption: str,
        severity: int,
        split: str = "val",
        seed: int = 0,
        cities: Optional[list[str]] = None,
        transform: Optional[Transform] = None,
        missing_labels: str = "error",
    ) -> None:
        check_corruption(corruption, severity)
        load_imagecorruptions()  # fail at construction, not in a worker
        super().__init__(
            root, split=split, cities=cities, transform=transform, missing_labels=missing_labels
        )
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = seed

    def load(self, entry: tuple) -> Sample:
        sample = super().load(entry)
        sample["image"] = corrupt_image(
            sample["image"], self.corruption, self.severity, sample["name"], self.seed
        )
        sample["corruption"] = self.corruption
        sample["severity"] = self.severity
        return sample
