"""Ctrl-C in fed_convert: no traceback, a half-written new checkpoint removed, one line saying
so; a checkpoint that was there before is not deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from ros2_fed.backbones import cli_convert

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "models" / "tinyseg_synthroad"


def interrupt_while_saving(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop arrives while the checkpoint is being written (a conversion is too quick to
    hit with a real signal in a test)."""

    def half_save(model, dst, **meta):
        Path(f"{dst}.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_convert, "save_backbone", half_save)


def test_ctrl_c_removes_the_half_written_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt_while_saving(monkeypatch)
    dst = tmp_path / "bb"
    code = cli_convert.main([str(SOURCE), str(dst)])
    err = capsys.readouterr().err
    assert code == 130  # an interrupt that was not a stop signal (no handler installed here)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"fed_convert: stopped; no checkpoint written at {dst} (files that were there before "
        "are left as they are): the same command converts again"
    )
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_with_force_leaves_an_earlier_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dst = tmp_path / "bb"
    (tmp_path / "bb.json").write_text("{}")  # an earlier checkpoint's sidecar
    interrupt_while_saving(monkeypatch)
    assert cli_convert.main([str(SOURCE), str(dst), "--force"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.json"]  # the new half is gone
    assert (tmp_path / "bb.json").read_text() == "{}"
