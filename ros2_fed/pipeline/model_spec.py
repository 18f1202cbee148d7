"""Which engine the parameters select (:class:`ModelSpec`), opening it, and its calibration.

Why together: the node and the replay must open the same engine for the same parameters (the
default model in ``models/``, the cached engine's size and batch, the score check) and read the
same operating point from it (:func:`model_calibration`), or a replayed number would not be
the node's. Pure python: opening an ``.onnx`` or TensorRT engine needs no torch; only building
a missing cached engine does, inside ``ros2_fed.engine``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from ros2_fed.engine import Engine, open_cached
from ros2_fed.engine.base import InferenceEngine, read_sidecar
from ros2_fed.engine.options import runtime_options
from ros2_fed.names import BASELINE_SCORES
from ros2_fed.paths import default_models_dir

from .params import StartupError, with_defaults

DEFAULT_BACKBONE = "tinyseg_synthroad"  # the embedded default model (models/)
DEFAULT_FED = "fed_c_synthroad"  # the ablation's winner (docs/fed_ablation.md)
DEFAULT_RUNTIME = "onnxruntime"


def checkpoint_exists(path: Union[str, Path]) -> bool:
    """A checkpoint as the loaders take it: NAME(.safetensors) + NAME.json, a file (.pth) or a
    folder."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return (
        path.is_dir()
        or (path.is_file() and path.suffix != ".json")
        or stem.with_name(stem.name + ".safetensors").is_file()
    )


@dataclass(frozen=True)
class ModelSpec:
    """The engine the parameters select: ``engine_path``, or the cached engine for
    ``backbone`` + ``fed`` at ``height`` x ``width`` (0 = the camera size, see
    :meth:`resolved`)."""

    engine_path: str = ""
    backbone: str = ""
    fed: str = ""
    height: int = 0
    width: int = 0
    runtime: str = ""
    score: str = ""
    threads: int = 0
    device: str = ""
    cpu_spin_wait: bool = False
    batch: int = 1  # of the cached engine (one frame per camera); an engine file fixes its own
    precision: str = "fp32"  # of the cached engine; an engine file carries its own
    calibration: str = ""  # int8: the calibration images' folder

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ModelSpec":
        """The node's engine parameters (defaults for those not given)."""
        p = with_defaults(params)
        return cls(
            engine_path=str(p["engine_path"]),
            backbone=str(p["model.backbone"]),
            fed=str(p["model.fed"]),
            height=int(p["model.height"]),
            width=int(p["model.width"]),
            runtime=str(p["runtime"]),
            score=str(p["score"]),
            threads=int(p["threads"]),
            device=str(p["device"]),
            cpu_spin_wait=bool(p["cpu_spin_wait"]),
            batch=max(1, len(p["cameras"])),
            precision=str(p["precision"]),
            calibration=str(p["calibration_data"]),
        )

    def resolved(self, height: int = 0, width: int = 0) -> "ModelSpec":
        """Defaults filled in (default model, camera size ``height`` x ``width`` when the spec has
        none, onnxruntime, score fed); StartupError naming the file that is missing."""
        spec = self
        if (not spec.height or not spec.width) and height and width:
            spec = replace(spec, height=int(height), width=int(width))
        if spec.engine_path:  # the file fixes the size
            if not Path(spec.engine_path).is_file():
                raise StartupError(f"engine file not found: {spec.engine_path}")
            return spec
        if not spec.height or not spec.width:
            raise StartupError("no engine input size: set model.height and model.width")
        if spec.calibration and not Path(spec.calibration).is_dir():
            raise StartupError(f"calibration_data folder not found: {spec.calibration}")
        backbone, fed = spec.backbone, spec.fed
        if not backbone:
            models = default_models_dir()
            backbone = str(models / DEFAULT_BACKBONE)
            fed = fed or str(models / DEFAULT_FED)
        for name, path in (("model.backbone", backbone), ("model.fed", fed)):
            if path and not checkpoint_exists(path):
                raise StartupError(
                    f"{name} checkpoint not found: {path} (neither a file, a folder nor "
                    f"{Path(path).name}.safetensors)"
                )
        score = spec.score or ("fed" if fed else "")
        if not score:
            raise StartupError(
                f"model.fed is empty (backbone {backbone} alone): set score to a baseline "
                f"({', '.join(BASELINE_SCORES)})"
            )
        return replace(
            spec,
            backbone=backbone,
            fed=fed if score == "fed" else "",
            score=score,
            runtime=spec.runtime or DEFAULT_RUNTIME,
        )

    def runtime_options(self) -> dict[str, Any]:
        """device / threads / spinning in the spelling of the runtime the file suffix (or runtime)
        names."""
        kind = (
            Path(self.engine_path).suffix
            if self.engine_path
            else "." + (self.runtime or DEFAULT_RUNTIME)
        )
        return runtime_options(kind, self.device, self.threads, self.cpu_spin_wait)

    def node_params(self) -> dict[str, Any]:
        """The fed_node parameters that select this engine (``-p`` for a node process)."""
        params: dict[str, Any] = {"engine_path": self.engine_path}
        if not self.engine_path:
            params.update(
                {
                    "model.backbone": self.backbone,
                    "model.fed": self.fed if self.score == "fed" else "",
                    "model.height": int(self.height),
                    "model.width": int(self.width),
                    "precision": self.precision,
                    "calibration_data": self.calibration,
                }
            )
        params.update(
            runtime=self.runtime,
            score=self.score,
            device=self.device,
            threads=int(self.threads),
            cpu_spin_wait=bool(self.cpu_spin_wait),
        )
        return params

    def describe(self) -> str:
        if self.engine_path:
            return (
                f"engine {self.engine_path} ({self.runtime or 'runtime from file'}, "
                f"score {self.score or 'from engine'})"
            )
        fed = Path(self.fed).name if self.fed and self.score == "fed" else "no FED"
        batch = f", batch {self.batch}" if self.batch > 1 else ""
        size = f"{self.height}x{self.width}{batch}"
        precision = f", {self.precision}" if self.precision != "fp32" else ""
        return (
            f"{Path(self.backbone).name} + {fed} ({self.score}, {self.runtime}{precision}, {size})"
        )


