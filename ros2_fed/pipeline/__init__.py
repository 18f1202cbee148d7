"""fed_node's frame path without ROS, shared by the node and the replay (``fed_bag_eval``).

- :mod:`.params` — the parameter table, conversions, the settings they make, ``--help``;
- :mod:`.model_spec` — which engine the parameters select, opening it, its calibration;
- :mod:`.outputs` — the outputs table: name, message type, encoding, renderer, default;
- :mod:`.inference` — the engine at each camera's size, in batches;
- :mod:`.diagnostics` — counters and the pipeline status they make.

Pure python: no rclpy, no torch. The names below are the ones other packages use.
"""

from .diagnostics import PipelineStats
from .inference import engine_shape, infer_at_camera_size, needs_resize, warm_up
from .model_spec import (
    DEFAULT_BACKBONE,
    DEFAULT_FED,
    ModelSpec,
    model_calibration,
    open_engine,
    spec_calibration,
)
from .outputs import OUTPUT_NAMES, OUTPUTS, OutputSettings, viz_palette
from .params import (
    FROM_MODEL,
    NODE_NAME,
    PARAMETER_NAMES,
    PARAMETER_SPECS,
    PARAMETERS,
    StartupError,
    alert_config,
    output_settings,
    parameter_defaults,
    parameter_problems,
    resolve_from_model,
    with_defaults,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_FED",
    "FROM_MODEL",
    "NODE_NAME",
    "OUTPUTS",
    "OUTPUT_NAMES",
    "PARAMETERS",
    "PARAMETER_NAMES",
    "PARAMETER_SPECS",
    "ModelSpec",
    "OutputSettings",
    "PipelineStats",
    "StartupError",
    "alert_config",
    "engine_shape",
    "infer_at_camera_size",
    "model_calibration",
    "needs_resize",
    "open_engine",
    "output_settings",
    "parameter_defaults",
    "parameter_problems",
    "resolve_from_model",
    "spec_calibration",
    "viz_palette",
    "warm_up",
    "with_defaults",
]
