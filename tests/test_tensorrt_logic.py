"""TensorRT code paths that need no GPU, run against fake ``tensorrt`` modules (10.x and 11.x).

TensorRT cannot be installed here, so each fake mimics the API surface of one major version:
10.x has ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` and still the weak-typing flags and
the implicit-INT8 calibrator API; 11.x has none of them (its builder config takes no attribute
it does not have, as a pybind object). The fakes record every call, so the tests see that the
build is strongly typed on both, that no removed API is touched, and that failures become
one-line EngineErrors. Their ONNX parser applies the real parser's explicit-quantisation rules
to a real ONNX file (int8 zero points that are all zero; no int32 DequantizeLinear), so an
int8 graph in the wrong Q/DQ scheme fails here as it would on a vehicle. The real build/run is
in tests/test_engine.py (``gpu`` marker).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros2_fed.engine import tensorrt_engine as trt_engine
from ros2_fed.engine.base import EngineError


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


def fake_tensorrt(
    version: str,
    *,
    parse_ok: bool = True,
    build_ok: bool = True,
    engine_tensors=None,
    deserialize_raises: Exception | None = None,
    on_execute=None,
) -> types.ModuleType:
    """A ``tensorrt`` module with the 10.x or 11.x surface (by the major of ``version``)."""
    major = int(version.split(".")[0])
    rec = Recorder()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.recorder = rec
    for name in ("float32", "float16", "int8", "int32", "bool", "uint8", "int64"):
        setattr(trt, name, f"DataType.{name}")

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class NetworkDefinitionCreationFlag:
        pass

    class BuilderFlag:
        pass

    if major == 10:
        NetworkDefinitionCreationFlag.EXPLICIT_BATCH = 0  # deprecated in 10, ignored
        NetworkDefinitionCreationFlag.STRONGLY_TYPED = 5
        for flag in (
            "FP16",
            "INT8",
            "OBEY_PRECISION_CONSTRAINTS",
        ):  # exist in 10, contradict strong typing
            setattr(BuilderFlag, flag, flag)

    class Config:
        # 11.x: a pybind object without the implicit-INT8 attributes (setting one raises).
        __slots__ = ("int8_calibrator",) if major == 10 else ()

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            # pybind11 takes no float for a size_t, and only a MemoryPoolType member
            if type(size) is not int or size < 0 or pool != MemoryPoolType.WORKSPACE:
                raise TypeError("set_memory_pool_limit(): incompatible function arguments")
            rec.calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag: Any) -> None:
            rec.calls.append(("set_flag", flag))

    if major == 10:

        class IInt8EntropyCalibrator2:  # implicit INT8 calibration: deprecated in 10, gone in 11
            def __init__(self) -> None:
                rec.calls.append(("IInt8EntropyCalibrator2",))

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, *flags: int) -> Network:
            rec.calls.append(("create_network",) + flags)
            return Network(flags[0] if flags else 0)

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            rec.calls.append(("build_serialized_network", network.flags))
            return b"serialized-engine" if build_ok else None

    if major == 10:
        Builder.platform_has_fast_fp16 = True  # gone in 11

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.errors = [] if parse_ok else ["node 0: unsupported op", "node 1: unsupported op"]

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def parse_from_file(self, path: str) -> bool:
            if not isinstance(path, str):  # pybind11: a str, not an os.PathLike
                raise TypeError("parse_from_file(): incompatible function arguments")
            rec.calls.append(("parse_from_file", path))
            self.errors += explicit_quantization_errors(path)
            return not self.errors

        def get_error(self, i: int) -> "ParserError":
            return ParserError(self.errors[i])

    class ParserError:
        """Not a str: the real parser hands out objects with desc() / node() / code()."""

        def __init__(self, text: str) -> None:
            self._text = text

        def desc(self) -> str:
            return self._text

        def node(self) -> int:
            return 0

        def __str__(self) -> str:
            return f"{self._text}\nstack trace line"

    class Dims:
        """TensorRT's Dims: a sequence of ints, not a tuple (never equal to one)."""

        def __init__(self, shape: tuple[int, ...]) -> None:
            self._shape = list(shape)

        def __len__(self) -> int:
            return len(self._shape)

        def __getitem__(self, i: int) -> int:
            return self._shape[i]

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Dims) and other._shape == self._shape

        __hash__ = None  # type: ignore[assignment]

    tensors = engine_tensors or {
        "image": ((1, 8, 12, 3), trt.uint8),
        "labels": ((1, 8, 12), trt.uint8),
        "confidence": ((1, 8, 12), trt.float32),
    }

    class CudaEngine:
        num_io_tensors = len(tensors)

        def get_tensor_name(self, i: int) -> str:
            return list(tensors)[i]

        def get_tensor_shape(self, name: str) -> Dims:
            return Dims(tensors[name][0])

        def get_tensor_dtype(self, name: str) -> str:
            return tensors[name][1]

        def create_execution_context(self) -> "Context":
            return Context()

    class Context:
        def __init__(self) -> None:
            self.addresses: dict[str, int] = {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            rec.calls.append(("execute_async_v3", stream))
            return on_execute(self.addresses) if on_execute else True

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> CudaEngine | None:
            if deserialize_raises is not None:
                raise deserialize_raises
            return CudaEngine() if data == b"serialized-engine" else None

    for name, value in (
        ("Logger", Logger),
        ("MemoryPoolType", MemoryPoolType),
        ("Builder", Builder),
        ("NetworkDefinitionCreationFlag", NetworkDefinitionCreationFlag),
        ("BuilderFlag", BuilderFlag),
        ("OnnxParser", OnnxParser),
        ("ParserError", ParserError),
        ("Dims", Dims),
        ("Runtime", Runtime),
    ):
        setattr(trt, name, value)
    return trt


def explicit_quantization_errors(path: str) -> list[str]:
    """The real ONNX parser's Q/DQ rules applied to ``path`` when it is an ONNX file (the
    byte-string stand-ins of other tests are not): symmetric int8 only, no int32 dequantise."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    try:
        proto = onnx.load(path)
    except Exception:  # noqa: BLE001 - not an ONNX file: the stand-in bytes parse
        return []
    constants = {init.name: init for init in proto.graph.initializer}
    errors = []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        data = constants.get(node.input[0])
        if (
            node.op_type == "DequantizeLinear"
            and data is not None
            and data.data_type == onnx.TensorProto.INT32
        ):
            errors.append(f"{node.name}: only activation datatypes allowed as input")
            continue
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if (
            zero is None
            or zero.data_type != onnx.TensorProto.INT8
            or numpy_helper.to_array(zero).any()
        ):
            errors.append(
                f"{node.name}: Assertion failed: shiftIsAllZeros(zeroPoint) && TRT only "
                "supports symmetric quantization - zeroPt must be all zeros"
            )
    return errors


class FakeCudart(types.ModuleType):
    """cuda-python's runtime API on host memory: "device" pointers index bytearrays, pinned memory
    is ctypes."""

    class cudaError_t:  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, fail_malloc: bool = False) -> None:
        super().__init__("cuda.bindings.runtime")
        self.device: dict[int, bytearray] = {}
        self.pinned: list[Any] = []
        self.current: int | None = None
        self.fail_malloc = fail_malloc
        self._next = 0x1000
        #: work queued on a stream; it completes only at cudaStreamSynchronize, as on a GPU
        self.pending: list[Any] = []

    def enqueue(self, work: Any) -> None:
        self.pending.append(work)

    def cudaGetDeviceCount(self):  # noqa: N802
        return (0, 1)

    def cudaSetDevice(self, device):  # noqa: N802
        self.current = device
        return (0,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        return (0, types.SimpleNamespace(name=b"Fake GPU\0\0\0", major=8, minor=7))

    def cudaStreamCreate(self):  # noqa: N802
        return (0, 77)

    def cudaMalloc(self, nbytes):  # noqa: N802
        if self.fail_malloc:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        ptr, self._next = self._next, self._next + nbytes + 256
        self.device[ptr] = bytearray(nbytes)
        return (0, ptr)

    def cudaMallocHost(self, nbytes):  # noqa: N802
        buffer = (ctypes.c_uint8 * nbytes)()
        self.pinned.append(buffer)
        return (0, ctypes.addressof(buffer))

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        assert stream == 77 and self.current == 0, "copies on the engine's stream, device selected"
        if type(nbytes) is not int:
            raise TypeError("cudaMemcpyAsync: nbytes must be an int")
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            data = ctypes.string_at(src, nbytes)  # pinned source: read when the copy runs

            def copy() -> None:
                self.device[dst][:nbytes] = data

        else:

            def copy() -> None:
                ctypes.memmove(dst, bytes(self.device[src][:nbytes]), nbytes)

        self.enqueue(copy)
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        assert stream == 77, "synchronizes the engine's stream"
        while self.pending:
            self.pending.pop(0)()
        return (0,)

    def cudaGetErrorString(self, err):  # noqa: N802
        return (0, b"out of memory")

    def cudaFree(self, ptr):  # noqa: N802
        return (0,)

    cudaFreeHost = cudaFree
    cudaStreamDestroy = cudaFree


def install_cudart(monkeypatch, cudart: FakeCudart) -> None:
    package, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    package.bindings, bindings.runtime = bindings, cudart
    for name, module in (
        ("cuda", package),
        ("cuda.bindings", bindings),
        ("cuda.bindings.runtime", cudart),
    ):
        monkeypatch.setitem(sys.modules, name, module)


def segmenting_tensorrt(
    cudart: FakeCudart,
    version: str = "11.4.1",
    ok: bool = True,
    confidence_dtype: Any = np.float32,
) -> types.ModuleType:
    """A fake TensorRT whose engine computes labels = R % 19 and confidence = G / 255 in "device"
    memory."""

    def compute(addresses: dict[str, int]) -> None:
        image = np.frombuffer(bytes(cudart.device[addresses["image"]]), np.uint8).reshape(
            1, 8, 12, 3
        )
        cudart.device[addresses["labels"]][:] = (image[..., 0] % 19).astype(np.uint8).tobytes()
        cudart.device[addresses["confidence"]][:] = (
            (image[..., 1] / np.float32(255)).astype(confidence_dtype).tobytes()
        )

    def execute(addresses: dict[str, int]) -> bool:
        bound = dict(addresses)
        cudart.enqueue(lambda: compute(bound))  # runs in stream order, at synchronize
        return ok

    trt = fake_tensorrt("11.4.1" if version is None else version, on_execute=execute)
    if confidence_dtype == np.float16:
        trt_tensors = {
            "image": ((1, 8, 12, 3), trt.uint8),
            "labels": ((1, 8, 12), trt.uint8),
            "confidence": ((1, 8, 12), trt.float16),
        }
        trt = fake_tensorrt(trt.__version__, on_execute=execute, engine_tensors=trt_tensors)
    return trt


def engine_file(folder: Path, version: str = "11.4.1") -> tuple[Path, dict]:
    from ros2_fed.engine.base import ENGINE_FORMAT
    from ros2_fed.fileio import file_sha256

    path = folder / "m.engine"
    path.write_bytes(b"serialized-engine")
    meta = {
        "format": ENGINE_FORMAT,
        "format_version": 1,
        "runtime": "tensorrt",
        "runtime_version": version,
        "input_tensor_shape": [1, 8, 12, 3],
        "model_hash": "x",
        "precision": "fp16",
        "gpu_name": "Fake GPU",
        "gpu_compute_capability": "8.7",
        "file_size": path.stat().st_size,
        "file_sha256": file_sha256(path),
    }
    (folder / "m.engine.json").write_text(json.dumps(meta))
    return path, meta


@pytest.fixture
def use_trt(monkeypatch):
    """Install a fake tensorrt in sys.modules; no GPU: device selection is faked too."""

    def install(trt: types.ModuleType) -> types.ModuleType:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(
            trt_engine,
            "select_device",
            lambda device: {"name": "Fake GPU", "compute_capability": "8.7"},
        )
        return trt

    return install


@pytest.mark.parametrize("version", ["10.3.0", "10.16.1", "11.4.1"])
def test_build_is_strongly_typed_without_precision_flags(tmp_path, use_trt, version) -> None:
    trt = use_trt(fake_tensorrt(version))
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")
    meta = {"precision": "fp16", "input_tensor_shape": [1, 8, 12, 3], "runtime": "onnxruntime"}
    path, written = trt_engine.build_tensorrt_engine(
        onnx_path, tmp_path / "m.engine", meta, progress=None, workspace_gib=0.5
    )
    calls = trt.recorder.calls
    create = [c for c in calls if c[0] == "create_network"][0]
    if version.startswith("10."):
        assert create == ("create_network", 1 << 5), (
            "10.x: the STRONGLY_TYPED creation flag, nothing else"
        )
    else:
        assert create == ("create_network",), (
            "11.x: strongly typed is the only mode, no flag passed"
        )
    assert not [c for c in calls if c[0] == "set_flag"], (
        "no builder precision flag on a strongly typed network"
    )
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 29) in calls
    assert path.read_bytes() == b"serialized-engine"
    side = json.loads((tmp_path / "m.engine.json").read_text())
    assert side == written
    assert (
        side["runtime"] == "tensorrt"
        and side["runtime_version"] == version
        and side["precision"] == "fp16"
    )
    assert side["gpu_name"] == "Fake GPU" and side["gpu_compute_capability"] == "8.7"
    assert side["tensorrt_strongly_typed"] is True and side["file_size"] == len(
        b"serialized-engine"
    )


@pytest.mark.parametrize("version", ["8.6.1", "9.2.0", "12.0.0"])
def test_unsupported_versions_are_refused(use_trt, version) -> None:
    use_trt(fake_tensorrt(version))
    with pytest.raises(EngineError, match=f"TensorRT {version} is not supported.*10.x or 11.x"):
        trt_engine.import_tensorrt()


def test_tensorrt_that_cannot_load_is_an_engine_error(tmp_path, monkeypatch) -> None:
    """A bindings wheel without its libraries raises on import (not always ImportError)."""
    (tmp_path / "tensorrt.py").write_text(
        "raise OSError('libnvonnxparser.so.11: cannot open shared object file')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(EngineError, match=r"cannot load.*OSError: libnvonnxparser\.so\.11"):
        trt_engine.import_tensorrt()


def test_parser_and_builder_failures_are_one_line_engine_errors(tmp_path, use_trt) -> None:
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")
    meta = {"precision": "fp32", "input_tensor_shape": [1, 8, 12, 3]}
    use_trt(fake_tensorrt("11.4.1", parse_ok=False))
    with pytest.raises(EngineError) as info:
        trt_engine.build_tensorrt_engine(onnx_path, tmp_path / "m.engine", meta, progress=None)
    assert "parser rejected the graph: node 0: unsupported op; node 1: unsupported op" in str(
        info.value
    )
    assert "\n" not in str(info.value)
    use_trt(fake_tensorrt("10.16.1", build_ok=False))
    with pytest.raises(EngineError, match="TensorRT failed to build"):
        trt_engine.build_tensorrt_engine(onnx_path, tmp_path / "m.engine", meta, progress=None)
    assert not (tmp_path / "m.engine").exists()


def test_deserialise_failures_are_engine_errors(tmp_path) -> None:
    path = tmp_path / "m.engine"
    trt = fake_tensorrt("11.4.1")
    with pytest.raises(
        EngineError, match=r"m\.engine: TensorRT cannot deserialise this engine \(see"
    ):
        trt_engine.deserialize(trt, path, b"garbage")
    trt = fake_tensorrt(
        "10.16.1", deserialize_raises=RuntimeError("CUDA error 209\nno kernel image")
    )
    with pytest.raises(EngineError) as info:
        trt_engine.deserialize(trt, path, b"serialized-engine")
    assert (
        str(info.value)
        == f"{path}: TensorRT cannot deserialise this engine: RuntimeError: CUDA error 209"
    )


def test_io_tensors_are_checked_against_the_sidecar(tmp_path) -> None:
    path = tmp_path / "m.engine"
    meta = {"input_tensor_shape": [1, 8, 12, 3]}
    trt = fake_tensorrt("11.4.1")
    _, engine, _ = trt_engine.deserialize(trt, path, b"serialized-engine")
    assert trt_engine.io_tensors(trt, engine, meta, path) == [
        ("image", (1, 8, 12, 3), "uint8"),
        ("labels", (1, 8, 12), "uint8"),
        ("confidence", (1, 8, 12), "float32"),
    ]
    with pytest.raises(
        EngineError,
        match=r"tensor 'image' has shape \[1, 8, 12, 3\], its sidecar says \[1, 16, 12, 3\]",
    ):
        trt_engine.io_tensors(trt, engine, {"input_tensor_shape": [1, 16, 12, 3]}, path)
    odd = fake_tensorrt(
        "10.16.1",
        engine_tensors={
            "image": ((1, 8, 12, 3), "DataType.uint8"),
            "logits": ((1, 8, 12), "DataType.float32"),
        },
    )
    _, engine, _ = trt_engine.deserialize(odd, path, b"serialized-engine")
    with pytest.raises(EngineError, match=r"engine tensors \['image', 'logits'\]"):
        trt_engine.io_tensors(odd, engine, meta, path)


def test_gpu_model_and_compute_capability_must_match(tmp_path) -> None:
    path = tmp_path / "m.engine"
    meta = {"gpu_name": "Orin", "gpu_compute_capability": "8.7"}
    trt_engine.check_gpu(path, meta, {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(EngineError, match="built for GPU 'Orin', this is 'Thor'"):
        trt_engine.check_gpu(path, meta, {"name": "Thor", "compute_capability": "8.7"})
    with pytest.raises(EngineError, match="built for compute capability 8.7, this GPU has 11.0"):
        trt_engine.check_gpu(path, meta, {"name": "Orin", "compute_capability": "11.0"})


def test_open_checks_version_before_touching_the_gpu(tmp_path, use_trt, monkeypatch) -> None:
    """A stale engine (other TensorRT) is refused with one line, before deserialising."""
    from ros2_fed.checkpoint import file_sha256
    from ros2_fed.engine import cuda_memory
    from ros2_fed.engine.base import ENGINE_FORMAT

    use_trt(fake_tensorrt("11.4.1"))
    monkeypatch.setattr(
        cuda_memory, "cuda_backend", lambda: pytest.fail("touched CUDA for a stale engine")
    )
    monkeypatch.setattr(
        trt_engine, "deserialize", lambda *a: pytest.fail("deserialised a stale engine")
    )
    path = tmp_path / "m.engine"
    path.write_bytes(b"serialized-engine")
    meta = {
        "format": ENGINE_FORMAT,
        "format_version": 1,
        "runtime": "tensorrt",
        "runtime_version": "10.16.1",
        "input_tensor_shape": [1, 8, 12, 3],
        "model_hash": "x",
        "precision": "fp16",
        "file_size": path.stat().st_size,
        "file_sha256": file_sha256(path),
    }
    with pytest.raises(
        EngineError, match="built with TensorRT 10.16.1, this is TensorRT 11.4.1.*rebuild"
    ):
        trt_engine.TensorRTEngine(path, meta)


def test_cache_key_names_runtime_version_gpu_capability_precision_and_size() -> None:
    from ros2_fed.engine.cache import cache_key

    base = dict(
        model_hash="h",
        height=512,
        width=1024,
        batch=1,
        precision="fp16",
        runtime="tensorrt",
        runtime_version="10.16.1",
        gpu="Orin",
        opset=18,
        compute_capability="8.7",
    )
    key = cache_key(**base)
    for field, other in (
        ("runtime_version", "11.4.1"),
        ("gpu", "Thor"),
        ("compute_capability", "11.0"),
        ("precision", "fp32"),
        ("height", 1024),
        ("width", 2048),
    ):
        assert cache_key(**{**base, field: other}) != key, field
    assert cache_key(**base) == key


def test_module_imports_without_tensorrt_or_torch() -> None:
    code = (
        "import sys; import ros2_fed.engine.tensorrt_engine as m; "
        "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules; "
        "print(m.SUPPORTED_MAJORS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(10, 11)"


def test_engine_runs_frames_through_cuda_python_buffers(tmp_path, monkeypatch) -> None:
    """Open (device selected, I/O bound once) and infer through the cuda-python backend."""
    cudart = FakeCudart()
    install_cudart(monkeypatch, cudart)
    trt = segmenting_tensorrt(cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    path, _ = engine_file(tmp_path)
    from ros2_fed.engine import Engine

    engine = Engine.open(path, warmup=1, device=0)
    assert isinstance(engine, trt_engine.TensorRTEngine) and engine._cuda.name == "cuda-python"
    rng = np.random.default_rng(0)
    for _ in range(3):
        image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        labels, confidence = engine.infer(image)
        np.testing.assert_array_equal(labels, image[..., 0] % 19)
        np.testing.assert_allclose(confidence, image[..., 1] / 255.0, rtol=1e-6)
        assert confidence.dtype == np.float32
    executed = [c for c in trt.recorder.calls if c[0] == "execute_async_v3"]
    assert executed and all(c[1] == 77 for c in executed), "runs on the engine's own stream"
    engine.close()


def test_cuda_and_execution_failures_are_one_line_engine_errors(tmp_path, monkeypatch) -> None:
    path, _ = engine_file(tmp_path)
    install_cudart(monkeypatch, FakeCudart(fail_malloc=True))
    monkeypatch.setitem(sys.modules, "tensorrt", segmenting_tensorrt(FakeCudart()))
    with pytest.raises(EngineError) as info:
        trt_engine.TensorRTEngine(path)
    assert str(info.value) == f"{path}: CUDA cudaMalloc failed: out of memory"
    cudart = FakeCudart()
    install_cudart(monkeypatch, cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", segmenting_tensorrt(cudart, ok=False))
    engine = trt_engine.TensorRTEngine(path)
    with pytest.raises(
        EngineError,
        match=r"m\.engine: TensorRT execution failed \(execute_async_v3 returned False\)",
    ):
        engine.infer(np.zeros((8, 12, 3), np.uint8))
    wrong_gpu = dict(json.loads((tmp_path / "m.engine.json").read_text()), gpu_name="Orin")
    with pytest.raises(EngineError, match="built for GPU 'Orin', this is 'Fake GPU'"):
        trt_engine.TensorRTEngine(path, wrong_gpu)


def test_tensorrt_engine_opens_and_runs_without_torch(tmp_path) -> None:
    """With cuda-python present, a TensorRT engine never imports torch (the vehicle case)."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np
import pytest
import test_tensorrt_logic as t
from pathlib import Path
mp = pytest.MonkeyPatch()
cudart = t.FakeCudart()
t.install_cudart(mp, cudart)
mp.setitem(sys.modules, "tensorrt", t.segmenting_tensorrt(cudart))
path, _ = t.engine_file(Path({str(tmp_path)!r}))
from ros2_fed.engine import Engine
labels, conf = Engine.open(path).infer(np.full((8, 12, 3), 40, np.uint8))
assert int(labels[0, 0]) == 40 % 19, labels
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_tensorrt_cache_key_asks_cuda_python_for_the_gpu(monkeypatch) -> None:
    """The key of a TensorRT engine names this GPU and TensorRT; cuda-python answers (no torch
    needed)."""
    from ros2_fed.engine.cache import cache_key, engine_cache_key

    install_cudart(monkeypatch, FakeCudart())
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.16.1"))
    key = engine_cache_key("h", 64, 96, 1, "fp16", "tensorrt", 18)
    assert key == cache_key("h", 64, 96, 1, "fp16", "tensorrt", "10.16.1", "Fake GPU", 18, "8.7")
    assert engine_cache_key("h", 64, 96, 1, "fp16", "onnxruntime", 18) != key


def test_failed_build_leaves_the_users_files_alone(tmp_path, use_trt, capsys) -> None:
    """``--runtime tensorrt --out keep.engine`` over an existing keep.onnx / keep.engine pair:
    the ONNX is staged and the build fails, so every file stays as it was (issue 16, finding 3)."""
    import torch

    from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
    from ros2_fed.engine import cli_export
    from ros2_fed.fed import FEDConfig
    from tests.fed_helpers import make_random_fed, save_fed_for

    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(num_classes=19, widths=(8, 16, 32, 32), decoder_channels=16))
    save_tinyseg(tmp_path / "tinyseg", backbone.eval(), (32, 64))
    with torch.no_grad():
        logits, _ = backbone(torch.rand(2, 3, 32, 64) * 255)
    save_fed_for(
        tmp_path / "fed_u",
        make_random_fed(FEDConfig(num_classes=19), logits),
        tmp_path / "tinyseg",
    )
    out = tmp_path / "out"
    out.mkdir()
    before = {
        name: f"the user's {name}".encode()
        for name in ("keep.onnx", "keep.onnx.json", "keep.engine", "keep.engine.json")
    }
    for name, data in before.items():
        (out / name).write_bytes(data)
    argv = [
        "--backbone",
        str(tmp_path / "tinyseg"),
        "--fed",
        str(tmp_path / "fed_u"),
        "--height",
        "32",
        "--width",
        "64",
        "--runtime",
        "tensorrt",
        "--precision",
        "fp32",
        "--out",
        str(out / "keep.engine"),
        "--quiet",
    ]
    use_trt(fake_tensorrt("11.4.1", build_ok=False))
    code = cli_export.main(argv)
    assert code != 0 and "TensorRT failed to build" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary left either

    use_trt(fake_tensorrt("11.4.1"))
    code = cli_export.main(argv)
    assert code == 0 and sorted(p.name for p in out.iterdir()) == sorted(before)
    onnx_side = json.loads((out / "keep.onnx.json").read_text())
    engine_side = json.loads((out / "keep.engine.json").read_text())
    assert engine_side["onnx_sha256"] == onnx_side["file_sha256"] and onnx_side["verified"] is True
    assert (out / "keep.engine").read_bytes() == b"serialized-engine"


