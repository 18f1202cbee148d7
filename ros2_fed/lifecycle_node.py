"""fed_lifecycle_node: fed_node as a ROS 2 managed (lifecycle) node, for supervised vehicle stacks.

Same parameters, topics and outputs as ``fed_node``; what differs is *when* things happen. A
supervisor (Nav2's lifecycle manager, ``ros2 lifecycle set``, launch) drives the transitions:

- ``configure``: open, verify and warm up the engine. A failure (missing engine, bad model)
  leaves the node unconfigured; the reason is logged and on /diagnostics (ERROR);
- ``activate``: subscribe to the camera(s) and publish;
- ``deactivate``: unsubscribe, nothing more is published; the engine stays loaded, so the next
  ``activate`` is instant;
- ``cleanup``: release the engine (back to unconfigured);
- ``shutdown`` (from any state): release everything; the process then exits with code 0.

/diagnostics carries the lifecycle state (value ``lifecycle``) from the first moment. Bad
parameter values are still one FATAL line and exit 1 at start-up, as for fed_node.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_lifecycle_node", __name__)  # first: a signal during the imports

import sys  # noqa: E402
from typing import Any, Optional  # noqa: E402

import rclpy  # noqa: E402
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn  # noqa: E402
from rclpy.task import Future  # noqa: E402

from ros2_fed.health import ERROR, OK, STALE  # noqa: E402
from ros2_fed.node import run_node  # noqa: E402
from ros2_fed.node_wiring import EngineFactory, FedWiring  # noqa: E402
from ros2_fed.pipeline.logs import ready_report  # noqa: E402
from ros2_fed.pipeline.params import NODE_NAME, StartupError  # noqa: E402

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
INACTIVE_MESSAGE = "inactive: engine loaded, not subscribed (activate to start)"
RESPONSE_GRACE_S = 0.3  # after shutdown: spin on so the ChangeState response goes out


class FedLifecycleNode(FedWiring, LifecycleNode):
    """fed_node as a managed node: the engine is loaded on ``configure``, input runs while
    ``active``. ``finished`` completes when the node has been shut down."""

    def __init__(self, engine_factory: Optional[EngineFactory] = None, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self._setup_wiring(engine_factory)
        self._loaded = (0.0, 0.0)  # engine load s, warm-up ms of the last configure
        self.finished = Future()
        self._become("unconfigured", STALE, "unconfigured: waiting for configure")

    def _become(self, state: str, level: int, message: str) -> None:
        """A new lifecycle state: /diagnostics says it at once."""
        self._state = state
        self._idle_status = (level, message)
        self._status_extra = {"lifecycle": "active" if state == "ready" else state}
        self._publish_diagnostics()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._become("configuring", STALE, "configuring: loading engine")
        try:
            self._loaded = self._load_engine()
        except StartupError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._become("unconfigured", ERROR, f"configure failed: {exc}")
            return FAILURE
        load_s, warm_ms = self._loaded
        self.get_logger().info(
            f"configured: engine loaded in {load_s:.2f} s, warm-up {warm_ms:.0f} ms per frame; "
            "activate to subscribe"
        )
        self._become("inactive", OK, INACTIVE_MESSAGE)
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        topics = self._subscribe()
        self._log(ready_report(self._processor, self._params, topics, *self._loaded))
        self._become("ready", OK, "")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe("inactive")
        self.get_logger().info("deactivated: input off, engine kept loaded")
        self._become("inactive", OK, INACTIVE_MESSAGE)
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_engine()
        self.get_logger().info("cleaned up: engine released")
        self._become("unconfigured", STALE, "unconfigured: engine released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_everything("finalized", "finalized: shut down")
        self.get_logger().info("shut down: exiting")
        if not self.finished.done():
            self.finished.set_result(True)
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything, back to unconfigured."""
        self._stop_everything("unconfigured", "unconfigured: a transition failed (see the log)")
        return SUCCESS

    def _stop_everything(self, state: str, message: str) -> None:
        if self._subs:
            self._unsubscribe(state)
        self._release_engine()
        self._become(state, STALE, message)


def spin_until_shut_down(node: FedLifecycleNode) -> None:
    """Serve transitions until the ``shutdown`` transition (or a signal)."""
    rclpy.spin_until_future_complete(node, node.finished)
    rclpy.spin_until_future_complete(node, Future(), timeout_sec=RESPONSE_GRACE_S)


def announce(node: FedLifecycleNode) -> None:
    name = node.get_fully_qualified_name()
    node.get_logger().info(
        f"unconfigured: waiting for configure (ros2 lifecycle set {name} configure)"
    )


def main(args: Optional[list[str]] = None, engine_factory: Optional[EngineFactory] = None) -> int:
    """Console script ``fed_lifecycle_node``: exit code 0 after ``shutdown`` or a stop signal,
    1 when the parameters are unusable."""
    return run_node(
        args,
        __doc__,
        lambda: FedLifecycleNode(engine_factory=engine_factory),
        announce,
        spin_until_shut_down,
        executable="fed_lifecycle_node",
    )


if __name__ == "__main__":
    sys.exit(main())
