"""fed_stats / fed_train / fed_eval as a new user meets them (issue 16).

User mistakes are one line on stderr and exit code 2; every flag has help text; the backbone
fingerprint is recorded by fed_stats and fed_train and checked by fed_eval, fed_train --stats,
fed_stats --into and fed_calibrate; fed_train refuses to write over an earlier run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
from ros2_fed.checkpoint import load_fed
from ros2_fed.fingerprint import ALLOW_FLAG, FINGERPRINT_KEY, fingerprint_of
from training import calibrate, cli_eval, cli_synthroad, stats, train_fed

PROGRAMS: dict[str, Callable[..., int]] = {
    "fed_stats": stats.main,
    "fed_train": train_fed.main,
    "fed_eval": cli_eval.main,
}


def _train_args(w: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--backbone",
        str(w["bb"]),
        "--data-root",
        str(w["data"]),
        "--out",
        str(out),
        "--crop",
        "32x64",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--max-iters",
        "1",
        "--warmup-iters",
        "0",
        "--blocks",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny synthroad data, two TinySegs (bb, bb2), statistics and a one-iteration FED-U run for
    bb."""
    root = tmp_path_factory.mktemp("training_cli")
    data = root / "data"
    assert (
        cli_synthroad.main(
            [
                "--out",
                str(data),
                "--train",
                "2",
                "--val",
                "1",
                "--ood",
                "1",
                "--size",
                "32x64",
                "--seed",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    for name, seed in (("bb", 0), ("bb2", 1)):
        torch.manual_seed(seed)
        save_tinyseg(
            root / name,
            TinySeg(TinySegConfig(widths=(4, 8, 8, 8), decoder_channels=8)).eval(),
            (32, 64),
        )
    w = {
        "root": root,
        "data": data,
        "bb": root / "bb",
        "bb2": root / "bb2",
        "stats": root / "stats.json",
    }
    assert (
        stats.main(
            [
                "--backbone",
                str(w["bb"]),
                "--data-root",
                str(data),
                "--out",
                str(w["stats"]),
                "--no-progress",
            ]
        )
        == 0
    )
    assert train_fed.main(_train_args(w, root / "run_u")) == 0
    w["run_u"], w["fed_u"] = root / "run_u", root / "run_u" / "fed_u"
    return w


def _broken_copies(w: dict[str, Path]) -> dict[str, Path]:
    """Data roots with a label of the wrong size and with a missing label."""
    import cv2

    bad_size, no_label = w["root"] / "bad_size", w["root"] / "no_label"
    for folder in (bad_size, no_label):
        if not folder.exists():
            shutil.copytree(w["data"], folder)
    labels = sorted((bad_size / "gtFine" / "train").rglob("*_labelTrainIds.png"))
    cv2.imwrite(str(labels[0]), cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)[:16, :32])
    for label in sorted((no_label / "gtFine" / "train").rglob("*.png")):
        if label.name.startswith(labels[0].name.split("_gtFine")[0]):
            label.unlink()
    return {"bad_size": bad_size, "no_label": no_label}


MISTAKES: list[tuple[str, str, Callable[[dict[str, Path]], list[str]]]] = [
    (
        "fed_stats",
        "wrong backbone path",
        lambda w: [
            "--backbone",
            str(w["root"] / "nope"),
            "--data-root",
            str(w["data"]),
            "--out",
            str(w["root"] / "s.json"),
        ],
    ),
    (
        "fed_stats",
        "missing data root",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--data-root",
            str(w["root"] / "nope"),
            "--out",
            str(w["root"] / "s.json"),
        ],
    ),
    (
        "fed_stats",
        "label size mismatch",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--data-root",
            str(_broken_copies(w)["bad_size"]),
            "--out",
            str(w["root"] / "s.json"),
        ],
    ),
    (
        "fed_stats",
        "missing label",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--data-root",
            str(_broken_copies(w)["no_label"]),
            "--out",
            str(w["root"] / "s.json"),
        ],
    ),
    (
        "fed_train",
        "--crop 256,512",
        lambda w: _train_args(w, w["root"] / "t1") + ["--crop", "256,512"],
    ),
    (
        "fed_train",
        "missing --stats",
        lambda w: _train_args(w, w["root"] / "t2", "--stats", str(w["root"] / "nope.json")),
    ),
    (
        "fed_train",
        "--resume of the other variant",
        lambda w: _train_args(
            w,
            w["root"] / "t3",
            "--variant",
            "fed-c",
            "--cond-dim",
            "4",
            "--resume",
            str(w["run_u"]),
        ),
    ),
    ("fed_train", "existing --out", lambda w: _train_args(w, w["run_u"])),
    (
        "fed_eval",
        "missing --stats",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--dataset",
            "synthroad",
            "--data-root",
            str(w["data"]),
            "--out",
            str(w["root"] / "e"),
            "--stats",
            str(w["root"] / "nope.json"),
        ],
    ),
    (
        "fed_eval",
        "wrong --fed path",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--fed",
            f"FED-U={w['root'] / 'nope'}",
            "--dataset",
            "synthroad",
            "--data-root",
            str(w["data"]),
            "--out",
            str(w["root"] / "e"),
        ],
    ),
    (
        "fed_eval",
        "wrong root",
        lambda w: [
            "--backbone",
            str(w["bb"]),
            "--fed",
            f"FED-U={w['fed_u']}",
            "--dataset",
            "synthroad",
            "--data-root",
            str(w["root"] / "nope"),
            "--out",
            str(w["root"] / "e"),
        ],
    ),
]


