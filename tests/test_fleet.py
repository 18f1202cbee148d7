"""fed_fleet_eval (ros2_fed/eval/fleet) with the local executor: worker processes on this machine.

Tiny synthroad bags of unequal length (2, 4, 7 and 3 frames of 64x128) and a random TinySeg +
FED-U (torch runtime); pooling also on hand-made bags of 2, 4 and 7 frames:

- a scorer state survives ``.npz`` bytes exactly (exact and histogram), and the merge of loaded
  states equals the merge of the originals;
- discovery: folders, bare files, list files, stable unique ids, a task per rig camera, an
  unreadable bag as a failed task;
- a run over 4 good bags, a corrupt one and one without the camera topic: 4 bag folders, 2
  failed rows with their reasons, POOLED equal to ONE scorer over every frame of every bag
  (counts exactly, metrics to 1e-12), each bag's state equal to its own report;
- resume: a re-run evaluates nothing, a run interrupted after some bags evaluates only the rest;
- a worker killed by SIGKILL has its bag retried; with the bags handed out in shuffled order
  to one worker the pooled numbers are identical; without retries it is a failed row;
- other settings than the finished bags' are refused unless --redo (here --histograms, whose
  pooled row equals one histogram scorer);
- each bag's scene status share (the scene-health stage) is in its row; progress is a bar on a
  terminal and plain lines otherwise; the benchmark script runs.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from ros2_fed.eval.fleet import cli as fleet_cli
from ros2_fed.eval.fleet import discovery, state
from ros2_fed.eval.fleet.report import row_badness
from ros2_fed.eval.fleet.task import CRASH_ENV, scene_share
from ros2_fed.eval.replay.errors import UsageError
from ros2_fed.eval.replay.scoring import Scorer
from ros2_fed.jsonio import strict
from tests import fleet_helpers as fh
from training import synthroad_bag as sb

# --------------------------------------------------------------------------------------
# Scorer state
# --------------------------------------------------------------------------------------


def _random_frames(seed: int) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(3):
        label = rng.integers(0, 5, (16, 20)).astype(np.uint8)
        label[0, :4] = 255
        ood = (rng.random((16, 20)) < 0.2).astype(np.uint8)
        ood[1, :3] = 255
        pred = np.where(rng.random((16, 20)) < 0.7, label, 1).astype(np.uint8)
        maps = {"node": rng.random((16, 20)).astype(np.float32), "MSP": rng.random((16, 20))}
        frames.append((pred, maps, label, ood))
    return frames


def _scorer(frames: list[tuple[Any, ...]], exact: bool) -> Scorer:
    scorer = Scorer(5, len(frames), 16 * 20, exact=exact, probability=["node"])
    for pred, maps, label, ood in frames:
        scorer.update(pred, maps, label, ood, "node")
    return scorer


def _random_scorer(seed: int, exact: bool) -> Scorer:
    return _scorer(_random_frames(seed), exact)


@pytest.mark.parametrize("exact", [True, False])
def test_scorer_state_round_trip_is_exact(exact: bool) -> None:
    a, b = _random_scorer(0, exact), _random_scorer(1, exact)
    loaded_a = state.scorer_from_bytes(state.scorer_to_bytes(a))
    assert strict(loaded_a.results()) == strict(a.results())  # NaN (no component) as None
    merged_loaded = loaded_a.merge(state.scorer_from_bytes(state.scorer_to_bytes(b)))
    merged = _random_scorer(0, exact).merge(_random_scorer(1, exact))
    assert strict(merged_loaded.results()) == strict(merged.results())
    assert merged_loaded.images == 6


def test_scorer_state_keeps_each_frame_for_the_component_metrics() -> None:
    """Frames of unequal size with objects above the benchmark's size limits: the component
    metrics of a stored-and-loaded (and merged) state equal the original's, frame by frame."""

    def frame(h: int, w: int, box: tuple[int, int, int, int], hit: bool) -> tuple[Any, ...]:
        ood = np.zeros((h, w), np.uint8)
        y0, y1, x0, x1 = box
        ood[y0:y1, x0:x1] = 1
        ood[0, :] = 255  # a void row
        score = np.full((h, w), 0.1)
        if hit:
            score[y0:y1, x0:x1] = 0.9
        return np.zeros((h, w), np.uint8), {"node": score}, None, ood

    a = _scorer(
        [frame(64, 80, (10, 40, 10, 40), True), frame(48, 96, (5, 30, 50, 90), False)], True
    )
    b = _scorer([frame(72, 72, (20, 50, 20, 52), True)], True)
    loaded = state.scorer_from_bytes(state.scorer_to_bytes(a))
    comps = loaded.results()["methods"]["node"]["components"]
    assert comps == a.results()["methods"]["node"]["components"]
    assert comps["gt_components"] == 2 and comps["frames"] == 2  # both objects >= 100 px
    merged = loaded.merge(state.scorer_from_bytes(state.scorer_to_bytes(b)))
    direct = _scorer(
        [
            frame(64, 80, (10, 40, 10, 40), True),
            frame(48, 96, (5, 30, 50, 90), False),
            frame(72, 72, (20, 50, 20, 52), True),
        ],
        True,
    )
    assert (
        merged.results()["methods"]["node"]["components"]
        == (direct.results()["methods"]["node"]["components"])
    )


