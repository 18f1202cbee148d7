"""torch-tensorrt runtime: the fused detector compiled by torch-tensorrt's dynamo path.

Why a second TensorRT route: torch-tensorrt compiles the PyTorch module itself (no ONNX
step), falls back to PyTorch for any op TensorRT cannot take, and runs where torch runs. It
compiles the same typed graph as the ONNX export (:func:`.mixed_precision.export_graph`:
uint8 cast first; for fp16 a float16 backbone and a float32 FED), with
``torch_tensorrt.compile(..., ir="dynamo")``, which respects those dtypes (explicit typing).
The compiled program is saved with ``torch_tensorrt.save(..., output_format="exported_program")``
as ``NAME.ep`` + the usual JSON sidecar and loaded with ``torch.export.load``; the engine
cache keys it like a TensorRT engine (torch-tensorrt version, GPU name, compute capability,
precision, size).

Importing torch_tensorrt without a GPU or without TensorRT's libraries raises a plain
``Exception`` ("Could not find libnvinfer..."), not ImportError: :func:`import_torch_tensorrt`
turns any failure into an :class:`EngineError` with one line. Needs torch (this route is
torch by definition).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from .base import (
    Engine,
    EngineError,
    PathLike,
    check_file_integrity,
    install_engine_file,
    read_sidecar,
)
from .tensorrt_engine import check_gpu, one_line

if TYPE_CHECKING:  # pragma: no cover
    from ros2_fed.detector import FusedDetector

SUFFIX = ".ep"


def import_torch_tensorrt() -> Any:
    """``import torch_tensorrt`` or an EngineError naming what failed (any exception type)."""
    try:
        import torch_tensorrt  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - torch_tensorrt raises a bare Exception without libnvinfer
        raise EngineError(
            "torch-tensorrt is not usable here: it needs a CUDA GPU, TensorRT's libraries and the "
            "torch version it "
            f"was built for; or pick runtime 'tensorrt' / 'onnxruntime' ({one_line(exc)})"
        ) from exc
    return torch_tensorrt


def build_torch_tensorrt(
    detector: FusedDetector,
    path: PathLike,
    height: int,
    width: int,
    *,
    batch: int = 1,
    precision: str = "fp16",
    model_hash: Optional[str] = None,
    extra_metadata: Optional[dict[str, Any]] = None,
    progress: Optional[Callable[[str], None]] = print,
    device: int = 0,
    verify: bool = True,
    override: str = "--no-verify",
) -> tuple[Path, dict[str, Any]]:
    """Compile ``detector`` for (batch, height, width) on CUDA ``device``; writes ``path`` (.ep)
    + sidecar.

    ``verify``: the compiled module's output on seeded noise frames against the eager detector
    (``verify.verify_outputs``) before the file is moved into place."""
    from ros2_fed.fileio import temporary_sibling

    from .metadata import check_precision
    from .mixed_precision import export_graph

    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: a torch-tensorrt program ends in {SUFFIX}")
    check_precision(precision)
    if precision == "int8":  # a Q/DQ graph is built by --runtime tensorrt (engine/int8.py)
        raise ValueError("INT8 is not supported by torch-tensorrt: use --runtime tensorrt")
    torch_tensorrt = import_torch_tensorrt()
    gpu = _select_device(device)
    import torch

    detector = detector.freeze()
    shape = {"height": height, "width": width, "batch": batch}
    meta = _program_metadata(detector, gpu, precision, shape, model_hash, extra_metadata, verify)
    if progress:
        progress(
            f"compiling with torch-tensorrt {torch_tensorrt.__version__} ({precision}, "
            f"{height}x{width}) "
            f"on {gpu['name']}, this takes minutes ..."
        )
    cuda = torch.device("cuda", int(device))
    graph = export_graph(detector, precision).to(cuda)
    example = torch.zeros((batch, height, width, 3), dtype=torch.uint8, device=cuda)
    tmp = temporary_sibling(path)
    try:
        compiled = _compile_and_save(torch_tensorrt, graph, example, tmp, path)
        if verify:
            _verify_compiled(compiled, detector, example, path, precision, override)
        install_engine_file(tmp, path, meta)
    finally:
        tmp.unlink(missing_ok=True)
    if progress:
        progress(f"torch-tensorrt program written to {path}")
    return path, meta


def _program_metadata(
    detector: FusedDetector,
    gpu: dict[str, Any],
    precision: str,
    shape: dict[str, int],
    model_hash: Optional[str],
    extra_metadata: Optional[dict[str, Any]],
    verify: bool,
) -> dict[str, Any]:
    """The sidecar: the engine metadata for the GPU the program is compiled on (and only valid
    on). ``shape``: height, width and batch."""
    from .metadata import sidecar_metadata

    meta = sidecar_metadata(
        detector,
        runtime="torch-tensorrt",
        precision=precision,
        height=shape["height"],
        width=shape["width"],
        batch=shape["batch"],
        model_hash=model_hash,
        opset=None,
        extra=extra_metadata,
    )
    meta.update(
        gpu_name=gpu["name"],
        gpu_compute_capability=gpu["compute_capability"],
        verified=bool(verify),
    )
    return meta


def _compile_and_save(torch_tensorrt: Any, graph: Any, example: Any, tmp: Path, path: Path) -> Any:
    """torch-tensorrt's dynamo compile, saved as an exported program to ``tmp``; any failure is
    one EngineError line."""
    try:
        compiled = torch_tensorrt.compile(graph, ir="dynamo", arg_inputs=[example])
        torch_tensorrt.save(
            compiled, str(tmp), output_format="exported_program", arg_inputs=[example]
        )
    except Exception as exc:  # noqa: BLE001 - TensorRT/export errors of many types: one line
        raise EngineError(f"{path}: torch-tensorrt compilation failed: {one_line(exc)}") from exc
    return compiled


def _verify_compiled(
    compiled: Any,
    detector: FusedDetector,
    example: Any,
    path: Path,
    precision: str,
    override: str,
) -> None:
    """The compiled module on the seeded noise frames of every build's check against the eager
    detector, on the same GPU."""
    import torch

    from .verify import verification_example, verify_outputs

    cuda = example.device
    check = verification_example(*(int(v) for v in example.shape[:3]), device=cuda)
    with torch.no_grad():
        labels, confidence = compiled(check)
    verify_outputs(
        labels.cpu().numpy(),
        confidence.float().cpu().numpy(),
        detector.to(cuda),
        check,
        path,
        "torch-tensorrt",
        precision,
        override,
    )


def _select_device(device: int) -> dict[str, Any]:
    """torch's current CUDA device (this runtime is torch): name and compute capability."""
    import torch

    from .cuda_memory import TorchBackend

    if not torch.cuda.is_available():
        raise EngineError(
            "torch-tensorrt needs a CUDA GPU, and torch.cuda.is_available() is False"
        )
    return TorchBackend(torch).select_device(device)


