"""training/synthroad_bag.py: synthroad drives as rosbag2, checked with readers that are not ours.

- MCAP: the ``mcap`` + ``mcap-ros2-support`` libraries (CRC-validated chunks, their own CDR
  decoder from the schema stored in the file);
- sqlite3: Python's ``sqlite3`` + rclpy's ``deserialize_message`` (no rosbags at all).

Message contents must equal what ``make_sequence`` renders, byte for byte (JPEG: close).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from training import synthroad_bag as sb
from training.datasets.synthroad_sequence import make_sequence

FRAMES, SIZE, FPS, SEED = 5, (48, 96), 10.0, 3


@pytest.fixture(scope="module")
def sequence() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return make_sequence(FRAMES, SIZE, SEED, ood_from_frame=1, fps=FPS)


def _mcap_messages(path: Path) -> list[tuple[str, str, int, object]]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()], validate_crcs=True)
        return [
            (channel.topic, schema.name, message.log_time, ros)
            for schema, channel, message, ros in reader.iter_decoded_messages()
        ]


def test_mcap_bag_matches_the_sequence(tmp_path: Path, sequence) -> None:
    out = tmp_path / "drive"
    info = sb.write_synthroad_bag(
        out, frames=FRAMES, size=SIZE, fps=FPS, seed=SEED, ood_from_frame=1
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == ["drive.mcap", "metadata.yaml"]
    messages = _mcap_messages(out / "drive.mcap")
    assert len(messages) == 3 * FRAMES
    by_topic: dict[str, list] = {}
    for topic, schema, log_time, ros in messages:
        assert schema == "sensor_msgs/msg/Image"
        by_topic.setdefault(topic, []).append((log_time, ros))
    assert sorted(by_topic) == sorted([sb.IMAGE_TOPIC, sb.LABELS_TOPIC, sb.OOD_TOPIC])
    period = round(1e9 / FPS)
    expected = {
        sb.IMAGE_TOPIC: ("rgb8", 3, 0),
        sb.LABELS_TOPIC: ("mono8", 1, 1),
        sb.OOD_TOPIC: ("mono8", 1, 2),
    }
    for topic, (encoding, channels, which) in expected.items():
        msgs = sorted(by_topic[topic], key=lambda m: m[0])
        assert len(msgs) == FRAMES
        for i, (log_time, ros) in enumerate(msgs):
            stamp = sb.START_NS + i * period
            assert log_time == stamp
            assert ros.header.stamp.sec * 1_000_000_000 + ros.header.stamp.nanosec == stamp
            assert ros.header.frame_id == sb.FRAME_ID
            assert (ros.height, ros.width, ros.encoding) == (SIZE[0], SIZE[1], encoding)
            assert ros.step == SIZE[1] * channels and ros.is_bigendian == 0
            assert bytes(ros.data) == sequence[i][which].tobytes()
    ood = [
        np.frombuffer(bytes(r.data), np.uint8)
        for _, r in sorted(by_topic[sb.OOD_TOPIC], key=lambda m: m[0])
    ]
    # OOD objects appear from frame 1
    assert not (ood[0] == 1).any() and any((o == 1).any() for o in ood[1:])
    assert info.ood_pixels == [int((o == 1).sum()) for o in ood]
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["message_count"] == 3 * FRAMES
    custom = yaml.safe_load(meta["custom_data"][sb.CUSTOM_DATA_KEY])
    assert custom["image_topic"] == sb.IMAGE_TOPIC and custom["frames"] == FRAMES
    assert custom["seed"] == SEED


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    a = sb.write_synthroad_bag(tmp_path / "1" / "drive", frames=2, size=(32, 48), seed=1)
    b = sb.write_synthroad_bag(tmp_path / "2" / "drive", frames=2, size=(32, 48), seed=1)
    for name in ("drive.mcap", "metadata.yaml"):  # (the file name is stored inside, so same names)
        assert (Path(a.path) / name).read_bytes() == (Path(b.path) / name).read_bytes()
    with pytest.raises(FileExistsError):
        sb.write_synthroad_bag(tmp_path / "1" / "drive", frames=1, size=(32, 48))


def test_sqlite3_compressed_bag(tmp_path: Path, sequence) -> None:
    pytest.importorskip("rclpy")
    import cv2
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    out = tmp_path / "drive_db"
    sb.write_synthroad_bag(
        out,
        frames=FRAMES,
        size=SIZE,
        fps=FPS,
        seed=SEED,
        ood_from_frame=1,
        storage="sqlite3",
        compressed=True,
    )
    db = sqlite3.connect(out / "drive_db.db3")
    topics = {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, name, type FROM topics")}
    rows = db.execute(
        "SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp, topic_id"
    ).fetchall()
    db.close()
    assert sorted(name for name, _ in topics.values()) == sorted(
        [sb.COMPRESSED_TOPIC, sb.LABELS_TOPIC, sb.OOD_TOPIC]
    )
    seen = {sb.COMPRESSED_TOPIC: 0, sb.LABELS_TOPIC: 0, sb.OOD_TOPIC: 0}
    for topic_id, timestamp, data in rows:
        name, msgtype = topics[topic_id]
        i = seen[name]
        seen[name] += 1
        msg = deserialize_message(
            bytes(data), CompressedImage if msgtype.endswith("CompressedImage") else Image
        )
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == timestamp
        if name == sb.COMPRESSED_TOPIC:
            assert msg.format == "rgb8; jpeg compressed bgr8"
            raw = np.frombuffer(bytes(msg.data), np.uint8)
            decoded = cv2.imdecode(raw, cv2.IMREAD_COLOR)[..., ::-1]
            error = np.abs(decoded.astype(int) - sequence[i][0].astype(int)).mean()
            other = np.abs(decoded.astype(int) - sequence[(i + 2) % FRAMES][0].astype(int)).mean()
            # lossy (JPEG q95, 4:2:0), but this frame
            assert error < 8.0 and error < other / 2, (error, other)
        else:
            which = 1 if name == sb.LABELS_TOPIC else 2
            assert (msg.height, msg.width, msg.encoding) == (SIZE[0], SIZE[1], "mono8")
            assert bytes(msg.data) == sequence[i][which].tobytes()
    assert set(seen.values()) == {FRAMES}


def test_cli(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "training.synthroad_bag", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_text.returncode == 0 and "--frames" in help_text.stdout
    assert "/camera/ood" in help_text.stdout
    args = ["--out", str(tmp_path / "c"), "--frames", "2", "--size", "32x48", "--quiet"]
    assert sb.main(args) == 0
    assert (tmp_path / "c" / "c.mcap").is_file()
    assert sb.main(args) == 2  # exists


def test_single_camera_custom_data_unchanged(tmp_path: Path) -> None:
    sb.write_synthroad_bag(tmp_path / "one", frames=1, size=(32, 48), cameras=1)
    meta = yaml.safe_load((tmp_path / "one" / "metadata.yaml").read_text())
    custom = yaml.safe_load(meta["rosbag2_bagfile_information"]["custom_data"][sb.CUSTOM_DATA_KEY])
    assert list(custom) == [
        "storage",
        "frames",
        "size",
        "fps",
        "seed",
        "image_topic",
        "labels_topic",
        "ood_topic",
        "compressed",
        "ood_from_frame",
        "start_ns",
    ]


def test_rig_bag_three_cameras(tmp_path: Path) -> None:
    """3 cameras: /camK/... topics, frame_id camK, identical stamps, camera K = the drive of seed
    SEED + 1000 K, custom_data listing the cameras with their per-frame OOD pixel counts."""
    frames = 3
    out = tmp_path / "rig"
    info = sb.write_synthroad_bag(
        out, frames=frames, size=SIZE, fps=FPS, seed=SEED, ood_from_frame=1, cameras=3
    )
    names = ["cam0", "cam1", "cam2"]
    assert [c.name for c in info.cameras] == names
    messages = _mcap_messages(out / "rig.mcap")
    assert len(messages) == 3 * 3 * frames
    by_topic: dict[str, list] = {}
    for topic, schema, log_time, ros in messages:
        by_topic.setdefault(topic, []).append((log_time, ros))
    assert sorted(by_topic) == sorted(t for n in names for t in sb.camera_topics(n))
    period = round(1e9 / FPS)
    stamps = [sb.START_NS + i * period for i in range(frames)]
    images = {}
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    custom = yaml.safe_load(meta["custom_data"][sb.CUSTOM_DATA_KEY])
    assert [c["name"] for c in custom["cameras"]] == names
    for k, name in enumerate(names):
        expected = make_sequence(frames, SIZE, SEED + 1000 * k, ood_from_frame=1, fps=FPS)
        image_topic, labels_topic, ood_topic = sb.camera_topics(name)
        for which, topic in enumerate((image_topic, labels_topic, ood_topic)):
            msgs = sorted(by_topic[topic], key=lambda m: m[0])
            assert [lt for lt, _ in msgs] == stamps  # same stamps on every camera
            for i, (_, ros) in enumerate(msgs):
                assert ros.header.stamp.sec * 1_000_000_000 + ros.header.stamp.nanosec == stamps[i]
                assert ros.header.frame_id == name
                assert bytes(ros.data) == expected[i][which].tobytes()
        images[name] = [expected[i][0] for i in range(frames)]
        entry = custom["cameras"][k]
        assert entry == {
            "name": name,
            "seed": SEED + 1000 * k,
            "image_topic": image_topic,
            "labels_topic": labels_topic,
            "ood_topic": ood_topic,
            "frame_id": name,
            "ood_pixels": [int((e[2] == 1).sum()) for e in expected],
        }
    for a, b in [("cam0", "cam1"), ("cam0", "cam2"), ("cam1", "cam2")]:
        # distinct drives
        assert all(not np.array_equal(x, y) for x, y in zip(images[a], images[b]))
    assert custom["image_topic"] == "/cam0/image_raw" and custom["frames"] == frames
    assert info.ood_pixels == [
        sum(c["ood_pixels"][i] for c in custom["cameras"]) for i in range(frames)
    ]
    assert any(info.ood_pixels)


def test_rig_cli_names_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        sb.main(
            [
                "--out",
                str(tmp_path / "r"),
                "--frames",
                "1",
                "--size",
                "32x48",
                "--quiet",
                "--compressed",
                "--storage",
                "sqlite3",
                "--camera-names",
                "front,rear",
            ]
        )
        == 0
    )
    assert "front (seed 0): /front/image_raw/compressed" in capsys.readouterr().out
    db = sqlite3.connect(tmp_path / "r" / "r.db3")
    topics = sorted(row[0] for row in db.execute("SELECT name FROM topics"))
    db.close()
    assert topics == sorted(
        [
            "/front/image_raw/compressed",
            "/front/labels",
            "/front/ood",
            "/rear/image_raw/compressed",
            "/rear/labels",
            "/rear/ood",
        ]
    )
    for bad in (
        ["--camera-names", "front,front"],
        ["--camera-names", "front,9x"],
        ["--cameras", "3", "--camera-names", "a,b"],
        ["--cameras", "0"],
    ):
        args = ["--out", str(tmp_path / "bad"), "--frames", "1", "--size", "32x48", "--quiet"]
        assert sb.main(args + bad) == 2
        assert "fed_synthroad_bag: error:" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    help_text = sb.build_parser().format_help()
    assert "--cameras" in help_text and "different seeds" in help_text and "no yaw" in help_text
