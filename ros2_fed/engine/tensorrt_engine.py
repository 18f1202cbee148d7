"""TensorRT engine (the vehicle path): build from the exported ONNX, serialise, reload, run.

Supported: TensorRT 10.x (JetPack 6.x on Jetson Orin; x86 / SBSA) and 11.x. Build: the ONNX
export already says which tensors are float16 (``fed_export --precision fp16``: float16
backbone, float32 FED, explicit Casts; see :mod:`.mixed_precision`), and TensorRT builds it as
a *strongly typed* network, i.e. with exactly those types: the ``STRONGLY_TYPED`` creation
flag on 10.x; on 11.x strong typing is the only mode and the precision flags are gone.
So no builder precision flag is ever set (``BuilderFlag.FP16/INT8``,
``OBEY_PRECISION_CONSTRAINTS``,
``layer.precision`` and ``platform_has_fast_fp16`` do not exist in 11.x, and would contradict
a strongly typed network in 10.x). INT8 is the same strongly typed build: ``fed_export
--precision int8 --runtime tensorrt`` writes the backbone's quantisation as QuantizeLinear /
DequantizeLinear nodes (:mod:`.int8`, TensorRT's scheme), which TensorRT builds by *explicit
quantisation* -- NVIDIA's guide: "Use explicit quantization with Strong Typing. Precision-control
build flags are not required and should not be specified". 11.x has no INT8 flag or
calibrator at all (``BuilderFlag.INT8``, ``int8_calibrator``, ``IInt8EntropyCalibrator2`` are
gone); the same ONNX builds on 10.x with ``STRONGLY_TYPED``. Before building, an int8 ONNX is
checked for what TensorRT's ONNX parser rejects (:func:`tensorrt_qdq_problems`: non-zero or
uint8 zero points, int32 bias DequantizeLinear), with one line saying how to re-export.

Run: the CUDA device is selected before the engine is deserialised (an engine lives on the
device that was current then). Device and pinned host memory and the stream come from
:mod:`.cuda_memory` (cuda-python when installed, so no torch; torch's allocator otherwise);
the frame goes through a pinned host buffer, ``execute_async_v3`` on a private stream,
outputs come back into pinned buffers. Bindings are set once at open. Every failure of
TensorRT or CUDA becomes an :class:`EngineError` with one line naming the file.

``tensorrt`` (and cuda-python / torch) are imported lazily: this module imports without them,
and every entry point then raises :class:`EngineError` saying what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .base import (
    INPUT_NAME,
    OUTPUT_NAMES,
    Engine,
    EngineError,
    PathLike,
    check_file_integrity,
    install_engine_file,
    read_sidecar,
)

SUPPORTED_MAJORS = (10, 11)


# --------------------------------------------------------------------------------------
# Version gating: everything that differs between TensorRT 10.x and 11.x is decided here
# --------------------------------------------------------------------------------------


def import_tensorrt() -> Any:
    """``import tensorrt`` (10.x or 11.x) or a clear EngineError.

    Catches any exception, not only ImportError: a bindings wheel without its libraries
    fails with OSError / ImportError naming a missing ``libnvinfer``/``libnvonnxparser``.
    """
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - any failure to load is "TensorRT unusable here"
        raise EngineError(
            "TensorRT is not installed or cannot load: install TensorRT 10.x/11.x matching your "
            "CUDA (on Jetson: "
            f"the JetPack packages), or pick runtime 'onnxruntime' ({one_line(exc)})"
        ) from exc
    major = tensorrt_major(trt)
    if major not in SUPPORTED_MAJORS:
        raise EngineError(
            f"TensorRT {trt.__version__} is not supported: ros2_fed needs TensorRT 10.x or 11.x"
        )
    return trt


def tensorrt_major(trt: Any) -> int:
    """Major version of a tensorrt module (``"10.16.0"`` -> 10)."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError as exc:
        raise EngineError(f"cannot read the TensorRT version from {trt.__version__!r}") from exc


