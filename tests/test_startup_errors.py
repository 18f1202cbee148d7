"""A start-up mistake in the ROS arguments is one FATAL line naming the culprit and exit code 1,
in fed_node and fed_lifecycle_node (rclpy alone prints rcl's "Failed to parse global arguments"
and the process exited 0); ``--help`` into a closed pipe is no traceback.

The process tests start the real entry modules and read their output as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ros2_fed import ros_args

REPO = Path(__file__).resolve().parents[1]


def _never(argv: list[str]) -> None:
    raise AssertionError("rcl's parser is not reached when the check already refused")


def test_a_missing_or_malformed_parameter_file_is_named_before_rcl_parses(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "nope.yaml")
    found = ros_args.problem(["x", "--ros-args", "--params-file", missing], _never)
    assert found == f"--params-file {missing}: no such file (from {Path.cwd()})"
    broken = tmp_path / "broken.yaml"
    broken.write_text("fed_node:\n  ros__parameters:\n    cameras: [front, left\n")
    found = ros_args.problem(["x", "--ros-args", "--params-file", str(broken)], _never)
    assert found is not None and found.startswith(f"--params-file {broken}: not valid YAML")
    assert "flow sequence from line 3" in found
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    found = ros_args.problem(["x", "--ros-args", "--params-file", str(listed)], _never)
    assert found is not None and "ros__parameters" in found and str(listed) in found
    # a second file after a good one is checked too; outside --ros-args nothing is
    good = tmp_path / "good.yaml"
    good.write_text("/**:\n  ros__parameters:\n    model:\n      height: 256\n")
    argv = ["x", "--ros-args", "--params-file", str(good), "--params-file", missing]
    assert ros_args.problem(argv, _never) is not None
    parsed: list[list[str]] = []
    argv = ["x", "--params-file", missing, "--ros-args", "--params-file", str(good), "--", "-r"]
    assert ros_args.problem(argv, parsed.append) is None
    assert parsed == [argv]  # rcl's parser saw everything


def test_remaps_and_overrides_without_the_separator_are_named() -> None:
    found = ros_args.problem(["x", "--ros-args", "-r", "image"], _never)
    assert found == "bad remap -r image: " + ros_args.REMAP_HELP
    found = ros_args.problem(["x", "--ros-args", "--remap", "image"], _never)
    assert found is not None and found.startswith("bad remap --remap image:")
    found = ros_args.problem(["x", "--ros-args", "-p", "model.height"], _never)
    assert found == "bad parameter override -p model.height: " + ros_args.OVERRIDE_HELP
    found = ros_args.problem(["x", "--ros-args", "-r", "a:=b", "--params-file"], _never)
    assert found == "--params-file at the end of --ros-args needs a value after it"


def test_rcl_refusals_read_without_its_source_locations() -> None:
    text = (
        "failed to initialize rcl: Couldn't parse params file: '--params-file x.yaml'. Error: "
        "Cannot have a value before ros__parameters at line 2, at /project/src/parse.c:800, "
        "at /project/src/rcl/arguments.c:415"
    )
    found = ros_args.rcl_message(text)
    assert found.startswith("--params-file x.yaml: Cannot have a value before ros__parameters")
    assert "/project" not in found and "parse.c" not in found
    text = "Couldn't parse remap rule: '-r image:='. Error: error not set, at /p/a.c:380"
    assert ros_args.rcl_message(text) == "bad remap -r image:=: " + ros_args.REMAP_HELP


# ------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    pytest.importorskip("rclpy")
    from test_node_ros import ros_environment

    return ros_environment()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("params")
    (folder / "broken.yaml").write_text("fed_node:\n  ros__parameters:\n    cameras: [a, b\n")
    (folder / "flat.yaml").write_text("fed_node:\n  model.height: 256\n")
    return folder


CASES = [
    (["--params-file", "nope.yaml"], "--params-file nope.yaml: no such file"),
    (["--params-file", "{dir}/broken.yaml"], "--params-file {dir}/broken.yaml: not valid YAML"),
    (["--params-file", "{dir}/flat.yaml"], "before ros__parameters at line 2"),
    (["-r", "image"], "bad remap -r image: a remap rule is FROM:=TO"),
    (["-p", "model.height"], "bad parameter override -p model.height"),
    (["--log-level", "loud"], "--log-level loud"),
    (["--no-such-flag"], "unknown ROS argument --no-such-flag"),
]


@pytest.mark.ros
@pytest.mark.parametrize("module", ["ros2_fed.node", "ros2_fed.lifecycle_node"])
@pytest.mark.parametrize(("args", "needle"), CASES, ids=[c[1][:24] for c in CASES])
def test_bad_ros_args_are_one_fatal_line_and_exit_1(
    ros_env: dict[str, str], bad_files: Path, module: str, args: list[str], needle: str
) -> None:
    args = [a.format(dir=bad_files) for a in args]
    out = subprocess.run(
        [sys.executable, "-m", module, "--ros-args", *args],
        env=ros_env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (out.stdout + out.stderr).splitlines()
    assert out.returncode == 1, lines
    assert len(lines) == 1, lines  # no rcl "[ERROR] ... Failed to parse global arguments"
    assert "[FATAL]" in lines[0] and "cannot start: " in lines[0], lines
    assert needle.format(dir=bad_files) in lines[0], lines
    assert "/project/src" not in lines[0] and "Traceback" not in out.stderr


@pytest.mark.ros
def test_help_into_a_closed_pipe_is_no_traceback(ros_env: dict[str, str]) -> None:
    """``fed_node --help | head``: the reader is gone before the help is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "ros2_fed.node", "--help"],
            env=ros_env,
            cwd=str(REPO),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert out.returncode == 0, out.stderr
    assert "BrokenPipeError" not in out.stderr and "Traceback" not in out.stderr, out.stderr


FALLBACK = """
import sys
from ros2_fed import node, ros_args
ros_args.problem = lambda argv, parse: None  # as if the check let something through
sys.exit(node.main(["fed_node", "--ros-args", "-r", "image"]))
"""


@pytest.mark.ros
def test_what_the_check_lets_through_is_still_one_fatal_line_and_exit_1(
    ros_env: dict[str, str],
) -> None:
    """rclpy.init's own refusal, past the check: rcl prints its line, then ours; exit 1."""
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK],
        env=ros_env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    fatal = [line for line in (out.stdout + out.stderr).splitlines() if "[FATAL]" in line]
    assert out.returncode == 1, out.stderr
    assert len(fatal) == 1 and "cannot start: bad remap -r image: " in fatal[0], out.stderr
    assert "Traceback" not in out.stderr
