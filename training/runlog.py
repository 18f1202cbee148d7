"""Training logs people can read: CSV always, TensorBoard event files when available."""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Optional


class RunLogger:
    """Append scalar rows to ``log.csv`` and, if tensorboard is installed, to event files."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.csv_path = out_dir / "log.csv"
        self._fields: Optional[list[str]] = None
        self._writer = None
        self._start = time.monotonic()
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists():  # resumed run: keep appending with the same columns
            with open(self.csv_path, newline="") as handle:
                header = next(csv.reader(handle), None)
            self._fields = header or None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(out_dir / "tb"))
        except Exception:  # tensorboard missing: CSV only
            self._writer = None

    def log(self, step: int, **scalars: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, "elapsed_s": round(time.monotonic() - self._start, 3), **scalars}
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
