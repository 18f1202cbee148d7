"""`fed_fleet_eval`: replay a fleet of rosbags through FED and get one exact report.

Examples::

    # every rosbag2 below runs/fleet, 2 worker processes here, the embedded default model
    fed_fleet_eval runs/fleet --out runs/fleet_eval --workers 2

    # the same on the Ray cluster this machine belongs to (`ray start --head` / `--address`)
    fed_fleet_eval runs/fleet --out runs/fleet_eval --executor ray --ray-address auto

    # a list file of bags (one path per line), your checkpoints, one GPU per Ray worker
    fed_fleet_eval drives.txt --out eval/ --executor ray --ray-address head:6379 \\
        --backbone ckpt/segformer_b2 --fed ckpt/fed_u --device cuda --ray-gpus-per-worker 1

Each bag (each camera of a rig bag) is one task, evaluated exactly as ``fed_bag_eval --offline``
evaluates it (same frame path, scorer and per-bag report), by a worker that keeps its engine
open for the next bag; no output bag is written. A finished bag is stored in
``OUT/bags/<id>/`` (report.json, report.md, PNGs, scorer_state.npz, summary.json), written under
a temporary name and renamed: a re-run skips finished bags (resume after a crash or Ctrl-C;
``--redo`` evaluates every bag again). A bag that cannot be read (corrupt, missing topic, wrong
type) is a failed row with its reason; a worker that dies has its bag retried (``--retries``),
then reported failed. ``OUT/report.md`` + ``report.json``: a row per bag, worst first, the
POOLED row from the merged scorer states (exactly one scorer over all frames of all bags), the
worst frames of the fleet, the failed bags, the model and engine fingerprints, wall time and
speed.

Exit codes: 0 every bag evaluated, 1 the report was written but some bags failed, 2 unusable
arguments (no bags, other settings than the bags already in OUT, Ray missing). Ctrl-C or
SIGTERM stops the run (exit 0, as every command here; 130 for an interrupt that was not a
signal): finished bags are kept and the same command resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ros2_fed import stopping
from ros2_fed.eval.fleet import pooling, store
from ros2_fed.eval.fleet import report as fleet_report
from ros2_fed.eval.fleet.discovery import BagTask, make_tasks
from ros2_fed.eval.fleet.executor import Executor
from ros2_fed.eval.fleet.progress import Progress
from ros2_fed.eval.fleet.task import SUMMARY_FILE, BagResult, json_bytes
from ros2_fed.eval.replay.errors import UsageError

EXECUTORS = ("local", "ray")


def _add_bag_options(p: argparse.ArgumentParser) -> None:
    """fed_bag_eval's topic, model and reference options (one definition: its own helpers),
    with the fleet's defaults: one intra-op thread per worker, no reference rows."""
    from ros2_fed.eval.replay import cli as bag_cli

    bag_cli._add_topic_args(p)
    bag_cli._add_model_args(p)
    bag_cli._add_reference_args(p)
    p._option_string_actions["--cameras"].help = (
        "cameras of every rig bag, each one task (default: those a fed_synthroad_bag "
        "--cameras bag lists)"
    )
    p._option_string_actions[
        "--threads"
    ].help = "intra-op threads per worker (default 1; 0 = the runtime's default)"
    p.add_argument(
        "--reference",
        dest="no_reference",
        action="store_false",
        help="also compute fed_eval's reference rows (torch, every frame: slow; default off)",
    )
    p.add_argument("--mosaic-frames", type=int, default=3, help="frames per bag mosaic")
    p.add_argument(
        "--histograms",
        action="store_true",
        help="score every bag with histograms (2^16 bins, error bounds in the reports) instead "
        "of exact score/label pairs: a state of at most ~1 MB per method to send back instead "
        "of 5 bytes per pixel (bags over 4e7 pixels, and the pool beyond, use them anyway)",
    )
    p.add_argument(
        "--clips",
        action="store_true",
        help="cut the clips fed_node would record (record.* parameters) from every bag, then "
        "rank and fold them into a labelling queue: OUT/clips/ (clips.md, clips.json, "
        "clips_mosaic.png, labelling/ in the Cityscapes layout)",
    )
    p.set_defaults(threads=1, no_reference=True)


def bag_option_names() -> list[str]:
    """The option names a bag's evaluation takes from the fleet's arguments."""
    p = argparse.ArgumentParser(add_help=False)
    _add_bag_options(p)
    return sorted(vars(p.parse_args([])))


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executor")
    g.add_argument("--executor", choices=EXECUTORS, default="local", help="default local")
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        help="workers (default: local, this machine's CPUs; ray, as many as the cluster's "
        "CPUs / GPUs hold)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to join (default: start a local Ray instance)",
    )
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="default 1")
    g.add_argument(
        "--ray-gpus-per-worker", type=float, default=0.0, help="default 0 (1: an engine per GPU)"
    )
    g.add_argument(
        "--retries", type=int, default=1, help="runs of a bag again after its worker died (1)"
    )
    g.add_argument("--redo", action="store_true", help="evaluate every bag again")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_fleet_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="BAG_OR_DIR",
        help="rosbag2 folders or .mcap/.db3 files, folders of them (searched recursively), or "
        "list files (one path per line)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (bags/ + report)")
    _add_run_args(p)
    _add_bag_options(p)
    return p


