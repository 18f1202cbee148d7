"""torch-tensorrt route: what ``import torch_tensorrt`` raises without a GPU becomes an
EngineError.

Without libnvinfer (no GPU / no TensorRT) torch_tensorrt's import raises a plain ``Exception``
("Could not find libnvinfer.so.11"), not ImportError; a fake module on sys.path does exactly
that here, and every entry point must answer with one clear line.
"""

from __future__ import annotations

import json
import sys

import pytest

from ros2_fed.engine import torch_tensorrt_engine as tt
from ros2_fed.engine.base import ENGINE_FORMAT, EngineError


@pytest.fixture
def broken_torch_tensorrt(tmp_path, monkeypatch):
    """A torch_tensorrt that fails on import the way the real one does without libnvinfer."""
    folder = tmp_path / "fake_site"
    folder.mkdir()
    (folder / "torch_tensorrt.py").write_text(
        "raise Exception('Could not find libnvinfer.so.11 in any of the library paths\\nsecond "
        "line')\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "torch_tensorrt", raising=False)


def test_import_guard_turns_a_plain_exception_into_an_engine_error(broken_torch_tensorrt) -> None:
    with pytest.raises(EngineError) as info:
        tt.import_torch_tensorrt()
    message = str(info.value)
    assert "torch-tensorrt is not usable here" in message
    assert "Exception: Could not find libnvinfer.so.11" in message and "\n" not in message


def test_build_refuses_before_compiling(broken_torch_tensorrt, tmp_path) -> None:
    with pytest.raises(EngineError, match="torch-tensorrt is not usable here"):
        tt.build_torch_tensorrt(object(), tmp_path / "m.ep", 32, 48, progress=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="INT8 is not supported"):
        tt.build_torch_tensorrt(
            object(), tmp_path / "m.ep", 32, 48, precision="int8", progress=None
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ends in \.ep"):
        tt.build_torch_tensorrt(object(), tmp_path / "m.engine", 32, 48, progress=None)  # type: ignore[arg-type]
    assert not list(tmp_path.glob("m*"))


def test_opening_a_program_without_torch_tensorrt_names_the_file(
    broken_torch_tensorrt, tmp_path
) -> None:
    from ros2_fed.checkpoint import file_sha256

    path = tmp_path / "m.ep"
    path.write_bytes(b"program")
    meta = {
        "format": ENGINE_FORMAT,
        "format_version": 1,
        "runtime": "torch-tensorrt",
        "runtime_version": "2.13.0",
        "input_tensor_shape": [1, 32, 48, 3],
        "model_hash": "x",
        "precision": "fp16",
        "file_size": path.stat().st_size,
        "file_sha256": file_sha256(path),
    }
    (tmp_path / "m.ep.json").write_text(json.dumps(meta))
    with pytest.raises(EngineError, match=r"m\.ep: torch-tensorrt is not usable here.*libnvinfer"):
        tt.TorchTensorRTEngine(path)
    from ros2_fed.engine import Engine
    from ros2_fed.engine.options import runtime_options

    with pytest.raises(
        EngineError, match=r"m\.ep: torch-tensorrt is not usable here"
    ):  # the registry's .ep loader
        Engine.open(path, **runtime_options(".ep", device="cuda:1"))
    assert runtime_options(".ep", device="cuda:1") == {"device": 1}
    path.write_bytes(b"programX")  # integrity is checked before any import
    with pytest.raises(EngineError, match="file size"):
        tt.TorchTensorRTEngine(path)


def test_fed_export_torch_tensorrt_fails_with_one_clear_line(
    broken_torch_tensorrt, tmp_path, capsys, monkeypatch
) -> None:
    from ros2_fed.engine.cli_export import main as fed_export
    from ros2_fed.paths import default_models_dir
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED

    models = default_models_dir()
    if not (models / f"{DEFAULT_BACKBONE}.safetensors").is_file():
        pytest.skip("default model not found")
    common = [
        "--backbone",
        str(models / DEFAULT_BACKBONE),
        "--fed",
        str(models / DEFAULT_FED),
        "--height",
        "32",
        "--width",
        "48",
        "--runtime",
        "torch-tensorrt",
    ]
    assert fed_export(common + ["--out", str(tmp_path / "m.ep")]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("fed_export: error: torch-tensorrt is not usable here")
        and "libnvinfer" in err
    )
    assert len(err.splitlines()) == 1 and not (tmp_path / "m.ep").exists()
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))  # the cache route: same guard
    assert fed_export(common) == 1
    assert "torch-tensorrt is not usable here" in capsys.readouterr().err
