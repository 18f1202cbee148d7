"""A :class:`~ros2_fed.eval.replay.scoring.Scorer` as ``.npz`` bytes and back.

Why not pickle: the state crosses the network (Ray) and lands on disk next to each bag's report,
where it is read again on resume; a pickle would run code from whoever wrote it. An ``.npz`` read
with ``allow_pickle=False`` is numbers only: one JSON entry (``meta``) says what the arrays are.

What a scorer holds and how it is stored:

- exact OOD accumulators: every valid (score, label) pair, one array each (the frames' arrays
  concatenated: the curve is built from their concatenation anyway);
- histogram OOD accumulators: their bin counts and binning (bins, range, scale);
- IDM per-image averagers: one row per image of its metrics (auroc, ap, fpr@..., f1...);
- confusion matrices: the matrix.

Loading gives a scorer whose ``results()`` and ``merge`` equal the original's exactly.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from ros2_fed.eval import metrics as M
from ros2_fed.eval.replay.scoring import Scorer

FORMAT = "ros2_fed.scorer_state/1"


def scorer_to_bytes(scorer: Scorer) -> bytes:
    """The scorer as a compressed ``.npz`` (numbers and one JSON ``meta`` entry only)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "num_classes": scorer.num_classes,
        "frames": scorer.frames,
        "exact": scorer.exact,
        "bins": scorer.bins,
        "probability": sorted(scorer.probability),
        "names": list(scorer.names),
        "has_ood": scorer.has_ood,
        "has_label": scorer.has_label,
        "frames_by_key": dict(scorer.frames_by_key),
        "ood": [
            _ood_entry(i, name, acc, arrays) for i, (name, acc) in enumerate(scorer.ood.items())
        ],
        "idm": [
            _idm_entry(i, name, avg, arrays) for i, (name, avg) in enumerate(scorer.idm.items())
        ],
        "conf": [_conf_entry(i, key, m, arrays) for i, (key, m) in enumerate(scorer.conf.items())],
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _ood_entry(i: int, name: str, acc: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "ignore_index": acc.ignore_index}
    if isinstance(acc, M.ExactAccumulator):
        scores, labels = acc._scores, acc._labels
        arrays[f"ood{i}_scores"] = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        arrays[f"ood{i}_labels"] = np.concatenate(labels) if labels else np.zeros(0, np.uint8)
        entry["kind"] = "exact"
        return entry
    if not isinstance(acc, M.HistogramAccumulator):
        raise TypeError(f"unknown OOD accumulator {type(acc).__name__}")
    arrays[f"ood{i}_counts"] = acc.counts
    entry.update(kind="histogram", bins=acc.bins, range=list(acc.range), scale=acc.scale)
    return entry


def _idm_entry(
    i: int, name: str, avg: M.PerImageAverager, arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    keys = list(avg.per_image[0]) if avg.per_image else []
    rows = [[float(m[k]) for k in keys] for m in avg.per_image]
    arrays[f"idm{i}"] = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(keys))
    return {
        "name": name,
        "keys": keys,
        "tprs": list(avg.tprs),
        "ignore_index": avg.ignore_index,
        "n_skipped": avg.n_skipped,
    }


def _conf_entry(
    i: int, key: str, matrix: M.ConfusionMatrix, arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    arrays[f"conf{i}"] = matrix.matrix
    return {
        "key": key,
        "num_classes": matrix.num_classes,
        "ignore_index": matrix.ignore_index,
        "open_set": matrix.open_set,
    }


def scorer_from_bytes(data: bytes) -> Scorer:
    """The scorer :func:`scorer_to_bytes` wrote; ValueError for anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not a scorer state ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"not a scorer state of format {FORMAT} (got {meta.get('format')!r})")
    scorer = Scorer(
        meta["num_classes"],
        meta["frames"],
        0,
        exact=meta["exact"],
        bins=meta["bins"],
        probability=meta["probability"],
    )
    scorer.names = list(meta["names"])
    scorer.has_ood, scorer.has_label = bool(meta["has_ood"]), bool(meta["has_label"])
    scorer.frames_by_key = {k: int(v) for k, v in meta["frames_by_key"].items()}
    for i, entry in enumerate(meta["ood"]):
        scorer.ood[entry["name"]] = _load_ood(i, entry, arrays)
    for i, entry in enumerate(meta["idm"]):
        scorer.idm[entry["name"]] = _load_idm(i, entry, arrays)
    for i, entry in enumerate(meta["conf"]):
        matrix = M.ConfusionMatrix(entry["num_classes"], entry["ignore_index"], entry["open_set"])
        matrix.matrix = arrays[f"conf{i}"].astype(np.int64)
        scorer.conf[entry["key"]] = matrix
    return scorer


def _load_ood(i: int, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    if entry["kind"] == "exact":
        acc = M.ExactAccumulator(ignore_index=entry["ignore_index"])
        scores, labels = arrays[f"ood{i}_scores"], arrays[f"ood{i}_labels"]
        if scores.size:
            acc._scores.append(scores)
            acc._labels.append(labels)
        return acc
    hist = M.HistogramAccumulator(
        bins=entry["bins"],
        range=tuple(entry["range"]),
        scale=entry["scale"],
        ignore_index=entry["ignore_index"],
    )
    hist.counts = arrays[f"ood{i}_counts"].astype(np.int64)
    return hist


def _load_idm(i: int, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    avg = M.PerImageAverager(tprs=entry["tprs"], ignore_index=entry["ignore_index"])
    keys, rows = entry["keys"], arrays[f"idm{i}"]
    avg.per_image = [{k: float(v) for k, v in zip(keys, row)} for row in rows]
    avg.n_skipped = int(entry["n_skipped"])
    return avg