@pytest.mark.parametrize("frames_per_bag", [3, 10**6])  # 10**6: the pool turns histogram
def test_pool_equals_one_scorer_over_all_frames(frames_per_bag: int) -> None:
    """Bags pooled from their stored states equal one scorer fed every frame: exact while
    frames x pixels <= 4e7, else histograms (the exact pairs binned as that scorer would)."""
    from ros2_fed.eval.fleet.pooling import FleetPool

    bags = [_random_frames(seed) for seed in range(4)]
    pool = FleetPool()
    for frames in bags:
        stored = state.scorer_to_bytes(_scorer(frames, exact=True))
        pool.add(state.scorer_from_bytes(stored), frames_per_bag, 16 * 20)
    exact = frames_per_bag == 3
    one = _scorer([f for frames in bags for f in frames], exact=exact)
    assert pool.scorer is not None and pool.scorer.exact is exact
    fh.assert_results_equal(pool.scorer.results(), one.results())


# Bags of unequal length (2, 4 and 7 frames) whose models differ in accuracy and in how well
# their scores separate wrong pixels, so the mean of
# per-bag IDM means, an unweighted scene share or a pool that forgets a bag all give other
# numbers than one scorer over the 13 frames.
UNEQUAL = ((2, 0.9, 1.0), (4, 0.6, 0.3), (7, 0.3, 0.05))  # frames, right share, separation
H16, W20 = 16, 20


def _bag_frames(seed: int, frames: int, right: float, apart: float) -> list[tuple[Any, ...]]:
    """float64 scores (no ties), wrong pixels scored higher on average, some void and OOD."""
    rng = np.random.default_rng(100 + seed)
    out = []
    for _ in range(frames):
        label = rng.integers(0, 5, (H16, W20)).astype(np.uint8)
        label[0, :4] = 255
        ood = (rng.random((H16, W20)) < 0.2).astype(np.uint8)
        ood[1, :3] = 255
        pred = np.where(rng.random((H16, W20)) < right, label, (label + 1) % 5).astype(np.uint8)
        score = rng.random((H16, W20)) + apart * (pred != label) + 0.5 * (ood == 1)
        out.append((pred, {"node": score / 3.0}, label, ood))
    return out


def _unequal_bags() -> list[list[tuple[Any, ...]]]:
    return [_bag_frames(i, *bag) for i, bag in enumerate(UNEQUAL)]


