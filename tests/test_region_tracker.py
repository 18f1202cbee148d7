"""The alert rule ``track`` (ros2_fed/region_tracker.py) on hand-made sequences.

Every frame is a 64 x 128 confidence map, 1.0 everywhere but on square blobs; the ROI is the
whole image and sizes are sqrt(area) / 64 (size_reference height), so a blob of side s has size
s / 64. WARN at 0.15 (side 9.6), ERROR at 0.5 (side 32), one frame to rise and one to clear, so
the published level is each frame's candidate: what is pinned is when the evidence passes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import pytest

from ros2_fed.alerts import AlertConfig, AlertMonitor, Level
from ros2_fed.region_tracker import RegionTracker, TrackConfig, candidates

H, W = 64, 128

BASE = AlertConfig(
    confidence_threshold=0.5,
    warn_size=0.15,
    error_size=0.5,
    hysteresis=0.0,
    min_width=0.0,
    raise_frames=1,
    clear_frames=1,
    roi="full",
    size_reference="height",
    rule="track",
    track_hits=3,
    track_window=4,
    track_min_contrast=0.0,
    track_growth=1.2,
    track_growth_frames=8,
    track_gain=1.5,
    track_match_distance=0.06,
)

Blob = tuple[int, int, int]  # (x, y bottom row, side): the square's bottom-left corner


def frame(blobs: Sequence[Blob], value: float = 0.0, background: float = 1.0) -> np.ndarray:
    conf = np.full((H, W), background, np.float32)
    for x, bottom, side in blobs:
        conf[bottom - side + 1 : bottom + 1, x : x + side] = value
    return conf


def run(frames: Sequence[Sequence[Blob]], config: AlertConfig = BASE) -> list:
    monitor = AlertMonitor(config)
    return [monitor.update(frame(blobs)) for blobs in frames]


def first_warn(states: list) -> Optional[int]:
    return next((i for i, s in enumerate(states) if s.level >= Level.WARN), None)


def test_a_flickering_blob_does_not_alert() -> None:
    """Side 12 (size 0.19, over WARN) in every other frame: 2 of any 4 frames, never 3."""
    states = run([[(40, 40, 12)] if i % 2 == 0 else [] for i in range(30)])
    assert first_warn(states) is None
    assert max(s.evidence for s in states) == 0.0
    # the same blob judged frame by frame (the region rule) alerts on its first frame
    region = run(
        [[(40, 40, 12)] if i % 2 == 0 else [] for i in range(30)], replace(BASE, rule="region")
    )
    assert first_warn(region) == 0


def test_a_blob_jumping_about_does_not_alert() -> None:
    """Present in every frame, but never near where it was: each sighting starts a new track."""
    spots = [(4, 20), (60, 60), (110, 20), (30, 60), (85, 20), (4, 60), (60, 20), (110, 60)]
    states = run([[(x, y, 12)] for x, y in spots * 3])
    assert first_warn(states) is None
    assert len({s.track for s in states}) == 1 and states[0].track == -1


def growing(frames: int, side0: int = 6, x: int = 50, bottom0: int = 30, down: int = 1):
    """A square growing by one pixel a frame, its bottom row moving ``down`` rows a frame."""
    return [[(x, bottom0 + down * i, side0 + i)] for i in range(frames)]


def test_a_growing_approaching_blob_alerts_on_its_third_frame() -> None:
    """Sides 6, 7, 8: at frame 2 the track has 3 of 4 frames and grew 64/36 >= 1.2 with the
    bottom moving down, so its evidence is 8/64 x 1.5 = 0.1875 > 0.15, though its size 0.125
    is below WARN."""
    states = run(growing(12))
    assert first_warn(states) == 2
    assert states[2].region_size == pytest.approx(8 / 64)
    assert states[2].evidence == pytest.approx(1.5 * 8 / 64)
    assert states[2].track_hits == 3 and states[1].evidence == 0.0
    # without the approach gain it waits until its own size passes WARN: side 10 at frame 4
    assert first_warn(run(growing(12), replace(BASE, track_gain=1.0))) == 4


def test_growth_with_the_bottom_rising_is_not_an_approach() -> None:
    """The same growth, but the square grows upwards and its bottom rises: no gain."""
    assert first_warn(run(growing(12, bottom0=40, down=-1))) == 4


def test_growth_with_the_bottom_row_still_is_an_approach() -> None:
    """Far away an approaching object's bottom moves by less than a row a frame: a square
    growing upwards from a fixed bottom row approaches."""
    assert first_warn(run(growing(12, bottom0=40, down=0))) == 2


def test_growth_counts_only_within_growth_frames() -> None:
    """Side 10 for 3 frames, then 12: with growth_frames 2 the track approaches at frame 3
    (10 -> 12) but no longer at frame 4 (12 -> 12), though its 4-frame history still grew."""
    seq = [[(50, 40, 10)]] * 3 + [[(50, 40, 12)]] * 3
    states = run(seq, replace(BASE, track_growth_frames=2))
    assert states[3].evidence == pytest.approx(1.5 * 12 / 64)
    assert states[4].evidence == pytest.approx(12 / 64)


def test_every_component_is_a_candidate() -> None:
    """A large blob flickering (side 14, every other frame) beside a steady one of side 11
    (0.17): the steady one alerts at frame 2 although it is never the largest when both are
    there."""
    seq = [[(10, 40, 14), (80, 40, 11)] if i % 2 == 0 else [(80, 40, 11)] for i in range(8)]
    states = run(seq)
    assert first_warn(states) == 2
    assert states[2].region_bbox == (80, 30, 90, 40)


def test_growth_below_the_growth_factor_is_not_an_approach() -> None:
    """A blob of side 10 -> 10 -> 11 (area x 1.21) over 3 frames; with growth 1.25 it is not
    approaching and alerts on its own size only (side 10 = 0.156 > 0.15) at frame 2, with
    evidence equal to its size; with growth 1.21 it is, and the evidence carries the gain."""
    seq = [[(50, 40, 10)], [(50, 40, 10)], [(50, 41, 11)]]
    strict = run(seq, replace(BASE, track_growth=1.25))
    assert strict[2].evidence == pytest.approx(11 / 64)
    loose = run(seq, replace(BASE, track_growth=1.21))
    assert loose[2].evidence == pytest.approx(1.5 * 11 / 64)


def test_a_static_small_blob_never_alerts_and_a_static_large_one_waits_for_persistence() -> None:
    """Manhole-like: side 8 (0.125) for 40 frames stays below WARN (the growing blob of side 8
    above alerts); side 12 (0.19) alerts once seen 3 frames, at frame 2, with no gain."""
    small = run([[(50, 40, 8)]] * 40)
    assert first_warn(small) is None
    assert small[-1].evidence == pytest.approx(8 / 64)
    large = run([[(50, 40, 12)]] * 10)
    assert first_warn(large) == 2
    assert large[2].evidence == pytest.approx(12 / 64)


@pytest.mark.parametrize(
    "hits, window, seen, first",
    [
        (3, 5, (0, 2, 4), 4),  # 3 of the last 5 at frame 4
        (3, 4, (0, 2, 4), None),  # never more than 2 of any 4
        (3, 4, (0, 2, 3), 3),  # frames 0..3: 3 of 4
        (2, 4, (0, 3), 3),  # 2 of 4 at frame 3
        (2, 3, (0, 3), None),  # 1 of any 3
        (4, 4, (0, 1, 2), None),  # 3 of 4 is one short
        (4, 4, (0, 1, 2, 3), 3),
    ],
)
def test_persistence_boundary(hits: int, window: int, seen: tuple, first: Optional[int]) -> None:
    """k of the last n frames counts, k - 1 does not (a side-12 blob: evidence = its size)."""
    config = replace(BASE, track_hits=hits, track_window=window)
    states = run([[(50, 40, 12)] if i in seen else [] for i in range(8)], config)
    assert first_warn(states) == first


def test_a_blob_leaving_resets() -> None:
    """Seen in frames 0-9: its evidence is kept while 3 of the last 4 frames saw it (frame 10),
    gone at frame 11; back at frame 20 it is a new track that needs 3 frames again."""
    seq = [[(50, 40, 12)] if i < 10 or i >= 20 else [] for i in range(26)]
    states = run(seq)
    assert states[9].level == Level.WARN and states[10].level == Level.WARN
    assert states[10].evidence == pytest.approx(12 / 64)
    assert states[11].evidence == 0.0 and states[11].level == Level.OK
    assert [s.level for s in states[20:23]] == [Level.OK, Level.OK, Level.WARN]
    assert states[22].track != states[9].track >= 0


def test_a_moving_blob_is_one_track() -> None:
    """A side-12 square sliding 5 pixels a frame (overlapping its last box, though its centroid
    moved farther than 0.06 x 64 = 3.84 px) keeps one track id; one jumping 20 pixels a frame
    (no overlap) starts a new track every frame."""
    slide = run([[(10 + 5 * i, 40, 12)] for i in range(12)])
    assert len({s.track for s in slide[2:]}) == 1 and first_warn(slide) == 2
    jump = run([[(5 + 20 * (i % 5), 40, 12)] for i in range(12)])
    assert first_warn(jump) is None


def test_association_by_centroid_distance() -> None:
    """Two-pixel squares 3 px apart (no overlap) are matched within match_distance 0.06 x 64 =
    3.84 px, not within 0.04 x 64 = 2.56 px."""
    seq = [[(20 + 3 * i, 40, 2)] for i in range(6)]
    tracker_cfg = replace(BASE, warn_size=0.01)
    near = run(seq, tracker_cfg)
    assert first_warn(near) == 2
    far = run(seq, replace(tracker_cfg, track_match_distance=0.04))
    assert first_warn(far) is None


def contrast_frame(inside: float, ring: float) -> np.ndarray:
    """A side-10 square of confidence ``inside`` within a field of confidence ``ring``."""
    conf = np.full((H, W), ring, np.float32)
    conf[31:41, 50:60] = inside
    return conf


def test_contrast_is_inside_minus_ring_uncertainty() -> None:
    conf = contrast_frame(0.25, 0.75)  # uncertainty 0.75 inside, 0.25 around
    mask = np.where(conf < 0.5, np.uint8(255), np.uint8(0))
    (cand,) = candidates(mask, conf, H, horizon=None)
    assert cand.contrast == pytest.approx(0.5)
    assert cand.bbox == (50, 31, 59, 40) and cand.area == 100
    assert cand.size == pytest.approx(10 / 64)


def test_the_ring_is_half_the_box_wide() -> None:
    """Side 10 (uncertainty 0.75) in a one-pixel border of uncertainty 0.25 in a certain field:
    the ring (5 px wide: the 20 x 20 box less the square, 300 px) holds the 44 border pixels, so
    its mean is 11 / 300 and the contrast 0.75 - 11 / 300."""
    conf = np.ones((H, W), np.float32)
    conf[30:42, 49:61] = 0.75
    conf[31:41, 50:60] = 0.25
    mask = np.where(conf < 0.5, np.uint8(255), np.uint8(0))
    (cand,) = candidates(mask, conf, H, horizon=None)
    assert cand.contrast == pytest.approx(0.75 - 11 / 300)


@pytest.mark.parametrize("min_contrast, alerts", [(0.5, True), (0.51, False)])
def test_contrast_gate(min_contrast: float, alerts: bool) -> None:
    """Contrast exactly 0.5 passes a limit of 0.5 (at least), not one of 0.51."""
    monitor = AlertMonitor(replace(BASE, track_min_contrast=min_contrast))
    states = [monitor.update(contrast_frame(0.25, 0.75)) for _ in range(5)]
    assert (first_warn(states) is not None) == alerts


def test_nan_confidence_is_fully_uncertain() -> None:
    """A side-12 blob of NaN in a certain field: uncertain, with contrast 1 (uncertainty 1 in a
    ring of 0), so it passes even the strictest contrast limit."""
    monitor = AlertMonitor(replace(BASE, track_min_contrast=1.0))
    states = [monitor.update(frame([(50, 40, 12)], value=np.nan)) for _ in range(4)]
    assert first_warn(states) == 2


def test_error_needs_a_large_region_itself() -> None:
    """A side-34 square (0.53 > 0.5) goes ERROR once it persists; a growing one whose evidence
    passes 0.5 only through the gain (side 28 x 1.5 / 64 = 0.66, size 0.44) stays at WARN."""
    assert [s.level for s in run([[(40, 50, 34)]] * 4)] == [0, 0, 2, 2]
    grow = run(growing(4, side0=25, bottom0=40))
    assert grow[3].evidence == pytest.approx(0.5) and grow[3].level == Level.WARN


def test_no_uncertain_pixels_still_ages_the_tracks() -> None:
    """Frames with nothing uncertain at all still count as frames in the persistence window."""
    states = run([[(50, 40, 12)], [], [], [(50, 40, 12)], [(50, 40, 12)]])
    assert first_warn(states) is None


def test_tracker_config_validation() -> None:
    with pytest.raises(ValueError, match="track_hits"):
        replace(BASE, track_hits=5, track_window=4)
    with pytest.raises(ValueError, match="track_gain"):
        replace(BASE, track_gain=0.5)
    with pytest.raises(ValueError, match="rule"):
        replace(BASE, rule="largest")
    with pytest.raises(ValueError, match="track_window"):
        TrackConfig(window=0)


def test_tracker_alone_keeps_at_most_its_history() -> None:
    tracker = RegionTracker(TrackConfig(hits=1, window=2, growth_frames=3))
    mask = np.zeros((H, W), np.uint8)
    mask[30:40, 30:40] = 255
    for _ in range(10):
        result = tracker.update(candidates(mask, 1.0 - mask / np.float32(255), H, horizon=None), H)
    assert len(tracker.tracks) == 1 and len(tracker.tracks[0].sightings) == 3
    assert result.evidence == pytest.approx(10 / 64)


def test_the_node_parameters_set_the_tracker() -> None:
    """alerts.rule / alerts.track_* reach the monitor's tracker; a window shorter than the hits
    is refused as one ValueError naming both."""
    from ros2_fed.pipeline.params import alert_config

    config = alert_config(
        {"alerts.rule": "track", "alerts.track_hits": 2, "alerts.track_gain": 3.0}
    )
    assert config.rule == "track"
    assert config.track_config == TrackConfig(hits=2, gain=3.0)
    with pytest.raises(ValueError, match="track_hits.*track_window"):
        alert_config({"alerts.track_hits": 6, "alerts.track_window": 5})


def test_the_selection_replays_what_the_monitor_judges() -> None:
    """training.track_selection replays recorded candidates with other tracker settings; the
    values it feeds the state machine must be the monitor's own evidence, frame by frame."""
    from training.drive_cache import CachedDrive
    from training.track_selection import record_candidates, track_values

    seq = growing(10) + [[]] * 3 + [[(20, 50, 12)] if i % 2 else [] for i in range(8)]
    conf = np.stack([frame(blobs) for blobs in seq]).astype(np.float16)
    n = len(seq)
    zeros = np.zeros(n, np.int64)
    drive = CachedDrive(0, conf, np.zeros(conf.shape, np.uint8), zeros, zeros, zeros)
    recorded = record_candidates(BASE, drive)
    for config in (BASE, replace(BASE, track_gain=2.5, track_hits=2, track_window=3)):
        monitor = AlertMonitor(config)
        live = [monitor.update(c.astype(np.float32)).evidence for c in conf]
        replayed = track_values(config.track_config, recorded, H, config.error_size)
        assert replayed == pytest.approx(live) and max(live) > 0


def test_a_wholly_uncertain_frame_alerts() -> None:
    """A region that fills the image has no ring around it: its contrast is its own uncertainty
    (a broken, all-NaN confidence map must not look safe)."""
    monitor = AlertMonitor(replace(BASE, track_min_contrast=0.5))
    states = [monitor.update(np.full((H, W), np.nan, np.float32)) for _ in range(4)]
    assert first_warn(states) == 2 and states[2].level == Level.ERROR