# --------------------------------------------------------------------------------------
# INT8: the Q/DQ graph through the same strongly typed build
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory) -> Path:
    """Six synthroad frames in a Cityscapes-layout root (what fed_synthroad writes)."""
    from training.cli_synthroad import main as fed_synthroad

    root = tmp_path_factory.mktemp("calibration")
    argv = ["--out", str(root), "--train", "0", "--val", "6", "--ood", "0", "--size", "64x128"]
    assert fed_synthroad(argv) == 0
    return root


def default_model_argv(out: Path, calibration: Path) -> list[str]:
    from ros2_fed.paths import default_models_dir
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED

    models = default_models_dir()
    if not (models / f"{DEFAULT_BACKBONE}.safetensors").is_file():
        pytest.skip(f"default model not found in {models}")
    return [
        "--backbone",
        str(models / DEFAULT_BACKBONE),
        "--fed",
        str(models / DEFAULT_FED),
        "--height",
        "64",
        "--width",
        "128",
        "--precision",
        "int8",
        "--calibration-data",
        str(calibration),
        "--out",
        str(out),
        "--quiet",
    ]


@pytest.mark.parametrize("version", ["10.16.1", "11.4.1"])
def test_int8_qdq_onnx_builds_strongly_typed_without_int8_flags(
    tmp_path, use_trt, calibration_dir, version
) -> None:
    """fed_export --runtime tensorrt --precision int8: TensorRT's Q/DQ scheme (the fake parser
    applies the real one's rules), a strongly typed network, no INT8 flag or calibrator."""
    from ros2_fed.engine import cli_export
    from ros2_fed.engine.int8 import calibration_set
    from ros2_fed.engine.tensorrt_engine import tensorrt_qdq_problems

    trt = use_trt(fake_tensorrt(version))
    out = tmp_path / "m.engine"
    assert (
        cli_export.main([*default_model_argv(out, calibration_dir), "--runtime", "tensorrt"]) == 0
    )
    calls = trt.recorder.calls
    create = [c for c in calls if c[0] == "create_network"][0]
    assert create == (
        ("create_network", 1 << 5) if version.startswith("10.") else ("create_network",)
    )
    assert not [c for c in calls if c[0] in ("set_flag", "IInt8EntropyCalibrator2")]
    parsed = [c for c in calls if c[0] == "parse_from_file"]
    assert parsed and isinstance(parsed[0][1], str)
    engine_side = json.loads((tmp_path / "m.engine.json").read_text())
    onnx_side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert engine_side["precision"] == "int8" and engine_side["tensorrt_explicit_quantization"]
    assert engine_side["tensorrt_strongly_typed"] is True and onnx_side["verified"] is True
    fingerprint = calibration_set(calibration_dir).fingerprint
    assert engine_side["calibration_fingerprint"] == fingerprint
    assert onnx_side["int8"]["scheme"] == "tensorrt" and onnx_side["int8"]["quantized_ops"]["Conv"]
    assert tensorrt_qdq_problems(tmp_path / "m.onnx") == []
    assert not explicit_quantization_errors(str(tmp_path / "m.onnx"))
    if version.startswith("11."):  # the fake has 11.x's surface: implicit INT8 is gone
        assert not hasattr(trt.BuilderFlag, "INT8") and not hasattr(trt, "IInt8EntropyCalibrator2")
        with pytest.raises(AttributeError):
            trt.Builder(None).create_builder_config().int8_calibrator = object()


