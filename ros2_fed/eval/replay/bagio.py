"""rosbag2 writing and message (de)serialisation with the ``rosbags`` library (no rclpy).

Messages here are ``rosbags`` dataclasses from the ROS 2 kilted type store: same field names
as the rclpy classes (``msg.header.stamp.sec``, ``msg.data``, ...), so :mod:`ros2_fed.codec`
decodes them unchanged. On the wire and in bags both are plain CDR, so bytes written here
are what rclpy publishes and ``ros2 bag play`` / Foxglove / the ``mcap`` readers read.

- :func:`image_message`, :func:`compressed_message`, :func:`diagnostic_array` build messages;
- :func:`serialize` / :func:`deserialize` convert to and from CDR bytes;
- :class:`BagWriter` writes a rosbag2 (MCAP or sqlite3) from messages or raw CDR bytes.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any, Optional, Union

from ros2_fed.messages import (  # noqa: F401  (the replay's names for the message layer)
    COMPRESSED_IMAGE,
    DIAGNOSTIC_ARRAY,
    IMAGE,
    IMAGE_TYPES,
    compressed_message,
    deserialize,
    diagnostic_array,
    header,
    image_message,
    msg_class,
    serialize,
    split_stamp,
    stamp_ns,
    typestore,
)

STORAGES = ("mcap", "sqlite3")
PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def storage_of(path: PathLike) -> str:
    """'mcap' or 'sqlite3' for an existing rosbag2 (directory or single storage file)."""
    path = Path(path)
    if path.is_dir():
        meta = path / "metadata.yaml"
        if meta.is_file():
            import yaml

            try:
                info = yaml.safe_load(meta.read_text()) or {}
                ident = str(
                    info.get("rosbag2_bagfile_information", {}).get("storage_identifier", "")
                )
            except Exception:  # unreadable metadata: fall back to the file suffixes
                ident = ""
            if ident in STORAGES:
                return ident
        if any(path.glob("*.mcap")):
            return "mcap"
        if any(path.glob("*.db3")):
            return "sqlite3"
    elif path.suffix == ".mcap":
        return "mcap"
    elif path.suffix == ".db3":
        return "sqlite3"
    raise ValueError(f"{path}: not a rosbag2 (no metadata.yaml, .mcap or .db3)")


def _checksummed_mcap_writer() -> Any:
    """rosbags' MCAP storage writer, but with the chunk CRC-32 filled in (rosbags writes 0 = none).

    With the checksum every MCAP reader (rosbags, the ``mcap`` library, Foxglove, rosbag2)
    detects a corrupt chunk instead of handing out damaged messages. Falls back to the plain
    writer should the (pinned) rosbags internals differ.
    """
    try:
        from rosbags.rosbag2 import storage_mcap as sm

        base = sm.McapWriter
        helpers = (
            sm.write_uint16,
            sm.write_uint32,
            sm.write_uint64,
            sm.write_string,
            sm.write_record,
            sm.PendingChunk,
        )
    except (ImportError, AttributeError):  # pragma: no cover - other rosbags versions
        return None

    class ChecksummedMcapWriter(base):  # type: ignore[misc, valid-type]
        def close_chunk(self) -> None:  # same records as rosbags 0.11.9, plus the CRC
            _close_chunk_with_crc(self, helpers, sm.defaultdict)

    return ChecksummedMcapWriter


def _close_chunk_with_crc(writer: Any, helpers: tuple[Any, ...], defaultdict: Any) -> None:
    """rosbags' McapWriter.close_chunk with the chunk's CRC-32: the chunk record, its message
    indexes and the chunk index entry, then a fresh pending chunk. ``helpers``: rosbags'
    record writers and PendingChunk."""
    from binascii import crc32
    from io import BytesIO

    write_uint16, write_uint32, write_uint64, write_string, write_record, PendingChunk = helpers
    raw = writer.chunk.bio.getvalue()
    rec = BytesIO()
    write_uint64(rec, writer.chunk.message_start_time)
    write_uint64(rec, writer.chunk.message_end_time)
    write_uint64(rec, len(raw))
    write_uint32(rec, crc32(raw))
    compressed = writer.compressor(raw)
    write_string(rec, writer.compression)
    write_uint64(rec, len(compressed))
    rec.write(compressed)
    chunk_start = writer.bio.tell()
    write_record(writer.bio, 0x06, rec)
    chunk_end = writer.bio.tell()
    offsets: list[tuple[int, int]] = []
    for cid, msgs in writer.chunk.msgs.items():
        offsets.append((cid, writer.bio.tell()))
        rec = BytesIO()
        write_uint16(rec, cid)
        write_uint32(rec, len(msgs) * 16)
        for ts, offset in msgs:
            write_uint64(rec, ts)
            write_uint64(rec, offset)
        write_record(writer.bio, 0x07, rec)
    rec = BytesIO()
    write_uint64(rec, writer.chunk.message_start_time)
    write_uint64(rec, writer.chunk.message_end_time)
    write_uint64(rec, chunk_start)
    write_uint64(rec, chunk_end - chunk_start)
    write_uint32(rec, len(offsets) * 10)
    for cid, offset in offsets:
        write_uint16(rec, cid)
        write_uint64(rec, offset)
    write_uint64(rec, writer.bio.tell() - chunk_end)
    write_string(rec, writer.compression)
    write_uint64(rec, len(compressed))
    write_uint64(rec, len(raw))
    writer.chunks.append(rec)
    writer.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))


class _Call:
    """A function the writer thread runs for a caller that waits for its result."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None