@pytest.mark.parametrize("prog,mistake,argv", MISTAKES, ids=[f"{p}: {m}" for p, m, _ in MISTAKES])
def test_user_mistakes_are_one_line_and_exit_2(
    w: dict[str, Path],
    prog: str,
    mistake: str,
    argv: Callable[[dict[str, Path]], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = PROGRAMS[prog](argv(w) + (["--no-progress"] if prog != "fed_train" else []))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "parser",
    [stats.build_parser, train_fed.build_parser, cli_eval.build_parser, calibrate.build_parser],
)
def test_every_flag_has_help(parser: Callable[[], argparse.ArgumentParser]) -> None:
    missing = [
        a.option_strings[0]
        for a in parser()._actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction)
        and not (a.help or "").strip()
    ]
    assert not missing


# ---------------------------------------------------------------------------- fingerprints
def test_stats_and_training_record_the_backbone(w: dict[str, Path]) -> None:
    from ros2_fed.backbones import load_backbone

    expected = fingerprint_of(load_backbone(w["bb"])).to_json()
    assert expected["sha256"]
    assert json.loads(w["stats"].read_text())[FINGERPRINT_KEY] == expected
    _, meta = load_fed(w["fed_u"])  # --backbone given as a stem, as the README writes it
    assert meta[FINGERPRINT_KEY] == expected
    assert meta["training"]["backbone_sha256"] == expected["sha256"]


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_consumers_refuse_another_backbone(
    w: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = w["root"]
    eval_args = [
        "--backbone",
        str(w["bb2"]),
        "--dataset",
        "synthroad",
        "--data-root",
        str(w["data"]),
        "--out",
        str(root / "e2"),
        "--no-progress",
        "--mcd-passes",
        "0",
        "--figures",
        "0",
        "--no-open-miou",
    ]
    assert cli_eval.main(eval_args + ["--fed", f"FED-U={w['fed_u']}"]) == 2
    assert "fed_u" in (err := _one_error(capsys)) and ALLOW_FLAG in err and "tinyseg" in err
    assert cli_eval.main(eval_args + ["--stats", str(w["stats"])]) == 2
    assert "stats.json" in _one_error(capsys)
    assert (
        train_fed.main(
            _train_args(w, root / "t_other", "--stats", str(w["stats"]))
            + ["--backbone", str(w["bb2"])]
        )
        == 2
    )
    assert "stats.json" in _one_error(capsys)
    assert (
        stats.main(
            [
                "--backbone",
                str(w["bb2"]),
                "--data-root",
                str(w["data"]),
                "--out",
                str(root / "s2.json"),
                "--into",
                str(w["fed_u"]),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "fed_u" in _one_error(capsys)
    assert (
        calibrate.main(
            [
                "--backbone",
                str(w["bb2"]),
                "--fed",
                str(w["fed_u"]),
                "--data-root",
                str(w["data"]),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "fed_u" in _one_error(capsys)
    with pytest.warns(UserWarning, match=ALLOW_FLAG):  # the override runs to the end
        assert cli_eval.main(eval_args + ["--fed", f"FED-U={w['fed_u']}", ALLOW_FLAG]) == 0


def test_results_json_is_strict(w: dict[str, Path]) -> None:
    """synthroad (in-distribution) has no OOD pixels: undefined OOD metrics are null, not NaN."""
    out = w["root"] / "e_strict"
    assert (
        cli_eval.main(
            [
                "--backbone",
                str(w["bb"]),
                "--fed",
                f"FED-U={w['fed_u']}",
                "--dataset",
                "synthroad",
                "--data-root",
                str(w["data"]),
                "--out",
                str(out),
                "--no-progress",
                "--mcd-passes",
                "0",
                "--figures",
                "0",
                "--no-open-miou",
            ]
        )
        == 0
    )

    def reject(token: str) -> Any:
        raise ValueError(token)

    json.loads((out / "results.json").read_text(), parse_constant=reject)


# ---------------------------------------------------------------------------- fed_train's run
# folder
def _log_steps(out: Path) -> list[int]:
    with open(out / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_train_refuses_an_earlier_run_unless_resumed_or_overwritten(
    w: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = w["root"] / "run_again"
    assert (
        train_fed.main(
            _train_args(w, out, "--max-iters", "2", "--log-every", "1", "--warmup-iters", "1")
        )
        == 0
    )
    before = (out / "fed_u.safetensors").read_bytes()
    capsys.readouterr()
    assert train_fed.main(_train_args(w, out, "--seed", "7")) == 2
    assert (
        "--overwrite" in _one_error(capsys) and (out / "fed_u.safetensors").read_bytes() == before
    )
    assert (
        train_fed.main(
            _train_args(w, out, "--max-iters", "3", "--log-every", "1", "--resume", str(out))
        )
        == 0
    )
    assert _log_steps(out) == [1, 2, 3]
    assert train_fed.main(_train_args(w, out, "--log-every", "1", "--overwrite")) == 0
    assert _log_steps(out) == [1]  # a fresh log, not 1, 2, 3, 1


def test_warmup_longer_than_training_warns(
    w: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_fed.main(_train_args(w, w["root"] / "run_warm", "--warmup-iters", "4000")) == 0
    err = capsys.readouterr().err
    assert "fed_train: warning: --warmup-iters 4000 >= --max-iters 1" in err


def test_a_fed_without_fingerprint_is_accepted_with_a_one_line_warning(
    w: dict[str, Path], tmp_path: Path
) -> None:
    """Older FED checkpoints (written before fingerprints) still evaluate; a plain fed_eval process
    says so
    in one line."""
    from ros2_fed.checkpoint import save_fed

    fed, meta = load_fed(w["fed_u"])
    save_fed(
        tmp_path / "old",
        fed,
        {
            k: v
            for k, v in meta.items()
            if k not in (FINGERPRINT_KEY, "format", "kind", "format_version", "tensors_sha256")
        },
    )
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli_eval",
            "--backbone",
            str(w["bb"]),
            "--fed",
            f"FED-U={tmp_path / 'old'}",
            "--dataset",
            "synthroad",
            "--data-root",
            str(w["data"]),
            "--out",
            str(tmp_path / "e"),
            "--no-progress",
            "--mcd-passes",
            "0",
            "--figures",
            "0",
            "--no-open-miou",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "fingerprint" in line]
    assert len(warned) == 1 and warned[0].startswith("fed_eval: warning: FED checkpoint"), (
        proc.stderr[-2000:]
    )


def test_fed_convert_names_a_json_that_is_no_checkpoint(
    w: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fed_convert keys.json out`` (issue 16, finding 9): the error names keys.json and why,
    not a missing keys.safetensors; our own sidecar still converts."""
    from ros2_fed.backbones import cli_convert

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(["backbone.stem.0.weight"]))
    assert cli_convert.main([str(keys), str(tmp_path / "out")]) != 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(keys) in lines[0], lines
    assert "not a backbone checkpoint" in lines[0], lines
    assert "keys.safetensors" not in lines[0]
    assert not (tmp_path / "out.safetensors").exists()
    fed_json = w["fed_u"].with_name("fed_u.json")
    assert cli_convert.main([str(fed_json), str(tmp_path / "out")]) != 0
    assert "'fed' checkpoint, not a backbone" in capsys.readouterr().err
    assert cli_convert.main([str(w["bb"].with_name("bb.json")), str(tmp_path / "out")]) == 0
