"""fed_train end to end on a tiny synthroad tree: loss goes down, checkpoints round-trip,
resume continues the schedule exactly, and torchrun (gloo, 2 ranks) keeps the ranks in sync.

The backbone is a TinySeg with random weights: FED learns where *that* backbone is wrong, which
is a perfectly good (and fast) training signal.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
from ros2_fed.checkpoint import load_fed, save_fed
from training import cli_synthroad, stats, train_fed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fed_train")
    data = root / "synthroad"
    assert (
        cli_synthroad.main(
            [
                "--out",
                str(data),
                "--train",
                "6",
                "--val",
                "2",
                "--ood",
                "2",
                "--size",
                "64x128",
                "--seed",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    torch.manual_seed(0)
    backbone = TinySeg(TinySegConfig(widths=(8, 8, 16, 16), decoder_channels=32)).eval()
    save_tinyseg(root / "tinyseg", backbone, input_size=(64, 128))
    assert (
        stats.main(
            [
                "--backbone",
                str(root / "tinyseg.safetensors"),
                "--data-root",
                str(data),
                "--out",
                str(root / "stats.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    return {
        "root": root,
        "data": data,
        "backbone": root / "tinyseg.safetensors",
        "stats": root / "stats.json",
    }


def _args(tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--backbone",
        str(tiny["backbone"]),
        "--data-root",
        str(tiny["data"]),
        "--out",
        str(out),
        "--crop",
        "64x128",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--no-progress",
        "--log-every",
        "1",
        "--warmup-iters",
        "2",
        "--lr-step",
        "4",
        "--seed",
        "5",
        *extra,
    ]


def _log(path: Path) -> list[dict[str, str]]:
    with open(path / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_fed(path)[0].state_dict()


def test_training_reduces_the_loss(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        train_fed.main(
            _args(
                tiny,
                out,
                "--variant",
                "fed-u",
                "--max-iters",
                "30",
                "--lr",
                "1e-2",
                "--lr-step",
                "1000",
            )
        )
        == 0
    )
    losses = [float(row["loss"]) for row in _log(out)]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, losses


def test_checkpoint_round_trip_gives_identical_outputs(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert (
        train_fed.main(
            _args(
                tiny, out, "--variant", "fed-c", "--max-iters", "3", "--stats", str(tiny["stats"])
            )
        )
        == 0
    )
    fed, meta = load_fed(out / "fed_c")
    assert meta["training"]["iteration"] == 3 and "logit_statistics" in meta
    assert torch.any(
        fed.standardizer.std != 1
    )  # fed_train --stats reached the standardiser buffers
    save_fed(tmp_path / "copy", fed, meta)
    again, _ = load_fed(tmp_path / "copy")
    torch.manual_seed(1)
    logits, feats = torch.randn(2, 19, 16, 32) * 4, torch.randn(2, 32, 16, 32)
    with torch.no_grad():
        assert torch.equal(fed.p_wrong(logits, feats), again.p_wrong(logits, feats))
        periodic, _ = load_fed(out / "fed_c_iter000003")
        assert torch.equal(fed.p_wrong(logits, feats), periodic.p_wrong(logits, feats))


def test_resume_continues_the_uninterrupted_run(tiny: dict[str, Path], tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_fed.main(_args(tiny, full, "--max-iters", "6", "--ckpt-every", "3")) == 0
    assert train_fed.main(_args(tiny, part, "--max-iters", "3", "--ckpt-every", "3")) == 0
    saved = json.loads((part / "last_state.json").read_text())["elapsed_s"]
    assert saved > 0
    with open(part / "log.csv", "a") as handle:  # a row after the state (a crash): not the clock
        handle.write("99,123456.0,0,0,0,0\n")
    assert (
        train_fed.main(
            _args(tiny, part, "--max-iters", "6", "--ckpt-every", "3", "--resume", str(part))
        )
        == 0
    )
    rows = [r for r in _log(part) if r["step"] != "99"]
    resumed = [float(r["elapsed_s"]) for r in rows if int(r["step"]) > 3]
    assert resumed and saved < min(resumed) < 123456.0  # continues from the saved value
    meta = load_fed(part / "fed_u")[1]["training"]
    assert meta["elapsed_s"] >= max(resumed) - 1e-3
    args = meta["args"]  # numbers stay numbers in the saved flags (finding 9: "cond_dim": "32")
    assert args["cond_dim"] == 32 and args["max_iters"] == 6 and args["lr"] == 1e-3
    assert args["no_progress"] is True and args["stats"] is None and args["out"] == str(part)
    lr_full = {row["step"]: row["lr"] for row in _log(full)}
    lr_part = {row["step"]: row["lr"] for row in rows}
    assert lr_full == lr_part and len(lr_full) == 6
    a, b = _state(full / "fed_u"), _state(part / "fed_u")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert (
        train_fed.main(_args(tiny, part, "--max-iters", "6", "--resume", str(part))) == 2
    )  # already at 6


@pytest.mark.slow
def test_torchrun_two_ranks_stay_in_sync(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.train_fed",
        *_args(tiny, out, "--variant", "fed-c", "--max-iters", "4"),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = [(out / f"weights_rank{r}.sha256").read_text().strip() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert train_fed.weights_digest(load_fed(out / "fed_c")[0]) == digests[0]
    rows = _log(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_default_threads_leave_a_core_per_data_loader_worker() -> None:
    """Issue 16, finding 7: torch threads = cores / (ranks x (workers + 1)), at least 1;
    --threads wins; OMP_NUM_THREADS (set by the user or torchrun) is left to torch."""
    assert train_fed.default_threads(workers=2, cores=2) == 1  # the 2-core machine of the issue
    assert train_fed.default_threads(workers=0, cores=2) == 2
    assert train_fed.default_threads(workers=2, cores=16) == 5
    assert train_fed.default_threads(workers=2, cores=16, local_ranks=4) == 1
    assert train_fed.default_threads(workers=8, cores=4) == 1
    args = train_fed.build_parser().parse_args(
        ["--backbone", "b", "--data-root", "d", "--out", "o"]
    )
    assert args.threads == 0 and args.workers == 2
    assert train_fed.choose_threads(args, environ={}, cores=2) == (
        1,
        "2 cores / (1 rank(s) x (2 workers + 1))",
    )
    assert train_fed.choose_threads(args, environ={"LOCAL_WORLD_SIZE": "2"}, cores=16)[0] == 2
    assert train_fed.choose_threads(args, environ={"OMP_NUM_THREADS": "3"}, cores=2)[0] is None
    args.threads = 4
    assert train_fed.choose_threads(args, environ={"OMP_NUM_THREADS": "3"}, cores=2) == (
        4,
        "--threads",
    )


def test_a_failed_checkpoint_write_leaves_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file goes to a temporary name first (issue 16, finding 3): a write that dies
    half-way leaves the existing checkpoint readable and no temporary behind."""
    import safetensors.torch

    from ros2_fed.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "ck", {"w": torch.ones(3)}, {"note": "old"}, kind="fed")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def dies_half_way(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck", {"w": torch.zeros(3)}, {"note": "new"}, kind="fed")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    tensors, meta = load_checkpoint(tmp_path / "ck", kind="fed")
    assert meta["note"] == "old" and torch.equal(tensors["w"], torch.ones(3))
