"""`fed_train_backbone`: train the small TinySeg backbone of the embedded default model.

Plain supervised segmentation (cross-entropy, void ignored) on a Cityscapes-layout dataset,
normally synthroad. Produces a backbone checkpoint in our format that `fed_stats`,
`fed_train`, `fed_eval` and the engine load like any other backbone.

Long CPU runs are resumable: a training state (weights, optimizer moments, iteration, RNG) is
written to ``OUT_state`` every ``--ckpt-every`` iterations and ``--resume`` continues from it
with exactly the batches the interrupted run would have seen. The final checkpoint records the
validation mIoU when ``--val-split`` names an existing split.
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_train_backbone", __name__)  # first: a signal during the imports

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ros2_fed.backbones.tinyseg import TinySeg, TinySegConfig, save_tinyseg  # noqa: E402
from training.data import batch_stream, to_model_input  # noqa: E402
from training.objective import IGNORE_INDEX, upsample_to  # noqa: E402
from training.runlog import RunLogger  # noqa: E402
from training.schedule import parse_size  # noqa: E402
from training.state import (  # noqa: E402
    load_training_state,
    save_training_state,
    saved_iteration,
)

STATE_KIND = "backbone-train-state"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_train_backbone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-root", required=True, type=Path, help="Cityscapes-layout dataset root")
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument(
        "--val-split", default="val", help="split for the final mIoU ('' = none; default val)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="checkpoint stem, e.g. models/tinyseg_synthroad"
    )
    p.add_argument("--iters", type=int, default=4000, help="training iterations (default 4000)")
    p.add_argument("--batch-size", type=int, default=8, help="crops per iteration (default 8)")
    p.add_argument("--crop", default="256x512", help="training crop HxW (default 256x512)")
    p.add_argument(
        "--scale-range", default="0.5,2.0", help="random rescale range (default 0.5,2.0)"
    )
    p.add_argument(
        "--lr", type=float, default=4e-3, help="AdamW peak learning rate (default 4e-3)"
    )
    p.add_argument(
        "--warmup-iters", type=int, default=0, help="linear warm-up iterations (default 0)"
    )
    p.add_argument(
        "--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)"
    )
    p.add_argument(
        "--widths",
        type=_ints,
        default=TinySegConfig.widths,
        help="encoder widths at 1/2,1/4,1/8,1/16 (default %(default)s)",
    )
    p.add_argument(
        "--decoder-channels",
        type=int,
        default=TinySegConfig.decoder_channels,
        help="decoder width = feature channels FED-C pools (default %(default)s)",
    )
    p.add_argument(
        "--input-size",
        default=None,
        help="HxW the engine resizes camera frames to (default: crop)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of weights, batches and crops (default 0)"
    )
    p.add_argument("--workers", type=int, default=1, help="data-loader processes (default 1)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    p.add_argument(
        "--ckpt-every", type=int, default=200, help="write the resumable state every N iterations"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT_state if it exists")
    p.add_argument("--log-every", type=int, default=25, help="log/progress period in iterations")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def learning_rate(args: argparse.Namespace, iteration: int) -> float:
    """Linear warm-up, then MMSeg's poly decay (power 0.9) to zero at ``--iters``."""
    if iteration < args.warmup_iters:
        return args.lr * (iteration + 1) / args.warmup_iters
    return args.lr * (1 - iteration / args.iters) ** 0.9


def state_path(out: Path) -> Path:
    return out.parent / f"{out.name}_state"


