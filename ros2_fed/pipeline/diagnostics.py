"""The node's counters and what /diagnostics says about them, without ROS.

Why pure: the pipeline status (level, message, key/values) follows from counters, a watchdog
and the engine's batching; the rules (bad input is WARN, engine failures ERROR, several
cameras summed and prefixed ``NAME.``) are tested without a ROS graph, and the replay counts
bad frames with the same :class:`PipelineStats` so its report uses the node's kind names.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Mapping, Optional

import numpy as np

from ros2_fed.cameras import SINGLE_CAMERA
from ros2_fed.health import ERROR, OK, WARN, Status, WatchdogState, worst_status


class PipelineStats:
    """Thread-safe counters and latency windows for /diagnostics."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad_input: collections.Counter[str] = collections.Counter()
        self.input_notes: collections.Counter[str] = (
            collections.Counter()
        )  # codec.NOTE_KINDS: decoded, noted
        self.inference_errors = 0
        self.latency_s: collections.deque[float] = collections.deque(maxlen=window)
        self.inference_s: collections.deque[float] = collections.deque(maxlen=window)
        self._last: dict[str, Any] = {
            "time": time.monotonic(),
            "received": 0,
            "processed": 0,
            "bad": 0,
            "inference_errors": 0,
        }

    def on_received(self, dropped_previous: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_previous)

    def on_processed(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.processed += 1
            self.latency_s.append(latency_s)
            self.inference_s.append(inference_s)

    def on_bad_input(self, kind: str) -> int:
        with self._lock:
            self.bad_input[kind] += 1
            return sum(self.bad_input.values())

    def on_input_note(self, kind: str) -> None:
        with self._lock:
            self.input_notes[kind] += 1

    def on_inference_error(self) -> None:
        with self._lock:
            self.inference_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """Totals, percentiles and per-period rates; starts a new period."""
        with self._lock:
            now = time.monotonic()
            last = self._last
            period = max(now - last["time"], 1e-9)
            bad_total = sum(self.bad_input.values())
            lat = np.asarray(self.latency_s, dtype=np.float64)
            inf = np.asarray(self.inference_s, dtype=np.float64)
            snap = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "bad_input": dict(self.bad_input),
                "bad_input_total": bad_total,
                "input_notes": dict(self.input_notes),
                "inference_errors": self.inference_errors,
                "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else math.nan,
                "latency_p95_ms": float(np.percentile(lat, 95) * 1e3) if lat.size else math.nan,
                "inference_p50_ms": float(np.percentile(inf, 50) * 1e3) if inf.size else math.nan,
                "inference_p95_ms": float(np.percentile(inf, 95) * 1e3) if inf.size else math.nan,
                "input_rate_hz": (self.received - last["received"]) / period,
                "output_rate_hz": (self.processed - last["processed"]) / period,
                "bad_input_in_period": bad_total - last["bad"],
                "inference_errors_in_period": self.inference_errors - last["inference_errors"],
            }
            self._last = {
                "time": now,
                "received": self.received,
                "processed": self.processed,
                "bad": bad_total,
                "inference_errors": self.inference_errors,
            }
            return snap


def pipeline_status(snap: Mapping[str, Any]) -> tuple[int, str]:
    """(level, message) of a ready pipeline from a :meth:`PipelineStats.snapshot`."""
    if snap["inference_errors_in_period"]:
        return ERROR, f"{snap['inference_errors_in_period']} frames failed in the engine"
    if snap["bad_input_in_period"]:
        return WARN, f"skipped {snap['bad_input_in_period']} bad input frames"
    if (
        snap["received"]
        and snap["dropped"]
        and snap["input_rate_hz"] > snap["output_rate_hz"] * 1.05
    ):
        return OK, (
            f"ready; dropping frames (input {snap['input_rate_hz']:.1f} Hz > "
            f"output {snap['output_rate_hz']:.1f} Hz)"
        )
    return OK, "ready"


def pipeline_values(
    snap: Mapping[str, Any], shape: Optional[tuple[int, int]], input_topic: str
) -> dict[str, str]:
    """The key/values of the pipeline status (counters, percentiles, rates, input)."""
    values: dict[str, Any] = {
        "state": "ready",
        "frames_received": snap["received"],
        "frames_processed": snap["processed"],
        "frames_dropped": snap["dropped"],
        "bad_input_total": snap["bad_input_total"],
        "inference_errors": snap["inference_errors"],
        "latency_p50_ms": f"{snap['latency_p50_ms']:.1f}",
        "latency_p95_ms": f"{snap['latency_p95_ms']:.1f}",
        "inference_p50_ms": f"{snap['inference_p50_ms']:.1f}",
        "inference_p95_ms": f"{snap['inference_p95_ms']:.1f}",
        "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
        "output_rate_hz": f"{snap['output_rate_hz']:.2f}",
        "engine_input_shape": "x".join(map(str, shape)) if shape else "any",
        "input_topic": input_topic,
    }
    for kind, count in sorted(snap["bad_input"].items()):
        values[f"bad_input.{kind}"] = count
    for kind, count in sorted(snap.get("input_notes", {}).items()):
        values[f"input_notes.{kind}"] = count
    return {k: str(v) for k, v in values.items()}


