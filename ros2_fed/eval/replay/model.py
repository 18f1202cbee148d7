"""What model a replay runs, said once for both modes: node parameters <-> an in-process engine.

:class:`ModelSpec` is the subset of ``fed_node`` parameters that picks the engine
(``engine_path`` or ``model.backbone`` + ``model.fed`` at ``model.height`` x ``model.width``,
``runtime``, ``score``, ``threads``, ``device``, ``cpu_spin_wait``). ``--live`` hands it to the node as
``-p name:=value``; ``--offline`` opens the very same engine in-process the way the node does
(:func:`open_engine`, same cache, same runtime options) and runs it at the camera size the way
the node does (:func:`infer_like_node`, host resize when the engine was built for another size).
Pure python: no rclpy here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ros2_fed.engine.options import runtime_options
from ros2_fed.paths import default_models_dir

DEFAULT_BACKBONE = "tinyseg_synthroad"  # the embedded default model (same names as ros2_fed.node)
DEFAULT_FED = "fed_u_synthroad"
PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------
# Node parameters
# --------------------------------------------------------------------------------------


def flatten_params(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ROS parameter YAML ({"alerts": {"confidence_threshold": ..}}) -> dotted names."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = value
    return out


def read_params_file(path: PathLike, node_name: str = "fed_node") -> dict[str, Any]:
    """Flat {name: value} from a ROS 2 parameter YAML (``/**`` and ``fed_node`` sections)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the parameter file ({exc})") from None
    params: dict[str, Any] = {}
    for key, section in data.items():
        name = str(key).strip("/").split("/")[-1]
        if str(key) in ("/**", "**") or name == node_name:
            if not isinstance(section, dict) or "ros__parameters" not in section:
                raise ValueError(f"{path}: section {key!r} has no ros__parameters")
            params.update(flatten_params(section["ros__parameters"]))
    return params


def parse_param(text: str) -> tuple[str, Any]:
    """``name:=value`` or ``name=value`` -> (name, YAML-typed value), like ``-p`` on the command line."""
    import yaml

    sep = ":=" if ":=" in text else "="
    if sep not in text:
        raise ValueError(f"parameter {text!r} is not NAME:=VALUE")
    name, value = text.split(sep, 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


def param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    engine_path: str = ""
    backbone: str = ""
    fed: str = ""
    height: int = 0  # 0 = the camera size
    width: int = 0
    runtime: str = ""
    score: str = ""
    threads: int = 0
    device: str = ""
    cpu_spin_wait: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self, height: int, width: int) -> "ModelSpec":
        """Defaults filled in as the node fills them (default model, camera size, onnxruntime, fed)."""
        spec = ModelSpec(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        spec.extra = dict(self.extra)
        if not spec.height or not spec.width:
            spec.height, spec.width = int(height), int(width)
        if not spec.engine_path:
            if not spec.backbone:
                models = default_models_dir()
                spec.backbone = str(models / DEFAULT_BACKBONE)
                spec.fed = spec.fed or str(models / DEFAULT_FED)
            spec.runtime = spec.runtime or "onnxruntime"
            spec.score = spec.score or ("fed" if spec.fed else "")
            if not spec.score:
                raise ValueError("no FED checkpoint (--fed) and no --score: pick a baseline score "
                                 "(msp, maxlogit, energy, entropy, sml, none)")
        return spec

    def node_params(self) -> dict[str, Any]:
        """``-p`` parameters that make fed_node open this model."""
        params: dict[str, Any] = {"engine_path": self.engine_path}
        if not self.engine_path:
            params.update({"model.backbone": self.backbone, "model.fed": self.fed if self.score == "fed" else "",
                           "model.height": int(self.height), "model.width": int(self.width)})
        for key in ("runtime", "score", "device"):
            params[key] = getattr(self, key)
        params["threads"] = int(self.threads)
        params["cpu_spin_wait"] = bool(self.cpu_spin_wait)
        return params

    def describe(self) -> str:
        if self.engine_path:
            return f"engine {self.engine_path} ({self.runtime or 'runtime from file'}, score {self.score or 'from engine'})"
        fed = Path(self.fed).name if self.fed and self.score == "fed" else "no FED"
        return (f"{Path(self.backbone).name} + {fed} ({self.score}, {self.runtime}, "
                f"{self.height}x{self.width})")

    @property
    def fed_variant(self) -> Optional[str]:
        """FED-U / FED-C of the FED checkpoint (None without one)."""
        if not self.fed or self.score != "fed":
            return None
        import json

        from ros2_fed.checkpoint import checkpoint_paths

        try:
            meta = json.loads(checkpoint_paths(self.fed)[1].read_text())
            return str(meta.get("variant") or ("FED-C" if meta.get("config", {}).get("cond_dim", 0) else "FED-U"))
        except (OSError, ValueError):
            return "FED"


def spec_runtime_options(spec: ModelSpec) -> dict[str, Any]:
    """The options fed_node passes to its engine for these parameters (node defaults otherwise)."""
    kind = Path(spec.engine_path).suffix if spec.engine_path else "." + (spec.runtime or "onnxruntime")
    return runtime_options(kind, spec.device, spec.threads, spec.cpu_spin_wait)


def open_engine(spec: ModelSpec, progress: Optional[Callable[[str], None]] = None) -> Any:
    """The engine fed_node would open for these parameters (``spec`` already :meth:`resolved`)."""
    from ros2_fed.engine import Engine, open_cached

    options = spec_runtime_options(spec)
    if spec.engine_path:
        engine = Engine.open(spec.engine_path, runtime=spec.runtime or None, warmup=0, **options)
        have = (getattr(engine, "metadata", {}) or {}).get("score")
        if spec.score and have != spec.score:
            raise ValueError(f"engine {spec.engine_path} computes score {have!r}, not {spec.score!r}")
        return engine
    fed = spec.fed if spec.score == "fed" else None
    return open_cached(spec.backbone, fed, height=int(spec.height), width=int(spec.width), runtime=spec.runtime,
                       score=spec.score, warmup=0, progress=progress, **options)


def engine_shape(engine: Any) -> Optional[tuple[int, int]]:
    shape = getattr(engine, "input_shape", None)
    if shape is not None and len(tuple(shape)) >= 2:
        dims = tuple(int(v) for v in tuple(shape)[:2])
        return dims if all(d > 0 for d in dims) else None  # type: ignore[return-value]
    return None


def infer_like_node(engine: Any, rgb: np.ndarray, shape: Optional[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """fed_node's ``_infer``: engine at the camera size, host resize when it was built for another."""
    h, w = rgb.shape[:2]
    if shape is None or tuple(shape) == (h, w):
        labels, confidence = engine.infer(np.ascontiguousarray(rgb))
    else:
        import cv2

        small = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        labels, confidence = engine.infer(small)
        labels = cv2.resize(np.ascontiguousarray(labels), (w, h), interpolation=cv2.INTER_NEAREST)
        confidence = cv2.resize(np.ascontiguousarray(confidence, dtype=np.float32), (w, h),
                                interpolation=cv2.INTER_LINEAR)
    return (np.ascontiguousarray(labels, dtype=np.uint8), np.ascontiguousarray(confidence, dtype=np.float32))
