"""Runtime keyword options from node-style settings, in each runtime's own spelling.

Why one place: fed_node and the replay tool's in-process engine must open an engine exactly
alike (same threads, same spinning), or replayed numbers and timings would not be the node's.
"""

from __future__ import annotations

from typing import Any

from .runtimes import RECORDS, for_kind, plain_options, record

# Views of the runtime records: the kinds (suffixes and "." + name) each spelling applies to.
TENSORRT_KINDS = tuple(k for r in RECORDS.values() if r.gpu for k in r.kinds)
ONNX_KINDS = record("onnxruntime").kinds
TORCH_KINDS = record("torch").kinds


def runtime_options(
    kind: str, device: str = "", threads: int = 0, cpu_spin_wait: bool = False
) -> dict[str, Any]:
    """Options for ``Engine.open`` / ``open_cached``: the record's ``options`` for ``kind``.

    ``kind`` is an engine file suffix (``.onnx``) or ``"." + runtime`` (``.onnxruntime``).
    ``cpu_spin_wait=False`` stops ONNX Runtime's CPU threads from busy-waiting after each
    operator and run: a node shares its cores with decoding, visualisation and DDS, which
    spinning threads would slow down (TensorRT and torch ignore it).
    """
    found = for_kind(kind)
    spell = found.options if found is not None else plain_options
    return spell(device, int(threads), bool(cpu_spin_wait))
