"""The rclpy side of the pipeline's plain types, for fed_node.

Why apart from the node: the node's module is its wiring (who subscribes, which thread does
what); how a :class:`~ros2_fed.pipeline.params.ParamSpec` becomes a ParameterDescriptor, a
reliability name a QoS profile, a :class:`~ros2_fed.health.Status` a DiagnosticStatus and an
output payload its message are conversions, said once here. With ros2_fed/node.py the only
module of the installed node that imports rclpy (the replay's live mode has its own).
"""

from __future__ import annotations

from typing import Any, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point32, PolygonStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64

from ros2_fed import codec
from ros2_fed.cameras import output_topic
from ros2_fed.health import Status
from ros2_fed.messages import encode_compressed
from ros2_fed.pipeline.outputs import (
    COMPRESSED_SUFFIX,
    DIAGNOSTICS_MESSAGE,
    IMAGE_MESSAGE,
    OUTPUTS,
    POLYGON_MESSAGE,
    Output,
    OutputSettings,
)
from ros2_fed.pipeline.params import (
    PARAMETER_SPECS,
    PARAMETERS,
    ParamSpec,
    ParamValue,
    StartupError,
    given_value_problems,
)

PARAMETER_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    tuple: ParameterType.PARAMETER_STRING_ARRAY,
}


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor for a spec (description, type, range, read_only)."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=PARAMETER_TYPES[type(spec.default)],
        description=spec.description,
        read_only=spec.read_only,
    )
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(repr(c) for c in spec.choices)
    if spec.range is not None and isinstance(spec.default, int):
        low, high = int(spec.range[0]), int(spec.range[1])
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    elif spec.range is not None:
        low, high = float(spec.range[0]), float(spec.range[1])
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=low, to_value=high, step=0.0)
        ]
    return descriptor


def coerced(param: Parameter) -> Parameter:
    """``param`` in its spec's type (an integer for a float parameter becomes a double)."""
    spec = PARAMETER_SPECS.get(param.name)
    if spec is None or param.type_ == Parameter.Type.NOT_SET:
        return param
    value = spec.coerce(param.value)
    return param if value is param.value else Parameter(param.name, value=value)


def qos(reliability: str, depth: int = 10) -> QoSProfile:
    policy = (
        ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=policy,
        durability=DurabilityPolicy.VOLATILE,
    )


RELIABLE = qos("reliable")  # alerts and diagnostics: always reliable


def to_status(status: Status) -> DiagnosticStatus:
    """A pipeline status as the ROS message (levels are bytes in rclpy)."""
    return DiagnosticStatus(
        level=bytes([int(status.level)]),
        name=status.name,
        message=status.message,
        hardware_id=status.hardware_id,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in status.values.items()],
    )


MESSAGE_CLASSES = {
    IMAGE_MESSAGE: Image,
    DIAGNOSTICS_MESSAGE: DiagnosticArray,
    POLYGON_MESSAGE: PolygonStamped,
}
CAMERA_INFO = "camera_info"  # input topic next to the image, and the output ~/camera_info
#: Per-frame latency, as Autoware's nodes publish it (its tier4_debug_msgs/Float64Stamped is
#: not a standard package): std_msgs/Float64 in milliseconds.
PROCESSING_TIME = "debug/processing_time_ms"  # frame received -> its outputs published
PIPELINE_LATENCY = "debug/pipeline_latency_ms"  # the frame's header stamp -> published
LATENCY_TOPICS = (PROCESSING_TIME, PIPELINE_LATENCY)


def to_message(output: Output, payload: Any, header: Any) -> Any:
    """One output's payload as its message type, with the input's header."""
    if output.is_image:
        return codec.numpy_to_image(payload, output.encoding, header)
    if output.message == POLYGON_MESSAGE:
        points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in payload]
        msg = PolygonStamped(header=header)
        msg.polygon.points = points
        return msg
    return DiagnosticArray(header=header, status=[to_status(s) for s in payload])


def to_compressed(payload: Any, settings: OutputSettings, header: Any) -> CompressedImage:
    """An image output's payload as image_transport's CompressedImage (format string such as
    ``"rgb8; jpeg compressed bgr8"``), with the input's header."""
    text, data = encode_compressed(payload, settings.compressed_format, settings.jpeg_quality)
    return CompressedImage(header=header, format=text, data=data.tobytes())


def compressed_key(output: Output) -> str:
    """The publisher key (and topic under ~/) of an output's compressed variant."""
    return f"{output.topic_name}/{COMPRESSED_SUFFIX}"


def declare(node: Node, spec: ParamSpec) -> ParamValue:
    """Declare one parameter; its value in the spec's type. A string list is declared by type
    (an empty default would be a byte array to rclpy) and is empty when not given."""
    if not isinstance(spec.default, tuple):
        node.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        return spec.coerce(node.get_parameter(spec.name).value)
    node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, parameter_descriptor(spec))
    try:
        return spec.coerce(node.get_parameter(spec.name).value)
    except ParameterUninitializedException:
        return spec.default


def declare_parameters(node: Node) -> dict[str, ParamValue]:
    """Every parameter of the table declared on ``node``; their values. Integers are taken for
    float parameters: in a parameter file and -p (before rclpy's type check at declaration)
    and at run time (a pre-set callback, before its check on set)."""
    overrides = getattr(node, "_parameter_overrides", None)
    for name, param in list(overrides.items() if isinstance(overrides, dict) else ()):
        overrides[name] = coerced(param)
    problems = given_value_problems({n: p.value for n, p in (overrides or {}).items()})
    if problems:  # rclpy's own refusal at declaration would be a traceback
        raise StartupError("invalid parameters: " + "; ".join(problems))
    node.add_pre_set_parameters_callback(lambda params: [coerced(p) for p in params])
    return {spec.name: declare(node, spec) for spec in PARAMETERS}


def given_parameter_names(node: Node) -> list[str]:
    """The parameter names given to ``node`` at start-up (its parameter files and -p)."""
    overrides = getattr(node, "_parameter_overrides", None)
    return list(overrides) if isinstance(overrides, dict) else []


def output_publishers(node: Node, camera: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One publisher per row of the outputs table (``~/CAMERA/TOPIC``, ``~/TOPIC`` for the
    single camera; keyed by the row's name), ``TOPIC/compressed`` for the rows that have it,
    ``camera_info`` and the latency topics: images (and what goes with them) with the
    ``output_qos.*`` parameters, alerts always reliable."""
    images = qos(str(params["output_qos.reliability"]), int(params["output_qos.depth"]))
    pubs = {
        o.name: node.create_publisher(
            MESSAGE_CLASSES[o.message],
            output_topic(camera, o.topic_name),
            images if o.is_image else RELIABLE,
        )
        for o in OUTPUTS
    }
    for o in OUTPUTS:
        if o.compressed:
            key = compressed_key(o)
            pubs[key] = node.create_publisher(CompressedImage, output_topic(camera, key), images)
    pubs[CAMERA_INFO] = node.create_publisher(
        CameraInfo, output_topic(camera, CAMERA_INFO), images
    )
    for key in LATENCY_TOPICS:
        pubs[key] = node.create_publisher(Float64, output_topic(camera, key), RELIABLE)
    return pubs
