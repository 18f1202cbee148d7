"""The fleet run's output folder: one folder per finished bag, written whole or not at all.

Layout of ``OUT``::

    fleet.json               the settings of the run (model, topics, parameters): a re-run with
                             other settings is refused unless --redo
    bags/<id>/               a finished task: report.json, report.md, PNGs, scorer_state.npz,
                             summary.json (its row of the fleet report)
    report.json, report.md   the fleet report

A bag folder is written under a temporary name and renamed into place, so after a crash or
Ctrl-C every ``bags/<id>/`` is complete; a re-run skips those (resume) and evaluates the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ros2_fed.eval.fleet.state import scorer_from_bytes
from ros2_fed.eval.fleet.task import STATE_FILE, SUMMARY_FILE, BagResult
from ros2_fed.eval.replay.errors import UsageError
from ros2_fed.eval.replay.scoring import Scorer
from ros2_fed.jsonio import strict, write_json

SETTINGS_FILE = "fleet.json"
BAGS = "bags"
TMP_PREFIX = ".tmp-"


def prepare(out: Path, settings: dict[str, Any], redo: bool) -> None:
    """OUT ready for this run: refuses other settings than the finished bags were evaluated
    with (unless ``redo``, which removes the earlier bag folders); stale temporary folders of
    an interrupted run are removed."""
    bags = out / BAGS
    bags.mkdir(parents=True, exist_ok=True)
    path = out / SETTINGS_FILE
    wanted = strict(settings)
    if path.is_file() and not redo:
        try:
            earlier = json.loads(path.read_text()).get("settings")
        except (OSError, ValueError):
            earlier = None
        if earlier != wanted and any(done_ids(out)):
            changed = sorted(
                k
                for k in set(wanted) | set(earlier or {})
                if (earlier or {}).get(k) != wanted.get(k)
            )
            raise UsageError(
                f"{out} holds bags evaluated with other settings "
                f"({', '.join(changed) or 'unknown'}); use --redo to evaluate every bag again, "
                "or another --out"
            )
    if redo:
        shutil.rmtree(bags, ignore_errors=True)
        bags.mkdir(parents=True)
    for stale in bags.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    write_json(path, {"tool": "fed_fleet_eval", "settings": wanted})


def bag_dir(out: Path, task_id: str) -> Path:
    return out / BAGS / task_id


def is_done(out: Path, task_id: str) -> bool:
    folder = bag_dir(out, task_id)
    return (folder / SUMMARY_FILE).is_file() and (folder / STATE_FILE).is_file()


def done_ids(out: Path) -> list[str]:
    bags = out / BAGS
    if not bags.is_dir():
        return []
    return sorted(
        p.name
        for p in bags.iterdir()
        if not p.name.startswith(TMP_PREFIX) and is_done(out, p.name)
    )


def write_bag(out: Path, result: BagResult) -> Path:
    """The finished task's files into ``bags/<id>/``, atomically (temporary folder + rename)."""
    final = bag_dir(out, result.task.id)
    tmp = out / BAGS / f"{TMP_PREFIX}{result.task.id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in result.files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # clips/ of --clips
        with open(tmp / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def read_summary(out: Path, task_id: str) -> dict[str, Any]:
    return json.loads((bag_dir(out, task_id) / SUMMARY_FILE).read_text())


def read_state(out: Path, task_id: str) -> Scorer:
    return scorer_from_bytes((bag_dir(out, task_id) / STATE_FILE).read_bytes())
