"""fed_fleet_eval --executor ray against a real two-node Ray cluster on this machine.

``ray start --head`` and a second ``ray start --address`` (one CPU each, so the two actors run
on different nodes), both in their own process groups, ended by the fixture. Thirteen tiny
synthroad bags: eleven good, one with a corrupt chunk, one without a camera topic. One run with
the worker process evaluating one bag SIGKILLed mid-run (the test hook of
:mod:`ros2_fed.eval.fleet.task`):

- every good bag is evaluated, the killed one on its second attempt, on both nodes; the two bad
  bags are failed rows with their reasons;
- POOLED equals ONE scorer over every frame of every good bag (counts exactly, metrics to
  1e-12) and equals the local executor's POOLED on the same bags exactly;
- a run interrupted after some bags resumes: only the missing bags are evaluated again, and the
  pooled numbers do not change.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ros2_fed.eval.fleet.task import CRASH_ENV
from tests import fleet_helpers as fh

pytest.importorskip("ray", reason="ray (requirements/test.txt) is not installed")
REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [str(RAY), "start", "--block", "--disable-usage-stats", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the fixture ends all of it
        )


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    code = (
        "import ray; ray.init(address='%s', log_to_driver=False); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))" % address
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) if done.returncode == 0 and lines else 0


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """The `ray start` process groups: SIGTERM together, SIGKILL whatever is left after 15 s."""

    def alive(process: subprocess.Popen[bytes]) -> bool:
        process.poll()  # a finished leader is reaped, or its group never empties
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for process in processes:
            if alive(process):
                os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait
        while any(alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.5)
    for process in processes:
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.fed_helpers import save_tiny_model

    root = tmp_path_factory.mktemp("fleet_ray")
    model = save_tiny_model(root, fh.SIZE)
    fleet = fh.write_fleet(root, good=11)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",  # a loopback-only test cluster
        ROS2_FED_CACHE=str(root / "cache"),
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    address = f"127.0.0.1:{_free_port()}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    port = address.split(":")[1]
    head = _start(
        ["--head", "--port", port, "--include-dashboard", "false", *common], env, root / "head.log"
    )
    nodes = [head]
    try:
        time.sleep(5)
        nodes.append(_start(["--address", address, *common], env, root / "worker.log"))
        deadline = time.monotonic() + 180
        while _alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, (root / "head.log").read_text()[-3000:]
            time.sleep(2)
        yield {"root": root, "model": model, "env": env, "address": address, **fleet}
    finally:
        _stop(nodes)


def fleet_eval(work: dict[str, Any], out: Path, *extra: str, **env: str) -> int:
    argv = [sys.executable, "-m", "ros2_fed.eval.fleet.cli", str(work["fleet"]), "--out", str(out)]
    argv += fh.model_args(work["model"]) + list(extra)
    done = subprocess.run(
        argv, env=dict(work["env"], **env), capture_output=True, text=True, timeout=600
    )
    assert done.returncode in (0, 1), done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return done.returncode


@pytest.fixture(scope="module")
def ray_run(work: dict[str, Any]) -> dict[str, Any]:
    out = work["root"] / "ray_out"
    marker = work["root"] / "killed_once"
    code = fleet_eval(
        work,
        out,
        "--executor",
        "ray",
        "--ray-address",
        work["address"],
        **{CRASH_ENV: f"{work['good'][5]}:{marker}"},
    )
    return {"out": out, "code": code, "marker": marker, "report": fh.read_report(out)}


def test_two_nodes_failed_rows_and_a_killed_worker(
    work: dict[str, Any], ray_run: dict[str, Any]
) -> None:
    report = ray_run["report"]
    assert ray_run["code"] == 1  # two bags failed
    assert report["executor"]["kind"] == "ray" and report["executor"]["nodes"] == 2
    assert report["counts"]["done"] == 11 and report["counts"]["failed"] == 2
    failed = {f["id"]: f["reason"] for f in report["failed"]}
    assert "checksum" in failed["bad_corrupt"] and "no camera topics" in failed["bad_no_camera"]
    assert ray_run["marker"].is_file()  # the worker really was killed
    attempts = {r["id"]: r["attempts"] for r in report["rows"]}
    assert attempts[work["good"][5]] == 2 and sum(attempts.values()) == 12
    ray_nodes = {r["worker"].split(" pid ")[0] for r in report["rows"]}
    assert len(ray_nodes) == 2, ray_nodes  # both nodes evaluated bags


def test_pooled_is_exact_and_equals_the_local_executor(
    work: dict[str, Any], ray_run: dict[str, Any]
) -> None:
    pooled = ray_run["report"]["pooled"]["metrics"]
    bags = [work["fleet"] / bag_id for bag_id in sorted(work["good"])]
    fh.assert_results_equal(pooled, fh.oracle_results(bags, work["model"]))
    out = work["root"] / "local_out"
    assert fleet_eval(work, out, "--executor", "local", "--workers", "2") == 1
    local = fh.read_report(out)
    assert local["pooled"]["metrics"] == pooled
    assert {r["id"] for r in local["rows"]} == {r["id"] for r in ray_run["report"]["rows"]}


def test_interrupted_run_resumes(work: dict[str, Any], ray_run: dict[str, Any]) -> None:
    out = work["root"] / "ray_resume"
    shutil.copytree(ray_run["out"], out)
    for bag_id in work["good"][:3]:
        shutil.rmtree(out / "bags" / bag_id)
    kept = {p: p.stat().st_mtime_ns for p in (out / "bags").glob("*/summary.json")}
    assert fleet_eval(work, out, "--executor", "ray", "--ray-address", work["address"]) == 1
    report = fh.read_report(out)
    assert report["counts"]["evaluated_now"] == 3 and report["counts"]["resumed"] == 8
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert report["pooled"]["metrics"] == ray_run["report"]["pooled"]["metrics"]
