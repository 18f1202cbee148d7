"""ONNX Runtime engine: CPU execution provider here; CUDA / TensorRT providers when present.

Providers: onnxruntime-gpu lists the TensorRT and CUDA providers even when their libraries
are missing, and then runs on CPU without a word. So the providers a session really got
(``session.get_providers()``) are compared with those asked for: an explicitly requested
accelerated provider that did not load is an :class:`EngineError`; with the automatic choice
(``providers=None``) the fallback is a warning and ``engine.providers`` says what runs.

Opening validates before ONNX Runtime ever parses the file: sidecar present and consistent,
file size + SHA-256, ``onnx.checker``, embedded model hash and input/output signature. The hot
path uses IOBinding with buffers bound once: each frame is one ``memcpy`` into the bound
input and ``run_with_iobinding`` writing into the bound outputs (no per-frame allocation).

Batches on a CPU run frame-parallel: one single-threaded run per frame, as many at once as
there are threads (a surround-camera node's batch). Measured at 256x512 on 2 busy cores: 37 ms
a frame this way against 61 ms for the batch of 4 run with 2 intra-op threads and 54 ms for
frame after frame with 2 threads (38 / 49 ms on quiet cores): a small network leaves the second
intra-op thread idle much of the time, two frames side by side do not. GPU providers run the
batch as one.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .base import (
    INPUT_NAME,
    OUTPUT_NAMES,
    Engine,
    EngineError,
    PathLike,
    check_file_integrity,
    read_sidecar,
)
from .metadata import ONNX_META_PREFIX

PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
CPU_PROVIDER = "CPUExecutionProvider"
_NP_DTYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def default_providers(precision: str = "fp32", cache_dir: Optional[PathLike] = None) -> list[Any]:
    """The accelerated providers this onnxruntime build has, best first, CPU last.

    TensorRT EP gets an engine cache (its builds take minutes). Its global FP16 switch stays
    off whatever ``precision`` says: an fp16 export already holds float16 where it belongs
    (the backbone), and the switch would put FED in float16 too.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    providers: list[Any] = []
    for name in PROVIDER_PREFERENCE:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            from .cache import cache_dir as default_cache_dir

            folder = (
                Path(cache_dir) if cache_dir is not None else default_cache_dir() / "ort-tensorrt"
            )
            folder.mkdir(parents=True, exist_ok=True)
            providers.append(
                (
                    name,
                    {
                        "trt_fp16_enable": False,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(folder),
                    },
                )
            )
        else:
            providers.append(name)
    return providers


