"""A new user's parameter mistakes: a misspelled name is named (WARN with the closest declared
parameter, or FATAL with strict_parameters), a value rclpy would refuse with a traceback is one
FATAL line, int8 without calibration images is one FATAL line.

The pure checks are unit tests; the process tests start the real node (``ros`` marker) and
read its output as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ros2_fed.pipeline import model_spec
from ros2_fed.pipeline.model_spec import ModelSpec
from ros2_fed.pipeline.params import (
    PARAMETER_NAMES,
    StartupError,
    given_value_problems,
    parameter_problems,
    unknown_parameters,
    with_defaults,
)

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "node_harness.py"


# ------------------------------------------------------------------------------ pure checks


def test_a_misspelled_name_is_named_with_the_closest_declared_parameter() -> None:
    given = ["alerts.warn_sise", "model.heigth", "engine_path", "zzz_nothing_like_it"]
    assert unknown_parameters(given, PARAMETER_NAMES) == [
        "unknown parameter alerts.warn_sise - did you mean alerts.warn_size?",
        "unknown parameter model.heigth - did you mean model.height?",
        "unknown parameter zzz_nothing_like_it",
    ]
    assert unknown_parameters(["use_sim_time"], [*PARAMETER_NAMES, "use_sim_time"]) == []


def test_given_values_are_checked_before_rclpy_sees_them() -> None:
    assert given_value_problems({"model.height": 0}) == ["model.height: 0 is outside [16, 8192]"]
    assert given_value_problems({"model.width": "wide"}) == ["model.width: expected int, got str"]
    assert given_value_problems({"runtime": "tflite"})[0].startswith("runtime: 'tflite'")
    # accepted: an integer for a float parameter, an empty list, names the table lacks
    ok = {"alerts.hysteresis": 1, "cameras": [], "model.height": 480, "alerts.warn_sise": 0.2}
    assert given_value_problems(ok) == []


def test_int8_needs_calibration_images_and_only_int8_takes_them() -> None:
    params = with_defaults({"precision": "int8"})
    assert "precision int8 needs calibration_data" in parameter_problems(params)[0]
    assert parameter_problems(with_defaults({"precision": "int8", "calibration_data": "c"})) == []
    assert parameter_problems(with_defaults({"precision": "int8", "engine_path": "e.onnx"})) == []
    wrong = parameter_problems(with_defaults({"calibration_data": "calib"}))
    assert wrong == ["calibration_data is for precision int8 (precision is fp32)"]


def test_int8_cached_engine_is_built_from_the_calibration_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """precision and calibration_data reach open_cached; a missing folder is a StartupError
    naming it, before anything is built."""
    calls = []
    monkeypatch.setattr(model_spec, "open_cached", lambda *a, **kw: calls.append((a, kw)))
    params = {"precision": "int8", "calibration_data": str(tmp_path / "missing")}
    spec = ModelSpec.from_params(params)
    with pytest.raises(StartupError, match="calibration_data folder not found: .*missing"):
        spec.resolved()
    (tmp_path / "calib").mkdir()
    spec = ModelSpec.from_params({**params, "calibration_data": str(tmp_path / "calib")})
    resolved = spec.resolved()
    assert "int8" in resolved.describe()
    model_spec.open_engine(resolved)
    ((_, kwargs),) = calls
    assert kwargs["precision"] == "int8" and kwargs["calibration"] == str(tmp_path / "calib")
    fp32 = model_spec.ModelSpec.from_params({}).resolved()
    model_spec.open_engine(fp32)
    assert calls[1][1]["precision"] == "fp32" and calls[1][1]["calibration"] is None
    assert resolved.node_params()["precision"] == "int8"  # the replay starts the same engine


# ------------------------------------------------------------------------- real processes


def _run_node(cmd: list[str], env: dict[str, str], *ros_args: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        cmd + ["--ros-args", *ros_args],
        env=env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, (out.stdout + out.stderr).splitlines()


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    pytest.importorskip("rclpy")
    from test_node_ros import ros_environment

    return ros_environment()


@pytest.mark.ros
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-p", "model.height:=0"], ["model.height: 0 is outside [16, 8192]"]),
        (["-p", "model.width:=wide"], ["model.width: expected int, got str"]),
        (["-p", "precision:=int8"], ["precision int8 needs calibration_data"]),
    ],
    ids=["out_of_range", "wrong_type", "int8_without_calibration"],
)
def test_a_bad_value_is_one_fatal_line(
    ros_env: dict[str, str], args: list[str], needles: list[str]
) -> None:
    code, lines = _run_node([sys.executable, "-m", "ros2_fed.node"], ros_env, *args)
    assert code == 1, lines
    assert len(lines) == 1 and "FATAL" in lines[0] and "cannot start" in lines[0], lines
    for needle in needles:
        assert needle in lines[0], lines


@pytest.mark.ros
def test_a_misspelled_parameter_warns_or_with_strict_parameters_stops(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's example: ``alerts.warn_sise`` in a parameter file."""
    params = tmp_path / "mine.yaml"
    params.write_text("/**:\n  ros__parameters:\n    alerts:\n      warn_sise: 0.2\n")
    cmd = [sys.executable, str(HARNESS)]
    base = ["--params-file", str(REPO / "config" / "fed.yaml"), "--params-file", str(params)]
    proc = subprocess.Popen(
        cmd + ["--ros-args", "-r", "__ns:=/param_typo", *base],
        env=ros_env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from test_node_ros import wait_until

        lines: list[str] = []
        assert proc.stdout is not None
        wait_until(
            lambda: lines.append(proc.stdout.readline()) or "ready:" in lines[-1], 60, "ready"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    warn = [line for line in lines if "warn_sise" in line]
    assert len(warn) == 1 and "WARN" in warn[0], lines
    assert (
        "unknown parameter alerts.warn_sise - did you mean alerts.warn_size? (ignored)" in warn[0]
    )

    code, out = _run_node(cmd, ros_env, *base, "-p", "strict_parameters:=true")
    assert code == 1, out
    assert len(out) == 1 and "FATAL" in out[0] and "alerts.warn_sise" in out[0], out
    assert "did you mean alerts.warn_size" in out[0] and "strict_parameters" in out[0]
