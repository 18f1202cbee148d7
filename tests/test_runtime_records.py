"""The runtime records (ros2_fed/engine/runtimes.py) and every table that is a view of them.

Two halves: the shipped views equal the registry (names, suffixes, GPU runtimes, loaders, option
spellings, int8 schemes, the node's parameter, fed_export's choices, config/fed.yaml's comment),
with the facts pinned by hand; and a fake runtime registered in a fresh interpreter before the
package loads shows up in every view (so no view is a second, hand-kept table) while the
config/fed.yaml check names it as missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ros2_fed.engine import base, int8, metadata, options, runtimes
from ros2_fed.engine.cli_export import build_parser
from ros2_fed.pipeline import params

REPO = Path(__file__).resolve().parents[1]
NAMES = ("torch", "onnxruntime", "tensorrt", "torch-tensorrt")


def yaml_runtimes(text: str) -> list[str]:
    """The runtimes config/fed.yaml's ``runtime`` comment lists (``# Runtime: a | b.``)."""
    found = re.search(r"# Runtime: ([\w| -]+)\.", text)
    assert found, "config/fed.yaml has no '# Runtime: a | b | ...' comment"
    return [name.strip() for name in found.group(1).split("|")]


def _fed_export_runtimes() -> list[str]:
    action = next(a for a in build_parser()._actions if "--runtime" in a.option_strings)
    return list(action.choices)


def test_the_shipped_records_are_the_four_runtimes_as_pinned() -> None:
    records = runtimes.RECORDS
    assert tuple(records) == NAMES
    assert {n: r.suffixes for n, r in records.items()} == {
        "torch": (".safetensors",),
        "onnxruntime": (".onnx",),
        "tensorrt": (".engine", ".plan"),
        "torch-tensorrt": (".ep",),
    }
    assert {n for n, r in records.items() if r.gpu} == {"tensorrt", "torch-tensorrt"}
    assert {n for n, r in records.items() if r.int8} == {"onnxruntime", "tensorrt"}
    assert records["torch-tensorrt"].package == "torch_tensorrt"
    # The Q/DQ schemes differ where docs/int8.md says they do.
    assert not records["onnxruntime"].int8.symmetric_activations  # type: ignore[union-attr]
    assert records["tensorrt"].int8.symmetric_activations  # type: ignore[union-attr]
    assert "Resize" in records["onnxruntime"].int8.op_types  # type: ignore[union-attr]
    assert "Resize" not in records["tensorrt"].int8.op_types  # type: ignore[union-attr]


def test_every_view_has_the_registry_names() -> None:
    names = list(runtimes.RECORDS)
    assert list(base.RUNTIMES) == names
    assert list(base.SUFFIX_BY_RUNTIME) == names
    assert sorted(set(base.RUNTIME_BY_SUFFIX.values())) == sorted(names)
    assert set(base.ENGINE_LOADERS) == set(base.RUNTIME_BY_SUFFIX)
    assert base.GPU_RUNTIMES == ("tensorrt", "torch-tensorrt")
    assert base.SUFFIX_BY_RUNTIME == {
        "torch": ".safetensors",
        "onnxruntime": ".onnx",
        "tensorrt": ".engine",
        "torch-tensorrt": ".ep",
    }
    assert base.RUNTIME_BY_SUFFIX[".plan"] == "tensorrt"
    assert set(int8.SCHEMES) == {"onnxruntime", "tensorrt"}
    assert params.RUNTIME_CHOICES == ("", *names)
    spec = params.PARAMETER_SPECS["runtime"]
    assert spec.choices == params.RUNTIME_CHOICES
    assert all(name in spec.description for name in names)
    assert _fed_export_runtimes() == names
    assert yaml_runtimes((REPO / "config" / "fed.yaml").read_text()) == names
    for name in names:  # each record's package is what runtime_version asks
        assert isinstance(metadata.runtime_version(name), str)
        assert runtimes.record(name).kinds == (*runtimes.record(name).suffixes, "." + name)
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        metadata.runtime_version("tflite")


def test_options_are_each_runtimes_spelling() -> None:
    assert options.TENSORRT_KINDS == (".engine", ".plan", ".tensorrt", ".ep", ".torch-tensorrt")
    assert options.ONNX_KINDS == (".onnx", ".onnxruntime")
    assert options.TORCH_KINDS == (".safetensors", ".torch")
    assert options.runtime_options(".ep", device="cuda:2", threads=3) == {"device": 2}
    assert options.runtime_options(".xyz", device="cpu", threads=3) == {"device": "cpu"}


def test_each_record_names_callables_that_exist() -> None:
    for record in runtimes.RECORDS.values():
        for target in (record.open, record.export):
            assert callable(runtimes.resolve(target)), (record.name, target)


