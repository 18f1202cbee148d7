"""The one Engine interface every runtime implements, the sidecar format, and ``Engine.open``.

Pure python (numpy only): the runtime modules subclass :class:`Engine` and are opened through
:data:`ENGINE_LOADERS` (a view of the runtime records, runtimes.py); this module imports none
of them. :class:`InferenceEngine` is the
interface the node's frame path types its engine with.

An engine file is ``NAME.onnx`` / ``NAME.engine`` (or ``.plan``) plus a JSON sidecar
``NAME.onnx.json`` / ``NAME.engine.json``. The sidecar says what the file is (runtime and its
version, input shape, precision, model hash, class names, score type, ...) and carries the
file's SHA-256, so a truncated, corrupt or swapped engine is refused with an
:class:`EngineError` naming the file and the mismatch *before* a runtime parses it (a
runtime fed garbage may crash the process instead of raising). A torch "engine" is a
fused bundle, our ``NAME.safetensors`` + ``NAME.json`` checkpoint.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, Union

import numpy as np

from ros2_fed.fileio import file_sha256
from ros2_fed.jsonio import write_json

from .runtimes import RECORDS, lazy

PathLike = Union[str, Path]

ENGINE_FORMAT = "ros2_fed/engine"
ENGINE_FORMAT_VERSION = 1
# Views of the runtime records (runtimes.py): one record per runtime, never a second table.
RUNTIMES = tuple(RECORDS)
GPU_RUNTIMES = tuple(r.name for r in RECORDS.values() if r.gpu)  # FP16 default
PRECISIONS = ("fp32", "fp16", "int8")  # int8: Q/DQ graph, calibration images (engine/int8.py)
RUNTIME_BY_SUFFIX = {s: r.name for r in RECORDS.values() for s in r.suffixes}
SUFFIX_BY_RUNTIME = {r.name: r.suffixes[0] for r in RECORDS.values()}
INPUT_NAME = "image"
OUTPUT_NAMES = ("labels", "confidence")


class EngineError(RuntimeError):
    """An engine file is missing, corrupt, or not the engine the caller expects.

    The message always names the file and what does not match.
    """


def sidecar_path(path: PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (``.onnx`` and ``.engine`` can share a folder)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path.with_suffix(".json")
    return path.with_name(path.name + ".json")


def read_sidecar(path: PathLike) -> dict[str, Any]:
    """The sidecar of an engine file, checked for format; :class:`EngineError` otherwise."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise EngineError(f"{path}: engine file not found")
    if not side.is_file():
        raise EngineError(
            f"{path}: metadata sidecar {side.name} not found (export with fed_export, which "
            "writes both)"
        )
    try:
        metadata = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{side}: sidecar is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != ENGINE_FORMAT:
        raise EngineError(
            f"{side}: not a ros2_fed engine sidecar "
            f"(format={metadata.get('format') if isinstance(metadata, dict) else None!r})"
        )
    if int(metadata.get("format_version", 0)) > ENGINE_FORMAT_VERSION:
        raise EngineError(
            f"{side}: format_version {metadata['format_version']} is newer than this ros2_fed"
        )
    for key in (
        "runtime",
        "input_tensor_shape",
        "model_hash",
        "file_sha256",
        "file_size",
        "precision",
    ):
        if key not in metadata:
            raise EngineError(f"{side}: sidecar lacks the {key!r} field")
    return metadata


def write_json_atomic(path: PathLike, data: dict[str, Any]) -> None:
    """Write strict JSON via a temporary file + rename, so a reader never sees half a sidecar."""
    write_json(path, data, sort_keys=True)


def install_engine_file(tmp: PathLike, path: PathLike, metadata: dict[str, Any]) -> dict[str, Any]:
    """Record ``tmp``'s hash and size in ``metadata``, rename it to ``path``, then write the
    sidecar.

    The one way every writer finishes an engine: the file lands whole (rename), and its sidecar
    only after it, so a reader never finds a sidecar describing a missing or half-written file.
    """
    import os

    tmp = Path(tmp)
    metadata["file_sha256"] = file_sha256(tmp)
    metadata["file_size"] = tmp.stat().st_size
    os.replace(tmp, path)
    write_json_atomic(sidecar_path(path), metadata)
    return metadata