def make_executor(args: argparse.Namespace, options: dict[str, Any]) -> Executor:
    threads = int(args.threads)
    if args.executor == "ray":
        from ros2_fed.eval.fleet.ray_pool import RayExecutor

        return RayExecutor(
            args.ray_address,
            args.workers,
            options,
            threads,
            args.retries,
            args.ray_cpus_per_worker,
            args.ray_gpus_per_worker,
        )
    from ros2_fed.eval.fleet.local import LocalExecutor

    return LocalExecutor(args.workers or os.cpu_count() or 1, options, threads, args.retries)


class FleetRun:
    """One fed_fleet_eval run: tasks, the executor, results stored as they come, the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.out)
        self.options = {name: getattr(args, name) for name in bag_option_names()}
        self.failed: list[dict[str, Any]] = []
        self.frames_now = 0
        self.evaluated_now = 0
        self.executor_s = 0.0  # executor start (workers, Ray) + every bag, without discovery

    def run(self) -> tuple[Path, dict[str, Any]]:
        t0 = time.monotonic()
        tasks = make_tasks(self.args.inputs, self.args.cameras, not self.args.no_gt)
        if not tasks:
            raise UsageError(f"no rosbag2 found in {', '.join(self.args.inputs)}")
        store.prepare(self.out, self.options, self.args.redo)
        todo = [t for t in tasks if t.error or not store.is_done(self.out, t.id)]
        executor = make_executor(self.args, self.options)
        progress = Progress(len(todo), enabled=not self.args.quiet)
        try:
            for task in todo:
                if task.error:
                    self.on_result(BagResult(task, False, task.error), progress)
            runnable = [t for t in todo if not t.error]
            t_run = time.monotonic()
            executor.run(runnable, lambda result: self.on_result(result, progress))
            self.executor_s = time.monotonic() - t_run
        finally:
            progress.close()
            executor.close()
        return self.write_report(tasks, len(tasks) - len(todo), executor, time.monotonic() - t0)

    def on_result(self, result: BagResult, progress: Progress) -> None:
        if result.ok:
            result.summary.update(attempts=result.attempts, round_trip_s=result.round_trip_s)
            result.files[SUMMARY_FILE] = json_bytes(result.summary)
            store.write_bag(self.out, result)
            self.evaluated_now += 1
            self.frames_now += int(result.summary["frames"].get("evaluated") or 0)
        else:
            task = result.task
            self.failed.append(
                {
                    "id": task.id,
                    "bag": task.bag,
                    "camera": task.camera,
                    "reason": result.reason,
                    "attempts": result.attempts,
                    "worker": result.worker,
                }
            )
        progress.update(result)

    def write_report(
        self, tasks: list[BagTask], resumed: int, executor: Executor, wall_s: float
    ) -> tuple[Path, dict[str, Any]]:
        summaries = [
            store.read_summary(self.out, t.id) for t in tasks if store.is_done(self.out, t.id)
        ]
        pooled = pooling.pooled_section(pooling.pool_states(self.out, summaries), summaries)
        run = {
            "arguments": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()
            },
            "settings": self.options,
            "executor": executor.describe(),
            "counts": {
                "tasks": len(tasks),
                "done": len(summaries),
                "evaluated_now": self.evaluated_now,
                "resumed": resumed,
                "failed": len(self.failed),
            },
            "timing": {
                "wall_s": wall_s,
                "executor_s": self.executor_s,
                "frames_now": self.frames_now,
                "frames_per_s": self.frames_now / wall_s if wall_s > 0 else 0.0,
                "bags_per_s": self.evaluated_now / wall_s if wall_s > 0 else 0.0,
            },
        }
        report = fleet_report.assemble(summaries, pooled, self.failed, run)
        if self.options.get("clips"):
            report["clips"] = self.clip_queue(tasks)
        return fleet_report.write(self.out, report), report

    def clip_queue(self, tasks: list[BagTask]) -> dict[str, Any]:
        """Every finished bag's clips ranked and folded into OUT/clips/ (the queue's counts)."""
        from ros2_fed.eval import clip_queue

        folders = [
            (t.id, store.bag_dir(self.out, t.id) / "clips")
            for t in tasks
            if store.is_done(self.out, t.id)
        ]
        queue = clip_queue.build_queue(folders, self.out / "clips")
        return {k: queue[k] for k in ("clips_found", "clips_queued", "clips_folded")}


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ros2_fed.eval.replay.cli import node_parameter_problems

    problems = node_parameter_problems(args.params_file, args.param)
    if problems:  # before any worker starts: else every bag fails the same way
        print(f"fed_fleet_eval: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    stopping.install()  # the run owns SIGINT / SIGTERM: finished bags stay, the rest stops
    try:
        stopping.started()
        md, report = FleetRun(args).run()
    except KeyboardInterrupt:
        print(
            f"fed_fleet_eval: stopped; finished bags are kept in {Path(args.out) / 'bags'}: the "
            "same command resumes",
            file=sys.stderr,
        )
        return 0 if stopping.received() else 130
    except UsageError as exc:
        print(f"fed_fleet_eval: error: {exc}", file=sys.stderr)
        return 2
    finally:
        stopping.stopping()
    counts = report["counts"]
    print(fleet_report.bag_table({**report, "rows": report["rows"][:10]}))
    print(
        f"fed_fleet_eval: {counts['done']} of {counts['tasks']} bags evaluated, "
        f"{counts['failed']} failed; report {md}"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