def test_int8_graph_of_the_cpu_scheme_is_refused_before_tensorrt_parses(
    tmp_path, use_trt, calibration_dir, monkeypatch
) -> None:
    """An int8 ONNX written for ONNX Runtime (uint8 activations, int32 bias) is named as such in
    one line before TensorRT sees it; past that check the (fake) parser rejects it too."""
    from ros2_fed.engine import cli_export

    onnx_path = tmp_path / "cpu.onnx"
    assert cli_export.main(default_model_argv(onnx_path, calibration_dir)) == 0
    meta = json.loads((tmp_path / "cpu.onnx.json").read_text())
    assert meta["int8"]["scheme"] == "onnxruntime"
    trt = use_trt(fake_tensorrt("11.4.1"))
    with pytest.raises(EngineError) as info:
        trt_engine.build_tensorrt_engine(onnx_path, tmp_path / "m.engine", meta, progress=None)
    assert "not in TensorRT's Q/DQ scheme" in str(info.value)
    assert "--runtime tensorrt --precision int8" in str(info.value) and "\n" not in str(info.value)
    assert not [c for c in trt.recorder.calls if c[0] == "parse_from_file"]
    monkeypatch.setattr(trt_engine, "check_int8_graph", lambda path, metadata: None)
    with pytest.raises(EngineError, match="parser rejected the graph: .*zeroPt must be all zeros"):
        trt_engine.build_tensorrt_engine(onnx_path, tmp_path / "m.engine", meta, progress=None)
    assert not (tmp_path / "m.engine").exists()