def check_file_integrity(path: PathLike, metadata: dict[str, Any]) -> None:
    """Size and SHA-256 of the engine file against its sidecar (catches truncation, swaps)."""
    path = Path(path)
    size = path.stat().st_size
    if size != int(metadata["file_size"]):
        raise EngineError(
            f"{path}: file size {size} bytes does not match its sidecar ({metadata['file_size']} "
            "bytes): "
            "truncated or replaced engine file"
        )
    digest = file_sha256(path)
    if digest != metadata["file_sha256"]:
        raise EngineError(
            f"{path}: SHA-256 {digest[:12]}... does not match its sidecar "
            f"({str(metadata['file_sha256'])[:12]}...): corrupt or replaced engine file"
        )


def check_expected(
    path: PathLike, metadata: dict[str, Any], expect: Optional[dict[str, Any]]
) -> None:
    """Every ``expect`` key must equal the metadata's (e.g. model_hash, input_shape, precision)."""
    for key, wanted in (expect or {}).items():
        have = metadata.get(key)
        if isinstance(have, (list, tuple)) or isinstance(wanted, (list, tuple)):
            same = have is not None and wanted is not None and list(have) == list(wanted)
        else:
            same = have == wanted
        if not same:
            raise EngineError(
                f"{path}: {key} mismatch: the engine has {have!r}, expected {wanted!r}"
            )


