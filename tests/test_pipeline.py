"""The pure pipeline shared by fed_node and fed_bag_eval: no rclpy, no torch; one parameter
table (integers accepted for floats), default model resolution with missing files named, the
camera-size handling, the mailbox and counters, and torch-free engine opening."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros2_fed import pipeline
from ros2_fed.pipeline import ModelSpec, StartupError

REPO = Path(__file__).resolve().parents[1]


def _loaded_after(code: str) -> set[str]:
    """Top-level modules loaded in a fresh interpreter after running ``code``."""
    probe = (
        code
        + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=str(REPO)
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_pipeline_imports_neither_torch_nor_rclpy() -> None:
    loaded = _loaded_after("import ros2_fed.pipeline, ros2_fed.engine, ros2_fed.eval.replay.model")
    assert "torch" not in loaded and "rclpy" not in loaded, sorted(loaded)


def test_engine_base_names_no_runtime_module() -> None:
    """base.py imports none of its subclasses' modules (they import base: the old cycle)."""
    tree = ast.parse((REPO / "ros2_fed" / "engine" / "base.py").read_text())
    imported = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    runtimes = {
        "onnx_engine",
        "tensorrt_engine",
        "torch_engine",
        "export",
        "cache",
        "registry",
        "torch",
    }
    assert not {m for m in imported if m.split(".")[-1] in runtimes}, imported


def test_every_engine_suffix_has_a_loader() -> None:
    from ros2_fed.engine.base import ENGINE_LOADERS, RUNTIME_BY_SUFFIX

    assert set(ENGINE_LOADERS) == set(RUNTIME_BY_SUFFIX)


