"""Files we write are readable by other users (the vehicle's node account), per the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from ros2_fed.checkpoint import save_fed
from ros2_fed.engine.base import write_json_atomic
from ros2_fed.fed import FEDConfig, FlowEneDet
from ros2_fed.fileio import atomic_write_bytes, default_mode


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_mode_follows_the_umask(umask_022) -> None:
    assert default_mode() == 0o644
    os.umask(0o077)
    assert default_mode() == 0o600


def test_checkpoints_engine_sidecars_and_reports_are_world_readable(
    tmp_path: Path, umask_022
) -> None:
    torch.manual_seed(0)
    tensor_path, json_path = save_fed(tmp_path / "fed", FlowEneDet(FEDConfig()), {})
    write_json_atomic(tmp_path / "engine.json", {"a": 1})
    atomic_write_bytes(tmp_path / "report.md", b"# report\n")
    for path in (tensor_path, json_path, tmp_path / "engine.json", tmp_path / "report.md"):
        assert mode(path) == 0o644, f"{path.name}: {oct(mode(path))}"
    assert (tmp_path / "report.md").read_bytes() == b"# report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "engine.json",
        "fed.json",
        "fed.safetensors",
        "report.md",
    ]
