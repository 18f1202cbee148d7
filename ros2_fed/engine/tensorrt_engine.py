"""TensorRT engine (the vehicle path): build from the exported ONNX, serialise, reload, run.

Build: TensorRT Python API (builder -> network from the ONNX parser -> builder config with
FP16 / INT8 flags -> ``build_serialized_network``). With FP16/INT8 only the backbone runs in
reduced precision: every layer outside the ``/backbone/`` scope (pre-processing, FED, score,
post-processing, resizes) is pinned to FP32, because FED's exponentials and log-dets are
where FP16 loses bits and they are cheap. INT8 needs calibration images (entropy
calibrator, calibration cache next to the engine).

Run: device memory is torch CUDA tensors (simplest correct allocator), the frame goes
through a pinned host buffer, ``execute_async_v3`` on a private stream; outputs come back
into pinned buffers. Bindings are set once at open.

``tensorrt`` is imported lazily; without it every entry point raises :class:`EngineError`
saying TensorRT is not installed. Requires TensorRT >= 8.6 (named-tensor API).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .base import INPUT_NAME, OUTPUT_NAMES, Engine, EngineError, PathLike, check_file_integrity, read_sidecar, write_json_atomic

BACKBONE_SCOPE = "/backbone/"


def import_tensorrt() -> Any:
    """``import tensorrt`` or a clear EngineError (also when CUDA is missing)."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EngineError(
            "TensorRT is not installed: `pip install tensorrt` (matching your CUDA) or use the JetPack/"
            f"TensorRT Python bindings; or pick runtime 'onnxruntime' ({exc})"
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    minor = int(str(trt.__version__).split(".")[1])
    if (major, minor) < (8, 6):
        raise EngineError(f"TensorRT {trt.__version__} is too old: ros2_fed needs >= 8.6 (named I/O tensors)")
    return trt


