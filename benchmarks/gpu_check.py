"""Everything that needs a GPU, in one command: latency, FED share and parity per runtime.

For each backbone (SF-B2 and DL-R101 with random weights; ``--tiny``: the shipped default
model) and each fused detector (backbone only, + FED-U, + FED-C) this times one frame per
runtime mode and compares its outputs with the float32 detector run on the CPU:

- torch CUDA fp32 (TF32 off); fp16 with autocast; fp16 *typed* (float16 backbone, float32
  FED: the graph ``fed_export --precision fp16`` writes and TensorRT builds); fp32 and typed
  fp16 replayed as CUDA graphs;
- TensorRT fp32 / fp16 (strongly typed, from the ONNX export) when ``tensorrt`` imports, and
  torch-tensorrt fp16 when ``torch_tensorrt`` imports; otherwise listed as skipped, with why
  (a runtime that is there but raises is listed as FAILED, and the exit status is 1);
- ONNX Runtime fp32 / typed fp16 on the CPU (``--device cpu``, or ``--onnxruntime``).

Per row: median and p90 latency per frame (host image in -> host outputs, copies included),
the FED share (1 - backbone-only median / this detector's median, same runtime), label
agreement and confidence differences against CPU fp32 on synthroad frames (random frames when
OpenCV is missing), and whether the parity rule of that precision holds (ros2_fed.engine.verify:
fp32: labels >= 99.9 %, 99.9th percentile of |diff| <= 1e-3 on the worst frame; fp16: labels
>= 99 %, mean |diff| <= 0.01).

Surround cameras (``--batch N``, default 4): the ``+ FED-U`` detector once more per runtime,
batch 1 against batch N (one frame per camera, what a ``cameras:=[...]`` fed_node runs): ms per
batch, ms per frame and the throughput gain per frame. On a GPU a batch should cost well under N
single frames (one launch sequence, fuller kernels); on 2 CPU cores it costs about N frames.

Runs from a source checkout without ROS: ``PYTHONPATH=. python benchmarks/gpu_check.py --out DIR``
writes ``DIR/gpu_check.md`` and ``DIR/gpu_check.json`` (GPU: under 8 minutes at 1024x2048;
``--budget-s`` skips what would not fit). ``--device cpu --tiny`` runs the same steps on the
CPU with the default model in well under a minute (the CI smoke test).
Needs torch, numpy, safetensors; onnx + onnxruntime for the ONNX/TensorRT rows.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from ros2_fed.detector import FusedDetector  # noqa: E402
from ros2_fed.engine.base import SUFFIX_BY_RUNTIME  # noqa: E402
from ros2_fed.engine.verify import parity, parity_ok  # noqa: E402
from ros2_fed.jsonio import write_json  # noqa: E402

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
GPU_SIZE = (1024, 2048)
TINY_SIZE = (64, 128)


@dataclass
class BatchRow:
    """One runtime at batch 1 and batch N: what one engine for N cameras gains per frame."""

    model: str
    runtime: str
    precision: str
    batch: int
    batch_ms: float  # median ms for a batch of ``batch`` frames
    single_ms: float  # median ms for one frame at batch 1
    label_agreement: float  # batch outputs against the CPU fp32 reference, frame by frame

    @property
    def gain(self) -> float:
        """Frames per second at batch N over frames per second at batch 1."""
        return self.single_ms * self.batch / self.batch_ms


@dataclass
class Row:
    model: str
    detector: str
    runtime: str
    precision: str
    median_ms: float
    p90_ms: float
    fed_share: Optional[float] = None
    parity: dict[str, float] = field(default_factory=dict)
    parity_ok: Optional[bool] = None


# --------------------------------------------------------------------------------------
# Models and frames
# --------------------------------------------------------------------------------------


def paper_models() -> dict[str, dict[str, FusedDetector]]:
    """SF-B2 and DL-R101 with random weights, each as backbone only / + FED-U / + FED-C."""
    from engine_latency import build_detectors, make_backbone

    models = {}
    for arch, name in (("segformer-b2", "SF-B2"), ("deeplabv3plus-r101", "DL-R101")):
        backbone, _ = make_backbone(arch, None)
        models[name] = build_detectors(backbone, *GPU_SIZE, "bilinear")
    return models


def default_models() -> dict[str, dict[str, FusedDetector]]:
    """The shipped default model (models/): TinySeg + its FED-U and FED-C checkpoints."""
    from ros2_fed.backbones import load_backbone
    from ros2_fed.paths import default_models_dir
    from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED

    folder = default_models_dir()
    backbone = load_backbone(folder / DEFAULT_BACKBONE).eval()
    detectors = {"backbone only": FusedDetector(backbone, None, score="none")}
    fed_c = DEFAULT_FED.replace("fed_u", "fed_c")  # shipped next to the default FED-U
    for label, fed in (("+ FED-U", DEFAULT_FED), ("+ FED-C", fed_c)):
        if (folder / f"{fed}.safetensors").is_file():
            detectors[label] = FusedDetector.from_checkpoints(
                folder / DEFAULT_BACKBONE, folder / fed, backbone_loader=lambda _path: backbone
            )
    return {"default (TinySeg)": detectors}


def frames(height: int, width: int, count: int) -> tuple[list[np.ndarray], str]:
    """Synthroad frames (needs OpenCV), else smooth random images."""
    try:
        from training.datasets.synthroad import render_indexed

        return [
            render_indexed(0, "val", i, height, width).image for i in range(count)
        ], "synthroad val frames"
    except Exception as exc:  # noqa: BLE001 - no cv2 on the GPU machine: still a fair parity input
        rng = np.random.default_rng(0)
        out = []
        for _ in range(count):
            small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
            big = torch.nn.functional.interpolate(
                torch.from_numpy(small).permute(2, 0, 1)[None],
                size=(height, width),
                mode="bilinear",
                align_corners=False,
            )[0].permute(1, 2, 0)
            out.append(big.clamp(0, 255).to(torch.uint8).numpy().copy())
        return out, f"smooth random frames (synthroad unavailable: {type(exc).__name__})"


# --------------------------------------------------------------------------------------
# Runners: image (H, W, 3) uint8 -> (labels (H, W), confidence (H, W) float32)
# --------------------------------------------------------------------------------------


class TorchRunner:
    """A torch module on ``device``; optional autocast fp16 or CUDA-graph replay."""

    def __init__(
        self,
        module: torch.nn.Module,
        device: torch.device,
        shape: tuple[int, ...],
        *,
        autocast: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        """``shape``: (B, H, W, 3); a call takes one (H, W, 3) frame (B = 1) or a (B, H, W, 3)
        batch."""
        self.module, self.device = module.to(device).eval(), device
        self.autocast = autocast
        self.input = torch.zeros(shape, dtype=torch.uint8, device=device)
        self.graph: Optional[Any] = None
        with torch.inference_mode():
            self._forward()  # lazy init (folded FED moves to the device) before any capture
        if cuda_graph:
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):
                    self._forward()
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(self.graph):
                self.outputs = self._forward()

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.autocast:
            with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                return self.module(self.input)
        return self.module(self.input)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        single = image.ndim == 3
        self.input.copy_(torch.from_numpy(image[None] if single else image), non_blocking=False)
        with torch.inference_mode():
            if self.graph is not None:
                self.graph.replay()
                labels, confidence = self.outputs
            else:
                labels, confidence = self._forward()
            labels, confidence = labels.cpu().numpy(), confidence.float().cpu().numpy()
            return (labels[0], confidence[0]) if single else (labels, confidence)


def torch_runner(
    precision: str, *, autocast: bool = False, cuda_graph: bool = False
) -> Callable[..., Runner]:
    def make(
        detector: FusedDetector,
        device: torch.device,
        size: tuple[int, int],
        folder: Path,
        batch: int = 1,
    ) -> Runner:
        from ros2_fed.engine.mixed_precision import export_graph

        graph = export_graph(copy.deepcopy(detector).freeze(), precision)
        return TorchRunner(
            graph, device, (batch, *size, 3), autocast=autocast, cuda_graph=cuda_graph
        )

    return make


def engine_runner(runtime: str, precision: str) -> Callable[..., Runner]:
    """An exported engine (ONNX Runtime CPU, TensorRT, torch-tensorrt) opened like the node
    does."""

    def make(
        detector: FusedDetector,
        device: torch.device,
        size: tuple[int, int],
        folder: Path,
        batch: int = 1,
    ) -> Runner:
        from ros2_fed.engine.export import export_engine

        suffix = SUFFIX_BY_RUNTIME[runtime]
        path = folder / f"m{len(list(folder.iterdir()))}{suffix}"
        export_engine(
            copy.deepcopy(detector),
            path,
            *size,
            runtime=runtime,
            precision=precision,
            batch=batch,
            progress=None,
        )
        if runtime == "onnxruntime":
            from ros2_fed.engine.onnx_engine import OnnxEngine

            engine: Any = OnnxEngine(path, providers=["CPUExecutionProvider"])
        elif runtime == "tensorrt":
            from ros2_fed.engine.tensorrt_engine import TensorRTEngine

            engine = TensorRTEngine(path, device=device.index or 0)
        else:
            from ros2_fed.engine.torch_tensorrt_engine import TorchTensorRTEngine

            engine = TorchTensorRTEngine(path, device=device.index or 0)
        return lambda image: engine.infer(image, copy=True)

    return make


def modes(
    device: torch.device, onnxruntime: bool
) -> tuple[dict[tuple[str, str], Callable[..., Runner]], dict[str, str]]:
    """Runtime modes to run here and the skipped ones with their reason."""
    run: dict[tuple[str, str], Callable[..., Runner]] = {
        ("torch", "fp32"): torch_runner("fp32"),
        ("torch typed", "fp16"): torch_runner("fp16"),
    }
    skipped: dict[str, str] = {}
    cuda = device.type == "cuda"
    if cuda:
        run[("torch autocast", "fp16")] = torch_runner("fp32", autocast=True)
        run[("torch CUDA graph", "fp32")] = torch_runner("fp32", cuda_graph=True)
        run[("torch typed CUDA graph", "fp16")] = torch_runner("fp16", cuda_graph=True)
    else:
        skipped["torch autocast fp16, CUDA graphs"] = "need CUDA (--device cpu)"
    if onnxruntime or not cuda:
        reason = _missing("onnx", "onnxruntime")
        if reason:
            skipped["onnxruntime"] = reason
        else:
            run[("onnxruntime CPU", "fp32")] = engine_runner("onnxruntime", "fp32")
            run[("onnxruntime CPU typed", "fp16")] = engine_runner("onnxruntime", "fp16")
    else:
        skipped["onnxruntime"] = (
            "CPU-only here and slow at this size; --onnxruntime to include (tests cover its fp16 "
            "parity)"
        )
    for runtime, label in (("tensorrt", "TensorRT"), ("torch-tensorrt", "torch-tensorrt")):
        reason = _runtime_unavailable(runtime) if cuda else "needs CUDA"
        if reason is None and runtime == "tensorrt":
            reason = _missing("onnx")
        if reason:
            skipped[label] = reason
            continue
        if runtime == "tensorrt":
            run[("TensorRT", "fp32")] = engine_runner("tensorrt", "fp32")
        run[(label + " typed", "fp16")] = engine_runner(runtime, "fp16")
    return run, skipped


def _missing(*modules: str) -> Optional[str]:
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"{name} not importable ({type(exc).__name__}: {first})"
    return None


def _runtime_unavailable(runtime: str) -> Optional[str]:
    """Why a TensorRT runtime cannot run here (its import guard's one line), or None."""
    from ros2_fed.engine.base import EngineError

    try:
        if runtime == "tensorrt":
            from ros2_fed.engine.tensorrt_engine import import_tensorrt

            import_tensorrt()
        else:
            from ros2_fed.engine.torch_tensorrt_engine import import_torch_tensorrt

            import_torch_tensorrt()
    except EngineError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def time_runner(runner: Runner, image: np.ndarray, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        runner(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(image)
        times.append(time.perf_counter() - start)
    return times


def cpu_reference(
    detector: FusedDetector, images: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """What the float32 detector computes on the CPU: the parity reference of every row."""
    det = copy.deepcopy(detector).cpu().freeze()
    with torch.inference_mode():
        return [
            tuple(
                t[0].float().numpy() if t.dtype != torch.uint8 else t[0].numpy()
                for t in det(torch.from_numpy(image[None]))
            )
            for image in images
        ]  # type: ignore[misc]


def mean_parity(
    runner: Runner, images: Sequence[np.ndarray], refs: Sequence[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    stats = [parity(*runner(image), *ref) for image, ref in zip(images, refs)]
    return {
        "label_agreement": float(np.mean([s["label_agreement"] for s in stats])),
        "confidence_mean_abs_diff": float(np.mean([s["confidence_mean_abs_diff"] for s in stats])),
        "confidence_p999_abs_diff": float(max(s["confidence_p999_abs_diff"] for s in stats)),
        "confidence_max_abs_diff": float(max(s["confidence_max_abs_diff"] for s in stats)),
    }


def run_checks(
    models: dict[str, dict[str, FusedDetector]],
    device: torch.device,
    size: tuple[int, int],
    images: Sequence[np.ndarray],
    runs: int,
    warmup: int,
    budget_s: float,
    onnxruntime: bool,
    say: Callable[[str], None],
) -> tuple[list[Row], dict[str, str], dict[str, str]]:
    start = time.perf_counter()
    todo, skipped = modes(device, onnxruntime)
    failed: dict[str, str] = {}  # a runtime that was there and broke: not a skip
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model, detectors in models.items():
            for variant, detector in detectors.items():
                say(f"{model} {variant}: CPU fp32 reference ...")
                refs = cpu_reference(detector, images)
                for (runtime, precision), make in todo.items():
                    key = f"{runtime} {precision}"
                    if time.perf_counter() - start > budget_s:
                        skipped.setdefault(
                            f"{model} {variant} {key}", f"time budget of {budget_s:.0f} s used up"
                        )
                        continue
                    say(f"{model} {variant}: {key} ...")
                    try:
                        runner = make(detector, device, size, folder)
                        times = time_runner(runner, images[0], runs, warmup)
                        stats = mean_parity(runner, images, refs)
                    except Exception as exc:  # noqa: BLE001 - one failing runtime must not hide the others
                        failed[f"{model} {variant} {key}"] = failure(exc)
                        continue
                    if (
                        variant == "backbone only"
                    ):  # confidence is constant there: only labels compare
                        stats = {"label_agreement": stats["label_agreement"]}
                    ok = (
                        stats["label_agreement"] >= (0.99 if precision == "fp16" else 0.999)
                        if variant == "backbone only"
                        else parity_ok(stats, precision)
                    )
                    rows.append(
                        Row(
                            model,
                            variant,
                            runtime,
                            precision,
                            1000 * statistics.median(times),
                            1000 * float(np.percentile(times, 90)),
                            parity=stats,
                            parity_ok=bool(ok),
                        )
                    )
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    add_fed_share(rows)
    return rows, skipped, failed


#: Runtime modes of the surround-camera rows, best first (those that run here are used).
BATCH_MODES = (
    ("TensorRT typed", "fp16"),
    ("torch typed CUDA graph", "fp16"),
    ("torch typed", "fp16"),
    ("onnxruntime CPU", "fp32"),
)


def run_batch_checks(
    models: dict[str, dict[str, FusedDetector]],
    device: torch.device,
    size: tuple[int, int],
    images: Sequence[np.ndarray],
    batch: int,
    runs: int,
    warmup: int,
    onnxruntime: bool,
    say: Callable[[str], None],
) -> tuple[list[BatchRow], dict[str, str], dict[str, str]]:
    """Batch 1 against batch ``batch`` for each model's ``+ FED-U`` detector, per runtime mode."""
    todo, skipped = modes(device, onnxruntime)
    failed: dict[str, str] = {}
    rows: list[BatchRow] = []
    frames_in = np.stack([images[i % len(images)] for i in range(batch)])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model, detectors in models.items():
            detector = detectors.get("+ FED-U")
            if detector is None:
                continue
            refs = cpu_reference(detector, list(frames_in))
            for key in (k for k in BATCH_MODES if k in todo):
                say(f"{model} + FED-U: {key[0]} {key[1]}, batch 1 vs {batch} ...")
                try:
                    single = time_runner(
                        todo[key](detector, device, size, folder), images[0], runs, warmup
                    )
                    runner = todo[key](detector, device, size, folder, batch=batch)
                    batched = time_runner(runner, frames_in, runs, warmup)
                    labels, _ = runner(frames_in)
                except Exception as exc:  # noqa: BLE001 - one failing runtime must not hide the others
                    failed[f"{model} batch {batch} {key[0]} {key[1]}"] = failure(exc)
                    continue
                agree = float(np.mean([(labels[i] == refs[i][0]).mean() for i in range(batch)]))
                rows.append(
                    BatchRow(
                        model,
                        key[0],
                        key[1],
                        batch,
                        1000 * statistics.median(batched),
                        1000 * statistics.median(single),
                        agree,
                    )
                )
    return rows, skipped, failed


def failure(exc: BaseException) -> str:
    """One line for a runtime that raised."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def batch_markdown(rows: Sequence[BatchRow]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        f"## Surround cameras: one engine, batch {rows[0].batch} (one frame per camera) vs batch "
        "1",
        "",
        "| model | runtime | precision | batch | ms per batch | ms per frame | ms per frame at "
        "batch 1 | "
        "throughput gain | labels agree |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.runtime} | {r.precision} | {r.batch} | {r.batch_ms:.2f} | "
            f"{r.batch_ms / r.batch:.2f} | {r.single_ms:.2f} | {r.gain:.2f}x | "
            f"{100 * r.label_agreement:.3f} % |"
        )
    return lines


def add_fed_share(rows: list[Row]) -> None:
    """FED share of a detector's latency: 1 - backbone-only median / its median (same model and
    runtime)."""
    base = {
        (r.model, r.runtime, r.precision): r.median_ms
        for r in rows
        if r.detector == "backbone only"
    }
    for row in rows:
        ref = base.get((row.model, row.runtime, row.precision))
        if row.detector != "backbone only" and ref:
            row.fed_share = 1.0 - ref / row.median_ms


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    from ros2_fed.engine.metadata import gpu_identity, runtime_version

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "onnxruntime": runtime_version("onnxruntime"),
    }
    if device.type == "cuda":
        env.update(gpu=gpu_identity(device.index or 0))
    else:
        from machine import cpu_name

        env.update(cpu=cpu_name(), threads=torch.get_num_threads())
    return env


def markdown(
    rows: Sequence[Row],
    skipped: dict[str, str],
    env: dict[str, Any],
    settings: dict[str, Any],
    batch_rows: Sequence[BatchRow] = (),
    failed: Optional[dict[str, str]] = None,
) -> str:
    def pct(v: Optional[float], digits: int = 1) -> str:
        return "—" if v is None else f"{100 * v:.{digits}f} %"

    lines = [
        "# GPU check",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        "",
        "| model | detector | runtime | precision | median ms | p90 ms | FED share | labels agree "
        "| "
        "conf mean diff | conf max diff | parity ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean_diff = r.parity.get("confidence_mean_abs_diff")
        max_diff = r.parity.get("confidence_max_abs_diff")
        lines.append(
            f"| {r.model} | {r.detector} | {r.runtime} | {r.precision} | {r.median_ms:.2f} | "
            f"{r.p90_ms:.2f} | "
            f"{pct(r.fed_share)} | {pct(r.parity.get('label_agreement'), 3)} | "
            f"{'—' if mean_diff is None else f'{mean_diff:.2e}'} | "
            f"{'—' if max_diff is None else f'{max_diff:.2e}'} | "
            f"{'yes' if r.parity_ok else 'NO'} |"
        )
    lines += batch_markdown(batch_rows)
    if failed:
        lines += ["", "FAILED (the runtime is installed but did not run):", ""]
        lines += [f"- FAILED {what}: {why}" for what, why in failed.items()]
    lines += ["", "Skipped:", ""]
    lines += [f"- {what}: {why}" for what, why in skipped.items()] or ["- nothing"]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for gpu_check.md and gpu_check.json")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the shipped default model at 64x128 instead of SF-B2 / DL-R101",
    )
    p.add_argument("--size", default=None, help="HxW (default 1024x2048; 64x128 with --tiny)")
    p.add_argument(
        "--runs", type=int, default=None, help="timed runs per row (default 20; 3 with --tiny)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed runs per row first (default 5; 1 with --tiny)",
    )
    p.add_argument("--frames", type=int, default=2, help="parity frames (default 2)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="skip rows once this many seconds are spent (default 420)",
    )
    p.add_argument(
        "--onnxruntime",
        action="store_true",
        help="include ONNX Runtime (CPU) rows on a GPU run too",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=4,
        help="surround-camera rows: batch 1 vs this batch per runtime (0 = none; default 4)",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    say = (
        (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    )
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: error: no CUDA device (torch.cuda.is_available() is False); use --device "
            "cpu --tiny",
            file=sys.stderr,
        )
        return 2
    size = (
        tuple(int(v) for v in args.size.lower().split("x"))
        if args.size
        else (TINY_SIZE if args.tiny else GPU_SIZE)
    )
    runs = args.runs or (3 if args.tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    torch.manual_seed(0)
    # fp32 rows mean float32: no TF32 tensor-core shortcuts in convolutions or matmuls.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    models = default_models() if args.tiny else paper_models()
    images, frame_kind = frames(size[0], size[1], args.frames)
    rows, skipped, failed = run_checks(
        models, device, size, images, runs, warmup, args.budget_s, args.onnxruntime, say
    )
    batch_rows: list[BatchRow] = []
    if args.batch > 1:
        batch_rows, batch_skipped, batch_failed = run_batch_checks(
            models, device, size, images, args.batch, runs, warmup, args.onnxruntime, say
        )
        skipped.update({k: v for k, v in batch_skipped.items() if k not in skipped})
        failed.update(batch_failed)
    env = environment(device)
    settings = {
        "size": f"{size[0]}x{size[1]}",
        "runs": runs,
        "warmup": warmup,
        "parity frames": f"{args.frames} {frame_kind}",
        "reference": "float32 detector on the CPU",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, skipped, env, settings, batch_rows, failed)
    (out / "gpu_check.md").write_text(text)
    write_json(
        out / "gpu_check.json",
        {
            "environment": env,
            "settings": settings,
            "rows": [asdict(r) for r in rows],
            "skipped": skipped,
            "failed": failed,
            "batch_rows": [dict(asdict(r), gain=r.gain) for r in batch_rows],
        },
    )
    print(text)
    if failed:
        print(f"gpu_check: FAILED: {len(failed)} runtime check(s) raised", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