@pytest.fixture(scope="module")
def onnx_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model exported at 64x128 (the export itself needs torch; opening must not)."""
    from ros2_fed.engine.cli_export import main as fed_export

    out = tmp_path_factory.mktemp("engine") / "model.onnx"
    models = REPO / "models"
    assert (
        fed_export(
            [
                "--backbone",
                str(models / pipeline.DEFAULT_BACKBONE),
                "--fed",
                str(models / pipeline.DEFAULT_FED),
                "--height",
                "64",
                "--width",
                "128",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_opening_and_running_an_onnx_engine_loads_no_torch(onnx_engine: Path) -> None:
    code = (
        f"import numpy as np\nfrom ros2_fed import pipeline\n"
        f"spec = pipeline.ModelSpec(engine_path={str(onnx_engine)!r}).resolved()\n"
        f"engine = pipeline.open_engine(spec)\n"
        f"labels, conf = pipeline.infer_at_camera_size(engine, np.zeros((96, 160, 3), np.uint8), "
        f"pipeline.engine_shape(engine))\n"
        f"assert labels.shape == conf.shape == (96, 160), labels.shape\n"
    )
    loaded = _loaded_after(code)
    assert "onnxruntime" in loaded  # it did run the engine
    assert "torch" not in loaded, sorted(loaded)


def test_a_cached_engine_opens_without_torch_once_built(tmp_path: Path) -> None:
    """No engine_path: building the cached engine needs torch (here, in this process); opening it
    again (a node restart) must not."""
    from ros2_fed.engine import open_cached

    params = {"model.height": 32, "model.width": 64}
    spec = ModelSpec.from_params(params).resolved()
    built = open_cached(
        spec.backbone,
        spec.fed,
        height=32,
        width=64,
        runtime=spec.runtime,
        score=spec.score,
        cache=tmp_path,
        warmup=0,
        progress=None,
    )
    assert built.cache_hit is False
    code = (
        "import os\nfrom ros2_fed import pipeline\n"
        f"os.environ['ROS2_FED_CACHE'] = {str(tmp_path)!r}\n"
        f"engine = pipeline.open_engine(pipeline.ModelSpec.from_params({params!r}).resolved())\n"
        "assert engine.cache_hit is True, engine.cache_hit\n"
    )
    assert "torch" not in _loaded_after(code)


def test_score_check_names_the_engine(onnx_engine: Path) -> None:
    with pytest.raises(
        StartupError, match=r"model\.onnx computes score 'fed', parameter score asks for 'msp'"
    ):
        pipeline.open_engine(ModelSpec(engine_path=str(onnx_engine), score="msp").resolved())


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


def test_parameter_table_is_consistent() -> None:
    for spec in pipeline.PARAMETERS:
        assert spec.description and spec.check(spec.default) is None, spec
    assert len(pipeline.PARAMETER_NAMES) == len(pipeline.PARAMETERS)
    alerts = [i for i, s in enumerate(pipeline.PARAMETERS) if s.name.startswith("alerts.")]
    assert alerts == list(range(alerts[0], alerts[-1] + 1))  # one block


def test_integers_are_accepted_for_float_parameters() -> None:
    spec = pipeline.PARAMETER_SPECS["alerts.hysteresis"]
    assert (
        spec.coerce(1) == 1.0
        and type(spec.coerce(1)) is float
        and spec.check(spec.coerce(1)) is None
    )
    assert spec.check(1) is not None  # check itself stays strict: coerce first
    assert (
        spec.coerce(True) is True and spec.check(True) is not None
    )  # a bool is not a number here
    assert (
        pipeline.PARAMETER_SPECS["alerts.raise_frames"].coerce(2.0) == 2.0
    )  # no silent float -> int
    merged = pipeline.with_defaults({"viz.overlay_alpha": 1, "alerts.hysteresis": 0})
    assert (
        type(merged["viz.overlay_alpha"]) is float and type(merged["alerts.hysteresis"]) is float
    )
    assert pipeline.parameter_problems(merged) == []
    assert pipeline.alert_config({"alerts.hysteresis": 1}).hysteresis == 1.0


def test_parameter_problems_cover_ranges_and_cross_field() -> None:
    defaults = pipeline.parameter_defaults()
    assert pipeline.parameter_problems(defaults) == []
    assert "outside" in pipeline.parameter_problems({**defaults, "alerts.hysteresis": 1.5})[0]
    assert (
        "viz.confidence_min"
        in pipeline.parameter_problems(
            {**defaults, "viz.confidence_min": 1.0, "viz.confidence_max": 0.5}
        )[0]
    )
    # one side from the model (negative): no cross-check until the model is known
    assert pipeline.parameter_problems({**defaults, "viz.confidence_min": 1.0}) == []


def test_alert_parameters_build_an_alert_config() -> None:
    pipeline.alert_config(pipeline.parameter_defaults())
    assert (
        pipeline.alert_config({}).warn_size == pipeline.PARAMETER_SPECS["alerts.warn_size"].default
    )
    with pytest.raises(ValueError):
        pipeline.alert_config({"alerts.warn_size": 0.9, "alerts.error_size": 0.2})


def test_threshold_and_colour_range_come_from_the_model_unless_set() -> None:
    calibration = {"confidence_threshold": 0.83, "viz_range": [0.7, 0.99]}
    assert pipeline.alert_config({}, calibration).confidence_threshold == 0.83
    assert (
        pipeline.alert_config(
            {"alerts.confidence_threshold": 0.6}, calibration
        ).confidence_threshold
        == 0.6
    )
    assert (
        pipeline.alert_config({}).confidence_threshold == 0.5
    )  # an uncalibrated model: the fallback
    settings = pipeline.output_settings({}, calibration)
    assert (settings.viz_min, settings.viz_max) == (0.7, 0.99)
    settings = pipeline.output_settings({"viz.confidence_min": 0.2}, calibration)
    assert (settings.viz_min, settings.viz_max) == (0.2, 0.99)
    settings = pipeline.output_settings({"viz.confidence_min": 0.995}, calibration)
    assert (settings.viz_min, settings.viz_max) == (
        0.0,
        1.0,
    )  # explicit min above the model's max: full range
    assert (
        pipeline.output_settings({}).viz_min,
        pipeline.output_settings({}).viz_max,
    ) == (0.0, 1.0)
    meta = {"detector": {"calibration": calibration}}
    assert pipeline.model_calibration(meta) == calibration and pipeline.model_calibration({}) == {}


def test_spec_calibration_reads_the_fed_checkpoint_or_the_engine_sidecar(tmp_path) -> None:
    import json

    (tmp_path / "fed.json").write_text(json.dumps({"calibration": {"confidence_threshold": 0.9}}))
    spec = pipeline.ModelSpec(backbone="b", fed=str(tmp_path / "fed"), score="fed")
    assert pipeline.spec_calibration(spec) == {"confidence_threshold": 0.9}
    assert pipeline.spec_calibration(pipeline.ModelSpec(backbone="b", score="msp")) == {}
    engine = tmp_path / "m.onnx"
    engine.write_bytes(b"x")
    from ros2_fed.engine.base import ENGINE_FORMAT

    sidecar = {
        "format": ENGINE_FORMAT,
        "format_version": 1,
        "runtime": "onnxruntime",
        "input_tensor_shape": [1, 2, 3, 3],
        "model_hash": "h",
        "file_sha256": "s",
        "file_size": 1,
        "precision": "fp32",
        "detector": {"calibration": {"confidence_threshold": 0.7}},
    }
    (tmp_path / "m.onnx.json").write_text(json.dumps(sidecar))
    assert pipeline.spec_calibration(pipeline.ModelSpec(engine_path=str(engine))) == {
        "confidence_threshold": 0.7
    }


def test_output_settings_follow_the_parameters() -> None:
    settings = pipeline.output_settings({"publish.overlay": False, "viz.overlay_alpha": 1})
    assert not settings.enabled("overlay") and settings.enabled("segmentation")
    assert settings.overlay_alpha == 1.0
    assert [name for name, _ in settings.publish] == [o.name for o in pipeline.OUTPUTS]


# --------------------------------------------------------------------------------------
# Which engine
# --------------------------------------------------------------------------------------


def test_default_model_and_node_defaults() -> None:
    spec = ModelSpec.from_params({}).resolved()
    models = REPO / "models"
    assert (
        Path(spec.backbone) == models / pipeline.DEFAULT_BACKBONE
        and Path(spec.fed) == models / pipeline.DEFAULT_FED
    )
    assert (spec.height, spec.width, spec.runtime, spec.score) == (512, 1024, "onnxruntime", "fed")
    # replay: size 0 = the camera's
    assert (ModelSpec().resolved(64, 96).height, ModelSpec().resolved(64, 96).width) == (64, 96)


def test_missing_backbone_is_named_even_without_a_fed(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "backbone")
    for params in ({"model.backbone": missing}, {"model.backbone": missing, "score": "msp"}):
        with pytest.raises(StartupError, match="model.backbone checkpoint not found: " + missing):
            ModelSpec.from_params(params).resolved()
    fed = str(tmp_path / "fed_missing")
    with pytest.raises(StartupError, match="model.fed checkpoint not found: " + fed):
        ModelSpec.from_params({"model.fed": fed}).resolved()
    with pytest.raises(StartupError, match="engine file not found: " + str(tmp_path / "m.onnx")):
        ModelSpec(engine_path=str(tmp_path / "m.onnx")).resolved()


def test_backbone_without_fed_asks_for_a_score() -> None:
    backbone = str(REPO / "models" / pipeline.DEFAULT_BACKBONE)
    with pytest.raises(StartupError, match="set score to a baseline"):
        ModelSpec.from_params({"model.backbone": backbone}).resolved()
    spec = ModelSpec.from_params({"model.backbone": backbone, "score": "msp"}).resolved()
    assert spec.fed == "" and spec.score == "msp"


# --------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------


class _SizedEngine:
    """Labels = R, confidence = G / 255 at a fixed input size (refuses others, like a real
    engine); the InferenceEngine interface."""

    batch_size, dynamic_batch, metadata, path = 1, False, {}, None

    def __init__(self, shape: tuple[int, int] | None) -> None:
        self.input_shape = shape
        self.seen: list[tuple[int, ...]] = []

    def close(self) -> None:
        pass

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert image.shape[:2] == self.input_shape, image.shape
        self.seen.append(image.shape)
        return image[..., 0].copy(), image[..., 1].astype(np.float32) / 255


def test_camera_size_handling_resizes_on_the_host() -> None:
    engine = _SizedEngine((32, 48))
    shape = pipeline.engine_shape(engine)
    assert shape == (32, 48)
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:, 48:, 0] = 7
    frame[..., 1] = 255
    assert pipeline.needs_resize(shape, frame) and not pipeline.needs_resize(
        shape, frame[:32, :48]
    )
    labels, conf = pipeline.infer_at_camera_size(engine, frame, shape)
    assert (
        labels.shape == conf.shape == (64, 96)
        and labels.dtype == np.uint8
        and conf.dtype == np.float32
    )
    assert (labels[:, :40] == 0).all() and (labels[:, 56:] == 7).all() and np.allclose(conf, 1.0)
    assert engine.seen == [(32, 48, 3)]
    assert pipeline.engine_shape(_SizedEngine(None)) is None
    assert pipeline.warm_up(engine, 2, shape) >= 0 and len(engine.seen) == 3
    with pytest.raises(StartupError, match="warm-up failed on a 10x10 frame"):
        pipeline.warm_up(engine, 1, (10, 10))


def test_viz_palette_from_metadata() -> None:
    assert pipeline.viz_palette({"palette": [[1, 2, 3], [4, 5, 6]]}).tolist() == [
        [1, 2, 3],
        [4, 5, 6],
    ]
    assert pipeline.viz_palette({"class_names": ["a", "b", "c"]}).shape == (3, 3)


def test_pipeline_stats_counts_and_percentiles() -> None:
    stats = pipeline.PipelineStats(window=10)
    for i in range(20):
        stats.on_received(dropped_previous=i % 2 == 1)
    for ms in range(1, 21):
        stats.on_processed(ms / 1e3, ms / 2e3)
    assert stats.on_bad_input("unknown_encoding") == 1
    assert stats.on_bad_input("truncated") == 2
    snap = stats.snapshot()
    assert (snap["received"], snap["dropped"], snap["processed"], snap["bad_input_total"]) == (
        20,
        10,
        20,
        2,
    )
    assert snap["latency_p50_ms"] == pytest.approx(
        15.5
    )  # the window holds the last 10 (11..20 ms)
    assert snap["bad_input_in_period"] == 2 and stats.snapshot()["bad_input_in_period"] == 0
