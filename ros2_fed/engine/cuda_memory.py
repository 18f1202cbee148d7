"""CUDA device, stream and memory for the TensorRT runtime, with or without torch.

Why: on a vehicle (Jetson) torch is a heavy, version-fragile dependency that running a
TensorRT engine does not need. NVIDIA's own TensorRT samples drive CUDA through cuda-python
(``cuda.bindings.runtime``; older releases ``cuda.cudart``), so that is used when installed;
torch's CUDA allocator otherwise (it is there wherever the engine was built). Both give the
same interface: select the device (before deserialising), pinned host arrays, raw device
pointers for ``set_tensor_address``, a stream handle for ``execute_async_v3``, async copies.
Every CUDA error becomes an :class:`EngineError` with one line.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .base import EngineError


def cuda_backend() -> "CudaPythonBackend | TorchBackend":
    """cuda-python when importable (no torch), else torch; EngineError when neither can reach
    CUDA."""
    cudart = import_cudart()
    if cudart is not None:
        return CudaPythonBackend(cudart)
    try:
        import torch
    except ImportError as exc:
        raise EngineError(
            "the TensorRT runtime needs cuda-python (pip install cuda-python) or torch for CUDA "
            f"memory ({exc})"
        ) from exc
    if not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA GPU, and torch.cuda.is_available() is False")
    return TorchBackend(torch)


def import_cudart() -> Any:
    """cuda-python's runtime module (new or old layout), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            module = __import__(name, fromlist=["_"])
        except Exception:  # noqa: BLE001 - ImportError, or a cuda-python without a driver
            continue
        return module
    return None


class CudaPythonBackend:
    """cuda-python (``cudart``): raw pointers and pinned host memory, no torch."""

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._streams: list[Any] = []

    def _call(self, what: str, result: Any) -> Any:
        result = result if isinstance(result, tuple) else (result,)
        err, values = result[0], result[1:]
        if err != self.cudart.cudaError_t.cudaSuccess:
            message = self.cudart.cudaGetErrorString(err)
            text = message[1] if isinstance(message, tuple) else message
            text = text.decode() if isinstance(text, bytes) else str(text)
            raise EngineError(f"CUDA {what} failed: {text.splitlines()[0] if text else err}")
        return values[0] if len(values) == 1 else values

    def select_device(self, device: int) -> dict[str, Any]:
        count = self._call("cudaGetDeviceCount", self.cudart.cudaGetDeviceCount())
        if not 0 <= int(device) < int(count):
            raise EngineError(f"CUDA device {device} does not exist (this machine has {count})")
        self._call("cudaSetDevice", self.cudart.cudaSetDevice(int(device)))
        prop = self._call(
            "cudaGetDeviceProperties", self.cudart.cudaGetDeviceProperties(int(device))
        )
        name = (
            prop.name.split(b"\0")[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        )
        return {"name": name, "compute_capability": f"{prop.major}.{prop.minor}"}

    def stream(self) -> int:
        stream = self._call("cudaStreamCreate", self.cudart.cudaStreamCreate())
        self._streams.append(stream)
        return int(stream)

    def device_alloc(self, nbytes: int) -> int:
        ptr = int(self._call("cudaMalloc", self.cudart.cudaMalloc(int(nbytes))))
        self._device_ptrs.append(ptr)
        return ptr

    def host_array(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """A pinned (page-locked) numpy array: async copies need pinned host memory."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self._call("cudaMallocHost", self.cudart.cudaMallocHost(nbytes)))
        self._host_ptrs.append(ptr)
        raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return raw.view(dtype).reshape(shape)

    def upload(self, device_ptr: int, host: np.ndarray, stream: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(
            "cudaMemcpyAsync",
            self.cudart.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, stream),
        )

    def download(self, host: np.ndarray, device_ptr: int, stream: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(
            "cudaMemcpyAsync",
            self.cudart.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, stream),
        )

    def synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", self.cudart.cudaStreamSynchronize(stream))

    def close(self) -> None:
        """Free everything this backend allocated (errors at teardown are ignored)."""
        for ptr in self._device_ptrs:
            self.cudart.cudaFree(ptr)
        for ptr in self._host_ptrs:
            self.cudart.cudaFreeHost(ptr)
        for stream in self._streams:
            self.cudart.cudaStreamDestroy(stream)
        self._device_ptrs, self._host_ptrs, self._streams = [], [], []


class TorchBackend:
    """torch's CUDA allocator and streams behind the same interface (pointers are tensors'
    data_ptr)."""

    name = "torch"

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self._tensors: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}
        self._device: Any = None

    def _guard(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/AcceleratorError
            text = str(exc).strip().splitlines()
            raise EngineError(
                f"CUDA {what} failed: {type(exc).__name__}: {text[0] if text else ''}"
            ) from exc

    def select_device(self, device: int) -> dict[str, Any]:
        count = self.torch.cuda.device_count()
        if not 0 <= int(device) < count:
            raise EngineError(f"CUDA device {device} does not exist (this machine has {count})")
        self._guard("set_device", self.torch.cuda.set_device, int(device))
        self._device = self.torch.device("cuda", int(device))
        major, minor = self.torch.cuda.get_device_capability(int(device))
        return {
            "name": str(self.torch.cuda.get_device_name(int(device))),
            "compute_capability": f"{major}.{minor}",
        }

    def stream(self) -> int:
        stream = self._guard("stream creation", self.torch.cuda.Stream, self._device)
        self._streams[int(stream.cuda_stream)] = stream
        return int(stream.cuda_stream)

    def device_alloc(self, nbytes: int) -> int:
        tensor = self._guard(
            "allocation",
            lambda: self.torch.empty(int(nbytes), dtype=self.torch.uint8, device=self._device),
        )
        self._tensors[int(tensor.data_ptr())] = tensor
        return int(tensor.data_ptr())

    def host_array(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pinned = self._guard(
            "pinned allocation",
            lambda: self.torch.empty(nbytes, dtype=self.torch.uint8).pin_memory(),
        )
        array = pinned.numpy().view(dtype).reshape(shape)
        self._tensors[int(array.ctypes.data)] = pinned  # keep the pinned storage alive
        return array

    def _copy(self, dst: Any, src: Any, stream: int) -> None:
        with self.torch.cuda.stream(self._streams[stream]):
            dst.copy_(src, non_blocking=True)

    def upload(self, device_ptr: int, host: np.ndarray, stream: int) -> None:
        src = self._tensors[int(host.ctypes.data)]
        self._guard(
            "copy to the device",
            self._copy,
            self._tensors[device_ptr][: host.nbytes],
            src[: host.nbytes],
            stream,
        )

    def download(self, host: np.ndarray, device_ptr: int, stream: int) -> None:
        dst = self._tensors[int(host.ctypes.data)]
        self._guard(
            "copy to the host",
            self._copy,
            dst[: host.nbytes],
            self._tensors[device_ptr][: host.nbytes],
            stream,
        )

    def synchronize(self, stream: int) -> None:
        self._guard("stream synchronize", self._streams[stream].synchronize)

    def close(self) -> None:
        self._tensors, self._streams = {}, {}
