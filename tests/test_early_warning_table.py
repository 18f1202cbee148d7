"""training.alert_selection's early warning and training.early_warning_table's pooling and page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ros2_fed.alerts import AlertConfig


def _drive(object_from: int, frames: int = 12):
    """A 100x200 drive: a 10x10 object (100 px; the 100 px onset is 15 px at this size) from
    ``object_from`` on, confidence 0.3 on it; the corridor ROI (no label maps)."""
    confs, masks, presence = [], [], []
    for i in range(frames):
        conf = np.ones((100, 200), np.float32)
        mask = np.zeros((100, 200), bool)
        if i >= object_from:
            conf[70:80, 90:100] = 0.3
            mask[70:80, 90:100] = True
        confs.append(conf.astype(np.float16))
        masks.append(mask)
        presence.append(i >= object_from)
    return (confs, [None] * frames, presence), np.stack(masks)


def test_alert_selection_early_warning_on_hand_made_drives() -> None:
    from training import alert_selection as sel

    config = replace(
        AlertConfig(),
        confidence_threshold=0.5,
        min_width=0.0,
        warn_size=0.05,
        error_size=0.1,
        raise_frames=2,
        roi="corridor",
        size_reference="height",
        rule="region",
    )
    (d1, m1), (d2, m2) = _drive(5), _drive(12)  # the second drive never shows the object
    objects = [sel.drive_objects(d1, m1, 0.5), sel.drive_objects(d2, m2, 0.5)]
    assert objects[0][5].object_pixels == 100 and objects[0][5].components == ((100, True),)
    got = sel.early_warning(config, [d1, d2], objects, [41, 42])
    pooled = got["pooled"]
    # object from frame 5 (its first frame: 100 px >= 15), size 0.1 > 0.05 from frame 5, WARN
    # after raise_frames = 2 frames in a row: frame 6, 1 frame = 0.1 s at 10 Hz
    (a,) = pooled["appearances"]
    assert (a["source"], a["onset"], a["alert"], a["delay_frames"]) == ("drive 41", 5, 6, 1)
    assert a["delay_s"] == pytest.approx(0.1)
    assert got["per_drive"][42]["appearances"] == 0
    # 7 object frames, the first 2 excused; 100 px at 100x200 is 656 px at 256x512 (bin
    # 300-1000: 46-152 px here); the pixel detector finds the object in every frame
    assert [r["frames"] for r in pooled["alert_recall_by_size"]] == [0, 5, 0, 0]
    assert pooled["alert_recall_by_size"][1]["recall"] == 1.0
    assert [r["components"] for r in pooled["detector_recall_by_size"]] == [0, 7, 0, 0]
    assert pooled["detector_recall_by_size"][1]["recall"] == 1.0


def test_a_set_adds_its_drives_counts_and_names_the_missing_drives() -> None:
    from ros2_fed.eval.early_warning import FrameObjects, early_warning_report
    from training.early_warning_table import pool_set

    def result(seed: int, pos: int, hit: int, neg: int, fa: int, delay: int):
        n = delay + 3
        frames = [FrameObjects((256, 512), 150, 150, 150)] * n
        levels = [0] * delay + [1] * 3
        report = early_warning_report(levels, frames, [i / 10 for i in range(n)], 3)
        counts = {"positives": pos, "alerted_positives": hit, "negatives": neg}
        return {
            "seed": seed,
            "alerts": {**counts, "alerted_negatives": fa, "excused": 3},
            "early_warning": report,
        }

    got = pool_set([result(1, 10, 9, 0, 0, 4), result(3, 30, 3, 50, 5, 0)], [1, 2, 3])
    # 12 of 40 frames (the drives' recalls 0.9 and 0.1 average to 0.5)
    assert got["frames"]["recall"] == pytest.approx(0.3)
    assert got["frames"]["false_alarm_rate"] == pytest.approx(0.1)
    assert got["drives"] == [1, 3] and got["missing_drives"] == [2]
    assert got["early_warning"]["summary"]["median_frames"] == 2  # of 4 and 0


def test_the_figures_section_is_replaced_and_the_rest_of_the_page_kept(tmp_path: Path) -> None:
    from training.early_warning_table import HEADING, update_section

    page = tmp_path / "early_warning.md"
    update_section(page, f"{HEADING}\n\nfirst\n")
    assert page.read_text() == f"# Early warning\n\n{HEADING}\n\nfirst\n"
    page.write_text(
        f"# Early warning\n\n## Failure analysis\n\nkept 1\n\n{HEADING}\n\nold\n\n"
        "## Next\n\nkept 2\n"
    )
    update_section(page, f"{HEADING}\n\nnew\n")
    text = page.read_text()
    assert "old" not in text and "new" in text and "kept 1" in text and "kept 2" in text
    assert text.index("kept 1") < text.index("new") < text.index("## Next")
    page.write_text("# Early warning\n\nintro\n")
    update_section(page, f"{HEADING}\n\nappended\n")
    assert page.read_text() == f"# Early warning\n\nintro\n\n{HEADING}\n\nappended\n"


@pytest.mark.slow  # renders a short drive and runs the shipped model on it
def test_the_table_command_writes_json_and_the_page_and_resumes(tmp_path: Path) -> None:
    import json

    from training import early_warning_table as table

    models = Path(__file__).resolve().parents[1] / "models"
    common = [
        "--backbone",
        str(models / "tinyseg_synthroad"),
        "--fed",
        str(models / "fed_c_synthroad"),
        "--frames",
        "4",
        "--cache",
        str(tmp_path / "cache"),
        "--json",
        str(tmp_path / "table.json"),
        "--doc",
        str(tmp_path / "page.md"),
        "--rule",
        "region",
    ]
    assert table.main(["--sets", "0"] + common) == 0
    (cached,) = (tmp_path / "cache").glob("result_0_*.json")
    # drive 0 from the cache, drive 1 not computed: the set says so
    assert table.main(["--sets", "0-1", "--cached-only"] + common) == 0
    got = json.loads((tmp_path / "table.json").read_text())
    assert got["sets"]["0-1"]["drives"] == [0] and got["sets"]["0-1"]["missing_drives"] == [1]
    assert got["sets"]["0-1"]["early_warning"] == json.loads(cached.read_text())[
        "early_warning"
    ] | {"drives": 1}
    page = (tmp_path / "page.md").read_text()
    assert page.startswith("# Early warning") and table.HEADING in page
    assert "| 0-1 (1 of 2) |" in page


def test_cached_results_are_keyed_by_what_acts() -> None:
    """The track settings do not act under rule region (a cached region result stays valid when
    they change); under rule track, and for any other setting, the key changes."""
    from training.early_warning_table import fingerprint

    def key(**config) -> str:
        base = {"rule": "region", "track_hits": 3, "warn_size": 0.35, **config}
        return fingerprint(
            {"config": base, "fed": "f", "backbone": "b", "postprocess": None, "frames": 60}
            | {"size": "256x512"}
        )

    assert key(track_hits=5) == key()
    assert key(warn_size=0.3) != key()
    assert key(rule="track") != key()
    assert key(rule="track", track_hits=5) != key(rule="track")
