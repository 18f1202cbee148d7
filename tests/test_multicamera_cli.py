"""benchmarks/multicamera.py's command line: every example its --help shows parses, and the
camera rates resolve to one per size.

Why: the help example (`--sizes 256x512 --seconds 10 --repeats 1`) once stopped with "--rates
needs one rate per size" before measuring anything.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "multicamera.py"


@pytest.fixture(scope="module")
def multicamera():
    spec = importlib.util.spec_from_file_location("multicamera_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def help_examples(doc: str) -> list[list[str]]:
    """The argument lists of the `python benchmarks/multicamera.py ...` lines in the help."""
    examples = []
    for line in doc.splitlines():
        if line.strip().startswith("python benchmarks/multicamera.py"):
            examples.append(shlex.split(line.split("#", 1)[0])[2:])
    return examples


def test_every_help_example_parses(multicamera) -> None:
    examples = help_examples(multicamera.__doc__)
    assert ["--sizes", "256x512", "--seconds", "10", "--repeats", "1"] in examples
    for argv in examples:
        args, sizes, rates = multicamera.parse_plan(argv)
        assert len(rates) == len(sizes) >= 1, argv
        assert all(rate > 0 for rate in rates), argv


def test_the_default_rates_follow_the_sizes(multicamera) -> None:
    _, sizes, rates = multicamera.parse_plan(["--sizes", "512x1024"])
    assert sizes == [(512, 1024)] and rates == [multicamera.DEFAULT_RATES[(512, 1024)]]
    _, _, rates = multicamera.parse_plan([])
    assert rates == [15.0, 6.0]


def test_one_rate_is_used_for_every_size(multicamera) -> None:
    _, _, rates = multicamera.parse_plan(["--sizes", "256x512,512x1024", "--rates", "8"])
    assert rates == [8.0, 8.0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sizes", "384x768"], "no default rate for 384x768"),
        (["--sizes", "256x512", "--rates", "15,6,3"], "one rate, or one per size"),
    ],
)
def test_rates_that_do_not_fit_are_one_usage_line(multicamera, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        multicamera.parse_plan(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
