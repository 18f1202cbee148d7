"""training/label_from_ground_truth.py and the drives of one OOD kind it is measured on.

The labels a queued frame gets are checked against the drive's own ``/camera/labels`` and
``/camera/ood`` messages, read with the ``mcap`` libraries (not the renderer the script uses),
at the frame the image came from; frames are queued out of order under other names, so only a
match by content passes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from training import label_from_ground_truth as lg
from training import synthroad_bag as sb
from training.datasets import synthroad_sequence as seq
from training.datasets.cityscapes import (
    LABEL_ID_EGO_VEHICLE,
    CityscapesDataset,
    label_ids_to_train_ids,
)
from training.objective import EGO_INDEX

FRAMES, SIZE, SEED = 6, (48, 96), 7700


def _messages(bag: Path) -> dict[str, list[np.ndarray]]:
    """Every topic's images in stamp order, decoded by the mcap libraries."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    with open(next(bag.glob("*.mcap")), "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for _, channel, message, ros in reader.iter_decoded_messages():
            shape = (ros.height, ros.width, -1)
            image = np.frombuffer(bytes(ros.data), np.uint8).reshape(shape)
            image = image[..., 0] if image.shape[-1] == 1 else image
            out.setdefault(channel.topic, []).append((message.log_time, image))
    return {t: [im for _, im in sorted(v, key=lambda m: m[0])] for t, v in out.items()}


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    bag = tmp_path_factory.mktemp("drives") / "drive_a"
    sb.write_synthroad_bag(
        bag, frames=FRAMES, size=SIZE, seed=SEED, ood_from_frame=2, ood_kinds=["animal"]
    )
    return bag, _messages(bag)


