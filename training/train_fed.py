"""`fed_train`: train FED-U or FED-C on a frozen segmentation backbone.

Defaults are the supplementary's recipe (AdamW 1e-3; linear warm-up from 1e-6 over 4,000
iterations; x0.1 every 15,000; 50,000 iterations; batch 4; crop 512x1024; random rescale
0.5-2.0, crop, flip). Multi-process / multi-node: ``torchrun --nproc_per_node N -m
training.train_fed ...`` (DistributedDataParallel; gloo on CPU, NCCL on CUDA).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from ros2_fed.checkpoint import file_sha256, save_fed
from ros2_fed.fed import FEDConfig, FlowEneDet, count_parameters
from training.data import batch_stream, to_model_input
from training.distributed import DistContext, all_reduce_mean, init_distributed, shutdown
from training.objective import EGO_INDEX, PAD_INDEX, fed_loss, wrong_pixel_target
from training.runlog import RunLogger
from training.schedule import lr_at, parse_size
from training.state import load_training_state, save_training_state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fed_train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="backbone checkpoint (ours, MMSeg .pth or HF folder)")
    p.add_argument("--data-root", required=True, type=Path, help="dataset root in the Cityscapes layout")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, log.csv, tb/)")
    p.add_argument("--name", default=None, help="checkpoint name (default: fed_u / fed_c)")
    g = p.add_argument_group("FED design (supplementary Table 8)")
    g.add_argument("--variant", choices=("fed-u", "fed-c"), default="fed-u")
    g.add_argument("--cond-dim", type=int, default=32, help="P for FED-C (32 or 128)")
    g.add_argument("--cov", choices=("full", "diag"), default="full")
    g.add_argument("--kernel", type=int, default=7)
    g.add_argument("--blocks", type=int, default=8)
    g.add_argument("--hidden", type=int, default=FEDConfig.hidden)
    g.add_argument("--stats", type=Path, default=None, help="logit statistics JSON from fed_stats (standardise logits)")
    g.add_argument("--void-as-wrong", action=argparse.BooleanOptionalAction, default=True,
                   help="count void ground truth as 'wrong' (reference setup) or ignore it")
    g.add_argument("--ignore-ego-vehicle", action=argparse.BooleanOptionalAction, default=True,
                   help="with --void-as-wrong: leave the ego vehicle (labelId 1) out of the target "
                        "instead of calling it wrong (needs *_labelIds.png; default on)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--max-iters", type=int, default=50_000)
    o.add_argument("--batch-size", type=int, default=4, help="per process")
    o.add_argument("--crop", default="512x1024", help="HxW (1024x1024 for SegFormer-B2)")
    o.add_argument("--scale-range", default="0.5,2.0", help="random rescale range")
    o.add_argument("--no-flip", action="store_true")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--weight-decay", type=float, default=1e-2)
    o.add_argument("--warmup-iters", type=int, default=4_000)
    o.add_argument("--warmup-start", type=float, default=1e-6)
    o.add_argument("--lr-step", type=int, default=15_000)
    o.add_argument("--lr-gamma", type=float, default=0.1)
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--log-every", type=int, default=20)
    r.add_argument("--ckpt-every", type=int, default=5_000)
    r.add_argument("--resume", type=Path, default=None, help="training state to resume (OUT/last_state)")
    r.add_argument("--no-progress", action="store_true")
    return p


def _make_augment(args: argparse.Namespace):
    from training.datasets.augment import make_train_augment

    lo, hi = (float(v) for v in args.scale_range.split(","))
    # Padding gets its own label so the target ignores it instead of calling it "wrong" void.
    return make_train_augment(crop=parse_size(args.crop), scale_range=(lo, hi), flip=not args.no_flip,
                              ignore_index=PAD_INDEX)


def _make_dataset(args: argparse.Namespace):
    from training.datasets.cityscapes import CityscapesDataset

    ego = EGO_INDEX if args.void_as_wrong and args.ignore_ego_vehicle else None
    return CityscapesDataset(args.data_root, split=args.split, ego_index=ego)


def _load_stats(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = json.loads(Path(path).read_text())
    return torch.tensor(data["mean"], dtype=torch.float32), torch.tensor(data["std"], dtype=torch.float32)


def train(args: argparse.Namespace, ctx: Optional[DistContext] = None) -> Path:
    """Run the training loop; returns the final FED checkpoint path (rank 0 writes it)."""
    from ros2_fed.backbones import load_backbone

    ctx = ctx or init_distributed(args.device)
    torch.manual_seed(args.seed + ctx.rank)
    device = ctx.device
    backbone = load_backbone(args.backbone).to(device).eval()
    for param in backbone.parameters():
        param.requires_grad_(False)

    dataset = _make_dataset(args)
    augment = _make_augment(args)
    state_path = args.out / "last_state"
    start_iter = 0
    resume_path = args.resume
    if resume_path is not None and Path(resume_path).is_dir():
        resume_path = Path(resume_path) / "last_state"

    # Peek one batch to size FED from the backbone (classes, feature channels).
    probe = next(batch_stream(dataset, augment, args.batch_size, args.seed, ctx.rank, workers=0))
    with torch.no_grad():
        logits, feats = backbone(to_model_input(probe[0], device))
    cond_dim = args.cond_dim if args.variant == "fed-c" else 0
    cfg = FEDConfig(cov=args.cov, kernel=args.kernel, blocks=args.blocks, cond_dim=cond_dim,
                    num_classes=logits.shape[1], feat_channels=feats.shape[1] if cond_dim else 0, hidden=args.hidden)
    fed = FlowEneDet(cfg).to(device)
    if args.stats is not None:
        mean, std = _load_stats(args.stats)
        fed.standardizer.set_statistics(mean, std)
    optimizer = torch.optim.AdamW(fed.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    if resume_path is not None:
        meta = load_training_state(Path(resume_path), fed, optimizer)
        start_iter = int(meta["iteration"])
        if start_iter >= args.max_iters:
            raise SystemExit(f"fed_train: {resume_path} is already at iteration {start_iter} >= --max-iters {args.max_iters}")
    else:
        fed.initialize(logits, feats if cond_dim else None)  # data-dependent ActNorm init
    model: torch.nn.Module = fed
    if ctx.enabled:
        model = torch.nn.parallel.DistributedDataParallel(fed, device_ids=[device.index] if device.type == "cuda" else None)

    name = args.name or ("fed_c" if cond_dim else "fed_u")
    logger = RunLogger(args.out, enabled=ctx.is_main)
    run_info = {
        "backbone": str(args.backbone),
        "backbone_sha256": file_sha256(args.backbone) if Path(args.backbone).is_file() else None,
        "data_root": str(args.data_root), "split": args.split, "world_size": ctx.world_size,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    extra_meta = {}
    if args.stats is not None:  # recorded for SML too; FED's standardizer buffers hold the same numbers
        extra_meta["logit_statistics"] = {"mean": mean.tolist(), "std": std.tolist(), "source": str(args.stats)}
    if ctx.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        tqdm.write(f"fed_train: {cfg.variant} with {count_parameters(fed):,} parameters, iterations {start_iter}..{args.max_iters}")

    batches = batch_stream(dataset, augment, args.batch_size, args.seed, ctx.rank, skip_batches=start_iter, workers=args.workers)
    bar = tqdm(range(start_iter, args.max_iters), initial=start_iter, total=args.max_iters, desc="fed_train",
               disable=args.no_progress or not ctx.is_main, dynamic_ncols=True)
    loss_value = float("nan")
    t0 = time.monotonic()
    fed.train()
    for iteration in bar:
        lr = lr_at(iteration, args.lr, args.warmup_iters, args.warmup_start, args.lr_step, args.lr_gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = next(batches)
        labels = labels.to(device)
        with torch.no_grad():
            logits, feats = backbone(to_model_input(images, device))
            target = wrong_pixel_target(logits, labels, args.void_as_wrong)
        loss = fed_loss(model(logits, feats if cond_dim else None), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite FED loss at iteration {iteration}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        done = iteration + 1
        if done % args.log_every == 0 or done == args.max_iters:
            loss_value = float(all_reduce_mean(loss.detach(), ctx))
            wrong = float((target == 1).float().mean())
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
            logger.log(done, loss=loss_value, lr=lr, wrong_fraction=wrong,
                       iters_per_s=round((done - start_iter) / max(time.monotonic() - t0, 1e-9), 3))
        if ctx.is_main and (done % args.ckpt_every == 0 or done == args.max_iters):
            save_training_state(state_path, fed, optimizer, done, run_info)
            save_fed(args.out / f"{name}_iter{done:06d}", fed.eval(), {**extra_meta, "training": {**run_info, "iteration": done}})
            fed.train()
    bar.close()
    logger.close()
    if ctx.enabled:  # every rank records what it ended with: DDP desync is visible, not silent
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"weights_rank{ctx.rank}.sha256").write_text(weights_digest(fed) + "\n")
    final = args.out / name
    if ctx.is_main:
        save_fed(final, fed.eval(), {**extra_meta, "training": {**run_info, "iteration": args.max_iters, "final_loss": loss_value}})
        tqdm.write(f"fed_train: wrote {final}.safetensors / .json (final loss {loss_value:.4f})")
    shutdown(ctx)
    return final


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes) in state_dict order."""
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.lr) or args.lr <= 0:
        print("fed_train: --lr must be positive", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