def network_flags(trt: Any) -> int:
    """Creation flags of a strongly typed network.

    10.x: ``STRONGLY_TYPED`` (``EXPLICIT_BATCH`` is deprecated there and implied). 11.x: every
    network is strongly typed; the flag is redundant (and may not exist), so none is passed.
    """
    if tensorrt_major(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def create_network(trt: Any, builder: Any) -> Any:
    """A strongly typed network definition on either major version."""
    flags = network_flags(trt)
    return builder.create_network(flags) if flags else builder.create_network()


def serialize_onnx(trt: Any, onnx_path: Path, workspace_gib: float, logger: Any = None) -> bytes:
    """Parse the ONNX file into a strongly typed network and build it; the serialised engine.

    No precision flag is set: the graph's own types decide every layer's precision, and its
    Q/DQ nodes where int8 runs (fp32, fp16 and int8 exports build alike).
    """
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(one_line(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: the TensorRT ONNX parser rejected the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"{onnx_path}: TensorRT failed to build the engine (see the TensorRT log above)"
        )
    return bytes(serialized)


def tensorrt_qdq_problems(onnx_path: PathLike) -> list[str]:
    """What TensorRT's ONNX parser would reject in a Q/DQ graph, one line per node (empty when
    it builds): TensorRT quantisation is symmetric int8 (every zero point an int8 zero) and
    DequantizeLinear takes only 8-bit inputs (no int32 bias)."""
    import onnx
    from onnx import numpy_helper

    INT8 = onnx.TensorProto.INT8  # noqa: N806 - onnx's name
    proto = onnx.load(str(onnx_path), load_external_data=False)
    constants = {init.name: init for init in proto.graph.initializer}
    problems = []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        data = constants.get(node.input[0])
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if node.op_type == "DequantizeLinear" and data is not None and data.data_type != INT8:
            kind = onnx.TensorProto.DataType.Name(data.data_type).lower()
            problems.append(f"{node.name}: dequantises {kind} constants (TensorRT: int8 only)")
        elif zero is None or zero.data_type != INT8:
            problems.append(f"{node.name}: zero point is not int8 (TensorRT quantises to int8)")
        elif np.any(numpy_helper.to_array(zero)):
            problems.append(f"{node.name}: non-zero zero point (TensorRT is symmetric)")
    return problems


def check_int8_graph(onnx_path: PathLike, metadata: dict[str, Any]) -> None:
    """EngineError before TensorRT parses an int8 ONNX it would reject (one line, how to fix)."""
    if metadata.get("precision") != "int8":
        return
    problems = tensorrt_qdq_problems(onnx_path)
    if problems:
        raise EngineError(
            f"{onnx_path}: this int8 graph is not in TensorRT's Q/DQ scheme ({len(problems)} "
            f"nodes, e.g. {problems[0]}): export it with fed_export --runtime tensorrt "
            "--precision int8"
        )


# --------------------------------------------------------------------------------------
# Device and GPU identity
# --------------------------------------------------------------------------------------


def select_device(device: int) -> dict[str, Any]:
    """Make CUDA ``device`` current (before building); its name and compute capability."""
    from .cuda_memory import cuda_backend

    return cuda_backend().select_device(device)


def check_gpu(path: PathLike, metadata: dict[str, Any], gpu: dict[str, Any]) -> None:
    """An engine only runs on the GPU model (name and compute capability) it was built for."""
    built = (metadata.get("gpu_name"), metadata.get("gpu_compute_capability"))
    here = (gpu.get("name"), gpu.get("compute_capability"))
    if built[0] is not None and built[0] != here[0]:
        raise EngineError(f"{path}: built for GPU {built[0]!r}, this is {here[0]!r}: rebuild")
    if built[1] is not None and built[1] != here[1]:
        raise EngineError(
            f"{path}: built for compute capability {built[1]}, this GPU has {here[1]}: rebuild"
        )


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------


def build_tensorrt_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    metadata: dict[str, Any],
    *,
    workspace_gib: float = 4.0,
    device: int = 0,
    progress: Optional[Callable[[str], None]] = print,
) -> tuple[Path, dict[str, Any]]:
    """Build a strongly typed engine from ``onnx_path``; writes ``engine_path`` + sidecar.

    ``metadata``: the sidecar to write (the ONNX export's, with runtime/GPU updated; its
    ``precision`` is the ONNX graph's). Returns (engine path, metadata with file size/hash).
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    check_int8_graph(onnx_path, metadata)
    gpu = select_device(device)
    if progress:
        progress(
            f"building TensorRT {trt.__version__} {metadata.get('precision')} engine (strongly "
            f"typed) from {onnx_path.name} on {gpu['name']}, this takes minutes ..."
        )
    try:
        data = serialize_onnx(trt, onnx_path, workspace_gib)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - TensorRT raises RuntimeError/TypeError/...: one line
        raise EngineError(f"{engine_path}: TensorRT build failed: {one_line(exc)}") from exc

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        meta = dict(metadata)
        meta.update(
            runtime="tensorrt",
            runtime_version=str(trt.__version__),
            gpu_name=gpu["name"],
            gpu_compute_capability=gpu["compute_capability"],
            workspace_gib=workspace_gib,
            tensorrt_strongly_typed=True,
            tensorrt_explicit_quantization=metadata.get("precision") == "int8",
        )
        install_engine_file(tmp, engine_path, meta)
    finally:
        tmp.unlink(missing_ok=True)
    if progress:
        progress(f"TensorRT engine written to {engine_path} ({len(data) / 1e6:.1f} MB)")
    return engine_path, meta


# --------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------


def deserialize(trt: Any, path: Path, data: bytes) -> tuple[Any, Any, Any]:
    """(runtime, engine, execution context) or EngineError; the device must already be selected."""
    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as exc:  # noqa: BLE001
        raise EngineError(
            f"{path}: TensorRT cannot deserialise this engine: {one_line(exc)}"
        ) from exc
    if engine is None:
        raise EngineError(
            f"{path}: TensorRT cannot deserialise this engine (see the TensorRT log above)"
        )
    try:
        context = engine.create_execution_context()
    except Exception as exc:  # noqa: BLE001
        raise EngineError(
            f"{path}: TensorRT cannot create an execution context: {one_line(exc)}"
        ) from exc
    if context is None:
        raise EngineError(
            f"{path}: TensorRT cannot create an execution context (out of GPU memory?)"
        )
    return runtime, engine, context


def io_tensors(
    trt: Any, engine: Any, metadata: dict[str, Any], path: Path
) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, numpy dtype name) of every I/O tensor, checked against the sidecar."""
    dtypes = {}
    for trt_name, np_name in (
        ("uint8", "uint8"),
        ("float32", "float32"),
        ("float16", "float16"),
        ("int32", "int32"),
        ("int8", "int8"),
        ("bool", "bool"),
        ("int64", "int64"),
    ):
        if hasattr(trt, trt_name):
            dtypes[getattr(trt, trt_name)] = np_name
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    expected = {INPUT_NAME, *OUTPUT_NAMES}
    if set(names) != expected:
        raise EngineError(f"{path}: engine tensors {names}, expected {sorted(expected)}")
    tensors = []
    for name in names:
        shape = tuple(int(v) for v in engine.get_tensor_shape(name))
        want = (
            tuple(metadata["input_tensor_shape"])
            if name == INPUT_NAME
            else tuple(metadata["input_tensor_shape"][:3])
        )
        if shape != want:
            raise EngineError(
                f"{path}: tensor {name!r} has shape {list(shape)}, its sidecar says {list(want)}"
            )
        dtype = dtypes.get(engine.get_tensor_dtype(name))
        if dtype is None:
            raise EngineError(
                f"{path}: tensor {name!r} has unsupported dtype {engine.get_tensor_dtype(name)}"
            )
        tensors.append((name, shape, dtype))
    return tensors


class TensorRTEngine(Engine):
    """A serialised TensorRT engine, deserialised on ``device`` without rebuilding, run on CUDA.

    CUDA memory comes from :mod:`.cuda_memory` (cuda-python, else torch): with cuda-python
    installed, opening and running the engine never imports torch.
    """

    runtime = "tensorrt"

    def __init__(
        self,
        path: PathLike,
        metadata: Optional[dict[str, Any]] = None,
        *,
        device: int = 0,
        check_gpu_model: bool = True,
    ) -> None:
        from .cuda_memory import cuda_backend

        path = Path(path)
        metadata = metadata if metadata is not None else read_sidecar(path)
        super().__init__(path, metadata)
        check_file_integrity(path, metadata)  # before TensorRT parses a single byte
        try:
            trt = import_tensorrt()
        except EngineError as exc:
            raise EngineError(f"{path}: {exc}") from exc
        if str(metadata.get("runtime_version")) != str(trt.__version__):
            raise EngineError(
                f"{path}: built with TensorRT {metadata.get('runtime_version')}, this is TensorRT "
                f"{trt.__version__}; "
                "engines are not portable across versions: rebuild (fed_export or the engine "
                "cache)"
            )
        try:
            self._cuda = cuda_backend()
            gpu = self._cuda.select_device(
                device
            )  # the engine lives on the device current at deserialisation
        except EngineError as exc:
            raise EngineError(f"{path}: {exc}") from exc
        if check_gpu_model:
            check_gpu(path, metadata, gpu)
        self._runtime, self._engine, self._context = deserialize(trt, path, path.read_bytes())
        self._device_ptrs: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        try:
            for name, shape, dtype in io_tensors(trt, self._engine, metadata, path):
                nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
                self._device_ptrs[name] = self._cuda.device_alloc(nbytes)
                self._host[name] = self._cuda.host_array(shape, dtype)
                if not self._context.set_tensor_address(name, self._device_ptrs[name]):
                    raise EngineError(f"{path}: cannot bind tensor {name!r}")
            self._stream = self._cuda.stream()
        except EngineError as exc:
            raise EngineError(
                str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
            ) from exc
        confidence = self._host[OUTPUT_NAMES[1]]
        self._confidence = (
            confidence
            if confidence.dtype == np.float32
            else np.zeros(confidence.shape, np.float32)
        )

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cuda, stream = self._cuda, self._stream
        labels, confidence = self._host[OUTPUT_NAMES[0]], self._host[OUTPUT_NAMES[1]]
        try:
            np.copyto(self._host[INPUT_NAME], batch)
            cuda.upload(self._device_ptrs[INPUT_NAME], self._host[INPUT_NAME], stream)
            ok = self._context.execute_async_v3(stream)
            cuda.download(labels, self._device_ptrs[OUTPUT_NAMES[0]], stream)
            cuda.download(confidence, self._device_ptrs[OUTPUT_NAMES[1]], stream)
            cuda.synchronize(stream)
        except EngineError as exc:
            raise EngineError(f"{self._path}: TensorRT inference failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - TensorRT raises RuntimeError & co.
            raise EngineError(f"{self._path}: TensorRT inference failed: {one_line(exc)}") from exc
        if not ok:
            raise EngineError(
                f"{self._path}: TensorRT execution failed (execute_async_v3 returned False)"
            )
        if confidence is not self._confidence:
            np.copyto(self._confidence, confidence)  # a float16 confidence output
        return labels, self._confidence

    def close(self) -> None:
        self._context = None
        self._engine = None
        if getattr(self, "_cuda", None) is not None:
            self._cuda.close()
            self._cuda = None


def one_line(exc: Any) -> str:
    """First line of an error (TensorRT and CUDA messages span many lines)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if isinstance(exc, BaseException) else first
