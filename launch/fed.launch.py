"""Launch fed_node: `ros2 launch ros2_fed fed.launch.py camera_topic:=/camera/image_raw`.

Arguments:
  camera_topic     the camera's topic: ``/cam/image`` (raw) or its image_transport compressed
                   topic ``/cam/image/compressed``; either way the node's ``image`` input is
                   remapped to ``/cam/image`` and ``image/compressed`` to ``/cam/image/compressed``
                   (ROS remaps each name on its own: a rule for ``image`` does not move
                   ``image/compressed``, so input_transport:=compressed needs the second rule)
  cameras          surround cameras served by this one node with one batched engine, e.g.
                   ``cameras:=front,left,right,rear`` (or ``"[front, left]"``); empty = one camera
                   (camera_topic). Camera NAME reads NAME/image and publishes ~/NAME/<output>.
  camera_topics    with cameras: one topic per camera, in the same order, raw or compressed
                   (``/cam_front/image_raw,/cam_left/image_raw``); NAME/image and
                   NAME/image/compressed are remapped from it. Empty = <namespace>/NAME/image.
  params_file      node parameters (default: the installed config/fed.yaml)
  engine_path      engine file; empty = the value in params_file
  input_transport  raw | compressed; empty = the value in params_file
  namespace        namespace of the node (its outputs are <namespace>/fed_node/...)
  log_level        debug | info | warn | error | fatal
  managed          true: start fed_lifecycle_node, a ROS 2 managed (lifecycle) node that loads
                   its engine on ``configure`` and subscribes on ``activate`` (driven by a
                   lifecycle manager or ``ros2 lifecycle set /fed_node configure``); false
                   (default): fed_node, which loads its engine and publishes on its own
  fastdds_profile  Fast DDS XML profile for camera-sized messages (default: the installed
                   config/fastdds_large_data.xml, unless FASTDDS_DEFAULT_PROFILES_FILE is
                   already set). Why: with Fast DDS defaults best-effort images of ~1 MB and
                   more are mostly lost between processes. The camera driver and rviz need the
                   same profile: launch them from here (after this file's actions) or export
                   FASTDDS_DEFAULT_PROFILES_FILE in their environment too.
"""

import os
import re

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription

PACKAGE = "ros2_fed"
EXECUTABLE = "fed_node"
LIFECYCLE_EXECUTABLE = "fed_lifecycle_node"
PARAMS_FILE = "fed.yaml"
FASTDDS_PROFILE = "fastdds_large_data.xml"


def camera_base_topic(camera_topic: str) -> str:
    """The raw image topic of a camera given by its raw or its ``.../compressed`` topic."""
    base = camera_topic.rstrip("/")
    return base[: -len("/compressed")] if base.endswith("/compressed") else base


def name_list(text: str) -> list[str]:
    """``front,left`` or ``[front, left]`` (a launch argument is a string) -> ["front", "left"]."""
    return [token for token in re.split(r"[\s,\[\]'\"]+", text) if token]


def camera_remappings(
    camera_topic: str, cameras: list[str], camera_topics: list[str]
) -> list[tuple[str, str]]:
    """The node's input names remapped onto the cameras' topics, both transports each.

    One camera: ``image`` and ``image/compressed`` from ``camera_topic``. Surround cameras:
    ``NAME/image`` and ``NAME/image/compressed`` from the camera's entry in ``camera_topics``
    (none given: the node's own ``NAME/image`` names stay as they are). ``camera_info`` (or
    ``NAME/camera_info``) from the topic next to the image, as camera drivers name it
    (``/cam/image_raw`` -> ``/cam/camera_info``).
    """
    if not cameras:
        camera = camera_base_topic(camera_topic)
        info = camera.rsplit("/", 1)[0] + "/camera_info"
        return [
            ("image", camera),
            ("image/compressed", camera + "/compressed"),
            ("camera_info", info),
        ]
    if camera_topics and len(camera_topics) != len(cameras):
        raise ValueError(
            f"camera_topics has {len(camera_topics)} topics for {len(cameras)} cameras "
            f"({', '.join(cameras)}): give one topic per camera, in the same order"
        )
    rules = []
    for name, topic in zip(cameras, camera_topics):
        base = camera_base_topic(topic)
        rules += [(f"{name}/image", base), (f"{name}/image/compressed", base + "/compressed")]
        rules.append((f"{name}/camera_info", base.rsplit("/", 1)[0] + "/camera_info"))
    return rules


def is_true(text: str) -> bool:
    """A launch argument's boolean (``managed:=true``)."""
    return text.strip().lower() in ("true", "1", "yes", "on")


def _node(context, *args, **kwargs):
    """Build the node (managed: the lifecycle node) with overrides only for the arguments
    actually given."""
    overrides = {}
    for name in ("engine_path", "input_transport"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    cameras = name_list(LaunchConfiguration("cameras").perform(context))
    if cameras:
        overrides["cameras"] = cameras
    remappings = camera_remappings(
        LaunchConfiguration("camera_topic").perform(context),
        cameras,
        name_list(LaunchConfiguration("camera_topics").perform(context)),
    )
    options = dict(
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=remappings,
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    if is_true(LaunchConfiguration("managed").perform(context)):
        return [
            LifecycleNode(
                package=PACKAGE, executable=LIFECYCLE_EXECUTABLE, name="fed_node", **options
            )
        ]
    return [Node(package=PACKAGE, executable=EXECUTABLE, name="fed_node", **options)]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    default_params = os.path.join(share, "config", PARAMS_FILE)
    default_profile = os.path.join(share, "config", FASTDDS_PROFILE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "camera_topic",
                default_value="/camera/image_raw",
                description="camera topic, raw (/cam/image) or compressed "
                "(/cam/image/compressed): both node inputs are remapped from it",
            ),
            DeclareLaunchArgument(
                "cameras",
                default_value="",
                description="surround cameras, e.g. front,left,right,rear (one node, one batched "
                "engine); empty = one camera on camera_topic",
            ),
            DeclareLaunchArgument(
                "camera_topics",
                default_value="",
                description="with cameras: one topic per camera, same order (raw or compressed); "
                "empty = <namespace>/NAME/image",
            ),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="fed_node parameter YAML"
            ),
            DeclareLaunchArgument(
                "engine_path",
                default_value="",
                description="engine file (.onnx / .engine / .safetensors bundle); "
                "empty = from params_file",
            ),
            DeclareLaunchArgument(
                "input_transport",
                default_value="",
                description="raw or compressed; empty = from params_file",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="namespace of fed_node"
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="ROS log level of fed_node"
            ),
            DeclareLaunchArgument(
                "managed",
                default_value="false",
                description="true: a managed (lifecycle) node, engine loaded on configure, "
                "input on activate; false: fed_node starts on its own",
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=EnvironmentVariable(
                    "FASTDDS_DEFAULT_PROFILES_FILE", default_value=default_profile
                ),
                description="Fast DDS XML profile for large messages",
            ),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")
            ),
            OpaqueFunction(function=_node),
        ]
    )