def _sklearn_oracle(bags: list[list[tuple[Any, ...]]]) -> dict[str, Any]:
    """scikit-learn on the concatenated pixels (OOD: void ignored, pooled) and per frame (IDM:
    void and OOD ignored, frames with one class skipped, the rest averaged over frames)."""
    skm = pytest.importorskip("sklearn.metrics")
    scores, truth, idm = [], [], []
    for pred, maps, label, ood in (frame for bag in bags for frame in bag):
        keep = ood != 255
        scores.append(maps["node"][keep])
        truth.append(ood[keep] == 1)
        valid = (label != 255) & (ood != 1)
        wrong = (pred != label)[valid]
        if 0 < wrong.sum() < wrong.size:
            s = maps["node"][valid]
            idm.append((skm.roc_auc_score(wrong, s), skm.average_precision_score(wrong, s)))
    s, y = np.concatenate(scores), np.concatenate(truth)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return {
        "ood_auroc": skm.roc_auc_score(y, s),
        "ood_ap": skm.average_precision_score(y, s),
        "ood_fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
        "idm_auroc": float(np.mean([a for a, _ in idm])),
        "idm_ap": float(np.mean([ap for _, ap in idm])),
        "idm_images": len(idm),
        "idm_bag_means": [  # the wrong answer: the plain mean of the bags' means
            _scorer(bag, exact=True).results()["methods"]["node"]["idm"]["auroc"] for bag in bags
        ],
    }


def _pool(bags: list[list[tuple[Any, ...]]], limit: Optional[int] = None) -> Any:
    """The bags' exact states, stored and read back, pooled in this order."""
    from ros2_fed.eval.fleet.pooling import FleetPool

    pool = FleetPool() if limit is None else FleetPool(exact_pixel_limit=limit)
    exact_after = []
    for frames in bags:
        stored = state.scorer_to_bytes(_scorer(frames, exact=True))
        pool.add(state.scorer_from_bytes(stored), len(frames), H16 * W20)
        exact_after.append(pool.scorer.exact)
    return pool, exact_after


def test_pool_of_unequal_bags_equals_scikit_learn_on_all_frames() -> None:
    """2, 4 and 7 frames: POOLED OOD equals scikit-learn on the 13 frames' pixels, IDM the mean
    over the 13 frames (not over the 3 bags), counts exact."""
    bags = _unequal_bags()
    want = _sklearn_oracle(bags)
    pool, exact_after = _pool(bags)
    assert exact_after == [True, True, True]
    got = pool.scorer.results()
    node = got["methods"]["node"]
    assert got["images"] == 13 and node["idm"]["n_images"] == want["idm_images"] == 13
    assert node["ood"]["auroc"] == pytest.approx(want["ood_auroc"], abs=1e-12)
    assert node["ood"]["ap"] == pytest.approx(want["ood_ap"], abs=1e-12)
    assert node["ood"]["fpr_at_tpr"] == pytest.approx(want["ood_fpr95"], abs=1e-12)
    assert node["idm"]["auroc"] == pytest.approx(want["idm_auroc"], abs=1e-12)
    assert node["idm"]["ap"] == pytest.approx(want["idm_ap"], abs=1e-12)
    # the test data tells the frame mean from the mean of bag means
    assert abs(np.mean(want["idm_bag_means"]) - want["idm_auroc"]) > 0.01


def test_pool_crossing_the_exact_limit_between_bags_keeps_every_bag() -> None:
    """The limit (5 frames of 16x20 here) is crossed by the third bag: the two exact bags'
    pairs are binned into the histograms, so POOLED equals ONE histogram scorer over all 13
    frames, and its OOD AuROC is within its error bound of scikit-learn's on all of them."""
    bags = _unequal_bags()
    pool, exact_after = _pool(bags, limit=5 * H16 * W20)
    assert exact_after == [True, False, False]  # 2 frames exact, 6 frames over the limit
    pool, exact_after = _pool(bags, limit=10 * H16 * W20)
    assert exact_after == [True, True, False]  # crossed by the third bag (6 -> 13 frames)
    got = pool.scorer.results()
    one = _scorer([frame for bag in bags for frame in bag], exact=False)
    fh.assert_results_equal(got, one.results())
    assert got["images"] == 13 and got["exact"] is False
    want = _sklearn_oracle(bags)
    ood = got["methods"]["node"]["ood"]
    assert abs(ood["auroc"] - want["ood_auroc"]) <= ood["error_bounds"]["auroc_error_bound"]
    assert got["methods"]["node"]["idm"]["auroc"] == pytest.approx(want["idm_auroc"], abs=1e-12)


