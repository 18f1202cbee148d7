"""Which pixels the per-class logit statistics come from, and the check every reader runs.

The statistics standardise logits for SML and (optionally) for FED. Their definition decides
whether a FED on standardised logits works at all (docs/fed_ablation.md), so every file records
it and every reader refuses statistics of the retired definition (the logit of class c over
every pixel whose ground truth is c, backbone mistakes included) instead of silently using them.
Torch-free: the node and the replay read statistics too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Union

#: definition key -> what the statistics are; the first is ``fed_stats``' default.
DEFINITIONS: dict[str, str] = {
    "correct": "max logit over training pixels with argmax == ground truth == c (FED authors')",
    "predicted": "max logit over training pixels predicted as c (SML)",
}
DEFAULT_DEFINITION = next(iter(DEFINITIONS))


class StatisticsDefinitionError(ValueError):
    """Statistics of an unknown or retired definition: recompute them with ``fed_stats``."""


def definition_of(data: dict[str, Any]) -> str:
    """The definition key recorded in a statistics dict; raises for a missing or retired one."""
    key = data.get("definition")
    if key not in DEFINITIONS:
        recorded = "none recorded" if key is None else repr(key)
        raise StatisticsDefinitionError(
            f"logit statistics of an unsupported definition ({recorded}); recompute them with "
            f"fed_stats (definitions: {', '.join(DEFINITIONS)})"
        )
    return key


def read_statistics_file(path: Union[str, Path]) -> dict[str, Any]:
    """A ``fed_stats`` JSON file whose definition is checked (mean, std, fingerprint, ...)."""
    data = json.loads(Path(path).read_text())
    try:
        definition_of(data)
    except StatisticsDefinitionError as exc:
        raise StatisticsDefinitionError(f"{path}: {exc}") from None
    return data


def statistics_from_metadata(meta: dict[str, Any], what: str) -> Union[dict[str, Any], None]:
    """The statistics a FED checkpoint recorded (``None`` if none). Older checkpoints recorded
    the retired definition: they still load (a warning says so) so a deployed node keeps
    running, but their SML scores are not the ones ``fed_eval`` reports today."""
    stats = meta.get("logit_statistics")
    if not stats:
        return None
    try:
        definition_of(stats)
    except StatisticsDefinitionError as exc:
        warnings.warn(f"{what}: {exc}", stacklevel=2)
    return stats