def _queue(root: Path, images: dict[str, np.ndarray]) -> None:
    """A labelling queue as clip_queue writes it: images and an all-road pre-label."""
    for stem, rgb in images.items():
        city = stem.split("_")[0]
        for sub, suffix, data in (
            ("leftImg8bit", "_leftImg8bit.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
            ("gtFine", "_gtFine_labelTrainIds.png", np.zeros(rgb.shape[:2], np.uint8)),
        ):
            folder = root / sub / "train" / city
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{stem}{suffix}"), data)


def test_queued_frames_get_the_drive_labels_of_their_own_frame(tmp_path: Path, drive) -> None:
    bag, msgs = drive
    images, labels, ood = (msgs[t] for t in (sb.IMAGE_TOPIC, sb.LABELS_TOPIC, sb.OOD_TOPIC))
    # frames 5, 2, 3 (OOD visible in all) under names in another order, plus a foreign image
    picked = {
        "clip0001_000000_000000": 5,
        "clip0001_000000_000001": 2,
        "clip0002_000000_000000": 3,
    }
    noise = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    foreign = "clip0003_000000_000000"
    _queue(tmp_path, {**{s: images[i] for s, i in picked.items()}, foreign: noise})

    code = lg.main([str(tmp_path), str(bag)])

    assert code == 1  # the foreign frame is not in the drive
    gt = tmp_path / "gtFine" / "train"
    for stem, i in picked.items():
        city = stem.split("_")[0]
        train_ids = cv2.imread(str(gt / city / f"{stem}_gtFine_labelTrainIds.png"), -1)
        label_ids = cv2.imread(str(gt / city / f"{stem}_gtFine_labelIds.png"), -1)
        np.testing.assert_array_equal(train_ids, labels[i])
        assert not np.array_equal(labels[i], labels[i - 1])  # an off-by-one would show
        assert (ood[i] == 1).any() and np.all(train_ids[ood[i] == 1] == 255)
        np.testing.assert_array_equal(label_ids_to_train_ids(label_ids), train_ids)
        ego = label_ids == LABEL_ID_EGO_VEHICLE
        assert ego.any() and not ego[ood[i] == 1].any() and np.all(train_ids[ego] == 255)
    assert not cv2.imread(str(gt / "clip0003" / f"{foreign}_gtFine_labelTrainIds.png")).any()
    assert not (gt / "clip0003" / f"{foreign}_gtFine_labelIds.png").exists()
    # fed_train's loader takes the labelled clips, ego hood and OOD void as in synthroad (the
    # unlabelled one has no labelIds: the loader refuses it, rather than train on a pre-label)
    with pytest.raises(FileNotFoundError, match="clip0003"):
        CityscapesDataset(tmp_path, "train", ego_index=EGO_INDEX)
    data = CityscapesDataset(tmp_path, "train", ["clip0001", "clip0002"], ego_index=EGO_INDEX)
    assert len(data) == 3
    sample = next(data[k] for k in range(len(data)) if data[k].name == "clip0001_000000_000000")
    hood = cv2.imread(str(gt / "clip0001" / "clip0001_000000_000000_gtFine_labelIds.png"), -1)
    assert np.all(sample.label[hood == LABEL_ID_EGO_VEHICLE] == EGO_INDEX)
    assert np.all(sample.label[ood[5] == 1] == 255)


def test_every_frame_found_exits_zero_and_names_the_frame(tmp_path: Path, drive) -> None:
    bag, msgs = drive
    _queue(tmp_path, {"clip0001_000000_000000": msgs[sb.IMAGE_TOPIC][4]})
    done = lg.label_queue(tmp_path, [bag])
    assert done.labelled == {"clip0001_000000_000000_leftImg8bit.png": "drive_a:4"}
    assert done.unmatched == []
    assert lg.main([str(tmp_path), str(bag)]) == 0


def test_not_a_synthroad_drive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    assert lg.main([str(tmp_path), str(tmp_path / "bag")]) == 2
    (tmp_path / "bag" / "metadata.yaml").write_text(
        yaml.safe_dump({"rosbag2_bagfile_information": {"custom_data": {}}})
    )
    with pytest.raises(ValueError, match="custom_data"):
        lg.drive_settings(tmp_path / "bag")


def _ood_kinds_rendered(monkeypatch: pytest.MonkeyPatch, **kwargs) -> set[str]:
    """The kinds of the OOD objects in the scene every frame of a drive is rendered from."""
    seen: set[str] = set()
    render = seq.render_frame

    def spy(scene, *args, **kw):
        seen.update(o.kind for o in scene.objects if o.kind in seq._OOD_KINDS)
        return render(scene, *args, **kw)

    monkeypatch.setattr(seq, "render_frame", spy)
    for seed in range(7700, 7706):
        for _ in seq.iter_sequence(2, (32, 64), seed, ood_from_frame=0, **kwargs):
            pass
    return seen


def test_ood_kinds_keep_only_those_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ood_kinds_rendered(monkeypatch, ood_kinds=["animal"]) == {"animal"}
    assert _ood_kinds_rendered(monkeypatch, ood_kinds=["cone", "bag"]) == {"cone", "bag"}
    assert len(_ood_kinds_rendered(monkeypatch)) >= 4  # by default every kind may come


def test_ood_kinds_in_the_drive_and_refused_when_unknown(tmp_path: Path, drive) -> None:
    bag, msgs = drive
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert yaml.safe_load(meta["custom_data"][sb.CUSTOM_DATA_KEY])["ood_kinds"] == ["animal"]
    assert any((m == 1).any() for m in msgs[sb.OOD_TOPIC])  # the animals are on the road
    with pytest.raises(ValueError, match="cargo, animal"):
        sb.write_synthroad_bag(tmp_path / "x", frames=1, size=(32, 48), ood_kinds=["unicorn"])
    args = ["--out", str(tmp_path / "y"), "--frames", "1", "--size", "32x48", "--quiet"]
    assert sb.main([*args, "--ood-kinds", "animal,unicorn"]) == 2
    assert not (tmp_path / "y").exists()
    assert sb.main([*args, "--ood-kinds", "tyre"]) == 0
