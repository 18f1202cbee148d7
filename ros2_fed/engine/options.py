"""Runtime keyword options from node-style settings, in each runtime's own spelling.

Why one place: fed_node and the replay tool's in-process engine must open an engine exactly
alike (same threads, same spinning), or replayed numbers and timings would not be the node's.
"""

from __future__ import annotations

from typing import Any

TENSORRT_KINDS = (".engine", ".plan", ".tensorrt", ".ep", ".torch-tensorrt")  # CUDA device index
ONNX_KINDS = (".onnx", ".onnxruntime")
TORCH_KINDS = (".safetensors", ".torch")


def runtime_options(
    kind: str, device: str = "", threads: int = 0, cpu_spin_wait: bool = False
) -> dict[str, Any]:
    """Options for ``Engine.open`` / ``open_cached``.

    ``kind`` is an engine file suffix (``.onnx``) or ``"." + runtime`` (``.onnxruntime``).
    ``cpu_spin_wait=False`` stops ONNX Runtime's CPU threads from busy-waiting after each
    operator and run: a node shares its cores with decoding, visualisation and DDS, which
    spinning threads would slow down (TensorRT and torch ignore it).
    """
    options: dict[str, Any] = {}
    if kind in TENSORRT_KINDS:
        if device:
            options["device"] = int(device.split(":")[1]) if ":" in device else 0
    elif device:
        options["device"] = device
    if threads > 0 and kind in TORCH_KINDS:
        options["threads"] = int(threads)
    elif kind in ONNX_KINDS:
        if threads > 0:
            options["intra_op_threads"] = int(threads)
        options["allow_spinning"] = bool(cpu_spin_wait)
    return options