class OnnxEngine(Engine):
    """A fused detector ``.onnx`` in an ONNX Runtime session with pre-bound buffers."""

    runtime = "onnxruntime"

    def __init__(
        self,
        path: PathLike,
        metadata: Optional[dict[str, Any]] = None,
        *,
        providers: Optional[Sequence[Any]] = None,
        intra_op_threads: Optional[int] = None,
        inter_op_threads: Optional[int] = None,
        allow_spinning: Optional[bool] = None,
        optimization: str = "all",
        device: Optional[str] = None,
        frame_parallel: Optional[bool] = None,
    ) -> None:
        """``frame_parallel``: run a batch's frames side by side, one thread each (None = for a
        dynamic batch > 1 on the CPU provider alone); ``intra_op_threads`` is then how many run
        at once (default: the CPU count). A batch of one frame then runs on one thread."""
        path = Path(path)
        metadata = metadata if metadata is not None else read_sidecar(path)
        super().__init__(path, metadata)
        check_file_integrity(path, metadata)
        proto = self._load_checked(path, metadata)

        threads = (
            intra_op_threads if intra_op_threads is not None else _env_int("ROS2_FED_THREADS")
        )
        requested = providers is not None
        if providers is None:
            providers = default_providers(str(metadata.get("precision", "fp32")))
        if frame_parallel is None:
            frame_parallel = provider_names(providers) == [CPU_PROVIDER] and self.batch_size > 1
        frame_parallel = (
            frame_parallel and self.dynamic_batch
        )  # a fixed batch is one run of B frames
        #: frames of one batch run at once (1 = the batch is one run)
        self.parallel_frames = (
            min(self.batch_size, int(threads or os.cpu_count() or 1)) if frame_parallel else 1
        )
        options = session_options(
            optimization,
            1 if self.parallel_frames > 1 else threads,
            inter_op_threads,
            allow_spinning,
        )
        try:
            import onnxruntime as ort

            self._session = ort.InferenceSession(
                proto.SerializeToString(), options, providers=list(providers)
            )
        except Exception as exc:
            raise EngineError(f"{path}: ONNX Runtime cannot create a session ({exc})") from exc
        del proto
        self.providers = self._session.get_providers()
        check_providers(path, providers, self.providers, strict=requested)
        self._allocate_buffers(metadata)
        self._pool = (
            ThreadPoolExecutor(self.parallel_frames, "onnx_frames")
            if self.parallel_frames > 1
            else None
        )

    def _load_checked(self, path: Path, metadata: dict[str, Any]) -> Any:
        """The ModelProto, after onnx.checker and the signature check against the sidecar."""
        import onnx

        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # DecodeError, OSError, ...: protobuf raises several types
            raise EngineError(
                f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from exc
        try:
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise EngineError(f"{path}: fails onnx.checker ({exc})") from exc
        self._check_signature(path, proto, metadata)
        return proto

    def _allocate_buffers(self, metadata: dict[str, Any]) -> None:
        """Pre-bound buffers: ONNX Runtime reads/writes these numpy arrays in place on CPU; with
        CUDA/TensorRT providers it copies to/from the device itself."""
        b, h, w, _ = self._tensor_shape
        half = metadata.get("outputs", {}).get("confidence", {}).get("dtype") == "float16"
        conf_dtype = np.float16 if half else np.float32
        self._input = np.zeros((b, h, w, 3), dtype=np.uint8)
        self._labels = np.zeros((b, h, w), dtype=np.uint8)
        self._confidence_raw = np.zeros((b, h, w), dtype=conf_dtype)
        self._confidence = (
            self._confidence_raw if not half else np.zeros((b, h, w), dtype=np.float32)
        )
        # (start, stop) -> (binding, the OrtValues it holds): rows start:stop of the buffers
        self._bindings: dict[tuple[int, int], tuple[Any, list[Any]]] = {}
        self._binding = self._bound(0, b)

    def _bound(self, start: int, stop: int) -> Any:
        """An IO binding on rows ``start:stop`` of the buffers (made once per row range)."""
        if (start, stop) not in self._bindings:
            import onnxruntime as ort

            arrays = (
                self._input[start:stop],
                self._labels[start:stop],
                self._confidence_raw[start:stop],
            )
            values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, values[0])
            binding.bind_ortvalue_output(OUTPUT_NAMES[0], values[1])
            binding.bind_ortvalue_output(OUTPUT_NAMES[1], values[2])
            self._bindings[(start, stop)] = (binding, values)
        return self._bindings[(start, stop)][0]

    @staticmethod
    def _check_signature(path: Path, proto: Any, metadata: dict[str, Any]) -> None:
        """Embedded hash, input and output names/shapes must agree with the sidecar."""
        embedded = {p.key: p.value for p in proto.metadata_props}
        stored = embedded.get(ONNX_META_PREFIX + "model_hash")
        if stored is not None and stored != metadata["model_hash"]:
            raise EngineError(
                f"{path}: model_hash mismatch: the ONNX file holds {stored[:12]}..., "
                f"its sidecar says {str(metadata['model_hash'])[:12]}... "
                "(sidecar from another export?)"
            )
        inputs = [
            i
            for i in proto.graph.input
            if i.name not in {init.name for init in proto.graph.initializer}
        ]
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            raise EngineError(
                f"{path}: expected one input {INPUT_NAME!r}, found {[i.name for i in inputs]}"
            )
        dims = [
            d.dim_value if d.HasField("dim_value") else -1
            for d in inputs[0].type.tensor_type.shape.dim
        ]
        want = list(metadata["input_tensor_shape"])
        if metadata.get("dynamic_batch"):
            want[0] = -1  # a symbolic batch dimension; the sidecar holds the largest batch
        if dims != want:
            raise EngineError(
                f"{path}: input shape mismatch: the ONNX graph takes {dims}, its sidecar says "
                f"{metadata['input_tensor_shape']}"
            )
        outputs = [o.name for o in proto.graph.output]
        if outputs != list(OUTPUT_NAMES):
            raise EngineError(f"{path}: expected outputs {list(OUTPUT_NAMES)}, found {outputs}")

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = batch.shape[0]  # below batch_size only for a dynamic-batch engine (checked by infer)
        np.copyto(self._input[:n], batch)
        if self._pool is not None and n > 1 and self.dynamic_batch:
            # One run per frame, parallel_frames at a time (ONNX Runtime releases the GIL in run).
            runs = [
                self._pool.submit(self._session.run_with_iobinding, self._bound(i, i + 1))
                for i in range(n)
            ]
            for run in runs:
                run.result()
        else:
            self._session.run_with_iobinding(
                self._binding if n == self.batch_size else self._bound(0, n)
            )
        if self._confidence is not self._confidence_raw:
            np.copyto(self._confidence[:n], self._confidence_raw[:n])
        if n == self.batch_size:
            return self._labels, self._confidence  # the very buffers, call after call (copy=False)
        return self._labels[:n], self._confidence[:n]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._bindings = {}
        self._binding = None  # type: ignore[assignment]
        self._session = None  # type: ignore[assignment]