class InferenceEngine(Protocol):
    """What the frame path (``ros2_fed.pipeline``) needs of an engine: :class:`Engine` has it,
    and so does a test's stand-in. ``input_shape`` None: the engine takes any size."""

    @property
    def input_shape(self) -> Optional[tuple[int, int]]: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def dynamic_batch(self) -> bool: ...

    @property
    def metadata(self) -> dict[str, Any]: ...

    @property
    def path(self) -> Optional[Path]: ...

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class Engine(abc.ABC):
    """A compiled FusedDetector: ``infer(image HxWx3 uint8 RGB) -> (labels HxW uint8, confidence
    HxW float32)``.

    ``input_shape`` is the (H, W) the engine was built for (engines are per input shape; the
    node knows its camera). ``metadata`` is the sidecar: class names, palette, score type,
    confidence mapping, precision, runtime and version, model hash. Not thread-safe: one
    inference at a time per engine (buffers are reused between frames).
    """

    runtime: str = ""

    def __init__(self, path: Optional[PathLike], metadata: dict[str, Any]) -> None:
        self._path = Path(path) if path is not None else None
        self._metadata = dict(metadata)
        shape = tuple(int(v) for v in metadata["input_tensor_shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise EngineError(
                f"{self._path}: input_tensor_shape {list(shape)} is not (B, H, W, 3)"
            )
        self._tensor_shape = shape
        #: True when ``open_cached`` reused a cached engine, False when it built one, None
        #: otherwise.
        self.cache_hit: Optional[bool] = None

    # -- description ---------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) of the images this engine takes."""
        return self._tensor_shape[1], self._tensor_shape[2]

    @property
    def batch_size(self) -> int:
        """The largest batch the engine runs (exactly this one unless :attr:`dynamic_batch`)."""
        return self._tensor_shape[0]

    @property
    def dynamic_batch(self) -> bool:
        """True when the engine runs any batch from 1 to :attr:`batch_size`."""
        return bool(self._metadata.get("dynamic_batch", False))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    @property
    def path(self) -> Optional[Path]:
        return self._path

    def __repr__(self) -> str:
        precision = self._metadata.get("precision")
        return (
            f"{type(self).__name__}({str(self._path)!r}, input_shape={self.input_shape}, "
            f"precision={precision!r})"
        )

    # -- running -------------------------------------------------------------------

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) uint8 C-contiguous -> (labels (B, H, W) uint8, confidence (B, H, W)
        float32).

        May return the engine's own (reused) buffers.
        """

    def _as_batch(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        if not isinstance(image, np.ndarray):
            raise TypeError(f"infer() takes a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise ValueError(f"infer() takes uint8 RGB images, got {image.dtype}")
        single = image.ndim == 3
        batch = image[None] if single else image
        smaller_ok = (
            self.dynamic_batch and batch.ndim == 4 and 1 <= batch.shape[0] <= self._tensor_shape[0]
        )
        if batch.shape != self._tensor_shape and not (
            smaller_ok and batch.shape[1:] == self._tensor_shape[1:]
        ):
            b, h, w, _ = self._tensor_shape
            batches = f"1..{b}" if self.dynamic_batch else f"{b}"
            want = f"{h}x{w}x3" if b == 1 else f"{batches}x{h}x{w}x3 (or {h}x{w}x3 with batch 1)"
            raise ValueError(
                f"{self._path}: engine built for {want} images, got "
                f"{'x'.join(map(str, image.shape))}; "
                "export an engine for this resolution (engines are per input shape)"
            )
        return np.ascontiguousarray(batch), single

    def infer(self, image: np.ndarray, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Labels (uint8) and confidence (float32, 1 = certain) at the input resolution.

        ``image``: (H, W, 3) -> (H, W) outputs, or (B, H, W, 3) -> (B, H, W). ``copy=False``
        returns views of the engine's reused output buffers (no per-frame allocation), valid
        until the next call.
        """
        batch, single = self._as_batch(image)
        labels, confidence = self._run(batch)
        if single:
            labels, confidence = labels[0], confidence[0]
        if copy:
            return labels.copy(), confidence.copy()
        return labels, confidence

    def warmup(self, runs: int = 3) -> None:
        """Run ``runs`` dummy frames: lazy initialisation, allocator and autotuning happen here."""
        dummy = np.full(self._tensor_shape, 127, dtype=np.uint8)
        for _ in range(max(0, int(runs))):
            self._run(dummy)

    def close(self) -> None:
        """Release runtime resources (sessions, CUDA buffers)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- opening -------------------------------------------------------------------

    @staticmethod
    def open(
        path: PathLike,
        *,
        runtime: Optional[str] = None,
        warmup: int = 3,
        expect: Optional[dict[str, Any]] = None,
        **options: Any,
    ) -> "Engine":
        """Open an engine file with the runtime its extension and sidecar name.

        ``.onnx`` -> onnxruntime, ``.engine``/``.plan`` -> TensorRT, ``.safetensors`` (a fused
        bundle) -> torch eager: the loader registered for the suffix (:data:`ENGINE_LOADERS`)
        imports only its own runtime, so an ONNX or TensorRT engine opens without torch.
        ``expect``: fields that must match the sidecar (e.g. ``{"model_hash": ...,
        "input_shape": [H, W], "precision": "fp16"}``). ``options`` go to the runtime
        (``providers``, ``intra_op_threads``, ``device``, ...). Runs ``warmup`` dummy frames
        before returning.
        """
        path = Path(path)
        suffix_runtime = RUNTIME_BY_SUFFIX.get(path.suffix)
        loader = ENGINE_LOADERS.get(path.suffix)
        if suffix_runtime is None or loader is None:
            raise EngineError(
                f"{path}: unknown engine file type {path.suffix!r} (expected one of "
                f"{sorted(RUNTIME_BY_SUFFIX)})"
            )
        runtime = runtime or suffix_runtime
        if runtime != suffix_runtime:
            raise EngineError(
                f"{path}: a {path.suffix} file is a {suffix_runtime} engine, not {runtime}"
            )
        engine = loader(path, expect, options)
        engine.warmup(warmup)
        return engine


#: How to open an engine file, by suffix: ``loader(path, expect, options) -> Engine``, each
#: record's ``open`` (runtimes.py), imported when a file of its suffix is opened, never before.
EngineLoader = Callable[[Path, Optional[dict[str, Any]], dict[str, Any]], Engine]
ENGINE_LOADERS: dict[str, EngineLoader] = {
    s: lazy(r.open) for r in RECORDS.values() for s in r.suffixes
}


def checked_sidecar(path: Path, runtime: str, expect: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The sidecar of a runtime's engine file, checked for that runtime and ``expect``."""
    metadata = read_sidecar(path)
    if metadata["runtime"] != runtime:
        raise EngineError(
            f"{path}: sidecar says runtime {metadata['runtime']!r}, the file type says {runtime!r}"
        )
    check_expected(path, metadata, expect)
    return metadata


def tensor_shape(height: int, width: int, batch: int = 1) -> list[int]:
    """The engine input tensor shape for an image size: (B, H, W, 3)."""
    return [int(batch), int(height), int(width), 3]


def as_hw(shape: Sequence[int]) -> tuple[int, int]:
    """(H, W) from an (H, W) pair or a (B, H, W, 3) tensor shape."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        return shape[1], shape[2]
    raise ValueError(f"expected (H, W) or (B, H, W, 3), got {shape}")
