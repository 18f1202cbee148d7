"""Every method's score on one (0, 1) scale, without torch.

Why its own module: the replay's scorer needs only this to accumulate an ONNX engine's scores,
and the module that computes the reference methods' scores (``method_scores``) imports torch;
``fed_bag_eval`` with an ONNX engine and no reference rows must not pay for torch.
"""

from __future__ import annotations

import numpy as np

#: Scores already in [0, 1] enter the histograms as they are; others are squashed (ranks kept).
PROBABILITY_METHODS = frozenset({"FED-U", "FED-C", "MSP"})


def unit_scores(score: np.ndarray, probability: bool) -> np.ndarray:
    """Monotone map into (0, 1) so one histogram layout fits every method (ranks unchanged)."""
    if probability:
        return score.astype(np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(score.astype(np.float64), -700, 700)))