# Bugs tried by hand that the earlier fakes let through; each mutant of tensorrt_engine.py
# must fail here, as it would on a vehicle.
MUTATIONS = {
    "float pool size": ("int(workspace_gib * (1 << 30))", "workspace_gib * (1 << 30)"),
    "Path to the parser": ("parse_from_file(str(onnx_path))", "parse_from_file(onnx_path)"),
    "no synchronize": ("            cuda.synchronize(stream)\n", ""),
}


def mutant(name: str) -> types.ModuleType:
    """tensorrt_engine.py with one mutation, loaded as a sibling module of the package."""
    import importlib.util

    before, after = MUTATIONS[name]
    source = Path(trt_engine.__file__).read_text()
    assert source.count(before) == 1, f"mutation {name!r} no longer applies"
    spec = importlib.util.spec_from_loader("ros2_fed.engine._tensorrt_mutant", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "ros2_fed.engine"
    exec(compile(source.replace(before, after), trt_engine.__file__, "exec"), module.__dict__)
    return module


def build_fails(module: types.ModuleType, tmp_path: Path, monkeypatch) -> bool:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.16.1"))
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")
    meta = {"precision": "fp16", "input_tensor_shape": [1, 8, 12, 3], "runtime": "onnxruntime"}
    monkeypatch.setattr(
        module, "select_device", lambda device: {"name": "Fake GPU", "compute_capability": "8.7"}
    )
    try:
        module.build_tensorrt_engine(onnx_path, tmp_path / "m.engine", meta, progress=None)
    except (TypeError, EngineError):
        return True
    return False


def run_is_wrong(module: types.ModuleType, tmp_path: Path, monkeypatch) -> bool:
    cudart = FakeCudart()
    install_cudart(monkeypatch, cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", segmenting_tensorrt(cudart))
    path, _ = engine_file(tmp_path)
    engine = module.TensorRTEngine(path)
    image = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    labels, _ = engine.infer(image)
    return not np.array_equal(labels, image[..., 0] % 19)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_known_bug_fails_against_the_fakes(tmp_path, monkeypatch, name) -> None:
    module = mutant(name)
    check = run_is_wrong if name == "no synchronize" else build_fails
    assert check(module, tmp_path, monkeypatch), f"the {name!r} mutant passed the fakes"
    # the unmutated module passes the same check
    (tmp_path / "ok").mkdir()
    assert not check(trt_engine, tmp_path / "ok", monkeypatch)


def test_float16_confidence_output_is_returned_as_float32(tmp_path, monkeypatch) -> None:
    """An fp16 engine whose confidence tensor is float16: the caller still gets float32."""
    cudart = FakeCudart()
    install_cudart(monkeypatch, cudart)
    trt = segmenting_tensorrt(cudart, confidence_dtype=np.float16)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    path, _ = engine_file(tmp_path)
    engine = trt_engine.TensorRTEngine(path)
    assert engine._host["confidence"].dtype == np.float16
    for seed in range(2):
        image = np.random.default_rng(seed).integers(0, 256, (8, 12, 3), dtype=np.uint8)
        labels, confidence = engine.infer(image)
        assert confidence.dtype == np.float32 and confidence.shape == (8, 12)
        np.testing.assert_array_equal(labels, image[..., 0] % 19)
        np.testing.assert_allclose(confidence, image[..., 1] / 255.0, atol=1e-3)
    engine.close()


def fake_cuda_torch(monkeypatch) -> types.SimpleNamespace:
    """torch with a "cuda" that is host memory: the CUDA calls TorchBackend makes, no GPU."""
    import contextlib

    import torch

    class Stream:
        def __init__(self, device: Any) -> None:
            self.cuda_stream, self.synchronized = 99, 0

        def synchronize(self) -> None:
            self.synchronized += 1

    streams: list[Stream] = []

    def make_stream(device: Any) -> Stream:
        streams.append(Stream(device))
        return streams[-1]

    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 1,
        set_device=lambda device: None,
        get_device_capability=lambda device: (8, 7),
        get_device_name=lambda device: "Fake GPU",
        Stream=make_stream,
        stream=lambda stream: contextlib.nullcontext(),
        streams=streams,
    )
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)  # no CUDA to pin for
    return types.SimpleNamespace(
        cuda=cuda,
        uint8=torch.uint8,
        device=lambda kind, index: torch.device("cpu"),
        empty=torch.empty,
    )