def _require_cuda() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA GPU, and torch.cuda.is_available() is False")
    return torch


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def _pin_non_backbone_to_fp32(trt: Any, network: Any) -> int:
    """Force FP32 for float layers outside the backbone scope; returns how many were pinned."""
    floats = {trt.float32, trt.float16}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if BACKBONE_SCOPE in layer.name:
            continue
        ins = [layer.get_input(j) for j in range(layer.num_inputs)]
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outs or any(t is not None and t.dtype not in floats for t in ins + outs):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def _make_calibrator(trt: Any, images: np.ndarray, batch: int, cache_path: Path) -> Any:
    torch = _require_cuda()

    class ImageCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        """Feeds uint8 (N, H, W, 3) calibration frames batch by batch through device memory."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.images = images
            self.index = 0
            self.device_input = torch.empty((batch,) + tuple(images.shape[1:]), dtype=torch.uint8, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: Sequence[str]) -> Optional[list[int]]:
            if self.index + batch > len(self.images):
                return None
            chunk = torch.from_numpy(np.ascontiguousarray(self.images[self.index:self.index + batch]))
            self.device_input.copy_(chunk)
            self.index += batch
            return [int(self.device_input.data_ptr())]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    return ImageCalibrator()


def build_tensorrt_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    metadata: dict[str, Any],
    *,
    precision: str = "fp16",
    calibration_images: Optional[Union[np.ndarray, Sequence[np.ndarray]]] = None,
    workspace_gib: float = 4.0,
    fp32_outside_backbone: bool = True,
    progress: Optional[Callable[[str], None]] = print,
) -> tuple[Path, dict[str, Any]]:
    """Build and serialise an engine from ``onnx_path``; writes ``engine_path`` + sidecar.

    ``metadata``: the sidecar to write (the ONNX export's, with runtime/precision updated).
    Returns (engine path, metadata with file size/hash).
    """
    trt = import_tensorrt()
    _require_cuda()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    if progress:
        progress(f"building TensorRT {precision} engine from {onnx_path.name}, this takes minutes ...")
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: the TensorRT ONNX parser rejected the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    pinned = 0
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16 and progress:
            progress("warning: this GPU has no fast FP16; the engine may not be faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise EngineError(f"{engine_path}: INT8 needs calibration images (fed_export --calib-dir DIR)")
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in calibration_images])
        want = tuple(metadata["input_tensor_shape"][1:])
        if images.shape[1:] != want:
            raise EngineError(f"{engine_path}: calibration images are {images.shape[1:]}, the engine takes {want}")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_calibrator(
            trt, images, int(metadata["input_tensor_shape"][0]), engine_path.with_suffix(".calib")
        )
    if precision != "fp32" and fp32_outside_backbone:
        pinned = _pin_non_backbone_to_fp32(trt, network)
        flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or getattr(trt.BuilderFlag, "STRICT_TYPES")
        config.set_flag(flag)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{engine_path}: TensorRT failed to build the engine (see the TensorRT log above)")
    data = bytes(serialized)

    from ros2_fed.checkpoint import file_sha256

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        meta = dict(metadata)
        meta.update(
            runtime="tensorrt",
            precision=precision,
            file_size=len(data),
            file_sha256=file_sha256(tmp),
            tensorrt_fp32_layers=pinned,
            workspace_gib=workspace_gib,
        )
        os.replace(tmp, engine_path)
    finally:
        tmp.unlink(missing_ok=True)
    from .base import sidecar_path

    write_json_atomic(sidecar_path(engine_path), meta)
    if progress:
        progress(f"TensorRT engine written to {engine_path} ({len(data) / 1e6:.1f} MB)")
    return engine_path, meta


class TensorRTEngine(Engine):
    """A serialised TensorRT engine, deserialised without rebuilding, run on CUDA."""

    runtime = "tensorrt"

    def __init__(self, path: PathLike, metadata: Optional[dict[str, Any]] = None, *, device: int = 0,
                 check_gpu: bool = True) -> None:
        from .export import gpu_name

        path = Path(path)
        metadata = metadata if metadata is not None else read_sidecar(path)
        super().__init__(path, metadata)
        check_file_integrity(path, metadata)  # before TensorRT parses a single byte
        try:
            trt = import_tensorrt()
            torch = _require_cuda()
        except EngineError as exc:
            raise EngineError(f"{path}: {exc}") from exc
        if str(metadata.get("runtime_version")) != str(trt.__version__):
            raise EngineError(
                f"{path}: built with TensorRT {metadata.get('runtime_version')}, this is TensorRT {trt.__version__}; "
                "engines are not portable across versions: rebuild (fed_export or the engine cache)"
            )
        if check_gpu and metadata.get("gpu_name") not in (None, gpu_name()):
            raise EngineError(f"{path}: built for GPU {metadata.get('gpu_name')!r}, this is {gpu_name()!r}: rebuild")
        self._torch = torch
        self._device = torch.device("cuda", device)
        runtime = trt.Runtime(_logger(trt))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineError(f"{path}: TensorRT cannot deserialise this engine (see the TensorRT log above)")
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{path}: TensorRT cannot create an execution context (out of GPU memory?)")

        dtypes = {trt.uint8: torch.uint8, trt.float32: torch.float32, trt.float16: torch.float16,
                  trt.int32: torch.int32, trt.int8: torch.int8, trt.bool: torch.bool}
        if hasattr(trt, "int64"):
            dtypes[trt.int64] = torch.int64
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        expected = {INPUT_NAME, *OUTPUT_NAMES}
        if set(names) != expected:
            raise EngineError(f"{path}: engine tensors {names}, expected {sorted(expected)}")
        self._device_buffers: dict[str, Any] = {}
        for name in names:
            shape = tuple(engine.get_tensor_shape(name))
            want = tuple(metadata["input_tensor_shape"]) if name == INPUT_NAME else tuple(metadata["input_tensor_shape"][:3])
            if shape != want:
                raise EngineError(f"{path}: tensor {name!r} has shape {list(shape)}, its sidecar says {list(want)}")
            dtype = dtypes.get(engine.get_tensor_dtype(name))
            if dtype is None:
                raise EngineError(f"{path}: tensor {name!r} has unsupported dtype {engine.get_tensor_dtype(name)}")
            buffer = torch.empty(shape, dtype=dtype, device=self._device)
            self._device_buffers[name] = buffer
            if not self._context.set_tensor_address(name, int(buffer.data_ptr())):
                raise EngineError(f"{path}: cannot bind tensor {name!r}")
        shape = self._tensor_shape
        self._stream = torch.cuda.Stream(device=self._device)
        self._in_host = torch.empty(shape, dtype=torch.uint8).pin_memory()
        self._labels_host = torch.empty(shape[:3], dtype=torch.uint8).pin_memory()
        self._conf_host = torch.empty(shape[:3], dtype=torch.float32).pin_memory()

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        self._in_host.numpy()[...] = batch
        image = self._device_buffers[INPUT_NAME]
        labels = self._device_buffers[OUTPUT_NAMES[0]]
        confidence = self._device_buffers[OUTPUT_NAMES[1]]
        with torch.cuda.stream(self._stream):
            image.copy_(self._in_host, non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError(f"{self._path}: TensorRT execution failed")
            self._labels_host.copy_(labels, non_blocking=True)
            self._conf_host.copy_(confidence, non_blocking=True)  # float16 -> float32 on the device side
        self._stream.synchronize()
        return self._labels_host.numpy(), self._conf_host.numpy()

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._device_buffers = {}
