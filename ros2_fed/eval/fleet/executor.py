"""What both executors share: the result callback, the retry book for dead workers, the
environment a worker starts with.

Why retries live here: a worker process that dies (killed, out of memory) takes its bag with it;
that is not the bag's fault, so the bag runs again on a fresh worker, up to ``retries`` more
times, and only then becomes a failed row saying how the worker died. A bag that fails by
itself (corrupt, missing topic) is a failed row at once: running it again would fail the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

from ros2_fed.eval.fleet.discovery import BagTask
from ros2_fed.eval.fleet.task import BagResult

ResultCallback = Callable[[BagResult], None]


class Executor(Protocol):
    """Runs tasks and hands every task's result (done or failed) to ``on_result``, in the
    order they finish."""

    def run(self, tasks: Sequence[BagTask], on_result: ResultCallback) -> None: ...

    def describe(self) -> dict[str, object]: ...

    def close(self) -> None: ...


@dataclass
class RetryBook:
    """Attempts per task; :meth:`died` says whether a task whose worker died runs again."""

    retries: int = 1
    attempts: dict[str, int] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)  # when the last attempt was handed out

    def started(self, task: BagTask) -> None:
        self.attempts[task.id] = self.attempts.get(task.id, 0) + 1
        self.sent[task.id] = time.monotonic()

    def died(self, task: BagTask, how: str) -> Optional[BagResult]:
        """None: run it again; else the failed result (its worker died too often)."""
        tries = self.attempts.get(task.id, 1)
        if tries <= self.retries:
            return None
        times = "once" if tries == 1 else f"{tries} times"
        return BagResult(
            task,
            False,
            f"the worker evaluating this bag died {times} ({how}); not retried again",
            attempts=tries,
        )

    def finished(self, result: BagResult) -> BagResult:
        """``result`` with its attempts and round trip (handed out -> result back here)."""
        result.attempts = self.attempts.get(result.task.id, 1)
        sent = self.sent.get(result.task.id)
        result.round_trip_s = time.monotonic() - sent if sent is not None else None
        return result


def worker_environment(threads: int) -> dict[str, str]:
    """Environment of a worker process: ``threads`` intra-op threads for every threading
    library (0: leave the runtimes' defaults), and the test hook when it is set."""
    import os

    from ros2_fed.eval.fleet.task import CRASH_ENV

    env: dict[str, str] = {}
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    if os.environ.get(CRASH_ENV):
        env[CRASH_ENV] = os.environ[CRASH_ENV]
    return env