def test_torch_backend_allocates_copies_and_reports_failures(monkeypatch) -> None:
    from ros2_fed.engine.cuda_memory import TorchBackend

    fake = fake_cuda_torch(monkeypatch)
    backend = TorchBackend(fake)
    assert backend.select_device(0) == {"name": "Fake GPU", "compute_capability": "8.7"}
    with pytest.raises(EngineError, match="CUDA device 3 does not exist"):
        backend.select_device(3)
    stream = backend.stream()
    device = backend.device_alloc(24)
    host_in, host_out = (
        backend.host_array((2, 3), "float32"),
        backend.host_array((2, 3), "float32"),
    )
    host_in[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    backend.upload(device, host_in, stream)
    backend.download(host_out, device, stream)
    backend.synchronize(stream)
    np.testing.assert_array_equal(host_out, host_in)
    assert fake.cuda.streams[0].synchronized == 1
    fake.empty = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA out of memory\nmore"))
    with pytest.raises(
        EngineError, match=r"^CUDA allocation failed: RuntimeError: CUDA out of memory$"
    ):
        backend.device_alloc(8)
    backend.close()


def test_engine_runs_through_the_torch_backend_without_cuda_python(tmp_path, monkeypatch) -> None:
    """No cuda-python: CUDA memory comes from torch; the frame goes through torch's buffers."""
    from ros2_fed.engine import cuda_memory

    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: None)
    fake = fake_cuda_torch(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch", fake)

    def execute(addresses: dict[str, int]) -> bool:  # "device" pointers are host addresses here
        image = np.frombuffer(ctypes.string_at(addresses["image"], 8 * 12 * 3), np.uint8)
        image = image.reshape(8, 12, 3)
        labels = (image[..., 0] % 19).astype(np.uint8).tobytes()
        confidence = (image[..., 1] / np.float32(255)).astype(np.float32).tobytes()
        ctypes.memmove(addresses["labels"], labels, len(labels))
        ctypes.memmove(addresses["confidence"], confidence, len(confidence))
        return True

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("11.4.1", on_execute=execute))
    path, _ = engine_file(tmp_path)
    engine = trt_engine.TensorRTEngine(path)
    assert engine._cuda.name == "torch"
    image = np.random.default_rng(2).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    labels, confidence = engine.infer(image)
    np.testing.assert_array_equal(labels, image[..., 0] % 19)
    np.testing.assert_allclose(confidence, image[..., 1] / 255.0, rtol=1e-6)
    assert fake.cuda.streams[0].synchronized >= 1
    engine.close()


