"""fed_node without a running RMW: launch file (by AST: launch/launch_ros are not installed
here), the parameter YAML against the declared parameters, the DDS profile, the rclpy
parameter descriptors and --help (the pure pipeline is tested in test_pipeline.py)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("rclpy")

from ros2_fed import node as fed_node
from ros2_fed import pipeline, ros_messages
from ros2_fed.eval.replay.model import flatten_params

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "fed.launch.py"


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    consts = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                consts[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return consts


def _value(node: ast.AST, consts: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    return ast.literal_eval(node)


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == name)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == name)
        )
    ]


def _params_file() -> Path:
    consts = _module_constants(ast.parse(LAUNCH.read_text()))
    return REPO / "config" / consts["PARAMS_FILE"]


def test_launch_file_names_exist() -> None:
    tree = ast.parse(LAUNCH.read_text())
    consts = _module_constants(tree)
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
        for n in tree.body
    )
    nodes = _calls(tree, "Node")
    assert len(nodes) == 1
    kwargs = {kw.arg: kw.value for kw in nodes[0].keywords}
    package, executable = _value(kwargs["package"], consts), _value(kwargs["executable"], consts)
    assert _value(kwargs["name"], consts) == "fed_node"

    # package: the ament package name
    assert ET.parse(REPO / "package.xml").getroot().findtext("name") == package
    assert (REPO / "resource" / package).is_file()
    # executable: a console script of setup.py pointing at the node's main
    setup = ast.parse((REPO / "setup.py").read_text())
    scripts = _module_constants(setup)["CONSOLE_SCRIPTS"]
    entries = {s.split("=")[0].strip(): s.split("=")[1].strip() for s in scripts}
    assert entries.get(executable) == "ros2_fed.node:main", (
        f"setup.py CONSOLE_SCRIPTS lacks '{executable} = ros2_fed.node:main'"
    )
    assert callable(fed_node.main)
    # parameter file and DDS profile: exist, and setup.py installs them (config/*.yaml, *.xml)
    setup_text = (REPO / "setup.py").read_text()
    for key, pattern in (("PARAMS_FILE", "config/*.yaml"), ("FASTDDS_PROFILE", "config/*.xml")):
        assert (REPO / "config" / consts[key]).is_file(), consts[key]
        assert pattern in setup_text
    assert "launch/*.py" in setup_text

    # arguments: every LaunchConfiguration used is declared; the required ones exist
    declared = {_value(c.args[0], consts) for c in _calls(tree, "DeclareLaunchArgument")}
    used = {
        _value(c.args[0], consts)
        for c in _calls(tree, "LaunchConfiguration")
        if not isinstance(c.args[0], ast.Name)
    }
    assert {"camera_topic", "params_file", "engine_path", "namespace"} <= declared
    assert used <= declared, used - declared
    # the camera remapping targets the node's input, and parameter overrides are real parameters
    remapper = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "camera_remappings"
    )
    remaps = ast.dump(remapper)
    assert "'image'" in remaps and "'image/compressed'" in remaps
    assert "'cameras'" in ast.dump(tree)  # the camera list goes on as the cameras parameter
    # `for name in ("engine_path", ...)`: launch arguments passed on as parameter overrides
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Tuple)]
    overrides = {_value(e, consts) for loop in loops for e in loop.iter.elts}
    assert overrides and overrides <= pipeline.PARAMETER_NAMES and overrides <= declared
    # large-data transport for the processes it starts
    env = [_value(c.args[0], consts) for c in _calls(tree, "SetEnvironmentVariable")]
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in env


def test_params_yaml_keys_are_declared_parameters() -> None:
    data = yaml.safe_load(_params_file().read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    params = flatten_params(data["/**"]["ros__parameters"])
    unknown = set(params) - pipeline.PARAMETER_NAMES
    assert not unknown, f"keys in fed.yaml that fed_node does not declare: {sorted(unknown)}"
    # A string list without a value cannot be written in a ROS parameter file (rcl refuses []):
    # it is documented as a commented-out example instead.
    unset_lists = {spec.name for spec in pipeline.PARAMETERS if isinstance(spec.default, tuple)}
    text = _params_file().read_text()
    assert all(f"# {name}: [" in text for name in unset_lists)
    missing = pipeline.PARAMETER_NAMES - set(params) - unset_lists
    assert not missing, f"declared parameters not documented in fed.yaml: {sorted(missing)}"
    for name, value in params.items():
        problem = pipeline.PARAMETER_SPECS[name].check(value)
        assert problem is None, problem  # type (1 vs 1.0 matters to rcl), range, choices


def test_params_yaml_documents_every_key() -> None:
    """Each parameter line has a comment line right above it (or its own trailing comment)."""
    lines = _params_file().read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if (
            not stripped
            or stripped.startswith("#")
            or stripped.endswith(":")
            or ":" not in stripped
        ):
            continue
        above = lines[i - 1].strip()
        assert above.startswith("#") or "#" in stripped, (
            f"undocumented parameter line {i + 1}: {line}"
        )


def test_fastdds_profile_is_a_default_large_shm_profile() -> None:
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(REPO / "config" / "fastdds_large_data.xml").getroot()
    shm = [
        t
        for t in root.iterfind(".//d:transport_descriptor", ns)
        if t.findtext("d:type", namespaces=ns) == "SHM"
    ]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 4 * 1920 * 1080 * 4
    participant = root.find(".//d:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"


def test_parameter_table_is_consistent() -> None:
    for spec in pipeline.PARAMETERS:
        assert spec.description and spec.check(spec.default) is None, spec
        descriptor = ros_messages.parameter_descriptor(spec)
        assert (
            descriptor.description == spec.description and descriptor.read_only == spec.read_only
        )
        if spec.range is not None:
            assert descriptor.integer_range or descriptor.floating_point_range
    assert len(pipeline.PARAMETER_NAMES) == len(pipeline.PARAMETERS)
    # Thresholds are switchable at run time; what shapes the graph/process is not.
    for name in (
        "alerts.confidence_threshold",
        "alerts.warn_size",
        "alerts.error_size",
        "viz.overlay_alpha",
    ):
        assert not pipeline.PARAMETER_SPECS[name].read_only
    for name in ("engine_path", "runtime", "input_transport", "input_qos.reliability"):
        assert pipeline.PARAMETER_SPECS[name].read_only


def test_help_lists_every_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    assert fed_node.main(["fed_node", "--help"]) == 0
    out = capsys.readouterr().out
    for spec in pipeline.PARAMETERS:
        assert spec.name in out


def test_integer_for_a_float_parameter_becomes_a_double() -> None:
    """``ros2 param set /fed_node alerts.hysteresis 1`` sends an INTEGER: the node's pre-set
    callback (and its parameter-file overrides) turn it into the DOUBLE rclpy would insist on."""
    from rclpy.parameter import Parameter

    param = ros_messages.coerced(Parameter("alerts.hysteresis", value=1))
    assert param.type_ == Parameter.Type.DOUBLE and param.value == 1.0
    for unchanged in (
        Parameter("alerts.raise_frames", value=2),
        Parameter("publish.overlay", value=True),
        Parameter("alerts.hysteresis", value="x"),
        Parameter("not.declared", value=1),
    ):
        assert ros_messages.coerced(unchanged) is unchanged