class BagWriter:
    """A rosbag2 being written: ``add_topic`` then ``write`` messages or CDR bytes, from any
    thread.

    ``storage``: "mcap" (default) or "sqlite3". One worker thread owns the rosbags writer
    (sqlite3 connections must stay in the thread that opened them); ``write`` queues the
    message (bounded: a slow disk slows the caller instead of eating memory) and returns.
    ``close`` writes the index and metadata.yaml and raises any error a write met;
    ``abort`` (or leaving the ``with`` block by an exception) removes the unfinished bag, so a
    half-written bag is never mistaken for a complete one.
    """

    def __init__(
        self, path: PathLike, storage: str = "mcap", custom_data: Optional[dict[str, str]] = None
    ) -> None:
        import queue

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=256)
        self._connections: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self.counts: dict[str, int] = {}
        self.closed = False
        self._writer: Any = None
        self._thread = threading.Thread(
            target=self._work, name=f"bag_writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            self._call(lambda: self._open(custom_data or {}))
        except BaseException:
            self.closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)
            raise

    # -- the writer thread ---------------------------------------------------------------

    def _open(self, custom_data: dict[str, str]) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(self.path, version=9, storage_plugin=plugin)
        checksummed = _checksummed_mcap_writer() if self.storage == "mcap" else None
        if checksummed is not None:
            writer.STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, plugin: checksummed}
        for key, value in custom_data.items():
            writer.set_custom_data(str(key), str(value))
        writer.open()
        self._writer = writer

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Call):
                try:
                    item.result = item.fn()
                except BaseException as exc:  # re-raised in the calling thread
                    item.error = exc
                finally:
                    item.event.set()
                continue
            if self._error is None:  # a queued write
                try:
                    item()
                except BaseException as exc:  # raised by the next write / close
                    self._error = exc

    def _call(self, fn: Any) -> Any:
        """Run ``fn`` in the writer thread after everything queued before it; wait; re-raise."""
        call = _Call(fn)
        self._queue.put(call)
        call.event.wait()
        if call.error is not None:
            raise call.error
        return call.result

    # -- the API -------------------------------------------------------------------------

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self._types:
            if self._types[topic] != msgtype:
                raise ValueError(f"{topic} already added with type {self._types[topic]}")
            return
        self._connections[topic] = self._call(
            lambda: self._writer.add_connection(topic, msgtype, typestore=typestore())
        )
        self._types[topic] = msgtype
        self.counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._types

    def set_custom_data(self, key: str, value: str) -> None:
        """Set (or replace) a metadata.yaml custom_data entry; written by ``close``."""
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        self._call(lambda: self._writer.set_custom_data(str(key), str(value)))

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Queue a rosbags message, or raw CDR bytes, at ``timestamp_ns`` (log time)."""
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        if self._error is not None:
            raise self._error
        if topic not in self._connections:
            raise KeyError(f"topic {topic} was not added to {self.path}")
        data = bytes(msg) if isinstance(msg, (bytes, bytearray, memoryview)) else serialize(msg)
        connection = self._connections[topic]
        self._queue.put(lambda: self._writer.write(connection, int(timestamp_ns), data))
        with self._lock:
            self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag; raises the first error any write met (the bag is then removed)."""
        if self.closed:
            return
        try:
            self._call(lambda: None)  # everything queued so far is written
            if self._error is not None:
                raise self._error
            self._call(self._writer.close)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def abort(self) -> None:
        """Stop writing and delete the unfinished bag."""
        if not self.closed:
            self.closed = True
            writer = self._writer

            def stop() -> None:
                if writer is not None:
                    try:
                        writer.abort()
                    except Exception:
                        pass

            if self._thread.is_alive():
                self._queue.put(stop)
                self._queue.put(None)
                self._thread.join(timeout=30)
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