def train_backbone(args: argparse.Namespace) -> tuple[TinySeg, float]:
    """Train (or resume) and return the model in eval mode and the minutes spent in all
    sessions."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset, augment = _training_data(args)
    model = _new_model(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    state = state_path(args.out)
    start, minutes_before = _resume(args, state, model, optimizer)
    logger = RunLogger(args.out.parent / f"{args.out.name}_log")
    batches = batch_stream(
        dataset, augment, args.batch_size, args.seed, skip_batches=start, workers=args.workers
    )
    model.train()
    session_start = time.monotonic()
    bar = tqdm(
        range(start, args.iters),
        initial=start,
        total=args.iters,
        desc="fed_train_backbone",
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    correct = total = 0
    for iteration in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args, iteration)
        loss, step_correct, step_total = _step(model, optimizer, next(batches))
        correct += step_correct
        total += step_total
        done = iteration + 1
        minutes = minutes_before + (time.monotonic() - session_start) / 60
        if done % args.log_every == 0:
            accuracy = correct / max(total, 1)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{accuracy:.3f}")
            logger.log(
                done, loss=loss.item(), pixel_accuracy=accuracy, lr=optimizer.param_groups[0]["lr"]
            )
            correct = total = 0
        if done % args.ckpt_every == 0 or done == args.iters:
            save_training_state(
                state, model, optimizer, done, {"minutes": round(minutes, 2)}, kind=STATE_KIND
            )
    logger.close()
    return model.eval(), minutes_before + (time.monotonic() - session_start) / 60


def _training_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """The training split and its augmentation (random rescale in --scale-range, crop, flip)."""
    from training.datasets.augment import make_train_augment
    from training.datasets.cityscapes import CityscapesDataset

    dataset = CityscapesDataset(args.data_root, split=args.split)
    lo, hi = (float(v) for v in args.scale_range.split(","))
    augment = make_train_augment(crop=parse_size(args.crop), scale_range=(lo, hi), flip=True)
    return dataset, augment


def _new_model(args: argparse.Namespace) -> TinySeg:
    """A freshly initialised TinySeg for the Cityscapes classes (draws from the seeded RNG)."""
    from training.datasets.cityscapes import CLASS_NAMES

    cfg = TinySegConfig(
        num_classes=len(CLASS_NAMES),
        widths=tuple(args.widths),
        decoder_channels=args.decoder_channels,
    )
    return TinySeg(cfg)


def _resume(
    args: argparse.Namespace, state: Path, model: TinySeg, optimizer: torch.optim.Optimizer
) -> tuple[int, float]:
    """(start iteration, minutes of earlier sessions): from the training state with --resume when
    it exists, else (0, 0.0)."""
    if not (args.resume and Path(f"{state}.safetensors").is_file()):
        return 0, 0.0
    meta = load_training_state(state, model, optimizer, kind=STATE_KIND)
    start, minutes_before = int(meta["iteration"]), float(meta.get("minutes", 0.0))
    print(f"fed_train_backbone: resuming {state} at iteration {start}", flush=True)
    return start, minutes_before


def _step(
    model: TinySeg, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, int, int]:
    """One cross-entropy step at label resolution; returns (loss, correct pixels, labelled
    pixels) for the running pixel accuracy."""
    images, labels = batch
    labels = labels.long()
    logits, _ = model(to_model_input(images, torch.device("cpu")))
    logits = upsample_to(logits, tuple(labels.shape[-2:]))
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    valid = labels != IGNORE_INDEX
    return loss, int((logits.argmax(1) == labels)[valid].sum()), int(valid.sum())


@torch.no_grad()
def validation_miou(
    model: TinySeg, data_root: Path, split: str, progress: bool = True
) -> tuple[float, list[float]]:
    """Whole-image mIoU on ``split`` (classes present in the split only), per-class IoU (NaN =
    absent); a bar unless ``progress`` is off (--no-progress)."""
    from ros2_fed.eval.metrics import confusion_matrix, miou
    from training.data import sample_arrays
    from training.datasets.cityscapes import CityscapesDataset

    dataset = CityscapesDataset(data_root, split=split)
    conf = np.zeros((model.num_classes, model.num_classes), np.int64)
    bar = tqdm(range(len(dataset)), desc=f"mIoU on {split}", leave=False, disable=not progress)
    for index in bar:
        image, label = sample_arrays(dataset[index])
        logits, _ = model(
            torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        )
        pred = upsample_to(logits, label.shape).argmax(1)[0].numpy()
        conf += confusion_matrix(pred, label, model.num_classes, ignore_index=IGNORE_INDEX)
    value, per_class = miou(conf)
    return value, [float(v) for v in per_class]


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stopping.started()  # a stop signal is a KeyboardInterrupt from here on
        model, minutes = train_backbone(args)
        return _finish(args, model, minutes)
    except KeyboardInterrupt:
        tqdm.write(f"fed_train_backbone: stopped; {kept_after_stop(args.out)}", file=sys.stderr)
        return stopping.interrupted_exit_code()


def kept_after_stop(out: Path) -> str:
    """What a stopped run leaves: the training state written every --ckpt-every iterations (no
    checkpoint at --out yet), and how to go on from it."""
    state = state_path(out)
    iteration = saved_iteration(state)
    if iteration is None:
        return f"nothing was saved yet (the training state {state} is written every --ckpt-every)"
    return (
        f"kept the training state of iteration {iteration} in {state} (no checkpoint at {out} "
        "yet): the same command with --resume continues from it"
    )


def _finish(args: argparse.Namespace, model: TinySeg, minutes: float) -> int:
    """Validation mIoU when a validation split exists, then the checkpoint."""
    info = {
        "data_root": str(args.data_root),
        "iters": args.iters,
        "seed": args.seed,
        "crop": args.crop,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "minutes": round(minutes, 2),
    }
    if args.val_split and (args.data_root / "leftImg8bit" / args.val_split).is_dir():
        value, per_class = validation_miou(
            model, args.data_root, args.val_split, progress=not args.no_progress
        )
        info.update(
            val_split=args.val_split,
            val_miou=round(100 * value, 2),
            val_iou_per_class=[None if np.isnan(v) else round(100 * v, 2) for v in per_class],
        )
        print(f"fed_train_backbone: {args.val_split} mIoU {100 * value:.2f} %")
    input_size = parse_size(args.input_size or args.crop)
    save_tinyseg(args.out, model, input_size=input_size, training=info)
    print(f"fed_train_backbone: wrote {args.out}.safetensors / .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