def check_score(engine: InferenceEngine, spec: ModelSpec) -> None:
    """An engine file must compute the score the parameters ask for (empty = any)."""
    have = engine.metadata.get("score")
    if spec.score and have != spec.score:
        raise StartupError(
            f"engine {spec.engine_path} computes score {have!r}, parameter score asks for "
            f"{spec.score!r}: export an engine with that score or clear the parameter"
        )


def open_engine(
    spec: ModelSpec, progress: Optional[Callable[[str], None]] = None
) -> InferenceEngine:
    """The engine for a :meth:`ModelSpec.resolved` spec, without warm-up (the caller times its
    own).

    An existing ``.onnx`` / TensorRT engine opens without importing torch; only building a
    missing cached engine does. Every failure is a StartupError naming the file or model.
    """
    options = spec.runtime_options()
    if spec.engine_path:
        if not Path(spec.engine_path).is_file():
            raise StartupError(
                f"engine file not found: {spec.engine_path}"
            )  # before the runtime imports
        runtime = spec.runtime or None
        try:
            engine = Engine.open(spec.engine_path, runtime=runtime, warmup=0, **options)
        except (
            Exception
        ) as exc:  # EngineError names the file; anything else is wrapped the same way
            raise StartupError(
                f"cannot load engine {spec.engine_path} (runtime {runtime or 'from file type'}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        check_score(engine, spec)
        return engine
    if progress:  # a miss says so itself (engine cache miss ...: building), a hit below
        progress(f"opening the cached engine for {spec.describe()}")
    try:
        engine = open_cached(
            spec.backbone,
            spec.fed or None,
            height=int(spec.height),
            width=int(spec.width),
            runtime=spec.runtime,
            score=spec.score,
            batch=int(spec.batch),
            precision=spec.precision,
            calibration=spec.calibration or None,
            warmup=0,
            progress=progress,
            **options,
        )
    except Exception as exc:
        raise StartupError(
            f"cannot build/open the engine for {spec.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    if progress and getattr(engine, "cache_hit", False):
        progress(f"engine cache hit: {getattr(engine, 'path', '')}")
    return engine


def model_calibration(metadata: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The FED operating point an engine carries (``fed_calibrate``), or {} for an uncalibrated
    one."""
    detector = (metadata or {}).get("detector") or {}
    return dict(detector.get("calibration") or {})


def spec_calibration(spec: ModelSpec) -> dict[str, Any]:
    """The operating point the engine for a resolved ``spec`` carries, read from its files
    (engine sidecar, else the FED checkpoint's JSON) without opening anything."""
    if spec.engine_path:
        return model_calibration(read_sidecar(spec.engine_path))
    if not spec.fed or spec.score != "fed":
        return {}
    path = Path(spec.fed)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    sidecar = stem.with_name(stem.name + ".json")
    if not sidecar.is_file():
        return {}
    return dict(json.loads(sidecar.read_text()).get("calibration") or {})
