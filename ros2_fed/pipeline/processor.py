"""FrameProcessor: the one frame path of fed_node and of the replay.

One call (:meth:`FrameProcessor.run`) takes the newest message (or decoded RGB frame) of each
camera of one batch; decodes each under the parameters' limits (a bad frame is counted by kind
and the others go on); runs the good ones as one engine batch; and passes each camera's frame
through the per-frame stages (alerts, ...). :meth:`FrameProcessor.render` then makes the
outputs a caller wants from the outputs table. The node publishes what comes out, the replay
writes it into a bag and scores it: neither has per-frame logic of its own, so a replayed
number is the node's. A camera whose stamps go backwards (a bag played again) starts its
stages afresh.

Thread use as in the node: ``run`` on the worker, ``render`` on the worker or a publisher
thread, ``configure`` / ``apply`` from parameter callbacks. Pure: no rclpy, no torch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from ros2_fed import codec
from ros2_fed.cameras import SINGLE_CAMERA
from ros2_fed.engine.base import InferenceEngine
from ros2_fed.health import Status, WatchdogState

from . import outputs
from .diagnostics import (
    BatchCounter,
    PipelineStats,
    camera_status,
    hardware_id,
    ready_status,
    status_name,
)
from .inference import engine_batch, engine_shape, infer_batch, needs_resize, warm_up
from .model_spec import model_calibration
from .params import NODE_NAME, input_limits, output_settings, with_defaults
from .results import CameraResult
from .stages import DEFAULT_STAGES, ModelInfo, StageFactory


@dataclass(frozen=True)
class Configuration:
    """A validated parameter set, ready to :meth:`FrameProcessor.apply`: the output settings
    and the configuration of every stage whose parameters changed."""

    settings: outputs.OutputSettings
    stages: dict[str, Any]


class FrameProcessor:
    """The frame path for ``cameras`` over one open engine, configured by node parameters.

    Raises ValueError / OSError when the parameters make an unusable stage configuration (an
    unknown drivable class, an unreadable ROI mask).
    """

    def __init__(
        self,
        engine: InferenceEngine,
        params: Mapping[str, Any],
        cameras: Sequence[str] = (SINGLE_CAMERA,),
        node_name: str = NODE_NAME,
        stages: Sequence[StageFactory] = DEFAULT_STAGES,
    ) -> None:
        p = with_defaults(params)
        metadata = engine.metadata
        self.engine = engine
        self.model = ModelInfo(metadata, model_calibration(metadata), metadata.get("class_names"))
        self.shape = engine_shape(engine)
        self.batch = engine_batch(engine)
        self.palette = outputs.viz_palette(metadata)
        self.limits = input_limits(p)
        self.cameras = tuple(cameras)
        self.node_name = node_name.strip("/")
        self.hardware_id = str(p["diagnostics.hardware_id"]) or hardware_id(metadata)
        window = int(p["diagnostics.latency_window"])
        self.stats = {camera: PipelineStats(window) for camera in self.cameras}
        self.batches = BatchCounter()
        self.stages = [factory(self.model, self.cameras) for factory in stages]
        for stage in self._stages_with("bind_node"):
            stage.bind_node(self.node_name)
        self._observers = self._stages_with("observe")  # looked up once: observe is per message
        self._latest: dict[tuple[str, str], Status] = {}
        self._stamps: dict[str, int] = {}  # each camera's newest stamp (ns)
        self._lock = threading.Lock()
        self.settings = outputs.default_settings()
        self.apply(self.configure(p))

    # -- parameters ----------------------------------------------------------------------

    def configure(
        self, params: Mapping[str, Any], changed: Optional[Iterable[str]] = None
    ) -> Configuration:
        """The settings for ``params`` (all stages, or those with a parameter in ``changed``);
        raises what a stage's configure raises. Nothing changes until :meth:`apply`."""
        names = None if changed is None else list(changed)
        stages = {
            stage.name: stage.configure(params)
            for stage in self.stages
            if names is None or any(n.startswith(stage.parameter_prefix) for n in names)
        }
        return Configuration(output_settings(params, self.model.calibration), stages)

    def apply(self, configuration: Configuration) -> None:
        self.settings = configuration.settings  # one swap: a frame sees one consistent set
        for stage in self.stages:
            if stage.name in configuration.stages:
                stage.apply(configuration.stages[stage.name])

    # -- frames --------------------------------------------------------------------------

    def warm_up(self, runs: int) -> float:
        """``runs`` full dummy batches; mean ms per batch (StartupError when the engine fails)."""
        return warm_up(self.engine, runs, self.shape)

    def run(self, frames: Mapping[str, Any]) -> list[CameraResult]:
        """Each camera's message (or HxWx3 uint8 RGB array) of one batch -> its result, in
        order. An engine failure is counted for every camera of the batch, then raised."""
        results = [self._decode(camera, frame) for camera, frame in frames.items()]
        good = [r for r in results if r.rgb is not None]
        if not good:
            return results
        t0 = time.monotonic()
        try:
            outputs_ = infer_batch(self.engine, [r.rgb for r in good], self.shape)
        except Exception:
            for result in good:
                self.stats[result.camera].on_inference_error()
            raise
        inference_s = time.monotonic() - t0
        self.batches.on_batch(len(good))
        for result, (labels, confidence) in zip(good, outputs_):
            result.labels, result.confidence, result.inference_s = labels, confidence, inference_s
            self._restart_if_rewound(result)
            self._judge(result)
        return results

    def observe(
        self, topic: str, msgtype: str, message: Any, nbytes: int, stamp: int, encode: Any = None
    ) -> None:
        """An input message as received, before the mailbox (any thread): for the stages that
        keep input (the clip recorder). ``message``: CDR bytes, or an object ``encode`` turns
        into CDR bytes later."""
        for stage in self._observers:
            stage.observe(topic, msgtype, message, nbytes, stamp, encode)

    def drain_lines(self) -> list[tuple[str, str]]:
        """(severity, text) log lines the stages have for the node since the last call."""
        return [line for stage in self._stages_with("drain_lines") for line in stage.drain_lines()]

    def close(self) -> None:
        """The stream ended: stages that hold work (an open clip) finish it."""
        for stage in self._stages_with("close"):
            stage.close()

    def _stages_with(self, method: str) -> list[Any]:
        return [stage for stage in self.stages if callable(getattr(stage, method, None))]

    def _restart_if_rewound(self, result: CameraResult) -> None:
        """A camera whose stamps go backwards (a bag played again, a looped recording) starts
        its stages afresh: hysteresis across a jump back in time means nothing."""
        stamp = _stamp_ns(result.stamp)
        previous = self._stamps.get(result.camera)
        if stamp is None:
            return
        self._stamps[result.camera] = stamp
        if previous is not None and stamp < previous:
            for stage in self.stages:
                stage.reset(result.camera)

    def _decode(self, camera: str, frame: Any) -> CameraResult:
        result = CameraResult(camera, frame)
        stats = self.stats[camera]
        t0 = time.monotonic()
        try:
            if isinstance(frame, np.ndarray):
                self.limits.check(frame.shape[1], frame.shape[0], "frame")
                rgb, notes = frame, ()
            else:
                decoded = codec.decode_rgb8(frame, self.limits)
                rgb, notes = decoded.image, decoded.notes
        except codec.ImageDecodeError as exc:
            result.bad_input, result.bad_input_total = exc, stats.on_bad_input(exc.kind)
            return result
        for note in notes:
            stats.on_input_note(note.kind)
        result.rgb, result.notes = rgb, tuple(notes)
        result.resized = needs_resize(self.shape, rgb)
        result.decode_s = time.monotonic() - t0
        return result

    def _judge(self, result: CameraResult) -> None:
        """Every stage on one inferred frame; remembers the statuses for /diagnostics."""
        for stage in self.stages:
            status = stage.update(result.camera, result)
            if status is None:  # a sink with nothing to report
                continue
            status = Status(
                status.level,
                status.message,
                status.values,
                status_name(self.node_name, result.camera, stage.name),
                self.hardware_id,
            )
            result.statuses[stage.name] = status
            with self._lock:
                previous = self._latest.get((result.camera, stage.name))
                self._latest[(result.camera, stage.name)] = status
            result.changed |= previous is not None and previous.level != status.level

    def stage(self, name: str) -> Any:
        """The stage called ``name``."""
        return next(stage for stage in self.stages if stage.name == name)

    def latest_statuses(self) -> list[Status]:
        """Every camera's newest status of every stage (cameras in order, then stages), then
        the node-wide status of each stage that has one (the clip recorder's), as it is now."""
        with self._lock:
            per_camera = [
                self._latest[(camera, stage.name)]
                for camera in self.cameras
                for stage in self.stages
                if (camera, stage.name) in self._latest
            ]
        node_wide = [
            (stage.name, stage.node_status()) for stage in self._stages_with("node_status")
        ]
        return per_camera + [
            Status(
                s.level,
                s.message,
                s.values,
                status_name(self.node_name, SINGLE_CAMERA, name),
                self.hardware_id,
            )
            for name, s in node_wide
            if s is not None
        ]

    def pipeline_status(
        self,
        watch: Mapping[str, WatchdogState],
        topics: Mapping[str, str],
        extra: Optional[Mapping[str, str]] = None,
    ) -> Status:
        """The node's pipeline status from the counters and each camera's watchdog state
        (``topics``: each camera's input topic); ``extra`` values are added."""
        per_camera = {
            camera: camera_status(
                self.stats[camera].snapshot(), watch[camera], self.shape, topics[camera]
            )
            for camera in self.cameras
        }
        status = ready_status(per_camera, self.batch, self.batches)
        values = {**status.values, **(extra or {})}
        name = status_name(self.node_name, SINGLE_CAMERA, "pipeline")
        return Status(status.level, status.message, values, name, self.hardware_id)

    def render(self, result: CameraResult, wanted: Iterable[str]) -> dict[str, Any]:
        """The payloads of one inferred frame's outputs that are wanted (subscribed to, or
        recorded) and switched on (``publish.NAME``); see :mod:`.outputs`."""
        settings = self.settings
        wanted = [name for name in wanted if settings.enabled(name)]
        if not result.ok or not wanted:
            return {}
        frame = outputs.RenderInput(
            rgb=result.rgb,
            labels=result.labels,
            confidence=result.confidence,
            settings=settings,
            palette=self.palette,
            statuses=result.statuses,
        )
        return outputs.render(frame, wanted)


def _stamp_ns(stamp: Any) -> Optional[int]:
    """A header stamp (``sec``, ``nanosec``) in nanoseconds; None without one."""
    try:
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    except (AttributeError, TypeError, ValueError):
        return None
