"""`fed_train`: train FED-U or FED-C on a frozen segmentation backbone.

Defaults are the supplementary's recipe (AdamW 1e-3; linear warm-up from 1e-6 over 4,000
iterations; x0.1 every 15,000; 50,000 iterations; batch 4; crop 512x1024; random rescale
0.5-2.0, crop, flip). Multi-process / multi-node: ``torchrun --nproc_per_node N -m
training.train_fed ...`` (DistributedDataParallel; gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

from ros2_fed import stopping

stopping.install_for("fed_train", __name__)  # first: a signal during the imports below stops it

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ros2_fed.checkpoint import save_fed  # noqa: E402
from ros2_fed.fed import FEDConfig, FlowEneDet, count_parameters  # noqa: E402
from ros2_fed.fileio import atomic_write_bytes  # noqa: E402
from ros2_fed.fingerprint import (  # noqa: E402
    ALLOW_FLAG,
    FINGERPRINT_KEY,
    BackboneFingerprint,
    check_backbone,
    fingerprint_of,
)
from ros2_fed.logit_statistics import read_statistics_file  # noqa: E402
from training.cli_errors import UsageError, one_line_warnings, report, user_errors  # noqa: E402
from training.data import batch_stream, to_model_input  # noqa: E402
from training.distributed import DistContext, all_reduce_mean, init_distributed, shutdown  # noqa: E402
from training.objective import EGO_INDEX, PAD_INDEX, fed_loss, wrong_pixel_target  # noqa: E402
from training.runlog import RunLogger  # noqa: E402
from training.schedule import lr_at, parse_size  # noqa: E402
from training.state import (  # noqa: E402
    load_training_state,
    save_training_state,
    saved_iteration,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fed_train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_io_args(p)
    _add_design_args(p.add_argument_group("FED design (supplementary Table 8)"))
    _add_optim_args(p.add_argument_group("optimisation"))
    _add_run_args(p.add_argument_group("run"))
    return p


def _add_io_args(p: argparse.ArgumentParser) -> None:
    """Inputs and outputs: the ungrouped flags every run needs."""
    p.add_argument(
        "--backbone", required=True, help="backbone checkpoint (ours, MMSeg .pth or HF folder)"
    )
    p.add_argument(
        "--data-root", required=True, type=Path, help="dataset root in the Cityscapes layout"
    )
    p.add_argument("--split", default="train", help="dataset split to train on (default train)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="run directory (checkpoints, log.csv, tb/ when tensorboard is installed); must not "
        "hold "
        "an earlier run unless --resume or --overwrite",
    )
    p.add_argument("--name", default=None, help="checkpoint name (default: fed_u / fed_c)")


def _add_design_args(g: argparse._ArgumentGroup) -> None:
    """The FED architecture and target (what the checkpoint's config records)."""
    g.add_argument(
        "--variant",
        choices=("fed-u", "fed-c"),
        default="fed-u",
        help="FED-U (logits only) or FED-C (conditioned on backbone features)",
    )
    g.add_argument("--cond-dim", type=int, default=32, help="P for FED-C (32 or 128)")
    g.add_argument(
        "--cov",
        choices=("full", "diag"),
        default="full",
        help="covariance of the flow's base density",
    )
    g.add_argument(
        "--kernel", type=int, default=7, help="convolution kernel size of the coupling networks"
    )
    g.add_argument("--blocks", type=int, default=8, help="number of flow blocks")
    g.add_argument(
        "--out-floor",
        type=float,
        default=FEDConfig.out_floor,
        help="clamp log P(out) = log(FLOOR + 1 - P(in)) as the FED authors do (default 1e-6); "
        "0: unbounded",
    )
    g.add_argument(
        "--hidden",
        type=int,
        default=FEDConfig.hidden,
        help="hidden channels of the coupling networks",
    )
    g.add_argument(
        "--stats",
        type=Path,
        default=None,
        help="logit statistics JSON from fed_stats (standardise logits)",
    )
    g.add_argument(
        "--void-as-wrong",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count void ground truth as 'wrong' (reference setup) or ignore it",
    )
    g.add_argument(
        "--ignore-ego-vehicle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --void-as-wrong: leave the ego vehicle (labelId 1) out of the target "
        "instead of calling it wrong (needs *_labelIds.png; default on)",
    )


def _add_optim_args(o: argparse._ArgumentGroup) -> None:
    """Optimiser, schedule and augmentation: the supplementary's recipe as defaults."""
    o.add_argument(
        "--max-iters", type=int, default=50_000, help="training iterations (default 50,000)"
    )
    o.add_argument("--batch-size", type=int, default=4, help="per process")
    o.add_argument("--crop", default="512x1024", help="HxW (1024x1024 for SegFormer-B2)")
    o.add_argument("--scale-range", default="0.5,2.0", help="random rescale range")
    o.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    o.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate after warm-up")
    o.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    o.add_argument(
        "--warmup-iters",
        type=int,
        default=4_000,
        help="linear warm-up iterations (should be well below --max-iters)",
    )
    o.add_argument("--warmup-start", type=float, default=1e-6, help="learning rate at iteration 0")
    o.add_argument(
        "--lr-step",
        type=int,
        default=15_000,
        help="multiply the learning rate by --lr-gamma every N iterations",
    )
    o.add_argument("--lr-gamma", type=float, default=0.1, help="step decay factor")


def _add_run_args(r: argparse._ArgumentGroup) -> None:
    """How the run executes (seed, threads, device, logging, checkpoints, resume)."""
    r.add_argument("--seed", type=int, default=0, help="random seed (each rank adds its rank)")
    r.add_argument("--workers", type=int, default=2, help="data-loader worker processes per rank")
    r.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op (OpenMP) threads per rank; 0 = OMP_NUM_THREADS when set, "
        "else the cores this process may use / (ranks on this host x "
        "(--workers + 1)), at least 1. OpenMP threads spin-wait at every "
        "operator's barrier, so more threads than free cores stall: on a 2-core "
        "machine under load 2 threads "
        "ran 0.2-0.8 it/s, 1 thread 1.2-4.6 it/s, with or without workers",
    )
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument(
        "--log-every", type=int, default=20, help="write a log.csv row every N iterations"
    )
    r.add_argument(
        "--ckpt-every",
        type=int,
        default=5_000,
        help="save a checkpoint and training state every N iterations",
    )
    r.add_argument(
        "--resume", type=Path, default=None, help="training state to resume (OUT/last_state)"
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds an earlier run",
    )
    r.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="accept --stats or a --resume state made for another backbone than --backbone "
        "(a warning instead of an error)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def earlier_run_files(out: Path) -> list[Path]:
    """Files that mark ``out`` as an earlier run's folder (checkpoints, training state, log)."""
    if not out.is_dir():
        return []
    return sorted([*out.glob("*.safetensors"), *out.glob("log.csv")])


