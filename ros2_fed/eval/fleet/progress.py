"""Progress of a fleet run: a bar on a terminal, one plain line per finished bag otherwise (a CI
log or a file must not fill with carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

from ros2_fed.eval.fleet.task import BagResult


def _eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Bags done / failed, frames per second and ETA over the bags of this run."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO = sys.stderr) -> None:
        self.total, self.stream, self.enabled = int(total), stream, enabled
        self.done = self.failed = self.frames = 0
        self.t0 = time.monotonic()
        self.bar: Any = None
        if enabled and total and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="bags", unit="bag", file=stream, dynamic_ncols=True)

    def fps(self) -> float:
        elapsed = time.monotonic() - self.t0
        return self.frames / elapsed if elapsed > 0 else 0.0

    def eta(self) -> Optional[float]:
        finished = self.done + self.failed
        if not finished:
            return None
        elapsed = time.monotonic() - self.t0
        return elapsed / finished * (self.total - finished)

    def update(self, result: BagResult) -> None:
        if result.ok:
            self.done += 1
            self.frames += int(result.summary.get("frames", {}).get("evaluated") or 0)
        else:
            self.failed += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"failed {self.failed}, {self.fps():.1f} frames/s")
            self.bar.update(1)
            return
        what = "done" if result.ok else f"FAILED: {result.reason}"
        print(
            f"fed_fleet_eval: [{self.done + self.failed}/{self.total}] {result.task.id} {what} | "
            f"{self.failed} failed | {self.fps():.1f} frames/s | ETA {_eta(self.eta())}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
