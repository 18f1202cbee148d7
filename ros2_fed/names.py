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
#: Row order of the evaluation reports (FED variants, baselines, MC dropout).
METHOD_ORDER: tuple[str, ...] = ("FED-U", "FED-C") + BASELINE_METHODS + ("MCD",)
