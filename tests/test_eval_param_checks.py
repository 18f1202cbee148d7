"""fed_bag_eval and fed_fleet_eval check ``-p`` and ``--params-file`` against fed_node's
parameter table before anything starts: a misspelled name is one line with the node's "did you
mean" and exit code 2 (a usage error, as argparse's own), nothing is written to OUT. Before,
``alerts.warn_sise`` ended in a TypeError traceback (every bag of a fleet failed so) and
``model.heigth`` was silently ignored. A bag path that does not exist writes no report either.

Real processes, as a user runs them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ros2_fed.eval.replay.cli import node_parameter_problems

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "fed_bag_eval": [sys.executable, "-m", "ros2_fed.eval.replay.cli"],
    "fed_fleet_eval": [sys.executable, "-m", "ros2_fed.eval.fleet.cli"],
}


def _run(tool: str, *args: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        COMMANDS[tool] + list(args), cwd=str(REPO), capture_output=True, text=True, timeout=300
    )
    return out.returncode, (out.stdout + out.stderr).splitlines()


def test_the_shipped_parameter_file_and_good_overrides_pass() -> None:
    assert node_parameter_problems(str(REPO / "config" / "fed.yaml"), []) == []
    good = ["model.height:=256", "use_sim_time:=true", "alerts.warn_size:=0.2"]
    assert node_parameter_problems(None, good) == []


def test_each_problem_names_its_source(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("fed_node:\n  ros__parameters:\n    model:\n      heigth: 128\n")
    problems = node_parameter_problems(str(mine), ["alerts.warn_sise:=0.2", "model.width:=0"])
    assert problems == [
        f"--params-file {mine}: unknown parameter model.heigth - did you mean model.height?",
        "-p alerts.warn_sise:=0.2: unknown parameter alerts.warn_sise - did you mean "
        "alerts.warn_size?",
        "-p model.width:=0: model.width: 0 is outside [16, 8192]",
    ]
    other = tmp_path / "other.yaml"
    other.write_text("some_other_node:\n  ros__parameters:\n    heigth: 1\n")
    assert node_parameter_problems(str(other), []) == []  # another node's section: not ours


OVERRIDE = (["-p", "alerts.warn_sise:=0.2"], "did you mean alerts.warn_size?")
IGNORED = (["-p", "model.heigth:=128"], "unknown parameter model.heigth - did you mean model.h")
IN_FILE = (["--params-file", "{dir}/mine.yaml"], "{dir}/mine.yaml: unknown parameter alerts.w")
NO_FILE = (["--params-file", "{dir}/nope.yaml"], "--params-file {dir}/nope.yaml: no such file")


@pytest.mark.parametrize(
    ("tool", "given", "needle"),
    [
        ("fed_bag_eval", *OVERRIDE),
        ("fed_bag_eval", *IGNORED),
        ("fed_bag_eval", *IN_FILE),
        ("fed_bag_eval", *NO_FILE),
        ("fed_fleet_eval", *OVERRIDE),  # every bag failed so
        ("fed_fleet_eval", *IN_FILE),
    ],
    ids=["bag-override", "bag-ignored", "bag-file", "bag-no-file", "fleet-override", "fleet-file"],
)
def test_a_bad_node_parameter_is_one_line_and_exit_2(
    tmp_path: Path, tool: str, given: list[str], needle: str
) -> None:
    (tmp_path / "mine.yaml").write_text(
        "/**:\n  ros__parameters:\n    alerts:\n      warn_sise: 0.2\n"
    )
    bags = tmp_path / "bags"
    bags.mkdir()
    out = tmp_path / "out"
    given = [g.format(dir=tmp_path) for g in given]
    code, lines = _run(tool, str(bags), "--out", str(out), *given)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), lines
    assert needle.format(dir=tmp_path) in lines[0], lines
    assert not out.exists()  # checked before any report, worker or engine


def test_good_parameters_get_past_the_check(tmp_path: Path) -> None:
    """The control: the same run with a correct name fails only later, at the (empty) bag."""
    bags = tmp_path / "bags"
    bags.mkdir()
    code, lines = _run(
        "fed_bag_eval", str(bags), "--out", str(tmp_path / "out"), "-p", "alerts.warn_size:=0.2"
    )
    assert code == 2 and "warn_size" not in "\n".join(lines), lines
    assert (tmp_path / "out" / "report.json").exists()


def test_a_missing_bag_writes_no_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, lines = _run("fed_bag_eval", str(tmp_path / "nobag"), "--out", str(out))
    assert code == 2, lines
    assert lines == [f"fed_bag_eval: error: {tmp_path / 'nobag'}: bag not found"]
    assert not out.exists()