def test_gpu_check_reports_a_runtime_that_raises_as_failed(tmp_path, monkeypatch, capsys) -> None:
    """A TensorRT that is installed but breaks is a failure of the GPU check, not a skip."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gpu_check", repo / "benchmarks/gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look it up
    spec.loader.exec_module(gpu_check)

    def broken_tensorrt(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("TensorRT build failed\n[stack]")

    def modes(device: Any, onnxruntime: bool) -> tuple[dict, dict]:
        run = {
            ("torch", "fp32"): gpu_check.torch_runner("fp32"),
            ("TensorRT", "fp16"): broken_tensorrt,
        }
        return run, {"torch-tensorrt": "not installed"}

    monkeypatch.setattr(gpu_check, "modes", modes)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--device", "cpu", "--tiny", "--runs", "1", "--warmup", "0"]
    status = gpu_check.main([*argv, "--frames", "1", "--batch", "0", "--quiet"])
    assert status == 1
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report["failed"]) == {
        f"default (TinySeg) {variant} TensorRT fp16"
        for variant in ("backbone only", "+ FED-U", "+ FED-C")
    }
    assert all(v == "RuntimeError: TensorRT build failed" for v in report["failed"].values())
    assert not any("TensorRT" in k for k in report["skipped"])
    assert "- FAILED default (TinySeg) + FED-U TensorRT fp16" in (out / "gpu_check.md").read_text()
    assert {r["runtime"] for r in report["rows"]} == {"torch"}
