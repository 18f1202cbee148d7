"""`fed_stats`: per-class logit statistics of a frozen backbone over its training set.

For every class c: mean and standard deviation of the max logit over the training pixels the
definition selects (fed-method.md): by default the FED authors' (argmax == ground truth == c,
the backbone's mistakes left out), or SML's (pixels predicted as c, ``--definition predicted``).
Void pixels never count. The definition is recorded in the JSON; readers refuse files without
one. Logits are bilinearly resized to label resolution first, as the backbone's predictions
are. Sums run in float64 per class, so any dataset size streams in constant memory.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_stats", __name__)  # first: a signal during the imports stops it

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ros2_fed.checkpoint import load_fed, save_fed  # noqa: E402
from ros2_fed.fingerprint import (  # noqa: E402
    ALLOW_FLAG,
    FINGERPRINT_KEY,
    BackboneFingerprint,
    check_backbone,
    fingerprint_of,
)
from ros2_fed.jsonio import write_json  # noqa: E402
from ros2_fed.logit_statistics import DEFAULT_DEFINITION, DEFINITIONS  # noqa: E402
from training.cli_errors import one_line_warnings, report, user_errors  # noqa: E402
from training.data import sample_arrays, to_model_input  # noqa: E402
from training.objective import IGNORE_INDEX, upsample_to  # noqa: E402


class LogitStatistics:
    """Streaming per-class count / sum / sum of squares of the max logit of selected pixels."""

    def __init__(self, num_classes: int, definition: str = DEFAULT_DEFINITION) -> None:
        if definition not in DEFINITIONS:
            raise ValueError(f"definition must be one of {list(DEFINITIONS)}, got {definition!r}")
        self.num_classes = num_classes
        self.definition = definition
        self.count = torch.zeros(num_classes, dtype=torch.float64)
        self.total = torch.zeros(num_classes, dtype=torch.float64)
        self.total_sq = torch.zeros(num_classes, dtype=torch.float64)

    def _selected(self, predicted: torch.Tensor, labels: torch.Tensor) -> tuple:
        """(pixel mask, class of each selected pixel) under this definition."""
        labelled = (labels != IGNORE_INDEX) & (labels < self.num_classes)
        if self.definition == "correct":
            keep = labelled & (predicted == labels)
            return keep, labels[keep]
        return labelled, predicted[labelled]

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """logits (B, C, H, W) at label resolution, labels (B, H, W) trainIds with 255 void."""
        max_logit, predicted = logits.max(dim=1)
        keep, cls = self._selected(predicted, labels.long())
        value = max_logit[keep].double().cpu()
        cls = cls.cpu()
        self.count += torch.bincount(cls, minlength=self.num_classes).double()
        self.total += torch.bincount(cls, weights=value, minlength=self.num_classes)
        self.total_sq += torch.bincount(cls, weights=value * value, minlength=self.num_classes)

    def result(self, min_std: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std); classes never seen get mean 0 / std 1 (identity standardisation)."""
        seen = self.count > 0
        mean = torch.where(
            seen, self.total / self.count.clamp(min=1), torch.zeros_like(self.total)
        )
        var = torch.where(
            seen, self.total_sq / self.count.clamp(min=1) - mean**2, torch.ones_like(self.total)
        )
        std = var.clamp(min=0).sqrt().clamp(min=min_std)
        return mean.float(), std.float()

    def to_json(self) -> dict:
        mean, std = self.result()
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "count": [int(c) for c in self.count.tolist()],
            "definition": self.definition,
            "definition_text": DEFINITIONS[self.definition] + " (logits at label resolution)",
        }