def check_arguments(args: argparse.Namespace) -> list[str]:
    """UsageError for malformed or contradictory flags; returns warnings for suspicious ones."""
    try:
        parse_size(args.crop)
    except ValueError as exc:
        raise UsageError(f"--crop: {exc}") from None
    try:
        lo, hi = (float(v) for v in args.scale_range.split(","))
    except ValueError:
        raise UsageError(
            f"--scale-range must look like LOW,HIGH, got {args.scale_range!r}"
        ) from None
    if not 0 < lo <= hi:
        raise UsageError(f"--scale-range needs 0 < LOW <= HIGH, got {args.scale_range!r}")
    if args.stats is not None and not Path(args.stats).is_file():
        raise UsageError(f"--stats {args.stats}: file not found (write it with fed_stats)")
    if args.resume is not None and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    previous = earlier_run_files(args.out)
    if previous and args.resume is None and not args.overwrite:
        raise UsageError(
            f"--out {args.out} already holds a run ({', '.join(p.name for p in previous[:3])}"
            f"{', ...' if len(previous) > 3 else ''}); pass --resume {args.out} to continue it, "
            "--overwrite to start afresh, or another --out"
        )
    warnings = []
    if args.warmup_iters >= args.max_iters:
        warnings.append(
            f"--warmup-iters {args.warmup_iters} >= --max-iters {args.max_iters}: the learning "
            "rate "
            f"never reaches --lr {args.lr:g}"
        )
    return warnings