def test_pooled_scene_share_weights_each_bag_by_its_frames() -> None:
    """2 frames all OK, 4 frames half WARN, 7 frames all ERROR (hand-counted: OK 4 of 13,
    WARN 2 of 13, ERROR 7 of 13); a bag without a scene share adds no frame."""
    from ros2_fed.eval.fleet.pooling import pooled_scene

    summaries = [
        {"scene": {"OK": 1.0}, "frames": {"evaluated": 2}},
        {"scene": {"OK": 0.5, "WARN": 0.5}, "frames": {"evaluated": 4}},
        {"scene": {"ERROR": 1.0}, "frames": {"evaluated": 7}},
        {"scene": None, "frames": {"evaluated": 100}},
    ]
    got = pooled_scene(summaries)
    assert got == pytest.approx({"OK": 4 / 13, "WARN": 2 / 13, "ERROR": 7 / 13}, abs=1e-15)
    assert pooled_scene([{"scene": None, "frames": {"evaluated": 3}}]) is None


def test_scorer_state_refuses_other_files() -> None:
    with pytest.raises(ValueError, match="not a scorer state"):
        state.scorer_from_bytes(b"PK\x03\x04 not an npz")
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"format": "other"}', np.uint8))
    with pytest.raises(ValueError, match="format"):
        state.scorer_from_bytes(buffer.getvalue())


# --------------------------------------------------------------------------------------
# Discovery and report helpers
# --------------------------------------------------------------------------------------