def test_register_refuses_a_second_name_or_a_taken_suffix() -> None:
    onnx = runtimes.record("onnxruntime")
    with pytest.raises(ValueError, match="already registered"):
        runtimes.register(onnx)
    with pytest.raises(ValueError, match=r"suffix \.plan is tensorrt's"):
        runtimes.register(
            runtimes.RuntimeRecord("other", (".x", ".plan"), "json", False, "a:b", "a:b", print)
        )
    with pytest.raises(ValueError, match="must start with"):
        runtimes.register(runtimes.RuntimeRecord("x", ("x",), "json", False, "a:b", "a:b", print))
    assert tuple(runtimes.RECORDS) == NAMES


#: Runs in a fresh interpreter: the registry module loaded on its own (it imports nothing of
#: ros2_fed), a fake GPU runtime registered, and only then the package and every view read.
FAKE = r"""
import importlib.util, json, sys
from pathlib import Path

repo = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location(
    "ros2_fed.engine.runtimes", repo / "ros2_fed" / "engine" / "runtimes.py"
)
rt = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = rt
spec.loader.exec_module(rt)
calls = []

def fake_open(path, expect, options):
    calls.append(("open", path.name, options))
    raise RuntimeError("fake engine opened")

def fake_export(detector, path, height, width, **build):
    calls.append(("export", path.name, height, width, build["precision"], build["device"]))
    return path, {}

def fake_options(device, threads, spin):
    return {"fake_device": device, "fake_threads": threads}

rt.register(rt.RuntimeRecord(
    name="fakert", suffixes=(".fake", ".fk"), package="json", gpu=True,
    open=fake_open, export=fake_export, options=fake_options,
    int8=rt.QuantScheme("fakert", True, ("Conv",), {}),
))

from ros2_fed.engine import base, int8, metadata, options
from ros2_fed.engine.cli_export import build_parser
from ros2_fed.engine.export import export_engine
from ros2_fed.pipeline import params

out = {
    "RUNTIMES": list(base.RUNTIMES),
    "GPU_RUNTIMES": list(base.GPU_RUNTIMES),
    "RUNTIME_BY_SUFFIX": base.RUNTIME_BY_SUFFIX,
    "SUFFIX_BY_RUNTIME": base.SUFFIX_BY_RUNTIME,
    "ENGINE_LOADERS": sorted(base.ENGINE_LOADERS),
    "SCHEMES": sorted(int8.SCHEMES),
    "TENSORRT_KINDS": list(options.TENSORRT_KINDS),
    "options": options.runtime_options(".fk", device="cuda:1", threads=2),
    "version": metadata.runtime_version("fakert"),
    "RUNTIME_CHOICES": list(params.RUNTIME_CHOICES),
    "param_choices": list(params.PARAMETER_SPECS["runtime"].choices),
    "param_description": params.PARAMETER_SPECS["runtime"].description,
    "help": "fakert" in params.help_text("summary"),
    "fed_export": list(
        next(a for a in build_parser()._actions if "--runtime" in a.option_strings).choices
    ),
}
fake = Path(sys.argv[2]) / "m.fake"
fake.write_bytes(b"x")
try:
    base.Engine.open(fake, device=7)
except RuntimeError as exc:
    out["open"] = str(exc)
export_engine(None, fake, 8, 16, runtime="fakert", precision="int8", progress=None, device=3)
out["calls"] = calls
print(json.dumps(out))
"""


def test_a_registered_runtime_appears_in_every_view(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FAKE, str(REPO), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["RUNTIMES"] == [*NAMES, "fakert"]
    assert out["GPU_RUNTIMES"] == ["tensorrt", "torch-tensorrt", "fakert"]
    assert out["RUNTIME_BY_SUFFIX"][".fake"] == out["RUNTIME_BY_SUFFIX"][".fk"] == "fakert"
    assert out["SUFFIX_BY_RUNTIME"]["fakert"] == ".fake"  # the first suffix is what export writes
    assert {".fake", ".fk"} <= set(out["ENGINE_LOADERS"])
    assert out["SCHEMES"] == ["fakert", "onnxruntime", "tensorrt"]
    assert {".fake", ".fk", ".fakert"} <= set(out["TENSORRT_KINDS"])
    assert out["options"] == {"fake_device": "cuda:1", "fake_threads": 2}
    assert out["version"] == json.__version__  # the record's package
    assert out["RUNTIME_CHOICES"] == out["param_choices"] == ["", *NAMES, "fakert"]
    assert "fakert" in out["param_description"] and out["help"]
    assert out["fed_export"] == [*NAMES, "fakert"]
    # Engine.open reaches the record's opener with the options; export_engine its builder.
    assert out["open"] == "fake engine opened"
    assert out["calls"] == [
        ["open", "m.fake", {"device": 7}],
        ["export", "m.fake", 8, 16, "int8", 3],
    ]
    # A table nobody derives (the YAML comment) is caught: its check names the new runtime.
    documented = yaml_runtimes((REPO / "config" / "fed.yaml").read_text())
    assert set(out["RUNTIMES"]) - set(documented) == {"fakert"}
