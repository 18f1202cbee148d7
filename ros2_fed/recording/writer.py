"""The clip writer: one thread that turns finished clips into MCAP files, never the frame path.

Why a thread and a bounded queue: encoding a confidence map and writing a few hundred MB must
never delay a frame; a disk too slow for the triggers costs clips (counted, logged), not frames.

Atomic: a clip is written to a hidden ``.NAME.mcap.part`` in the same folder, flushed to disk,
then renamed to ``NAME.mcap``, so a file called ``*.mcap`` in ``record.dir`` is always complete
(a ``kill -9`` leaves at most a ``.part``, removed at the next start). Each clip carries an MCAP
metadata record ``ros2_fed.clip`` (:data:`METADATA_NAME`) and gets one JSON line in
``index.jsonl``. Over ``record.max_total_mb`` the oldest clips are deleted first (never the one
just written) and the log says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ros2_fed.health import KindThrottle
from ros2_fed.jsonio import dumps

from .planner import Clip

METADATA_NAME = "ros2_fed.clip"
INDEX_NAME = "index.jsonl"
PART_SUFFIX = ".mcap.part"
QUEUE_CLIPS = 4  # finished clips waiting for the disk; more are dropped (and counted)
LOG_LINES = 100  # log lines waiting for the node; older ones are dropped
Msgdef = Callable[[str], str]


def clip_name(clip: Clip) -> str:
    """``clip_20261208T010203.456Z_alert_front``: sortable by trigger time, says why."""
    t = clip.first.stamp_ns
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t // 1_000_000_000))
    camera = f"_{clip.first.camera}" if clip.first.camera else ""
    return f"clip_{stamp}.{(t // 1_000_000) % 1000:03d}Z_{clip.first.reason}{camera}"


def clip_metadata(clip: Clip, model_hash: str) -> dict[str, str]:
    """The ``ros2_fed.clip`` record (MCAP metadata is a string map)."""
    first = clip.first
    region = clip.region or {}
    return {
        "reason": first.reason,
        "camera": first.camera,
        "trigger_stamp_ns": str(first.stamp_ns),
        "start_ns": str(clip.start_ns),
        "end_ns": str(clip.end_ns),
        "level": first.level,
        "message": first.message,
        "region_bbox": str(region.get("bbox", "")),
        "region_size": str(region.get("size", "")),
        "region_area": str(region.get("area", "")),
        "model_hash": model_hash,
        "complete": str(clip.complete).lower(),
        "messages": str(len(clip.entries)),
        "messages_left_out": str(clip.left_out),
        "triggers": json.dumps([t.as_dict() for t in clip.triggers]),
    }


@dataclass
class WriterStats:
    clips_written: int = 0
    clips_deleted: int = 0
    clips_dropped: int = 0  # the queue was full
    errors: int = 0
    last_error: str = ""
    failing: bool = False  # the last attempt to write a clip failed
    bytes_used: int = 0  # the clips in the folder now
    last_clip: str = ""
    written: list[str] = field(default_factory=list)  # this run's clip files, oldest first


class ClipWriter:
    """Writes clips into ``folder`` on its own thread; :meth:`submit` from any thread."""

    def __init__(
        self,
        folder: str,
        max_total_bytes: int,
        model_hash: str,
        msgdef: Msgdef,
        log_throttle_s: float = 2.0,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.max_total_bytes = int(max_total_bytes)
        self.model_hash = model_hash
        self._msgdef = msgdef
        self._queue: queue.Queue[Optional[Clip]] = queue.Queue(maxsize=QUEUE_CLIPS)
        self._lock = threading.Lock()
        self._stats = WriterStats()
        self._lines: list[tuple[str, str]] = []
        self._throttle = KindThrottle(log_throttle_s)
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._prepare()
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------

    def submit(self, clip: Clip) -> bool:
        """Queue a finished clip; False (counted, logged) when the disk is behind."""
        try:
            self._queue.put_nowait(clip)
            return True
        except queue.Full:
            self._error("queue", "a clip was dropped: the writer is behind (slow disk?)")
            with self._lock:
                self._stats.clips_dropped += 1
            return False

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)

    def stats(self) -> WriterStats:
        with self._lock:
            s = self._stats
            return WriterStats(**{**vars(s), "written": list(s.written)})

    def drain_lines(self) -> list[tuple[str, str]]:
        """(severity, text) lines for the node's log since the last call."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued clip is written (tests, the replay's end)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    # -- the writer thread ---------------------------------------------------------------

    def _prepare(self) -> None:
        """Create the folder; remove what a killed process left half-written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for part in self.folder.glob(f".*{PART_SUFFIX}"):
                part.unlink()
                self._line("info", f"record: removed an unfinished clip {part.name}")
            self._set_bytes_used()
        except OSError as exc:
            self._error("folder", f"record.dir {self.folder}: {exc}")

    def _run(self) -> None:
        while True:
            clip = self._queue.get()
            try:
                if clip is None:
                    return
                self._write(clip)
            finally:
                self._queue.task_done()

    def _write(self, clip: Clip) -> None:
        name = clip_name(clip)
        final = self._free_name(name)
        part = self.folder / f".{final.stem}{PART_SUFFIX}"
        meta = clip_metadata(clip, self.model_hash)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_mcap(part, clip, meta, self._msgdef)
            os.replace(part, final)
            _fsync_dir(self.folder)
            size = final.stat().st_size
            self._append_index({"file": final.name, "bytes": size, **_typed(meta)})
        except Exception as exc:  # a full disk, a read-only folder, an unencodable message
            with contextlib.suppress(OSError):
                part.unlink()
            self._error("write", f"record: could not write {final.name}: {_reason(exc)}")
            with self._lock:
                self._stats.failing = True
            return
        with self._lock:
            self._stats.failing = False
            self._stats.clips_written += 1
            self._stats.last_clip = final.name
            self._stats.written.append(final.name)
        self._line("info", f"record: wrote {final.name} ({meta['reason']}, {size / 1e6:.1f} MB)")
        self._keep_budget(final)

    def _free_name(self, name: str) -> Path:
        path, n = self.folder / f"{name}.mcap", 2
        while path.exists():
            path, n = self.folder / f"{name}_{n}.mcap", n + 1
        return path

    def _append_index(self, record: dict[str, Any]) -> None:
        with open(self.folder / INDEX_NAME, "a", encoding="utf-8") as f:
            f.write(dumps(record, indent=None, sort_keys=True))  # one line, strict JSON
            f.flush()
            os.fsync(f.fileno())

    def _keep_budget(self, newest: Path) -> None:
        """Delete the oldest clips while the folder's clips exceed the budget."""
        try:
            clips = sorted(
                self.folder.glob("*.mcap"), key=lambda p: (p.stat().st_mtime_ns, p.name)
            )
            total = sum(p.stat().st_size for p in clips)
            deleted = []
            for old in clips:
                if total <= self.max_total_bytes or old == newest:
                    break
                size = old.stat().st_size
                old.unlink()
                total -= size
                deleted.append(old.name)
                self._line(
                    "warning",
                    f"record: deleted the oldest clip {old.name} ({size / 1e6:.1f} MB) to stay "
                    f"within record.max_total_mb ({self.max_total_bytes / 2**20:g} MB)",
                )
            if deleted:
                self._drop_from_index(set(deleted))
                with self._lock:
                    self._stats.clips_deleted += len(deleted)
            self._set_bytes_used()
        except OSError as exc:
            self._error("budget", f"record: disk budget: {_reason(exc)}")

    def _drop_from_index(self, names: set[str]) -> None:
        index = self.folder / INDEX_NAME
        if not index.is_file():
            return
        kept = [
            line
            for line in index.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("file") not in names
        ]
        tmp = index.with_name(f".{INDEX_NAME}.part")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, index)

    def _set_bytes_used(self) -> None:
        used = sum(p.stat().st_size for p in self.folder.glob("*.mcap"))
        with self._lock:
            self._stats.bytes_used = used

    def _error(self, kind: str, text: str) -> None:
        with self._lock:
            self._stats.errors += 1
            self._stats.last_error = text
        decision = self._throttle.allow(kind)
        if decision.log:
            self._line("error", text + decision.suffix())

    def _line(self, severity: str, text: str) -> None:
        with self._lock:
            self._lines = (self._lines + [(severity, text)])[-LOG_LINES:]


