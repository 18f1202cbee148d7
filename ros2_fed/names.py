"""Name lists shared by the graph, the CLIs, the node parameters and the reports.

One definition of each (torch-free, so the pipeline and the engine cache import it without
torch). Runtime names live with the engines: ``ros2_fed.engine.base.RUNTIMES`` and
``GPU_RUNTIMES``.
"""

from __future__ import annotations

#: Confidence sources without FED (``FusedDetector(score=...)``, ``fed_export --score``).
BASELINE_SCORES: tuple[str, ...] = ("msp", "maxlogit", "energy", "entropy", "sml", "none")
#: Every confidence source a detector graph can compute.
SCORES: tuple[str, ...] = ("fed",) + BASELINE_SCORES
#: Short method names of the evaluation tables, by score name.
METHOD_BY_SCORE: dict[str, str] = {
    "msp": "MSP",
    "maxlogit": "MLG",
    "energy": "ENE",
    "entropy": "ENT",
    "sml": "SML",
    "none": "none",
}
#: The baseline methods of the evaluation tables (scores that rank pixels).
BASELINE_METHODS: tuple[str, ...] = tuple(
    METHOD_BY_SCORE[s] for s in BASELINE_SCORES if s != "none"
)
#: Cityscapes trainIds 0..18: the label set of every backbone and dataset here.
# fmt: off
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
#: Their colours (RGB), as Cityscapes publishes them.
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# fmt: on
#: Row order of the evaluation reports (FED variants, baselines, MC dropout).
METHOD_ORDER: tuple[str, ...] = ("FED-U", "FED-C") + BASELINE_METHODS + ("MCD",)
