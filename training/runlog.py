"""Training logs people can read: CSV always, TensorBoard event files when available."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Optional


class RunLogger:
    """Append scalar rows to ``log.csv`` and, if tensorboard is installed, to event files."""

    def __init__(
        self, out_dir: Path, enabled: bool = True, elapsed_before: Optional[float] = None
    ) -> None:
        """``elapsed_before``: where a resumed run's clock continues (the training state's saved
        value); None: from the last row of an existing log."""
        self.enabled = enabled
        self.csv_path = out_dir / "log.csv"
        self._fields: Optional[list[str]] = None
        self._writer = None
        self._start = time.monotonic()
        self._elapsed_before = 0.0  # a resumed run's clock continues where the log stopped
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists():  # resumed run: keep appending with the same columns
            with open(self.csv_path, newline="") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
            self._fields = list(reader.fieldnames or []) or None
            self._elapsed_before = _last_elapsed(rows)
        if elapsed_before is not None:
            self._elapsed_before = float(elapsed_before)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(out_dir / "tb"))
        except Exception:  # tensorboard missing: CSV only
            self._writer = None

    def elapsed_s(self) -> float:
        """Training time so far, a resumed run's earlier time included."""
        return self._elapsed_before + time.monotonic() - self._start

    def log(self, step: int, **scalars: Any) -> None:
        if not self.enabled:
            return
        row = {
            "step": step,
            "elapsed_s": round(self._elapsed_before + time.monotonic() - self._start, 3),
            **scalars,
        }
        if self._fields is None:
            self._fields = list(row)
            with open(self.csv_path, "w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._fields).writeheader()
        with open(self.csv_path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self._fields, extrasaction="ignore").writerow(row)
        if self._writer is not None:
            for key, value in scalars.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _last_elapsed(rows: list[dict[str, str]]) -> float:
    """``elapsed_s`` of the last readable row (0 for an empty or foreign log)."""
    for row in reversed(rows):
        try:
            return float(row.get("elapsed_s") or "")
        except ValueError:
            continue
    return 0.0
