"""fed_export when the engine cannot be written: a read-only folder, a file-size limit, a full
disk. One line naming the path and the OS's reason, exit code 1, no traceback, and nothing left
behind (an engine already there stays as it was).

Why: these ended in 26-32-line tracebacks that hid the one fact a user needs (which path, why).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ros2_fed.engine import cli_export
from ros2_fed.paths import default_models_dir

MODELS = default_models_dir()
SIZE = ["--height", "64", "--width", "128"]
EXPORT = [
    "--backbone",
    str(MODELS / "tinyseg_synthroad"),
    "--fed",
    str(MODELS / "fed_u_synthroad"),
]
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1


def run_export(out: Path, preexec_fn=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "ros2_fed.engine.cli_export", *EXPORT, *SIZE, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        preexec_fn=preexec_fn,
    )


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("fed_export:")]


def without_dac_override() -> None:
    """In the child: root loses the right to write where the permissions say no."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_read_only_folder_is_one_line(tmp_path) -> None:
    folder = tmp_path / "engines"
    folder.mkdir()
    (folder / "fed.onnx").write_bytes(b"the engine of before")
    folder.chmod(0o555)
    try:
        proc = run_export(folder / "fed.onnx", preexec_fn=without_dac_override)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [
        f"fed_export: error: cannot write {folder / 'fed.onnx'}: Permission denied"
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["fed.onnx"]
    assert (folder / "fed.onnx").read_bytes() == b"the engine of before"


def limit_file_size() -> None:
    """In the child: no file may grow past 256 KiB (the ONNX of the default model is ~6 MB)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


@pytest.mark.slow
def test_file_size_limit_is_one_line(tmp_path) -> None:
    proc = run_export(tmp_path / "fed.onnx", preexec_fn=limit_file_size)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [
        f"fed_export: error: cannot write {tmp_path / 'fed.onnx'}: File too large"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_full_disk_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    import onnx

    def disk_full(proto, path, *args, **kwargs) -> None:
        Path(path).write_bytes(b"half an engine")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onnx, "save", disk_full)
    monkeypatch.setattr(onnx, "save_model", disk_full)
    code = cli_export.main([*EXPORT, *SIZE, "--out", str(tmp_path / "fed.onnx"), "--quiet"])
    assert code == 1
    assert error_lines(capsys.readouterr().err) == [
        f"fed_export: error: cannot write {tmp_path / 'fed.onnx'}: No space left on device"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_engine_cache_is_named_when_it_cannot_be_written(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ROS2_FED_CACHE", str(tmp_path / "cache"))
    args = cli_export.build_parser().parse_args([*EXPORT, *SIZE])
    inside = tmp_path / "cache" / "onnxruntime" / "key" / "model.tmp.onnx"
    line = cli_export.write_error_line(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(inside)), args
    )
    assert line == (
        f"fed_export: error: cannot write the engine cache {tmp_path / 'cache'} (ROS2_FED_CACHE "
        "or --out choose another folder): No space left on device"
    )


def test_a_file_elsewhere_is_named_as_it_is(tmp_path) -> None:
    args = cli_export.build_parser().parse_args(
        [*EXPORT, *SIZE, "--out", str(tmp_path / "a.onnx")]
    )
    line = cli_export.write_error_line(
        OSError(errno.EACCES, os.strerror(errno.EACCES), "/elsewhere/backbone.json"), args
    )
    assert line == "fed_export: error: /elsewhere/backbone.json: Permission denied"
