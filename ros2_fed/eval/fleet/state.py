"""A :class:`~ros2_fed.eval.replay.scoring.Scorer` as ``.npz`` bytes and back.

Why not pickle: the state crosses the network (Ray) and lands on disk next to each bag's report,
where it is read again on resume; a pickle would run code from whoever wrote it. An ``.npz`` read
with ``allow_pickle=False`` is numbers only: one JSON entry (``meta``) says what the arrays are.

What a scorer holds and how it is stored:

- exact OOD accumulators: every valid (score, label) pair, one array each (the frames' arrays
  concatenated, with each frame's length, so the component metrics see the frames again);
- each frame's OOD mask (the component metrics' truth), once per frame, and per method the
  frames it scored;
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
        "component_track": scorer.component_track,
        "ood": [
            _ood_entry(i, name, acc, arrays) for i, (name, acc) in enumerate(scorer.ood.items())
        ],
        "idm": [
            _idm_entry(i, name, avg, arrays) for i, (name, avg) in enumerate(scorer.idm.items())
        ],
        "conf": [_conf_entry(i, key, m, arrays) for i, (key, m) in enumerate(scorer.conf.items())],
    }
    _truth_arrays(scorer, arrays)
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
        arrays[f"ood{i}_lengths"] = np.asarray([len(x) for x in scores], np.int64)
        entry["kind"] = "exact"
        return entry
    if not isinstance(acc, M.HistogramAccumulator):
        raise TypeError(f"unknown OOD accumulator {type(acc).__name__}")
    arrays[f"ood{i}_counts"] = acc.counts
    entry.update(kind="histogram", bins=acc.bins, range=list(acc.range), scale=acc.scale)
    return entry


def _truth_arrays(scorer: Scorer, arrays: dict[str, np.ndarray]) -> None:
    """The frames' OOD masks once each (methods share a frame's mask), and per method (in the
    order of ``scorer.ood``) the indices of the masks it scored."""
    unique: dict[int, int] = {}
    masks: list[np.ndarray] = []
    for i, name in enumerate(scorer.ood):
        index = []
        for mask in scorer.ood_truth.get(name, []):
            if mask is None:  # a histogram scorer keeps no masks
                index.append(-1)
                continue
            if id(mask) not in unique:
                unique[id(mask)] = len(masks)
                masks.append(mask)
            index.append(unique[id(mask)])
        arrays[f"ood{i}_truth_index"] = np.asarray(index, np.int64)
    arrays["truth_shapes"] = np.asarray([m.shape for m in masks], np.int64).reshape(-1, 2)
    flat = [np.asarray(m, np.uint8).reshape(-1) for m in masks]
    arrays["truth_data"] = np.concatenate(flat) if flat else np.zeros(0, np.uint8)


def _load_truths(scorer: Scorer, arrays: dict[str, np.ndarray]) -> None:
    """The masks :func:`_truth_arrays` stored, back into ``scorer.ood_truth`` (none in a state
    written before the component metrics: those have no per-frame scores either)."""
    if "truth_shapes" not in arrays:
        return
    data, masks, start = arrays["truth_data"], [], 0
    for h, w in arrays["truth_shapes"]:
        masks.append(data[start : start + h * w].reshape(h, w))
        start += h * w
    for i, name in enumerate(scorer.ood):
        index = arrays.get(f"ood{i}_truth_index")
        if index is not None and index.size:
            scorer.ood_truth[name] = [masks[k] if k >= 0 else None for k in index]


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
        component_track=meta.get("component_track", "anomaly"),
    )
    scorer.names = list(meta["names"])
    scorer.has_ood, scorer.has_label = bool(meta["has_ood"]), bool(meta["has_label"])
    scorer.frames_by_key = {k: int(v) for k, v in meta["frames_by_key"].items()}
    for i, entry in enumerate(meta["ood"]):
        scorer.ood[entry["name"]] = _load_ood(i, entry, arrays)
    for i, entry in enumerate(meta["idm"]):
        scorer.idm[entry["name"]] = _load_idm(i, entry, arrays)
    _load_truths(scorer, arrays)
    for i, entry in enumerate(meta["conf"]):
        matrix = M.ConfusionMatrix(entry["num_classes"], entry["ignore_index"], entry["open_set"])
        matrix.matrix = arrays[f"conf{i}"].astype(np.int64)
        scorer.conf[entry["key"]] = matrix
    return scorer


def _load_ood(i: int, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    if entry["kind"] == "exact":
        acc = M.ExactAccumulator(ignore_index=entry["ignore_index"])
        scores, labels = arrays[f"ood{i}_scores"], arrays[f"ood{i}_labels"]
        lengths = arrays.get(f"ood{i}_lengths")
        if lengths is None:  # a state from before per-frame lengths: one block
            lengths = np.asarray([scores.size] if scores.size else [], np.int64)
        cuts = np.cumsum(lengths)[:-1]
        acc._scores.extend(np.split(scores, cuts) if lengths.size else [])
        acc._labels.extend(np.split(labels, cuts) if lengths.size else [])
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
