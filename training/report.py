"""fed_eval outputs: a Table-8-style Markdown table, the full JSON, and paper-style figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from ros2_fed.fileio import atomic_write_bytes
from ros2_fed.jsonio import write_json
from ros2_fed.names import METHOD_ORDER


def _pct(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}"


def markdown_table(results: dict[str, Any], title: str = "") -> str:
    """Rows = methods; OOD AuROC/AP/FPR95, IDM AuROC/AP/FPR95, mIoU, open-mIoU, and the
    SegmentMeIfYouCan component metrics sIoU / PPV / mean F1 when computed (all in %)."""
    methods = sorted(
        results["methods"], key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99
    )
    components = any("components" in results["methods"][m] for m in methods)
    head = (
        "| method | OOD AuROC | OOD AP | OOD FPR95 | IDM AuROC | IDM AP | IDM FPR95 | mIoU | "
        "open-mIoU |"
        + (" sIoU gt | PPV | mean F1 |" if components else "")
        + "\n|---|---|---|---|---|---|---|---|---|"
        + ("---|---|---|" if components else "")
    )
    rows = []
    for name in methods:
        row = results["methods"][name]
        ood, idm = row.get("ood", {}), row.get("idm", {})
        comp = row.get("components") or {}
        extra = [_pct(comp.get(k)) for k in ("siou_gt", "ppv", "f1_mean")] if components else []
        rows.append(
            "| "
            + " | ".join(
                [
                    name,
                    _pct(ood.get("auroc")),
                    _pct(ood.get("ap")),
                    _pct(ood.get("fpr_at_tpr")),
                    _pct(idm.get("auroc")),
                    _pct(idm.get("ap")),
                    _pct(idm.get("fpr_at_tpr")),
                    _pct(results.get("miou")),
                    _pct(results.get("open_miou", {}).get(name)),
                    *extra,
                ]
            )
            + " |"
        )
    notes = [
        f"{results['images']} images; OOD pooled over pixels "
        f"({'exact' if results['exact'] else 'histogram, see error bounds in JSON'}), "
        "IDM averaged per image; mIoU is the backbone's (same for every row); open-mIoU threshold "
        "= mean per-image F1-optimal threshold."
    ]
    if components:
        track = next(r["components"] for r in results["methods"].values() if "components" in r)
        notes.append(
            f"sIoU gt / PPV / mean F1: SegmentMeIfYouCan component metrics ({track['track']}: "
            f"predicted components >= {track['min_pred_size']} px, ground-truth components >= "
            f"{track['min_gt_size']} px, 8-connected), each method thresholded at its best pixel "
            "F1 on this split; mean F1 over sIoU thresholds 0.25-0.75."
        )
    notes += [str(note) for note in results.get("notes") or []]  # e.g. why the SML row is missing
    prefix = f"### {title}\n\n" if title else ""
    return prefix + head + "\n" + "\n".join(rows) + "\n\n" + "\n\n".join(notes) + "\n"


def write_results(out_dir: Path, results: dict[str, Any], title: str = "") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    write_json(json_path, results)  # strict: an undefined metric (NaN) is null
    atomic_write_bytes(md_path, markdown_table(results, title).encode())
    return json_path, md_path


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """Tile with a black caption bar on top (OpenCV text, readable at small sizes)."""
    bar = np.zeros((22, tile.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, tile], axis=0)


def figure_row(
    image: np.ndarray,
    pred: np.ndarray,
    label: Optional[np.ndarray],
    ood: Optional[np.ndarray],
    maps: dict[str, np.ndarray],
    ranges: dict[str, list[float]],
    palette: np.ndarray,
    tile_width: int = 320,
) -> np.ndarray:
    """One RGB strip: input | prediction | ground truth | confidence per method
    (dataset-normalised)."""
    from ros2_fed.viz import colorize_labels, confidence_to_rgb, ground_truth_view

    tiles = [
        ("input", image),
        ("prediction", colorize_labels(pred, palette)),
        ("ground truth", ground_truth_view(pred, label, ood)),
    ]
    for name in [m for m in METHOD_ORDER if m in maps] + [
        m for m in maps if m not in METHOD_ORDER
    ]:
        lo, hi = ranges[name]
        # red = uncertain, blue = certain
        confidence = 1.0 - np.clip((maps[name] - lo) / (hi - lo), 0.0, 1.0)
        tiles.append((name, confidence_to_rgb(confidence.astype(np.float32))))
    scale = tile_width / image.shape[1]
    size = (tile_width, max(1, int(round(image.shape[0] * scale))))
    resized = [
        _caption(
            cv2.resize(
                t, size, interpolation=cv2.INTER_NEAREST if i in (1, 2) else cv2.INTER_AREA
            ),
            n,
        )
        for i, (n, t) in enumerate(tiles)
    ]
    return np.concatenate(resized, axis=1)


def write_figure(path: Path, rows: list[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate(rows, axis=0)
    ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())  # a temporary name, renamed into place
    return path