#: Per-camera counters that are summed into the node's totals.
SUMMED_VALUES = (
    "frames_received",
    "frames_processed",
    "frames_dropped",
    "bad_input_total",
    "inference_errors",
)
SUMMED_RATES = ("input_rate_hz", "output_rate_hz")
SHARED_VALUES = ("state", "engine_input_shape")  # the same for every camera: said once


class BatchCounter:
    """How full the batches are: frames run / batches run (written by the worker only)."""

    def __init__(self) -> None:
        self.batches = 0
        self.frames = 0

    def on_batch(self, frames: int) -> None:
        self.batches += 1
        self.frames += int(frames)

    def values(self) -> dict[str, str]:
        mean = self.frames / self.batches if self.batches else 0.0
        return {
            "engine_batches": str(self.batches),
            "engine_frames": str(self.frames),
            "engine_frames_per_batch": f"{mean:.2f}",
        }


def camera_totals(
    per_camera: Mapping[str, Mapping[str, str]],
    batch: tuple[int, bool],
    counter: Optional[BatchCounter] = None,
) -> dict[str, str]:
    """The key/values of a multi-camera pipeline status: totals over the cameras, the engine's
    batch and how full its batches were, then every camera's own values prefixed ``NAME.``."""
    first = next(iter(per_camera.values()))
    values: dict[str, str] = {key: first[key] for key in SHARED_VALUES if key in first}
    values["cameras"] = ",".join(per_camera)
    values["engine_batch"] = f"{batch[0]}" + (" (dynamic: 1..%d)" % batch[0] if batch[1] else "")
    values.update(counter.values() if counter is not None else {})
    for key in SUMMED_VALUES:
        values[key] = str(sum(int(v.get(key, 0)) for v in per_camera.values()))
    for key in SUMMED_RATES:
        values[key] = f"{sum(float(v.get(key, 0.0)) for v in per_camera.values()):.2f}"
    for name, camera_values in per_camera.items():
        values.update(
            {f"{name}.{k}": v for k, v in camera_values.items() if k not in SHARED_VALUES}
        )
    return values


def status_name(node: str, camera: str, what: str) -> str:
    """A diagnostic status name: ``<node>: [<camera> ]<what>`` (``fed_node: pipeline``,
    ``fed_node: front alerts``); the node and the replay name their statuses alike."""
    node = node.strip("/")
    return f"{node}: {camera} {what}" if camera else f"{node}: {what}"


def hardware_id(metadata: Mapping[str, Any]) -> str:
    """The default diagnostics hardware_id: the engine's runtime and device."""
    return f"{metadata.get('runtime', 'engine')}:{metadata.get('device') or 'default'}"


def camera_status(
    snap: Mapping[str, Any],
    watch: WatchdogState,
    shape: Optional[tuple[int, int]],
    input_topic: str,
) -> Status:
    """One camera's status: its counters' verdict and its watchdog's, the worse one wins."""
    level, message = worst_status(pipeline_status(snap), (watch.level, watch.message))
    values = pipeline_values(snap, shape, input_topic)
    values["seconds_since_input"] = f"{watch.seconds_since_input:.2f}"
    return Status(level, message, values)


def ready_status(
    per_camera: Mapping[str, Status],
    batch: tuple[int, bool],
    counter: Optional[BatchCounter] = None,
) -> Status:
    """The pipeline status of a ready node: the single camera's as it is; with cameras, the
    worst camera's level (each camera's message prefixed with its name), the totals and every
    camera's values prefixed ``NAME.``."""
    if list(per_camera) == [SINGLE_CAMERA]:
        return per_camera[SINGLE_CAMERA]
    problems = [
        (s.level, f"{n}: {s.message}") for n, s in per_camera.items() if s.message != "ready"
    ]
    level, message = worst_status((OK, f"ready: {len(per_camera)} cameras"), *problems)
    values = camera_totals({n: s.values for n, s in per_camera.items()}, batch, counter)
    return Status(level, message, values)
