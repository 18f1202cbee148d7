"""One record per runtime (torch, onnxruntime, tensorrt, torch-tensorrt): every runtime table is
a view of these records.

Why one record: a runtime used to be spelled in some ten tables over the engine package (names,
suffixes, GPU runtimes, loaders, option spellings, builders, package versions, Q/DQ schemes),
and the tables drifted. Like timm's model registry, :func:`register` files one
:class:`RuntimeRecord` and ``base.RUNTIMES``, ``RUNTIME_BY_SUFFIX``, ``ENGINE_LOADERS``,
``options.runtime_options``, ``export.export_engine``, ``metadata.runtime_version`` and
``int8.SCHEMES`` read it.

Why the records live here and not in their engine modules: ``torch_engine`` imports torch and
the engine modules their runtimes, while reading a table (the node's ``runtime`` parameter,
``Engine.open`` of an ONNX file) must load none of them. So this module imports nothing but the
standard library, and a record names its opener and builder as ``"module:function"``, imported
on first use (:func:`resolve`). The views are built when their modules import: register a new
runtime here, before anything reads the tables.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Union

#: A callable, or ``"package.module:attribute"`` imported when first used.
Target = Union[str, Callable[..., Any]]

#: The ONNX operators every Q/DQ scheme quantises (the backbone's weighted layers).
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class QuantScheme:
    """How one runtime wants its int8 Q/DQ graph (see :mod:`.int8`)."""

    name: str
    symmetric_activations: bool
    op_types: tuple[str, ...]
    extra_options: dict[str, Any]


@dataclass(frozen=True)
class RuntimeRecord:
    """Everything ros2_fed knows about one runtime.

    ``suffixes``: engine file suffixes, the first is what ``fed_export`` writes. ``package``: the
    import name whose ``__version__`` the sidecar and the cache key record. ``gpu``: engines are
    compiled for one GPU model (fp16 by default, the GPU in the cache key). ``open``:
    ``(path, expect, options) -> Engine``. ``export``: ``(detector, path, height, width, **build)
    -> (path, metadata)``. ``options``: ``(device, threads, cpu_spin_wait) -> dict``, the
    runtime's own spelling of the node's settings. ``int8``: its Q/DQ scheme, None = no int8
    engines.
    """

    name: str
    suffixes: tuple[str, ...]
    package: str
    gpu: bool
    open: Target
    export: Target
    options: Callable[[str, int, bool], dict[str, Any]]
    int8: Optional[QuantScheme] = field(default=None)

    @property
    def kinds(self) -> tuple[str, ...]:
        """What ``runtime_options`` accepts for this runtime: its suffixes and ``"." + name``."""
        return (*self.suffixes, "." + self.name)


_RECORDS: dict[str, RuntimeRecord] = {}
#: The registry, read-only: runtime name -> record, in registration order.
RECORDS: Mapping[str, RuntimeRecord] = MappingProxyType(_RECORDS)


def register(record: RuntimeRecord) -> RuntimeRecord:
    """File ``record``; ValueError for a name or suffix another runtime already has."""
    if record.name in _RECORDS:
        raise ValueError(f"runtime {record.name!r} is already registered")
    if not record.suffixes or not all(s.startswith(".") for s in record.suffixes):
        raise ValueError(f"runtime {record.name!r}: suffixes must start with '.'")
    taken = {s: r.name for r in _RECORDS.values() for s in r.suffixes}
    clash = sorted(s for s in record.suffixes if s in taken)
    if clash:
        raise ValueError(f"runtime {record.name!r}: suffix {clash[0]} is {taken[clash[0]]}'s")
    _RECORDS[record.name] = record
    return record


def record(name: str) -> RuntimeRecord:
    """The record of runtime ``name``; ValueError naming the registered ones otherwise."""
    try:
        return _RECORDS[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; expected one of {tuple(_RECORDS)}") from None


def for_kind(kind: str) -> Optional[RuntimeRecord]:
    """The runtime of an engine file suffix (``.onnx``) or ``"." + name``, or None."""
    return next((r for r in _RECORDS.values() if kind in r.kinds), None)


def resolve(target: Target) -> Any:
    """A record's callable: itself, or ``"module:attribute"`` imported now."""
    if callable(target):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def lazy(target: Target) -> Callable[..., Any]:
    """A function that resolves ``target`` when called (so a table of them imports nothing)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return resolve(target)(*args, **kwargs)

    call.__name__ = call.__qualname__ = target if isinstance(target, str) else target.__name__
    return call


# -- option spellings (pure python: the node computes them before any runtime loads) ----------


def cuda_options(device: str, threads: int, cpu_spin_wait: bool) -> dict[str, Any]:
    """TensorRT / torch-tensorrt: a CUDA device index (``cuda:1`` -> 1, ``cuda`` -> 0)."""
    if not device:
        return {}
    return {"device": int(device.split(":")[1]) if ":" in device else 0}


def onnxruntime_options(device: str, threads: int, cpu_spin_wait: bool) -> dict[str, Any]:
    """ONNX Runtime: device, intra-op threads, and whether its threads spin between runs."""
    options: dict[str, Any] = {"device": device} if device else {}
    if threads > 0:
        options["intra_op_threads"] = int(threads)
    options["allow_spinning"] = bool(cpu_spin_wait)
    return options


def torch_options(device: str, threads: int, cpu_spin_wait: bool) -> dict[str, Any]:
    """torch eager: device and CPU threads (spinning is ONNX Runtime's)."""
    options: dict[str, Any] = {"device": device} if device else {}
    if threads > 0:
        options["threads"] = int(threads)
    return options


def plain_options(device: str, threads: int, cpu_spin_wait: bool) -> dict[str, Any]:
    """A kind no runtime claims: the device as given, nothing else."""
    return {"device": device} if device else {}


# -- the built-in runtimes ---------------------------------------------------------------------

#: ONNX Runtime's CPU kernels: uint8 asymmetric activations, so DQ -> Conv -> Q fuses (VNNI).
ORT_INT8 = QuantScheme(
    "onnxruntime",
    symmetric_activations=False,
    op_types=(*WEIGHTED_OPS, "Resize", "Concat"),
    extra_options={"WeightSymmetric": True},
)
#: TensorRT's explicit quantisation: symmetric int8, weighted layers only, float bias.
TRT_INT8 = QuantScheme(
    "tensorrt",
    symmetric_activations=True,
    op_types=WEIGHTED_OPS,
    extra_options={
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
    },
)


def _shipped(
    name: str,
    suffixes: tuple[str, ...],
    package: str,
    gpu: bool,
    entry: str,
    options: Callable[[str, int, bool], dict[str, Any]],
    int8: Optional[QuantScheme] = None,
) -> None:
    """A runtime ros2_fed ships: opened by ``registry.open_<entry>``, built by
    ``export.build_<entry>``."""
    opener, builder = (
        f"ros2_fed.engine.registry:open_{entry}",
        f"ros2_fed.engine.export:build_{entry}",
    )
    register(RuntimeRecord(name, suffixes, package, gpu, opener, builder, options, int8))


_shipped("torch", (".safetensors",), "torch", False, "torch_bundle", torch_options)
_shipped("onnxruntime", (".onnx",), "onnxruntime", False, "onnx", onnxruntime_options, ORT_INT8)
_shipped("tensorrt", (".engine", ".plan"), "tensorrt", True, "tensorrt", cuda_options, TRT_INT8)
_shipped("torch-tensorrt", (".ep",), "torch_tensorrt", True, "torch_tensorrt", cuda_options)
