"""benchmarks/int8.py runs end to end on tiny settings and prints its three tables.

Why: the script is how the INT8 speed and accuracy figures in docs/int8.md are produced;
nothing else exercises it. Its default-model row must name the model fed_node ships with (a
stale "FED-U" label on a FED-C run is how the page's figures went wrong once). Timings are not
asserted (tests never judge speed).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from ros2_fed.paths import default_models_dir
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED
from tests.test_benchmarks import REPO, run_script, tables

PAGE = REPO / "docs" / "int8.md"
#: The results files docs/int8.md's figures come from, and the tables the page carries of each.
RESULTS = {"int8_results.json": (0, 1, 2), "int8_results_128x256.json": (2,)}


def benchmark_module():
    spec = importlib.util.spec_from_file_location("int8_benchmark", REPO / "benchmarks/int8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped_fed_variant() -> str:
    """FED-U / FED-C of the shipped default FED checkpoint, read from its JSON file (a
    conditional flow has a condition vector: cond_dim > 0), not from the code under test."""
    meta = json.loads((default_models_dir() / f"{DEFAULT_FED}.json").read_text())
    return "FED-C" if meta["config"]["cond_dim"] > 0 else "FED-U"


def test_the_shipped_default_fed_is_fed_c() -> None:
    # docs/int8.md, README and the ablation (docs/fed_ablation.md) describe FED-C as the default
    assert DEFAULT_FED == "fed_c_synthroad"
    assert shipped_fed_variant() == "FED-C"


@pytest.mark.slow
def test_int8_benchmark_prints_speed_profile_and_accuracy(tmp_path) -> None:
    figures = tmp_path / "int8.json"
    out = run_script(
        "int8.py",
        "--arch",
        "tiny",
        "--size",
        "64x128",
        "--runs",
        "1",
        "--calibration-images",
        "2",
        "--eval-frames",
        "2",
        "--profile-runs",
        "1",
        "--json",
        str(figures),
    )
    speed, profile, accuracy = tables(out)
    default_row = f"default model ({DEFAULT_BACKBONE} + {DEFAULT_FED}, {shipped_fed_variant()})"
    assert [row[0] for row in speed] == [
        "TinySeg (embedded default architecture) + FED-U",
        default_row,
    ]
    for row in speed:  # wall-clock and CPU-time speed-ups
        assert all(row[i].startswith("**") and row[i].endswith("x**") for i in (3, 6)), row
    assert any(row[3] == "QLinearConv" for row in profile), "the int8 engine runs int8 convs"
    assert [row[0] for row in accuracy] == [
        "mIoU (val)",
        "OOD AP of 1 - confidence (ood)",
        "OOD AuROC (ood)",
        "misclassification AuROC (val)",
        "labels agree with fp32 (val)",
        "confidence difference (val)",
    ]
    # the JSON file (what docs/int8.md's figures are copied from) holds the printed figures
    data = json.loads(figures.read_text())
    assert data["default_model"] == default_row
    assert set(data["int8"]) == {row[0] for row in speed}
    assert data["setup"]["size"] == [64, 128] and data["setup"]["calibration_images"] == 2
    assert data["setup"]["command"].startswith("python benchmarks/int8.py --arch tiny")
    acc = data["accuracy"]
    assert len(acc["agreement"]) == len(acc["conf_mean"]) == len(acc["conf_p999"]) == 2
    assert accuracy[4][2].startswith(f"{100 * np.mean(acc['agreement']):.2f} %")
    assert f"max {acc['conf_max']:.3f}" in accuracy[5][2]
    assert max(acc["conf_p999"]) <= acc["conf_max"]
    for engine in ("fp32", "int8"):
        assert f"{100 * acc[engine]['miou']:.2f}" == accuracy[0][1 if engine == "fp32" else 2]


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_docs_int8_figures_are_those_of_the_results_file(name: str) -> None:
    """docs/int8.md carries each results file's tables verbatim, names the command that wrote
    it, and was measured on the shipped default model; its headline figures, recomputed here
    from the raw numbers in the file, are the ones on the page."""
    page = PAGE.read_text()
    figures = json.loads((Path(PAGE.parent) / name).read_text())
    assert f"]({name})" in page, f"docs/int8.md does not link {name}"
    assert figures["setup"]["command"] in page
    assert figures["setup"]["command"].endswith(f"--json docs/{name}")
    assert figures["default_model"].endswith(f"+ {DEFAULT_FED}, {shipped_fed_variant()})")
    rendered = benchmark_module().tables_from_json(figures)
    for index in RESULTS[name]:
        for line in rendered[index].splitlines():
            assert line in page, f"{name}: {line!r} is not on docs/int8.md"
    acc = figures["accuracy"]
    assert f"{100 * np.mean(acc['agreement']):.2f} %" in page
    assert f"max {acc['conf_max']:.3f}" in page
    if 0 in RESULTS[name]:  # the speed table: CPU-time speed-up of the default model
        times = figures["times_s"]
        cpu = [
            statistics.median(times[f"{figures['default_model']} / {p}"]["cpu"])
            for p in ("fp32", "int8")
        ]
        assert f"**{cpu[0] / cpu[1]:.2f}x**" in page