OPTIMIZATION_LEVELS = ("none", "basic", "extended", "all")


def session_options(
    optimization: str = "all",
    intra_op_threads: Optional[int] = None,
    inter_op_threads: Optional[int] = None,
    allow_spinning: Optional[bool] = None,
    memory_pattern: Optional[bool] = None,
) -> Any:
    """ONNX Runtime SessionOptions: graph optimisation level, thread counts, spinning, memory
    pattern (None: off unless ``ROS2_FED_ORT_MEMORY_PATTERN=1``, for comparing footprints)."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(
            f"optimization must be one of {sorted(OPTIMIZATION_LEVELS)}, got {optimization!r}"
        )
    levels = ort.GraphOptimizationLevel
    options = ort.SessionOptions()
    options.graph_optimization_level = dict(
        zip(
            OPTIMIZATION_LEVELS,
            (
                levels.ORT_DISABLE_ALL,
                levels.ORT_ENABLE_BASIC,
                levels.ORT_ENABLE_EXTENDED,
                levels.ORT_ENABLE_ALL,
            ),
        )
    )[optimization]
    # Memory patterns pre-plan one block per run from the first run's allocations: at 512x1024
    # the default engine held 137 MiB more with it (node RSS 480 vs 343 MiB) for no faster frame.
    if memory_pattern is None:
        memory_pattern = os.environ.get("ROS2_FED_ORT_MEMORY_PATTERN", "0") == "1"
    options.enable_mem_pattern = bool(memory_pattern)
    if intra_op_threads:
        options.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads:
        options.inter_op_num_threads = int(inter_op_threads)
    if allow_spinning is not None:
        # Spinning threads busy-wait for the next operator / run: fastest for a process that
        # only infers, but on a small CPU they steal cores from whatever runs between inferences.
        flag = "1" if allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return options


def provider_names(providers: Sequence[Any]) -> list[str]:
    """Names of a provider list whose entries are names or (name, options) pairs."""
    return [p[0] if isinstance(p, (tuple, list)) else str(p) for p in providers]


def check_providers(
    path: PathLike, requested: Sequence[Any], actual: Sequence[str], strict: bool = True
) -> None:
    """Every requested provider must be among the session's; else EngineError (strict) or a
    warning.

    Why: a listed-but-unusable CUDA/TensorRT provider silently leaves the session on CPU.
    """
    missing = [name for name in provider_names(requested) if name not in actual]
    if not missing:
        return
    message = (
        f"{path}: ONNX Runtime did not load {', '.join(missing)} "
        f"(the session runs on {', '.join(actual)}): "
        "check the CUDA/TensorRT libraries, or ask for CPUExecutionProvider"
    )
    if strict:
        raise EngineError(message)
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None