class TorchTensorRTEngine(Engine):
    """A saved torch-tensorrt exported program, loaded on CUDA ``device`` and run on a
    pinned-buffer path."""

    runtime = "torch-tensorrt"

    def __init__(
        self, path: PathLike, metadata: Optional[dict[str, Any]] = None, *, device: int = 0
    ) -> None:
        path = Path(path)
        metadata = metadata if metadata is not None else read_sidecar(path)
        super().__init__(path, metadata)
        check_file_integrity(path, metadata)
        try:
            torch_tensorrt = (
                import_torch_tensorrt()
            )  # registers the TensorRT ops the program calls
            gpu = _select_device(device)
        except EngineError as exc:
            raise EngineError(f"{path}: {exc}") from exc
        if str(metadata.get("runtime_version")) != str(torch_tensorrt.__version__):
            raise EngineError(
                f"{path}: compiled with torch-tensorrt {metadata.get('runtime_version')}, this is "
                f"{torch_tensorrt.__version__}: rebuild (fed_export or the engine cache)"
            )
        check_gpu(path, metadata, gpu)
        import torch

        self._torch = torch
        self._device = torch.device("cuda", int(device))
        try:
            self._module = torch.export.load(str(path)).module()
            shape = self._tensor_shape
            self._in_host = torch.empty(shape, dtype=torch.uint8).pin_memory()
            self._in_dev = torch.empty(shape, dtype=torch.uint8, device=self._device)
            self._labels_host = torch.empty(shape[:3], dtype=torch.uint8).pin_memory()
            self._conf_host = torch.empty(shape[:3], dtype=torch.float32).pin_memory()
        except Exception as exc:  # noqa: BLE001
            raise EngineError(
                f"{path}: cannot load the torch-tensorrt program: {one_line(exc)}"
            ) from exc

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        try:
            with torch.inference_mode():
                self._in_host.numpy()[...] = batch
                self._in_dev.copy_(self._in_host, non_blocking=True)
                labels, confidence = self._module(self._in_dev)
                self._labels_host.copy_(labels, non_blocking=True)
                self._conf_host.copy_(confidence, non_blocking=True)
                torch.cuda.current_stream(self._device).synchronize()
        except Exception as exc:  # noqa: BLE001
            raise EngineError(
                f"{self._path}: torch-tensorrt inference failed: {one_line(exc)}"
            ) from exc
        return self._labels_host.numpy(), self._conf_host.numpy()

    def close(self) -> None:
        self._module = None
