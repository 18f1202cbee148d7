"""Ctrl-C in the data commands (fed_synthroad, fed_synthroad_bag, fed_stats, fed_calibrate,
fed_eval):
no traceback, exit code 0, one line saying what was kept. Before, each printed a
KeyboardInterrupt traceback.

Each command is stopped once its work has visibly begun (its first image on disk, or its
progress bar drawn), with SIGINT on its whole process group, as a terminal's Ctrl-C sends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from training import cli_synthroad

REPO = Path(__file__).resolve().parents[1]
BACKBONE = REPO / "models" / "tinyseg_synthroad"
FED = REPO / "models" / "fed_c_synthroad"
COPIES = 30  # each rendered frame linked under this many names: a pass long enough to stop


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthroad train and val of 40 frames each at 64x128, every frame linked COPIES times."""
    root = tmp_path_factory.mktemp("interrupt_data") / "data"
    argv = ["--out", str(root), "--train", "40", "--val", "40", "--ood", "0", "--size", "64x128"]
    assert cli_synthroad.main([*argv, "--seed", "3", "--no-progress"]) == 0
    for path in sorted(root.glob("*/*/synthroad/synthroad_000000_*.png")):
        for copy in range(1, COPIES):
            link = path.with_name(path.name.replace("synthroad_000000_", f"synthroad_{copy:06d}_"))
            link.symlink_to(path)
    return root


def _interrupt_when(
    cmd: list[str], ready: Callable[[str], bool], log: Path, what: str, timeout: float = 240.0
) -> tuple[int, str]:
    """Start ``cmd`` (stderr to ``log``), wait until ``ready(stderr so far)``, Ctrl-C its
    process group; (exit code, stderr)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not ready(log.read_text()):
                assert proc.poll() is None, f"{what}: ended early: {log.read_text()}"
                assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return proc.returncode, log.read_text()


def _last_line(err: str) -> str:
    lines = [part for line in err.splitlines() for part in line.split("\r") if part.strip()]
    assert lines, err
    return lines[-1]


def _assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def _bar_started(command: str) -> Callable[[str], bool]:
    return lambda err: f"{command}" in err and "%|" in err


def test_ctrl_c_in_fed_synthroad_says_how_many_images_it_kept(tmp_path: Path) -> None:
    out = tmp_path / "synthroad"
    cmd = [sys.executable, "-m", "training.cli_synthroad", "--out", str(out)]
    cmd += ["--train", "100000", "--val", "0", "--ood", "0", "--size", "64x128", "--no-progress"]
    images = out / "leftImg8bit" / "train" / "synthroad"

    def first_image(_: str) -> bool:
        return images.is_dir() and any(images.iterdir())

    code, err = _interrupt_when(cmd, first_image, tmp_path / "err.txt", "the first image")
    assert code == 0, err
    _assert_no_traceback(err)
    line = _last_line(err)
    on_disk = len(list(images.glob("*_leftImg8bit.png")))
    prefix, _, rest = line.partition("fed_synthroad: stopped; kept the ")
    assert prefix == "" and rest, line
    kept = int(rest.split(" ", 1)[0])
    assert 1 <= kept <= on_disk <= kept + 1, (kept, on_disk)
    assert rest == (
        f"{kept} of 100000 images written to {out} (each complete; the dataset is not): the "
        "same command writes it whole, identically"
    )


def test_ctrl_c_in_fed_stats_writes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "training.stats", "--backbone", str(BACKBONE)]
    cmd += ["--data-root", str(data), "--out", str(out)]
    code, err = _interrupt_when(cmd, _bar_started("fed_stats"), tmp_path / "err.txt", "the pass")
    assert code == 0, err
    _assert_no_traceback(err)
    assert _last_line(err) == (
        f"fed_stats: stopped before the pass ended; nothing was written ({out} as they were): "
        "the same command starts the pass again"
    )
    assert not out.exists()


def test_ctrl_c_in_fed_calibrate_leaves_the_checkpoint_alone(data: Path, tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"fed{suffix}").write_bytes(FED.with_suffix(suffix).read_bytes())
    before = (tmp_path / "fed.json").read_bytes()
    out = tmp_path / "calibration.json"
    cmd = [sys.executable, "-m", "training.calibrate", "--backbone", str(BACKBONE)]
    cmd += ["--fed", str(fed), "--data-root", str(data), "--into", "--out", str(out)]
    log = tmp_path / "err.txt"
    code, err = _interrupt_when(cmd, _bar_started("fed_calibrate"), log, "the pass")
    assert code == 0, err
    _assert_no_traceback(err)
    assert _last_line(err) == (
        f"fed_calibrate: stopped before the pass ended; nothing was written ({fed}.json, {out} "
        "as they were): the same command starts the pass again"
    )
    assert (tmp_path / "fed.json").read_bytes() == before
    assert not out.exists()


def test_ctrl_c_in_fed_eval_writes_no_results(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "training.cli_eval", "--backbone", str(BACKBONE)]
    cmd += ["--fed", f"FED-C={FED}", "--dataset", "synthroad", "--data-root", str(data)]
    cmd += ["--split", "val", "--out", str(out), "--no-open-miou"]
    code, err = _interrupt_when(cmd, _bar_started("fed_eval"), tmp_path / "err.txt", "the pass")
    assert code == 0, err
    _assert_no_traceback(err)
    assert _last_line(err) == (
        "fed_eval: stopped; no results written (they are written at the end): the same "
        "command evaluates again"
    )
    assert not (out / "results.json").exists()


def test_ctrl_c_in_fed_synthroad_bag_removes_the_unfinished_bag(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    cmd = [sys.executable, "-m", "training.synthroad_bag", "--out", str(out)]
    cmd += ["--frames", "100000", "--size", "64x128", "--quiet"]

    def bag_begun(_: str) -> bool:
        return out.is_dir() and any(out.iterdir())

    code, err = _interrupt_when(cmd, bag_begun, tmp_path / "err.txt", "the bag")
    assert code == 0, err
    _assert_no_traceback(err)
    assert _last_line(err) == (
        f"fed_synthroad_bag: stopped; kept nothing: the unfinished bag {out} was removed (the "
        "same command writes it anew)"
    )
    assert not out.exists()
