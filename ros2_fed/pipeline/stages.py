"""Per-frame stages after the engine: the low-confidence alerts, and whatever comes next.

Why an interface: the frame path (:class:`~ros2_fed.pipeline.processor.FrameProcessor`) runs
every stage on every good frame of every camera, in order, the same way in the node and in the
replay; a new per-frame check (a scene-health monitor, say) is one class here plus one entry in
:data:`DEFAULT_STAGES`. Its status then goes to /diagnostics (``<node>: [<camera> ]<stage>``)
and into the replay's output bag, and it changes with its parameters at run time.

A stage keeps its own per-camera state; the processor calls :meth:`FrameStage.update` from one
thread (the node's worker) and :meth:`FrameStage.apply` from another (parameter changes).

A stage may be a *sink* (the clip recorder, :mod:`ros2_fed.recording`): ``update`` returns None
when it has nothing to report, and it may do its work off the worker thread. Optional methods
the processor calls when a stage has them: ``bind_node(name)`` (the node's name, for topic
names), ``observe(...)`` (every input message as received), ``node_status()`` (one status for
the whole node on /diagnostics, fresh at each publication, or None), ``drain_lines()`` (log
lines for the node) and ``close()`` (the stream ended).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from ros2_fed.alerts import AlertConfig, AlertMonitor, AlertState
from ros2_fed.health import Status
from ros2_fed.recording.stage import RecordStage
from ros2_fed.scene import SceneConfig, SceneMonitor, frame_digest

from .outputs import ALERT_STAGE, SCENE_STAGE
from .params import alert_config, scene_config
from .results import CameraResult


@dataclass(frozen=True)
class ModelInfo:
    """What a stage may need of the model: the engine's sidecar, its calibrated operating
    point (``fed_calibrate``) and class names."""

    metadata: Mapping[str, Any] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)
    class_names: Optional[Sequence[str]] = None


class FrameStage(Protocol):
    """One per-frame step. ``parameter_prefix``: the node parameters it reads (``alerts.``);
    :meth:`configure` builds (and so validates) its settings from a whole parameter set,
    :meth:`apply` takes them into effect, :meth:`update` judges one camera's frame,
    :meth:`reset` starts a camera afresh."""

    name: str
    parameter_prefix: str

    def configure(self, params: Mapping[str, Any]) -> Any: ...

    def apply(self, config: Any) -> None: ...

    def update(self, camera: str, frame: CameraResult) -> Optional[Status]: ...

    def reset(self, camera: str) -> None:
        """Forget ``camera``'s history: its time went backwards (a bag played again)."""


StageFactory = Callable[[ModelInfo, Sequence[str]], FrameStage]


def alert_status(state: AlertState) -> Status:
    """An alert state as its diagnostic status: level, message, every other field a value."""
    values = {str(k): str(v) for k, v in vars(state).items() if k not in ("level", "message")}
    return Status(int(state.level), str(state.message), values)


class AlertStage:
    """Low-confidence alerts (:mod:`ros2_fed.alerts`): one monitor per camera, one
    configuration from the ``alerts.*`` parameters and the model's calibration."""

    name = ALERT_STAGE
    parameter_prefix = "alerts."

    def __init__(self, model: ModelInfo, cameras: Sequence[str]) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._monitors = {camera: AlertMonitor() for camera in cameras}

    def configure(self, params: Mapping[str, Any]) -> AlertConfig:
        """ValueError (inconsistent limits, unknown drivable class), OSError (ROI mask)."""
        return alert_config(params, self._model.calibration, self._model.class_names)

    def apply(self, config: AlertConfig) -> None:
        with self._lock:
            for monitor in self._monitors.values():
                monitor.config = config

    @property
    def config(self) -> AlertConfig:
        with self._lock:
            return next(iter(self._monitors.values())).config

    def update(self, camera: str, frame: CameraResult) -> Status:
        with self._lock:
            state = self._monitors[camera].update(
                frame.confidence, frame.stamp, labels=frame.labels
            )
        return alert_status(state)

    def reset(self, camera: str) -> None:
        with self._lock:
            self._monitors[camera].reset()


class SceneStage:
    """Scene health (:mod:`ros2_fed.scene`): is the whole frame out of the model's depth, or
    the camera broken? One monitor per camera, one configuration from the ``scene.*``
    parameters and the model's scene calibration."""

    name = SCENE_STAGE
    parameter_prefix = "scene."

    def __init__(self, model: ModelInfo, cameras: Sequence[str]) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._monitors = {camera: SceneMonitor() for camera in cameras}

    def configure(self, params: Mapping[str, Any]) -> SceneConfig:
        """ValueError for inconsistent limits."""
        return scene_config(params, self._model.calibration)

    def apply(self, config: SceneConfig) -> None:
        with self._lock:
            for monitor in self._monitors.values():
                monitor.config = config

    def update(self, camera: str, frame: CameraResult) -> Status:
        digest = frame_digest(frame.message, frame.rgb)  # outside the lock: the frame's own
        with self._lock:
            state = self._monitors[camera].update(frame.rgb, frame.confidence, frame.stamp, digest)
        return Status(int(state.level), state.message, state.values())

    def reset(self, camera: str) -> None:
        with self._lock:
            self._monitors[camera] = SceneMonitor(self._monitors[camera].config)


#: The stages every frame goes through, in order.
DEFAULT_STAGES: tuple[StageFactory, ...] = (AlertStage, SceneStage, RecordStage)
