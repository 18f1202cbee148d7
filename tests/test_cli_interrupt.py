"""Ctrl-C in fed_train, fed_train_backbone and fed_export: no traceback, one line saying what
was kept, exit code 0 (a stop signal, as for every command here). Before, each printed a
KeyboardInterrupt traceback. Also: ``fed_train_backbone --no-progress`` draws no bar at all.

The processes get SIGINT on their whole process group, as a terminal's Ctrl-C sends it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from training import cli_synthroad, train_backbone

REPO = Path(__file__).resolve().parents[1]
TINY = ["--crop", "32x64", "--batch-size", "1", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "data"
    argv = ["--out", str(root), "--train", "2", "--val", "1", "--ood", "0", "--size", "32x64"]
    assert cli_synthroad.main([*argv, "--seed", "1", "--no-progress"]) == 0
    return root


def _interrupt_when(
    cmd: list[str], ready: Callable[[], bool], what: str, timeout: float = 240.0
) -> tuple[int, str]:
    """Start ``cmd``, wait for ``ready``, Ctrl-C its process group; (exit code, stderr)."""
    proc = subprocess.Popen(
        cmd,
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"{what}: ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def _last_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, err
    return lines[-1]


def _assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def _iteration(path: Path) -> int:
    return int(json.loads(path.read_text())["iteration"])


@pytest.mark.slow
def test_ctrl_c_in_fed_train_backbone_keeps_the_training_state(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bb"
    state = tmp_path / "bb_state.json"
    cmd = [sys.executable, "-m", "training.train_backbone", "--data-root", str(data)]
    cmd += ["--out", str(out), "--iters", "1000000", "--ckpt-every", "2", *TINY]
    cmd += ["--widths", "4,8,8,8", "--decoder-channels", "8"]
    code, err = _interrupt_when(cmd, state.is_file, "the first training state")
    assert code == 0, err
    _assert_no_traceback(err)
    kept = _iteration(state)  # read after the exit: the last state written
    assert kept >= 2 and kept % 2 == 0
    assert _last_line(err) == (
        f"fed_train_backbone: stopped; kept the training state of iteration {kept} in "
        f"{tmp_path / 'bb_state'} (no checkpoint at {out} yet): the same command with --resume "
        "continues from it"
    )
    assert not (tmp_path / "bb.safetensors").exists()


@pytest.mark.slow
def test_ctrl_c_in_fed_train_keeps_the_last_state(data: Path, tmp_path: Path) -> None:
    backbone = tmp_path / "bb"
    argv = ["--data-root", str(data), "--out", str(backbone), "--iters", "1", *TINY]
    assert train_backbone.main([*argv, "--widths", "4,8,8,8"]) == 0
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train_fed", "--backbone", str(backbone)]
    cmd += ["--data-root", str(data), "--out", str(out), *TINY, "--max-iters", "1000000"]
    cmd += ["--warmup-iters", "0", "--blocks", "2", "--ckpt-every", "2", "--log-every", "1"]
    state = out / "last_state.json"
    code, err = _interrupt_when(cmd, state.is_file, "the first training state")
    assert code == 0, err
    _assert_no_traceback(err)
    kept = _iteration(state)
    assert kept >= 2 and kept % 2 == 0
    line = _last_line(err)
    assert line.startswith(
        f"fed_train: stopped; kept the training state of iteration {kept} in {out / 'last_state'}"
    ), line
    assert line.endswith(f"the same command with --resume {out} continues from it"), line
    assert list(out.glob(f"*_iter{kept:06d}.safetensors")), sorted(out.iterdir())


def test_ctrl_c_in_fed_export_installs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "engines" / "model.onnx"
    cmd = [sys.executable, "-m", "ros2_fed.engine.cli_export"]
    cmd += ["--backbone", str(REPO / "models" / "tinyseg_synthroad")]
    cmd += ["--fed", str(REPO / "models" / "fed_c_synthroad"), "--height", "128", "--width", "256"]
    cmd += ["--out", str(out)]
    # the export has begun once its folder exists (made before the ONNX graph is written)
    code, err = _interrupt_when(cmd, out.parent.is_dir, "the export")
    assert code == 0, err
    _assert_no_traceback(err)
    assert _last_line(err) == (
        f"fed_export: stopped; nothing was written to {out} (an earlier file there is as it was)"
    )
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir()]  # no temporary file left behind


def test_no_progress_means_no_bar(
    data: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """The validation after training drew its bar even with --no-progress."""
    argv = ["--data-root", str(data), "--out", str(tmp_path / "bb"), "--iters", "2", *TINY]
    assert train_backbone.main([*argv, "--val-split", "val", "--widths", "4,8,8,8"]) == 0
    captured = capfd.readouterr()
    assert "mIoU on val" not in captured.err and "it/s" not in captured.err, captured.err
    assert "fed_train_backbone: val mIoU" in captured.out
