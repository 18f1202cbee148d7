"""``--executor ray``: a pool of Ray actors, each opening the engine once and evaluating many bags.

Why actors and not tasks: opening (or building) an engine costs seconds to minutes; an actor
keeps its engine for every bag it is given. Each actor asks Ray for ``cpus`` CPUs and ``gpus``
GPUs (one engine per GPU: ``--ray-gpus-per-worker 1``), starts with ``threads`` intra-op threads
(the environment is set before the worker imports anything) and gets one bag at a time. What
comes back is a bag's report, PNGs and scorer state (tens of kB to a few MB), never frames.

An actor that dies (its process killed, its node lost, out of memory) fails its bag with a Ray
error; the bag runs again on a fresh actor (``--retries``), then is a failed row. Ray is only
imported here: the node's runtime never needs it.

Address: ``auto`` (the cluster this machine belongs to, ``ray start``), ``HOST:PORT``, or
nothing: a local Ray instance with ``workers`` x ``cpus`` CPUs, shut down at the end.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Optional, Sequence

from ros2_fed.eval.fleet.discovery import BagTask, one_line
from ros2_fed.eval.fleet.executor import ResultCallback, RetryBook, worker_environment
from ros2_fed.eval.fleet.task import BagResult
from ros2_fed.eval.replay.errors import UsageError

RAY_PIN = "ray==2.60.0"


class BagWorker:
    """The actor: one engine cache, bags one at a time."""

    def __init__(self, options: dict[str, Any]) -> None:
        from ros2_fed.eval.fleet.task import EngineCache

        self.options = options
        self.engines = EngineCache()

    def evaluate(self, task: BagTask) -> BagResult:
        import ray

        from ros2_fed.eval.fleet.task import evaluate_task

        node = ray.get_runtime_context().get_node_id()
        where = f"ray node {node[:12]} pid {os.getpid()}"
        return evaluate_task(task, self.options, self.engines, where)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            f"--executor ray needs Ray on this machine and the workers: pip install {RAY_PIN} "
            "(or use --executor local)"
        ) from None
    return ray


class RayExecutor:
    """An actor pool on a Ray cluster (or a local Ray instance); see the module docstring."""

    def __init__(
        self,
        address: Optional[str],
        workers: int,
        options: dict[str, Any],
        threads: int,
        retries: int,
        cpus: float = 1.0,
        gpus: float = 0.0,
    ) -> None:
        self.ray = import_ray()
        self.address = address
        self.workers = int(workers)
        self.options = options
        self.threads = threads
        self.book = RetryBook(retries)
        self.cpus, self.gpus = float(cpus), float(gpus)
        self.started_ray = False
        self.actor_class: Any = None
        self.nodes = 0

    def describe(self) -> dict[str, object]:
        return {
            "kind": "ray",
            "address": self.address or "local instance",
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "cpus_per_worker": self.cpus,
            "gpus_per_worker": self.gpus,
            "nodes": self.nodes,
        }

    def connect(self, tasks: int) -> None:
        """Join the cluster (or start a local instance) and size the pool."""
        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            # "local": a new instance, never a cluster this machine happened to join earlier
            kwargs["address"] = self.address or "local"
            if not self.address:
                want = self.workers if self.workers > 0 else (os.cpu_count() or 1)
                kwargs["num_cpus"] = max(1, int(want * self.cpus + 0.999))
            try:
                ray.init(**kwargs)
            except Exception as exc:
                where = self.address or "a local instance"
                raise UsageError(
                    f"cannot start/join Ray ({where}): {one_line(str(exc))}"
                ) from None
            self.started_ray = True
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        if self.workers <= 0:
            self.workers = self._fit_workers(ray.cluster_resources())
        self.workers = max(1, min(self.workers, tasks))
        env = worker_environment(self.threads)
        actor = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(BagWorker)
        self.actor_class = actor.options(runtime_env={"env_vars": env}) if env else actor

    def _fit_workers(self, resources: dict[str, float]) -> int:
        """As many actors as the cluster's CPUs (and GPUs, when each actor takes some) hold."""
        count = int(resources.get("CPU", 1) // max(self.cpus, 1e-9))
        if self.gpus > 0:
            count = min(count, int(resources.get("GPU", 0) // self.gpus))
        return max(1, count)

    def run(self, tasks: Sequence[BagTask], on_result: ResultCallback) -> None:
        if not tasks:
            return
        self.connect(len(tasks))
        queue = deque(tasks)
        idle = [self.actor_class.remote(self.options) for _ in range(self.workers)]
        inflight: dict[Any, tuple[Any, BagTask]] = {}
        try:
            while queue or inflight:
                while idle and queue:
                    actor, task = idle.pop(), queue.popleft()
                    self.book.started(task)
                    inflight[actor.evaluate.remote(task)] = (actor, task)
                ready, _ = self.ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    actor, task = inflight.pop(ref)
                    idle.append(self._settle(ref, actor, task, queue, on_result))
        finally:
            for actor in idle + [a for a, _ in inflight.values()]:
                self.ray.kill(actor, no_restart=True)

    def _settle(
        self, ref: Any, actor: Any, task: BagTask, queue: deque[BagTask], on_result: ResultCallback
    ) -> Any:
        """The finished call's result handed on; a dead actor replaced and its bag retried or
        failed. Returns the actor that is idle now."""
        exceptions = self.ray.exceptions
        try:
            on_result(self.book.finished(self.ray.get(ref)))
            return actor
        except exceptions.RayTaskError as exc:  # raised inside evaluate: the bag's own fault
            reason = one_line(f"{type(exc.cause).__name__}: {exc.cause}")
            on_result(self.book.finished(BagResult(task, False, reason)))
            return actor
        except exceptions.RayError as exc:  # the actor or its node died
            self.ray.kill(actor, no_restart=True)
            failed = self.book.died(task, one_line(f"{type(exc).__name__}", 80))
            if failed is None:
                queue.appendleft(task)
            else:
                on_result(failed)
            return self.actor_class.remote(self.options)

    def close(self) -> None:
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False