@torch.no_grad()
def compute_logit_statistics(
    backbone: torch.nn.Module,
    samples: Iterable,
    num_classes: int,
    device: torch.device,
    total: Optional[int] = None,
    progress: bool = True,
    definition: str = DEFAULT_DEFINITION,
) -> LogitStatistics:
    """One pass over (image, label) samples, one image at a time."""
    stats = LogitStatistics(num_classes, definition)
    for sample in tqdm(
        samples, total=total, desc="fed_stats", disable=not progress, dynamic_ncols=True
    ):
        image, label = sample_arrays(sample)
        images = to_model_input(torch.from_numpy(np.ascontiguousarray(image))[None], device)
        labels = torch.from_numpy(np.ascontiguousarray(label))[None].to(device)
        logits, _ = backbone(images)
        stats.update(upsample_to(logits, tuple(labels.shape[-2:])), labels)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_stats", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backbone", required=True, help="backbone checkpoint")
    p.add_argument(
        "--data-root", required=True, type=Path, help="dataset root in the Cityscapes layout"
    )
    p.add_argument(
        "--split",
        default="train",
        help="dataset split to compute the statistics on (default train)",
    )
    p.add_argument("--out", required=True, type=Path, help="statistics JSON to write")
    p.add_argument(
        "--into",
        type=Path,
        action="append",
        default=[],
        help="also record the statistics in this FED checkpoint's metadata for SML (repeatable); "
        "FED's own standardisation is fixed at training time (fed_train --stats)",
    )
    p.add_argument(
        "--definition",
        choices=list(DEFINITIONS),
        default=DEFAULT_DEFINITION,
        help="which pixels: " + "; ".join(f"{k}: {v}" for k, v in DEFINITIONS.items()),
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N"
    )
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="with --into: record the statistics in a FED trained on another backbone anyway",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _record_into(
    target: Path,
    stats: LogitStatistics,
    source: Path,
    images: int,
    fingerprint: BackboneFingerprint,
    allow_mismatch: bool,
) -> None:
    """Store the statistics for SML in the FED checkpoint ``target`` (which must belong to this
    backbone)."""
    fed, meta = load_fed(target)
    check_backbone(meta, fingerprint, f"FED checkpoint {target}", allow_mismatch)
    mean, std = stats.result()
    meta = {
        k: v
        for k, v in meta.items()
        if k not in ("format", "format_version", "kind", "tensors_sha256", "config")
    }
    meta["logit_statistics"] = {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "definition": stats.definition,
        "source": str(source),
        "images": images,
        FINGERPRINT_KEY: fingerprint.to_json(),
    }
    save_fed(target, fed, meta)


def run(args: argparse.Namespace) -> int:
    """Compute, write and (``--into``) record the statistics; user errors raise (see ``main``)."""
    from ros2_fed.backbones import load_backbone
    from training.datasets.cityscapes import CityscapesDataset

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    backbone = load_backbone(args.backbone).to(device).eval()
    fingerprint = fingerprint_of(backbone)
    dataset = CityscapesDataset(args.data_root, split=args.split)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    if count == 0:
        raise FileNotFoundError(f"no images in {args.data_root} split {args.split}")
    first_logits, _ = backbone(
        to_model_input(torch.from_numpy(sample_arrays(dataset[0])[0])[None], device)
    )
    stats = compute_logit_statistics(
        backbone,
        (dataset[i] for i in range(count)),
        first_logits.shape[1],
        device,
        total=count,
        progress=not args.no_progress,
        definition=args.definition,
    )
    payload = {
        **stats.to_json(),
        "backbone": str(args.backbone),
        FINGERPRINT_KEY: fingerprint.to_json(),
        "data_root": str(args.data_root),
        "split": args.split,
        "images": count,
    }
    stopping.stopping()  # the pass is done: the files are written whole, signals ignored
    write_json(args.out, payload)
    for target in args.into:
        _record_into(target, stats, args.out, count, fingerprint, args.allow_backbone_mismatch)
    print(
        f"fed_stats: {count} images, statistics for "
        f"{int((stats.count > 0).sum())}/{stats.num_classes} classes -> {args.out}"
    )
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    with one_line_warnings("fed_stats"):
        try:
            stopping.started()  # a stop signal is a KeyboardInterrupt from here on
            return run(args)
        except user_errors() as exc:
            return report("fed_stats", exc)
        except KeyboardInterrupt:
            into = "".join(f", {t}.json" for t in args.into)
            print(
                f"fed_stats: stopped before the pass ended; nothing was written ({args.out}"
                f"{into} as they were): the same command starts the pass again",
                file=sys.stderr,
                flush=True,
            )
            return stopping.interrupted_exit_code()
        finally:
            stopping.stopping()


if __name__ == "__main__":
    sys.exit(main())
