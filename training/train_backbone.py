"""`fed_train_backbone`: train the small TinySeg backbone of the embedded default model.

Plain supervised segmentation (cross-entropy, void ignored) on a Cityscapes-layout dataset,
normally synthroad. Produces a backbone checkpoint in our format that `fed_stats`,
`fed_train`, `fed_eval` and the engine load like any other backbone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.nn import functional as F
from tqdm import tqdm

from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg
from training.data import batch_stream, to_model_input
from training.objective import IGNORE_INDEX, upsample_to
from training.runlog import RunLogger
from training.schedule import parse_size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fed_train_backbone", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, type=Path, help="checkpoint stem, e.g. models/tinyseg_synthroad")
    p.add_argument("--iters", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", default="256x512")
    p.add_argument("--scale-range", default="0.5,2.0")
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--input-size", default=None, help="HxW the engine resizes camera frames to (default: crop)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--no-progress", action="store_true")
    return p


def train_backbone(args: argparse.Namespace) -> TinySeg:
    from training.datasets.cityscapes import CLASS_NAMES, CityscapesDataset
    from training.datasets.augment import make_train_augment

    torch.manual_seed(args.seed)
    dataset = CityscapesDataset(args.data_root, split=args.split)
    lo, hi = (float(v) for v in args.scale_range.split(","))
    augment = make_train_augment(crop=parse_size(args.crop), scale_range=(lo, hi), flip=True)
    model = TinySeg(TinySegConfig(num_classes=len(CLASS_NAMES)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: (1 - it / args.iters) ** 0.9)
    logger = RunLogger(args.out.parent / f"{args.out.name}_log")
    batches = batch_stream(dataset, augment, args.batch_size, args.seed, workers=args.workers)
    model.train()
    bar = tqdm(range(args.iters), desc="fed_train_backbone", disable=args.no_progress, dynamic_ncols=True)
    correct = total = 0
    for iteration in bar:
        images, labels = next(batches)
        labels = labels.long()
        logits, _ = model(to_model_input(images, torch.device("cpu")))
        logits = upsample_to(logits, tuple(labels.shape[-2:]))
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        valid = labels != IGNORE_INDEX
        correct += int((logits.argmax(1) == labels)[valid].sum())
        total += int(valid.sum())
        if (iteration + 1) % args.log_every == 0:
            accuracy = correct / max(total, 1)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{accuracy:.3f}")
            logger.log(iteration + 1, loss=loss.item(), pixel_accuracy=accuracy, lr=schedule.get_last_lr()[0])
            correct = total = 0
    logger.close()
    return model.eval()


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    model = train_backbone(args)
    input_size = parse_size(args.input_size or args.crop)
    save_tinyseg(args.out, model, input_size=input_size,
                 training={"data_root": str(args.data_root), "iters": args.iters, "seed": args.seed,
                           "minutes": round((time.monotonic() - start) / 60, 2)})
    print(f"fed_train_backbone: wrote {args.out}.safetensors / .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
