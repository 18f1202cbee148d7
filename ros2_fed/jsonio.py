"""Strict JSON for every file we write: NaN and infinities become ``null``.

Why: Python's ``json`` writes ``NaN`` / ``Infinity`` by default, which is not JSON; most readers
(jq, JavaScript, Go, pandas' strict modes) reject the whole file. An undefined metric (an AUROC
without positives) is "no value", so it is written as ``null``. Numpy scalars and arrays (and
anything with ``tolist``, e.g. tensors) become plain lists and numbers, paths become strings.
Pure Python + numpy: no torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ros2_fed.fileio import PathLike, atomic_write_bytes


def strict(value: Any) -> Any:
    """``value`` with NaN/inf -> None, tuples -> lists, numpy/tensor values -> Python, keys ->
    str."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [strict(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars/arrays, torch tensors
        return strict(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def dumps(data: Any, indent: int = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``data`` (with a final newline); ``ValueError`` for anything not
    JSON-able."""
    return json.dumps(strict(data), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: PathLike, data: Any, indent: int = 2, sort_keys: bool = False) -> None:
    """Write strict JSON via a temporary sibling + rename (a reader never sees half a file)."""
    atomic_write_bytes(path, dumps(data, indent=indent, sort_keys=sort_keys).encode())
