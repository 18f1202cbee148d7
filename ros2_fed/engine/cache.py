"""Engine cache: export/build once per (model, input shape, precision, runtime version, GPU).

The key of a GPU engine (TensorRT, torch-tensorrt) is the runtime version + GPU name +
compute capability + precision + input size (+ model hash and graph version): a TensorRT
engine is only valid for the TensorRT release and the GPU model it was built with.

Building a TensorRT engine takes minutes and an ONNX export seconds; a node restart must not
pay that again. :func:`open_cached` hashes the checkpoints (file contents, not names) with the
detector configuration into a model hash, derives the cache key from it and the rest, and
reuses ``<cache>/<runtime>/<key>/`` (``ros2_fed.paths.engine_cache_dir``: ``$ROS2_FED_CACHE``,
else ``$XDG_CACHE_HOME/ros2_fed``, else ``~/.cache/ros2_fed``) when it holds a
valid engine for that key. A cached engine that fails validation (corrupt, truncated,
different TensorRT) is rebuilt with a message, never used.

Every build is verified against the float32 eager detector (``verify.verify_outputs``); a
refusal names the override: ``ROS2_FED_VERIFY=0`` in the environment (fed_node), or the
caller's flag. An entry built without the check is rebuilt (with it) when the check is on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ros2_fed.paths import engine_cache_dir

from .base import SUFFIX_BY_RUNTIME, Engine, EngineError, PathLike
from .int8 import CalibrationSet, calibration_for
from .metadata import check_precision

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ros2_fed.detector import FusedDetector


def cache_dir() -> Path:
    """``$ROS2_FED_CACHE``, else ``$XDG_CACHE_HOME/ros2_fed``, else ``~/.cache/ros2_fed``."""
    return engine_cache_dir()


def path_hash(path: PathLike) -> str:
    """SHA-256 of a checkpoint's contents: our NAME.safetensors + NAME.json, a .pth, or a
    folder."""
    from ros2_fed.checkpoint import checkpoint_paths
    from ros2_fed.fileio import file_sha256

    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file() and path.suffix not in (".safetensors", ".json"):
        files = [path]
    else:
        files = [p for p in checkpoint_paths(path) if p.is_file()]
    if not files:
        raise FileNotFoundError(f"{path}: checkpoint not found")
    for file in files:
        digest.update(file.name.encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def source_model_hash(
    backbone: PathLike, fed: Optional[PathLike], detector_options: dict[str, Any]
) -> str:
    """Identity of "these checkpoints in this graph configuration" without loading them."""
    from ros2_fed import GRAPH_VERSION, __version__

    payload = {
        "backbone": path_hash(backbone),
        "fed": path_hash(fed) if fed is not None else None,
        "options": detector_options,
        "graph_version": GRAPH_VERSION,
        "ros2_fed": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


from .base import GPU_RUNTIMES  # noqa: E402  (engines compiled for one GPU model)


def cache_key(
    model_hash: str,
    height: int,
    width: int,
    batch: int,
    precision: str,
    runtime: str,
    runtime_version: str,
    gpu: str,
    opset: int,
    compute_capability: Optional[str] = None,
    calibration: Optional[str] = None,
) -> str:
    """Hex digest of everything that makes a built engine reusable (see the module docstring).

    ``calibration``: the fingerprint of an int8 engine's calibration images (other precisions
    have none, and their keys do not name it)."""
    from .metadata import EXPORT_GRAPH_VERSION

    fields = {
        "model_hash": model_hash,
        "input": [batch, height, width, 3],
        "precision": precision,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "gpu": gpu,
        "compute_capability": compute_capability,
        "opset": opset,
        "export_graph_version": EXPORT_GRAPH_VERSION,
    }
    if calibration is not None:
        fields["calibration"] = calibration
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def engine_cache_key(
    model_hash: str,
    height: int,
    width: int,
    batch: int,
    precision: str,
    runtime: str,
    opset: int,
    device: int = 0,
    calibration: Optional[str] = None,
) -> str:
    """The cache key for this machine: the installed runtime's version and, for GPU runtimes, the
    GPU (``calibration``: an int8 engine's calibration fingerprint)."""
    from .metadata import runtime_version

    gpu = _gpu_here(runtime, device)
    return cache_key(
        model_hash,
        height,
        width,
        batch,
        precision,
        runtime,
        runtime_version(runtime),
        str(gpu["name"]),
        opset,
        gpu["compute_capability"],
        calibration,
    )


def _gpu_here(runtime: str, device: int) -> dict[str, Any]:
    """Name and compute capability of the GPU a GPU runtime's engine would be built for here.

    TensorRT asks CUDA through :mod:`.cuda_memory` (cuda-python when installed), so a cache hit
    loads no torch; torch-tensorrt is torch anyway. Without a usable GPU: "cpu" (the build
    then fails with its own clear error).
    """
    if runtime not in GPU_RUNTIMES:
        return {"name": "any", "compute_capability": None}
    if runtime == "tensorrt":
        from .cuda_memory import cuda_backend

        try:
            return cuda_backend().select_device(device)
        except EngineError:
            return {"name": "cpu", "compute_capability": None}
    from .metadata import gpu_identity

    return gpu_identity(device)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    torch = sys.modules.get(
        "torch"
    )  # a torch value means torch is loaded: never load it for a cache hit
    out: dict[str, Any] = {}
    for key, value in sorted(options.items()):
        if torch is not None and isinstance(value, torch.dtype):
            value = str(value)
        elif torch is not None and isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def open_cached(
    backbone: PathLike,
    fed: Optional[PathLike] = None,
    *,
    height: int,
    width: int,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    batch: int = 1,
    score: str = "fed",
    postprocess: Optional[str] = None,
    detector_options: Optional[dict[str, Any]] = None,
    cache: Optional[PathLike] = None,
    rebuild: bool = False,
    opset: int = 18,
    backbone_loader: Optional[Callable[[PathLike], torch.nn.Module]] = None,
    warmup: int = 3,
    progress: Optional[Callable[[str], None]] = print,
    verify: Optional[bool] = None,
    override: Optional[str] = None,
    calibration: Optional[Union[PathLike, CalibrationSet]] = None,
    **engine_options: Any,
) -> Engine:
    """The engine for these checkpoints at (height, width): from the cache, or built and cached.

    ``detector_options`` go to :class:`~ros2_fed.detector.FusedDetector` (input_size,
    fed_rate, label_mode, confidence_dtype, ...). The returned engine's ``cache_hit`` says
    whether it was reused (True) or built now (False). ``runtime="torch"`` builds the eager
    detector directly (nothing to cache). ``engine_options`` go to the runtime.

    ``verify``: check a build against the eager detector (None: on unless ``ROS2_FED_VERIFY=0``);
    ``override``: how the refusal tells the user to skip the check (default: the environment
    variable and the CLIs' flag). ``calibration``: an int8 engine's images (folder or set).
    """
    check_precision(precision)
    calibration = calibration_for(precision, calibration)
    verify = verify_enabled() if verify is None else bool(verify)
    options = dict(detector_options or {})
    options.update(score=score, postprocess=postprocess)
    build_detector = _detector_builder(backbone, fed, backbone_loader, options)
    if runtime == "torch":
        return _open_torch(
            build_detector(), height, width, batch, precision, warmup, engine_options
        )
    model_hash = source_model_hash(backbone, fed, _jsonable(options))
    shape = (height, width, batch)
    where = _cache_entry(
        model_hash, cache, runtime, shape, precision, opset, engine_options, calibration
    )
    if where.path.is_file() and not rebuild:
        engine = _open_cached_entry(where, verify, warmup, progress, engine_options)
        if engine is not None:
            return engine
    export = {"runtime": runtime, "precision": precision, "batch": batch, "opset": opset}
    export.update(model_hash=where.model_hash, device=where.device, verify=verify)
    export.update(override=override, calibration=calibration)
    sources = {"backbone": str(backbone), "fed": str(fed) if fed else None}
    return _build_into_cache(
        build_detector, where, height, width, export, sources, warmup, progress, engine_options
    )


@dataclass(frozen=True)
class _CacheEntry:
    """One engine's place in the cache, and what its sidecar must say for it to be reused."""

    model_hash: str
    device: int
    key: str
    path: Path
    expect: dict[str, Any]


def _cache_entry(
    model_hash: str,
    cache: Optional[PathLike],
    runtime: str,
    size: tuple[int, int, int],
    precision: str,
    opset: int,
    engine_options: dict[str, Any],
    calibration: Optional[CalibrationSet] = None,
) -> _CacheEntry:
    """The entry keyed by the sources and detector options (``model_hash``), the input ``size``
    (height, width, batch), precision (int8: and the calibration images), runtime, opset and
    GPU (the ``device`` engine option)."""
    height, width, batch = size
    device = _device_index(engine_options.get("device"))
    images = calibration.fingerprint if calibration is not None else None
    key = engine_cache_key(
        model_hash, height, width, batch, precision, runtime, opset, device, images
    )
    folder = Path(cache) if cache is not None else cache_dir()
    entry = folder / runtime / f"{height}x{width}-b{batch}-{precision}-{key}"
    expect = {
        "model_hash": model_hash,
        "input_tensor_shape": [batch, height, width, 3],
        "precision": precision,
    }
    if images is not None:
        expect["calibration_fingerprint"] = images
    return _CacheEntry(
        model_hash, device, key, entry / f"model{SUFFIX_BY_RUNTIME[runtime]}", expect
    )


def _detector_builder(
    backbone: PathLike,
    fed: Optional[PathLike],
    backbone_loader: Optional[Callable[[PathLike], torch.nn.Module]],
    options: dict[str, Any],
) -> Callable[[], FusedDetector]:
    """The eager detector, built only when nothing cached can be used (or for torch)."""

    def build_detector() -> FusedDetector:
        from ros2_fed.detector import FusedDetector

        return FusedDetector.from_checkpoints(
            backbone, fed, backbone_loader=backbone_loader, **options
        )

    return build_detector


def _open_torch(
    detector: FusedDetector,
    height: int,
    width: int,
    batch: int,
    precision: str,
    warmup: int,
    engine_options: dict[str, Any],
) -> Engine:
    """runtime="torch": the eager detector itself, nothing to cache."""
    from .torch_engine import TorchEngine

    engine = TorchEngine(
        detector,
        input_shape=(height, width),
        batch=batch,
        precision=precision,
        **engine_options,
    )
    engine.warmup(warmup)
    return engine


def _open_cached_entry(
    where: _CacheEntry,
    verify: bool,
    warmup: int,
    progress: Optional[Callable[[str], None]],
    engine_options: dict[str, Any],
) -> Optional[Engine]:
    """The cached engine, or None when it must be rebuilt (unusable, or unchecked while
    ``verify`` asks for the export check)."""
    path = where.path
    try:
        engine = Engine.open(path, warmup=warmup, expect=where.expect, **engine_options)
    except EngineError as exc:
        if progress:
            progress(f"cached engine unusable, rebuilding: {exc}")
        return None
    if not verify or engine.metadata.get("verified") is True:
        engine.cache_hit = True
        return engine
    engine.close()
    if progress:
        progress(f"cached engine {path} was built without the export check: rebuilding")
    return None


def _build_into_cache(
    build_detector: Callable[[], FusedDetector],
    where: _CacheEntry,
    height: int,
    width: int,
    build: dict[str, Any],
    sources: dict[str, Optional[str]],
    warmup: int,
    progress: Optional[Callable[[str], None]],
    engine_options: dict[str, Any],
) -> Engine:
    """A cache miss: export the engine into its cache entry and open it.

    ``build``: runtime, precision, batch, opset, model_hash, device, verify and override.
    """
    from .export import export_engine
    from .verify import CACHE_OVERRIDE, parity_text

    path = where.path
    if progress:
        what = (
            "building a GPU engine, this takes minutes"
            if build["runtime"] in GPU_RUNTIMES
            else "exporting ONNX"
        )
        progress(f"engine cache miss ({path}): {what}")
    path.parent.mkdir(parents=True, exist_ok=True)
    detector = build_detector()
    export_engine(
        detector,
        path,
        height,
        width,
        progress=progress,
        extra_metadata={"cache_key": where.key, "sources": sources},
        **{**build, "override": build["override"] or CACHE_OVERRIDE},
    )
    engine = Engine.open(path, warmup=warmup, expect=where.expect, **engine_options)
    engine.cache_hit = False
    figures = engine.metadata.get("verification")
    if progress and figures:
        progress(f"verified against the float32 eager detector: {parity_text(figures)}")
    return engine


def verify_enabled() -> bool:
    """The export check of cache builds: on unless ``$ROS2_FED_VERIFY`` is 0/false/no/off."""
    from .verify import VERIFY_ENV

    return os.environ.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _device_index(device: Any) -> int:
    """CUDA device index from an engine option (``1``, ``"cuda:1"``, None -> 0)."""
    if device is None or device == "":
        return 0
    if isinstance(device, int):
        return device
    text = str(device)
    return int(text.split(":", 1)[1]) if ":" in text else 0
