"""fed_node first starts: how many of N starts on an empty engine cache reach "ready".

Why: a first start on a new vehicle builds the engine (ONNX export) and checks it against the
float32 eager detector (ros2_fed/engine/verify.py) before the node reports ready; a check
that refuses the node's own fresh engine leaves the vehicle without perception. Each start
here gets its own empty ``ROS2_FED_CACHE`` folder, runs ``fed_node`` with config/fed.yaml
(default 512x1024, one camera unless ``--cameras``), waits for its "ready:" line (or its exit,
or ``--timeout``), stops it with SIGINT, and reads the check's figures from the built engine's
sidecar (``"verification"``).

    python benchmarks/cold_starts.py                                # 20 starts, one camera
    python benchmarks/cold_starts.py --starts 5 --cameras front,left,rear
    python benchmarks/cold_starts.py --starts 2 --size 256x512 --out runs/cold/starts.json

Prints one line per start and a markdown summary; exit code 1 unless every start got ready.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "fed.yaml"
REFUSED = "disagrees with the float32 eager detector"


def node_command(namespace: str, cameras: list[str], size: Optional[tuple[int, int]]) -> list[str]:
    """fed_node with the shipped parameter file (plus the cameras and size asked for)."""
    cmd = [sys.executable, "-m", "ros2_fed.node", "--ros-args", "-r", f"__ns:={namespace}"]
    cmd += ["--params-file", str(PARAMS_FILE)]
    if cameras:
        cmd += ["-p", f"cameras:=[{', '.join(cameras)}]"]
    if size:
        cmd += ["-p", f"model.height:={size[0]}", "-p", f"model.width:={size[1]}"]
    return cmd


def _environment(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update(
        ROS2_FED_CACHE=str(cache),
        ROS_DOMAIN_ID=str(random.SystemRandom().randint(101, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        RCUTILS_COLORIZED_OUTPUT="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("ROS2_FED_VERIFY", None)  # the check is what is measured: never skipped here
    return env


def _read_lines(proc: subprocess.Popen, lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def cold_start(
    index: int, cameras: list[str], size: Optional[tuple[int, int]], timeout_s: float
) -> dict[str, Any]:
    """One start of fed_node on an empty engine cache: outcome, seconds to ready, the check's
    figures (from the built engine's sidecar) and the line that ended a failed start."""
    with tempfile.TemporaryDirectory(prefix="ros2_fed_cold_") as tmp:
        cache = Path(tmp)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            node_command(f"/cold_{os.getpid()}_{index}", cameras, size),
            env=_environment(cache),
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        lines: list[str] = []
        reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
        reader.start()
        outcome = "timeout"
        while time.monotonic() - t0 < timeout_s:
            if any("ready:" in line for line in lines):
                outcome = "ready"
                break
            if proc.poll() is not None:
                outcome = "refused" if any(REFUSED in line for line in lines) else "exited"
                break
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        _stop(proc)
        reader.join(timeout=5)
        sidecars = sorted(cache.rglob("model.onnx.json"))
        figures = json.loads(sidecars[0].read_text()).get("verification") if sidecars else None
    last = next((line for line in reversed(lines) if line.strip()), "")
    return {
        "start": index,
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "verification": figures,
        "line": "" if outcome == "ready" else last[-2000:],
    }


def summary(rows: list[dict[str, Any]], cameras: list[str], size: str) -> str:
    """The markdown table of one run."""
    ready = [r for r in rows if r["outcome"] == "ready"]
    checks = [r["verification"] for r in rows if r["verification"]]

    def worst(key: str, pick: Any = max) -> str:
        return f"{pick(c[key] for c in checks):.2e}" if checks else "-"

    agreement = f"{min(c['label_agreement'] for c in checks):.4%}" if checks else "-"
    seconds = sorted(r["seconds"] for r in ready)
    median = f"{seconds[len(seconds) // 2]:.1f}" if seconds else "-"
    return "\n".join(
        [
            "| cameras | size | starts | ready | median s to ready | worst label agreement "
            "| worst p99.9 conf diff | worst max conf diff |",
            "|---|---|---|---|---|---|---|---|",
            f"| {','.join(cameras) or 'one (image)'} | {size} | {len(rows)} | {len(ready)} | "
            f"{median} | {agreement} | {worst('confidence_p999_abs_diff')} | "
            f"{worst('confidence_max_abs_diff')} |",
        ]
    )


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", type=int, default=20, help="cold starts in a row (default 20)")
    p.add_argument("--cameras", default="", help="comma-separated camera names (default: one)")
    p.add_argument("--size", default="", help="HxW (default: config/fed.yaml's, 512x1024)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a start may take")
    p.add_argument("--out", type=Path, default=None, help="write every start's record (JSON)")
    args = p.parse_args(argv)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    rows = []
    for i in tqdm(range(args.starts), desc="cold starts", unit="start"):
        row = cold_start(i, cameras, size, args.timeout)  # type: ignore[arg-type]
        rows.append(row)
        check = row["verification"] or {}
        tqdm.write(
            f"start {i}: {row['outcome']} after {row['seconds']:.1f} s; p99.9 conf diff "
            f"{check.get('confidence_p999_abs_diff', float('nan')):.2e}, max "
            f"{check.get('confidence_max_abs_diff', float('nan')):.2e}"
            + (f"; {row['line']}" if row["line"] else "")
        )
    text = summary(rows, cameras, args.size or "config/fed.yaml")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from ros2_fed.jsonio import write_json

        write_json(args.out, {"cameras": cameras, "size": args.size, "starts": rows})
    return 0 if all(r["outcome"] == "ready" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
