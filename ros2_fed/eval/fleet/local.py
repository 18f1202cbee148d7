"""``--executor local``: worker processes on this machine, each opening the engine once.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every task in
flight fails with ``BrokenProcessPool`` and nobody knows which bag killed it, so a bag that
kills its worker would take innocent bags down with it. Here each worker is a process with its
own pipe and one task at a time: the parent knows which bag a dead worker held, retries only
that one (:class:`~ros2_fed.eval.fleet.executor.RetryBook`) and starts a fresh worker. Workers
are started with ``spawn`` (a fresh interpreter: no threads or open engines inherited).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Optional, Sequence

from ros2_fed.eval.fleet.discovery import BagTask
from ros2_fed.eval.fleet.executor import ResultCallback, RetryBook, worker_environment


def _worker_main(conn: Connection, options: dict[str, Any]) -> None:
    """A worker: tasks from the pipe, results back, until None or the pipe closes."""
    from ros2_fed.eval.fleet.task import EngineCache, evaluate_task
    from ros2_fed.eval.replay import cli  # noqa: F401  (imported before the signals are set)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # not its default process-shared lock: a worker ended
    # mid-bag would leave that semaphore for the parent's resource tracker to warn about

    engines = EngineCache()
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                break
            if task is None:
                break
            conn.send(evaluate_task(task, options, engines))
    finally:
        engines.close()


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    task: Optional[BagTask] = None


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set while workers start (a spawned process copies the parent's environment)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalExecutor:
    """``workers`` processes; ``threads`` intra-op threads each; ``retries`` for dead workers."""

    def __init__(self, workers: int, options: dict[str, Any], threads: int, retries: int) -> None:
        self.workers = max(1, int(workers))
        self.options = options
        self.threads = threads
        self.book = RetryBook(retries)
        self.context = mp.get_context("spawn")
        self.pool: list[_Worker] = []

    def describe(self) -> dict[str, object]:
        return {"kind": "local", "workers": self.workers, "threads_per_worker": self.threads}

    def _start_worker(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, args=(child, self.options), daemon=True
        )
        with _environment(worker_environment(self.threads)):
            process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: Sequence[BagTask], on_result: ResultCallback) -> None:
        queue = deque(tasks)
        try:
            self.pool = [self._start_worker() for _ in range(min(self.workers, len(queue)))]
            while queue or any(w.task is not None for w in self.pool):
                for worker in self.pool:
                    if worker.task is None and queue:
                        worker.task = queue.popleft()
                        self.book.started(worker.task)
                        worker.conn.send(worker.task)
                self._collect(queue, on_result)
        finally:
            self.close()

    def _collect(self, queue: deque[BagTask], on_result: ResultCallback) -> None:
        """Wait for a result or a dead worker; hand results on, retry or fail dead ones."""
        busy = [w for w in self.pool if w.task is not None]
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            task = worker.task
            assert task is not None
            try:
                result = worker.conn.recv()
            except (EOFError, OSError):
                result = None
            worker.task = None
            if result is not None:
                on_result(self.book.finished(result))
                continue
            how = self._how(worker)
            self._replace(worker)
            failed = self.book.died(task, how)
            if failed is None:
                queue.appendleft(task)
            else:
                on_result(failed)

    @staticmethod
    def _how(worker: _Worker) -> str:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _replace(self, dead: _Worker) -> None:
        dead.conn.close()
        self.pool[self.pool.index(dead)] = self._start_worker()

    def close(self) -> None:
        """Workers told to stop, then ended if they do not within a few seconds."""
        for worker in self.pool:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        for worker in self.pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self.pool = []