def clear_earlier_run(out: Path) -> None:
    """--overwrite: drop the log and training state so the new run does not append to or resume
    them."""
    for name in ("log.csv", "last_state.safetensors", "last_state.json"):
        (out / name).unlink(missing_ok=True)


def _make_augment(args: argparse.Namespace):
    from training.datasets.augment import make_train_augment

    lo, hi = (float(v) for v in args.scale_range.split(","))
    # Padding gets its own label so the target ignores it instead of calling it "wrong" void.
    return make_train_augment(
        crop=parse_size(args.crop),
        scale_range=(lo, hi),
        flip=not args.no_flip,
        ignore_index=PAD_INDEX,
    )


def _make_dataset(args: argparse.Namespace):
    from training.datasets.cityscapes import CityscapesDataset

    ego = EGO_INDEX if args.void_as_wrong and args.ignore_ego_vehicle else None
    return CityscapesDataset(args.data_root, split=args.split, ego_index=ego)


def _load_stats(
    path: Path, backbone: BackboneFingerprint, allow_mismatch: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    data = read_statistics_file(path)
    check_backbone(data, backbone, f"logit statistics {path}", allow_mismatch)
    return torch.tensor(data["mean"], dtype=torch.float32), torch.tensor(
        data["std"], dtype=torch.float32
    )


def _json_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as JSON values: numbers and booleans stay what they are (``"cond_dim": 32``),
    paths become strings."""
    return {
        k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in vars(args).items()
    }


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int, cores: int, local_ranks: int = 1) -> int:
    """torch threads for one training process: its share of the cores, the data-loader workers
    of every rank on this host counted as one core each, at least 1."""
    return max(1, cores // (max(1, local_ranks) * (max(0, workers) + 1)))


def choose_threads(
    args: argparse.Namespace, environ: Optional[dict[str, str]] = None, cores: Optional[int] = None
) -> tuple[Optional[int], str]:
    """(threads to set, or None to keep torch's; why): --threads, else OMP_NUM_THREADS (torch
    follows it, torchrun sets it), else :func:`default_threads`."""
    env = os.environ if environ is None else environ
    if args.threads > 0:
        return args.threads, "--threads"
    if env.get("OMP_NUM_THREADS"):
        return None, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"
    cores = available_cores() if cores is None else cores
    ranks = int(env.get("LOCAL_WORLD_SIZE") or 1)
    why = f"{cores} cores / ({ranks} rank(s) x ({args.workers} workers + 1))"
    return default_threads(args.workers, cores, ranks), why


@dataclass
class _Run:
    """What the loop, its checkpoints and the final save share, so each step takes one argument."""

    args: argparse.Namespace
    ctx: DistContext
    backbone: torch.nn.Module
    fed: FlowEneDet
    model: torch.nn.Module  # fed, or fed wrapped in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    logger: RunLogger
    name: str
    cond_dim: int
    start_iter: int
    run_info: dict
    extra_meta: dict


def train(args: argparse.Namespace, ctx: Optional[DistContext] = None) -> Path:
    """Run the training loop; returns the final FED checkpoint path (rank 0 writes it)."""
    ctx = ctx or init_distributed(args.device)
    torch.manual_seed(args.seed + ctx.rank)
    backbone, fingerprint = _frozen_backbone(args.backbone, ctx.device)
    dataset = _make_dataset(args)
    augment = _make_augment(args)
    logits, feats = _probe(args, ctx, backbone, dataset, augment)
    cfg = _fed_config(args, logits, feats)
    fed = FlowEneDet(cfg).to(ctx.device)
    stats = _standardize(args, fed, fingerprint)
    optimizer = torch.optim.AdamW(fed.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start_iter, elapsed_before = _resume_or_initialize(
        args, fed, optimizer, fingerprint, logits, feats
    )
    run = _Run(
        args=args,
        ctx=ctx,
        backbone=backbone,
        fed=fed,
        model=_wrap_ddp(fed, ctx),
        optimizer=optimizer,
        logger=RunLogger(args.out, enabled=ctx.is_main, elapsed_before=elapsed_before),
        name=args.name or ("fed_c" if cfg.cond_dim else "fed_u"),
        cond_dim=cfg.cond_dim,
        start_iter=start_iter,
        run_info=_run_info(args, fingerprint, ctx),
        extra_meta=_extra_meta(args, fingerprint, stats),
    )
    if ctx.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        tqdm.write(
            f"fed_train: {cfg.variant} with {count_parameters(fed):,} parameters, iterations "
            f"{start_iter}..{args.max_iters}"
        )
    loss_value = _train_loop(run, dataset, augment)
    run.logger.close()
    final = _finish(run, loss_value)
    shutdown(ctx)
    return final


def _frozen_backbone(
    path: str, device: torch.device
) -> tuple[torch.nn.Module, BackboneFingerprint]:
    """The backbone in eval mode without gradients (FED learns from its outputs only), and its
    fingerprint (recorded in every checkpoint, checked against --stats and --resume)."""
    from ros2_fed.backbones import load_backbone

    backbone = load_backbone(path).to(device).eval()
    fingerprint = fingerprint_of(backbone)
    for param in backbone.parameters():
        param.requires_grad_(False)
    return backbone, fingerprint


def _probe(
    args: argparse.Namespace,
    ctx: DistContext,
    backbone: torch.nn.Module,
    dataset: Any,
    augment: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone logits and features on one peeked batch: they size FED (classes, feature
    channels) and feed its data-dependent ActNorm init."""
    probe = next(batch_stream(dataset, augment, args.batch_size, args.seed, ctx.rank, workers=0))
    with torch.no_grad():
        logits, feats = backbone(to_model_input(probe[0], ctx.device))
    return logits, feats


def _fed_config(args: argparse.Namespace, logits: torch.Tensor, feats: torch.Tensor) -> FEDConfig:
    """FED's architecture from the design flags, sized by the backbone's outputs."""
    cond_dim = args.cond_dim if args.variant == "fed-c" else 0
    return FEDConfig(
        cov=args.cov,
        kernel=args.kernel,
        blocks=args.blocks,
        cond_dim=cond_dim,
        num_classes=logits.shape[1],
        feat_channels=feats.shape[1] if cond_dim else 0,
        hidden=args.hidden,
        out_floor=args.out_floor,
    )


def _standardize(
    args: argparse.Namespace, fed: FlowEneDet, fingerprint: BackboneFingerprint
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """--stats: load the logit (mean, std) into FED's standardizer; None without --stats."""
    if args.stats is None:
        return None
    mean, std = _load_stats(args.stats, fingerprint, args.allow_backbone_mismatch)
    fed.standardizer.set_statistics(mean, std)
    return mean, std


def _resume_or_initialize(
    args: argparse.Namespace,
    fed: FlowEneDet,
    optimizer: torch.optim.Optimizer,
    fingerprint: BackboneFingerprint,
    logits: torch.Tensor,
    feats: torch.Tensor,
) -> tuple[int, Optional[float]]:
    """(start iteration, a resumed run's saved training time): --resume restores FED and the
    optimiser; a fresh run gets the data-dependent ActNorm init from the probe batch."""
    resume_path = args.resume
    if resume_path is not None and Path(resume_path).is_dir():
        resume_path = Path(resume_path) / "last_state"
    if resume_path is None:
        fed.initialize(logits, feats if fed.cfg.cond_dim else None)  # data-dependent ActNorm init
        return 0, None
    meta = load_training_state(Path(resume_path), fed, optimizer)
    check_backbone(
        meta, fingerprint, f"training state {resume_path}", args.allow_backbone_mismatch
    )
    start_iter = int(meta["iteration"])
    elapsed_before = float(meta["elapsed_s"]) if meta.get("elapsed_s") is not None else None
    if start_iter >= args.max_iters:
        raise UsageError(
            f"{resume_path} is already at iteration {start_iter} >= --max-iters {args.max_iters}"
        )
    return start_iter, elapsed_before


def _wrap_ddp(fed: FlowEneDet, ctx: DistContext) -> torch.nn.Module:
    """FED itself, or under several ranks wrapped in DistributedDataParallel (gradient sync)."""
    if not ctx.enabled:
        return fed
    device = ctx.device
    return torch.nn.parallel.DistributedDataParallel(
        fed, device_ids=[device.index] if device.type == "cuda" else None
    )


def _run_info(
    args: argparse.Namespace, fingerprint: BackboneFingerprint, ctx: DistContext
) -> dict[str, Any]:
    """The run's provenance, recorded in the training state and every checkpoint."""
    return {
        "backbone": str(args.backbone),
        "backbone_sha256": fingerprint.sha256,
        FINGERPRINT_KEY: fingerprint.to_json(),
        "data_root": str(args.data_root),
        "split": args.split,
        "world_size": ctx.world_size,
        "args": _json_args(args),
    }


def _extra_meta(
    args: argparse.Namespace,
    fingerprint: BackboneFingerprint,
    stats: Optional[tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, Any]:
    """Checkpoint metadata besides the training info: the backbone fingerprint and, with
    --stats, the logit statistics (recorded for SML too; FED's standardizer buffers hold the
    same numbers)."""
    extra_meta: dict = {FINGERPRINT_KEY: fingerprint.to_json()}
    if stats is not None:
        mean, std = stats
        extra_meta["logit_statistics"] = {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "definition": read_statistics_file(args.stats)["definition"],
            "source": str(args.stats),
        }
    return extra_meta


def _train_loop(run: _Run, dataset: Any, augment: Any) -> float:
    """Iterations start_iter..--max-iters with logging and checkpoints; returns the last logged
    (all-ranks mean) loss, NaN when no row was logged."""
    args, ctx = run.args, run.ctx
    batches = batch_stream(
        dataset,
        augment,
        args.batch_size,
        args.seed,
        ctx.rank,
        skip_batches=run.start_iter,
        workers=args.workers,
    )
    bar = tqdm(
        range(run.start_iter, args.max_iters),
        initial=run.start_iter,
        total=args.max_iters,
        desc="fed_train",
        disable=args.no_progress or not ctx.is_main,
        dynamic_ncols=True,
    )
    loss_value = float("nan")
    t0 = time.monotonic()
    run.fed.train()
    for iteration in bar:
        lr = _set_lr(run.optimizer, args, iteration)
        loss, target = _step(run, next(batches), iteration)
        done = iteration + 1
        if done % args.log_every == 0 or done == args.max_iters:
            loss_value = _log_row(run, bar, done, loss, target, lr, t0)
        if ctx.is_main and (done % args.ckpt_every == 0 or done == args.max_iters):
            _save_checkpoint(run, done)
    bar.close()
    return loss_value


def _set_lr(optimizer: torch.optim.Optimizer, args: argparse.Namespace, iteration: int) -> float:
    """The schedule's learning rate for this iteration, set on every parameter group."""
    lr = lr_at(
        iteration, args.lr, args.warmup_iters, args.warmup_start, args.lr_step, args.lr_gamma
    )
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _step(
    run: _Run, batch: tuple[torch.Tensor, torch.Tensor], iteration: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch (the backbone and the target need no gradients); returns
    (loss, wrong-pixel target)."""
    device = run.ctx.device
    images, labels = batch
    labels = labels.to(device)
    with torch.no_grad():
        logits, feats = run.backbone(to_model_input(images, device))
        target = wrong_pixel_target(logits, labels, run.args.void_as_wrong)
    loss = fed_loss(run.model(logits, feats if run.cond_dim else None), target)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite FED loss at iteration {iteration}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss, target


def _log_row(
    run: _Run,
    bar: tqdm,
    done: int,
    loss: torch.Tensor,
    target: torch.Tensor,
    lr: float,
    t0: float,
) -> float:
    """The all-ranks mean loss into the progress bar and a log.csv row; returns it."""
    loss_value = float(all_reduce_mean(loss.detach(), run.ctx))
    wrong = float((target == 1).float().mean())
    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
    run.logger.log(
        done,
        loss=loss_value,
        lr=lr,
        wrong_fraction=wrong,
        iters_per_s=round((done - run.start_iter) / max(time.monotonic() - t0, 1e-9), 3),
    )
    return loss_value


def _save_checkpoint(run: _Run, done: int) -> None:
    """Rank 0: the training state (for --resume) and a numbered FED checkpoint."""
    info = {**run.run_info, "elapsed_s": round(run.logger.elapsed_s(), 3)}
    save_training_state(run.args.out / "last_state", run.fed, run.optimizer, done, info)
    save_fed(
        run.args.out / f"{run.name}_iter{done:06d}",
        run.fed.eval(),
        {**run.extra_meta, "training": {**info, "iteration": done}},
    )
    run.fed.train()


def _finish(run: _Run, loss_value: float) -> Path:
    """Every rank's weight digest (DDP desync is visible, not silent), then rank 0 writes the
    final checkpoint; returns its path."""
    args, ctx, fed = run.args, run.ctx, run.fed
    if ctx.enabled:  # every rank records what it ended with: DDP desync is visible, not silent
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            args.out / f"weights_rank{ctx.rank}.sha256", (weights_digest(fed) + "\n").encode()
        )
    final = args.out / run.name
    if ctx.is_main:
        save_fed(
            final,
            fed.eval(),
            {
                **run.extra_meta,
                "training": {
                    **run.run_info,
                    "iteration": args.max_iters,
                    "final_loss": loss_value,
                    "elapsed_s": round(run.logger.elapsed_s(), 3),
                },
            },
        )
        tqdm.write(f"fed_train: wrote {final}.safetensors / .json (final loss {loss_value:.4f})")
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
    with one_line_warnings("fed_train"):
        try:
            if not math.isfinite(args.lr) or args.lr <= 0:
                raise UsageError("--lr must be positive")
            for warning in check_arguments(args):
                print(f"fed_train: warning: {warning}", file=sys.stderr)
            if args.overwrite:
                clear_earlier_run(args.out)
            threads, why = choose_threads(args)
            saved = torch.get_num_threads()
            if threads is not None:
                torch.set_num_threads(threads)
            if os.environ.get("RANK", "0") == "0":
                tqdm.write(
                    f"fed_train: {torch.get_num_threads()} torch thread(s) per process ({why})"
                )
            try:
                stopping.started()  # a stop signal is a KeyboardInterrupt from here on
                train(args)
            finally:
                torch.set_num_threads(saved)  # in-process callers (tests, ablation) keep theirs
        except user_errors() as exc:
            return report("fed_train", exc)
        except KeyboardInterrupt:
            if os.environ.get("RANK", "0") == "0":
                tqdm.write(f"fed_train: stopped; {kept_after_stop(args.out)}", file=sys.stderr)
            return stopping.interrupted_exit_code()
    return 0


def kept_after_stop(out: Path) -> str:
    """What a stopped run leaves in ``out``: the last training state and FED checkpoint (written
    every --ckpt-every iterations), and how to go on from it."""
    iteration = saved_iteration(Path(out) / "last_state")
    if iteration is None:
        return f"nothing was saved in {out} yet (a checkpoint is written every --ckpt-every)"
    return (
        f"kept the training state of iteration {iteration} in {Path(out) / 'last_state'} "
        f"(and the FED checkpoints *_iterNNNNNN in {out}): the same command with --resume {out} "
        "continues from it"
    )


if __name__ == "__main__":
    sys.exit(main())
