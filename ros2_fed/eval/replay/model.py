"""The fed_node parameters a replay runs with, read the way the node reads them.

What engine they select, its defaults and how it is opened and run are the node's own
(:mod:`ros2_fed.pipeline`: :class:`~ros2_fed.pipeline.ModelSpec`, ``open_engine``,
``infer_at_camera_size``); this module only reads parameters from a ROS 2 parameter YAML and
``-p NAME:=VALUE`` arguments, writes them back as ``-p`` text for a node process, and names
the FED variant of a checkpoint for the report. Pure python: no rclpy here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from ros2_fed.pipeline.model_spec import ModelSpec
from ros2_fed.pipeline.params import NODE_NAME

PathLike = Union[str, Path]


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


def read_params_file(path: PathLike, node_name: str = NODE_NAME) -> dict[str, Any]:
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
    """``name:=value`` or ``name=value`` -> (name, YAML-typed value), like ``-p`` on the command
    line."""
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
    """A value as ``-p NAME:=TEXT`` for a node process."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


def fed_variant(spec: ModelSpec) -> Optional[str]:
    """FED-U / FED-C of the spec's FED checkpoint (None without one), from its JSON metadata."""
    if not spec.fed or spec.score != "fed":
        return None
    from ros2_fed.checkpoint import checkpoint_paths

    try:
        meta = json.loads(checkpoint_paths(spec.fed)[1].read_text())
        return str(
            meta.get("variant")
            or ("FED-C" if meta.get("config", {}).get("cond_dim", 0) else "FED-U")
        )
    except (OSError, ValueError):
        return "FED"
