"""fed_node: camera in; segmentation, confidence, rviz overlay and low-confidence alerts out.

The ROS wiring around the frame path the replay runs too
(:class:`ros2_fed.pipeline.processor.FrameProcessor`). Why it is shaped this way:

- **Latest frame wins.** The subscription callback only drops the message into a one-slot
  mailbox per camera; a worker thread hands each batch to the processor. A frame that arrives
  while another is pending replaces it (counted as dropped): a slow engine builds no backlog.
- **Only work for listeners.** Outputs are rendered only when enabled and subscribed to (the
  per-frame stages always run: they feed /diagnostics).
- **Bad input never kills the node.** A refused frame is counted by kind and logged, throttled
  per kind; a decompression bomb is refused from its header and costs no memory.
- **Silence is a fault.** A watchdog turns the pipeline status WARN after
  ``diagnostics.input_timeout`` without input, ERROR after ``diagnostics.engine_timeout`` without
  a finished frame; level changes go out on /diagnostics at once.
- **Signals stop it cleanly at any moment**, imports included: exit code 0, no traceback, no
  ERROR line (:mod:`ros2_fed.stopping`). A missing or corrupt engine is one FATAL line, exit 1.
- **Surround cameras, one engine.** ``cameras:=[front, left, ...]``: inputs ``NAME/image``,
  outputs ``~/NAME/...``; the newest pending frame of every camera runs as one batch while a
  publisher thread publishes the batch before. Every output copies its input's header.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_node", __name__)  # first: a signal during the imports below stops it

import sys  # noqa: E402
from typing import Any, Callable, Optional, TypeVar  # noqa: E402

import rclpy  # noqa: E402
from rclpy.executors import ExternalShutdownException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.utilities import remove_ros_args  # noqa: E402

from ros2_fed import ros_args  # noqa: E402
from ros2_fed.node_wiring import EngineFactory, FedWiring  # noqa: E402
from ros2_fed.pipeline.logs import ready_report  # noqa: E402
from ros2_fed.pipeline.params import NODE_NAME, StartupError, help_text  # noqa: E402


class FedNode(FedWiring, Node):
    """The fed_node ROS 2 node. Construct (checks the parameters; may raise
    :class:`StartupError`), then :meth:`start` (loads the engine; may raise StartupError), then
    spin; :meth:`close` stops the threads.

    ``engine_factory``: a zero-argument callable returning an engine, used instead of opening
    ``engine_path`` - for tests and embedding, never reachable from the command line.
    """

    def __init__(self, engine_factory: Optional[EngineFactory] = None, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self._setup_wiring(engine_factory)

    def start(self) -> None:
        """Load + warm up the engine, then subscribe and report ready. Raises StartupError."""
        load_s, warm_ms = self._load_engine()
        topics = self._subscribe()
        self._log(ready_report(self._processor, self._params, topics, load_s, warm_ms))
        self._publish_diagnostics()


NodeT = TypeVar("NodeT", bound=Node)


def main(args: Optional[list[str]] = None, engine_factory: Optional[EngineFactory] = None) -> int:
    """Console script ``fed_node``: returns the process exit code (1 = could not start). It
    owns the process's SIGINT / SIGTERM from here on (:mod:`ros2_fed.stopping`)."""
    return run_node(args, __doc__, lambda: FedNode(engine_factory=engine_factory), FedNode.start)


def run_node(
    args: Optional[list[str]],
    doc: Optional[str],
    make_node: Callable[[], NodeT],
    start: Callable[[NodeT], None],
    spin: Callable[[NodeT], None] = rclpy.spin,
    executable: str = NODE_NAME,
) -> int:
    """A fed node process from ``--help`` to exit: ``make_node`` (after rclpy.init),
    ``start`` it, ``spin`` it until a signal (or until ``spin`` returns); a StartupError or
    ROS arguments rcl refuses (:mod:`ros2_fed.ros_args`) are one FATAL line and exit 1, a stop
    signal at any moment exit 0."""
    argv = list(sys.argv if args is None else args)
    user_args = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        return _print_help(help_text((doc or "").strip().splitlines()[0], executable))
    refused = ros_args.problem(argv, remove_ros_args)
    if refused:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {refused}")
        return 1
    stopping.install()
    stopping.started()  # a stop signal is a KeyboardInterrupt from here on
    node: Optional[NodeT] = None
    stopped = "during start-up"
    try:
        try:
            rclpy.init(args=argv)
        except Exception as exc:  # what the check above let through: still one line, exit 1
            if stopping.received() is not None:
                raise KeyboardInterrupt from exc
            raise StartupError(ros_args.rcl_message(str(exc))) from exc
        node = make_node()
        start(node)
        stopped = ""
        spin(node)
    except StartupError as exc:
        if rclpy.ok() or stopping.received() is None:
            logger = node.get_logger() if node else rclpy.logging.get_logger(NODE_NAME)
            logger.fatal(f"cannot start: {exc}")
            return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a real failure; after a signal, a call on the dead context is not one
    finally:
        _shut_down(node)
    if stopped and stopping.received() is not None:
        rclpy.logging.get_logger(NODE_NAME).info(f"stopped by a signal {stopped}")
    return 0


def _print_help(text: str) -> int:
    """``--help`` on stdout; a reader that stops early (``| head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        stopping.quiet_broken_pipe()
    return 0


def _shut_down(node: Optional[Any]) -> None:
    """Threads, engine, node, context, in that order; a second signal meanwhile changes
    nothing. Nothing logs through the node after this (its rosout publisher is gone)."""
    stopping.stopping()
    try:
        if node is not None:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
        stopping.stopping()  # rclpy's shutdown put back the handler it found


if __name__ == "__main__":
    sys.exit(main())