def write_mcap(path: Path, clip: Clip, metadata: dict[str, str], msgdef: Msgdef) -> None:
    """One clip as an MCAP file of ROS 2 CDR messages (profile ros2: what rosbag2, Foxglove and
    rosbags read), flushed to disk before it returns."""
    from mcap.writer import CompressionType, Writer

    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="ros2_fed")
        schemas: dict[str, int] = {}
        channels: dict[str, int] = {}
        for seq, entry in enumerate(sorted(clip.entries, key=lambda e: e.stamp_ns)):
            if entry.msgtype not in schemas:
                schemas[entry.msgtype] = writer.register_schema(
                    entry.msgtype, "ros2msg", msgdef(entry.msgtype).encode()
                )
            if entry.topic not in channels:
                channels[entry.topic] = writer.register_channel(
                    entry.topic, "cdr", schemas[entry.msgtype]
                )
            writer.add_message(
                channels[entry.topic], entry.stamp_ns, entry.cdr(), entry.stamp_ns, seq
            )
        writer.add_metadata(METADATA_NAME, metadata)
        writer.finish()
        stream.flush()
        os.fsync(stream.fileno())


def _typed(meta: dict[str, str]) -> dict[str, Any]:
    """The index line's values: numbers as numbers, the trigger list as a list."""
    out: dict[str, Any] = dict(meta)
    for key in ("trigger_stamp_ns", "start_ns", "end_ns", "messages", "messages_left_out"):
        out[key] = int(meta[key])
    out["complete"] = meta["complete"] == "true"
    out["triggers"] = json.loads(meta["triggers"])
    return out


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