def test_discovery(tmp_path: Path) -> None:
    sb.write_synthroad_bag(tmp_path / "a" / "drive", frames=1, size=(32, 64), seed=0)
    sb.write_synthroad_bag(tmp_path / "b" / "drive", frames=1, size=(32, 64), seed=1)
    rig = tmp_path / "rig"
    sb.write_synthroad_bag(rig, frames=1, size=(32, 64), seed=2, cameras=2)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next((tmp_path / "a" / "drive").glob("*.mcap")), loose / "single.mcap")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: [a, rosbag2")
    listing = tmp_path / "bags.txt"
    listing.write_text("# fleet\nrig\nloose/single.mcap  # a bare file\n\nbroken\n")

    tasks = discovery.make_tasks([str(tmp_path / "a"), str(tmp_path / "b"), str(listing)])
    ids = [t.id for t in tasks]
    assert len(set(ids)) == len(ids) == 6
    assert ids[0].startswith("drive-") and ids[1].startswith("drive-")  # same name: hashed
    assert ids[2:4] == ["rig--cam0", "rig--cam1"]
    assert [t.topic for t in tasks[2:4]] == ["/cam0/image_raw", "/cam1/image_raw"]
    assert tasks[2].gt_topic == "/cam0/labels" and tasks[3].ood_topic == "/cam1/ood"
    assert ids[4] == "single" and tasks[4].bag.endswith("single.mcap") and not tasks[4].error
    assert ids[5] == "broken" and "broken: " in tasks[5].error  # a failed row, never run
    assert discovery.make_tasks([str(tmp_path / "a"), str(tmp_path / "b"), str(listing)]) == tasks
    assert [t.id for t in discovery.make_tasks([str(tmp_path)])][:2] == ["a__drive", "b__drive"]
    with pytest.raises(UsageError, match="no such bag"):
        discovery.make_tasks([str(tmp_path / "nothing")])


def test_scene_share_and_row_order() -> None:
    assert scene_share({}) is None
    assert scene_share({"scene": {"counts": {"OK": 3, "WARN": 1}}}) == {"OK": 0.75, "WARN": 0.25}
    assert scene_share({"scene": {"share": {"OK": 0.5, "ERROR": 0.5}}}) == {
        "OK": 0.5,
        "ERROR": 0.5,
    }
    rows = [
        {"id": "c", "node": {}},
        {"id": "b", "node": {"ood_auroc": 0.9}},
        {"id": "a", "node": {"ood_auroc": None, "idm_auroc": 0.6}},
    ]
    assert [r["id"] for r in sorted(rows, key=row_badness)] == ["a", "b", "c"]


def test_progress_lines_off_a_terminal_and_a_bar_on_one() -> None:
    from ros2_fed.eval.fleet.progress import Progress
    from ros2_fed.eval.fleet.task import BagResult

    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    done = BagResult(discovery.BagTask("a", "a"), True, summary={"frames": {"evaluated": 20}})
    failed = BagResult(discovery.BagTask("b", "b"), False, "b: bag not found")
    plain = Stream(tty=False)
    progress = Progress(3, stream=plain)
    progress.update(done)
    progress.update(failed)
    progress.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in plain.getvalue()
    assert lines[0].startswith("fed_fleet_eval: [1/3] a done | 0 failed |") and "ETA" in lines[0]
    assert "[2/3] b FAILED: b: bag not found | 1 failed" in lines[1]
    terminal = Stream(tty=True)
    progress = Progress(3, stream=terminal)
    progress.update(done)
    progress.update(failed)
    progress.close()
    assert "2/3" in terminal.getvalue() and "failed 1" in terminal.getvalue()
    assert "\r" in terminal.getvalue()  # a bar redrawn in place


def test_help_lists_the_fleet_and_model_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fleet_cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--executor", "--ray-address", "--workers", "--redo", "--backbone", "--cameras"):
        assert flag in text


# --------------------------------------------------------------------------------------
# A local run
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.fed_helpers import private_engine_cache, save_tiny_model

    root = tmp_path_factory.mktemp("fleet")
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    model = save_tiny_model(root, fh.SIZE)
    fleet = fh.write_fleet(root, good=4)
    with private_engine_cache(root):
        yield {"root": root, "model": model, **fleet}
    if saved is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = saved


def run_fleet(work: dict[str, Any], out: Path, *extra: str, inputs: Any = None) -> int:
    inputs = [str(work["fleet"])] if inputs is None else inputs
    argv = inputs + ["--out", str(out), "--quiet"] + fh.model_args(work["model"]) + list(extra)
    return fleet_cli.main(argv)


@pytest.fixture(scope="module")
def first(work: dict[str, Any]) -> dict[str, Any]:
    out = work["root"] / "out"
    code = run_fleet(work, out, "--workers", "2")
    return {"out": out, "code": code, "report": fh.read_report(out)}


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_run_rows_failures_and_files(work: dict[str, Any], first: dict[str, Any]) -> None:
    report, out = first["report"], first["out"]
    assert first["code"] == 1  # the report is written, some bags failed
    assert report["complete"] is True
    assert report["counts"] == {
        "tasks": 6,
        "done": 4,
        "evaluated_now": 4,
        "resumed": 0,
        "failed": 2,
    }
    assert sorted(r["id"] for r in report["rows"]) == work["good"]
    failed = {f["id"]: f["reason"] for f in report["failed"]}
    assert "checksum" in failed["bad_corrupt"] and "bad_corrupt" in failed["bad_corrupt"]
    assert "no camera topics" in failed["bad_no_camera"]
    assert all("\n" not in reason for reason in failed.values())
    values = [row_badness(r) for r in report["rows"]]
    assert values == sorted(values)  # worst first
    for bag_id in work["good"]:
        folder = out / "bags" / bag_id
        bag_report = json.loads((folder / "report.json").read_text())
        assert bag_report["complete"] is True and bag_report["files"]["output_bag"] is None
        assert "- output bag: none (fed_fleet_eval" in (folder / "report.md").read_text()
        own = state.scorer_from_bytes((folder / "scorer_state.npz").read_bytes())
        assert strict(own.results()) == strict(bag_report["metrics"])
        row = next(r for r in report["rows"] if r["id"] == bag_id)
        share = bag_report["scene"]["share"]  # the scene-health stage's per-level share
        assert row["scene"] == {k: v for k, v in share.items() if v is not None}
    assert sum(report["pooled"]["scene"].values()) == pytest.approx(1.0)
    counts: dict[str, int] = {}  # the fleet's share: every bag's frames per level, counted
    for bag_id in work["good"]:
        scene = json.loads((out / "bags" / bag_id / "report.json").read_text())["scene"]
        for level, n in scene["counts"].items():
            counts[level] = counts.get(level, 0) + int(n)
    total = sum(counts.values())
    assert total == sum(fh.BAG_FRAMES)
    want = {level: n / total for level, n in counts.items() if n}
    assert {k: v for k, v in report["pooled"]["scene"].items() if v} == pytest.approx(want)
    assert not list((out / "bags").glob(".tmp-*"))
    md = (out / "report.md").read_text()
    assert "**POOLED**" in md and "bad_corrupt" in md and "checksum" in md
    assert "| scene status |" in md
    assert report["pooled"]["frames"]["evaluated"] == sum(fh.BAG_FRAMES)
    frames = {r["id"]: r["frames"]["evaluated"] for r in report["rows"]}
    assert [frames[bag_id] for bag_id in sorted(work["good"])] == list(fh.BAG_FRAMES)


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_pooled_equals_one_scorer_over_all_frames(
    work: dict[str, Any], first: dict[str, Any]
) -> None:
    bags = [work["fleet"] / bag_id for bag_id in sorted(work["good"])]
    want = fh.oracle_results(bags, work["model"])
    fh.assert_results_equal(first["report"]["pooled"]["metrics"], want)
    assert want["exact"] is True and want["images"] == sum(fh.BAG_FRAMES)


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_worst_frames_of_the_fleet(first: dict[str, Any]) -> None:
    frames = first["report"]["worst_frames"]
    assert len(frames) == min(20, sum(fh.BAG_FRAMES))
    keys = [(not f["by_auroc"], -f["badness"]) for f in frames]
    assert keys == sorted(keys)
    assert all(f["topic"] == sb.IMAGE_TOPIC and "." in f["stamp"] and f["what"] for f in frames)


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_resume_skips_finished_bags(work: dict[str, Any], first: dict[str, Any]) -> None:
    out = work["root"] / "resume"
    shutil.copytree(first["out"], out)
    before = {p: p.stat().st_mtime_ns for p in (out / "bags").glob("*/summary.json")}
    assert run_fleet(work, out, "--workers", "2") == 1
    report = fh.read_report(out)
    assert report["counts"]["evaluated_now"] == 0 and report["counts"]["resumed"] == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "bags").glob("*/summary.json")} == before
    # an interrupted run: two bags never finished, one left a half-written folder
    for bag_id in work["good"][1:3]:
        shutil.rmtree(out / "bags" / bag_id)
    (out / "bags" / f".tmp-{work['good'][1]}-123").mkdir()
    assert run_fleet(work, out, "--workers", "2") == 1
    report = fh.read_report(out)
    assert report["counts"]["evaluated_now"] == 2 and report["counts"]["resumed"] == 2
    assert not list((out / "bags").glob(".tmp-*"))
    assert report["pooled"]["metrics"] == first["report"]["pooled"]["metrics"]


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_killed_worker_is_retried_and_order_does_not_matter(
    work: dict[str, Any], first: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, bags handed out in shuffled order, its process SIGKILLed on one bag."""
    marker = work["root"] / "killed_once"
    monkeypatch.setenv(CRASH_ENV, f"{work['good'][2]}:{marker}")
    make_tasks = fleet_cli.make_tasks

    def shuffled(*args: Any, **kwargs: Any) -> list[discovery.BagTask]:
        tasks = make_tasks(*args, **kwargs)
        random.Random(7).shuffle(tasks)
        return tasks

    monkeypatch.setattr(fleet_cli, "make_tasks", shuffled)
    out = work["root"] / "shuffled"
    assert run_fleet(work, out, "--workers", "1") == 1
    report = fh.read_report(out)
    assert marker.is_file()  # the worker really was killed once
    attempts = {r["id"]: r["attempts"] for r in report["rows"]}
    assert attempts[work["good"][2]] == 2 and attempts[work["good"][0]] == 1
    assert report["counts"]["done"] == 4
    assert report["pooled"]["metrics"] == first["report"]["pooled"]["metrics"]


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_worker_dying_without_retries_is_a_failed_row(
    work: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CRASH_ENV, f"{work['good'][1]}:{work['root'] / 'killed_no_retry'}")
    out = work["root"] / "no_retry"
    inputs = [str(work["fleet"] / bag_id) for bag_id in work["good"][:2]]
    assert run_fleet(work, out, "--workers", "1", "--retries", "0", inputs=inputs) == 1
    report = fh.read_report(out)
    (failed,) = report["failed"]
    assert failed["id"] == work["good"][1] and "died once (killed by SIGKILL)" in failed["reason"]
    assert [r["id"] for r in report["rows"]] == [work["good"][0]]


@pytest.mark.slow  # worker processes (spawned interpreters importing torch)
def test_other_settings_are_refused_unless_redo(
    work: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Here the other setting is --histograms: the redone bag's state bins its scores, and
    POOLED equals one histogram scorer over its frames."""
    out = work["root"] / "settings"
    bag = work["fleet"] / work["good"][0]
    assert run_fleet(work, out, "--workers", "1", inputs=[str(bag)]) == 0
    assert run_fleet(work, out, "--workers", "1", "--histograms", inputs=[str(bag)]) == 2
    assert "other settings (histograms)" in capsys.readouterr().err
    code = run_fleet(work, out, "--workers", "1", "--redo", "--histograms", inputs=[str(bag)])
    assert code == 0
    report = fh.read_report(out)
    assert report["counts"]["evaluated_now"] == 1 and report["settings"]["histograms"] is True
    stored = state.scorer_from_bytes((out / "bags" / "drive_00" / "scorer_state.npz").read_bytes())
    assert stored.exact is False and report["pooled"]["metrics"]["exact"] is False
    want = fh.oracle_results([bag], work["model"], exact=False)
    fh.assert_results_equal(report["pooled"]["metrics"], want)


@pytest.mark.slow
def test_benchmark_prints_its_table(tmp_path: Path) -> None:
    """benchmarks/fleet.py end to end on tiny settings (timings are not judged)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fleet.py"
    argv = [sys.executable, str(script), "--bags", "2", "--frames", "2", "--size", "64x128"]
    argv += ["--executors", "local", "--workers", "1", "--repeats", "1", "--work", str(tmp_path)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| local | 1 |")]
    assert len(rows) == 1 and "load average" in done.stdout


@pytest.mark.slow
def test_ctrl_c_keeps_finished_bags_and_the_same_command_resumes(work: dict[str, Any]) -> None:
    """SIGINT to a real fed_fleet_eval process after its first bag: exit 0, only complete bag
    folders; the same command then evaluates only the rest."""
    import signal
    import subprocess
    import sys
    import time

    out = work["root"] / "ctrl_c"
    argv = [sys.executable, "-m", "ros2_fed.eval.fleet.cli", str(work["fleet"]), "--out", str(out)]
    argv += ["--workers", "1", "--quiet"] + fh.model_args(work["model"])
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((out / "bags").glob("drive_*/summary.json")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "stopped; finished bags are kept" in err, err[-2000:]
    assert "Traceback" not in err and "leaked" not in err, err[-2000:]
    done = {p.parent.name for p in (out / "bags").glob("*/summary.json")}
    assert 1 <= len(done) < 4 and not (out / "report.json").exists()
    assert all((out / "bags" / d / "scorer_state.npz").is_file() for d in done)
    assert run_fleet(work, out, "--workers", "1") == 1
    report = fh.read_report(out)
    assert report["counts"]["resumed"] == len(done)
    assert report["counts"]["evaluated_now"] == 4 - len(done)
